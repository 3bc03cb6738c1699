//! `/api/v1/auth`: account registration (login, refresh and logout follow).

use std::borrow::Cow;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::domain::Invalid;
use crate::domain::email::Email;
use crate::domain::full_name::FullName;
use crate::domain::password::NewPassword;
use crate::domain::role::Role;
use crate::domain::user::NewUser;
use crate::domain::username::Username;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract;
use crate::http::response::json;
use crate::http::router::{Ctx, HandlerResult};
use crate::routes::dto::UserDto;
use crate::secret::SecretString;
use crate::store::StoreError;

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
        let mut errors = Vec::new();
        let mut check = |field: &'static str, result: Result<(), Invalid>| {
            if let Err(Invalid(message)) = result {
                errors.push(FieldError::new(field, message));
            }
        };
        let username_parsed = Username::parse(username);
        check(
            "username",
            username_parsed.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let email_parsed = Email::parse(email);
        check(
            "email",
            email_parsed.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let full_name_parsed = full_name.map(FullName::parse).transpose();
        check(
            "full_name",
            full_name_parsed.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        match (username_parsed, email_parsed, full_name_parsed) {
            (Ok(username), Ok(email), Ok(full_name)) => {
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
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

pub async fn register(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let body: RegisterRequest = extract::json(req, ctx.state.limits.max_body_bytes).await?;
    let input = AccountInput::parse(
        &body.username,
        &body.email,
        body.full_name.as_deref(),
        SecretString::new(body.password),
    )?;
    let password_hash = ctx.state.hasher.hash(input.password.secret()).await?;
    let new_user = NewUser {
        username: input.username,
        email: input.email,
        full_name: input.full_name,
        role: Role::User,
        password_hash,
    };
    let user = ctx
        .state
        .store
        .create_user(new_user)
        .await
        .map_err(|e| match e {
            // Same answer for a taken username and a taken email: no enumeration.
            StoreError::Duplicate => ApiError::BadRequest {
                code: "registration_failed",
                detail: Cow::Borrowed("Unable to create account with provided information"),
            },
            other => ApiError::from(other),
        })?;
    tracing::info!(user_id = user.id.as_str(), "user registered");
    json(StatusCode::CREATED, &UserDto::from(&user)).map_err(ApiError::internal)
}
