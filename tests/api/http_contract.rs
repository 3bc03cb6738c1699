//! API.md "Conventions": headers on every response, problem+json errors,
//! request ids, 404/405/413/415/422/500.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, TestResponse, assert_problem};

const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
];

fn assert_common_headers(response: &TestResponse, path: &str) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(response.header(name), Some(value), "{name} on {path}");
    }
    assert!(response.header("server").is_none(), "no Server header");
    assert!(response.header("x-powered-by").is_none());
    let request_id = response.header("x-request-id").expect("X-Request-ID");
    assert!(!request_id.is_empty() && request_id.len() <= 64);
    if path.starts_with("/api/") {
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
    }
}

#[tokio::test]
async fn health_reports_the_crate_version() {
    let app = TestApp::spawn().await;
    let response = app.get("/health").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json(),
        serde_json::json!({"status": "healthy", "version": env!("CARGO_PKG_VERSION")})
    );
    assert_common_headers(&response, "/health");
    let head = app.request("HEAD", "/health", &[], None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

/// method, path, headers, body, expected status, expected problem code
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<&'a [u8]>,
    u16,
    Option<&'a str>,
);

#[tokio::test]
async fn every_kind_of_response_carries_the_headers_and_errors_are_problems() {
    let app = TestApp::spawn_with(|c| c.panic_probe = true).await;
    let json = [("content-type", "application/json")];
    let big = vec![b'a'; 20_000];
    let cases: Vec<Case> = vec![
        ("GET", "/health", vec![], None, 200, None),
        ("GET", "/health/ready", vec![], None, 200, None),
        ("GET", "/nope", vec![], None, 404, Some("not_found")),
        ("GET", "/api/v1/nope", vec![], None, 404, Some("not_found")),
        (
            "DELETE",
            "/health",
            vec![],
            None,
            405,
            Some("method_not_allowed"),
        ),
        (
            "GET",
            "/api/v1/auth/register",
            vec![],
            None,
            405,
            Some("method_not_allowed"),
        ),
        (
            "POST",
            "/api/v1/auth/register",
            json.to_vec(),
            Some(b"{not json"),
            400,
            Some("malformed_json"),
        ),
        (
            "POST",
            "/api/v1/auth/register",
            json.to_vec(),
            Some(&big),
            413,
            Some("payload_too_large"),
        ),
        (
            "POST",
            "/api/v1/auth/register",
            vec![("content-type", "text/plain")],
            Some(b"hello"),
            415,
            Some("unsupported_media_type"),
        ),
        (
            "POST",
            "/api/v1/auth/register",
            json.to_vec(),
            Some(b"{}"),
            422,
            Some("validation_error"),
        ),
        (
            "GET",
            "/api/v1/test/panic",
            vec![],
            None,
            500,
            Some("internal_error"),
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let response = app.request(method, path, &headers, body).await;
        assert_eq!(
            response.status, status,
            "{method} {path}: {:?}",
            response.body
        );
        assert_common_headers(&response, path);
        if let Some(code) = code {
            assert_problem(&response, status, code);
        }
    }
}

#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let app = TestApp::spawn().await;
    let response = app.request("POST", "/health", &[], None).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    let response = app.request("PUT", "/api/v1/auth/register", &[], None).await;
    assert_eq!(response.header("allow"), Some("POST"));
}

#[tokio::test]
async fn a_panicking_handler_costs_one_500_and_the_server_keeps_serving() {
    let app = TestApp::spawn_with(|c| c.panic_probe = true).await;
    for _ in 0..3 {
        let response = app.get("/api/v1/test/panic").await;
        assert_problem(&response, 500, "internal_error");
        let text = String::from_utf8_lossy(&response.body);
        assert!(!text.contains("panic") && !text.contains(".rs"), "{text}");
        assert_eq!(app.get("/health").await.status, 200);
    }
}

#[tokio::test]
async fn the_panic_probe_does_not_exist_unless_a_test_asks_for_it() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/api/v1/test/panic").await.status, 404);
}

#[tokio::test]
async fn a_plain_request_id_is_echoed_and_anything_else_replaced() {
    let app = TestApp::spawn().await;
    let echoed = app
        .request("GET", "/health", &[("x-request-id", "client-id_42")], None)
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("client-id_42"));

    let long = "a".repeat(65);
    for bad in ["has space", "semi;colon", long.as_str(), "<script>"] {
        let response = app
            .request("GET", "/nope", &[("x-request-id", bad)], None)
            .await;
        let id = response.header("x-request-id").unwrap().to_owned();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 32, "a fresh id: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(response.json()["request_id"], id.as_str());
    }
    let a = app.get("/health").await;
    let b = app.get("/health").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn a_chunked_body_is_cut_at_the_limit() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1024).await;
    let mut stream = app.tls_stream().await;
    let head = "POST /api/v1/auth/register HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    // Four times the limit; the server answers before it has all of it.
    for _ in 0..4 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"));
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_read() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1024).await;
    let mut stream = app.tls_stream().await;
    // Announce 10 MiB but send nothing: the answer must not wait for the body.
    let head = "POST /api/v1/auth/register HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test]
async fn readiness_fails_while_the_database_cannot_take_a_write() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/health/ready").await.json(),
        serde_json::json!({"status": "ready"})
    );

    let blocker = crate::helpers::db::hold_write_lock(&app.db_path());
    // A result is shared for up to 1 s; past that the next caller probes
    // again, so a failure is seen after at most about a second.
    tokio::time::sleep(crate::helpers::ready_result_expired()).await;
    let response = app.get("/health/ready").await;
    assert_problem(&response, 503, "service_unavailable");
    assert_eq!(response.header("retry-after"), Some("1"));
    // Liveness does not depend on the database.
    assert_eq!(app.get("/health").await.status, 200);

    blocker.release();
    tokio::time::sleep(crate::helpers::ready_result_expired()).await;
    assert_eq!(app.get("/health/ready").await.status, 200);
}
