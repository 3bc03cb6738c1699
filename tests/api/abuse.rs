//! API.md "Abuse limits": per-client rate limits nobody can spoof, the
//! trusted-proxy rule, certificate reload, the redirect listener and the
//! connection cap.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::helpers::db;
use crate::helpers::{STRONG_PASSWORD, TestApp, TestResponse, send_http1, start_server};

async fn limited_app(trusted: &[&str]) -> TestApp {
    let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
    TestApp::spawn_with(move |c| {
        c.rate_limits = Some(secure_api::config::default_rate_limits());
        c.trusted_proxies = trusted;
    })
    .await
}

async fn login_from(app: &TestApp, forwarded_for: Option<&str>) -> TestResponse {
    let body =
        serde_json::to_vec(&json!({"email": "x@example.com", "password": "Wrong-Password-1"}))
            .unwrap();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(xff) = forwarded_for {
        headers.push(("x-forwarded-for", xff));
    }
    app.request("POST", "/api/v1/auth/login", &headers, Some(&body))
        .await
}

fn assert_limited(response: &TestResponse, limit: &str) {
    assert_eq!(response.status, 429, "{:?}", response.body);
    assert_eq!(response.json()["code"], "rate_limited");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "an honest Retry-After: {retry}");
    assert_eq!(response.header("ratelimit-limit"), Some(limit));
    assert_eq!(response.header("ratelimit-remaining"), Some("0"));
    assert!(response.header("ratelimit-reset").is_some());
    assert_eq!(
        response.header("x-frame-options"),
        Some("DENY"),
        "security headers on 429s too"
    );
    assert!(response.header("x-request-id").is_some());
}

#[tokio::test]
async fn login_register_and_refresh_have_their_own_limits() {
    let app = limited_app(&[]).await;
    for i in 0..5 {
        let response = login_from(&app, None).await;
        assert_eq!(response.status, 401);
        assert_eq!(
            response.header("ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
    }
    assert_limited(&login_from(&app, None).await, "5");

    for i in 0..3 {
        assert_eq!(
            app.register(&format!("reg{i}"), &format!("reg{i}@example.com"))
                .await
                .status,
            201
        );
    }
    assert_limited(&app.register("reg3", "reg3@example.com").await, "3");

    for _ in 0..10 {
        assert_eq!(app.refresh_with_cookie("not-a-token").await.status, 401);
    }
    assert_limited(&app.refresh_with_cookie("not-a-token").await, "10");
}

#[tokio::test]
async fn the_general_api_limit_applies_and_health_is_exempt() {
    let app = limited_app(&[]).await;
    for _ in 0..60 {
        assert_eq!(app.get("/api/v1/users/me").await.status, 401);
    }
    assert_limited(&app.get("/api/v1/users/me").await, "60");
    assert_limited(&app.get("/api/v1/anything").await, "60");
    for _ in 0..100 {
        assert_eq!(app.get("/health").await.status, 200);
    }
    assert_eq!(app.get("/health/ready").await.status, 200);
}

#[tokio::test]
async fn a_forged_forwarded_for_buys_no_fresh_budget_without_a_trusted_proxy() {
    let app = limited_app(&[]).await;
    for i in 0..5 {
        let spoofed = format!("198.51.100.{i}");
        assert_eq!(login_from(&app, Some(&spoofed)).await.status, 401);
    }
    assert_limited(&login_from(&app, Some("203.0.113.99")).await, "5");
    let audited: String = db::first_audit_client(&app, "login_failure");
    assert_eq!(audited, "127.0.0.1", "the TCP peer, not the header");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = limited_app(&["127.0.0.1/32"]).await;
    for _ in 0..5 {
        assert_eq!(login_from(&app, Some("198.51.100.7")).await.status, 401);
    }
    assert_limited(&login_from(&app, Some("198.51.100.7")).await, "5");
    // A forged left-most entry changes nothing: the right-most untrusted hop counts.
    assert_limited(&login_from(&app, Some("6.6.6.6, 198.51.100.7")).await, "5");
    assert_eq!(
        login_from(&app, Some("198.51.100.8")).await.status,
        401,
        "another client"
    );
    let clients = db::audit_clients(&app, "login_failure");
    assert_eq!(clients, ["198.51.100.7", "198.51.100.8"]);
}

#[tokio::test]
async fn limiting_is_audited_once_per_client_and_window_not_per_request() {
    let app = limited_app(&[]).await;
    for _ in 0..5 {
        login_from(&app, None).await;
    }
    for _ in 0..10 {
        assert_eq!(login_from(&app, None).await.status, 429);
    }
    assert_eq!(db::audit_count(&app, "rate_limited"), 1);
}

#[tokio::test]
async fn rate_limit_off_disables_every_limit() {
    let app = TestApp::spawn_with(|c| c.rate_limits = None).await;
    app.signed_in("busy").await;
    for _ in 0..20 {
        assert_eq!(
            app.login("busy@example.com", STRONG_PASSWORD).await.status,
            200
        );
    }
}

fn write_cert(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key, generated.cert.der().to_vec())
}

/// The certificate the server presents to a new connection.
async fn presented(addr: SocketAddr, trusted: &[Vec<u8>]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for der in trusted {
        roots.add(CertificateDer::from(der.clone())).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_it_when_the_new_one_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, first) = write_cert(dir.path(), "live");
    let server = start_server(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let (next_cert, next_key, second) = write_cert(dir.path(), "next");
    let trusted = [first.clone(), second.clone()];
    assert_eq!(presented(server.addr, &trusted).await, first);

    // A connection opened before the reload stays usable after it.
    let config = crate::helpers::client_config(&cert, &[b"http/1.1"]);
    let mut before = crate::helpers::tls_connect(server.addr, config).await;

    std::fs::copy(&next_cert, &cert).unwrap();
    std::fs::copy(&next_key, &key).unwrap();
    crate::helpers::send_signal(&server.child, "HUP");
    let mut served = Vec::new();
    for _ in 0..100 {
        served = presented(server.addr, &trusted).await;
        if served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, second, "new connections get the new certificate");
    before
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    before.read_to_end(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));

    std::fs::write(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    crate::helpers::send_signal(&server.child, "HUP");
    for _ in 0..5 {
        assert_eq!(
            presented(server.addr, &trusted).await,
            second,
            "the broken one is not used"
        );
    }
    let (status, logs, _) = server.stop_with_logs().await;
    assert!(status.success());
    assert!(logs.contains("TLS certificate reloaded"));
    assert!(
        logs.contains("not reloaded; keeping the current one"),
        "{logs}"
    );
}

/// `serve` with the plain-HTTP redirect listener (and `extra` flags), and
/// that listener's address as `serve` logged it.
async fn start_with_redirect(
    dir: &tempfile::TempDir,
    extra: &[&str],
) -> (crate::helpers::ServerProcess, SocketAddr) {
    let mut args = vec!["--redirect-http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = start_server(&dir.path().join("data"), &args).await;
    let redirect = server
        .startup_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|l| l["redirect_address"].as_str().map(str::to_owned))
        .expect("the redirect listener's address is logged")
        .parse()
        .unwrap();
    (server, redirect)
}

#[tokio::test]
async fn the_redirect_listener_sends_every_request_to_https_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (server, redirect) = start_with_redirect(&dir, &[]).await;
    for (method, path) in [
        ("GET", "/api/v1/users/me?page=2"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/"),
    ] {
        let mut tcp = TcpStream::connect(redirect).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: 0\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("HTTP/1.1 308"), "{text}");
        let expected = format!("location: https://localhost:{}{path}", server.addr.port());
        assert!(text.to_ascii_lowercase().contains(&expected), "{text}");
    }
    let mut tcp = TcpStream::connect(redirect).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: evil.com/@x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"));
    server.stop().await;
}

#[tokio::test]
async fn hitting_the_connection_cap_is_logged_and_health_answers_once_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, &["--max-connections", "2"]).await;
    let config = crate::helpers::client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    let first = crate::helpers::tls_connect(server.addr, Arc::clone(&config)).await;
    let _second = crate::helpers::tls_connect(server.addr, Arc::clone(&config)).await;
    let waiting = tokio::spawn(crate::helpers::tls_connect(
        server.addr,
        Arc::clone(&config),
    ));
    // The third connection is held at the cap, not yet served.
    server.wait_for_log("connection limit reached").await;
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    let response = send_http1(third, "GET", "/health", &[], None).await;
    assert_eq!(response.status, 200);
    let (_, logs, _) = server.stop_with_logs().await;
    assert!(logs.contains("connection limit reached"), "{logs}");
}

#[tokio::test]
async fn the_redirect_listener_finishes_a_request_in_flight_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (server, redirect) = start_with_redirect(&dir, &[]).await;
    let mut tcp = TcpStream::connect(redirect).await.unwrap();
    tcp.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // The listener accepts in arrival order: once a later connection has
    // been answered, this one has been accepted and is being read, so the
    // signal finds it in flight rather than still in the kernel's queue.
    let mut later = TcpStream::connect(redirect).await.unwrap();
    later
        .write_all(b"GET /y HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answered = Vec::new();
    later.read_to_end(&mut answered).await.unwrap();
    assert!(answered.starts_with(b"HTTP/1.1 308"));
    crate::helpers::send_signal(&server.child, "TERM");
    // Both listeners drain: the redirect one is no longer cut off mid-request.
    server.wait_for_log("\"listener\":\"redirect\"").await;
    tcp.write_all(b"\r\n").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 308"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let (status, _) = server.stop_after_signal().await;
    assert!(status.success());
}

#[tokio::test]
async fn the_redirect_listener_counts_towards_the_per_ip_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (server, redirect) = start_with_redirect(&dir, &["--max-connections-per-ip", "2"]).await;
    // Two silent connections: the header deadline (10 s) would close them
    // much later than a refusal, which is at once.
    let _first = TcpStream::connect(redirect).await.unwrap();
    let _second = TcpStream::connect(redirect).await.unwrap();
    let mut third = TcpStream::connect(redirect).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a third connection from 127.0.0.1 is closed at once: {read:?}"
    );
    server.stop().await;
}
