//! CORS for configured origins only, matched exactly: an allowed origin gets
//! `Access-Control-Allow-Origin: <origin>` with credentials (never `*`);
//! anything else gets no CORS header at all.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};

use super::response::Body;

pub const ALLOWED_HEADERS: &str = "authorization, content-type, x-request-id";
const ALLOWED_HEADER_NAMES: [&str; 3] = ["authorization", "content-type", "x-request-id"];
pub const MAX_AGE_SECS: u32 = 600;

#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

const ORIGIN: HeaderName = HeaderName::from_static("origin");
const VARY: HeaderName = HeaderName::from_static("vary");
const ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
const ALLOW_CREDENTIALS: HeaderName = HeaderName::from_static("access-control-allow-credentials");
const EXPOSE_HEADERS: HeaderName = HeaderName::from_static("access-control-expose-headers");
const ALLOW_METHODS: HeaderName = HeaderName::from_static("access-control-allow-methods");
const ALLOW_HEADERS: HeaderName = HeaderName::from_static("access-control-allow-headers");
const MAX_AGE: HeaderName = HeaderName::from_static("access-control-max-age");
const REQUEST_METHOD: HeaderName = HeaderName::from_static("access-control-request-method");
const REQUEST_HEADERS: HeaderName = HeaderName::from_static("access-control-request-headers");

#[derive(Debug, thiserror::Error)]
#[error("CORS origin {0:?} must look like https://app.example.com")]
pub struct BadOrigin(String);

/// An origin as browsers send it: `scheme://host[:port]`, nothing more.
pub fn parse_origin(raw: &str) -> Result<String, BadOrigin> {
    let origin = raw.trim().trim_end_matches('/');
    let bad = || BadOrigin(raw.to_owned());
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if !matches!(scheme, "http" | "https") || rest.is_empty() || !rest.chars().all(plain) {
        return Err(bad());
    }
    Ok(origin.to_ascii_lowercase())
}

/// Whether a request that authenticates with the refresh cookie may act:
/// a browser names the page that sent it in `Origin`, and only our own
/// origin (`https://` + the request's host) or a configured CORS origin may
/// make the browser spend that cookie. SameSite=Strict already keeps the
/// cookie off cross-site requests; this also covers same-site pages on other
/// ports or subdomains. No `Origin` at all is a non-browser client, which
/// holds the token anyway.
pub fn origin_may_use_cookie(
    headers: &HeaderMap,
    authority: Option<&str>,
    allowed: &[String],
) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed.iter().any(|o| o == origin) {
        return true;
    }
    let host = authority.or_else(|| headers.get(http::header::HOST)?.to_str().ok());
    let Some(host) = host else {
        return false;
    };
    // Browsers leave the default port out of `Origin`.
    let host = host.strip_suffix(":443").unwrap_or(host);
    origin
        .strip_prefix("https://")
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

impl Cors {
    pub fn new(origins: Vec<String>) -> Self {
        Self { origins }
    }

    pub fn is_enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The request's origin when it is one of ours (byte for byte; `null`
    /// never is).
    fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins.iter().any(|o| o == text).then_some(origin)
    }

    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(ORIGIN)
            && headers.contains_key(REQUEST_METHOD)
    }

    /// A preflight's answer: 204, with a grant only when the origin, the
    /// method (one of `allowed_methods`) and every requested header are allowed.
    pub fn preflight(&self, headers: &HeaderMap, allowed_methods: &[Method]) -> Response<Body> {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let requested_method = headers
            .get(REQUEST_METHOD)
            .and_then(|v| v.to_str().ok())
            .and_then(|m| m.parse::<Method>().ok());
        let headers_ok = headers
            .get_all(REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| ALLOWED_HEADER_NAMES.contains(&h.as_str()));
        let method_ok = requested_method.is_some_and(|m| allowed_methods.contains(&m));
        if let (Some(origin), true, true) = (self.allowed_origin(headers), method_ok, headers_ok) {
            let methods: Vec<&str> = allowed_methods.iter().map(Method::as_str).collect();
            let out = response.headers_mut();
            out.insert(ALLOW_ORIGIN, origin.clone());
            out.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            if let Ok(methods) = HeaderValue::from_str(&methods.join(", ")) {
                out.insert(ALLOW_METHODS, methods);
            }
            out.insert(ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
            out.insert(MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
        }
        if self.is_enabled() {
            response
                .headers_mut()
                .insert(VARY, HeaderValue::from_static("Origin"));
        }
        response
    }

    /// The request's `Origin`, kept before the request is consumed.
    pub fn origin_of(headers: &HeaderMap) -> Option<HeaderValue> {
        headers.get(ORIGIN).cloned()
    }

    /// Adds the grant to an actual (non-preflight) response.
    pub fn apply(&self, origin: Option<&HeaderValue>, response: &mut Response<Body>) {
        if !self.is_enabled() {
            return;
        }
        let out = response.headers_mut();
        out.append(VARY, HeaderValue::from_static("Origin"));
        let allowed = origin.filter(|o| {
            o.to_str()
                .is_ok_and(|t| self.origins.iter().any(|x| x == t))
        });
        if let Some(origin) = allowed {
            out.insert(ALLOW_ORIGIN, origin.clone());
            out.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            out.insert(EXPOSE_HEADERS, HeaderValue::from_static("X-Request-ID"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_or_a_configured_origin_may_use_the_cookie() {
        let cors = ["https://app.example.com".to_owned()];
        let with_origin = |origin: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
            headers
        };
        let host = Some("api.example.com");
        assert!(origin_may_use_cookie(&HeaderMap::new(), host, &cors));
        assert!(origin_may_use_cookie(
            &with_origin("https://api.example.com"),
            host,
            &cors
        ));
        assert!(origin_may_use_cookie(
            &with_origin("https://API.example.com"),
            Some("api.example.com:443"),
            &cors
        ));
        assert!(origin_may_use_cookie(
            &with_origin("https://app.example.com"),
            host,
            &cors
        ));
        for foreign in [
            "https://evil.example",
            "http://api.example.com",
            "https://api.example.com:8443",
            "https://api.example.com.evil.example",
            "null",
        ] {
            assert!(
                !origin_may_use_cookie(&with_origin(foreign), host, &cors),
                "{foreign}"
            );
        }
        assert!(!origin_may_use_cookie(
            &with_origin("https://api.example.com"),
            None,
            &cors
        ));
    }

    #[test]
    fn origins_must_be_plain_scheme_and_host() {
        assert_eq!(
            parse_origin("https://App.Example.com/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            parse_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://a.com/path",
            "ftp://a.com",
            "https://",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_exact_origins_are_granted() {
        let cors = Cors::new(vec!["https://app.example.com".into()]);
        for (origin, granted) in [
            ("https://app.example.com", true),
            ("https://app.example.com.evil.net", false),
            ("https://evil-app.example.com", false),
            ("http://app.example.com", false),
            ("null", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
            let mut response = Response::new(Body::default());
            cors.apply(Cors::origin_of(&headers).as_ref(), &mut response);
            assert_eq!(
                response.headers().contains_key(ALLOW_ORIGIN),
                granted,
                "{origin}"
            );
            assert_eq!(response.headers().get(VARY).unwrap(), "Origin");
        }
    }
}
