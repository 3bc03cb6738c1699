//! `/api/v1/auth`: registration, login, refresh rotation with reuse
//! detection, logout and logout-all.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::SET_COOKIE;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audit;
use crate::accounts::login::{self, Checked, LoginGrant, PasswordCheck, Presented, Settled};
use crate::accounts::sessions::{self, NewSession, Refresh, Rotation, SessionClient};
use crate::accounts::two_factor::{SecondFactor, SecondStep};
use crate::accounts::{AccountError, register as registration};
use crate::auth::password::{PasswordHasher, Verified};
use crate::domain::Invalid;
use crate::domain::email::{self, Email};
use crate::domain::full_name::FullName;
use crate::domain::lockout::Verdict;
use crate::domain::password::{LoginPassword, NewPassword};
use crate::domain::role::Role;
use crate::domain::user::{NewUser, User};
use crate::domain::username::Username;
use crate::http::cookies::{REFRESH_COOKIE, clear_refresh_cookie, read_cookie, refresh_cookie};
use crate::http::cors;
use crate::http::error::{ApiError, FieldErrors};
use crate::http::extract;
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};
use crate::routes::dto::UserDto;
use crate::secret::SecretString;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    email: String,
    password: String,
    full_name: Option<String>,
}

/// The parts of a new account that are checked before any hashing work.
pub struct AccountInput {
    pub username: Username,
    pub email: Email,
    pub full_name: Option<FullName>,
    pub password: NewPassword,
}

impl AccountInput {
    /// Field errors first (422), then the password policy (400 naming the rule).
    pub fn parse(
        username: &str,
        email: &str,
        full_name: Option<&str>,
        password: SecretString,
    ) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::default();
        let username = errors.check("username", Username::parse(username));
        let email = errors.check("email", Email::parse(email));
        let full_name = errors.check("full_name", full_name.map(FullName::parse).transpose());
        // A field that did not parse has its message recorded.
        let (Some(username), Some(email), Some(full_name)) = (username, email, full_name) else {
            return Err(errors.into_error());
        };
        let password =
            NewPassword::parse(password).map_err(|Invalid(rule)| ApiError::BadRequest {
                code: "weak_password",
                detail: Cow::Borrowed(rule),
            })?;
        Ok(Self {
            username,
            email,
            full_name: full_name.flatten(),
            password,
        })
    }

    /// Hashes the password (on the bounded pool) and yields the account to store.
    pub async fn into_new_user(
        self,
        hasher: &PasswordHasher,
        role: Role,
    ) -> Result<NewUser, ApiError> {
        let password_hash = hasher.hash(self.password.secret()).await?;
        Ok(NewUser {
            username: self.username,
            email: self.email,
            full_name: self.full_name,
            role,
            password_hash,
        })
    }
}

pub async fn register(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    if !ctx.state.settings().registration_enabled {
        return Err(ApiError::Forbidden {
            code: "registration_closed",
            detail: "Registration is closed",
        });
    }
    let body: RegisterRequest = extract::json(req, &ctx.state.limits).await?;
    let input = AccountInput::parse(
        &body.username,
        &body.email,
        body.full_name.as_deref(),
        SecretString::new(body.password),
    )?;
    let masked_email = input.email.masked();
    let new_user = input.into_new_user(&ctx.state.hasher, Role::User).await?;
    let now = ctx.state.clock.now();
    let user = registration::register(
        &ctx.state.store,
        audit::origin(&ctx),
        new_user,
        masked_email,
        now,
    )
    .await
    .map_err(|e| match e {
        // Same answer for a taken username and a taken email: no enumeration.
        AccountError::Duplicate => ApiError::BadRequest {
            code: "registration_failed",
            detail: Cow::Borrowed("Unable to create account with provided information"),
        },
        other => ApiError::from(other),
    })?;
    json(StatusCode::CREATED, &UserDto::from(&user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
    /// For an account with two-factor authentication on: a TOTP code, or
    /// else a backup code.
    totp_code: Option<String>,
    backup_code: Option<String>,
}

/// Codes are short; anything longer is refused before it is looked at.
const MAX_CODE_CHARS: usize = 32;

/// What a login presents: the email as stored, the password, and a second
/// factor if one was given.
struct LoginAttempt {
    email: String,
    password: LoginPassword,
    second_factor: Option<SecondFactor>,
}

#[derive(Serialize)]
struct TokenResponse<'a, T: Serialize> {
    /// What the response says besides the tokens (a message, codes).
    #[serde(flatten)]
    extra: &'a T,
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// A token response with nothing besides the tokens.
#[derive(Serialize)]
pub(crate) struct TokensOnly {}

const INVALID_CREDENTIALS: ApiError = ApiError::Unauthorized {
    code: "invalid_credentials",
    detail: "Invalid email or password",
};

impl LoginRequest {
    /// The email as stored (trimmed, lower-case), the password and the
    /// code, or a 422 naming every field that is wrong.
    fn parse(self) -> Result<LoginAttempt, ApiError> {
        let mut errors = FieldErrors::default();
        let email = self.email.trim().to_ascii_lowercase();
        if email.is_empty() || email.len() > 254 {
            errors.push("email", "must be 1 to 254 characters long");
        }
        let password = errors.check(
            "password",
            LoginPassword::parse(SecretString::new(self.password)),
        );
        for (field, code) in [
            ("totp_code", &self.totp_code),
            ("backup_code", &self.backup_code),
        ] {
            if code
                .as_ref()
                .is_some_and(|c| c.chars().count() > MAX_CODE_CHARS)
            {
                errors.push(field, "is too long");
            }
        }
        let second_factor = match (self.totp_code, self.backup_code) {
            (Some(totp), _) => Some(SecondFactor::Totp(totp.trim().to_owned())),
            (None, Some(backup)) => Some(SecondFactor::Backup(backup)),
            (None, None) => None,
        };
        match password {
            Some(password) if errors.is_empty() => Ok(LoginAttempt {
                email,
                password,
                second_factor,
            }),
            _ => Err(errors.into_error()),
        }
    }
}

/// Unknown email, wrong password, deactivated and locked accounts all get the
/// same 401, after the same single Argon2 verification.
pub async fn login(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let client = session_client(&ctx, req.headers());
    let body: LoginRequest = extract::json(req, &ctx.state.limits).await?;
    let LoginAttempt {
        email,
        password,
        second_factor,
    } = body.parse()?;
    let state = &ctx.state;
    // A saturated hasher refuses before any database work: a flood of
    // logins costs little more than the refusals.
    let admission = state.hasher.admit()?;
    let credentials = login::credentials_by_email(&state.store, email.clone()).await?;
    let stored_hash = credentials.as_ref().map(|c| c.password_hash.clone());
    let verified = state
        .hasher
        .verify_admitted(admission, password.secret(), stored_hash)
        .await?;
    let masked_email = email::mask(&email);
    let Some(credentials) = credentials else {
        let now = state.clock.now();
        login::refuse_unknown_email(&state.store, audit::origin(&ctx), masked_email, now).await;
        return Err(INVALID_CREDENTIALS);
    };
    state.hooks.after_login_password_check().await;

    let now = state.clock.now();
    let session = new_session(&ctx, now, client);
    let outcome = if verified.matches {
        Checked::Right(LoginGrant {
            rehash: upgraded_hash(&ctx, verified, &password).await,
            session: session.clone(),
            second_factor,
        })
    } else {
        Checked::Wrong
    };
    let presented = Presented::Login {
        masked_email,
        outcome,
    };
    let check = PasswordCheck::against(credentials, presented);
    let settled = settle(&ctx, check, now).await?;
    match (settled.verdict, settled.second_step, settled.account) {
        (Verdict::Accepted, SecondStep::Required, _) => Err(ApiError::Unauthorized {
            code: "two_factor_required",
            detail: "Two-factor code required",
        }),
        (Verdict::Accepted, SecondStep::Rejected, _) => Err(ApiError::Unauthorized {
            code: "invalid_two_factor_code",
            detail: "Invalid two-factor code",
        }),
        (Verdict::Accepted, _, Some((user, token_version))) => token_pair(
            &ctx,
            TokenGrant::new_session(&user, token_version, &session),
            now,
            &TokensOnly {},
        ),
        _ => Err(INVALID_CREDENTIALS),
    }
}

/// A hash with the current parameters when the stored one used older ones,
/// now that the password is at hand. A saturated hasher only postpones
/// this to a later login.
async fn upgraded_hash(ctx: &Ctx, verified: Verified, password: &LoginPassword) -> Option<String> {
    if !verified.needs_rehash {
        return None;
    }
    ctx.state.hasher.hash(password.secret()).await.ok()
}

/// The first refresh token of a new login, made now, by `client`.
pub(crate) fn new_session(ctx: &Ctx, now: OffsetDateTime, client: SessionClient) -> NewSession {
    sessions::new_session(now, ctx.state.sessions.refresh_lifetime, client)
}

/// Who is logging in, as the session list will show it; read before the
/// body is consumed.
pub(crate) fn session_client(ctx: &Ctx, headers: &http::HeaderMap) -> SessionClient {
    SessionClient {
        ip: Some(ctx.client_ip.to_string()),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(sessions::session_user_agent),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// The refresh token from the cookie, else from a JSON body. Only the cookie
/// is spent by a browser on its own, so a request that would spend it from a
/// foreign origin is refused (403) before anything is consumed.
async fn presented_refresh_token(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Option<String>, ApiError> {
    if let Some(cookie) = read_cookie(req.headers(), REFRESH_COOKIE) {
        let authority = req.uri().authority().map(|a| a.as_str());
        if !cors::origin_may_use_cookie(req.headers(), authority, &ctx.state.browser_origins) {
            return Err(ApiError::Forbidden {
                code: "origin_refused",
                detail: "Cross-origin use of the session cookie is not allowed",
            });
        }
        return Ok(Some(cookie.to_owned()));
    }
    let body = extract::read_body(req, &ctx.state.limits).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: RefreshRequest = extract::parse_json(&body)?;
    Ok(Some(parsed.refresh_token))
}

/// A 401 that also clears the refresh cookie.
fn unauthorized_clearing_cookie(
    ctx: &Ctx,
    code: &'static str,
    detail: &'static str,
) -> HandlerResult {
    let mut response = ApiError::Unauthorized { code, detail }.into_response(&ctx.request_id);
    response
        .headers_mut()
        .insert(SET_COOKIE, clear_refresh_cookie());
    Ok(response)
}

pub async fn refresh(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let presented = presented_refresh_token(&ctx, req).await?;
    let state = &ctx.state;
    let now = state.clock.now();
    let claims = presented.and_then(|t| state.tokens.verify_refresh(&t, now).ok());
    let Some(claims) = claims else {
        return unauthorized_clearing_cookie(
            &ctx,
            "invalid_token",
            "Invalid or expired refresh token",
        );
    };
    let new_jti = sessions::new_token_id();
    let refresh = Refresh {
        jti: claims.jti,
        new_jti: new_jti.clone(),
        grace: state.sessions.reuse_grace,
        token_lifetime: state.sessions.refresh_lifetime,
    };
    let rotation = sessions::rotate(&state.store, audit::origin(&ctx), refresh, now).await?;
    match rotation {
        Rotation::Rotated {
            user,
            token_version,
            family_id,
            expires_at,
        } => {
            let grant = TokenGrant {
                user: &user,
                token_version,
                family_id: &family_id,
                jti: &new_jti,
                refresh_expires_at: expires_at,
            };
            token_pair(&ctx, grant, now, &TokensOnly {})
        }
        // Another tab rotated this token a moment ago and holds the new
        // cookie; clearing the cookie here would log that tab out too.
        Rotation::RecentlyRotated => Err(ApiError::Unauthorized {
            code: "invalid_token",
            detail: "Invalid or expired refresh token",
        }),
        Rotation::ReuseDetected | Rotation::Rejected => {
            unauthorized_clearing_cookie(&ctx, "invalid_token", "Invalid or expired refresh token")
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Message {
    pub message: &'static str,
}

/// Ends the login the refresh token belongs to (an expired one is accepted:
/// logging out must always work), and with it every access token of that
/// login, and clears the cookie. Without a refresh token, a valid bearer
/// token names the login to end.
pub async fn logout(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let bearer_session = bearer_session(&ctx, req.headers());
    let presented = presented_refresh_token(&ctx, req).await?;
    let session = match presented {
        Some(p) => ctx
            .state
            .tokens
            .verify_refresh_ignoring_expiry(&p)
            .ok()
            .map(|claims| claims.fam),
        None => bearer_session,
    };
    if let Some(family_id) = session {
        let now = ctx.state.clock.now();
        sessions::logout(&ctx.state.store, audit::origin(&ctx), family_id, now).await?;
    }
    with_cleared_cookie(json(
        StatusCode::OK,
        &Message {
            message: "Successfully logged out",
        },
    ))
}

/// The session of a valid access token in `Authorization`, if any.
fn bearer_session(ctx: &Ctx, headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let now = ctx.state.clock.now();
    let claims = ctx.state.tokens.verify_access(token.trim(), now).ok()?;
    Some(claims.sid)
}

/// Ends every login of the caller and invalidates every access token issued
/// so far, the one used for this call included.
pub async fn logout_all(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let principal = ctx.principal.as_ref().ok_or(ApiError::Unauthorized {
        code: "not_authenticated",
        detail: "Authentication required",
    })?;
    let now = ctx.state.clock.now();
    let user_id = principal.user_id().to_owned();
    sessions::logout_all(&ctx.state.store, audit::origin(&ctx), user_id, now).await?;
    with_cleared_cookie(json(
        StatusCode::OK,
        &Message {
            message: "Successfully logged out from all sessions",
        },
    ))
}

fn with_cleared_cookie(response: HandlerResult) -> HandlerResult {
    let mut response = response?;
    response
        .headers_mut()
        .insert(SET_COOKIE, clear_refresh_cookie());
    Ok(response)
}

/// Settles a finished password check against the account as it is now,
/// under the lockout policy in force (see `accounts::login::settle`).
pub(crate) async fn settle(
    ctx: &Ctx,
    check: PasswordCheck,
    now: OffsetDateTime,
) -> Result<Settled, ApiError> {
    let state = &ctx.state;
    let policy = state.settings().lockout_policy();
    let key = Arc::clone(&state.data_key);
    Ok(login::settle(&state.store, audit::origin(ctx), check, policy, key, now).await?)
}

/// What a token pair is signed for: an account at a token version, and the
/// refresh token `jti` of the session (family) `family_id`.
pub(crate) struct TokenGrant<'a> {
    pub user: &'a User,
    pub token_version: i64,
    pub family_id: &'a str,
    pub jti: &'a str,
    pub refresh_expires_at: OffsetDateTime,
}

impl<'a> TokenGrant<'a> {
    /// The first pair of a new login (`session`).
    pub(crate) fn new_session(user: &'a User, token_version: i64, session: &'a NewSession) -> Self {
        Self {
            user,
            token_version,
            family_id: &session.family_id,
            jti: &session.jti,
            refresh_expires_at: session.family_expires_at,
        }
    }
}

/// Signs a new access token and the refresh token of `grant`, and answers
/// with both: the access token in the body, the refresh token in the cookie.
pub(crate) fn token_pair(
    ctx: &Ctx,
    grant: TokenGrant<'_>,
    now: OffsetDateTime,
    extra: &impl Serialize,
) -> HandlerResult {
    let tokens = &ctx.state.tokens;
    let user_id = grant.user.id.as_str();
    let access = tokens
        .issue_access(
            user_id,
            grant.user.role.as_str(),
            grant.token_version,
            grant.family_id,
            now,
        )
        .map_err(ApiError::internal)?;
    let refresh = tokens
        .issue_refresh(
            user_id,
            grant.family_id,
            grant.jti,
            now,
            grant.refresh_expires_at,
        )
        .map_err(ApiError::internal)?;
    let mut response = json(
        StatusCode::OK,
        &TokenResponse {
            extra,
            access_token: access.token,
            token_type: "bearer",
            expires_in: access.expires_in,
        },
    )?;
    let max_age = (grant.refresh_expires_at - now).whole_seconds();
    let cookie = refresh_cookie(&refresh, max_age).ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("refresh token is not a header value"))
    })?;
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}
