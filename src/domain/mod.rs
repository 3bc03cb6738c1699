//! Domain types: parse, don't validate. A value of one of these types is valid
//! by construction; nothing here does I/O or knows about HTTP or SQL.

pub mod api_key;
pub mod audit;
pub mod email;
pub mod full_name;
pub mod key_usage;
pub mod lockout;
pub mod password;
pub mod policy;
pub mod rate;
pub mod rbac;
pub mod role;
pub mod user;
pub mod username;

/// Why a value was refused, phrased for the client (never echoing the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub &'static str);
