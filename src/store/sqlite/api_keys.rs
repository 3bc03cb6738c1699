//! API key rows: digests only, never a key.

use rusqlite::{Connection, OptionalExtension, Row};
use time::{Date, OffsetDateTime};

use super::users::{AFTER_USER, USER_COLUMNS_OF_U, user_from_row};
use crate::domain::api_key::{ApiKey, KeySubject, NewApiKey, Scopes};
use crate::domain::key_usage::{DayCount, KeyUsage, UsageDelta};
use crate::domain::rate::Rate;
use crate::store::StoreError;

const KEY_COLUMNS: &str = "id, user_id, name, prefix, scopes, rate_limit, created_at, expires_at, last_used_at, rotated_at";

fn time_at(seconds: i64) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn scopes_from(text: &str) -> rusqlite::Result<Scopes> {
    Scopes::from_text(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e.0),
        )
    })
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = row.get(4)?;
    let last_used: Option<i64> = row.get(8)?;
    let rotated: Option<i64> = row.get(9)?;
    Ok(ApiKey {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        prefix: row.get(3)?,
        scopes: scopes_from(&scopes)?,
        rate_limit: row.get(5)?,
        created_at: time_at(row.get(6)?)?,
        expires_at: time_at(row.get(7)?)?,
        last_used_at: last_used.map(time_at).transpose()?,
        rotated_at: rotated.map(time_at).transpose()?,
    })
}

pub(super) fn of_user(conn: &Connection, user_id: &str) -> Result<Vec<ApiKey>, StoreError> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = ?1 AND revoked_at IS NULL \
         ORDER BY created_at DESC, id"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map([user_id], key_from_row)?
        .collect::<Result<_, _>>()?)
}

pub(super) fn all(conn: &Connection) -> Result<Vec<ApiKey>, StoreError> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at DESC, id"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map([], key_from_row)?
        .collect::<Result<_, _>>()?)
}

pub(super) fn by_id(conn: &Connection, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1 AND revoked_at IS NULL");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([key_id], key_from_row)
        .optional()?)
}

/// One indexed read: the digest is unique among current and old secrets.
pub(super) fn subject(conn: &Connection, digest: &str) -> Result<Option<KeySubject>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS_OF_U}, k.id, k.scopes, k.expires_at, \
         CASE WHEN k.digest = ?1 THEN NULL ELSE k.old_until END, k.rate_limit \
         FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.id = (SELECT id FROM api_keys WHERE digest = ?1 \
                       UNION ALL SELECT id FROM api_keys WHERE old_digest = ?1 LIMIT 1) \
         AND k.revoked_at IS NULL"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([digest], |row| {
            let scopes: String = row.get(AFTER_USER + 1)?;
            let old_until: Option<i64> = row.get(AFTER_USER + 3)?;
            let rate: String = row.get(AFTER_USER + 4)?;
            Ok(KeySubject {
                owner: user_from_row(row)?,
                key_id: row.get(AFTER_USER)?,
                scopes: scopes_from(&scopes)?,
                rate: Rate::parse(&rate).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        AFTER_USER + 4,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                expires_at: time_at(row.get(AFTER_USER + 2)?)?,
                old_secret_until: old_until.map(time_at).transpose()?,
            })
        })
        .optional()?)
}

pub(super) fn insert(tx: &Connection, key: &NewApiKey) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO api_keys (id, user_id, name, prefix, digest, scopes, rate_limit, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute((
        &key.id,
        &key.user_id,
        &key.name,
        &key.prefix,
        &key.digest,
        key.scopes.to_text(),
        &key.rate_limit,
        key.created_at.unix_timestamp(),
        key.expires_at.unix_timestamp(),
    ))?;
    Ok(())
}

pub(super) fn rotate(
    tx: &Connection,
    key_id: &str,
    digest: &str,
    prefix: &str,
    now: OffsetDateTime,
    old_until: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE api_keys SET old_digest = digest, old_until = ?5, digest = ?2, prefix = ?3, \
         rotated_at = ?4 WHERE id = ?1 AND revoked_at IS NULL",
    )?
    .execute((
        key_id,
        digest,
        prefix,
        now.unix_timestamp(),
        old_until.unix_timestamp(),
    ))?;
    Ok(())
}

pub(super) fn revoke(
    tx: &Connection,
    key_id: &str,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let revoked = tx
        .prepare_cached(
            "UPDATE api_keys SET revoked_at = ?2, old_digest = NULL, old_until = NULL \
             WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute((key_id, now.unix_timestamp()))?;
    Ok(revoked == 1)
}

pub(super) fn add_usage(tx: &Connection, delta: &UsageDelta) -> Result<(), StoreError> {
    let requests = i64::try_from(delta.requests()).unwrap_or(i64::MAX);
    let last_used_at = delta.last_used_at.unix_timestamp();
    // Every SET expression sees the row as it was: the address follows the
    // time only when the time moves forward (another node may have flushed
    // a later use first).
    let found = tx
        .prepare_cached(
            "UPDATE api_keys SET total_requests = total_requests + ?2, \
             last_used_ip = CASE WHEN coalesce(last_used_at, 0) <= ?3 THEN ?4 ELSE last_used_ip END, \
             last_used_at = max(coalesce(last_used_at, 0), ?3) \
             WHERE id = ?1",
        )?
        .execute((
            &delta.key_id,
            requests,
            last_used_at,
            delta.last_used_ip.to_string(),
        ))?;
    if found == 0 {
        return Ok(());
    }
    let mut add_day = tx.prepare_cached(
        "INSERT INTO api_key_usage (key_id, day, requests, denied) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (key_id, day) DO UPDATE SET requests = requests + excluded.requests, \
         denied = denied + excluded.denied",
    )?;
    for day in &delta.days {
        add_day.execute((
            &delta.key_id,
            day.date.to_julian_day(),
            i64::try_from(day.requests).unwrap_or(i64::MAX),
            i64::try_from(day.denied).unwrap_or(i64::MAX),
        ))?;
    }
    Ok(())
}

fn count(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    Ok(u64::try_from(value).unwrap_or(0))
}

pub(super) fn usage(
    conn: &Connection,
    key_id: &str,
    since: Date,
) -> Result<Option<KeyUsage>, StoreError> {
    let Some(mut usage) = conn
        .prepare_cached(
            "SELECT total_requests, last_used_at, last_used_ip FROM api_keys \
             WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .query_row([key_id], |row| {
            let last_used: Option<i64> = row.get(1)?;
            Ok(KeyUsage {
                total: count(row, 0)?,
                last_used_at: last_used.map(time_at).transpose()?,
                last_used_ip: row.get(2)?,
                days: Vec::new(),
            })
        })
        .optional()?
    else {
        return Ok(None);
    };
    usage.days = conn
        .prepare_cached(
            "SELECT day, requests, denied FROM api_key_usage WHERE key_id = ?1 AND day >= ?2 \
             ORDER BY day DESC",
        )?
        .query_map((key_id, since.to_julian_day()), |row| {
            let day: i32 = row.get(0)?;
            Ok(DayCount {
                date: Date::from_julian_day(day).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Integer,
                        Box::new(e),
                    )
                })?,
                requests: count(row, 1)?,
                denied: count(row, 2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(usage))
}
