//! API.md "Abuse limits" and "Conventions" at the transport: JSON nesting,
//! oversized headers, ambiguous framing, slow bodies, slowloris, HTTP/2
//! stream limits. Deadlines here only guard against hangs; nothing is timed.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    STRONG_PASSWORD, TestApp, TestResponse, assert_problem, client_config, tls_connect,
};

/// How long a test waits for the server before calling it a hang.
const HANG: Duration = Duration::from_secs(15);

async fn post_raw_json(app: &TestApp, body: &str) -> TestResponse {
    app.request(
        "POST",
        "/api/v1/auth/register",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
    .await
}

/// Everything the server sends until it closes the connection (a reset counts
/// as a close). Panics if it does neither within `HANG`.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 8192];
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; received so far: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
}

/// The status codes of every response in a raw HTTP/1.1 byte stream.
fn statuses(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12))
        .filter_map(|code| code.parse().ok())
        .collect()
}

async fn assert_still_serving(app: &TestApp) {
    let response = tokio::time::timeout(HANG, app.get("/health"))
        .await
        .expect("/health answers");
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn json_nested_deeper_than_16_levels_is_refused() {
    let app = TestApp::spawn().await;
    let arrays = format!("{}{}", "[".repeat(17), "]".repeat(17));
    assert_problem(&post_raw_json(&app, &arrays).await, 400, "json_too_deep");

    let objects = format!("{}1{}", r#"{"a":"#.repeat(17), "}".repeat(17));
    assert_problem(&post_raw_json(&app, &objects).await, 400, "json_too_deep");

    // Far deeper (still under the 16 KiB body limit), refused the same way.
    let very_deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    assert_problem(&post_raw_json(&app, &very_deep).await, 400, "json_too_deep");

    // Exactly 16 levels is allowed past the depth check; an array is still
    // not a register body.
    let sixteen = format!("{}{}", "[".repeat(16), "]".repeat(16));
    let response = post_raw_json(&app, &sixteen).await;
    assert_eq!(response.status, 422, "{:?}", response.body);
    assert_ne!(response.json()["code"], "json_too_deep");
}

#[tokio::test]
async fn brackets_inside_a_json_string_are_not_nesting() {
    let app = TestApp::spawn().await;
    // Counted as nesting, these 16 brackets plus the object would be 17 levels.
    for filler in ["[".repeat(16), "{".repeat(16), "[{".repeat(16)] {
        let body = serde_json::json!({
            "username": filler,
            "email": "brackets@example.com",
            "password": STRONG_PASSWORD,
        })
        .to_string();
        let response = post_raw_json(&app, &body).await;
        // Parsed all the way to validation: the username is what is wrong.
        assert_problem(&response, 422, "validation_error");
        assert_eq!(
            response.json()["errors"][0]["field"],
            "username",
            "{:?}",
            response.body
        );
    }
    // Escaped quotes do not end the string early.
    let body = format!(
        r#"{{"username":"a\"{}","email":"x@example.com","password":"{STRONG_PASSWORD}"}}"#,
        "[".repeat(20)
    );
    let response = post_raw_json(&app, &body).await;
    assert_problem(&response, 422, "validation_error");
}

#[tokio::test]
async fn a_header_over_the_size_limit_gets_431_or_a_closed_connection() {
    let app = TestApp::spawn().await;
    let mut stream = app.tls_stream().await;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    // The server may stop reading (and close) before all of it is written.
    let _ = stream.write_all(request.as_bytes()).await;
    let _ = stream.flush().await;
    let raw = read_until_closed(&mut stream).await;
    if !raw.is_empty() {
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
        assert_eq!(statuses(&raw), vec![431], "{text}");
    }
    assert_still_serving(&app).await;
}

/// Sends a request framed by both `Content-Length` and `Transfer-Encoding:
/// chunked`. The chunked body is empty and is followed by a second request;
/// `Content-Length` covers both, so a server reading by Content-Length sees
/// one request, and one reading by Transfer-Encoding sees two. Returns
/// everything received until the server closed the connection.
async fn send_ambiguous(app: &TestApp, method: &str, path: &str, te_first: bool) -> Vec<u8> {
    let smuggled = "GET /api/v1/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let body = format!("0\r\n\r\n{smuggled}");
    let cl = format!("Content-Length: {}\r\n", body.len());
    let te = "Transfer-Encoding: chunked\r\n";
    let framing = if te_first {
        format!("{te}{cl}")
    } else {
        format!("{cl}{te}")
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\n{framing}\r\n{body}"
    );
    let mut stream = app.tls_stream().await;
    let _ = stream.write_all(request.as_bytes()).await;
    read_until_closed(&mut stream).await
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_never_smuggled() {
    let app = TestApp::spawn().await;
    for te_first in [false, true] {
        // An empty body is no register body: whichever framing the server
        // believes, nothing here may succeed.
        let raw = send_ambiguous(&app, "POST", "/api/v1/auth/register", te_first).await;
        let text = String::from_utf8_lossy(&raw);
        let seen = statuses(&raw);
        assert!(
            seen.iter().all(|s| !(200..300).contains(s)),
            "never a 2xx (TE first: {te_first}): {text}"
        );
        assert!(
            seen.len() <= 1,
            "one answer at most; the smuggled request is never served: {text}"
        );
        if let Some(status) = seen.first() {
            assert_eq!(*status, 400, "TE first: {te_first}: {text}");
        }

        // On a route that would answer 200, the smuggled request must still
        // never be read: at most one answer, then the connection is closed
        // (RFC 9112 section 6.1), which `read_until_closed` checks.
        let raw = send_ambiguous(&app, "GET", "/health", te_first).await;
        let text = String::from_utf8_lossy(&raw);
        let seen = statuses(&raw);
        assert!(
            seen.len() <= 1,
            "one answer at most; the smuggled request is never served: {text}"
        );
        assert!(!text.contains("smuggled") && !seen.contains(&404), "{text}");
        if !seen.is_empty() {
            assert!(
                text.to_ascii_lowercase()
                    .contains("\r\nconnection: close\r\n"),
                "an answer to ambiguous framing announces the close: {text}"
            );
        }
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn two_different_content_lengths_are_refused() {
    let app = TestApp::spawn().await;
    for path in ["/health", "/api/v1/auth/register"] {
        let mut stream = app.tls_stream().await;
        let method = if path == "/health" { "GET" } else { "POST" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}"
        );
        let _ = stream.write_all(request.as_bytes()).await;
        let raw = read_until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&raw);
        let seen = statuses(&raw);
        assert!(
            seen.iter().all(|s| !(200..300).contains(s)),
            "never a 2xx on {path}: {text}"
        );
        if let Some(status) = seen.first() {
            assert_eq!(*status, 400, "{path}: {text}");
        }
    }
    assert_still_serving(&app).await;
}

/// Reads one response whose body has a Content-Length; returns the status
/// line and headers as text, and the body.
async fn read_one_response(stream: &mut (impl AsyncReadExt + Unpin)) -> (String, Vec<u8>) {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head =
                String::from_utf8_lossy(received.get(..end).unwrap_or_default()).into_owned();
            let length: usize = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("a Content-Length in {head}"));
            let body_start = end + 4;
            if received.len() >= body_start + length {
                let body = received
                    .get(body_start..body_start + length)
                    .unwrap_or_default()
                    .to_vec();
                return (head, body);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "no complete response in time; received: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "connection closed before a complete response: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(n)) => received.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408() {
    let app = TestApp::spawn_with(|c| c.server.body_read_timeout = Duration::from_secs(1)).await;
    let mut stream = app.tls_stream().await;
    let head = "POST /api/v1/auth/register HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(br#"{"username"#).await.unwrap();
    stream.flush().await.unwrap();

    let (head, body) = read_one_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(lower.contains("x-frame-options: deny"), "{head}");
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 408, "{problem}");
    assert_eq!(problem["code"], "request_timeout", "{problem}");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn clients_holding_incomplete_requests_do_not_starve_a_new_one() {
    // Every test client is 127.0.0.1: the per-client cap is raised so that
    // the 300 stand for many clients, as behind no proxy they would be.
    let app = TestApp::spawn_with(|c| c.server.max_connections_per_ip = 1000).await;
    let opened = futures_util::future::join_all((0..300).map(|i| {
        let app = &app;
        async move {
            let mut stream = app.tls_stream().await;
            let partial: &[u8] = if i % 2 == 0 {
                b"GET /hea"
            } else {
                b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
            };
            stream.write_all(partial).await.unwrap();
            stream.flush().await.unwrap();
            stream
        }
    }));
    let held = tokio::time::timeout(HANG, opened)
        .await
        .expect("300 connections open");
    assert_eq!(held.len(), 300);

    let response = tokio::time::timeout(Duration::from_secs(10), app.get("/health"))
        .await
        .expect("a fresh client is served while 300 slow ones are held");
    assert_eq!(response.status, 200);
    drop(held);
    assert_still_serving(&app).await;
}

/// The server's first HTTP/2 frame is its SETTINGS; returns its parameters.
async fn server_h2_settings(app: &TestApp) -> Vec<(u16, u32)> {
    let cert = app.data_dir().join("tls-cert.pem");
    let mut stream = tls_connect(app.addr, client_config(&cert, &[b"h2"])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    stream.write_all(&hello).await.unwrap();
    stream.flush().await.unwrap();

    let mut header = [0u8; 9];
    tokio::time::timeout(HANG, stream.read_exact(&mut header))
        .await
        .expect("the server sends its SETTINGS")
        .unwrap();
    let [l0, l1, l2, kind, flags, ..] = header;
    assert_eq!(kind, 4, "the first frame is SETTINGS: {header:02x?}");
    assert_eq!(flags & 1, 0, "not an ACK: {header:02x?}");
    let length = u32::from_be_bytes([0, l0, l1, l2]) as usize;
    let mut payload = vec![0u8; length];
    tokio::time::timeout(HANG, stream.read_exact(&mut payload))
        .await
        .expect("the SETTINGS payload")
        .unwrap();
    payload
        .chunks_exact(6)
        .map(|entry| {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            (id, value)
        })
        .collect()
}

#[tokio::test]
async fn http2_advertises_100_concurrent_streams() {
    let app = TestApp::spawn().await;
    let settings = server_h2_settings(&app).await;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    let value = |id: u16| settings.iter().find(|(k, _)| *k == id).map(|(_, v)| *v);
    assert_eq!(value(MAX_CONCURRENT_STREAMS), Some(100), "{settings:?}");
    assert_eq!(value(MAX_HEADER_LIST_SIZE), Some(16 * 1024), "{settings:?}");
}

#[tokio::test]
async fn http2_requests_beyond_the_stream_limit_are_queued_and_all_served() {
    let app = TestApp::spawn().await;
    let cert = app.data_dir().join("tls-cert.pem");
    let stream = tls_connect(app.addr, client_config(&cert, &[b"h2"])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..150 {
        let mut sender = sender.clone();
        requests.spawn(async move {
            sender.ready().await?;
            let request = Request::builder()
                .uri("https://localhost/health")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        });
    }
    let statuses = tokio::time::timeout(HANG, requests.join_all())
        .await
        .expect("all 150 requests finish");
    assert_eq!(statuses.len(), 150);
    for status in statuses {
        assert_eq!(status.expect("the stream completes"), 200);
    }
    // The same connection is still usable.
    let mut sender = sender;
    let request = Request::builder()
        .uri("https://localhost/health")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(HANG, sender.send_request(request))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(response.status(), 200);
}
