//! What tests read from, or set in, the database directly: the one
//! store-specific module of the suite (SQLite today). Everything else goes
//! through the API or the CLI, so that a second backend only needs these
//! functions again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::TestApp;

/// The database file of a data directory.
pub fn database_file(data_dir: &Path) -> PathBuf {
    data_dir.join("secure-api.db")
}

fn file_scalar<T: rusqlite::types::FromSql>(db: &Path, query: &str, params: &[&str]) -> T {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(query, rusqlite::params_from_iter(params), |r| r.get(0))
        .unwrap()
}

fn scalar<T: rusqlite::types::FromSql>(app: &TestApp, query: &str, params: &[&str]) -> T {
    file_scalar(&app.db_path(), query, params)
}

/// The database's own consistency check: "ok" when the file is sound.
pub fn integrity_check(db: &Path) -> String {
    file_scalar(db, "PRAGMA integrity_check", &[])
}

/// Accounts in the database file `db`.
pub fn users_in(db: &Path) -> i64 {
    file_scalar(db, "SELECT count(*) FROM users", &[])
}

/// Accounts named `username` in the database file `db` (0 or 1).
pub fn users_named(db: &Path, username: &str) -> i64 {
    file_scalar(
        db,
        "SELECT count(*) FROM users WHERE username = ?1",
        &[username],
    )
}

/// Stored refresh tokens with this `jti` (0 or 1).
pub fn refresh_tokens_with_jti(db: &Path, jti: &str) -> i64 {
    file_scalar(
        db,
        "SELECT count(*) FROM refresh_tokens WHERE jti = ?1",
        &[jti],
    )
}

/// An account as stored, hash included.
#[derive(Debug)]
pub struct StoredAccount {
    pub role: String,
    pub is_active: bool,
    pub email: String,
    pub password_hash: String,
}

pub fn stored_account(db: &Path, username: &str) -> StoredAccount {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT role, is_active, email, password_hash FROM users WHERE username = ?1",
        [username],
        |r| {
            Ok(StoredAccount {
                role: r.get(0)?,
                is_active: r.get(1)?,
                email: r.get(2)?,
                password_hash: r.get(3)?,
            })
        },
    )
    .unwrap()
}

/// Marks the database as written by a newer release.
pub fn set_schema_version(db: &Path, version: u32) {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_update(None, "user_version", version)
        .unwrap();
}

/// Creates `db` as the database of some other program.
pub fn make_foreign_database(db: &Path) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
}

/// Another process's writer holding the database's write lock until released.
pub struct WriteLock(rusqlite::Connection);

pub fn hold_write_lock(db: &Path) -> WriteLock {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    WriteLock(conn)
}

impl WriteLock {
    pub fn release(self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}

/// Fills the database file with rows the server never reads until it has
/// `pages` pages: under a page limit of `pages`, the next write is refused
/// as full.
pub fn fill_to_pages(db: &Path, pages: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("CREATE TABLE filler (data BLOB)")
        .unwrap();
    while conn
        .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
        .unwrap()
        < pages
    {
        conn.execute("INSERT INTO filler VALUES (zeroblob(4000))", [])
            .unwrap();
    }
}

/// Stored audit events of kind `event`.
pub fn audit_count(app: &TestApp, event: &str) -> i64 {
    scalar(
        app,
        "SELECT count(*) FROM audit_log WHERE event = ?1",
        &[event],
    )
}

/// The client IP of the first stored event of kind `event`.
pub fn first_audit_client(app: &TestApp, event: &str) -> String {
    scalar(
        app,
        "SELECT client_ip FROM audit_log WHERE event = ?1 ORDER BY id LIMIT 1",
        &[event],
    )
}

pub fn user_count(app: &TestApp) -> i64 {
    scalar(app, "SELECT count(*) FROM users", &[])
}

/// Active admins: the ones the last-admin rule protects.
pub fn active_admin_count(app: &TestApp) -> i64 {
    scalar(
        app,
        "SELECT count(*) FROM users WHERE role = 'admin' AND is_active = 1",
        &[],
    )
}

/// The failed-login count of the only account.
pub fn failed_login_count(app: &TestApp) -> i64 {
    scalar(app, "SELECT failed_login_count FROM users", &[])
}

/// Seconds until the only account's lock ends.
pub fn locked_for_secs(app: &TestApp) -> i64 {
    scalar(app, "SELECT locked_until - unixepoch() FROM users", &[])
}

/// The stored password hash of the only account.
pub fn password_hash(app: &TestApp) -> String {
    scalar(app, "SELECT password_hash FROM users", &[])
}

/// Replaces the password hash of every account (tests of rehashing and of
/// races with a password change).
pub fn set_password_hash(app: &TestApp, hash: &str) {
    execute(app, "UPDATE users SET password_hash = ?1", &[hash]);
}

/// Logins (refresh families) that have not been revoked.
pub fn live_session_count(app: &TestApp) -> i64 {
    scalar(
        app,
        "SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL",
        &[],
    )
}

/// The stored role of user `id`.
pub fn role_of(app: &TestApp, id: &str) -> String {
    scalar(app, "SELECT role FROM users WHERE id = ?1", &[id])
}

/// Every account's name, email, role and activity, as one string: equal
/// before and after means no account changed.
pub fn accounts_fingerprint(app: &TestApp) -> String {
    scalar(
        app,
        "SELECT group_concat(coalesce(full_name, '-') || email || role || is_active) FROM users",
        &[],
    )
}

fn column<T: rusqlite::types::FromSql>(app: &TestApp, query: &str, params: &[&str]) -> Vec<T> {
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    let mut statement = conn.prepare(query).unwrap();
    statement
        .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The `reason` detail of every stored event of kind `event` ('' if none).
pub fn audit_reasons(app: &TestApp, event: &str) -> Vec<String> {
    column(
        app,
        "SELECT coalesce(json_extract(detail, '$.reason'), '') FROM audit_log WHERE event = ?1",
        &[event],
    )
}

/// The distinct client IPs of the stored events of kind `event`, sorted.
pub fn audit_clients(app: &TestApp, event: &str) -> Vec<String> {
    column(
        app,
        "SELECT DISTINCT client_ip FROM audit_log WHERE event = ?1 ORDER BY 1",
        &[event],
    )
}

/// (user id, client IP, `reason` detail) of every stored event of kind `event`.
pub fn audit_rows_with_reason(app: &TestApp, event: &str) -> Vec<(Option<String>, String, String)> {
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.prepare(
        "SELECT user_id, client_ip, json_extract(detail, '$.reason') FROM audit_log \
         WHERE event = ?1",
    )
    .unwrap()
    .query_map([event], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Deactivates `username` behind the server's back.
pub fn deactivate(app: &TestApp, username: &str) {
    execute(
        app,
        "UPDATE users SET is_active = 0 WHERE username = ?1",
        &[username],
    );
}

/// Locks `username` for an hour behind the server's back.
pub fn lock_for_an_hour(app: &TestApp, username: &str) {
    execute(
        app,
        "UPDATE users SET locked_until = unixepoch() + 3600 WHERE username = ?1",
        &[username],
    );
}

/// Gives every account `role` behind the server's back.
pub fn set_every_role(app: &TestApp, role: &str) {
    execute(app, "UPDATE users SET role = ?1", &[role]);
}

fn execute(app: &TestApp, statement: &str, params: &[&str]) {
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.execute(statement, rusqlite::params_from_iter(params))
        .unwrap();
}

/// One stored audit row: event, user id, client IP, request id, and the
/// detail as stored (JSON text).
pub type AuditRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// Every stored audit row, oldest first.
pub fn audit_rows(app: &TestApp) -> Vec<AuditRow> {
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.prepare("SELECT event, user_id, client_ip, request_id, detail FROM audit_log ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Another writer (a command, another node) changing every account.
pub fn set_everyone_active(app: &TestApp, active: bool) {
    let value = if active { "1" } else { "0" };
    execute(app, "UPDATE users SET is_active = ?1", &[value]);
}

/// Another writer ending every account's tokens.
pub fn bump_every_token_version(app: &TestApp) {
    execute(
        app,
        "UPDATE users SET token_version = token_version + 1",
        &[],
    );
}

/// Another writer deleting every account.
pub fn delete_everyone(app: &TestApp) {
    execute(app, "DELETE FROM users", &[]);
}

/// Every row of `tables`, as text, in a stable order: equal before and
/// after means nothing stored changed.
pub fn state_rows(app: &TestApp, tables: &[&str]) -> Vec<String> {
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let mut statement = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let columns = statement.column_count();
        let mut cursor = statement.query([]).unwrap();
        while let Some(row) = cursor.next().unwrap() {
            let values: Vec<rusqlite::types::Value> =
                (0..columns).map(|i| row.get(i).unwrap()).collect();
            rows.push(format!("{table}: {values:?}"));
        }
    }
    rows
}

/// Takes away what `fill_to_pages` added: room for writes again.
pub fn make_room(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("DROP TABLE filler").unwrap();
}

/// Stored audit rows of any kind.
pub fn audit_total(app: &TestApp) -> i64 {
    scalar(app, "SELECT count(*) FROM audit_log", &[])
}

/// Audit rows that are not about the account `username`.
pub fn audit_rows_not_about(app: &TestApp, username: &str) -> i64 {
    scalar(
        app,
        "SELECT count(*) FROM audit_log WHERE coalesce(user_id, '') NOT IN \
         (SELECT id FROM users WHERE username = ?1)",
        &[username],
    )
}

/// The id of the one stored login (refresh family) of `username`.
pub fn session_of(app: &TestApp, username: &str) -> String {
    scalar(
        app,
        "SELECT f.id FROM refresh_families f JOIN users u ON u.id = f.user_id \
         WHERE u.username = ?1",
        &[username],
    )
}

/// Stored logins (refresh families), ended or not.
pub fn session_count(app: &TestApp) -> i64 {
    scalar(app, "SELECT count(*) FROM refresh_families", &[])
}

/// The id of the only stored login.
pub fn only_session(app: &TestApp) -> String {
    scalar(app, "SELECT id FROM refresh_families", &[])
}

/// Stored refresh tokens in the login `session_id`, and in all.
pub fn refresh_token_counts(app: &TestApp, session_id: &str) -> (i64, i64) {
    (
        scalar(
            app,
            "SELECT count(*) FROM refresh_tokens WHERE family_id = ?1",
            &[session_id],
        ),
        scalar(app, "SELECT count(*) FROM refresh_tokens", &[]),
    )
}

/// The failed-login count of `username`.
pub fn failed_logins_of(app: &TestApp, username: &str) -> i64 {
    scalar(
        app,
        "SELECT failed_login_count FROM users WHERE username = ?1",
        &[username],
    )
}

/// Copies the sealed TOTP secret of `from` onto `to`, as someone with write
/// access to the file would.
pub fn copy_totp_secret(app: &TestApp, from: &str, to: &str) {
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let changed = conn
        .execute(
            "UPDATE users SET totp_secret = (SELECT totp_secret FROM users WHERE username = ?1), \
             totp_last_step = NULL WHERE username = ?2",
            [from, to],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// Every byte the database keeps on disk in `data_dir` (the file and its
/// write-ahead log), for looking for secrets in clear.
pub fn database_bytes(data_dir: &Path) -> Vec<u8> {
    let file = database_file(data_dir);
    let mut bytes = std::fs::read(&file).unwrap();
    let wal = file.with_extension("db-wal");
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

/// Requests stored for an API key: what its usage flushes have written.
pub fn stored_key_requests(app: &TestApp, key_id: &str) -> i64 {
    scalar(
        app,
        "SELECT total_requests FROM api_keys WHERE id = ?1",
        &[key_id],
    )
}

/// Every value of every stored audit row, as text, one row per line.
pub fn every_audit_value(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn.prepare("SELECT * FROM audit_log ORDER BY id").unwrap();
    let columns = statement.column_count();
    let rows = statement
        .query_map([], |row| {
            let values: Vec<String> = (0..columns)
                .map(|i| match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => String::new(),
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    rusqlite::types::ValueRef::Real(x) => x.to_string(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                })
                .collect();
            Ok(values.join("\t"))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows.join("\n")
}
