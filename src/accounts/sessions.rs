//! Logins after they began: refresh-token rotation with reuse detection,
//! logout and logout-all.

use time::{Duration, OffsetDateTime};

use crate::domain::audit::{AuditEvent, Event, Origin};
use crate::domain::user::User;
use crate::store::Store;
use crate::store::rows::{NewRefreshToken, SessionEnd, Tx};
pub use crate::store::rows::{NewSession, SessionClient, SessionRecord};

use super::AccountError;

/// A random id for a login or a refresh token: 128 bits, never reused.
pub fn new_token_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The first refresh token of a login by `client` that begins `now` and
/// may be refreshed for `lifetime`.
pub fn new_session(now: OffsetDateTime, lifetime: Duration, client: SessionClient) -> NewSession {
    NewSession {
        family_id: new_token_id(),
        jti: new_token_id(),
        issued_at: now,
        family_expires_at: now + lifetime,
        client,
    }
}

/// The longest user agent a session keeps, in characters.
pub const USER_AGENT_CHARS: usize = 200;

/// A user agent as a session keeps it: control characters dropped, at most
/// `USER_AGENT_CHARS` characters.
pub fn session_user_agent(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(USER_AGENT_CHARS)
        .collect()
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
    RecentlyRotated,
    /// Consumed earlier: the whole family has now been revoked.
    ReuseDetected,
}

/// Consumes `refresh.jti` and issues `refresh.new_jti` in its family, in
/// one write transaction: of two concurrent rotations of one token, the
/// second sees it consumed.
pub async fn rotate(
    store: &Store,
    origin: Origin,
    refresh: Refresh,
    now: OffsetDateTime,
) -> Result<Rotation, AccountError> {
    store
        .write(now, move |tx| rotate_in(tx, &origin, &refresh))
        .await
}

/// A consumed token presented again is reuse, and revokes its family, unless
/// it was consumed less than `grace` ago and the token that replaced it has
/// not been used yet: the grace covers two tabs racing one rotation, never a
/// token whose line has moved on.
fn rotate_in(
    tx: &mut Tx<'_>,
    origin: &Origin,
    refresh: &Refresh,
) -> Result<Rotation, AccountError> {
    let now = tx.now();
    let Some(token) = tx.refresh_token(&refresh.jti)? else {
        return Ok(Rotation::Rejected);
    };
    if token.family_revoked || now >= token.family_expires_at {
        return Ok(Rotation::Rejected);
    }
    if let Some(consumed_at) = token.consumed_at {
        let user = Some(token.user_id.as_str());
        if !token.successor_used && now - consumed_at < refresh.grace {
            let event = Event::RefreshReuseInGrace {
                family_id: token.family_id,
            };
            tx.record(AuditEvent::new(origin, user, event))?;
            return Ok(Rotation::RecentlyRotated);
        }
        tx.revoke_session(&token.family_id, SessionEnd::ReuseDetected, now)?;
        let event = Event::RefreshReuseDetected {
            family_id: token.family_id,
        };
        tx.record(AuditEvent::new(origin, user, event))?;
        return Ok(Rotation::ReuseDetected);
    }
    if now >= token.expires_at {
        return Ok(Rotation::Rejected);
    }
    let Some((user, token_version)) = tx.with_token_version(&token.user_id)? else {
        return Ok(Rotation::Rejected);
    };
    if !user.is_active {
        return Ok(Rotation::Rejected);
    }
    tx.consume_refresh_token(&refresh.jti, now, &refresh.new_jti)?;
    tx.touch_session(&token.family_id, now)?;
    let expires_at = (now + refresh.token_lifetime).min(token.family_expires_at);
    tx.insert_refresh_token(&NewRefreshToken {
        jti: &refresh.new_jti,
        family_id: &token.family_id,
        issued_at: now,
        expires_at,
    })?;
    Ok(Rotation::Rotated {
        user,
        token_version,
        family_id: token.family_id,
        expires_at,
    })
}

/// Ends one login; the audit row names its user when the login was live.
pub async fn logout(
    store: &Store,
    origin: Origin,
    family_id: String,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    store
        .write(now, move |tx| {
            let user_id = tx.revoke_session(&family_id, SessionEnd::Logout, now)?;
            tx.record(AuditEvent::new(
                &origin,
                user_id.as_deref(),
                Event::Logout {},
            ))?;
            Ok(())
        })
        .await
}

/// Ends every login of a user and invalidates every access token issued so far.
pub async fn logout_all(
    store: &Store,
    origin: Origin,
    user_id: String,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    store
        .write(now, move |tx| {
            tx.bump_token_version(&user_id)?;
            let ended = tx.revoke_sessions_of(&user_id, SessionEnd::LogoutAll, now)?;
            let event = Event::LogoutAll {
                sessions_ended: ended,
            };
            tx.record(AuditEvent::new(&origin, Some(&user_id), event))?;
            Ok(())
        })
        .await
}

/// The caller's live logins, newest first.
pub async fn list(
    store: &Store,
    user_id: String,
    now: OffsetDateTime,
) -> Result<Vec<SessionRecord>, AccountError> {
    store
        .read(move |rows| Ok(rows.live_sessions_of(&user_id, now)?))
        .await
}

/// Ends one of the caller's own live logins, its access tokens with it;
/// `NotFound` for any other id.
pub async fn end(
    store: &Store,
    origin: Origin,
    user_id: String,
    session_id: String,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    store
        .write(now, move |tx| {
            if !tx.revoke_session_of(&user_id, &session_id, SessionEnd::Ended, now)? {
                return Err(AccountError::NotFound);
            }
            let event = Event::SessionEnded { session_id };
            tx.record(AuditEvent::new(&origin, Some(&user_id), event))?;
            Ok(())
        })
        .await
}
