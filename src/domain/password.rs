//! Password policy. A `NewPassword` passed the policy; a `LoginPassword` is
//! only bounded in length (policy changes must not lock out existing users).

use std::collections::HashSet;
use std::sync::LazyLock;

use super::Invalid;
use crate::secret::SecretString;

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

/// SecLists' top-100k list (MIT), lower-cased; see `COMMON-PASSWORDS-SOURCE.md`.
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// A password that satisfies the policy; its text is only reachable through
/// `secret()`, for hashing.
#[derive(Debug, Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// The error message names the rule that failed (and never the password).
    pub fn parse(raw: SecretString) -> Result<Self, Invalid> {
        let text = raw.expose();
        // Bytes bound chars from above, so this refuses a 1 MiB body cheaply.
        if text.len() > MAX_CHARS * 4 || text.chars().count() > MAX_CHARS {
            return Err(Invalid("Password must be at most 128 characters long"));
        }
        if text.chars().count() < MIN_CHARS {
            return Err(Invalid("Password must be at least 8 characters long"));
        }
        if text.chars().any(char::is_control) {
            return Err(Invalid("Password must not contain control characters"));
        }
        if !text.chars().any(char::is_uppercase) {
            return Err(Invalid(
                "Password must contain at least one uppercase letter",
            ));
        }
        if !text.chars().any(char::is_lowercase) {
            return Err(Invalid(
                "Password must contain at least one lowercase letter",
            ));
        }
        if !text.chars().any(|c| c.is_ascii_digit()) {
            return Err(Invalid("Password must contain at least one digit"));
        }
        if !text.chars().any(|c| !c.is_alphanumeric()) {
            return Err(Invalid(
                "Password must contain at least one special character",
            ));
        }
        if is_common(text) {
            return Err(Invalid(
                "Password is too common or too easy to guess; choose another",
            ));
        }
        Ok(Self(raw))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

/// A password offered at login: 1-128 characters, nothing more is asked of it.
#[derive(Debug, Clone)]
pub struct LoginPassword(SecretString);

impl LoginPassword {
    pub fn parse(raw: SecretString) -> Result<Self, Invalid> {
        let text = raw.expose();
        if text.is_empty() {
            return Err(Invalid("is required"));
        }
        if text.len() > MAX_CHARS * 4 || text.chars().count() > MAX_CHARS {
            return Err(Invalid("must be at most 128 characters long"));
        }
        Ok(Self(raw))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

/// True when the password, or what is left after undoing the usual
/// decorations (case, leet substitutions, trailing digits and symbols), is in
/// the common-password list.
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let stripped = strip_decorations(&lower);
    let mut candidates = vec![lower.clone(), stripped.to_owned()];
    for one_as in ['i', 'l'] {
        let unleeted = unleet(&lower, one_as);
        candidates.push(strip_decorations(&unleeted).to_owned());
        candidates.push(unleet(stripped, one_as));
        candidates.push(unleeted);
    }
    candidates
        .iter()
        .any(|c| !c.is_empty() && COMMON.contains(c.as_str()))
}

fn strip_decorations(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_ascii_digit() || (!c.is_alphanumeric() && !c.is_whitespace()))
}

fn unleet(s: &str, one_as: char) -> String {
    s.chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '0' => 'o',
            '$' | '5' => 's',
            '3' => 'e',
            '1' | '!' | '|' => one_as,
            '7' | '+' => 't',
            '8' => 'b',
            '9' => 'g',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pw: &str) -> Result<(), &'static str> {
        NewPassword::parse(SecretString::new(pw.to_owned()))
            .map(|_| ())
            .map_err(|e| e.0)
    }

    #[test]
    fn the_list_is_large_enough() {
        assert!(COMMON.len() >= 10_000);
    }

    #[test]
    fn names_the_rule_that_failed() {
        assert!(check("Ab1!").unwrap_err().contains("at least 8"));
        assert!(
            check(&format!("Ab1!{}", "x".repeat(125)))
                .unwrap_err()
                .contains("at most 128")
        );
        assert!(check("abcdefg1!").unwrap_err().contains("uppercase"));
        assert!(check("ABCDEFG1!").unwrap_err().contains("lowercase"));
        assert!(check("Abcdefgh!").unwrap_err().contains("digit"));
        assert!(check("Abcdefgh1").unwrap_err().contains("special"));
        assert!(check("Abcd\u{7}fg1!").unwrap_err().contains("control"));
    }

    #[test]
    fn refuses_decorated_common_passwords() {
        for pw in [
            "P@ssw0rd",
            "Password1!",
            "pASSWORD123!",
            "Qwerty123!",
            "Iloveyou1!",
            "P@$$w0rd2024!",
            "Football#1",
            "L3tm31n!!",
        ] {
            assert!(check(pw).unwrap_err().contains("common"), "{pw}");
        }
    }

    #[test]
    fn accepts_strong_passwords() {
        for pw in [
            "Correct-Horse-9-Battery",
            "zK8#qLw2!vRt",
            "Ünïcödé-Pässwört-7",
        ] {
            assert_eq!(check(pw), Ok(()), "{pw}");
        }
    }

    #[test]
    fn a_huge_password_is_refused_by_length() {
        let huge = "A1!a".repeat(262_144);
        assert!(check(&huge).unwrap_err().contains("at most 128"));
        let login = LoginPassword::parse(SecretString::new(huge));
        assert!(login.is_err());
    }
}
