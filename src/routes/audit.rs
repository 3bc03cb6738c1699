//! Recording audit events from handlers: stored in the database (in the same
//! transaction as the change where the store offers it) and logged as JSON.

use serde_json::Value;

use crate::domain::audit::{AuditEvent, AuditKind};
use crate::domain::lockout::{AfterFailure, Verdict};
use crate::http::router::Ctx;

pub fn event(ctx: &Ctx, kind: AuditKind, user_id: Option<&str>, detail: Value) -> AuditEvent {
    AuditEvent {
        kind,
        user_id: user_id.map(str::to_owned),
        client_ip: Some(ctx.client_ip.to_string()),
        request_id: Some(ctx.request_id.to_string()),
        detail,
    }
}

/// Stores and logs a standalone event (see `Store::record_audit`).
pub async fn record(ctx: &Ctx, event: AuditEvent) {
    let now = ctx.state.clock.now();
    ctx.state.store.record_audit(event, now).await;
}

/// The events a settled password check amounts to: `success` when accepted;
/// otherwise a `failure` event (its detail `failure_detail` plus the reason)
/// and, when this failure locks the account, a `lockout` event.
pub fn verdict_events(
    success: AuditEvent,
    failure: AuditKind,
    verdict: Verdict,
    mut failure_detail: Value,
) -> Vec<AuditEvent> {
    if verdict == Verdict::Accepted {
        return vec![success];
    }
    if let Some(fields) = failure_detail.as_object_mut() {
        fields.insert("reason".to_owned(), Value::from(verdict.reason()));
    }
    let mut events = vec![success.follow_up(failure, failure_detail)];
    if let Verdict::WrongPassword(AfterFailure {
        locked_until: Some(until),
        ..
    }) = verdict
    {
        events.push(success.follow_up(
            AuditKind::Lockout,
            serde_json::json!({ "locked_until": until.unix_timestamp() }),
        ));
    }
    events
}
