//! The route table (`table`), request handlers and their wire DTOs, one
//! module per area. Handlers parse DTOs into domain types, call `accounts`
//! and the hasher, and build DTOs back.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod dto;
pub mod health;
pub mod sessions;
pub mod table;
pub mod two_factor;
pub mod users;

use std::borrow::Cow;

use crate::accounts::AccountError;
use crate::domain::policy::Denied;
use crate::http::error::ApiError;

/// How an account operation's refusal reads on the wire; a handler that
/// must not tell a taken username from a taken email maps `Duplicate`
/// itself first.
impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound => ApiError::NotFound,
            AccountError::Duplicate => ApiError::Conflict {
                code: "duplicate_user",
                detail: "A user with that username or email already exists",
            },
            AccountError::Denied(Denied::SelfProtection(detail)) => ApiError::BadRequest {
                code: "self_protection",
                detail: Cow::Borrowed(detail),
            },
            AccountError::Denied(Denied::Forbidden(detail)) => ApiError::Forbidden {
                code: "forbidden",
                detail,
            },
            AccountError::Denied(Denied::LastAdmin) => ApiError::Conflict {
                code: "last_admin",
                detail: "The last active admin cannot be removed, demoted or deactivated",
            },
            AccountError::Store(e) => ApiError::from(e),
            other @ (AccountError::SecretUnreadable | AccountError::DataKeyMismatch { .. }) => {
                ApiError::internal(other)
            }
        }
    }
}
