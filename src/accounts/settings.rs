//! The runtime settings an admin may change (`PUT /admin/config`).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::domain::audit::{AuditEvent, Event, Origin};
use crate::store::Store;

use super::AccountError;

pub async fn all(store: &Store) -> Result<Vec<(String, String)>, AccountError> {
    store.read(|rows| Ok(rows.settings()?)).await
}

/// Stores the settings that changed, and audits them, in one transaction.
pub async fn put(
    store: &Store,
    origin: Origin,
    actor_id: String,
    changed: BTreeMap<String, String>,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    if changed.is_empty() {
        return Ok(());
    }
    store
        .write(now, move |tx| {
            for (key, value) in &changed {
                tx.put_setting(key, value)?;
            }
            let event = Event::ConfigChange { changed };
            tx.record(AuditEvent::new(&origin, Some(&actor_id), event))?;
            Ok(())
        })
        .await
}
