//! Credentials: Argon2id hashing on its own threads, JWT issue and verify,
//! TOTP codes and backup codes, and the keys (the signing key, the data key
//! that encrypts secrets at rest).

pub mod api_keys;
pub mod backup_codes;
pub mod data_key;
pub mod keys;
pub mod password;
pub mod tokens;
pub mod totp;
