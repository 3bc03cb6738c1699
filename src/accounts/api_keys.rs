//! API keys: made, listed, rotated and revoked by their owner (through a
//! session), listed and revoked by admins. A key never has a permission
//! its owner lacks when it is made; on every request the owner's current
//! permissions are intersected with the key's scopes again.

use time::{Date, Duration, OffsetDateTime};

use crate::domain::api_key::{ApiKey, NewApiKey, Scopes};
use crate::domain::audit::{AuditEvent, Event, Origin};
use crate::domain::key_usage::{KeyUsage, USAGE_DAYS, UsageLog};
use crate::domain::policy::Denied;
use crate::domain::rbac;
use crate::store::rows::Tx;
use crate::store::{Store, StoreError};

use super::AccountError;

/// What the owner asked for.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    /// `None`: every permission the owner has.
    pub scopes: Option<Scopes>,
    pub lifetime: Duration,
    /// Canonical `N/second|minute|hour`, already checked against the server's maximum.
    pub rate_limit: String,
}

/// A new secret made outside the transaction: the digest is stored, the
/// key itself only returned.
#[derive(Debug, Clone)]
pub struct Secret {
    pub prefix: String,
    pub digest: String,
}

fn new_key_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn create(
    store: &Store,
    origin: Origin,
    owner_id: String,
    spec: KeySpec,
    secret: Secret,
    now: OffsetDateTime,
) -> Result<ApiKey, AccountError> {
    store
        .write(now, move |tx| {
            let owner = tx.auth_state(&owner_id)?.ok_or(AccountError::NotFound)?;
            let granted = rbac::permissions(owner.role);
            let scopes = spec.scopes.unwrap_or_else(|| Scopes::of(granted));
            if scopes.iter().any(|p| !granted.contains(&p)) {
                return Err(AccountError::Denied(Denied::Forbidden(
                    "An API key cannot have a permission its owner lacks",
                )));
            }
            let key = NewApiKey {
                id: new_key_id(),
                user_id: owner_id.clone(),
                name: spec.name,
                prefix: secret.prefix,
                digest: secret.digest,
                scopes,
                rate_limit: spec.rate_limit,
                created_at: now,
                expires_at: now + spec.lifetime,
            };
            tx.insert_api_key(&key)?;
            let event = Event::ApiKeyCreated {
                key_id: key.id.clone(),
                name: key.name.clone(),
                scopes: key.scopes.to_text(),
            };
            tx.record(AuditEvent::new(&origin, Some(&owner_id), event))?;
            tx.api_key(&key.id)?.ok_or(AccountError::NotFound)
        })
        .await
}

pub async fn list(store: &Store, owner_id: String) -> Result<Vec<ApiKey>, AccountError> {
    store
        .read(move |rows| Ok(rows.api_keys_of(&owner_id)?))
        .await
}

pub async fn list_all(store: &Store) -> Result<Vec<ApiKey>, AccountError> {
    store.read(|rows| Ok(rows.all_api_keys()?)).await
}

/// One of the owner's keys; another user's is `NotFound`, as if absent.
pub async fn get(store: &Store, owner_id: String, key_id: String) -> Result<ApiKey, AccountError> {
    store
        .read(move |rows| {
            rows.api_key(&key_id)?
                .filter(|key| key.user_id == owner_id)
                .ok_or(AccountError::NotFound)
        })
        .await
}

fn owned(tx: &mut Tx<'_>, owner_id: &str, key_id: &str) -> Result<ApiKey, AccountError> {
    tx.api_key(key_id)?
        .filter(|key| key.user_id == owner_id)
        .ok_or(AccountError::NotFound)
}

/// A new secret for the key; the current one keeps working for `overlap`
/// (an older one, from a previous rotation, ends now).
pub async fn rotate(
    store: &Store,
    origin: Origin,
    owner_id: String,
    key_id: String,
    overlap: Duration,
    secret: Secret,
    now: OffsetDateTime,
) -> Result<ApiKey, AccountError> {
    store
        .write(now, move |tx| {
            owned(tx, &owner_id, &key_id)?;
            let old_until = now + overlap;
            tx.rotate_api_key(&key_id, &secret.digest, &secret.prefix, now, old_until)?;
            let event = Event::ApiKeyRotated {
                key_id: key_id.clone(),
                old_secret_until: old_until.unix_timestamp(),
            };
            tx.record(AuditEvent::new(&origin, Some(&owner_id), event))?;
            tx.api_key(&key_id)?.ok_or(AccountError::NotFound)
        })
        .await
}

/// Revokes a key and any overlapping old secret, at once. `owner_id`
/// limits it to the owner's own keys; an admin passes `None`.
pub async fn revoke(
    store: &Store,
    origin: Origin,
    actor_id: String,
    owner_id: Option<String>,
    key_id: String,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    store
        .write(now, move |tx| {
            let key = tx.api_key(&key_id)?.ok_or(AccountError::NotFound)?;
            if owner_id.as_ref().is_some_and(|owner| *owner != key.user_id) {
                return Err(AccountError::NotFound);
            }
            if !tx.revoke_api_key(&key_id, now)? {
                return Err(AccountError::NotFound);
            }
            let event = Event::ApiKeyRevoked { key_id, actor_id };
            tx.record(AuditEvent::new(&origin, Some(&key.user_id), event))?;
            Ok(())
        })
        .await
}

/// One of the owner's keys' usage over the last `USAGE_DAYS` days up to `today`.
pub async fn usage(
    store: &Store,
    owner_id: String,
    key_id: String,
    today: Date,
) -> Result<KeyUsage, AccountError> {
    let since = today - Duration::days(i64::from(USAGE_DAYS) - 1);
    store
        .read(move |rows| {
            rows.api_key(&key_id)?
                .filter(|key| key.user_id == owner_id)
                .ok_or(AccountError::NotFound)?;
            rows.key_usage(&key_id, since)?
                .ok_or(AccountError::NotFound)
        })
        .await
}

/// Writes the usage tallied since the last flush; what cannot be written
/// now stays in the tally for the next one. Returns the keys written.
pub async fn flush_usage(
    store: &Store,
    log: &UsageLog,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let deltas = log.take();
    if deltas.is_empty() {
        return Ok(0);
    }
    let keys = deltas.len();
    match store.add_key_usage(now, deltas.clone()).await {
        Ok(()) => Ok(keys),
        Err(e) => {
            log.restore(deltas);
            Err(e)
        }
    }
}
