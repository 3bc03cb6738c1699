use super::Invalid;

const MAX_CHARS: usize = 100;

/// A display name with HTML tags and control characters removed, so that a
/// front end that forgets to escape it still renders no markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    /// `Ok(None)` when nothing is left after sanitising.
    pub fn parse(raw: &str) -> Result<Option<Self>, Invalid> {
        // Bound the work before sanitising: 4 bytes per char is the UTF-8 maximum.
        if raw.len() > MAX_CHARS * 4 * 4 {
            return Err(Invalid("must be at most 100 characters long"));
        }
        let cleaned = strip_tags(raw);
        let cleaned: String = cleaned.chars().filter(|c| !c.is_control()).collect();
        let cleaned = cleaned.trim();
        if cleaned.chars().count() > MAX_CHARS {
            return Err(Invalid("must be at most 100 characters long"));
        }
        if cleaned.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self(cleaned.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Drops every `<...>` run, then any stray angle bracket, so no tag can be
/// reassembled from what is left (`<<b>script>` leaves no `<`).
fn strip_tags(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_tag = false;
    for c in raw.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Option<String> {
        FullName::parse(raw)
            .ok()
            .flatten()
            .map(|n| n.as_str().to_owned())
    }

    #[test]
    fn removes_tags_and_control_characters() {
        assert_eq!(parsed("<b>Jane</b> Doe"), Some("Jane Doe".to_owned()));
        assert_eq!(
            parsed("<script>alert(1)</script>Jane"),
            Some("alert(1)Jane".to_owned())
        );
        assert_eq!(parsed("Ja\u{0}ne\u{7}\nDoe"), Some("JaneDoe".to_owned()));
        assert_eq!(parsed("<<b>script>x"), Some("scriptx".to_owned()));
        assert_eq!(parsed("  José Núñez  "), Some("José Núñez".to_owned()));
        assert_eq!(parsed("<img src=x onerror=alert(1)>"), None);
    }

    #[test]
    fn caps_the_length_in_characters() {
        assert!(FullName::parse(&"é".repeat(100)).is_ok());
        assert!(FullName::parse(&"é".repeat(101)).is_err());
        assert!(FullName::parse(&"x".repeat(100_000)).is_err());
    }
}
