//! The only module that knows SQL. Everything above it speaks domain types and
//! async methods; every statement here runs on the blocking pool, write
//! transactions begin IMMEDIATE, and every connection gets the same pragmas.

pub mod backup;
pub mod migrations;
mod users;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use time::OffsetDateTime;

use crate::domain::user::{NewUser, User};
use crate::files;
use migrations::Plan;

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

    pub async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        self.write(move |tx| users::insert(tx, &user, now())).await
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
    let created = users::insert(&tx, user, now())?;
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

/// Wall-clock time at whole-second precision, as stored.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}
