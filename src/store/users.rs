use rusqlite::{Row, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::StoreError;
use crate::domain::role::Role;
use crate::domain::user::{NewUser, User, UserId};

const USER_COLUMNS: &str =
    "id, username, email, full_name, role, is_active, created_at, updated_at";

pub(super) fn insert(
    tx: &Transaction<'_>,
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

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
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
    })
}

fn format_time(t: OffsetDateTime) -> Result<String, StoreError> {
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
