//! Credentials: password hashing now; tokens and RBAC build on this module.

pub mod keys;
pub mod password;
pub mod tokens;
