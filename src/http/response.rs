use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::error::ApiError;

/// Every response body is produced whole; nothing is streamed.
pub type Body = Full<Bytes>;

pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Serializes `value` as the response body. Serializing our own DTOs cannot
/// fail in practice; if it ever does, the caller gets a 500, not a panic.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, ApiError> {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    Ok(with_body(status, APPLICATION_JSON, body.into()))
}

/// Room for the content type, the security headers the middleware adds to
/// every response, the request id and a few more, so none of them makes the
/// map grow.
const EXPECTED_HEADERS: usize = 16;

pub fn with_body(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = HeaderMap::with_capacity(EXPECTED_HEADERS);
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}
