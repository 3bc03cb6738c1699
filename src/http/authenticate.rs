//! The authentication step: turns the request's credentials into a
//! `Principal`, or a 401 that says nothing about why. Bearer access tokens
//! today; new credential kinds (API keys) are new arms of `Credential`.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::error::ApiError;
use crate::auth::tokens::TokenError;
use crate::domain::audit::TokenRejection;
use crate::domain::role::Role;
use crate::domain::user::User;
use crate::state::AppState;

/// Who is calling, as checked against the database on this request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account as read for this request (its current role, not the
    /// token's).
    pub user: User,
    /// The session (login) the access token belongs to.
    pub session_id: String,
}

impl Principal {
    pub fn user_id(&self) -> &str {
        self.user.id.as_str()
    }

    pub fn role(&self) -> Role {
        self.user.role
    }
}

enum Credential<'a> {
    Bearer(&'a str),
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
        reason: TokenRejection,
        user_id: Option<String>,
    },
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
            AuthError::Failed(error) => error,
        }
    }
}

fn malformed() -> AuthError {
    AuthError::Rejected {
        reason: TokenRejection::Malformed,
        user_id: None,
    }
}

/// Credentials come from headers only; a token in the URL is never looked at.
fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthError> {
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
    }
}

async fn bearer(state: &AppState, token: &str) -> Result<Principal, AuthError> {
    let now = state.clock.now();
    let claims = state
        .tokens
        .verify_access(token, now)
        .map_err(|e| AuthError::Rejected {
            reason: match e {
                TokenError::Invalid => TokenRejection::Invalid,
                TokenError::WrongKind => TokenRejection::WrongKind,
                TokenError::Expired => TokenRejection::Expired,
            },
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
            session_id: claims.sid,
        }),
        // Signed by us, so the subject is worth recording: a session that
        // ended, a bumped token version, a deactivated or deleted account.
        _ => Err(AuthError::Rejected {
            reason: TokenRejection::Revoked,
            user_id: Some(claims.sub),
        }),
    }
}
