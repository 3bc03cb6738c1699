//! Refresh-token families: one per login, rotated token by token, revoked as
//! a whole on logout, logout-all or reuse of a consumed token.

use rusqlite::{OptionalExtension, Transaction};
use time::{Duration, OffsetDateTime};

use super::StoreError;
use super::users::{self};
use crate::domain::user::User;

/// A login's first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub family_id: String,
    pub jti: String,
    pub issued_at: OffsetDateTime,
    /// The family's end: the login time plus the refresh lifetime.
    pub family_expires_at: OffsetDateTime,
}

/// A refresh token to rotate, and the rules of the rotation.
#[derive(Debug, Clone)]
pub struct Refresh {
    pub jti: String,
    pub new_jti: String,
    /// A consumed token presented again this soon after its rotation is
    /// refused without revoking (two tabs refreshing at once); zero: never.
    pub grace: Duration,
    /// The new token's lifetime, never past its family's end.
    pub token_lifetime: Duration,
}

#[derive(Debug)]
pub struct Rotated {
    pub outcome: Rotation,
    /// The audit events stored with the rotation.
    pub events: Vec<crate::domain::audit::AuditEvent>,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated {
        user: User,
        token_version: i64,
        family_id: String,
        expires_at: OffsetDateTime,
    },
    /// Unknown, expired or revoked token, or an account that is gone or inactive.
    Rejected,
    /// Consumed moments ago (two tabs refreshing at once) and its successor
    /// not used yet: refused, nothing revoked.
    RecentlyRotated { user_id: String, family_id: String },
    /// Consumed earlier: the whole family has now been revoked.
    ReuseDetected { user_id: String, family_id: String },
}

pub(super) fn create(
    tx: &Transaction<'_>,
    user_id: &str,
    session: &NewSession,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO refresh_families (id, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute((
        &session.family_id,
        user_id,
        session.issued_at.unix_timestamp(),
        session.family_expires_at.unix_timestamp(),
    ))?;
    insert_token(
        tx,
        &session.jti,
        &session.family_id,
        session.issued_at,
        session.family_expires_at,
    )
}

fn insert_token(
    tx: &Transaction<'_>,
    jti: &str,
    family_id: &str,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (jti, family_id, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute((jti, family_id, issued_at.unix_timestamp(), expires_at.unix_timestamp()))?;
    Ok(())
}

struct Presented {
    family_id: String,
    user_id: String,
    token_expires_at: i64,
    /// Unix milliseconds.
    consumed_at: Option<i64>,
    /// Whether the token that replaced this one has been used in turn.
    successor_used: bool,
    family_expires_at: i64,
    family_revoked: bool,
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Consumes `refresh.jti` and issues `refresh.new_jti` in its family, all
/// inside the caller's IMMEDIATE transaction: of two concurrent rotations of
/// one token, the second sees it consumed.
///
/// A consumed token presented again is reuse, and revokes its family, unless
/// it was consumed less than `grace` ago (measured in milliseconds, so a
/// zero window is no window) and the token that replaced it has not been
/// used yet: the grace covers two tabs racing one rotation, never a token
/// whose line has moved on.
pub(super) fn rotate(
    tx: &Transaction<'_>,
    refresh: &Refresh,
    now: OffsetDateTime,
) -> Result<Rotation, StoreError> {
    let presented = tx
        .prepare_cached(
            "SELECT t.family_id, f.user_id, t.expires_at, t.consumed_at, \
             s.consumed_at IS NOT NULL, f.expires_at, f.revoked_at IS NOT NULL \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
             LEFT JOIN refresh_tokens s ON s.jti = t.replaced_by \
             WHERE t.jti = ?1",
        )?
        .query_row([&refresh.jti], |r| {
            Ok(Presented {
                family_id: r.get(0)?,
                user_id: r.get(1)?,
                token_expires_at: r.get(2)?,
                consumed_at: r.get(3)?,
                successor_used: r.get(4)?,
                family_expires_at: r.get(5)?,
                family_revoked: r.get(6)?,
            })
        })
        .optional()?;
    let Some(p) = presented else {
        return Ok(Rotation::Rejected);
    };
    let now_ts = now.unix_timestamp();
    if p.family_revoked || now_ts >= p.family_expires_at {
        return Ok(Rotation::Rejected);
    }
    if let Some(consumed_at) = p.consumed_at {
        let grace_ms = i64::try_from(refresh.grace.whole_milliseconds()).unwrap_or(0);
        if !p.successor_used && unix_millis(now) - consumed_at < grace_ms {
            return Ok(Rotation::RecentlyRotated {
                user_id: p.user_id,
                family_id: p.family_id,
            });
        }
        revoke_family(tx, &p.family_id, "reuse_detected", now)?;
        return Ok(Rotation::ReuseDetected {
            user_id: p.user_id,
            family_id: p.family_id,
        });
    }
    if now_ts >= p.token_expires_at {
        return Ok(Rotation::Rejected);
    }
    let Some(user) = users::by_id(tx, &p.user_id)? else {
        return Ok(Rotation::Rejected);
    };
    let state = users::auth_state(tx, &p.user_id)?;
    let Some(state) = state.filter(|s| s.is_active) else {
        return Ok(Rotation::Rejected);
    };
    tx.prepare_cached(
        "UPDATE refresh_tokens SET consumed_at = ?2, replaced_by = ?3 WHERE jti = ?1",
    )?
    .execute((&refresh.jti, unix_millis(now), &refresh.new_jti))?;
    let family_end = OffsetDateTime::from_unix_timestamp(p.family_expires_at)
        .map_err(|_| StoreError::Schema("a refresh family has an impossible expiry".to_owned()))?;
    let expires_at = (now + refresh.token_lifetime).min(family_end);
    insert_token(tx, &refresh.new_jti, &p.family_id, now, expires_at)?;
    Ok(Rotation::Rotated {
        user,
        token_version: state.token_version,
        family_id: p.family_id,
        expires_at,
    })
}

/// Revokes one family; returns its user when it existed and was live.
pub(super) fn revoke_family(
    tx: &Transaction<'_>,
    family_id: &str,
    reason: &str,
    now: OffsetDateTime,
) -> Result<Option<String>, StoreError> {
    let user = tx
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE id = ?1 AND revoked_at IS NULL RETURNING user_id",
        )?
        .query_row((family_id, now.unix_timestamp(), reason), |r| r.get(0))
        .optional()?;
    Ok(user)
}

pub(super) fn revoke_all_for_user(
    tx: &Transaction<'_>,
    user_id: &str,
    reason: &str,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE user_id = ?1 AND revoked_at IS NULL",
        )?
        .execute((user_id, now.unix_timestamp(), reason))?)
}

/// Live logins: not revoked, not past their family's end.
pub(super) fn count_live(
    conn: &rusqlite::Connection,
    now: OffsetDateTime,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL AND expires_at > ?1",
        )?
        .query_row([now.unix_timestamp()], |r| r.get(0))?)
}
