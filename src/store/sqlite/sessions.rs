//! Refresh-token families: one per login, its tokens rotated one by one,
//! revoked as a whole. The rotation rules live in `accounts::sessions`.

use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::rows::{
    NewRefreshToken, NewSession, SessionClient, SessionEnd, SessionRecord, StoredRefresh,
};

pub(super) fn create(
    tx: &Connection,
    user_id: &str,
    session: &NewSession,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO refresh_families (id, user_id, created_at, expires_at, last_used_at, \
         client_ip, user_agent) VALUES (?1, ?2, ?3, ?4, ?3, ?5, ?6)",
    )?
    .execute((
        &session.family_id,
        user_id,
        session.issued_at.unix_timestamp(),
        session.family_expires_at.unix_timestamp(),
        session.client.ip.as_deref(),
        session.client.user_agent.as_deref(),
    ))?;
    insert_token(
        tx,
        &NewRefreshToken {
            jti: &session.jti,
            family_id: &session.family_id,
            issued_at: session.issued_at,
            expires_at: session.family_expires_at,
        },
    )
}

pub(super) fn insert_token(tx: &Connection, token: &NewRefreshToken<'_>) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (jti, family_id, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute((
        token.jti,
        token.family_id,
        token.issued_at.unix_timestamp(),
        token.expires_at.unix_timestamp(),
    ))?;
    Ok(())
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix(seconds: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|_| StoreError::Schema("a refresh token has an impossible time".to_owned()))
}

fn from_unix_millis(millis: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| StoreError::Schema("a refresh token has an impossible time".to_owned()))
}

pub(super) fn by_jti(conn: &Connection, jti: &str) -> Result<Option<StoredRefresh>, StoreError> {
    type Raw = (String, String, i64, Option<i64>, bool, i64, bool);
    let raw: Option<Raw> = conn
        .prepare_cached(
            "SELECT t.family_id, f.user_id, t.expires_at, t.consumed_at, \
             s.consumed_at IS NOT NULL, f.expires_at, f.revoked_at IS NOT NULL \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
             LEFT JOIN refresh_tokens s ON s.jti = t.replaced_by \
             WHERE t.jti = ?1",
        )?
        .query_row([jti], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .optional()?;
    let Some((family_id, user_id, expires_at, consumed_at, successor_used, family_end, revoked)) =
        raw
    else {
        return Ok(None);
    };
    Ok(Some(StoredRefresh {
        family_id,
        user_id,
        expires_at: from_unix(expires_at)?,
        consumed_at: consumed_at.map(from_unix_millis).transpose()?,
        successor_used,
        family_expires_at: from_unix(family_end)?,
        family_revoked: revoked,
    }))
}

/// `consumed_at` is kept in milliseconds: the reuse grace window is
/// measured in them, so a zero window is no window.
pub(super) fn consume(
    tx: &Connection,
    jti: &str,
    at: OffsetDateTime,
    replaced_by: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE refresh_tokens SET consumed_at = ?2, replaced_by = ?3 WHERE jti = ?1",
    )?
    .execute((jti, unix_millis(at), replaced_by))?;
    Ok(())
}

pub(super) fn revoke_family(
    tx: &Connection,
    family_id: &str,
    why: SessionEnd,
    now: OffsetDateTime,
) -> Result<Option<String>, StoreError> {
    let user = tx
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE id = ?1 AND revoked_at IS NULL RETURNING user_id",
        )?
        .query_row((family_id, now.unix_timestamp(), why.as_str()), |r| {
            r.get(0)
        })
        .optional()?;
    Ok(user)
}

pub(super) fn revoke_all_for_user(
    tx: &Connection,
    user_id: &str,
    why: SessionEnd,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE user_id = ?1 AND revoked_at IS NULL",
        )?
        .execute((user_id, now.unix_timestamp(), why.as_str()))?)
}

pub(super) fn revoke_of_user(
    tx: &Connection,
    user_id: &str,
    family_id: &str,
    why: SessionEnd,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let ended = tx
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = ?3, revoked_reason = ?4 \
             WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL AND expires_at > ?3",
        )?
        .execute((family_id, user_id, now.unix_timestamp(), why.as_str()))?;
    Ok(ended == 1)
}

pub(super) fn touch(
    tx: &Connection,
    family_id: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE refresh_families SET last_used_at = ?2 WHERE id = ?1")?
        .execute((family_id, now.unix_timestamp()))?;
    Ok(())
}

pub(super) fn live_of_user(
    conn: &Connection,
    user_id: &str,
    now: OffsetDateTime,
) -> Result<Vec<SessionRecord>, StoreError> {
    type Raw = (
        String,
        i64,
        Option<i64>,
        i64,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Raw> = conn
        .prepare_cached(
            "SELECT id, created_at, last_used_at, expires_at, client_ip, user_agent \
             FROM refresh_families \
             WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 \
             ORDER BY created_at DESC, id",
        )?
        .query_map((user_id, now.unix_timestamp()), |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, created, used, expires, ip, user_agent)| {
            Ok(SessionRecord {
                id,
                created_at: from_unix(created)?,
                last_used_at: from_unix(used.unwrap_or(created))?,
                expires_at: from_unix(expires)?,
                client: SessionClient { ip, user_agent },
            })
        })
        .collect()
}

pub(super) fn count_live(conn: &Connection, now: OffsetDateTime) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL AND expires_at > ?1",
        )?
        .query_row([now.unix_timestamp()], |r| r.get(0))?)
}
