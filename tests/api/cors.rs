//! API.md "Abuse limits" (CORS): only the configured origin, matched exactly,
//! gets a grant (never `*`), with credentials and `Vary: Origin`; preflights
//! are answered before authentication and carry the security headers too.

use crate::helpers::{TestApp, TestResponse};

const ALLOWED: &str = "https://app.example.com";

async fn spawn_with_cors() -> TestApp {
    TestApp::spawn_with(|c| c.cors_origins = vec![ALLOWED.into()]).await
}

/// Every `Access-Control-*` header of a response, for failure messages.
fn cors_headers(response: &TestResponse) -> Vec<String> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| format!("{name}: {value:?}"))
        .collect()
}

fn varies_on_origin(response: &TestResponse) -> bool {
    response
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("origin"))
}

fn assert_granted(response: &TestResponse, what: &str) {
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED),
        "{what}: {:?}",
        cors_headers(response)
    );
    assert_eq!(
        response
            .headers
            .get_all("access-control-allow-origin")
            .iter()
            .count(),
        1,
        "{what}: a single Access-Control-Allow-Origin"
    );
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true"),
        "{what}"
    );
    assert!(varies_on_origin(response), "{what}: Vary: Origin");
}

fn assert_no_grant(response: &TestResponse, what: &str) {
    assert!(
        response.header("access-control-allow-origin").is_none(),
        "{what}: no Access-Control-Allow-Origin, got {:?}",
        cors_headers(response)
    );
    assert!(
        response
            .header("access-control-allow-credentials")
            .is_none(),
        "{what}: no Access-Control-Allow-Credentials, got {:?}",
        cors_headers(response)
    );
}

async fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> TestResponse {
    app.request(
        "OPTIONS",
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", headers),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn an_allowed_origin_gets_a_credentialed_grant_on_every_kind_of_response() {
    let app = spawn_with_cors().await;
    for (method, path, status) in [
        ("GET", "/health", 200),
        ("GET", "/api/v1/auth/register", 405),
        ("GET", "/api/v1/nope", 404),
    ] {
        let response = app
            .request(method, path, &[("origin", ALLOWED)], None)
            .await;
        let what = format!("{method} {path}");
        assert_eq!(response.status, status, "{what}: {:?}", response.body);
        assert_granted(&response, &what);
        assert_ne!(response.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            response.header("access-control-expose-headers"),
            Some("X-Request-ID"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn any_origin_not_exactly_configured_gets_no_cors_header_but_vary() {
    let app = spawn_with_cors().await;
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.net",
        "https://evil-app.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com/",
        // Browsers always send lower case; anything else is not our origin.
        "HTTPS://APP.EXAMPLE.COM",
        "null",
        "*",
    ] {
        for path in ["/health", "/api/v1/auth/register", "/api/v1/nope"] {
            let response = app.request("GET", path, &[("origin", origin)], None).await;
            let what = format!("Origin {origin:?} on {path}");
            assert!(
                cors_headers(&response).is_empty(),
                "{what}: no Access-Control-* header, got {:?}",
                cors_headers(&response)
            );
            assert!(varies_on_origin(&response), "{what}: Vary: Origin");
        }
    }
    // No Origin at all: a same-origin or non-browser client, no grant either.
    let response = app.get("/health").await;
    assert!(cors_headers(&response).is_empty(), "{:?}", response.headers);
    assert!(varies_on_origin(&response));
}

#[tokio::test]
async fn a_preflight_from_the_allowed_origin_is_granted_with_the_security_headers() {
    let app = spawn_with_cors().await;
    let response = preflight(
        &app,
        "/api/v1/auth/login",
        ALLOWED,
        "POST",
        "content-type, authorization",
    )
    .await;
    assert_eq!(response.status, 204, "{:?}", response.body);
    assert!(response.body.is_empty());
    assert_granted(&response, "preflight");
    let methods = response
        .header("access-control-allow-methods")
        .expect("Access-Control-Allow-Methods");
    assert!(
        methods.split(',').any(|m| m.trim() == "POST"),
        "POST among the allowed methods: {methods:?}"
    );
    let allowed_headers = response
        .header("access-control-allow-headers")
        .expect("Access-Control-Allow-Headers")
        .to_ascii_lowercase();
    for name in ["content-type", "authorization"] {
        assert!(
            allowed_headers.split(',').any(|h| h.trim() == name),
            "{name} among the allowed headers: {allowed_headers:?}"
        );
    }
    let max_age: u32 = response
        .header("access-control-max-age")
        .expect("Access-Control-Max-Age")
        .parse()
        .expect("Access-Control-Max-Age is a number of seconds");
    assert!(max_age <= 7200, "Max-Age {max_age} is at most 2 hours");

    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        ("cross-origin-resource-policy", "same-origin"),
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(response.header(name), Some(value), "{name} on a preflight");
    }
    let request_id = response.header("x-request-id").expect("X-Request-ID");
    assert!(!request_id.is_empty() && request_id.len() <= 64);
    assert!(response.header("server").is_none());
}

#[tokio::test]
async fn a_preflight_from_another_origin_is_not_granted() {
    let app = spawn_with_cors().await;
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "null",
    ] {
        let response = preflight(&app, "/api/v1/auth/login", origin, "POST", "content-type").await;
        let what = format!("preflight from {origin:?}");
        assert_ne!(
            response.status, 401,
            "{what}: no credentials needed to be told no"
        );
        assert!(
            cors_headers(&response).is_empty(),
            "{what}: no Access-Control-* header, got {:?}",
            cors_headers(&response)
        );
    }
}

#[tokio::test]
async fn a_preflight_for_a_method_the_route_does_not_have_is_not_granted() {
    let app = spawn_with_cors().await;
    let response = preflight(
        &app,
        "/api/v1/auth/login",
        ALLOWED,
        "DELETE",
        "content-type",
    )
    .await;
    assert_no_grant(&response, "preflight for DELETE on login");
    assert!(
        response.header("access-control-allow-methods").is_none(),
        "{:?}",
        cors_headers(&response)
    );
}

#[tokio::test]
async fn a_preflight_asking_for_an_unlisted_header_is_not_granted() {
    let app = spawn_with_cors().await;
    let response = preflight(
        &app,
        "/api/v1/auth/login",
        ALLOWED,
        "POST",
        "content-type, x-evil",
    )
    .await;
    assert_no_grant(&response, "preflight asking for x-evil");
    assert!(
        response.header("access-control-allow-headers").is_none(),
        "{:?}",
        cors_headers(&response)
    );
}

#[tokio::test]
async fn a_preflight_on_an_unknown_path_is_404() {
    let app = spawn_with_cors().await;
    let response = preflight(&app, "/api/v1/nope", ALLOWED, "POST", "content-type").await;
    assert_eq!(response.status, 404, "{:?}", response.body);
    assert_eq!(response.json()["code"], "not_found");
    assert!(response.header("access-control-allow-methods").is_none());
}

#[tokio::test]
async fn a_preflight_needs_no_credentials_even_on_an_authenticated_route() {
    let app = spawn_with_cors().await;
    let response = preflight(&app, "/api/v1/users/me", ALLOWED, "GET", "authorization").await;
    assert_eq!(response.status, 204, "not 401: {:?}", response.body);
    assert_granted(&response, "preflight on /users/me");
    let methods = response
        .header("access-control-allow-methods")
        .expect("Access-Control-Allow-Methods");
    assert!(methods.split(',').any(|m| m.trim() == "GET"), "{methods:?}");

    // The actual request still needs the token, and a 401 keeps the grant so
    // the browser can show the error to the calling page.
    let response = app
        .request("GET", "/api/v1/users/me", &[("origin", ALLOWED)], None)
        .await;
    assert_eq!(response.status, 401);
    assert_granted(&response, "401 on /users/me");
}

#[tokio::test]
async fn preflights_are_answered_before_rate_limiting() {
    let app = TestApp::spawn_with(|c| {
        c.cors_origins = vec![ALLOWED.into()];
        c.rate_limits = Some(secure_api::config::default_rate_limits());
    })
    .await;
    // Login allows 5 a minute per client; preflights do not count.
    for _ in 0..8 {
        let response = preflight(&app, "/api/v1/auth/login", ALLOWED, "POST", "content-type").await;
        assert_eq!(response.status, 204, "{:?}", response.body);
        assert_granted(&response, "preflight under rate limits");
    }
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers_and_no_vary() {
    let app = TestApp::spawn().await;
    for origin in [ALLOWED, "https://evil.example.com", "null"] {
        for path in ["/health", "/api/v1/auth/register", "/api/v1/nope"] {
            let response = app.request("GET", path, &[("origin", origin)], None).await;
            let what = format!("Origin {origin:?} on {path}");
            assert!(
                cors_headers(&response).is_empty(),
                "{what}: {:?}",
                cors_headers(&response)
            );
            assert!(!varies_on_origin(&response), "{what}: no Vary: Origin");
        }
        let response = preflight(&app, "/api/v1/auth/login", origin, "POST", "content-type").await;
        let what = format!("preflight from {origin:?}");
        assert!(
            cors_headers(&response).is_empty(),
            "{what}: {:?}",
            cors_headers(&response)
        );
        assert!(!varies_on_origin(&response), "{what}: no Vary: Origin");
    }
}

/// A refresh with the cookie and an `Origin` header.
async fn refresh_from(app: &TestApp, cookie: &str, origin: Option<&str>) -> TestResponse {
    let cookie = format!("refresh_token={cookie}");
    let mut headers = vec![("cookie", cookie.as_str())];
    if let Some(origin) = origin {
        headers.push(("origin", origin));
    }
    app.request("POST", "/api/v1/auth/refresh", &headers, None)
        .await
}

#[tokio::test]
async fn a_foreign_origin_cannot_spend_the_refresh_cookie() {
    let app = spawn_with_cors().await;
    let login = app.signed_in("cookie").await;
    let token = login.refresh_cookie().unwrap();
    for foreign in [
        "https://evil.example",
        "http://localhost",
        "https://localhost:1",
        "null",
    ] {
        let refused = refresh_from(&app, &token, Some(foreign)).await;
        assert_eq!(refused.status, 403, "{foreign}: {:?}", refused.body);
        assert!(refused.set_cookie().is_none(), "{foreign}");
        let cookie = format!("refresh_token={token}");
        let logout = app
            .request(
                "POST",
                "/api/v1/auth/logout",
                &[("cookie", &cookie), ("origin", foreign)],
                None,
            )
            .await;
        assert_eq!(logout.status, 403, "{foreign}");
    }
    // Nothing was consumed: the same token still rotates, from our own
    // origin (the test client sends `Host: localhost`).
    let own = refresh_from(&app, &token, Some("https://localhost")).await;
    assert_eq!(own.status, 200, "{:?}", own.body);
    let next = own.refresh_cookie().unwrap();
    let configured = refresh_from(&app, &next, Some(ALLOWED)).await;
    assert_eq!(configured.status, 200);
    let next = configured.refresh_cookie().unwrap();
    let no_origin = refresh_from(&app, &next, None).await;
    assert_eq!(no_origin.status, 200, "non-browser clients send no Origin");

    // A token in the body is not ambient: no Origin rule applies.
    let body = serde_json::to_vec(&serde_json::json!({
        "refresh_token": no_origin.refresh_cookie().unwrap()
    }))
    .unwrap();
    let in_body = app
        .request(
            "POST",
            "/api/v1/auth/refresh",
            &[
                ("content-type", "application/json"),
                ("origin", "https://evil.example"),
            ],
            Some(&body),
        )
        .await;
    assert_eq!(in_body.status, 200);
}
