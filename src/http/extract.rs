//! Turning a request into typed input, with every failure a clear client error.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError, FieldErrors};
use crate::state::HttpLimits;

/// Refuses, before reading anything, a body announced as larger than the
/// limit or sent with a media type other than JSON.
pub fn precheck_body(req: &Request<Incoming>, max_body_bytes: usize) -> Result<(), ApiError> {
    let declared = declared_length(req.headers())?;
    if declared.is_some_and(|len| len > max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let may_have_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    let has_body = !hyper::body::Body::is_end_stream(req.body());
    if may_have_body && has_body && !is_json(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(())
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(ApiError::BadRequest {
                code: "bad_content_length",
                detail: Cow::Borrowed("Content-Length is not a number"),
            }),
    }
}

/// `application/json`, optionally with parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The query string's pairs, percent-decoded. Unknown names are ignored by
/// the callers (and so is any credential someone puts in a URL).
pub fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `page` (>= 1, default 1) and `per_page` (>= 1, default 20, capped at 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

pub const DEFAULT_PER_PAGE: i64 = 20;
pub const MAX_PER_PAGE: i64 = 100;

impl Page {
    pub fn parse(pairs: &[(String, String)], errors: &mut FieldErrors) -> Page {
        let mut number = |name: &'static str, default: i64| -> i64 {
            match pairs.iter().find(|(k, _)| k == name) {
                None => default,
                Some((_, v)) => match v.parse::<i64>() {
                    Ok(n) if n >= 1 => n,
                    Ok(_) => {
                        errors.push(name, "must be at least 1");
                        default
                    }
                    Err(_) => {
                        errors.push(name, "must be a positive integer");
                        default
                    }
                },
            }
        };
        let page = number("page", 1);
        let per_page = number("per_page", DEFAULT_PER_PAGE).min(MAX_PER_PAGE);
        Page { page, per_page }
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }

    pub fn pages(&self, total: i64) -> i64 {
        (total + self.per_page - 1) / self.per_page
    }
}

/// Reads the body, stopping at the size limit (so a chunked body cannot grow
/// past it in memory) and at the read deadline (so a client trickling bytes
/// cannot hold a request open).
pub async fn read_body(req: Request<Incoming>, limits: &HttpLimits) -> Result<Bytes, ApiError> {
    let limited = Limited::new(req.into_body(), limits.max_body_bytes);
    let collected = tokio::time::timeout(limits.body_read_timeout, limited.collect())
        .await
        .map_err(|_| ApiError::RequestTimeout)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::BadRequest {
            code: "body_read_failed",
            detail: Cow::Borrowed("The request body could not be read"),
        }),
    }
}

/// Parses a JSON request body into `T`. Syntax errors are 400
/// `malformed_json`; wrong shapes (unknown or missing fields, wrong types) are
/// 422 with the field named, never with the submitted value.
pub async fn json<T: DeserializeOwned>(
    req: Request<Incoming>,
    limits: &HttpLimits,
) -> Result<T, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = read_body(req, limits).await?;
    parse_json(&body)
}

/// Deeper than any body of this API needs; refused before parsing.
pub const MAX_JSON_DEPTH: usize = 16;

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if nesting_depth(body) > MAX_JSON_DEPTH {
        return Err(ApiError::BadRequest {
            code: "json_too_deep",
            detail: Cow::Borrowed("Request body nests too deeply"),
        });
    }
    // serde would also build a struct from an array; a body is an object.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err(ApiError::Validation(vec![FieldError::new(
                "body",
                "must be a JSON object",
            )])),
            Err(_) => Err(ApiError::malformed_json()),
        };
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(shape_error)?;
    deserializer.end().map_err(|_| ApiError::malformed_json())?;
    Ok(value)
}

/// The deepest nesting of arrays and objects, ignoring brackets inside strings.
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if !matches!(inner.classify(), serde_json::error::Category::Data) {
        return ApiError::malformed_json();
    }
    // serde's messages quote the offending value, so only their kind is used.
    let message = inner.to_string();
    let error = if let Some(field) = backquoted(&message, "missing field `") {
        FieldError::new(field, "is required")
    } else if let Some(field) = backquoted(&message, "unknown field `") {
        let field = if is_plain_name(field) { field } else { "body" };
        FieldError::new(field, "is not an accepted field")
    } else {
        let field = if path == "." { "body".to_owned() } else { path };
        let what = if message.starts_with("invalid type") {
            "has the wrong type"
        } else {
            "is invalid"
        };
        FieldError::new(field, what)
    };
    ApiError::Validation(vec![error])
}

fn backquoted<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Dto {
        name: String,
        age: Option<u32>,
    }

    fn field_errors(body: &str) -> Vec<FieldError> {
        match parse_json::<Dto>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in [
            "",
            "{",
            "{\"name\":",
            "not json",
            "{\"name\":\"a\"} trailing",
        ] {
            assert!(
                matches!(
                    parse_json::<Dto>(body.as_bytes()),
                    Err(ApiError::BadRequest {
                        code: "malformed_json",
                        ..
                    })
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_but_brackets_in_strings_do_not_count() {
        let deep = format!("{}{}", "[".repeat(17), "]".repeat(17));
        assert!(matches!(
            parse_json::<serde_json::Value>(deep.as_bytes()),
            Err(ApiError::BadRequest {
                code: "json_too_deep",
                ..
            })
        ));
        let shallow = format!(r#"{{"name":"{}\"{}"}}"#, "[".repeat(50), "{".repeat(50));
        assert_eq!(nesting_depth(shallow.as_bytes()), 1);
        assert!(parse_json::<Dto>(shallow.as_bytes()).is_ok());
    }

    #[test]
    fn shape_errors_name_the_field_without_the_value() {
        assert_eq!(
            field_errors("{}"),
            vec![FieldError::new("name", "is required")]
        );
        assert_eq!(
            field_errors(r#"{"name":"a","role":"admin"}"#),
            vec![FieldError::new("role", "is not an accepted field")]
        );
        let errors = field_errors(r#"{"name":"a","age":"secret-value-42"}"#);
        assert_eq!(errors, vec![FieldError::new("age", "has the wrong type")]);
        let errors = field_errors(r#"{"name":"a","<script>":1}"#);
        assert_eq!(errors[0].field, "body");
        assert!(!format!("{errors:?}").contains("secret-value"));
        assert_eq!(field_errors("[1,2]")[0].field, "body");
    }
}
