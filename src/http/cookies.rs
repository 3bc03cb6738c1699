//! The refresh-token cookie: HttpOnly (no script reads it), Secure, SameSite
//! Strict (no cross-site request carries it), scoped to the auth endpoints.

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

pub const REFRESH_COOKIE: &str = "refresh_token";
const ATTRIBUTES: &str = "HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth";

pub fn refresh_cookie(token: &str, max_age_secs: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={token}; {ATTRIBUTES}; Max-Age={}",
        max_age_secs.max(0)
    ))
    .ok()
}

pub fn clear_refresh_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "refresh_token=; HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth; Max-Age=0",
    )
}

/// The value of cookie `name` from every `Cookie` header (HTTP/2 may split them).
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_among_others_and_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("theme=dark; a=b"));
        headers.append(
            COOKIE,
            HeaderValue::from_static("refresh_token=abc.def.ghi; x=y"),
        );
        assert_eq!(read_cookie(&headers, REFRESH_COOKIE), Some("abc.def.ghi"));
        assert_eq!(read_cookie(&headers, "missing"), None);
        headers.insert(COOKIE, HeaderValue::from_static("refresh_token="));
        assert_eq!(read_cookie(&headers, REFRESH_COOKIE), None);
    }

    #[test]
    fn the_cookie_has_the_contract_attributes() {
        let cookie = refresh_cookie("tok", 604_800).unwrap();
        assert_eq!(
            cookie,
            "refresh_token=tok; HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth; Max-Age=604800"
        );
    }
}
