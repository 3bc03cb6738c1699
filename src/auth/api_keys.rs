//! API key secrets: `sak_` and 48 characters of `[A-Za-z0-9]` (about 285
//! random bits); only a SHA-256 digest is stored, and a presented key is
//! looked up by its digest.

use aws_lc_rs::digest;

pub const PREFIX: &str = "sak_";
const RANDOM_CHARS: usize = 48;
/// How much of a key is shown to recognise it by.
pub const SHOWN_CHARS: usize = 12;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new key, and what the database keeps of it.
pub struct Generated {
    /// Shown once, in the response that made it.
    pub key: String,
    pub prefix: String,
    pub digest: String,
}

pub fn generate() -> Result<Generated, getrandom::Error> {
    let mut key = String::with_capacity(PREFIX.len() + RANDOM_CHARS);
    key.push_str(PREFIX);
    // Rejection sampling keeps every character equally likely.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut added = 0;
    while added < RANDOM_CHARS {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes)?;
        for byte in bytes {
            if added == RANDOM_CHARS {
                break;
            }
            if byte < limit
                && let Some(c) = ALPHABET.get(usize::from(byte) % ALPHABET.len())
            {
                key.push(char::from(*c));
                added += 1;
            }
        }
    }
    let prefix = key.chars().take(SHOWN_CHARS).collect();
    let digest = digest_of(&key);
    Ok(Generated {
        key,
        prefix,
        digest,
    })
}

/// The SHA-256 of a key, hex: what is stored and looked up. A key is 256+
/// random bits, so a plain digest is enough (no salt or stretching).
pub fn digest_of(key: &str) -> String {
    data_encoding::HEXLOWER.encode(digest::digest(&digest::SHA256, key.as_bytes()).as_ref())
}

/// Whether a header value can be a key at all; anything else is refused
/// without a lookup.
pub fn well_formed(key: &str) -> bool {
    key.len() == PREFIX.len() + RANDOM_CHARS
        && key.starts_with(PREFIX)
        && key
            .bytes()
            .skip(PREFIX.len())
            .all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_alphanumeric_and_stored_only_as_a_digest() {
        let one = generate().unwrap();
        let two = generate().unwrap();
        assert_ne!(one.key, two.key);
        assert!(well_formed(&one.key), "{}", one.key);
        assert_eq!(one.prefix.len(), 12);
        assert!(one.key.starts_with(&one.prefix));
        assert_eq!(one.digest.len(), 64);
        assert_eq!(one.digest, digest_of(&one.key));
        assert!(!one.digest.contains(&one.key[4..]));
        assert!(!well_formed("sak_short"));
        assert!(!well_formed(&one.key.replace("sak_", "sk_x")));
        assert!(!well_formed(&format!("{}!", &one.key[..one.key.len() - 1])));
    }
}
