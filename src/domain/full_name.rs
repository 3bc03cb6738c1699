use super::Invalid;

const MAX_CHARS: usize = 100;

/// A display name with HTML tags, control characters and Unicode format
/// characters removed, so that a front end that forgets to escape it still
/// renders no markup, and no bidi override or zero-width character can make
/// it read differently from what it is (`admin\u{202E}nimda`).
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
        let cleaned: String = cleaned
            .chars()
            .filter(|&c| !c.is_control() && !is_format_character(c))
            .collect();
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

/// Unicode general category Cf (format), from the Unicode 16.0 character
/// database (`DerivedGeneralCategory.txt`): invisible characters that steer
/// rendering (bidi overrides and isolates, zero-width joiners and spaces, the
/// byte-order mark, tag characters). None belongs in a person's name as shown
/// to others; dropping them also means that two names that look alike are
/// alike.
const FORMAT_CHARACTERS: [(char, char); 21] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

fn is_format_character(c: char) -> bool {
    FORMAT_CHARACTERS
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
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
    fn removes_unicode_format_characters() {
        // Right-to-left override: would display as "adminnimda" reversed.
        assert_eq!(parsed("admin\u{202E}nimda"), Some("adminnimda".to_owned()));
        // Zero-width space, joiner and non-joiner, word joiner, BOM.
        assert_eq!(
            parsed("J\u{200B}a\u{200D}n\u{200C}e\u{2060}\u{FEFF}"),
            Some("Jane".to_owned())
        );
        // Isolates, the Arabic letter mark, a soft hyphen, a tag character.
        assert_eq!(
            parsed("\u{2066}Jo\u{061C}\u{00AD}e\u{2069}\u{E0041}"),
            Some("Joe".to_owned())
        );
        assert_eq!(parsed("\u{202E}\u{200B}"), None);
        // Letters and marks beside them stay.
        assert_eq!(parsed("Zoë Ünal"), Some("Zoë Ünal".to_owned()));
    }

    #[test]
    fn caps_the_length_in_characters() {
        assert!(FullName::parse(&"é".repeat(100)).is_ok());
        assert!(FullName::parse(&"é".repeat(101)).is_err());
        assert!(FullName::parse(&"x".repeat(100_000)).is_err());
    }
}
