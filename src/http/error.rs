//! One error type for every handler, and the one place that turns it into a
//! status, a `code` and a detail safe to show. Internal causes are logged here,
//! inside the request's span (so with its request id), and never sent.

use std::borrow::Cow;

use http::header::{ALLOW, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde::Serialize;

use super::response::{Body, with_body};
use crate::auth::password::HashError;
use crate::domain::Invalid;
use crate::store::StoreError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: Cow<'static, str>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every field's problem with a request, so that one 422 names them all.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<Cow<'static, str>>) {
        self.0.push(FieldError::new(field, message));
    }

    /// The parsed value, or `None` with the reason recorded against `field`.
    pub fn check<T>(&mut self, field: &'static str, parsed: Result<T, Invalid>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(Invalid(message)) => {
                self.push(field, message);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The 422 naming every recorded field.
    pub fn into_error(self) -> ApiError {
        ApiError::Validation(self.0)
    }

    /// `Ok` when nothing was recorded, else the 422.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: {code}")]
    BadRequest {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("unauthorized: {code}")]
    Unauthorized {
        code: &'static str,
        detail: &'static str,
    },
    #[error("forbidden: {code}")]
    Forbidden {
        code: &'static str,
        detail: &'static str,
    },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: HeaderValue },
    #[error("conflict: {code}")]
    Conflict {
        code: &'static str,
        detail: &'static str,
    },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("request body too slow")]
    RequestTimeout,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("unavailable: {detail}")]
    Unavailable {
        detail: &'static str,
        retry_after_secs: Option<u64>,
    },
    /// The storage cannot take writes for now (full disk, I/O errors); the
    /// store logs the cause, once a minute rather than per request.
    #[error("storage unavailable")]
    StorageUnavailable,
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// What a client is told to wait when the storage fails: long enough not to
/// hammer a full disk, short enough to notice the room an operator made.
pub const STORAGE_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(cause.into())
    }

    pub fn malformed_json() -> Self {
        ApiError::BadRequest {
            code: "malformed_json",
            detail: Cow::Borrowed("Request body is not valid JSON"),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } | ApiError::StorageUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_and_detail(&self) -> (&'static str, Cow<'static, str>) {
        match self {
            ApiError::BadRequest { code, detail } => (code, detail.clone()),
            ApiError::Validation(_) => ("validation_error", "Request validation failed".into()),
            ApiError::Unauthorized { code, detail }
            | ApiError::Forbidden { code, detail }
            | ApiError::Conflict { code, detail } => (code, Cow::Borrowed(*detail)),
            ApiError::NotFound => ("not_found", "The requested resource was not found".into()),
            ApiError::MethodNotAllowed { .. } => (
                "method_not_allowed",
                "This method is not allowed on this resource".into(),
            ),
            ApiError::PayloadTooLarge => (
                "payload_too_large",
                "Request body exceeds the size limit".into(),
            ),
            ApiError::RequestTimeout => (
                "request_timeout",
                "The request body did not arrive in time".into(),
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                "Request body must be application/json".into(),
            ),
            ApiError::RateLimited { .. } => (
                "rate_limited",
                "Too many requests; retry after the time in Retry-After".into(),
            ),
            ApiError::Unavailable { detail, .. } => ("service_unavailable", Cow::Borrowed(*detail)),
            ApiError::StorageUnavailable => (
                "storage_unavailable",
                "The server cannot store data right now; retry after the time in Retry-After"
                    .into(),
            ),
            ApiError::Internal(_) => ("internal_error", "An unexpected error occurred".into()),
        }
    }

    /// The problem+json response. Call inside the request's span: internal
    /// causes are logged here, once.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %format!("{cause:#}"), "request failed");
        }
        let (code, detail) = self.code_and_detail();
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
            request_id,
            errors: match &self {
                ApiError::Validation(errors) => Some(errors),
                _ => None,
            },
        };
        // A Problem is plain strings and numbers: serializing it cannot fail,
        // and if it somehow did the client still gets the status.
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = with_body(status, PROBLEM_JSON, body.into());
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized { .. } => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, allow);
            }
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable {
                retry_after_secs: Some(retry_after_secs),
                ..
            } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::StorageUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from(STORAGE_RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: Cow<'static, str>,
    code: &'static str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a Vec<FieldError>>,
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => ApiError::Unavailable {
                detail: "The server is busy; retry shortly",
                retry_after_secs: Some(1),
            },
            HashError::Failed(cause) => ApiError::internal(anyhow::anyhow!(cause)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Duplicate => ApiError::Conflict {
                code: "duplicate_user",
                detail: "A user with that username or email already exists",
            },
            StoreError::Busy => ApiError::Unavailable {
                detail: "The database is busy; retry shortly",
                retry_after_secs: Some(1),
            },
            ref other if other.is_unavailable() => ApiError::StorageUnavailable,
            other => ApiError::internal(other),
        }
    }
}
