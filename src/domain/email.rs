use super::Invalid;

const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

/// An email address, trimmed and lower-cased, syntactically plausible
/// (dot-atom local part, a domain of at least two DNS labels). Deliverability
/// is not something a syntax check can know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Invalid("is required"));
        }
        if trimmed.len() > MAX_LEN {
            return Err(Invalid("must be at most 254 characters long"));
        }
        let normalized = trimmed.to_ascii_lowercase();
        let (local, domain) = normalized
            .rsplit_once('@')
            .ok_or(Invalid("is not a valid email address"))?;
        if !valid_local_part(local) || !valid_domain(domain) {
            return Err(Invalid("is not a valid email address"));
        }
        Ok(Self(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `j******@example.com`: enough for an operator to correlate, not enough
    /// to harvest addresses from logs or the audit trail.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks any string that looks like an address; used for stored values too.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}******@{domain}")
        }
        None => "******".to_owned(),
    }
}

fn valid_local_part(local: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
    !local.is_empty()
        && local.len() <= MAX_LOCAL_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || SPECIALS.contains(&b))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_surrounding_space() {
        let email = Email::parse("  John.Doe+tag@Example.COM ").map(|e| e.as_str().to_owned());
        assert_eq!(email, Ok("john.doe+tag@example.com".to_owned()));
    }

    #[test]
    fn refuses_malformed_addresses() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "john@",
            "john@localhost",
            "john@@example.com",
            "jo hn@example.com",
            ".john@example.com",
            "john..doe@example.com",
            "john@-example.com",
            "john@example.c0m",
            "john@exa_mple.com",
            "<script>@example.com",
            long.as_str(),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_all_but_the_first_letter_of_the_local_part() {
        let email = Email::parse("john@example.com").map(|e| e.masked());
        assert_eq!(email, Ok("j******@example.com".to_owned()));
        assert_eq!(mask("not-an-address"), "******");
    }
}
