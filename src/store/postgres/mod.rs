//! The PostgreSQL backend: one database shared by any number of nodes
//! (`--database-url`). It will supply the row operations of `store::rows`
//! over the `postgres` driver, as the SQLite backend does over its own;
//! today it connects (TLS verified, see `url` and `tls`) and keeps the
//! schema (`migrations`). Nothing of the driver leaves this module: its
//! errors become `StoreError`s here.

pub mod migrations;
mod tls;
pub mod url;

use postgres::error::SqlState;

use super::{BackendError, StoreError};
use url::{PostgresUrl, Transport};

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let Some(code) = e.code() else {
            // No SQLSTATE: either the connection (closed, reset: the
            // database is not there for now) or this side (a value that
            // does not convert: a server error).
            let lost = e.is_closed()
                || std::error::Error::source(&e)
                    .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
            return if lost {
                StoreError::Unavailable(BackendError::new(e))
            } else {
                StoreError::Backend(BackendError::new(e))
            };
        };
        if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            StoreError::Busy
        } else if is_unavailable(code) {
            StoreError::Unavailable(BackendError::new(e))
        } else {
            StoreError::Backend(BackendError::new(e))
        }
    }
}

/// The SQLSTATEs that mean "the database cannot take this for now" and
/// clear up without a code change: a server shutting down or starting,
/// too many connections, a full disk, a read-only standby.
fn is_unavailable(code: &SqlState) -> bool {
    [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::DISK_FULL,
        SqlState::INSUFFICIENT_RESOURCES,
        SqlState::OUT_OF_MEMORY,
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::CONNECTION_EXCEPTION,
        SqlState::CONNECTION_FAILURE,
    ]
    .contains(code)
}

/// One connection for a command (`migrate`): called outside any async
/// runtime (the driver runs one of its own). A plaintext connection to a
/// network host is allowed only because the URL asked for it, and said so.
pub fn connect(url: &PostgresUrl) -> Result<postgres::Client, StoreError> {
    let connected = match url.transport() {
        Transport::VerifiedTls { root_cert } => {
            let connector = tls::verified(root_cert.as_deref())?;
            url.config().connect(connector)
        }
        Transport::UnixSocket => url.config().connect(postgres::NoTls),
        Transport::Plaintext => {
            tracing::warn!(
                database = %url,
                "sslmode=disable: the connection to the database is not encrypted"
            );
            url.config().connect(postgres::NoTls)
        }
    };
    connected.map_err(|e| connect_error(url, e))
}

/// A connection that failed: what the operator needs (which database, why),
/// never the password.
fn connect_error(url: &PostgresUrl, e: postgres::Error) -> StoreError {
    let reason = std::error::Error::source(&e)
        .map_or_else(|| e.to_string(), |source| format!("{e}: {source}"));
    StoreError::Unavailable(BackendError::new(std::io::Error::other(format!(
        "cannot connect to {url}: {reason}"
    ))))
}
