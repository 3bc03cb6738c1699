use rusqlite::Connection;
use time::OffsetDateTime;

use super::users::format_time;
use crate::domain::audit::AuditEvent;
use crate::store::StoreError;
use crate::store::rows::AuditRecord;

pub(super) fn insert(
    tx: &Connection,
    event: &AuditEvent,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit_log (occurred_at, event, user_id, client_ip, request_id, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute((
        format_time(now)?,
        event.event.as_str(),
        event.user_id.as_deref(),
        event.origin.client_ip.as_deref(),
        event.origin.request_id.as_deref(),
        event.event.detail().to_string(),
    ))?;
    Ok(())
}

/// One page, newest first, optionally filtered by event and user.
pub(super) fn list(
    conn: &Connection,
    offset: i64,
    limit: i64,
    event: Option<&str>,
    user_id: Option<&str>,
) -> Result<(Vec<AuditRecord>, i64), StoreError> {
    const FILTER: &str = "(?1 IS NULL OR event = ?1) AND (?2 IS NULL OR user_id = ?2)";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM audit_log WHERE {FILTER}"))?
        .query_row((event, user_id), |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT id, occurred_at, event, user_id, client_ip, request_id, detail \
             FROM audit_log WHERE {FILTER} ORDER BY id DESC LIMIT ?3 OFFSET ?4"
        ))?
        .query_map((event, user_id, limit, offset), |r| {
            Ok(AuditRecord {
                id: r.get(0)?,
                occurred_at: r.get(1)?,
                event: r.get(2)?,
                user_id: r.get(3)?,
                client_ip: r.get(4)?,
                request_id: r.get(5)?,
                detail: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

pub(super) fn count_since(
    conn: &Connection,
    event: &str,
    since: OffsetDateTime,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM audit_log WHERE event = ?1 AND occurred_at >= ?2")?
        .query_row((event, format_time(since)?), |r| r.get(0))?)
}
