//! The SQLite backend: the embedded database file in the data directory.
//! It supplies the row operations of `store::rows` over a rusqlite
//! connection and runs scripts in IMMEDIATE transactions on pooled
//! connections that all get the same pragmas. Nothing of rusqlite leaves
//! this module: its errors become `StoreError`s here.

mod api_keys;
mod audit;
pub mod backup;
mod housekeeping;
pub mod migrations;
mod sessions;
mod settings;
mod two_factor;
mod user_cache;
mod users;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use thread_local::ThreadLocal;
use time::{Date, OffsetDateTime};

use super::rows::{
    AuditRecord, Cutoffs, NewRefreshToken, NewSession, Prunable, Reads, Rows, SessionEnd,
    SessionRecord, StoredRefresh, TwoFactorState, Tx,
};
use super::{BackendError, PoolOptions, StoreError};
use crate::domain::api_key::{ApiKey, KeySubject, NewApiKey};
use crate::domain::audit::{AuditEvent, AuditKind};
use crate::domain::key_usage::{KeyUsage, UsageDelta};
use crate::domain::lockout::{AfterFailure, GuardState};
use crate::domain::policy::UserPatch;
use crate::domain::role::Role;
use crate::domain::user::{AuthState, Credentials, NewUser, TokenSubject, User};
use crate::files;
use migrations::Plan;
use user_cache::{UserCache, WatchedConnection};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Readiness must answer quickly even when a writer holds the lock.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// What the readiness probe writes while the storage is failing: a few pages,
/// so that it needs room the way a registration does, not just page 1.
const PROBE_BYTES: i64 = 64 * 1024;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(code) if is_unavailable(code) => StoreError::Unavailable(BackendError::new(e)),
            _ => StoreError::Backend(BackendError::new(e)),
        }
    }
}

/// The pool's only error is a timeout waiting for a connection.
impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(BackendError::new(e))
    }
}

/// The SQLite result codes that mean "the storage cannot take this for now":
/// a full disk (or a full database under `max_page_count`), an I/O error, a
/// read-only file system or database file, a file that cannot be opened, and
/// a broken WAL lock protocol. They clear up without a code change, so the
/// client is told to come back (503); everything else (a constraint, a
/// damaged database, misuse) stays a server error. Busy and locked have their
/// own mapping (`StoreError::Busy`).
fn is_unavailable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::FileLockingProtocolFailed
    )
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

const READ_ONLY: OpenFlags =
    OpenFlags::SQLITE_OPEN_READ_ONLY.union(OpenFlags::SQLITE_OPEN_NO_MUTEX);

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

/// Brings the database at `path` to the current schema, creating it if missing.
pub(super) fn migrate(path: &Path) -> Result<migrations::Outcome, StoreError> {
    let mut conn = open_admin_connection(path, true)?;
    Plan::CURRENT.migrate(&mut conn)
}

/// The schema state, changing nothing; `None` when there is no database.
pub(super) fn schema_status(path: &Path) -> Result<Option<migrations::Status>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = open_connection(path, READ_ONLY)?;
    Plan::CURRENT.status(&conn).map(Some)
}

/// Runs `work` in an IMMEDIATE transaction on `conn`: committed when it
/// returns Ok, rolled back otherwise. Returns what it recorded for the log.
fn in_transaction<T, E: From<StoreError>>(
    conn: &mut Connection,
    now: OffsetDateTime,
    work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
) -> Result<(T, Vec<AuditEvent>), E> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::from)?;
    let mut rows = SqliteRows(&tx);
    let mut script = Tx::new(&mut rows, now);
    let value = work(&mut script)?;
    let recorded = script.into_recorded();
    tx.commit().map_err(StoreError::from)?;
    Ok((value, recorded))
}

/// The serving pool of one database file.
pub(super) struct Sqlite {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// Per runtime thread, a read-only connection that never waits for a
    /// lock (busy timeout 0), for the one read on every authenticated request.
    fast_readers: ThreadLocal<RefCell<Connection>>,
    user_cache: std::sync::Arc<UserCache>,
    /// The connection the cache's watcher looks through, for writes that
    /// must not empty the cache.
    watched: std::sync::Arc<WatchedConnection>,
}

impl Sqlite {
    /// Opens (creating and initializing a new file) the database at `path`;
    /// a database that needs migrating is refused with the command to run.
    pub(super) fn open(path: &Path, options: PoolOptions) -> Result<Self, StoreError> {
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
        let user_cache = std::sync::Arc::new(UserCache::new(options.user_cache_entries));
        let watched = std::sync::Arc::new(WatchedConnection::new(path));
        if user_cache.enabled() {
            user_cache::watch_other_writers(&user_cache, std::sync::Arc::clone(&watched))
                .map_err(|e| StoreError::io("cannot start the database watcher thread", e))?;
        }
        Ok(Self {
            pool,
            path: path.to_owned(),
            fast_readers: ThreadLocal::new(),
            user_cache,
            watched,
        })
    }

    pub(super) fn read<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut dyn Reads) -> Result<T, E>,
    ) -> Result<T, E> {
        let conn = self.pool.get().map_err(StoreError::from)?;
        work(&mut SqliteRows(&conn))
    }

    pub(super) fn write<T, E: From<StoreError>>(
        &self,
        now: OffsetDateTime,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<(T, Vec<AuditEvent>), E> {
        let result = self
            .pool
            .get()
            .map_err(|e| E::from(StoreError::from(e)))
            .and_then(|mut conn| in_transaction(&mut conn, now, work));
        // After the transaction has ended, whatever its outcome: a reader
        // that saw the old generation must not keep what it read.
        self.user_cache.invalidate();
        result
    }

    /// `write` for a script that changes nothing the user cache holds (API
    /// key usage): it runs on the watcher's connection, so neither this
    /// process nor its watcher empties the cache for it.
    pub(super) fn write_quiet<T, E: From<StoreError>>(
        &self,
        now: OffsetDateTime,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<(T, Vec<AuditEvent>), E> {
        self.watched.write(|conn| in_transaction(conn, now, work))
    }

    /// Whether a write could start now; while writes are failing (`probe`),
    /// whether a write of a few pages commits.
    pub(super) fn ping(&self, probe: bool) -> Result<(), StoreError> {
        let conn = self.pool.get_timeout(READY_TIMEOUT)?;
        conn.busy_timeout(READY_TIMEOUT)?;
        let result = if probe {
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
    }

    /// The cached answer for `session_id`, if current and `user_id`'s.
    pub(super) fn cached_subject(&self, user_id: &str, session_id: &str) -> Option<TokenSubject> {
        self.user_cache
            .get(session_id)
            .filter(|cached| cached.user.id.as_str() == user_id)
    }

    /// The cache generation to pass to `remember_subject` for a read made now.
    pub(super) fn cache_generation(&self) -> u64 {
        self.user_cache.generation()
    }

    pub(super) fn remember_subject(&self, read_at: u64, session_id: &str, subject: &TokenSubject) {
        self.user_cache.put(read_at, session_id, subject);
    }

    /// The token subject read on the calling thread's own read-only
    /// connection with a busy timeout of 0: a point read from SQLite's cache
    /// takes microseconds, while handing it to the blocking pool costs two
    /// thread switches. `StoreError::Busy` when it would have to wait.
    pub(super) fn fast_token_subject(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<Option<TokenSubject>, StoreError> {
        self.fast_read(|conn| users::token_subject(conn, user_id, session_id))
    }

    fn fast_read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let cell = self.fast_readers.get_or_try(|| {
            let conn = Connection::open_with_flags(&self.path, READ_ONLY)?;
            conn.busy_timeout(Duration::ZERO)?;
            conn.execute_batch("PRAGMA query_only = ON;")?;
            Ok::<_, StoreError>(RefCell::new(conn))
        })?;
        // Re-entrancy cannot happen (no await inside), but never panic on it.
        let conn = cell.try_borrow().map_err(|_| StoreError::Busy)?;
        read(&conn)
    }

    pub(super) fn cached_key(&self, digest: &str) -> Option<KeySubject> {
        self.user_cache.get_key(digest)
    }

    pub(super) fn remember_key(&self, read_at: u64, digest: &str, subject: &KeySubject) {
        self.user_cache.put_key(read_at, digest, subject);
    }

    /// `fast_token_subject` for an API key's digest.
    pub(super) fn fast_key_subject(&self, digest: &str) -> Result<Option<KeySubject>, StoreError> {
        self.fast_read(|conn| api_keys::subject(conn, digest))
    }

    /// Settings read once at start-up, outside the async runtime.
    pub(super) fn settings_blocking(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.pool.get()?;
        settings::all(&conn)
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

/// One connection for a command that runs without `serve` or beside it.
pub(super) struct OfflineSqlite {
    conn: Connection,
}

impl OfflineSqlite {
    pub(super) fn open(path: &Path, create: bool) -> Result<Self, StoreError> {
        let mut conn = open_admin_connection(path, create)?;
        Plan::CURRENT.ensure_ready(&mut conn)?;
        Ok(Self { conn })
    }

    pub(super) fn write<T, E: From<StoreError>>(
        &mut self,
        now: OffsetDateTime,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<(T, Vec<AuditEvent>), E> {
        in_transaction(&mut self.conn, now, work)
    }
}

/// The row operations over one connection (inside a transaction or not).
struct SqliteRows<'c>(&'c Connection);

impl Reads for SqliteRows<'_> {
    fn user_by_id(&mut self, user_id: &str) -> Result<Option<User>, StoreError> {
        users::by_id(self.0, user_id)
    }

    fn credentials_by_email(&mut self, email: &str) -> Result<Option<Credentials>, StoreError> {
        users::credentials_by_email(self.0, email)
    }

    fn credentials_by_id(&mut self, user_id: &str) -> Result<Option<Credentials>, StoreError> {
        users::credentials_by_id(self.0, user_id)
    }

    fn guard_state(&mut self, user_id: &str) -> Result<Option<GuardState>, StoreError> {
        users::guard_state(self.0, user_id)
    }

    fn auth_state(&mut self, user_id: &str) -> Result<Option<AuthState>, StoreError> {
        users::auth_state(self.0, user_id)
    }

    fn token_subject(
        &mut self,
        user_id: &str,
        session_id: &str,
    ) -> Result<Option<TokenSubject>, StoreError> {
        users::token_subject(self.0, user_id, session_id)
    }

    fn with_token_version(&mut self, user_id: &str) -> Result<Option<(User, i64)>, StoreError> {
        users::with_token_version(self.0, user_id)
    }

    fn count_active_admins(&mut self) -> Result<i64, StoreError> {
        users::count_active_admins(self.0)
    }

    fn list_users(
        &mut self,
        offset: i64,
        limit: i64,
        role: Option<Role>,
    ) -> Result<(Vec<User>, i64), StoreError> {
        users::list(self.0, offset, limit, role)
    }

    fn role_counts(&mut self) -> Result<Vec<(Role, i64)>, StoreError> {
        users::role_counts(self.0)
    }

    fn count_active_users(&mut self) -> Result<i64, StoreError> {
        users::count_where_active(self.0)
    }

    fn count_locked_users(&mut self, now: OffsetDateTime) -> Result<i64, StoreError> {
        users::count_locked(self.0, now)
    }

    fn refresh_token(&mut self, jti: &str) -> Result<Option<StoredRefresh>, StoreError> {
        sessions::by_jti(self.0, jti)
    }

    fn count_live_sessions(&mut self, now: OffsetDateTime) -> Result<i64, StoreError> {
        sessions::count_live(self.0, now)
    }

    fn live_sessions_of(
        &mut self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        sessions::live_of_user(self.0, user_id, now)
    }

    fn two_factor(&mut self, user_id: &str) -> Result<Option<TwoFactorState>, StoreError> {
        two_factor::state(self.0, user_id)
    }

    fn count_sealed_secrets(&mut self) -> Result<i64, StoreError> {
        two_factor::count_sealed(self.0)
    }

    fn key_fingerprint(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        two_factor::fingerprint(self.0, name)
    }

    fn api_keys_of(&mut self, user_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        api_keys::of_user(self.0, user_id)
    }

    fn all_api_keys(&mut self) -> Result<Vec<ApiKey>, StoreError> {
        api_keys::all(self.0)
    }

    fn api_key(&mut self, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        api_keys::by_id(self.0, key_id)
    }

    fn key_subject(&mut self, digest: &str) -> Result<Option<KeySubject>, StoreError> {
        api_keys::subject(self.0, digest)
    }

    fn key_usage(&mut self, key_id: &str, since: Date) -> Result<Option<KeyUsage>, StoreError> {
        api_keys::usage(self.0, key_id, since)
    }

    fn settings(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        settings::all(self.0)
    }

    fn list_audit(
        &mut self,
        offset: i64,
        limit: i64,
        kind: Option<AuditKind>,
        user_id: Option<&str>,
    ) -> Result<(Vec<AuditRecord>, i64), StoreError> {
        audit::list(self.0, offset, limit, kind.map(AuditKind::as_str), user_id)
    }

    fn count_audit_since(
        &mut self,
        kind: AuditKind,
        since: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        audit::count_since(self.0, kind.as_str(), since)
    }
}

impl Rows for SqliteRows<'_> {
    fn insert_user(&mut self, user: &NewUser, now: OffsetDateTime) -> Result<User, StoreError> {
        users::insert(self.0, user, now)
    }

    fn apply_patch(
        &mut self,
        user_id: &str,
        patch: &UserPatch,
        now: OffsetDateTime,
    ) -> Result<User, StoreError> {
        users::apply_patch(self.0, user_id, patch, now)
    }

    fn delete_user(&mut self, user_id: &str) -> Result<(), StoreError> {
        users::delete(self.0, user_id)
    }

    fn store_failure(&mut self, user_id: &str, after: AfterFailure) -> Result<(), StoreError> {
        users::store_failure(self.0, user_id, after)
    }

    fn record_success(&mut self, user_id: &str, rehash: Option<&str>) -> Result<(), StoreError> {
        users::record_success(self.0, user_id, rehash)
    }

    fn set_password(
        &mut self,
        user_id: &str,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        users::set_password(self.0, user_id, password_hash, now)
    }

    fn bump_token_version(&mut self, user_id: &str) -> Result<(), StoreError> {
        users::bump_token_version(self.0, user_id)
    }

    fn unlock(&mut self, user_id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        users::unlock(self.0, user_id, now)
    }

    fn create_session(&mut self, user_id: &str, session: &NewSession) -> Result<(), StoreError> {
        sessions::create(self.0, user_id, session)
    }

    fn insert_refresh_token(&mut self, token: &NewRefreshToken<'_>) -> Result<(), StoreError> {
        sessions::insert_token(self.0, token)
    }

    fn consume_refresh_token(
        &mut self,
        jti: &str,
        at: OffsetDateTime,
        replaced_by: &str,
    ) -> Result<(), StoreError> {
        sessions::consume(self.0, jti, at, replaced_by)
    }

    fn revoke_session(
        &mut self,
        family_id: &str,
        why: SessionEnd,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        sessions::revoke_family(self.0, family_id, why, now)
    }

    fn revoke_sessions_of(
        &mut self,
        user_id: &str,
        why: SessionEnd,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        sessions::revoke_all_for_user(self.0, user_id, why, now)
    }

    fn revoke_session_of(
        &mut self,
        user_id: &str,
        family_id: &str,
        why: SessionEnd,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        sessions::revoke_of_user(self.0, user_id, family_id, why, now)
    }

    fn touch_session(&mut self, family_id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        sessions::touch(self.0, family_id, now)
    }

    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        settings::put(self.0, key, value)
    }

    fn set_pending_totp(&mut self, user_id: &str, sealed: Option<&[u8]>) -> Result<(), StoreError> {
        two_factor::set_pending(self.0, user_id, sealed)
    }

    fn enable_totp(&mut self, user_id: &str, sealed: &[u8], step: i64) -> Result<(), StoreError> {
        two_factor::enable(self.0, user_id, sealed, step)
    }

    fn disable_totp(&mut self, user_id: &str) -> Result<(), StoreError> {
        two_factor::disable(self.0, user_id)
    }

    fn set_totp_step(&mut self, user_id: &str, step: i64) -> Result<(), StoreError> {
        two_factor::set_step(self.0, user_id, step)
    }

    fn replace_backup_codes(&mut self, user_id: &str, hashes: &[String]) -> Result<(), StoreError> {
        two_factor::replace_codes(self.0, user_id, hashes)
    }

    fn consume_backup_code(&mut self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        two_factor::consume_code(self.0, user_id, hash)
    }

    fn put_key_fingerprint(&mut self, name: &str, fingerprint: &str) -> Result<(), StoreError> {
        two_factor::put_fingerprint(self.0, name, fingerprint)
    }

    fn insert_api_key(&mut self, key: &NewApiKey) -> Result<(), StoreError> {
        api_keys::insert(self.0, key)
    }

    fn rotate_api_key(
        &mut self,
        key_id: &str,
        digest: &str,
        prefix: &str,
        now: OffsetDateTime,
        old_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        api_keys::rotate(self.0, key_id, digest, prefix, now, old_until)
    }

    fn revoke_api_key(&mut self, key_id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        api_keys::revoke(self.0, key_id, now)
    }

    fn add_key_usage(&mut self, delta: &UsageDelta) -> Result<(), StoreError> {
        api_keys::add_usage(self.0, delta)
    }

    fn insert_audit(&mut self, event: &AuditEvent, now: OffsetDateTime) -> Result<(), StoreError> {
        audit::insert(self.0, event, now)
    }

    fn delete_expired(
        &mut self,
        what: Prunable,
        cutoffs: Cutoffs,
        limit: usize,
    ) -> Result<usize, StoreError> {
        housekeeping::delete_batch(self.0, what, cutoffs, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn storage_errors_are_unavailable_and_the_rest_are_not() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_IOERR_SHMSIZE,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_READONLY_DBMOVED,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_PROTOCOL,
        ] {
            let error = StoreError::from(sqlite_error(code));
            assert!(
                matches!(error, StoreError::Unavailable(_)) && error.is_unavailable(),
                "{code}: {error:?}"
            );
        }
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_BUSY_TIMEOUT,
        ] {
            assert!(
                matches!(StoreError::from(sqlite_error(code)), StoreError::Busy),
                "{code}"
            );
        }
        for code in [
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_NOTADB,
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_MISUSE,
            ffi::SQLITE_ERROR,
            ffi::SQLITE_TOOBIG,
        ] {
            let error = StoreError::from(sqlite_error(code));
            assert!(
                matches!(error, StoreError::Backend(_)) && !error.is_unavailable(),
                "{code}: {error:?}"
            );
        }
        assert!(!StoreError::from(rusqlite::Error::QueryReturnedNoRows).is_unavailable());
    }

    /// Usage is flushed every few seconds under load: it must leave the
    /// user cache as it is, where any other write empties it.
    #[test]
    fn a_usage_flush_keeps_the_user_cache_and_other_writes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let options = PoolOptions {
            connections: 2,
            user_cache_entries: 10,
            max_pages: None,
        };
        let db = Sqlite::open(&dir.path().join("t.db"), options).unwrap();
        let now = OffsetDateTime::now_utc();
        let delta = UsageDelta {
            key_id: "no-such-key".to_owned(),
            last_used_at: now,
            last_used_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            days: Vec::new(),
        };
        let before = db.cache_generation();
        db.write_quiet(now, |tx| tx.add_key_usage(&delta)).unwrap();
        assert_eq!(db.cache_generation(), before);
        db.write(now, |tx| tx.put_setting("a", "1")).unwrap();
        assert_ne!(db.cache_generation(), before);
    }
}
