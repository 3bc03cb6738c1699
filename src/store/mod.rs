//! Storage: one interface (`rows`: the row operations a backend supplies,
//! and `Tx`, a write transaction with its audit sink), one backend
//! (`sqlite`), and `Store`, which runs transaction scripts on the blocking
//! pool. Everything above it speaks domain types; the business logic that
//! composes row operations lives in `accounts`, written once for every
//! backend.

mod health;
mod postgres;
pub mod rows;
pub mod schema;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::Semaphore;

pub use self::postgres::url::{PostgresUrl, UrlError};
use crate::domain::api_key::KeySubject;
use crate::domain::audit::AuditEvent;
use crate::domain::key_usage::UsageDelta;
use crate::domain::user::TokenSubject;
use health::StorageHealth;
use rows::{Cutoffs, Prunable, Pruned, Reads, Tx};
pub use schema::{Outcome as MigrationOutcome, Status as SchemaStatus, refusal as schema_refusal};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "secure-api.db";

/// Between two retention batches: longer than most of SQLite's busy-handler
/// sleeps, so a writer waiting for the lock gets it before the next batch.
const PRUNE_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a user with that username or email already exists")]
    Duplicate,
    #[error("no such user")]
    NotFound,
    #[error("the database is busy")]
    Busy,
    /// The storage cannot take this for now (see `health::is_unavailable`),
    /// or no connection came free in time.
    #[error("storage unavailable: {0}")]
    Unavailable(BackendError),
    #[error("{0}")]
    Schema(String),
    /// The database cannot even be tried as configured (a CA file that
    /// cannot be read): the operator's to fix.
    #[error("{0}")]
    Config(String),
    #[error("no database at {0}")]
    Missing(PathBuf),
    #[error("{0}")]
    Backup(String),
    /// Anything else the database reported: a server error.
    #[error("database error: {0}")]
    Backend(BackendError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("database task ended abnormally")]
    Task,
}

/// A database driver's error, kept for the log without its type: what leaves
/// the store does not depend on the backend.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

impl StoreError {
    /// A failure of the storage rather than of the request or the code: a
    /// full, failing or read-only disk, or no connection to be had in time.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The error type of a transaction script: a storage error, or the
/// script's own refusal (which rolls the transaction back as well).
pub trait ScriptError: From<StoreError> + Send + 'static {
    /// The storage error inside, if this is one: the store watches them to
    /// tell whether the storage can take writes.
    fn as_store_error(&self) -> Option<&StoreError>;
}

impl ScriptError for StoreError {
    fn as_store_error(&self) -> Option<&StoreError> {
        Some(self)
    }
}

/// Options of the serving pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolOptions {
    /// Pooled connections: writes take turns anyway (one writer in WAL
    /// mode); more only serve reads that miss the user cache.
    pub connections: u32,
    /// Users whose state each runtime thread caches; 0 turns it off (see `user_cache`).
    pub user_cache_entries: usize,
    /// `PRAGMA max_page_count` on every pooled connection: tests use it to
    /// get SQLITE_FULL without filling a disk. `None` in a server.
    pub max_pages: Option<u32>,
}

/// The backends a `Store` can run on. A second one (PostgreSQL) is a second
/// variant here and a second implementation of `rows::{Reads, Rows}`; the
/// scripts in `accounts` do not change.
#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::Sqlite>),
}

/// Runs transaction scripts against the database, on the blocking pool.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// One permit per pooled connection: requests beyond that wait here, as
    /// cheap tasks, instead of as blocking threads parked on the pool.
    slots: Arc<Semaphore>,
    health: Arc<StorageHealth>,
}

impl Store {
    /// Opens (creating and initializing a new file) the database in
    /// `data_dir` for serving; a database that needs migrating is refused
    /// with the command to run.
    pub fn open(data_dir: &Path, options: PoolOptions) -> Result<Self, StoreError> {
        let db = sqlite::Sqlite::open(&data_dir.join(DB_FILE), options)?;
        Ok(Self {
            backend: Backend::Sqlite(Arc::new(db)),
            slots: Arc::new(Semaphore::new(options.connections.max(1) as usize)),
            health: Arc::default(),
        })
    }

    /// Ready means a write could start now: a database whose write lock is
    /// held for long cannot log anybody in. While writes are failing for a
    /// storage reason, it also means that a write of a few pages commits
    /// again (and then writes are healthy again): taking the lock alone
    /// works on a full disk too.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let failing = self.health.failing_since().is_some();
        let (backend, health) = (self.backend.clone(), Arc::clone(&self.health));
        self.run_blocking(move || {
            let result = match &backend {
                Backend::Sqlite(db) => db.ping(failing),
            };
            health.observe(result.as_ref().err(), failing);
            result
        })
        .await
    }

    /// Since when writes have been failing for a storage reason, if they are.
    pub fn failing_since(&self) -> Option<Instant> {
        self.health.failing_since()
    }

    /// Runs a read-only script on a pooled connection.
    pub async fn read<T, E>(
        &self,
        work: impl FnOnce(&mut dyn Reads) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: ScriptError,
    {
        let (backend, health) = (self.backend.clone(), Arc::clone(&self.health));
        self.run_blocking(move || {
            let result = match &backend {
                Backend::Sqlite(db) => db.read(work),
            };
            health.observe(result.as_ref().err().and_then(E::as_store_error), false);
            result
        })
        .await
    }

    /// Runs `work` in one write transaction, at `now`: committed when it
    /// returns Ok, rolled back otherwise. The audit events it recorded are
    /// logged once it has committed.
    pub async fn write<T, E>(
        &self,
        now: OffsetDateTime,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: ScriptError,
    {
        let (backend, health) = (self.backend.clone(), Arc::clone(&self.health));
        self.run_blocking(move || {
            let result = match &backend {
                Backend::Sqlite(db) => db.write(now, work),
            };
            health.observe(result.as_ref().err().and_then(E::as_store_error), true);
            let (value, recorded) = result?;
            recorded.iter().for_each(AuditEvent::log);
            Ok(value)
        })
        .await
    }

    /// Adds tallied API key usage in one transaction that leaves the user
    /// cache alone: nothing it holds depends on usage, and emptying it every
    /// few seconds would put a database read back on every request.
    pub async fn add_key_usage(
        &self,
        now: OffsetDateTime,
        deltas: Vec<UsageDelta>,
    ) -> Result<(), StoreError> {
        let (backend, health) = (self.backend.clone(), Arc::clone(&self.health));
        self.run_blocking(move || {
            let script = |tx: &mut Tx<'_>| deltas.iter().try_for_each(|d| tx.add_key_usage(d));
            let result = match &backend {
                Backend::Sqlite(db) => db.write_quiet(now, script),
            };
            health.observe(result.as_ref().err(), true);
            result.map(|((), _recorded)| ())
        })
        .await
    }

    /// Records an event that goes with no change of its own (a rate-limit
    /// refusal, a rejected token). A failure to store it is logged with the
    /// event, not returned: the request already has its outcome.
    pub async fn record_audit(&self, event: AuditEvent, now: OffsetDateTime) {
        let unstored = event.clone();
        if let Err(e) = self.write(now, move |tx| tx.record(event)).await {
            unstored.log();
            tracing::error!(error = %e, "could not store an audit event");
        }
    }

    /// The per-request check of an access token's user and session: from
    /// the user cache when it is current, else one primary-key read on the
    /// calling runtime thread that never waits for a lock, else (when it
    /// would have to wait) the same read on the blocking pool.
    pub async fn token_subject(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<Option<TokenSubject>, StoreError> {
        let Backend::Sqlite(db) = &self.backend;
        if let Some(cached) = db.cached_subject(user_id, session_id) {
            return Ok(Some(cached));
        }
        let read_at = db.cache_generation();
        let fast = db.fast_token_subject(user_id, session_id);
        self.health.observe(fast.as_ref().err(), false);
        let found = match fast {
            Err(StoreError::Busy) => {
                let (user, session) = (user_id.to_owned(), session_id.to_owned());
                Box::pin(self.read(move |rows| rows.token_subject(&user, &session))).await
            }
            other => other,
        }?;
        if let Some(subject) = &found {
            db.remember_subject(read_at, session_id, subject);
        }
        Ok(found)
    }

    /// The per-request check of an API key, by the digest of the presented
    /// key: like `token_subject`, from the per-thread cache when current,
    /// else one indexed read that never waits for a lock.
    pub async fn key_subject(&self, digest: &str) -> Result<Option<KeySubject>, StoreError> {
        let Backend::Sqlite(db) = &self.backend;
        if let Some(cached) = db.cached_key(digest) {
            return Ok(Some(cached));
        }
        let read_at = db.cache_generation();
        let fast = db.fast_key_subject(digest);
        self.health.observe(fast.as_ref().err(), false);
        let found = match fast {
            Err(StoreError::Busy) => {
                let digest = digest.to_owned();
                Box::pin(self.read(move |rows| rows.key_subject(&digest))).await
            }
            other => other,
        }?;
        if let Some(subject) = &found {
            db.remember_key(read_at, digest, subject);
        }
        Ok(found)
    }

    /// Settings read once at start-up, outside the async runtime.
    pub fn settings_blocking(&self) -> Result<Vec<(String, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.settings_blocking(),
        }
    }

    /// Deletes what is older than `cutoffs` (expired refresh tokens and
    /// families, old audit rows, old key usage) in batches of at most
    /// `batch` rows, each its own short write
    /// transaction, pausing between batches so that other writers (other
    /// processes too, whose busy handler polls) get the lock in between.
    pub async fn prune(&self, cutoffs: Cutoffs, batch: usize) -> Result<Pruned, StoreError> {
        let batch = batch.max(1);
        let mut pruned = Pruned::default();
        for what in Prunable::ALL {
            loop {
                let deleted = self
                    .write(cutoffs.sessions_before, move |tx| {
                        tx.delete_expired(what, cutoffs, batch)
                    })
                    .await?;
                pruned.add(what, deleted);
                if deleted < batch {
                    break;
                }
                tokio::time::sleep(PRUNE_PAUSE).await;
            }
        }
        Ok(pruned)
    }

    async fn run_blocking<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Task)?;
        let request = crate::telemetry::context::current();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            crate::telemetry::context::run_within(request, work)
        })
        .await
        .map_err(|_| StoreError::Task)?
    }
}

/// The database for a command that runs without `serve` or beside it
/// (`create-admin`, `unlock`): one connection, each script one transaction,
/// the schema checked first.
pub struct OfflineStore {
    db: sqlite::OfflineSqlite,
}

impl OfflineStore {
    /// Opens the database in `data_dir`, creating it when `create` is set;
    /// otherwise a missing database is an error, never created.
    pub fn open(data_dir: &Path, create: bool) -> Result<Self, StoreError> {
        let db = sqlite::OfflineSqlite::open(&data_dir.join(DB_FILE), create)?;
        Ok(Self { db })
    }

    /// `Store::write`, on the calling thread.
    pub fn write<T, E: ScriptError>(
        &mut self,
        now: OffsetDateTime,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let (value, recorded) = self.db.write(now, work)?;
        recorded.iter().for_each(AuditEvent::log);
        Ok(value)
    }
}

/// Where the data lives: the embedded SQLite file in a data directory, or a
/// PostgreSQL database shared by many nodes.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite { data_dir: PathBuf },
    Postgres(Box<PostgresUrl>),
}

impl std::fmt::Display for Location {
    /// For messages: the file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite { data_dir } => write!(f, "{}", database_path(data_dir).display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// Brings the database to the current schema (`secure-api migrate`),
/// creating the SQLite file if missing. Blocking: never call it on the
/// async runtime.
pub fn migrate(location: &Location) -> Result<MigrationOutcome, StoreError> {
    match location {
        Location::Sqlite { data_dir } => sqlite::migrate(&data_dir.join(DB_FILE)),
        Location::Postgres(url) => {
            postgres::migrations::Plan::CURRENT.migrate(&mut postgres::connect(url)?)
        }
    }
}

/// The schema version this binary works with there.
pub fn schema_target(location: &Location) -> u32 {
    match location {
        Location::Sqlite { .. } => sqlite::migrations::Plan::CURRENT.target(),
        Location::Postgres(_) => postgres::migrations::Plan::CURRENT.target(),
    }
}

/// The schema state, changing nothing (`migrate --check`); `None` when
/// there is no SQLite file yet.
pub fn schema_status(location: &Location) -> Result<Option<SchemaStatus>, StoreError> {
    match location {
        Location::Sqlite { data_dir } => sqlite::schema_status(&data_dir.join(DB_FILE)),
        Location::Postgres(url) => postgres::migrations::Plan::CURRENT
            .status(&mut postgres::connect(url)?)
            .map(Some),
    }
}

/// A consistent online copy of the database in `data_dir` to the new file
/// `dest` (see `sqlite::backup`).
pub fn backup(data_dir: &Path, dest: &Path) -> Result<(), StoreError> {
    sqlite::backup::backup(&data_dir.join(DB_FILE), dest)
}

/// The database file of `data_dir`, for messages.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}
