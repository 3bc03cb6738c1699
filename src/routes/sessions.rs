//! `/api/v1/users/me/sessions`: the caller's own logins, and ending one.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audit;
use crate::accounts::sessions::{self, SessionRecord};
use crate::http::error::ApiError;
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};

#[derive(Serialize)]
struct SessionDto {
    id: String,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    client_ip: Option<String>,
    user_agent: Option<String>,
    current: bool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl SessionDto {
    fn new(record: SessionRecord, current_session: &str) -> Self {
        Self {
            current: record.id == current_session,
            created_at: rfc3339(record.created_at),
            last_used_at: rfc3339(record.last_used_at),
            expires_at: rfc3339(record.expires_at),
            client_ip: record.client.ip,
            user_agent: record.client.user_agent,
            id: record.id,
        }
    }
}

#[derive(Serialize)]
struct SessionList {
    sessions: Vec<SessionDto>,
}

pub async fn list(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let principal = ctx.principal()?;
    let now = ctx.state.clock.now();
    let records = sessions::list(&ctx.state.store, principal.user_id().to_owned(), now).await?;
    let list = SessionList {
        sessions: records
            .into_iter()
            .map(|record| SessionDto::new(record, principal.session_id().unwrap_or_default()))
            .collect(),
    };
    json(StatusCode::OK, &list)
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

/// Ends one of the caller's live sessions (the current one included): its
/// refresh tokens and access tokens stop working at once.
pub async fn end(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let user_id = ctx.principal()?.user_id().to_owned();
    let session_id = ctx.params.first().cloned().ok_or(ApiError::NotFound)?;
    let now = ctx.state.clock.now();
    let origin = audit::origin(&ctx);
    sessions::end(&ctx.state.store, origin, user_id, session_id, now).await?;
    json(
        StatusCode::OK,
        &Message {
            message: "Session ended",
        },
    )
}
