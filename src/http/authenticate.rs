//! The authentication step: turns the request's credentials into a
//! `Principal`, or a 401 that says nothing about why. Bearer access tokens
//! today; new credential kinds (API keys) are new arms of `Credential`.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::error::ApiError;
use crate::domain::role::Role;
use crate::domain::user::User;
use crate::state::AppState;

/// Who is calling, as checked against the database on this request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    /// The account as read for this request.
    pub user: User,
}

enum Credential<'a> {
    Bearer(&'a str),
}

const NOT_AUTHENTICATED: ApiError = ApiError::Unauthorized {
    code: "not_authenticated",
    detail: "Authentication required",
};
const INVALID_TOKEN: ApiError = ApiError::Unauthorized {
    code: "invalid_token",
    detail: "Invalid or expired token",
};

/// Credentials come from headers only; a token in the URL is never looked at.
fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| INVALID_TOKEN)?;
    let (scheme, token) = value.split_once(' ').ok_or(INVALID_TOKEN)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(INVALID_TOKEN);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(INVALID_TOKEN);
    }
    Ok(Some(Credential::Bearer(token)))
}

pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    match credential(headers)? {
        None => Err(NOT_AUTHENTICATED),
        Some(Credential::Bearer(token)) => {
            let claims = state
                .tokens
                .verify_access(token, state.clock.now())
                .map_err(|_| INVALID_TOKEN)?;
            match state.store.user_for_token(claims.sub.clone()).await? {
                Some((user, version)) if user.is_active && version == claims.ver => Ok(Principal {
                    user_id: claims.sub,
                    role: user.role,
                    user,
                }),
                _ => Err(INVALID_TOKEN),
            }
        }
    }
}
