//! Key files (the JWT signing key, the data key): from a file (or systemd
//! credential), or generated into the data directory on first start.

use std::path::{Path, PathBuf};

use crate::files::{self, SecretFileError};
use crate::secret::SecretBytes;

pub const MIN_KEY_BYTES: usize = 32;
const GENERATED_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error(
        "key file {} holds {len} bytes; at least {MIN_KEY_BYTES} are required",
        .path.display()
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("no randomness for a new key: {0}")]
    NoRandomness(getrandom::Error),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads a key file; its raw bytes are the HMAC key.
pub fn load(path: &Path) -> Result<SecretBytes, KeyError> {
    let key = SecretBytes::new(files::read_secret_file(path)?);
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort {
            path: path.to_owned(),
            len: key.len(),
        });
    }
    Ok(key)
}

/// Loads `path`, creating it first with 256 random bits when it is missing.
/// Returns whether it was generated.
pub fn load_or_generate(path: &Path) -> Result<(SecretBytes, bool), KeyError> {
    if path.exists() {
        return load(path).map(|key| (key, false));
    }
    let mut key = vec![0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut key).map_err(KeyError::NoRandomness)?;
    files::write_private_file(path, &key).map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok((SecretBytes::new(key), true))
}
