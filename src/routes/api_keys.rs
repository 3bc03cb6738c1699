//! `/api/v1/api-keys`: the caller's own keys, managed through a session;
//! and `/api/v1/admin/api-keys`, every user's keys for admins.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audit;
use crate::accounts::api_keys::{self, KeySpec, Secret};
use crate::auth::api_keys as secrets;
use crate::domain::api_key::{ApiKey, Scopes};
use crate::domain::rate::Rate;
use crate::http::error::{ApiError, FieldErrors};
use crate::http::extract;
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};

const DEFAULT_LIFETIME_DAYS: i64 = 90;
const MAX_LIFETIME_DAYS: i64 = 365;
const DEFAULT_OVERLAP_SECONDS: i64 = 86_400;
const MAX_OVERLAP_SECONDS: i64 = 604_800;
const MAX_NAME_CHARS: usize = 64;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A key as its owner sees it: never the key or its digest.
#[derive(Serialize)]
struct ApiKeyDto {
    id: String,
    name: String,
    prefix: String,
    scopes: Vec<&'static str>,
    rate_limit: String,
    created_at: String,
    expires_at: String,
    last_used_at: Option<String>,
    rotated_at: Option<String>,
    /// Only in the admin list.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    /// Only when the key was just made or rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl ApiKeyDto {
    fn new(key: ApiKey) -> Self {
        Self {
            scopes: key.scopes.iter().map(|p| p.as_str()).collect(),
            created_at: rfc3339(key.created_at),
            expires_at: rfc3339(key.expires_at),
            last_used_at: key.last_used_at.map(rfc3339),
            rotated_at: key.rotated_at.map(rfc3339),
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            rate_limit: key.rate_limit,
            user_id: None,
            key: None,
        }
    }

    fn with_owner(key: ApiKey) -> Self {
        let user_id = key.user_id.clone();
        Self {
            user_id: Some(user_id),
            ..Self::new(key)
        }
    }

    fn with_secret(key: ApiKey, secret: String) -> Self {
        Self {
            key: Some(secret),
            ..Self::new(key)
        }
    }
}

#[derive(Serialize)]
struct KeyList {
    api_keys: Vec<ApiKeyDto>,
}

fn new_secret() -> Result<(String, Secret), ApiError> {
    let generated = secrets::generate().map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    let secret = Secret {
        prefix: generated.prefix,
        digest: generated.digest,
    };
    Ok((generated.key, secret))
}

fn key_id_param(ctx: &Ctx) -> Result<String, ApiError> {
    ctx.params
        .first()
        .filter(|id| uuid::Uuid::try_parse(id).is_ok())
        .cloned()
        .ok_or(ApiError::NotFound)
}

pub async fn list(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let owner = ctx.principal()?.user_id().to_owned();
    let keys = api_keys::list(&ctx.state.store, owner).await?;
    let api_keys = keys.into_iter().map(ApiKeyDto::new).collect();
    json(StatusCode::OK, &KeyList { api_keys })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    scopes: Option<Vec<String>>,
    expires_in_days: Option<i64>,
    rate_limit: Option<String>,
}

impl CreateRequest {
    /// Field errors (422) for a bad name, an unknown scope, a lifetime or
    /// a rate out of range; scopes the owner lacks are the account layer's
    /// 403.
    fn parse(self, ctx: &Ctx) -> Result<KeySpec, ApiError> {
        let mut errors = FieldErrors::default();
        let name = self.name.trim().to_owned();
        let name_ok = !name.is_empty()
            && name.chars().count() <= MAX_NAME_CHARS
            && !name.chars().any(char::is_control);
        if !name_ok {
            errors.push(
                "name",
                "must be 1 to 64 characters, without control characters",
            );
        }
        let scopes = match self.scopes {
            None => Some(None),
            Some(names) => errors
                .check("scopes", Scopes::parse(names.iter().map(String::as_str)))
                .map(Some),
        };
        let days = self.expires_in_days.unwrap_or(DEFAULT_LIFETIME_DAYS);
        if !(1..=MAX_LIFETIME_DAYS).contains(&days) {
            errors.push("expires_in_days", "must be between 1 and 365");
        }
        let rates = ctx.state.api_key_rates;
        let rate = match self.rate_limit.as_deref().map(Rate::parse) {
            None => Some(rates.default),
            Some(Ok(rate)) if rate.at_most(rates.max) => Some(rate),
            Some(Ok(_)) => {
                errors.push(
                    "rate_limit",
                    format!("must be at most {}", rates.max.canonical()),
                );
                None
            }
            Some(Err(_)) => {
                errors.push("rate_limit", "must be N/second, N/minute or N/hour");
                None
            }
        };
        match (scopes, rate) {
            (Some(scopes), Some(rate)) if errors.is_empty() => Ok(KeySpec {
                name,
                scopes,
                lifetime: time::Duration::days(days),
                rate_limit: rate.canonical(),
            }),
            _ => Err(errors.into_error()),
        }
    }
}

/// 201 with the key, the only time it is shown.
pub async fn create(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let owner = ctx.principal()?.user_id().to_owned();
    let body: CreateRequest = extract::json(req, &ctx.state.limits).await?;
    let spec = body.parse(&ctx)?;
    let (key, secret) = new_secret()?;
    let now = ctx.state.clock.now();
    let origin = audit::origin(&ctx);
    let made = api_keys::create(&ctx.state.store, origin, owner, spec, secret, now).await?;
    json(StatusCode::CREATED, &ApiKeyDto::with_secret(made, key))
}

pub async fn get(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let owner = ctx.principal()?.user_id().to_owned();
    let key = api_keys::get(&ctx.state.store, owner, key_id_param(&ctx)?).await?;
    json(StatusCode::OK, &ApiKeyDto::new(key))
}

#[derive(Serialize)]
struct UsageDto {
    total: u64,
    last_used_at: Option<String>,
    last_used_ip: Option<String>,
    days: Vec<DayDto>,
}

#[derive(Serialize)]
struct DayDto {
    /// `YYYY-MM-DD`, UTC.
    date: String,
    requests: u64,
    denied: u64,
}

/// The key's use: current within seconds (see `accounts::api_keys::flush_usage`).
pub async fn usage(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let owner = ctx.principal()?.user_id().to_owned();
    let today = ctx.state.clock.now().date();
    let usage = api_keys::usage(&ctx.state.store, owner, key_id_param(&ctx)?, today).await?;
    let days = usage
        .days
        .into_iter()
        .map(|day| DayDto {
            date: day.date.to_string(),
            requests: day.requests,
            denied: day.denied,
        })
        .collect();
    let dto = UsageDto {
        total: usage.total,
        last_used_at: usage.last_used_at.map(rfc3339),
        last_used_ip: usage.last_used_ip,
        days,
    };
    json(StatusCode::OK, &dto)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    overlap_seconds: Option<i64>,
}

/// A new secret; the old one keeps working for the overlap.
pub async fn rotate(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let owner = ctx.principal()?.user_id().to_owned();
    let key_id = key_id_param(&ctx)?;
    let body = extract::read_body(req, &ctx.state.limits).await?;
    let body: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        extract::parse_json(&body)?
    };
    let overlap = body.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    if !(0..=MAX_OVERLAP_SECONDS).contains(&overlap) {
        let mut errors = FieldErrors::default();
        errors.push("overlap_seconds", "must be between 0 and 604800");
        return Err(errors.into_error());
    }
    let (key, secret) = new_secret()?;
    let now = ctx.state.clock.now();
    let origin = audit::origin(&ctx);
    let overlap = time::Duration::seconds(overlap);
    let rotated = api_keys::rotate(
        &ctx.state.store,
        origin,
        owner,
        key_id,
        overlap,
        secret,
        now,
    )
    .await?;
    json(StatusCode::OK, &ApiKeyDto::with_secret(rotated, key))
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

pub async fn revoke(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let actor = ctx.principal()?.user_id().to_owned();
    let key_id = key_id_param(&ctx)?;
    let now = ctx.state.clock.now();
    let origin = audit::origin(&ctx);
    let owner = Some(actor.clone());
    api_keys::revoke(&ctx.state.store, origin, actor, owner, key_id, now).await?;
    revoked()
}

fn revoked() -> HandlerResult {
    json(
        StatusCode::OK,
        &Message {
            message: "API key revoked",
        },
    )
}

/// `GET /admin/api-keys`: every user's keys.
pub async fn admin_list(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let keys = api_keys::list_all(&ctx.state.store).await?;
    let api_keys = keys.into_iter().map(ApiKeyDto::with_owner).collect();
    json(StatusCode::OK, &KeyList { api_keys })
}

/// `DELETE /admin/api-keys/{id}`: revoke anyone's key.
pub async fn admin_revoke(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let actor = ctx.principal()?.user_id().to_owned();
    let key_id = key_id_param(&ctx)?;
    let now = ctx.state.clock.now();
    let origin = audit::origin(&ctx);
    api_keys::revoke(&ctx.state.store, origin, actor, None, key_id, now).await?;
    revoked()
}
