//! TLS versions and ALPN, deadlines on slow and silent clients, the
//! connection caps (in total and per client), HEAD over both protocols.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::helpers::{
    TestApp, client_config, client_config_versions, send_http1, send_http2, start_server_with_env,
    tls_connect,
};

#[tokio::test]
async fn tls_1_2_and_1_3_are_accepted() {
    let app = TestApp::spawn().await;
    let cert = app.data_dir().join("tls-cert.pem");
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config_versions(&cert, &[b"http/1.1"], &[version]);
        let stream = tls_connect(app.addr, config).await;
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        let response = send_http1(stream, "GET", "/health", &[], None).await;
        assert_eq!(response.status, 200);
    }
}

/// A hand-made ClientHello offering only `version` (no supported_versions
/// extension), otherwise acceptable to a TLS 1.2 server: ECDHE-ECDSA-AES-GCM,
/// P-256/X25519, ECDSA-SHA256 signatures.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }
    fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&with_len16(body));
        out
    }
    let mut extensions = Vec::new();
    let mut sni = vec![0u8];
    sni.extend_from_slice(&with_len16(b"localhost"));
    extensions.extend(extension(0x0000, &with_len16(&sni)));
    extensions.extend(extension(0x000a, &with_len16(&[0x00, 0x1d, 0x00, 0x17])));
    extensions.extend(extension(0x000b, &[1, 0]));
    extensions.extend(extension(
        0x000d,
        &with_len16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]),
    ));
    extensions.extend(extension(0xff01, &[0]));

    let mut hello = version.to_vec();
    hello.extend_from_slice(&[0x42; 32]);
    hello.push(0);
    hello.extend_from_slice(&with_len16(&[
        0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13, 0xc0, 0x09, 0x00, 0x2f,
    ]));
    hello.extend_from_slice(&[1, 0]);
    hello.extend_from_slice(&with_len16(&extensions));

    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, version[0], version[1]];
    record.extend_from_slice(&with_len16(&handshake));
    record
}

async fn first_reply(app: &TestApp, hello: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut reply = vec![0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut reply))
        .await
        .expect("the server answers")
        .unwrap_or(0);
    reply.truncate(n);
    reply
}

#[tokio::test]
async fn tls_1_1_is_refused_where_the_same_hello_as_1_2_is_answered() {
    let app = TestApp::spawn().await;
    // Control: the very same hello, as TLS 1.2, gets a ServerHello.
    let reply = first_reply(&app, &client_hello([0x03, 0x03])).await;
    assert_eq!(
        reply.first(),
        Some(&0x16),
        "a handshake record: {reply:02x?}"
    );
    assert_eq!(reply.get(5), Some(&0x02), "ServerHello: {reply:02x?}");

    for old in [[0x03, 0x02], [0x03, 0x01]] {
        let reply = first_reply(&app, &client_hello(old)).await;
        if let Some(&content_type) = reply.first() {
            assert_eq!(
                content_type, 0x15,
                "an alert, not a handshake: {reply:02x?}"
            );
            assert_eq!(reply.get(5), Some(&2), "a fatal alert: {reply:02x?}");
        }
    }
}

#[tokio::test]
async fn alpn_offers_h2_and_http_1_1() {
    let app = TestApp::spawn().await;
    let cert = app.data_dir().join("tls-cert.pem");

    let h2 = tls_connect(app.addr, client_config(&cert, &[b"h2", b"http/1.1"])).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let response = send_http2(h2, "/health").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-frame-options"), Some("DENY"));

    let h1 = tls_connect(app.addr, client_config(&cert, &[b"http/1.1"])).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> bool {
    let mut buf = vec![0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = TestApp::spawn_with(|c| c.server.header_read_timeout = Duration::from_secs(1)).await;
    let mut stream = app.tls_stream().await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(15)).await);
}

#[tokio::test]
async fn a_client_that_never_finishes_the_tls_handshake_is_disconnected() {
    let app =
        TestApp::spawn_with(|c| c.server.tls_handshake_timeout = Duration::from_secs(1)).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(15)).await);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(|c| c.server.max_connections = 2).await;
    let (mut first, first_conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(app.tls_stream().await))
            .await
            .unwrap();
    let first_conn = tokio::spawn(first_conn);
    let _second = app.tls_stream().await;

    // The third is through the kernel's TCP handshake before anything else.
    let cert = app.data_dir().join("tls-cert.pem");
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let third = tokio::spawn(async move {
        let config = client_config(&cert, &[b"http/1.1"]);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap()
    });
    // Round trips on the first connection are the server at work while the
    // third waits: no sleep stands in for "long enough".
    for _ in 0..3 {
        let request = Request::get("/health")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = first.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are open"
    );

    drop(first);
    first_conn.await.unwrap().unwrap();
    let third = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot is free")
        .unwrap();
    let response = send_http1(third, "GET", "/health", &[], None).await;
    assert_eq!(response.status, 200);
}

/// The server's deadline for a request head in the tests below: short, so
/// that no test waits the production 10 s.
const HEAD_TIMEOUT: Duration = Duration::from_secs(1);
/// Far above `HEAD_TIMEOUT` (and the shutdown grace the tests set), far below
/// "never": a busy shared machine may be slow, a broken server is not closed.
const CLOSED_BOUND: Duration = Duration::from_secs(20);

async fn quick_timeouts_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.server.header_read_timeout = HEAD_TIMEOUT;
        c.server.shutdown_grace = HEAD_TIMEOUT;
    })
    .await
}

fn cert_of(app: &TestApp) -> std::path::PathBuf {
    app.data_dir().join("tls-cert.pem")
}

#[tokio::test]
async fn a_silent_connection_is_closed_whatever_its_alpn() {
    let app = quick_timeouts_app().await;
    let offers: [&[&[u8]]; 3] = [&[b"http/1.1"], &[], &[b"h2"]];
    for alpn in offers {
        let mut stream = tls_connect(app.addr, client_config(&cert_of(&app), alpn)).await;
        assert!(
            closed_within(&mut stream, CLOSED_BOUND).await,
            "a client that offered ALPN {alpn:?} and then sent nothing is still connected"
        );
    }
}

#[tokio::test]
async fn a_kept_alive_http1_connection_is_closed_when_no_next_request_comes() {
    let app = quick_timeouts_app().await;
    let mut stream = app.tls_stream().await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The response arrives (read and skipped), then the close.
    assert!(closed_within(&mut stream, CLOSED_BOUND).await);
}

#[tokio::test]
async fn silent_clients_holding_every_slot_do_not_lock_out_a_real_one() {
    let app = TestApp::spawn_with(|c| {
        c.server.max_connections = 4;
        c.server.header_read_timeout = HEAD_TIMEOUT;
    })
    .await;
    let mut silent = Vec::new();
    let offers: [&[&[u8]]; 4] = [&[b"http/1.1"], &[], &[b"http/1.1"], &[]];
    for alpn in offers {
        silent.push(tls_connect(app.addr, client_config(&cert_of(&app), alpn)).await);
    }
    // A fifth connection waits in the listen queue until the server closes
    // a silent one; before the fix that never happened.
    let response = tokio::time::timeout(CLOSED_BOUND, app.get("/health"))
        .await
        .expect("a real client is served once the silent ones time out");
    assert_eq!(response.status, 200);
    drop(silent);
}

/// The frame types of the HTTP/2 frames in `bytes` (whole frames only).
fn h2_frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = rest.get(9 + length..).unwrap_or_default();
    }
    types
}

/// Everything the server sends until it closes the connection; `None` if it
/// is still open after `limit`.
async fn read_until_closed(stream: &mut TlsStream<TcpStream>, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

const GOAWAY: u8 = 0x7;

#[tokio::test]
async fn an_http2_connection_that_opens_no_stream_gets_goaway_and_is_closed() {
    let app = quick_timeouts_app().await;
    let mut stream = tls_connect(app.addr, client_config(&cert_of(&app), &[b"h2"])).await;
    // The client preface and an empty SETTINGS frame, then nothing: the
    // server's PING that follows its GOAWAY is never answered either.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream, CLOSED_BOUND)
        .await
        .expect("an HTTP/2 connection without a stream is closed");
    let types = h2_frame_types(&received);
    assert!(
        types.contains(&GOAWAY),
        "a GOAWAY before the close: {types:?}"
    );
}

#[tokio::test]
async fn an_http2_connection_is_closed_once_idle_after_its_last_response() {
    let app = quick_timeouts_app().await;
    let stream = tls_connect(app.addr, client_config(&cert_of(&app), &[b"h2"])).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..2 {
        let request = Request::get("https://localhost/health")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }
    // The client keeps its end open (and answers the server's PING); the
    // server ends the connection.
    tokio::time::timeout(CLOSED_BOUND, conn)
        .await
        .expect("an idle HTTP/2 connection is closed by the server")
        .unwrap()
        .unwrap();
    drop(sender);
}

/// Whether a TLS connection to `addr` is refused (closed by the server before
/// or during the handshake) within `limit`.
async fn refused_within(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
    limit: Duration,
) -> bool {
    let connector = tokio_rustls::TlsConnector::from(client_config(cert, &[b"http/1.1"]));
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        // A handshake that completed is not refused unless closed at once.
        let mut byte = [0u8; 1];
        match tls.read(&mut byte).await {
            Ok(0) | Err(_) => Err(std::io::Error::other("closed")),
            Ok(_) => Ok(()),
        }
    };
    matches!(tokio::time::timeout(limit, attempt).await, Ok(Err(_)))
}

/// "At once": well before any handshake or header deadline (10 s) could be
/// what closed the connection.
const AT_ONCE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_client_over_its_connection_cap_is_closed_at_once_and_gets_slots_back() {
    let app = TestApp::spawn_with(|c| c.server.max_connections_per_ip = 2).await;
    let cert = cert_of(&app);
    let first = app.tls_stream().await;
    let second = app.tls_stream().await;
    assert!(
        refused_within(app.addr, &cert, AT_ONCE).await,
        "a third connection from 127.0.0.1 is closed at once"
    );
    // The first two are served all the same.
    assert_eq!(
        send_http1(first, "GET", "/health", &[], None).await.status,
        200
    );
    assert_eq!(
        send_http1(second, "GET", "/health", &[], None).await.status,
        200
    );

    // Closed connections give their slots back: two at once work again.
    let deadline = tokio::time::Instant::now() + CLOSED_BOUND;
    loop {
        let a = app.tls_stream().await;
        let b = app.tls_stream().await;
        let (a, b) = tokio::join!(
            tokio::time::timeout(AT_ONCE, send_http1_checked(a)),
            tokio::time::timeout(AT_ONCE, send_http1_checked(b))
        );
        if matches!((a, b), (Ok(Some(200)), Ok(Some(200)))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots of closed connections are given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A GET /health that reports a closed connection as `None` instead of
/// panicking.
async fn send_http1_checked(stream: TlsStream<TcpStream>) -> Option<u16> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let request = Request::get("/health")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    Some(sender.send_request(request).await.ok()?.status().as_u16())
}

#[tokio::test]
async fn trusted_proxies_are_not_capped_per_ip() {
    let app = TestApp::spawn_with(|c| {
        c.server.max_connections_per_ip = 2;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(app.tls_stream().await);
    }
    for stream in open {
        assert_eq!(
            send_http1(stream, "GET", "/health", &[], None).await.status,
            200
        );
    }
}

#[tokio::test]
async fn the_per_ip_cap_is_read_from_the_environment_and_refusals_are_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server =
        start_server_with_env(&data, &[], &[("SECURE_API_MAX_CONNECTIONS_PER_IP", "1")]).await;
    let cert = data.join("tls-cert.pem");
    let held = tls_connect(server.addr, client_config(&cert, &[b"http/1.1"])).await;
    for _ in 0..3 {
        assert!(refused_within(server.addr, &cert, AT_ONCE).await);
    }
    assert_eq!(
        send_http1(held, "GET", "/health", &[], None).await.status,
        200
    );
    let (_, logs, _) = server.stop_with_logs().await;
    assert_eq!(
        logs.matches("per-client connection limit reached").count(),
        1,
        "one line per client per minute: {logs}"
    );
}

struct H2Response {
    status: u16,
    headers: http::HeaderMap,
    body: Result<Bytes, String>,
}

/// One request over a fresh HTTP/2 connection; a protocol error on the body
/// is returned, not a panic.
async fn h2_request(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> H2Response {
    let stream = tls_connect(app.addr, client_config(&cert_of(app), &[b"h2"])).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"));
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    H2Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("{e:?}")),
    }
}

#[tokio::test]
async fn head_over_http2_answers_like_get_without_a_body() {
    let app = TestApp::spawn().await;
    let token = app.signed_in("headcheck").await.access_token();
    for (path, token) in [
        ("/health", None),
        ("/health/ready", None),
        ("/api/v1/users/me", Some(token.as_str())),
        ("/api/v1/users/me", None),
    ] {
        let get = h2_request(&app, "GET", path, token).await;
        let get_body = get.body.expect("GET body");
        assert!(!get_body.is_empty(), "{path}");
        let head = h2_request(&app, "HEAD", path, token).await;
        assert_eq!(head.status, get.status, "{path}");
        let head_body = head
            .body
            .unwrap_or_else(|e| panic!("HEAD {path} over HTTP/2 ended in an error: {e}"));
        assert!(head_body.is_empty(), "{path}: {head_body:?}");
        let length = get_body.len().to_string();
        assert_eq!(
            head.headers
                .get("content-length")
                .and_then(|v| v.to_str().ok()),
            Some(length.as_str()),
            "{path}"
        );
        for name in [
            "content-type",
            "x-frame-options",
            "strict-transport-security",
        ] {
            assert_eq!(
                head.headers.get(name),
                get.headers.get(name),
                "{path} {name}"
            );
        }
    }
}

/// The raw HTTP/1.1 exchange, to see exactly what the server writes.
async fn http1_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (String, Vec<u8>) {
    let mut stream = app.tls_stream().await;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let received = read_until_closed(&mut stream, CLOSED_BOUND)
        .await
        .expect("the server closes after Connection: close");
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&received[..split]).to_ascii_lowercase();
    (head, received[split + 4..].to_vec())
}

fn content_length(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(str::trim)
}

#[tokio::test]
async fn head_over_http1_answers_like_get_without_a_body() {
    let app = TestApp::spawn().await;
    let token = app.signed_in("headcheck1").await.access_token();
    for (path, token) in [
        ("/health", None),
        ("/api/v1/users/me", Some(token.as_str())),
        ("/api/v1/users/me", None),
    ] {
        let (get_head, get_body) = http1_raw(&app, "GET", path, token).await;
        let (head_head, head_body) = http1_raw(&app, "HEAD", path, token).await;
        let status = |head: &str| head.lines().next().map(str::to_owned);
        assert_eq!(status(&head_head), status(&get_head), "{path}");
        assert!(head_body.is_empty(), "{path}: {head_body:?}");
        let length = get_body.len().to_string();
        assert_eq!(content_length(&head_head), Some(length.as_str()), "{path}");
    }
}
