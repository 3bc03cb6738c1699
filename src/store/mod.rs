//! The only module that knows SQL. Everything above it speaks domain types and
//! async methods; every statement here runs on the blocking pool, write
//! transactions begin IMMEDIATE, and every connection gets the same pragmas.

pub mod audit;
pub mod backup;
pub mod health;
mod housekeeping;
pub mod migrations;
pub mod sessions;
mod settings;
mod user_cache;
mod users;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use thread_local::ThreadLocal;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::clock::Clock as _;

use crate::domain::audit::AuditEvent;
use crate::domain::audit::AuditKind;
use crate::domain::lockout::{self, LockoutPolicy, Seen, Verdict};
use crate::domain::policy::{self, Denied, UserPatch};
use crate::domain::role::Role;
use crate::domain::user::{Credentials, NewUser, TokenSubject, User};
use crate::files;
use audit::AuditRecord;
use health::StorageHealth;
pub use housekeeping::Pruned;
use migrations::Plan;
use sessions::{NewSession, Refresh, Rotated, Rotation};
use user_cache::UserCache;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "secure-api.db";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Readiness must answer quickly even when a writer holds the lock.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// Between two retention batches: longer than most of SQLite's busy-handler
/// sleeps, so a writer waiting for the lock gets it before the next batch.
const PRUNE_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a user with that username or email already exists")]
    Duplicate,
    #[error("no such user")]
    NotFound,
    #[error("refused by policy: {0:?}")]
    Denied(Denied),
    #[error("the database is busy")]
    Busy,
    /// The storage cannot take this for now (see `health::is_unavailable`),
    /// or no connection came free in time.
    #[error("storage unavailable: {0}")]
    Unavailable(BackendError),
    #[error("{0}")]
    Schema(String),
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

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(code) if health::is_unavailable(code) => {
                StoreError::Unavailable(BackendError(Box::new(e)))
            }
            _ => StoreError::Backend(BackendError(Box::new(e))),
        }
    }
}

/// The pool's only error is a timeout waiting for a connection.
impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(BackendError(Box::new(e)))
    }
}

impl StoreError {
    /// A failure of the storage rather than of the request or the code: a
    /// full, failing or read-only disk, or no connection to be had in time.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

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

/// What the readiness probe writes while the storage is failing: a few pages,
/// so that it needs room the way a registration does, not just page 1.
const PROBE_BYTES: i64 = 64 * 1024;

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
fn open_admin_connection(path: &Path, create: bool) -> Result<Connection, StoreError> {
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
    /// One permit per pooled connection: requests beyond that wait here, as
    /// cheap tasks, instead of as blocking threads parked on the pool.
    slots: Arc<Semaphore>,
    path: Arc<PathBuf>,
    /// Per runtime thread, a read-only connection that never waits for a
    /// lock (busy timeout 0), for the one read on every authenticated request.
    fast_readers: Arc<ThreadLocal<RefCell<Connection>>>,
    user_cache: Arc<UserCache>,
    health: Arc<StorageHealth>,
}

impl Store {
    /// Opens (creating and initializing a new file) the database in
    /// `data_dir` for serving; a database that needs migrating is refused
    /// with the command to run.
    pub fn open(data_dir: &Path, options: PoolOptions) -> Result<Self, StoreError> {
        let path = &data_dir.join(DB_FILE);
        {
            let mut conn = open_admin_connection(path, true)?;
            Plan::CURRENT.ensure_ready(&mut conn)?;
        }
        let max_pages = options.max_pages;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(READ_WRITE)
            .with_init(move |conn| {
                configure(conn)?;
                if let Some(pages) = max_pages {
                    conn.pragma_update(None, "max_page_count", pages)?;
                }
                Ok(())
            });
        let pool = Pool::builder()
            .max_size(options.connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            // A checkout test is an extra statement per query; a broken
            // connection shows up as the query's own error anyway.
            .test_on_check_out(false)
            .build(manager)?;
        let user_cache = Arc::new(UserCache::new(options.user_cache_entries));
        if user_cache.enabled() {
            user_cache::watch_other_writers(&user_cache, path).map_err(|source| {
                StoreError::Io {
                    context: "cannot start the database watcher thread".to_owned(),
                    source,
                }
            })?;
        }
        Ok(Self {
            pool,
            slots: Arc::new(Semaphore::new(options.connections.max(1) as usize)),
            path: Arc::new(path.to_owned()),
            fast_readers: Arc::new(ThreadLocal::new()),
            user_cache,
            health: Arc::default(),
        })
    }

    /// Ready means a write could start now: a database whose write lock is
    /// held for long cannot log anybody in. While writes are failing for a
    /// storage reason, it also means that a write of a few pages commits
    /// again (and then writes are healthy again): taking the lock alone
    /// works on a full disk too.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let health = Arc::clone(&self.health);
        let failing = health.failing_since().is_some();
        self.run_blocking(move || {
            let result = (|| {
                let conn = pool.get_timeout(READY_TIMEOUT)?;
                conn.busy_timeout(READY_TIMEOUT)?;
                let result = if failing {
                    probe_write(&conn)
                } else {
                    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
                        .map_err(StoreError::from)
                };
                if !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK")?;
                }
                conn.busy_timeout(BUSY_TIMEOUT)?;
                result
            })();
            health.observe(&result, failing);
            result
        })
        .await
    }

    /// Since when writes have been failing for a storage reason, if they are.
    pub fn failing_since(&self) -> Option<std::time::Instant> {
        self.health.failing_since()
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

    /// The per-request check of an access token's user and session: from
    /// the user cache when it is current (see `user_cache`), else one
    /// primary-key read.
    ///
    /// The read runs on the calling runtime thread, on that thread's own
    /// read-only connection with a busy timeout of 0: a point read from
    /// SQLite's cache takes microseconds, while handing it to the blocking pool
    /// costs two thread switches. When the read would have to wait
    /// (SQLITE_BUSY) it is retried on the blocking pool, so the runtime never
    /// waits for a lock.
    pub async fn token_subject(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<Option<TokenSubject>, StoreError> {
        if let Some(cached) = self.user_cache.get(session_id)
            && cached.user.id.as_str() == user_id
        {
            return Ok(Some(cached));
        }
        let read_at = self.user_cache.generation();
        let fast = self.fast_read(|conn| users::token_subject(conn, user_id, session_id));
        self.health.observe(&fast, false);
        let found = match fast {
            Err(StoreError::Busy) => {
                let (user, session) = (user_id.to_owned(), session_id.to_owned());
                Box::pin(self.read(move |conn| users::token_subject(conn, &user, &session))).await
            }
            other => other,
        }?;
        if let Some(subject) = &found {
            self.user_cache.put(read_at, session_id, subject);
        }
        Ok(found)
    }

    fn fast_read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let cell = self.fast_readers.get_or_try(|| {
            let conn = Connection::open_with_flags(
                self.path.as_path(),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::ZERO)?;
            conn.execute_batch("PRAGMA query_only = ON;")?;
            Ok::<_, StoreError>(RefCell::new(conn))
        })?;
        // Re-entrancy cannot happen (no await inside), but never panic on it.
        let conn = cell.try_borrow().map_err(|_| StoreError::Busy)?;
        work(&conn)
    }

    /// Settles a password check (login or change-password) inside one write
    /// transaction, against the account row as it is now rather than as it
    /// was when the Argon2 work started (see `lockout::settle`). Only an
    /// accepted check writes what the right password asked for; a wrong one
    /// is counted and may lock. `audit_for` turns the verdict into the audit
    /// events, stored here and returned for logging after the commit.
    pub async fn settle_password_check(
        &self,
        check: PasswordCheck,
        policy: LockoutPolicy,
        now: OffsetDateTime,
        audit_for: impl FnOnce(Verdict) -> Vec<AuditEvent> + Send + 'static,
    ) -> Result<Settled, StoreError> {
        self.write(move |tx| {
            let user_id = check.user_id.as_str();
            let matches = matches!(check.presented, Presented::Right(_));
            let verdict = match users::guard_state(tx, user_id)? {
                // Deleted while the hash ran: nothing to count or to grant.
                None => Verdict::Inactive,
                Some(row) => lockout::settle(policy, &row, &check.seen, matches, now),
            };
            let mut account = None;
            match (verdict, &check.presented) {
                (Verdict::WrongPassword(after), _) => users::store_failure(tx, user_id, after)?,
                (Verdict::Accepted, Presented::Right(on_accept)) => {
                    let session = match on_accept {
                        OnAccept::Login { rehash, session } => {
                            users::record_success(tx, user_id, rehash.as_deref())?;
                            session
                        }
                        OnAccept::ChangePassword { new_hash, session } => {
                            users::set_password(tx, user_id, new_hash, now)?;
                            sessions::revoke_all_for_user(tx, user_id, "password_change", now)?;
                            session
                        }
                    };
                    sessions::create(tx, user_id, session)?;
                    account = users::with_token_version(tx, user_id)?;
                }
                _ => {}
            }
            let events = audit_for(verdict);
            for event in &events {
                audit::insert(tx, event, now)?;
            }
            Ok(Settled {
                verdict,
                account,
                events,
            })
        })
        .await
    }

    /// What change-password checks the current password against.
    pub async fn credentials_by_id(
        &self,
        user_id: String,
    ) -> Result<Option<Credentials>, StoreError> {
        self.read(move |conn| users::credentials_by_id(conn, &user_id))
            .await
    }

    /// Rotates a refresh token (see `sessions::rotate`); `audit_for` names
    /// the events a rotation amounts to, stored in the same transaction and
    /// returned for logging.
    pub async fn rotate_refresh(
        &self,
        refresh: Refresh,
        now: OffsetDateTime,
        audit_for: impl FnOnce(&Rotation) -> Vec<AuditEvent> + Send + 'static,
    ) -> Result<Rotated, StoreError> {
        self.write(move |tx| {
            let outcome = sessions::rotate(tx, &refresh, now)?;
            let events = audit_for(&outcome);
            for event in &events {
                audit::insert(tx, event, now)?;
            }
            Ok(Rotated { outcome, events })
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

    /// Logs and stores an event that goes with no change of its own (a
    /// rate-limit refusal, a rejected token). A failure to store it is
    /// logged, not returned: the request already has its outcome.
    pub async fn record_audit(&self, event: AuditEvent, now: OffsetDateTime) {
        event.log();
        if let Err(e) = self.write(move |tx| audit::insert(tx, &event, now)).await {
            tracing::error!(error = %e, "could not store an audit event");
        }
    }

    pub async fn list_users(
        &self,
        offset: i64,
        limit: i64,
        role: Option<Role>,
    ) -> Result<(Vec<User>, i64), StoreError> {
        self.read(move |conn| users::list(conn, offset, limit, role))
            .await
    }

    /// Creates an account on behalf of `actor_id`, whose rights are re-read here.
    pub async fn create_user_by(
        &self,
        actor_id: String,
        user: NewUser,
        now: OffsetDateTime,
        mut event: AuditEvent,
    ) -> Result<User, StoreError> {
        self.write(move |tx| {
            let actor = users::actor(tx, &actor_id)?.ok_or(StoreError::Denied(
                Denied::Forbidden("You do not have permission to perform this action"),
            ))?;
            policy::check_create(&actor, user.role).map_err(StoreError::Denied)?;
            let created = users::insert(tx, &user, now)?;
            event.user_id = Some(created.id.as_str().to_owned());
            audit::insert(tx, &event, now)?;
            Ok(created)
        })
        .await
    }

    /// Applies an admin's or moderator's change after the policy checks, all in
    /// one transaction: two concurrent demotions cannot both see two admins.
    /// A role change or deactivation ends the user's sessions and tokens.
    pub async fn patch_user(
        &self,
        actor_id: String,
        target_id: String,
        patch: UserPatch,
        now: OffsetDateTime,
        base: AuditEvent,
    ) -> Result<(User, Vec<AuditEvent>), StoreError> {
        self.write(move |tx| {
            let actor = fresh_actor(tx, &actor_id)?;
            let target = users::by_id(tx, &target_id)?.ok_or(StoreError::NotFound)?;
            let admins = users::count_active_admins(tx)?;
            policy::check_patch(&actor, &target, &patch, admins).map_err(StoreError::Denied)?;
            let updated = users::apply_patch(tx, &target_id, &patch, now)?;
            let mut events = changes(&base, &target, &updated, &actor_id);
            if patch.changes_role_of(&target) || patch.changes_activation_of(&target) {
                users::bump_token_version(tx, &target_id)?;
                sessions::revoke_all_for_user(tx, &target_id, "account_changed", now)?;
            }
            for event in &mut events {
                audit::insert(tx, event, now)?;
            }
            Ok((updated, events))
        })
        .await
    }

    /// The caller's own name and email (`PUT /users/me`).
    pub async fn update_own_profile(
        &self,
        user_id: String,
        patch: UserPatch,
        now: OffsetDateTime,
        base: AuditEvent,
    ) -> Result<(User, Vec<AuditEvent>), StoreError> {
        let patch = UserPatch {
            role: None,
            is_active: None,
            ..patch
        };
        self.write(move |tx| {
            let before = users::by_id(tx, &user_id)?.ok_or(StoreError::NotFound)?;
            let updated = users::apply_patch(tx, &user_id, &patch, now)?;
            let events = changes(&base, &before, &updated, &user_id);
            for event in &events {
                audit::insert(tx, event, now)?;
            }
            Ok((updated, events))
        })
        .await
    }

    pub async fn delete_user(
        &self,
        actor_id: String,
        target_id: String,
        now: OffsetDateTime,
        mut event: AuditEvent,
    ) -> Result<AuditEvent, StoreError> {
        self.write(move |tx| {
            let actor = fresh_actor(tx, &actor_id)?;
            let target = users::by_id(tx, &target_id)?.ok_or(StoreError::NotFound)?;
            let admins = users::count_active_admins(tx)?;
            policy::check_delete(&actor, &target, admins).map_err(StoreError::Denied)?;
            users::delete(tx, &target_id)?;
            event.user_id = Some(target_id.clone());
            event.detail = serde_json::json!({
                "actor_id": actor_id,
                "username": target.username,
                "role": target.role.as_str(),
            });
            audit::insert(tx, &event, now)?;
            Ok(event)
        })
        .await
    }

    pub async fn unlock_user(
        &self,
        actor_id: String,
        target_id: String,
        now: OffsetDateTime,
        mut event: AuditEvent,
    ) -> Result<(User, AuditEvent), StoreError> {
        self.write(move |tx| {
            let actor = fresh_actor(tx, &actor_id)?;
            let target = users::by_id(tx, &target_id)?.ok_or(StoreError::NotFound)?;
            policy::check_unlock(&actor, &target).map_err(StoreError::Denied)?;
            users::unlock(tx, &target_id, now)?;
            event.user_id = Some(target_id.clone());
            event.detail = serde_json::json!({ "actor_id": actor_id });
            audit::insert(tx, &event, now)?;
            let user = users::by_id(tx, &target_id)?.ok_or(StoreError::NotFound)?;
            Ok((user, event))
        })
        .await
    }

    pub async fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(settings::all).await
    }

    pub async fn put_settings(
        &self,
        values: Vec<(String, String)>,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            for (key, value) in &values {
                settings::put(tx, key, value)?;
            }
            audit::insert(tx, &event, now)
        })
        .await
    }

    /// Settings read once at start-up, outside the async runtime.
    pub fn settings_blocking(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.pool.get()?;
        settings::all(&conn)
    }

    pub async fn stats(&self, now: OffsetDateTime) -> Result<Stats, StoreError> {
        self.read(move |conn| {
            Ok(Stats {
                users_by_role: users::role_counts(conn)?,
                active_users: users::count_where_active(conn)?,
                locked_users: users::count_locked(conn, now)?,
                active_sessions: sessions::count_live(conn, now)?,
                failed_logins_24h: audit::count_since(
                    conn,
                    AuditKind::LoginFailure.as_str(),
                    now - time::Duration::hours(24),
                )?,
            })
        })
        .await
    }

    pub async fn list_audit(
        &self,
        offset: i64,
        limit: i64,
        event: Option<AuditKind>,
        user_id: Option<String>,
    ) -> Result<(Vec<AuditRecord>, i64), StoreError> {
        self.read(move |conn| {
            audit::list(
                conn,
                offset,
                limit,
                event.map(AuditKind::as_str),
                user_id.as_deref(),
            )
        })
        .await
    }

    /// Deletes refresh tokens and families that expired before
    /// `sessions_before` and audit rows older than `audit_before`, in
    /// batches of at most `batch` rows, each its own short write
    /// transaction, pausing between batches so that other writers (other
    /// processes too, whose busy handler polls) get the lock in between.
    pub async fn prune(
        &self,
        sessions_before: OffsetDateTime,
        audit_before: OffsetDateTime,
        batch: usize,
    ) -> Result<Pruned, StoreError> {
        let batch = batch.max(1);
        let mut pruned = Pruned::default();
        for what in housekeeping::Prunable::ALL {
            loop {
                let deleted = self
                    .write(move |tx| {
                        housekeeping::delete_batch(tx, what, sessions_before, audit_before, batch)
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

    async fn run_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
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

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let health = Arc::clone(&self.health);
        self.run_blocking(move || {
            let result = pool
                .get()
                .map_err(StoreError::from)
                .and_then(|conn| work(&conn));
            health.observe(&result, false);
            result
        })
        .await
    }

    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let user_cache = Arc::clone(&self.user_cache);
        let health = Arc::clone(&self.health);
        self.run_blocking(move || {
            let result = (|| -> Result<T, StoreError> {
                let mut conn = pool.get()?;
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = work(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            // After the transaction has ended, whatever its outcome: a reader
            // that saw the old generation must not keep what it read.
            user_cache.invalidate();
            health.observe(&result, true);
            result
        })
        .await
    }
}

/// Writes a few pages and takes them away again in one committed
/// transaction: it needs room in the WAL (and pages under `max_page_count`)
/// like any other write, and leaves no row behind.
fn probe_write(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    conn.prepare_cached("INSERT INTO storage_probe (filler) VALUES (zeroblob(?1))")?
        .execute([PROBE_BYTES])?;
    conn.prepare_cached("DELETE FROM storage_probe")?
        .execute([])?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// The database for a command that runs without `serve` or beside it
/// (`create-admin`, `unlock`): one connection, each operation one
/// transaction, the schema checked first.
pub struct OfflineStore {
    conn: Connection,
}

impl OfflineStore {
    /// Opens the database at `path`, creating it when `create` is set;
    /// otherwise a missing database is an error, never created.
    pub fn open(path: &Path, create: bool) -> Result<Self, StoreError> {
        let mut conn = open_admin_connection(path, create)?;
        Plan::CURRENT.ensure_ready(&mut conn)?;
        Ok(Self { conn })
    }

    pub fn create_user(&mut self, user: &NewUser) -> Result<User, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let created = users::insert(&tx, user, crate::clock::SystemClock.now())?;
        tx.commit()?;
        Ok(created)
    }

    /// Clears the lockout of the account with `email` and audits it, in one
    /// transaction; `None` when there is no such account.
    pub fn unlock_by_email(
        &mut self,
        email: &str,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> Result<Option<Unlocked>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(found) = users::credentials_by_email(&tx, email)? else {
            return Ok(None);
        };
        let user_id = found.user.id.as_str().to_owned();
        let was_locked = users::guard_state(&tx, &user_id)?
            .and_then(|state| state.locked_until)
            .is_some_and(|until| until > now);
        users::unlock(&tx, &user_id, now)?;
        let mut event = event;
        event.user_id = Some(user_id);
        audit::insert(&tx, &event, now)?;
        tx.commit()?;
        Ok(Some(Unlocked {
            user: found.user,
            was_locked,
        }))
    }
}

/// What `secure-api unlock` found and did.
#[derive(Debug)]
pub struct Unlocked {
    pub user: User,
    /// Whether a lock was in force (a count of failures alone is cleared too).
    pub was_locked: bool,
}

/// A finished Argon2 check of a password against `seen`.
#[derive(Debug, Clone)]
pub struct PasswordCheck {
    pub user_id: String,
    pub seen: Seen,
    pub presented: Presented,
}

impl PasswordCheck {
    /// The check of a password against `credentials` as they were read.
    pub fn against(credentials: Credentials, presented: Presented) -> Self {
        Self {
            user_id: credentials.user.id.as_str().to_owned(),
            seen: Seen {
                password_hash: credentials.password_hash,
                token_version: credentials.token_version,
            },
            presented,
        }
    }
}

/// The outcome of the Argon2 check, and what the right password is for.
#[derive(Debug, Clone)]
pub enum Presented {
    Wrong,
    Right(OnAccept),
}

/// What an accepted password check writes.
#[derive(Debug, Clone)]
pub enum OnAccept {
    /// A new login; `rehash` replaces a hash made with older parameters.
    Login {
        rehash: Option<String>,
        session: NewSession,
    },
    /// A new password: every other login ends, the caller gets `session`.
    ChangePassword {
        new_hash: String,
        session: NewSession,
    },
}

#[derive(Debug)]
pub struct Settled {
    pub verdict: Verdict,
    /// The account and its token version, after an accepted check.
    pub account: Option<(User, i64)>,
    pub events: Vec<AuditEvent>,
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub users_by_role: Vec<(Role, i64)>,
    pub active_users: i64,
    pub locked_users: i64,
    pub active_sessions: i64,
    pub failed_logins_24h: i64,
}

fn fresh_actor(conn: &Connection, actor_id: &str) -> Result<policy::Actor, StoreError> {
    users::actor(conn, actor_id)?.ok_or(StoreError::Denied(Denied::Forbidden(
        "You do not have permission to perform this action",
    )))
}

/// The audit events a change from `before` to `after` amounts to.
fn changes(base: &AuditEvent, before: &User, after: &User, actor_id: &str) -> Vec<AuditEvent> {
    let mut events = Vec::new();
    let mut fields = Vec::new();
    if before.full_name != after.full_name {
        fields.push("full_name");
    }
    if before.email != after.email {
        fields.push("email");
    }
    let mut event = |kind, detail: serde_json::Value| {
        let mut e = base.follow_up(kind, detail);
        e.user_id = Some(after.id.as_str().to_owned());
        events.push(e);
    };
    if !fields.is_empty() {
        event(
            AuditKind::ProfileChange,
            serde_json::json!({ "fields": fields, "actor_id": actor_id }),
        );
    }
    if before.role != after.role {
        event(
            AuditKind::RoleChange,
            serde_json::json!({ "from": before.role.as_str(), "to": after.role.as_str(), "actor_id": actor_id }),
        );
    }
    if before.is_active != after.is_active {
        event(
            AuditKind::ActivationChange,
            serde_json::json!({ "is_active": after.is_active, "actor_id": actor_id }),
        );
    }
    events
}
