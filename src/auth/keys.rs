//! The JWT signing key: from a file (or systemd credential), or generated
//! into the data directory on first start.

use std::path::Path;

use crate::files;
use crate::secret::SecretBytes;

pub const MIN_KEY_BYTES: usize = 32;
const GENERATED_KEY_BYTES: usize = 32;

/// Reads a key file; its raw bytes are the HMAC key.
pub fn load(path: &Path) -> Result<SecretBytes, String> {
    let key = SecretBytes::new(files::read_secret_file(path)?);
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "JWT key file {} holds {} bytes; at least {MIN_KEY_BYTES} are required",
            path.display(),
            key.len()
        ));
    }
    Ok(key)
}

/// Loads `path`, creating it first with 256 random bits when it is missing.
/// Returns whether it was generated.
pub fn load_or_generate(path: &Path) -> Result<(SecretBytes, bool), String> {
    if path.exists() {
        return load(path).map(|key| (key, false));
    }
    let mut key = vec![0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness for the JWT key: {e}"))?;
    files::write_private_file(path, &key)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((SecretBytes::new(key), true))
}
