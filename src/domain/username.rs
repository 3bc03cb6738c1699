use super::Invalid;

const MIN_LEN: usize = 3;
const MAX_LEN: usize = 50;
const RESERVED: &[&str] = &[
    "admin",
    "administrator",
    "root",
    "system",
    "api",
    "www",
    "mail",
    "support",
    "help",
    "null",
    "undefined",
    "true",
    "false",
];

/// A username: 3-50 of `[A-Za-z0-9_-]`, not a reserved name. Case is kept for
/// display; uniqueness is case-insensitive (the store compares without case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        // Length is checked on bytes first so a huge input costs nothing more;
        // the allowed alphabet is ASCII, so bytes and characters agree.
        if raw.len() < MIN_LEN || raw.len() > MAX_LEN {
            return Err(Invalid("must be 3 to 50 characters long"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Invalid(
                "may contain only letters, digits, underscores and hyphens",
            ));
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(raw)) {
            return Err(Invalid("is reserved"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        for ok in ["abc", "John_Doe-42", &"a".repeat(50)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_length_alphabet_and_reserved_names() {
        let long = "a".repeat(51);
        let huge = "x".repeat(10_000);
        for bad in [
            "",
            "ab",
            long.as_str(),
            huge.as_str(),
            "<script>alert(1)</script>",
            "john doe",
            "jöhn",
            "a'; DROP TABLE users;--",
            "Admin",
            "ROOT",
            "null",
            "Undefined",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }
}
