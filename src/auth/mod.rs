//! Credentials: Argon2id hashing on its own threads, JWT issue and verify,
//! and loading or generating the signing key.

pub mod keys;
pub mod password;
pub mod tokens;
