//! `/api/v1/users`: the caller's own account, and account management for
//! moderators and admins (the rules beyond permissions live in
//! `domain::policy` and are applied by `accounts`).

use std::borrow::Cow;

use super::audit;
use super::auth::{AccountInput, TokenGrant, new_session, session_client, settle, token_pair};
use crate::accounts::login::{self, Checked, NewPasswordGrant, PasswordCheck, Presented};
use crate::accounts::profile::{self, OwnProfile};
use crate::accounts::{AccountError, admin, register, reports, two_factor};
use crate::domain::Invalid;
use crate::domain::email::Email;
use crate::domain::full_name::FullName;
use crate::domain::lockout::Verdict;
use crate::domain::password::{LoginPassword, NewPassword};
use crate::domain::policy::UserPatch;
use crate::domain::role::Role;
use crate::http::error::{ApiError, FieldError, FieldErrors};
use crate::http::extract::{self, Page};
use crate::http::middleware::SESSION_REQUIRED;
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};
use crate::routes::dto::UserDto;
use crate::secret::SecretString;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Deserializer, Serialize};

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Served from the row authentication just read: one query per request.
pub async fn me(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let user = &ctx.principal()?.user;
    json(StatusCode::OK, &UserDto::from(user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileRequest {
    #[serde(default, deserialize_with = "present")]
    full_name: Option<Option<String>>,
    email: Option<String>,
}

/// Parses name and email changes, collecting field errors.
fn profile_patch(
    full_name: Option<Option<String>>,
    email: Option<String>,
    errors: &mut FieldErrors,
) -> UserPatch {
    let full_name = match full_name {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => errors.check("full_name", FullName::parse(&raw)),
    };
    let email = email.and_then(|raw| errors.check("email", Email::parse(&raw)));
    UserPatch {
        full_name,
        email,
        ..UserPatch::default()
    }
}

pub async fn update_me(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let user_id = ctx.principal()?.user_id().to_owned();
    let body: ProfileRequest = extract::json(req, &ctx.state.limits).await?;
    // The email is where password resets would go: an API key may rename
    // its owner, never move the account.
    if body.email.is_some() && ctx.principal()?.api_key_id().is_some() {
        return Err(SESSION_REQUIRED);
    }
    let mut errors = FieldErrors::default();
    let patch = profile_patch(body.full_name, body.email, &mut errors);
    errors.finish()?;
    let own = OwnProfile {
        full_name: patch.full_name,
        email: patch.email,
    };
    let now = ctx.state.clock.now();
    let user =
        profile::update_own_profile(&ctx.state.store, audit::origin(&ctx), user_id, own, now)
            .await
            .map_err(|e| match e {
                // No hint whether the address belongs to someone else.
                AccountError::Duplicate => ApiError::BadRequest {
                    code: "update_failed",
                    detail: Cow::Borrowed("Unable to update account with provided information"),
                },
                other => ApiError::from(other),
            })?;
    json(StatusCode::OK, &UserDto::from(&user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// On success every earlier token of the user stops working, the caller's
/// included, and the caller gets a fresh pair: only they stay signed in.
pub async fn change_password(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let user_id = ctx.principal()?.user_id().to_owned();
    let client = session_client(&ctx, req.headers());
    let body: ChangePasswordRequest = extract::json(req, &ctx.state.limits).await?;
    if body.current_password == body.new_password {
        return Err(ApiError::Validation(vec![FieldError::new(
            "new_password",
            "must differ from the current password",
        )]));
    }
    let current = LoginPassword::parse(SecretString::new(body.current_password))
        .map_err(|Invalid(m)| ApiError::Validation(vec![FieldError::new("current_password", m)]))?;
    let new =
        NewPassword::parse(SecretString::new(body.new_password)).map_err(|Invalid(rule)| {
            ApiError::BadRequest {
                code: "weak_password",
                detail: Cow::Borrowed(rule),
            }
        })?;
    let state = &ctx.state;
    let credentials = login::credentials_by_id(&state.store, user_id.clone())
        .await?
        .ok_or(INVALID_TOKEN)?;
    let verified = state
        .hasher
        .verify(current.secret(), Some(credentials.password_hash.clone()))
        .await?;
    // The new hash is made only for the right current password; whether it
    // is stored is settled against the account as it is then.
    let now = state.clock.now();
    let session = new_session(&ctx, now, client);
    let outcome = if verified.matches {
        Checked::Right(NewPasswordGrant {
            new_hash: state.hasher.hash(new.secret()).await?,
            session: session.clone(),
        })
    } else {
        Checked::Wrong
    };
    let check = PasswordCheck::against(credentials, Presented::ChangePassword(outcome));
    let settled = settle(&ctx, check, now).await?;
    match (settled.verdict, settled.account) {
        (Verdict::Accepted, Some((user, token_version))) => token_pair(
            &ctx,
            TokenGrant::new_session(&user, token_version, &session),
            now,
            &Message {
                message: "Password changed successfully",
            },
        ),
        // A locked account answers like a wrong password: a stolen access
        // token learns nothing from the difference.
        (Verdict::WrongPassword(_) | Verdict::Locked, _) => Err(ApiError::BadRequest {
            code: "wrong_password",
            detail: Cow::Borrowed("Current password is incorrect"),
        }),
        // The password or token version moved while this request hashed, or
        // the account went away: the caller's token no longer stands.
        _ => Err(INVALID_TOKEN),
    }
}

const INVALID_TOKEN: ApiError = ApiError::Unauthorized {
    code: "invalid_token",
    detail: "Invalid or expired token",
};

#[derive(Serialize)]
struct UserList {
    users: Vec<UserDto>,
    total: i64,
    page: i64,
    per_page: i64,
    pages: i64,
}

pub async fn list(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let pairs = extract::query_pairs(req.uri());
    let mut errors = FieldErrors::default();
    let page = Page::parse(&pairs, &mut errors);
    let role = pairs
        .iter()
        .find(|(k, _)| k == "role")
        .and_then(|(_, raw)| errors.check("role", Role::parse(raw)));
    errors.finish()?;
    let (users, total) =
        reports::users(&ctx.state.store, page.offset(), page.per_page, role).await?;
    let list = UserList {
        users: users.iter().map(UserDto::from).collect(),
        total,
        page: page.page,
        per_page: page.per_page,
        pages: page.pages(total),
    };
    json(StatusCode::OK, &list)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    username: String,
    email: String,
    password: String,
    full_name: Option<String>,
    role: Option<String>,
}

pub async fn create(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let actor_id = ctx.principal()?.user_id().to_owned();
    let body: CreateUserRequest = extract::json(req, &ctx.state.limits).await?;
    let role = match body.role.as_deref().map(Role::parse).transpose() {
        Ok(role) => role.unwrap_or(Role::User),
        Err(Invalid(message)) => {
            return Err(ApiError::Validation(vec![FieldError::new("role", message)]));
        }
    };
    let input = AccountInput::parse(
        &body.username,
        &body.email,
        body.full_name.as_deref(),
        SecretString::new(body.password),
    )?;
    let new_user = input.into_new_user(&ctx.state.hasher, role).await?;
    let now = ctx.state.clock.now();
    let origin = audit::origin(&ctx);
    let user = register::create_by(&ctx.state.store, origin, actor_id, new_user, now).await?;
    json(StatusCode::CREATED, &UserDto::from(&user))
}

pub async fn get(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let id = ctx.user_id_param()?;
    let user = reports::user(&ctx.state.store, id.as_str().to_owned())
        .await?
        .ok_or(ApiError::NotFound)?;
    json(StatusCode::OK, &UserDto::from(&user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchRequest {
    #[serde(default, deserialize_with = "present")]
    full_name: Option<Option<String>>,
    email: Option<String>,
    role: Option<String>,
    is_active: Option<bool>,
}

pub async fn patch(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let actor_id = ctx.principal()?.user_id().to_owned();
    let target = ctx.user_id_param()?;
    let body: PatchRequest = extract::json(req, &ctx.state.limits).await?;
    let mut errors = FieldErrors::default();
    let mut patch = profile_patch(body.full_name, body.email, &mut errors);
    patch.is_active = body.is_active;
    patch.role = body
        .role
        .as_deref()
        .and_then(|raw| errors.check("role", Role::parse(raw)));
    errors.finish()?;
    let now = ctx.state.clock.now();
    let (origin, target) = (audit::origin(&ctx), target.as_str().to_owned());
    let user = admin::patch_user(&ctx.state.store, origin, actor_id, target, patch, now).await?;
    json(StatusCode::OK, &UserDto::from(&user))
}

pub async fn unlock(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let actor_id = ctx.principal()?.user_id().to_owned();
    let target = ctx.user_id_param()?;
    let now = ctx.state.clock.now();
    let (origin, target) = (audit::origin(&ctx), target.as_str().to_owned());
    let user = admin::unlock_user(&ctx.state.store, origin, actor_id, target, now).await?;
    json(StatusCode::OK, &UserDto::from(&user))
}

/// Turns 2FA off for someone who lost the device, ending their sessions.
pub async fn reset_two_factor(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let actor_id = ctx.principal()?.user_id().to_owned();
    let target = ctx.user_id_param()?;
    let now = ctx.state.clock.now();
    let (origin, target) = (audit::origin(&ctx), target.as_str().to_owned());
    let user = two_factor::reset(&ctx.state.store, origin, actor_id, target, now).await?;
    json(StatusCode::OK, &UserDto::from(&user))
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

pub async fn delete(ctx: Ctx, _req: Request<Incoming>) -> HandlerResult {
    let actor_id = ctx.principal()?.user_id().to_owned();
    let target = ctx.user_id_param()?;
    let now = ctx.state.clock.now();
    let (origin, target) = (audit::origin(&ctx), target.as_str().to_owned());
    admin::delete_user(&ctx.state.store, origin, actor_id, target, now).await?;
    json(
        StatusCode::OK,
        &Message {
            message: "User deleted successfully",
        },
    )
}
