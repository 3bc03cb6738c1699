//! Where a handler's audit events come from.

use crate::domain::audit::Origin;
use crate::http::router::Ctx;

/// The request as the audit trail names it.
pub fn origin(ctx: &Ctx) -> Origin {
    Origin {
        client_ip: Some(ctx.client_ip.to_string()),
        request_id: Some(ctx.request_id.to_string()),
    }
}
