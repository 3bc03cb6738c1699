//! Recording audit events from handlers: stored in the database (in the same
//! transaction as the change where the store offers it) and logged as JSON.

use serde_json::Value;

use crate::domain::audit::{AuditEvent, AuditKind};
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

/// Stores and logs a standalone event. A failure to store is logged, not
/// returned: the client's request already succeeded or failed on its own.
pub async fn record(ctx: &Ctx, event: AuditEvent) {
    event.log();
    let now = ctx.state.clock.now();
    if let Err(e) = ctx.state.store.record_audit(event, now).await {
        tracing::error!(error = %e, "could not store an audit event");
    }
}
