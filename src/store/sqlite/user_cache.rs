//! The state every request with an access token checks (active flag, token
//! version, whether the token's session is live, the row `/users/me`
//! returns), kept in memory per runtime thread, keyed by session.
//!
//! A point read through SQLite costs more than the rest of the request
//! together: besides the statement, each read transaction takes the WAL's
//! shared-memory read lock (an `fcntl` when no other connection in the process
//! holds it) and SQLite's process-wide mutexes, which the runtime threads
//! contend for. Measured side by side, the read was about 10 µs of a 28 µs
//! `/users/me` request.
//!
//! The cache is exact for this process: every write transaction of the store
//! bumps a generation after it ends, and an entry is served only while the
//! generation it was read at is still current, so a password change,
//! logout-all, logout, role change or deactivation is seen by the very next
//! request.
//! Changes made to the file by another process (`create-admin`, an operator
//! with `sqlite3`) are noticed by a watcher that compares SQLite's
//! `PRAGMA data_version` every `WATCH_EVERY`.
//!
//! Writes that change nothing an entry holds (API key usage, flushed every
//! few seconds) must not empty the cache: they commit on the watcher's own
//! connection (`WatchedConnection::write`), whose commits its
//! `data_version` does not count, and bump no generation.
//!
//! This is a property of the single-node SQLite store: a store shared by
//! several nodes must invalidate from the database's own change feed instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rusqlite::Connection;
use thread_local::ThreadLocal;

use super::{BUSY_TIMEOUT, READ_WRITE, open_connection};
use crate::store::StoreError;

use crate::domain::api_key::KeySubject;
use crate::domain::user::TokenSubject;

/// How often the watcher looks for changes made by other processes.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

pub type UserState = TokenSubject;

/// What one entry holds: the state behind an access token's session, or
/// behind an API key (keyed by its digest; the two kinds of key never have
/// the same length).
#[derive(Clone)]
enum Cached {
    Session(UserState),
    Key(KeySubject),
}

pub struct UserCache {
    generation: AtomicU64,
    /// Entries per runtime thread; 0 turns the cache off.
    capacity: usize,
    per_thread: ThreadLocal<RefCell<Entries>>,
}

#[derive(Default)]
struct Entries {
    /// The generation every entry in `map` was read at.
    generation: u64,
    /// Keyed by session id (the access token's `sid`) or key digest.
    map: HashMap<String, Cached>,
}

impl UserCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            generation: AtomicU64::new(0),
            capacity,
            per_thread: ThreadLocal::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Read before the database read whose result will be `put`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Called after every write transaction has ended (committed or not).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self, session_id: &str) -> Option<UserState> {
        match self.lookup(session_id)? {
            Cached::Session(state) => Some(state),
            Cached::Key(_) => None,
        }
    }

    /// The state behind the API key with `digest`.
    pub fn get_key(&self, digest: &str) -> Option<KeySubject> {
        match self.lookup(digest)? {
            Cached::Key(subject) => Some(subject),
            Cached::Session(_) => None,
        }
    }

    fn lookup(&self, key: &str) -> Option<Cached> {
        if !self.enabled() {
            return None;
        }
        let cell = self.per_thread.get()?;
        let entries = cell.try_borrow().ok()?;
        if entries.generation != self.generation() {
            return None;
        }
        entries.map.get(key).cloned()
    }

    /// Keeps `state`, read from the database after `generation()` returned
    /// `read_at`; a write since then makes it worthless, so it is dropped.
    pub fn put(&self, read_at: u64, session_id: &str, state: &UserState) {
        self.keep(read_at, session_id, Cached::Session(state.clone()));
    }

    pub fn put_key(&self, read_at: u64, digest: &str, subject: &KeySubject) {
        self.keep(read_at, digest, Cached::Key(subject.clone()));
    }

    fn keep(&self, read_at: u64, key: &str, value: Cached) {
        if !self.enabled() {
            return;
        }
        let current = self.generation();
        if read_at != current {
            return;
        }
        let cell = self.per_thread.get_or_default();
        let Ok(mut entries) = cell.try_borrow_mut() else {
            return;
        };
        if entries.generation != current || entries.map.len() >= self.capacity {
            entries.map.clear();
            entries.generation = current;
        }
        entries.map.insert(key.to_owned(), value);
    }
}

/// How long a look at `data_version` waits for a lock.
const WATCH_BUSY_TIMEOUT: Duration = Duration::from_millis(50);

/// The connection the watcher looks through, opened on first use and again
/// after an error.
pub struct WatchedConnection {
    path: std::path::PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl WatchedConnection {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            conn: Mutex::new(None),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = open_connection(&self.path, READ_WRITE)?;
        conn.busy_timeout(WATCH_BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// Changes whenever another connection has committed since the last
    /// look; `None` when it cannot be read (a lock held for long, a broken
    /// connection), which may hide a change.
    pub fn data_version(&self) -> Option<i64> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = self.open().ok();
        }
        let version = guard
            .as_ref()?
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .ok();
        if version.is_none() {
            *guard = None;
        }
        version
    }

    /// Runs `work` on this connection, with the usual busy timeout: what it
    /// commits is not a change to the watcher.
    pub fn write<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(E::from(StoreError::Busy));
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(StoreError::from)?;
        let result = work(conn);
        if conn.busy_timeout(WATCH_BUSY_TIMEOUT).is_err() {
            // A look at `data_version` must not wait for seconds: start afresh.
            *guard = None;
        }
        result
    }
}

/// Starts the thread that invalidates `cache` when another connection (in
/// practice another process) commits to the database; it ends when the
/// cache is dropped.
pub fn watch_other_writers(
    cache: &Arc<UserCache>,
    watched: Arc<WatchedConnection>,
) -> std::io::Result<()> {
    let cache: Weak<UserCache> = Arc::downgrade(cache);
    std::thread::Builder::new()
        .name("secure-api-dbwatch".to_owned())
        .spawn(move || {
            let mut last = None;
            loop {
                std::thread::sleep(WATCH_EVERY);
                let Some(cache) = cache.upgrade() else {
                    return;
                };
                let version = watched.data_version();
                if version.is_none() || version != last {
                    cache.invalidate();
                }
                last = version;
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::role::Role;
    use crate::domain::user::User;

    fn state(name: &str) -> UserState {
        let user = User {
            id: crate::domain::user::UserId::random(),
            username: "someone".to_owned(),
            email: "someone@example.com".to_owned(),
            full_name: Some(name.to_owned()),
            role: Role::User,
            is_active: true,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            two_factor_enabled: false,
        };
        TokenSubject {
            user,
            token_version: 1,
            session_ends_at: Some(i64::MAX),
        }
    }

    #[test]
    fn an_entry_is_served_until_the_next_write() {
        let cache = UserCache::new(10);
        let read_at = cache.generation();
        cache.put(read_at, "u1", &state("before"));
        assert_eq!(
            cache.get("u1").unwrap().user.full_name.as_deref(),
            Some("before")
        );
        cache.invalidate();
        assert!(cache.get("u1").is_none());
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = UserCache::new(10);
        let read_at = cache.generation();
        cache.invalidate();
        cache.put(read_at, "u1", &state("stale"));
        assert!(cache.get("u1").is_none());
    }

    /// The ground the usage flush stands on: a commit through the watched
    /// connection is no change to the watcher, another connection's is.
    #[test]
    fn the_watcher_sees_other_connections_commits_but_not_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut admin = super::super::open_admin_connection(&path, true).unwrap();
        super::super::migrations::Plan::CURRENT
            .migrate(&mut admin)
            .unwrap();
        let watched = WatchedConnection::new(&path);
        let before = watched.data_version().unwrap();

        watched
            .write(|conn| {
                conn.execute("INSERT INTO settings (key, value) VALUES ('a', '1')", [])
                    .map_err(StoreError::from)
            })
            .unwrap();
        assert_eq!(watched.data_version(), Some(before));

        admin
            .execute("INSERT INTO settings (key, value) VALUES ('b', '2')", [])
            .unwrap();
        assert_ne!(watched.data_version(), Some(before));
    }

    #[test]
    fn size_zero_turns_it_off_and_a_full_cache_starts_over() {
        let off = UserCache::new(0);
        off.put(off.generation(), "u1", &state("x"));
        assert!(off.get("u1").is_none());

        let small = UserCache::new(2);
        let at = small.generation();
        small.put(at, "u1", &state("1"));
        small.put(at, "u2", &state("2"));
        small.put(at, "u3", &state("3"));
        assert!(small.get("u1").is_none());
        assert!(small.get("u3").is_some());
    }
}
