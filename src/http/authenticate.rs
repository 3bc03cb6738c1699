//! The authentication step: turns the request's credentials into a
//! `Principal`, or a 401 that says nothing about why. Bearer access tokens
//! and API keys (`X-API-Key`) are the two arms of `Credential`; both end in
//! the same `Principal`, checked against the same per-thread state.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use super::error::ApiError;
use crate::auth::api_keys;
use crate::auth::tokens::TokenError;
use crate::domain::api_key::Scopes;
use crate::domain::audit::{KeyRejection, TokenRejection};
use crate::domain::rate::Rate;
use crate::domain::rbac::{self, Permission};
use crate::domain::role::Role;
use crate::domain::user::User;
use crate::state::AppState;
use crate::telemetry;

/// Who is calling, as checked against the database on this request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account as read for this request (its current role, not the
    /// token's).
    pub user: User,
    pub via: Via,
}

/// What the caller presented.
#[derive(Debug, Clone)]
pub enum Via {
    /// An access token of the session (login) `session_id`.
    Session { session_id: String },
    /// An API key, limited to its scopes and its own rate.
    ApiKey {
        key_id: String,
        scopes: Scopes,
        rate: Rate,
    },
}

impl Principal {
    pub fn user_id(&self) -> &str {
        self.user.id.as_str()
    }

    pub fn role(&self) -> Role {
        self.user.role
    }

    /// The session of the access token; `None` for an API key.
    pub fn session_id(&self) -> Option<&str> {
        match &self.via {
            Via::Session { session_id } => Some(session_id),
            Via::ApiKey { .. } => None,
        }
    }

    pub fn api_key_id(&self) -> Option<&str> {
        match &self.via {
            Via::ApiKey { key_id, .. } => Some(key_id),
            Via::Session { .. } => None,
        }
    }

    /// The role's permission, and for an API key also one of its scopes.
    pub fn permits(&self, permission: Permission) -> bool {
        rbac::allows(self.user.role, permission)
            && match &self.via {
                Via::Session { .. } => true,
                Via::ApiKey { scopes, .. } => scopes.contains(permission),
            }
    }
}

enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// Why a credential was refused, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    Token(TokenRejection),
    Key(KeyRejection),
}

/// Why a request is not authenticated. The client gets the same 401 for
/// every kind of rejection; the reason is for the audit trail.
#[derive(Debug)]
pub enum AuthError {
    /// No credentials at all.
    Missing,
    /// Credentials that do not authenticate; `user_id` when the token was
    /// genuinely ours but no longer valid.
    Rejected {
        reason: Rejection,
        user_id: Option<String>,
    },
    /// Both `X-API-Key` and `Authorization`.
    Ambiguous,
    /// The check itself could not be made (storage unavailable).
    Failed(ApiError),
}

const NOT_AUTHENTICATED: ApiError = ApiError::Unauthorized {
    code: "not_authenticated",
    detail: "Authentication required",
};
const INVALID_TOKEN: ApiError = ApiError::Unauthorized {
    code: "invalid_token",
    detail: "Invalid or expired token",
};

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => NOT_AUTHENTICATED,
            AuthError::Rejected { .. } => INVALID_TOKEN,
            AuthError::Ambiguous => ApiError::BadRequest {
                code: "ambiguous_credentials",
                detail: std::borrow::Cow::Borrowed(
                    "Send either X-API-Key or Authorization, not both",
                ),
            },
            AuthError::Failed(error) => error,
        }
    }
}

fn malformed() -> AuthError {
    AuthError::Rejected {
        reason: Rejection::Token(TokenRejection::Malformed),
        user_id: None,
    }
}

fn key_rejected(reason: KeyRejection, user_id: Option<String>) -> AuthError {
    AuthError::Rejected {
        reason: Rejection::Key(reason),
        user_id,
    }
}

/// A constant name: looking it up needs no parsing on every request.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// Credentials come from headers only; a token in the URL is never looked at.
fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthError> {
    let key = headers.get(&API_KEY_HEADER);
    if key.is_some() && headers.contains_key(AUTHORIZATION) {
        return Err(AuthError::Ambiguous);
    }
    if let Some(key) = key {
        let key = key
            .to_str()
            .map_err(|_| key_rejected(KeyRejection::Malformed, None))?;
        return Ok(Some(Credential::ApiKey(key.trim())));
    }
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(malformed());
    }
    Ok(Some(Credential::Bearer(token)))
}

pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, AuthError> {
    match credential(headers)? {
        None => Err(AuthError::Missing),
        Some(Credential::Bearer(token)) => bearer(state, token).await,
        Some(Credential::ApiKey(key)) => api_key(state, key).await,
    }
}

/// Looked up by the digest of the presented key (an index lookup, so no
/// comparison of secrets happens in this process at all).
async fn api_key(state: &AppState, key: &str) -> Result<Principal, AuthError> {
    if !api_keys::well_formed(key) {
        return Err(key_rejected(KeyRejection::Malformed, None));
    }
    let digest = api_keys::digest_of(key);
    let subject = state
        .store
        .key_subject(&digest)
        .await
        .map_err(|e| AuthError::Failed(e.into()))?
        .ok_or_else(|| key_rejected(KeyRejection::Unknown, None))?;
    // A known key is named in the log line and counted in its usage, even
    // when it no longer admits the request.
    telemetry::context::set_api_key(&subject.key_id);
    let now = state.clock.now();
    if !subject.admits(now) {
        let reason = if subject.owner.is_active {
            KeyRejection::Expired
        } else {
            KeyRejection::OwnerInactive
        };
        return Err(key_rejected(
            reason,
            Some(subject.owner.id.as_str().to_owned()),
        ));
    }
    Ok(Principal {
        user: subject.owner,
        via: Via::ApiKey {
            key_id: subject.key_id,
            scopes: subject.scopes,
            rate: subject.rate,
        },
    })
}

async fn bearer(state: &AppState, token: &str) -> Result<Principal, AuthError> {
    let now = state.clock.now();
    let claims = state
        .tokens
        .verify_access(token, now)
        .map_err(|e| AuthError::Rejected {
            reason: Rejection::Token(match e {
                TokenError::Invalid => TokenRejection::Invalid,
                TokenError::WrongKind => TokenRejection::WrongKind,
                TokenError::Expired => TokenRejection::Expired,
            }),
            user_id: None,
        })?;
    let subject = state
        .store
        .token_subject(&claims.sub, &claims.sid)
        .await
        .map_err(|e| AuthError::Failed(e.into()))?;
    match subject {
        Some(subject) if subject.admits(claims.ver, now.unix_timestamp()) => Ok(Principal {
            user: subject.user,
            via: Via::Session {
                session_id: claims.sid,
            },
        }),
        // Signed by us, so the subject is worth recording: a session that
        // ended, a bumped token version, a deactivated or deleted account.
        _ => Err(AuthError::Rejected {
            reason: Rejection::Token(TokenRejection::Revoked),
            user_id: Some(claims.sub),
        }),
    }
}
