use rusqlite::Transaction;
use time::OffsetDateTime;

use super::StoreError;
use super::users::format_time;
use crate::domain::audit::AuditEvent;

pub(super) fn insert(
    tx: &Transaction<'_>,
    event: &AuditEvent,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit_log (occurred_at, event, user_id, client_ip, request_id, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute((
        format_time(now)?,
        event.kind.as_str(),
        event.user_id.as_deref(),
        event.client_ip.as_deref(),
        event.request_id.as_deref(),
        event.detail.to_string(),
    ))?;
    Ok(())
}
