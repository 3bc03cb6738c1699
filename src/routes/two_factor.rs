//! `/api/v1/auth/2fa`: the caller's own second factor. Turning it on takes
//! the password (setup) and a first code (verify); turning it off or
//! replacing the backup codes takes the password and a code. Each change
//! ends every other session, like a password change.

use std::borrow::Cow;
use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::audit;
use super::auth::{TokenGrant, new_session, session_client, token_pair};
use crate::accounts::login;
use crate::accounts::sessions::NewSession;
use crate::accounts::two_factor::{
    self, Changed, Confirmation, Enabling, Reauthentication, Refusal, SecondFactor,
};
use crate::auth::{backup_codes, totp};
use crate::domain::Invalid;
use crate::domain::lockout::Seen;
use crate::domain::password::LoginPassword;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract;
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};
use crate::secret::SecretString;

const INVALID_PASSWORD: ApiError = ApiError::BadRequest {
    code: "invalid_password",
    detail: Cow::Borrowed("Current password is incorrect"),
};
const INVALID_CODE: ApiError = ApiError::BadRequest {
    code: "invalid_code",
    detail: Cow::Borrowed("Invalid two-factor code"),
};
const ALREADY_ENABLED: ApiError = ApiError::Conflict {
    code: "two_factor_enabled",
    detail: "Two-factor authentication is already enabled",
};
const NOT_ENABLED: ApiError = ApiError::Conflict {
    code: "two_factor_not_enabled",
    detail: "Two-factor authentication is not enabled",
};
const NOTHING_PENDING: ApiError = ApiError::Conflict {
    code: "no_pending_setup",
    detail: "There is no two-factor setup to verify; call setup first",
};
const INVALID_TOKEN: ApiError = ApiError::Unauthorized {
    code: "invalid_token",
    detail: "Invalid or expired token",
};

/// Codes are short; anything longer is refused before it is looked at.
const MAX_CODE_CHARS: usize = 32;

fn refused(refusal: Refusal, wrong_state: ApiError) -> ApiError {
    match refusal {
        Refusal::Password => INVALID_PASSWORD,
        Refusal::WrongState => wrong_state,
        Refusal::NothingPending => NOTHING_PENDING,
        Refusal::Code => INVALID_CODE,
    }
}

fn parse_password(raw: String) -> Result<LoginPassword, ApiError> {
    LoginPassword::parse(SecretString::new(raw))
        .map_err(|Invalid(m)| ApiError::Validation(vec![FieldError::new("password", m)]))
}

fn parse_code(raw: &str) -> Result<&str, ApiError> {
    let code = raw.trim();
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS {
        return Err(ApiError::Validation(vec![FieldError::new(
            "code",
            "must be a 6-digit code or a backup code",
        )]));
    }
    Ok(code)
}

/// Checks the caller's password (Argon2 on the hashing pool) against the
/// account as it is now; the transaction that follows settles it.
async fn reauthenticate(ctx: &Ctx, password: &LoginPassword) -> Result<Reauthentication, ApiError> {
    let user_id = ctx.principal()?.user_id().to_owned();
    let credentials = login::credentials_by_id(&ctx.state.store, user_id.clone())
        .await?
        .ok_or(INVALID_TOKEN)?;
    let verified = ctx
        .state
        .hasher
        .verify(password.secret(), Some(credentials.password_hash.clone()))
        .await?;
    Ok(Reauthentication {
        user_id,
        seen: Seen {
            password_hash: credentials.password_hash,
            token_version: credentials.token_version,
        },
        password_matches: verified.matches,
    })
}

/// Ten new backup codes, and what the database keeps of them.
fn new_backup_codes(ctx: &Ctx) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let codes = backup_codes::generate().map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    let hashes = codes
        .iter()
        .filter_map(|code| backup_codes::hash(&ctx.state.data_key, code))
        .collect();
    Ok((codes, hashes))
}

#[derive(Serialize)]
struct StatusDto {
    enabled: bool,
    backup_codes_remaining: i64,
}

pub async fn status(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let user_id = ctx.principal()?.user_id().to_owned();
    let status = two_factor::status(&ctx.state.store, user_id).await?;
    json(
        StatusCode::OK,
        &StatusDto {
            enabled: status.enabled,
            backup_codes_remaining: status.backup_codes_remaining,
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    password: String,
}

#[derive(Serialize)]
struct SetupDto {
    secret: String,
    otpauth_uri: String,
    qr_svg: String,
}

/// A new secret, pending until `verify` confirms a code from it; a second
/// setup replaces the first.
pub async fn setup(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let principal = ctx.principal()?;
    let (user_id, username) = (
        principal.user_id().to_owned(),
        principal.user.username.clone(),
    );
    let body: SetupRequest = extract::json(req, &ctx.state.limits).await?;
    let password = parse_password(body.password)?;
    if ctx.principal()?.user.two_factor_enabled {
        return Err(ALREADY_ENABLED);
    }
    let check = reauthenticate(&ctx, &password).await?;
    let secret = totp::generate_secret().map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    let sealed = ctx
        .state
        .data_key
        .seal(&secret, &user_id)
        .map_err(ApiError::internal)?;
    let state = &ctx.state;
    let policy = state.settings().lockout_policy();
    let now = state.clock.now();
    two_factor::setup(
        &state.store,
        audit::origin(&ctx),
        check,
        policy,
        sealed,
        now,
    )
    .await?
    .map_err(|refusal| refused(refusal, ALREADY_ENABLED))?;
    let otpauth_uri = totp::otpauth_uri(&state.totp_issuer, &username, &secret);
    let qr_svg = totp::qr_svg(&otpauth_uri).ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("the otpauth URI does not fit a QR code"))
    })?;
    json(
        StatusCode::OK,
        &SetupDto {
            secret: totp::encode_secret(&secret),
            otpauth_uri,
            qr_svg,
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    code: String,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
    backup_codes: Vec<String>,
}

/// Confirms the pending secret with a code from it: 2FA is on, the backup
/// codes are shown this once, and only the caller stays signed in.
pub async fn verify(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let user_id = ctx.principal()?.user_id().to_owned();
    let client = session_client(&ctx, req.headers());
    let body: VerifyRequest = extract::json(req, &ctx.state.limits).await?;
    let code = parse_code(&body.code)?.to_owned();
    let (codes, backup_hashes) = new_backup_codes(&ctx)?;
    let now = ctx.state.clock.now();
    let session = new_session(&ctx, now, client);
    let enabling = Enabling {
        user_id,
        code,
        backup_hashes,
        session: session.clone(),
    };
    let key = Arc::clone(&ctx.state.data_key);
    let changed = two_factor::enable(&ctx.state.store, audit::origin(&ctx), enabling, key, now)
        .await?
        .map_err(|refusal| refused(refusal, ALREADY_ENABLED))?;
    let extra = Enabled {
        enabled: true,
        backup_codes: codes,
    };
    fresh_tokens(&ctx, &changed, &session, now, &extra)
}

fn fresh_tokens(
    ctx: &Ctx,
    changed: &Changed,
    session: &NewSession,
    now: time::OffsetDateTime,
    extra: &impl Serialize,
) -> HandlerResult {
    let grant = TokenGrant::new_session(&changed.user, changed.token_version, session);
    token_pair(ctx, grant, now, extra)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    password: String,
    code: String,
}

impl ConfirmRequest {
    async fn confirmation(self, ctx: &Ctx) -> Result<Confirmation, ApiError> {
        let password = parse_password(self.password)?;
        let code = SecondFactor::from_code(parse_code(&self.code)?);
        Ok(Confirmation {
            check: reauthenticate(ctx, &password).await?,
            code,
            policy: ctx.state.settings().lockout_policy(),
        })
    }
}

#[derive(Serialize)]
struct Disabled {
    enabled: bool,
}

/// Turns 2FA off: only the caller stays signed in.
pub async fn disable(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let client = session_client(&ctx, req.headers());
    let body: ConfirmRequest = extract::json(req, &ctx.state.limits).await?;
    let confirmation = body.confirmation(&ctx).await?;
    let now = ctx.state.clock.now();
    let session = new_session(&ctx, now, client);
    let key = Arc::clone(&ctx.state.data_key);
    let origin = audit::origin(&ctx);
    let changed = two_factor::disable(
        &ctx.state.store,
        origin,
        confirmation,
        key,
        session.clone(),
        now,
    )
    .await?
    .map_err(|refusal| refused(refusal, NOT_ENABLED))?;
    fresh_tokens(&ctx, &changed, &session, now, &Disabled { enabled: false })
}

#[derive(Serialize)]
struct BackupCodes {
    backup_codes: Vec<String>,
}

/// Ten new backup codes; the earlier ones stop working.
pub async fn regenerate_backup_codes(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let body: ConfirmRequest = extract::json(req, &ctx.state.limits).await?;
    let confirmation = body.confirmation(&ctx).await?;
    let (codes, hashes) = new_backup_codes(&ctx)?;
    let now = ctx.state.clock.now();
    let key = Arc::clone(&ctx.state.data_key);
    let origin = audit::origin(&ctx);
    two_factor::regenerate_backup_codes(&ctx.state.store, origin, confirmation, key, hashes, now)
        .await?
        .map_err(|refusal| refused(refusal, NOT_ENABLED))?;
    json(
        StatusCode::OK,
        &BackupCodes {
            backup_codes: codes,
        },
    )
}
