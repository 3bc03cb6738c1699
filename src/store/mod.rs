//! The only module that knows SQL. Everything above it speaks domain types and
//! async methods; every statement here runs on the blocking pool, write
//! transactions begin IMMEDIATE, and every connection gets the same pragmas.

mod audit;
pub mod backup;
pub mod migrations;
pub mod sessions;
mod users;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use time::OffsetDateTime;

use crate::clock::Clock as _;

use crate::domain::audit::AuditEvent;
use crate::domain::lockout::LockoutPolicy;
use crate::domain::user::{AuthState, Credentials, NewUser, User};
use crate::files;
use migrations::Plan;
use sessions::{NewSession, Rotation};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "secure-api.db";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Readiness must answer quickly even when a writer holds the lock.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a user with that username or email already exists")]
    Duplicate,
    #[error("the database is busy")]
    Busy,
    #[error("{0}")]
    Schema(String),
    #[error("no database at {0}")]
    Missing(PathBuf),
    #[error("{0}")]
    Backup(String),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("database task ended abnormally")]
    Task,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            _ => StoreError::Sqlite(e),
        }
    }
}

impl StoreError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Pragmas every connection gets: WAL itself is set once, on the file.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    Ok(conn)
}

const READ_WRITE: OpenFlags = OpenFlags::SQLITE_OPEN_READ_WRITE
    .union(OpenFlags::SQLITE_OPEN_NO_MUTEX)
    .union(OpenFlags::SQLITE_OPEN_URI);

/// Opens the database file for one-off administrative work, creating it
/// (mode 0600) when `create` is set; WAL mode is switched on for good.
pub fn open_admin_connection(path: &Path, create: bool) -> Result<Connection, StoreError> {
    if !path.exists() {
        if !create {
            return Err(StoreError::Missing(path.to_owned()));
        }
        // SQLite gives its -wal and -shm files the database file's mode.
        files::create_private_file(path)
            .map_err(|e| StoreError::io(format!("cannot create {}", path.display()), e))?;
    }
    let conn = open_connection(path, READ_WRITE)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Schema(format!(
            "the database refused WAL journal mode (got {mode})"
        )));
    }
    Ok(conn)
}

/// Brings the database at `path` to the current schema (creating it if
/// missing) for `secure-api migrate`.
pub fn migrate(path: &Path) -> Result<migrations::Outcome, StoreError> {
    let mut conn = open_admin_connection(path, true)?;
    Plan::CURRENT.migrate(&mut conn)
}

/// Reports the schema state without changing anything (`migrate --check`).
pub fn schema_status(path: &Path) -> Result<Option<migrations::Status>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = open_connection(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    Plan::CURRENT.status(&conn).map(Some)
}

/// A pool of configured connections to a database at the current schema.
#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
}

impl Store {
    /// Opens (creating and initializing a new file) the database for serving;
    /// a database that needs migrating is refused with the command to run.
    pub fn open(path: &Path, pool_size: u32) -> Result<Self, StoreError> {
        {
            let mut conn = open_admin_connection(path, true)?;
            Plan::CURRENT.ensure_ready(&mut conn)?;
        }
        let manager = SqliteConnectionManager::file(path)
            .with_flags(READ_WRITE)
            .with_init(|conn| configure(conn));
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            .build(manager)?;
        Ok(Self { pool })
    }

    /// Ready means a write could start now: a database whose write lock is
    /// held for long cannot log anybody in.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        run_blocking(move || {
            let conn = pool.get_timeout(READY_TIMEOUT)?;
            conn.busy_timeout(READY_TIMEOUT)?;
            let result = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;");
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK")?;
            }
            conn.busy_timeout(BUSY_TIMEOUT)?;
            result.map_err(StoreError::from)
        })
        .await
    }

    pub async fn create_user(
        &self,
        user: NewUser,
        now: OffsetDateTime,
        audit: Option<AuditEvent>,
    ) -> Result<User, StoreError> {
        self.write(move |tx| {
            let created = users::insert(tx, &user, now)?;
            if let Some(mut event) = audit {
                event.user_id = Some(created.id.as_str().to_owned());
                audit::insert(tx, &event, now)?;
            }
            Ok(created)
        })
        .await
    }

    pub async fn credentials_by_email(
        &self,
        email: String,
    ) -> Result<Option<Credentials>, StoreError> {
        self.read(move |conn| users::credentials_by_email(conn, &email))
            .await
    }

    pub async fn user_by_id(&self, user_id: String) -> Result<Option<User>, StoreError> {
        self.read(move |conn| users::by_id(conn, &user_id)).await
    }

    /// The per-request check of a bearer token's user: one primary-key read.
    pub async fn auth_state(&self, user_id: String) -> Result<Option<AuthState>, StoreError> {
        self.read(move |conn| users::auth_state(conn, &user_id))
            .await
    }

    /// Records a wrong password (and the lockout it may cause) with its audit
    /// rows in one transaction; returns the lock end when this failure locks.
    pub async fn login_failed(
        &self,
        user_id: String,
        policy: LockoutPolicy,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        self.write(move |tx| {
            let locked_until = users::record_failure(tx, &user_id, policy, now)?;
            audit::insert(tx, &event, now)?;
            if let Some(until) = locked_until {
                let lock = event.follow_up(
                    crate::domain::audit::AuditKind::Lockout,
                    serde_json::json!({ "locked_until": until.unix_timestamp() }),
                );
                audit::insert(tx, &lock, now)?;
            }
            Ok(locked_until)
        })
        .await
    }

    /// A successful login: counters reset, hash upgraded if asked, the first
    /// refresh token of a new family stored, the audit row written.
    pub async fn login_succeeded(
        &self,
        user_id: String,
        new_hash: Option<String>,
        session: NewSession,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            users::record_success(tx, &user_id, new_hash.as_deref())?;
            sessions::create(tx, &user_id, &session)?;
            audit::insert(tx, &event, session.issued_at)
        })
        .await
    }

    /// Rotates a refresh token; on reuse of a consumed token after the grace
    /// window the family is revoked and `reuse_event` (completed with the
    /// user) recorded in the same transaction.
    pub async fn rotate_refresh(
        &self,
        jti: String,
        new_jti: String,
        now: OffsetDateTime,
        grace: time::Duration,
        token_lifetime: time::Duration,
        reuse_event: AuditEvent,
    ) -> Result<Rotation, StoreError> {
        self.write(move |tx| {
            let rotation = sessions::rotate(tx, &jti, &new_jti, now, grace, token_lifetime)?;
            if let Rotation::ReuseDetected { user_id, family_id } = &rotation {
                let mut event = reuse_event;
                event.user_id = Some(user_id.clone());
                event.detail = serde_json::json!({ "family_id": family_id });
                audit::insert(tx, &event, now)?;
            }
            Ok(rotation)
        })
        .await
    }

    /// Ends one login; the audit row names its user when the family was live.
    pub async fn logout(
        &self,
        family_id: Option<String>,
        now: OffsetDateTime,
        mut event: AuditEvent,
    ) -> Result<AuditEvent, StoreError> {
        self.write(move |tx| {
            if let Some(family_id) = family_id {
                event.user_id = sessions::revoke_family(tx, &family_id, "logout", now)?;
            }
            audit::insert(tx, &event, now)?;
            Ok(event)
        })
        .await
    }

    /// Ends every login of a user and invalidates every access token issued so far.
    pub async fn logout_all(
        &self,
        user_id: String,
        now: OffsetDateTime,
        mut event: AuditEvent,
    ) -> Result<AuditEvent, StoreError> {
        self.write(move |tx| {
            users::bump_token_version(tx, &user_id)?;
            let ended = sessions::revoke_all_for_user(tx, &user_id, "logout_all", now)?;
            event.detail = serde_json::json!({ "sessions_ended": ended });
            audit::insert(tx, &event, now)?;
            Ok(event)
        })
        .await
    }

    pub async fn record_audit(
        &self,
        event: AuditEvent,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.write(move |tx| audit::insert(tx, &event, now)).await
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        run_blocking(move || {
            let conn = pool.get()?;
            work(&conn)
        })
        .await
    }

    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        run_blocking(move || {
            let mut conn = pool.get()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }
}

/// Creates a user through a one-off connection (for `create-admin`).
pub fn create_user_blocking(conn: &mut Connection, user: &NewUser) -> Result<User, StoreError> {
    Plan::CURRENT.ensure_ready(conn)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let created = users::insert(&tx, user, crate::clock::SystemClock.now())?;
    tx.commit()?;
    Ok(created)
}

async fn run_blocking<T, F>(work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|_| StoreError::Task)?
}
