//! The data key: 32 bytes that encrypt secrets at rest (TOTP secrets) with
//! AES-256-GCM and key the hashes of backup codes. It comes from a file (or
//! systemd credential), or is generated into the data directory on first
//! start, like the JWT key. The database keeps the key's fingerprint, so a
//! server started with another key refuses to start instead of finding every
//! secret undecryptable (see `store::Store::check_data_key`).

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;

use super::keys::KeyError;
use crate::files;
use crate::secret::SecretBytes;

pub const KEY_BYTES: usize = 32;

/// The key, ready to seal and open.
pub struct DataKey {
    aead: LessSafeKey,
    mac: hmac::Key,
    fingerprint: String,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A sealed value that does not open: another key, another account, or a
/// damaged row.
#[derive(Debug, thiserror::Error)]
#[error("a stored secret does not decrypt under the data key")]
pub struct Unsealable;

/// No randomness for a nonce, or an input beyond what AES-GCM takes.
#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt a secret")]
pub struct SealError;

#[derive(Debug, thiserror::Error)]
#[error("the data key must be exactly {KEY_BYTES} bytes; {path} holds {len}")]
pub struct WrongKeyLength {
    pub path: String,
    pub len: usize,
}

impl DataKey {
    pub fn from_bytes(key: &SecretBytes) -> Option<Self> {
        if key.len() != KEY_BYTES {
            return None;
        }
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).ok()?);
        let mac = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
        let check = hmac::sign(&mac, b"secure-api data key fingerprint v1");
        let fingerprint = data_encoding::HEXLOWER.encode(check.as_ref().get(..16)?);
        Some(Self {
            aead,
            mac,
            fingerprint,
        })
    }

    /// Loads the key file at `path`, creating it with 256 random bits when
    /// `generate` is set and it is missing. Returns whether it was generated.
    pub fn load(path: &Path, generate: bool) -> Result<(Self, bool), DataKeyError> {
        let (bytes, generated) = if generate {
            super::keys::load_or_generate(path)?
        } else {
            let bytes = files::read_secret_file(path).map_err(KeyError::from)?;
            (SecretBytes::new(bytes), false)
        };
        let key = Self::from_bytes(&bytes).ok_or_else(|| WrongKeyLength {
            path: path.display().to_string(),
            len: bytes.len(),
        })?;
        Ok((key, generated))
    }

    /// Names the key without revealing it: what the database remembers.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encrypts `plaintext` for `context` (an account id): nonce, then
    /// ciphertext and tag. A sealed value opens only under the same key and
    /// context, so a row copied to another account does not decrypt.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError)?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<SecretBytes, Unsealable> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(Unsealable)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut body = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
            .map_err(|_| Unsealable)?;
        Ok(SecretBytes::new(plain.to_vec()))
    }

    /// A keyed hash (HMAC-SHA256, hex) of a short secret such as a backup
    /// code: without the key, a stolen database does not let anyone try the
    /// few billion possible codes offline.
    pub fn keyed_hash(&self, purpose: &str, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        data_encoding::HEXLOWER.encode(ctx.sign().as_ref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Length(#[from] WrongKeyLength),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DataKey {
        DataKey::from_bytes(&SecretBytes::new(vec![byte; KEY_BYTES])).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_and_account() {
        let sealed = key(1).seal(b"totp secret", "account-a").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"totp secret"));
        assert_eq!(
            key(1).open(&sealed, "account-a").unwrap().expose(),
            b"totp secret"
        );
        assert!(key(1).open(&sealed, "account-b").is_err());
        assert!(key(2).open(&sealed, "account-a").is_err());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(key(1).open(&tampered, "account-a").is_err());
        assert!(key(1).open(&sealed[..5], "account-a").is_err());
        // A fresh nonce each time.
        assert_ne!(sealed, key(1).seal(b"totp secret", "account-a").unwrap());
    }

    #[test]
    fn fingerprints_and_keyed_hashes_depend_on_the_key() {
        assert_eq!(key(1).fingerprint(), key(1).fingerprint());
        assert_ne!(key(1).fingerprint(), key(2).fingerprint());
        assert_eq!(key(1).fingerprint().len(), 32);
        assert_eq!(
            key(1).keyed_hash("backup", "abc"),
            key(1).keyed_hash("backup", "abc")
        );
        assert_ne!(
            key(1).keyed_hash("backup", "abc"),
            key(2).keyed_hash("backup", "abc")
        );
        assert!(DataKey::from_bytes(&SecretBytes::new(vec![0; 31])).is_none());
    }
}
