//! A real TLS client: the server's certificate, HTTP/1.1 and HTTP/2
//! requests, and the responses, checked for secrets on the way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub fn client_config(cert_pem: &Path, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    client_config_versions(cert_pem, alpn, rustls::DEFAULT_VERSIONS)
}

/// A client that trusts exactly the server's certificate: real verification.
pub fn client_config_versions(
    cert_pem: &Path,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub async fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the server")
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of the `refresh_token` cookie this response sets.
    pub fn refresh_cookie(&self) -> Option<String> {
        self.set_cookie()
            .and_then(|c| c.split(';').next())
            .and_then(|pair| pair.strip_prefix("refresh_token="))
            .map(str::to_owned)
            .filter(|v| !v.is_empty())
    }

    pub fn set_cookie(&self) -> Option<&str> {
        self.header("set-cookie")
    }

    pub fn access_token(&self) -> String {
        self.json()["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token in {:?}", self.body))
            .to_owned()
    }
}

pub async fn send_http1(
    stream: TlsStream<TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TestResponse {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
        .unwrap();
    collect(sender.send_request(request).await.unwrap()).await
}

async fn collect(response: http::Response<hyper::body::Incoming>) -> TestResponse {
    let (parts, body) = response.into_parts();
    checked(TestResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    })
}

/// Keys that no response body of the API may ever contain.
const SECRET_KEYS: [&str; 11] = [
    "password",
    "password_hash",
    "current_password",
    "new_password",
    "hash",
    "failed_login_count",
    "locked_until",
    "token_version",
    "secret",
    "jwt_secret",
    "refresh_token",
];

fn find_secret_key(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => map.iter().find_map(|(key, inner)| {
            if SECRET_KEYS.contains(&key.as_str()) {
                Some(key.clone())
            } else {
                find_secret_key(inner)
            }
        }),
        serde_json::Value::Array(items) => items.iter().find_map(find_secret_key),
        _ => None,
    }
}

/// Every response of the suite passes through here: a JSON body that holds a
/// secret-looking key fails whichever test received it.
fn checked(response: TestResponse) -> TestResponse {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&response.body) {
        // The OpenAPI document describes request bodies (with their
        // password fields); it carries no data.
        if json.get("openapi").is_none() {
            let mut json = json;
            // The 2FA setup answer exists to hand its secret to the user once.
            if json.get("otpauth_uri").is_some()
                && let Some(fields) = json.as_object_mut()
            {
                fields.remove("secret");
            }
            assert_no_secret_keys(&json);
        }
    }
    response
}

pub fn assert_no_secret_keys(json: &serde_json::Value) {
    if let Some(key) = find_secret_key(json) {
        panic!("response body contains the key {key:?}: {json}");
    }
}

pub async fn send_http2(stream: TlsStream<TcpStream>, path: &str) -> TestResponse {
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .uri(format!("https://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    collect(sender.send_request(request).await.unwrap()).await
}

/// Base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// The claims of a JWT, unverified: what a test reads from a token it got.
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url_decode(payload)).unwrap()
}

/// The session (`sid`) an access token belongs to.
pub fn session_of(access_token: &str) -> String {
    jwt_claims(access_token)["sid"].as_str().unwrap().to_owned()
}

/// A problem+json error as API.md pins it: status, content type, `type`,
/// `title`, `detail`, `code`, and the request id of the header.
pub fn assert_problem(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(
        response.status,
        status,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    let body = response.json();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code, "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert_eq!(
        body["request_id"].as_str(),
        response.header("x-request-id"),
        "the body names the same request id as the header"
    );
}
