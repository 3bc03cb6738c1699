//! Backup codes: ten single-use codes that stand in for a TOTP code when
//! the device is lost. Ten characters from an alphabet without look-alikes
//! (about 49 bits each), shown as `xxxxx-xxxxx`; only their keyed hashes
//! are stored (see `DataKey::keyed_hash`).

use super::data_key::DataKey;

pub const COUNT: usize = 10;
const LENGTH: usize = 10;
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const HASH_PURPOSE: &str = "backup-code";

/// Ten new codes, as the user is shown them.
pub fn generate() -> Result<Vec<String>, getrandom::Error> {
    (0..COUNT).map(|_| one()).collect()
}

fn one() -> Result<String, getrandom::Error> {
    let mut chars = Vec::with_capacity(LENGTH);
    // Rejection sampling keeps every character equally likely.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    while chars.len() < LENGTH {
        let mut byte = [0u8; 1];
        getrandom::fill(&mut byte)?;
        if byte[0] < limit
            && let Some(c) = ALPHABET.get(usize::from(byte[0]) % ALPHABET.len())
        {
            chars.push(char::from(*c));
        }
    }
    let text: String = chars.into_iter().collect();
    let (head, tail) = text.split_at(LENGTH / 2);
    Ok(format!("{head}-{tail}"))
}

/// The code as stored before hashing: lower case, without the hyphen;
/// `None` for anything that cannot be a backup code.
pub fn normalize(input: &str) -> Option<String> {
    let compact: String = input
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = compact.len() == LENGTH && compact.bytes().all(|b| ALPHABET.contains(&b));
    valid.then_some(compact)
}

/// What the database keeps of a code.
pub fn hash(key: &DataKey, code: &str) -> Option<String> {
    normalize(code).map(|normal| key.keyed_hash(HASH_PURPOSE, &normal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    #[test]
    fn ten_distinct_well_formed_codes() {
        let codes = generate().unwrap();
        assert_eq!(codes.len(), COUNT);
        let unique: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(code.as_bytes()[5], b'-');
            assert!(normalize(code).is_some(), "{code}");
        }
    }

    #[test]
    fn input_is_case_insensitive_and_the_hyphen_optional() {
        let key = DataKey::from_bytes(&SecretBytes::new(vec![7; 32])).unwrap();
        let stored = hash(&key, "abcde-fghjk").unwrap();
        for typed in ["abcdefghjk", "ABCDE-FGHJK", " abcde-fghjk "] {
            assert_eq!(hash(&key, typed).as_deref(), Some(stored.as_str()));
        }
        // Look-alikes are not in the alphabet, and lengths are exact.
        assert!(normalize("abcde-fghj1").is_none());
        assert!(normalize("abcde-fghjkm").is_none());
        assert!(normalize("123456").is_none());
    }
}
