//! The accounts layer: what happens to an account, decided once for every
//! backend and for both the API and the commands. Each operation is a
//! transaction script over `store::rows::Tx`: it re-reads what it decides
//! on inside the transaction, applies the policy (`domain::policy`,
//! `domain::lockout`), changes rows, and records its audit events in the
//! same transaction (the store logs them after the commit). Handlers and
//! commands parse input into domain types and call in here; nothing here
//! knows HTTP or SQL.

pub mod admin;
pub mod api_keys;
pub mod login;
pub mod profile;
pub mod register;
pub mod reports;
pub mod sessions;
pub mod settings;
pub mod two_factor;

use crate::domain::policy::{Actor, Denied};
use crate::store::rows::Reads;
use crate::store::{ScriptError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("a user with that username or email already exists")]
    Duplicate,
    #[error("no such user")]
    NotFound,
    #[error("refused by policy: {0:?}")]
    Denied(Denied),
    /// A sealed secret that does not open under the data key: the key
    /// changed behind the database's back, or the row was altered.
    #[error("a stored two-factor secret does not decrypt under the data key")]
    SecretUnreadable,
    #[error(
        "the data key is not the one that encrypted the {sealed} two-factor secret(s) in this \
         database; start with the original key (--data-key-file, the data-key credential or \
         data-key.key in the data directory), or turn 2FA off for those accounts with \
         `secure-api reset-2fa` first"
    )]
    DataKeyMismatch { sealed: i64 },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate => AccountError::Duplicate,
            StoreError::NotFound => AccountError::NotFound,
            other => AccountError::Store(other),
        }
    }
}

impl From<Denied> for AccountError {
    fn from(denied: Denied) -> Self {
        AccountError::Denied(denied)
    }
}

impl ScriptError for AccountError {
    fn as_store_error(&self) -> Option<&StoreError> {
        match self {
            AccountError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// The caller's rights as they are inside this transaction, not as they
/// were when the request was authenticated.
fn fresh_actor(rows: &mut (impl Reads + ?Sized), actor_id: &str) -> Result<Actor, AccountError> {
    let state = rows.auth_state(actor_id)?.ok_or(Denied::Forbidden(
        "You do not have permission to perform this action",
    ))?;
    Ok(Actor {
        user_id: actor_id.to_owned(),
        role: state.role,
        is_active: state.is_active,
    })
}
