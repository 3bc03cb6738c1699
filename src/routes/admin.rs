//! `/api/v1/admin`: statistics, runtime settings, the audit trail.

use std::collections::BTreeMap;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::audit;
use crate::accounts::{reports, settings};
use crate::domain::audit::AuditKind;
use crate::http::error::FieldErrors;
use crate::http::extract::{self, Page};
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};
use crate::state::RuntimeSettings;

#[derive(Serialize)]
struct StatsDto {
    users_by_role: BTreeMap<&'static str, i64>,
    active_users: i64,
    locked_users: i64,
    active_sessions: i64,
    failed_logins_24h: i64,
    uptime_seconds: u64,
    version: &'static str,
}

pub async fn stats(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let stats = reports::stats(&ctx.state.store, ctx.state.clock.now()).await?;
    let dto = StatsDto {
        users_by_role: stats
            .users_by_role
            .iter()
            .map(|(role, n)| (role.as_str(), *n))
            .collect(),
        active_users: stats.active_users,
        locked_users: stats.locked_users,
        active_sessions: stats.active_sessions,
        failed_logins_24h: stats.failed_logins_24h,
        uptime_seconds: ctx.state.started_at.elapsed().as_secs(),
        version: crate::VERSION,
    };
    json(StatusCode::OK, &dto)
}

#[derive(Serialize)]
struct ConfigDto {
    registration_enabled: bool,
    max_login_attempts: u32,
    lockout_minutes: u32,
}

impl From<RuntimeSettings> for ConfigDto {
    fn from(s: RuntimeSettings) -> Self {
        Self {
            registration_enabled: s.registration_enabled,
            max_login_attempts: s.max_login_attempts,
            lockout_minutes: s.lockout_minutes,
        }
    }
}

pub async fn config(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    json(StatusCode::OK, &ConfigDto::from(ctx.state.settings()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigUpdate {
    registration_enabled: Option<bool>,
    max_login_attempts: Option<u32>,
    lockout_minutes: Option<u32>,
}

/// A partial update, validated whole, stored, then applied without a restart.
pub async fn update_config(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let actor_id = ctx.principal()?.user_id().to_owned();
    let body: ConfigUpdate = extract::json(req, &ctx.state.limits).await?;
    let before = ctx.state.settings();
    let mut after = before;
    let mut errors = FieldErrors::default();
    if let Some(enabled) = body.registration_enabled {
        after.registration_enabled = enabled;
    }
    if let Some(n) = body.max_login_attempts {
        match RuntimeSettings::check_max_login_attempts(n) {
            Ok(()) => after.max_login_attempts = n,
            Err(message) => errors.push("max_login_attempts", message),
        }
    }
    if let Some(n) = body.lockout_minutes {
        match RuntimeSettings::check_lockout_minutes(n) {
            Ok(()) => after.lockout_minutes = n,
            Err(message) => errors.push("lockout_minutes", message),
        }
    }
    errors.finish()?;
    let changed: BTreeMap<String, String> = after
        .to_pairs()
        .into_iter()
        .zip(before.to_pairs())
        .filter(|(new, old)| new != old)
        .map(|(new, _)| new)
        .collect();
    let now = ctx.state.clock.now();
    settings::put(
        &ctx.state.store,
        audit::origin(&ctx),
        actor_id,
        changed,
        now,
    )
    .await?;
    ctx.state.replace_settings(after);
    json(StatusCode::OK, &ConfigDto::from(after))
}

#[derive(Serialize)]
struct AuditEntry {
    id: i64,
    time: String,
    event: String,
    user_id: Option<String>,
    client_ip: Option<String>,
    request_id: Option<String>,
    detail: Value,
}

#[derive(Serialize)]
struct AuditPage {
    events: Vec<AuditEntry>,
    total: i64,
    page: i64,
    per_page: i64,
    pages: i64,
}

pub async fn audit(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let pairs = extract::query_pairs(req.uri());
    let mut errors = FieldErrors::default();
    let page = Page::parse(&pairs, &mut errors);
    let event = match pairs.iter().find(|(k, _)| k == "event") {
        None => None,
        Some((_, raw)) => {
            let kind = AuditKind::parse(raw);
            if kind.is_none() {
                errors.push("event", "is not a known audit event");
            }
            kind
        }
    };
    let user_id = pairs
        .iter()
        .find(|(k, _)| k == "user_id")
        .map(|(_, v)| v.clone());
    errors.finish()?;
    let (records, total) = reports::audit_trail(
        &ctx.state.store,
        page.offset(),
        page.per_page,
        event,
        user_id,
    )
    .await?;
    let events = records
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            time: r.occurred_at,
            event: r.event,
            user_id: r.user_id,
            client_ip: r.client_ip,
            request_id: r.request_id,
            detail: serde_json::from_str(&r.detail).unwrap_or_else(|_| json!({})),
        })
        .collect();
    let body = AuditPage {
        events,
        total,
        page: page.page,
        per_page: page.per_page,
        pages: page.pages(total),
    };
    json(StatusCode::OK, &body)
}
