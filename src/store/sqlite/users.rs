use rusqlite::{Connection, OptionalExtension, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::lockout::{AfterFailure, GuardState};
use crate::domain::policy::UserPatch;
use crate::domain::role::Role;
use crate::domain::user::{AuthState, Credentials, NewUser, TokenSubject, User, UserId};
use crate::store::StoreError;

const USER_COLUMNS: &str = "id, username, email, full_name, role, is_active, created_at, updated_at, \
     totp_secret IS NOT NULL";
/// `USER_COLUMNS` of a table aliased `u`, for joins.
pub(super) const USER_COLUMNS_OF_U: &str = "u.id, u.username, u.email, u.full_name, u.role, \
     u.is_active, u.created_at, u.updated_at, u.totp_secret IS NOT NULL";
/// The first column after `USER_COLUMNS`.
pub(super) const AFTER_USER: usize = 9;

pub(super) fn insert(
    tx: &Connection,
    user: &NewUser,
    now: OffsetDateTime,
) -> Result<User, StoreError> {
    let id = UserId::random();
    let stamp = format_time(now)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO users (id, username, email, full_name, password_hash, role, \
             is_active, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
        )?
        .execute((
            id.as_str(),
            user.username.as_str(),
            user.email.as_str(),
            user.full_name.as_ref().map(|n| n.as_str()),
            &user.password_hash,
            user.role.as_str(),
            &stamp,
        ));
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate),
        other => other?,
    };
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(tx
        .prepare_cached(&sql)?
        .query_row([id.as_str()], user_from_row)?)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

pub(super) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let id: String = row.get(0)?;
    let role: String = row.get(4)?;
    Ok(User {
        id: UserId::parse(&id).ok_or_else(|| conversion_error(0, "user id is not a UUID"))?,
        username: row.get(1)?,
        email: row.get(2)?,
        full_name: row.get(3)?,
        role: Role::parse(&role).map_err(|_| conversion_error(4, "unknown role"))?,
        is_active: row.get(5)?,
        created_at: parse_time(row, 6)?,
        updated_at: parse_time(row, 7)?,
        two_factor_enabled: row.get(8)?,
    })
}

pub(super) fn format_time(t: OffsetDateTime) -> Result<String, StoreError> {
    t.format(&Rfc3339)
        .map_err(|e| StoreError::Schema(format!("cannot format a timestamp: {e}")))
}

fn parse_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<OffsetDateTime> {
    let text: String = row.get(idx)?;
    OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| conversion_error(idx, "bad timestamp"))
}

fn conversion_error(idx: usize, what: &'static str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        Box::<dyn std::error::Error + Send + Sync>::from(what),
    )
}

pub(super) fn credentials_by_email(
    conn: &Connection,
    email: &str,
) -> Result<Option<Credentials>, StoreError> {
    let sql =
        format!("SELECT {USER_COLUMNS}, password_hash, token_version FROM users WHERE email = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([email], credentials_from_row)
        .optional()?)
}

pub(super) fn credentials_by_id(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<Credentials>, StoreError> {
    let sql =
        format!("SELECT {USER_COLUMNS}, password_hash, token_version FROM users WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([user_id], credentials_from_row)
        .optional()?)
}

fn credentials_from_row(row: &Row<'_>) -> rusqlite::Result<Credentials> {
    Ok(Credentials {
        user: user_from_row(row)?,
        password_hash: row.get(AFTER_USER)?,
        token_version: row.get(AFTER_USER + 1)?,
    })
}

/// The row as a password check must settle against it.
pub(super) fn guard_state(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<GuardState>, StoreError> {
    let found = conn
        .prepare_cached(
            "SELECT is_active, password_hash, token_version, failed_login_count, locked_until \
             FROM users WHERE id = ?1",
        )?
        .query_row([user_id], |row| {
            let locked_until: Option<i64> = row.get(4)?;
            Ok(GuardState {
                is_active: row.get(0)?,
                password_hash: row.get(1)?,
                token_version: row.get(2)?,
                failed_count: row.get(3)?,
                locked_until: locked_until
                    .map(OffsetDateTime::from_unix_timestamp)
                    .transpose()
                    .map_err(|_| conversion_error(4, "bad lock time"))?,
            })
        })
        .optional()?;
    Ok(found)
}

pub(super) fn auth_state(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<AuthState>, StoreError> {
    let found = conn
        .prepare_cached("SELECT role, is_active, token_version FROM users WHERE id = ?1")?
        .query_row([user_id], |row| {
            let role: String = row.get(0)?;
            Ok(AuthState {
                role: Role::parse(&role).map_err(|_| conversion_error(0, "unknown role"))?,
                is_active: row.get(1)?,
                token_version: row.get(2)?,
            })
        })
        .optional()?;
    Ok(found)
}

/// The user and its token version: what a password check needs after it
/// has been accepted.
pub(super) fn with_token_version(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<(User, i64)>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS}, token_version FROM users WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([user_id], |row| {
            Ok((user_from_row(row)?, row.get(AFTER_USER)?))
        })
        .optional()?)
}

/// What every request with an access token checks, in one primary-key read:
/// the user, its token version, and the end of the token's session (login)
/// if that session is live and belongs to the user.
pub(super) fn token_subject(
    conn: &Connection,
    user_id: &str,
    session_id: &str,
) -> Result<Option<TokenSubject>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, token_version, \
         (SELECT expires_at FROM refresh_families \
          WHERE id = ?2 AND user_id = ?1 AND revoked_at IS NULL) \
         FROM users WHERE id = ?1"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([user_id, session_id], |row| {
            Ok(TokenSubject {
                user: user_from_row(row)?,
                token_version: row.get(AFTER_USER)?,
                session_ends_at: row.get(AFTER_USER + 1)?,
            })
        })
        .optional()?)
}

pub(super) fn by_id(tx: &Connection, user_id: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(tx
        .prepare_cached(&sql)?
        .query_row([user_id], user_from_row)
        .optional()?)
}

/// Stores the count (and lock) a wrong password leads to.
pub(super) fn store_failure(
    tx: &Connection,
    user_id: &str,
    after: AfterFailure,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE users SET failed_login_count = ?2, \
         locked_until = COALESCE(?3, locked_until) WHERE id = ?1",
    )?
    .execute((
        user_id,
        after.failed_count,
        after.locked_until.map(OffsetDateTime::unix_timestamp),
    ))?;
    Ok(())
}

/// Clears the failure count and any expired lock; stores a fresh hash when
/// the old one used other parameters.
pub(super) fn record_success(
    tx: &Connection,
    user_id: &str,
    new_hash: Option<&str>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE users SET failed_login_count = 0, locked_until = NULL, \
         password_hash = COALESCE(?2, password_hash) WHERE id = ?1",
    )?
    .execute((user_id, new_hash))?;
    Ok(())
}

/// Makes every access token issued so far for this user fail.
pub(super) fn bump_token_version(tx: &Connection, user_id: &str) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE users SET token_version = token_version + 1 WHERE id = ?1")?
        .execute([user_id])?;
    Ok(())
}

/// One page of users, oldest first, and the total that match.
pub(super) fn list(
    conn: &Connection,
    offset: i64,
    limit: i64,
    role: Option<Role>,
) -> Result<(Vec<User>, i64), StoreError> {
    let role = role.map(Role::as_str);
    let total: i64 = conn
        .prepare_cached("SELECT count(*) FROM users WHERE ?1 IS NULL OR role = ?1")?
        .query_row([role], |r| r.get(0))?;
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE ?1 IS NULL OR role = ?1 \
         ORDER BY created_at, id LIMIT ?2 OFFSET ?3"
    );
    let users = conn
        .prepare_cached(&sql)?
        .query_map((role, limit, offset), user_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((users, total))
}

pub(super) fn count_active_admins(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM users WHERE role = 'admin' AND is_active = 1")?
        .query_row([], |r| r.get(0))?)
}

pub(super) fn apply_patch(
    tx: &Connection,
    user_id: &str,
    patch: &UserPatch,
    now: OffsetDateTime,
) -> Result<User, StoreError> {
    let full_name = patch
        .full_name
        .as_ref()
        .map(|name| name.as_ref().map(|n| n.as_str()));
    let updated = tx
        .prepare_cached(
            "UPDATE users SET \
             full_name = CASE WHEN ?2 THEN ?3 ELSE full_name END, \
             email = COALESCE(?4, email), \
             role = COALESCE(?5, role), \
             is_active = COALESCE(?6, is_active), \
             updated_at = ?7 \
             WHERE id = ?1",
        )?
        .execute((
            user_id,
            full_name.is_some(),
            full_name.flatten(),
            patch.email.as_ref().map(|e| e.as_str()),
            patch.role.map(Role::as_str),
            patch.is_active,
            format_time(now)?,
        ));
    match updated {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate),
        other => other?,
    };
    by_id(tx, user_id)?.ok_or(StoreError::NotFound)
}

pub(super) fn set_password(
    tx: &Connection,
    user_id: &str,
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE users SET password_hash = ?2, failed_login_count = 0, locked_until = NULL, \
         token_version = token_version + 1, updated_at = ?3 WHERE id = ?1",
    )?
    .execute((user_id, password_hash, format_time(now)?))?;
    Ok(())
}

pub(super) fn unlock(
    tx: &Connection,
    user_id: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE users SET failed_login_count = 0, locked_until = NULL, updated_at = ?2 WHERE id = ?1",
    )?
    .execute((user_id, format_time(now)?))?;
    Ok(())
}

pub(super) fn delete(tx: &Connection, user_id: &str) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([user_id])?;
    Ok(())
}

pub(super) fn role_counts(conn: &Connection) -> Result<Vec<(Role, i64)>, StoreError> {
    let mut counts = Vec::new();
    for role in Role::ALL {
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM users WHERE role = ?1")?
            .query_row([role.as_str()], |r| r.get(0))?;
        counts.push((role, n));
    }
    Ok(counts)
}

pub(super) fn count_where_active(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM users WHERE is_active = 1")?
        .query_row([], |r| r.get(0))?)
}

pub(super) fn count_locked(conn: &Connection, now: OffsetDateTime) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM users WHERE locked_until > ?1")?
        .query_row([now.unix_timestamp()], |r| r.get(0))?)
}
