use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use secure_api::app::Application;
use secure_api::auth::password::HashParams;
use secure_api::config::Config;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const STRONG_PASSWORD: &str = "Correct-Horse-9-Battery";

/// Argon2 parameters that keep tests fast; only allowed with the insecure flag.
pub const FAST_HASH_ARGS: [&str; 7] = [
    "--argon2-memory-kib",
    "1024",
    "--argon2-time-cost",
    "1",
    "--argon2-parallelism",
    "1",
    "--insecure-fast-hash",
];

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::new(dir.join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.hash = HashParams {
        memory_kib: 1024,
        time_cost: 1,
        parallelism: 1,
    }
    .validate(true)
    .unwrap();
    // Suites make far more requests than a client should; the rate-limit
    // tests turn limits back on.
    config.rate_limits = None;
    config
}

/// The real application, in this process, on 127.0.0.1:0.
pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub tls: Arc<ClientConfig>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let data_dir = config.data_dir.clone();
        let app = Application::build(config)
            .await
            .expect("application builds");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let tls = client_config(&data_dir.join("tls-cert.pem"), &[b"http/1.1"]);
        Self {
            addr,
            dir,
            tls,
            stop: Some(stop),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("secure-api.db")
    }

    pub async fn tls_stream(&self) -> TlsStream<TcpStream> {
        tls_connect(self.addr, Arc::clone(&self.tls)).await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> TestResponse {
        let stream = self.tls_stream().await;
        send_http1(stream, method, path, headers, body).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request("GET", path, &[], None).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(&bytes),
        )
        .await
    }

    pub async fn register(&self, username: &str, email: &str) -> TestResponse {
        self.post_json(
            "/api/v1/auth/register",
            &serde_json::json!({"username": username, "email": email, "password": STRONG_PASSWORD}),
        )
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

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

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_secure-api")
}

/// Runs the binary to completion with `stdin` as its standard input.
pub async fn run_cli(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .env_clear()
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("command finishes")
        .unwrap()
}

/// `secure-api serve` as a child process, ready once it logged its address.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: tokio::task::JoinHandle<String>,
    stdout: tokio::task::JoinHandle<String>,
    /// Every log line so far, and a wake-up for each new one.
    live_log: Arc<(std::sync::Mutex<String>, tokio::sync::Notify)>,
    /// The log lines written up to readiness.
    pub startup_log: String,
}

impl ServerProcess {
    /// Waits until a log line contains `needle`: a test proceeds on the
    /// event itself, not on a guess of how long it takes.
    pub async fn wait_for_log(&self, needle: &str) {
        let (log, new_line) = &*self.live_log;
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let notified = new_line.notified();
                if log.lock().unwrap().contains(needle) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(
            seen.is_ok(),
            "no log line with {needle:?}: {}",
            log.lock().unwrap()
        );
    }

    /// Sends SIGTERM, waits for the exit, and returns the status and stderr.
    pub async fn stop(self) -> (std::process::ExitStatus, String) {
        let (status, _, stderr) = self.stop_with_logs().await;
        (status, stderr)
    }

    /// Waits for an exit already caused (by a signal sent elsewhere).
    pub async fn stop_after_signal(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits")
            .unwrap();
        (status, self.stderr.await.unwrap())
    }

    /// Like `stop`, also returning every log line written to stdout.
    pub async fn stop_with_logs(mut self) -> (std::process::ExitStatus, String, String) {
        send_signal(&self.child, "TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server stops after SIGTERM")
            .unwrap();
        (
            status,
            self.stdout.await.unwrap(),
            self.stderr.await.unwrap(),
        )
    }
}

pub fn serve_args<'a>(data_dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--rate-limit",
        "off",
    ];
    args.extend_from_slice(&FAST_HASH_ARGS);
    args.extend_from_slice(extra);
    args
}

pub async fn start_server(data_dir: &Path, extra: &[&str]) -> ServerProcess {
    start_server_with_env(data_dir, extra, &[]).await
}

pub async fn start_server_with_env(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> ServerProcess {
    let mut command = Command::new(bin());
    command
        .args(serve_args(data_dir, extra))
        .env_clear()
        .envs(env.iter().copied());
    start_serving(command).await
}

/// Runs `command`, a prepared `serve` (possibly behind a wrapper), until it
/// logs its address.
pub async fn start_serving(mut command: Command) -> ServerProcess {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text).await;
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(address) = entry.get("address").and_then(|a| a.as_str()) {
                return address.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server becomes ready");
    let startup_log = log.clone();
    let live_log = Arc::new((std::sync::Mutex::new(log), tokio::sync::Notify::new()));
    let writer = Arc::clone(&live_log);
    // Keep draining stdout so the server never blocks on a full pipe.
    let stdout = tokio::spawn(async move {
        let (log, new_line) = &*writer;
        while let Ok(Some(line)) = stdout.next_line().await {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
            drop(log);
            new_line.notify_waiters();
        }
        log.lock().unwrap().clone()
    });
    ServerProcess {
        child,
        addr,
        stderr,
        stdout,
        live_log,
        startup_log,
    }
}

/// Sends SIGTERM (no unsafe code: through kill(1)).
pub fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().expect("child is running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A clock the test moves by hand (tokens, lockouts and grace windows read it).
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<time::OffsetDateTime>);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        let now = time::OffsetDateTime::now_utc();
        Arc::new(Self(std::sync::Mutex::new(
            now.replace_nanosecond(0).unwrap(),
        )))
    }

    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl secure_api::clock::Clock for ManualClock {
    fn now(&self) -> time::OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl TestResponse {
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

impl TestApp {
    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers `username` (email `<username>@example.com`) and logs in.
    pub async fn signed_in(&self, username: &str) -> TestResponse {
        let email = format!("{username}@example.com");
        assert_eq!(self.register(username, &email).await.status, 201);
        let response = self.login(&email, STRONG_PASSWORD).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> TestResponse {
        let bearer = format!("Bearer {token}");
        self.request("GET", path, &[("authorization", &bearer)], None)
            .await
    }

    pub async fn post_with_token(&self, path: &str, token: &str) -> TestResponse {
        let bearer = format!("Bearer {token}");
        self.request("POST", path, &[("authorization", &bearer)], None)
            .await
    }

    pub async fn refresh_with_cookie(&self, refresh_token: &str) -> TestResponse {
        let cookie = format!("refresh_token={refresh_token}");
        self.request("POST", "/api/v1/auth/refresh", &[("cookie", &cookie)], None)
            .await
    }

    /// The JWT signing key the server generated in its data directory.
    pub fn jwt_key(&self) -> Vec<u8> {
        std::fs::read(self.data_dir().join("jwt-secret.key")).unwrap()
    }

    pub fn sql<T: rusqlite::types::FromSql>(&self, query: &str) -> T {
        let conn = rusqlite::Connection::open(self.db_path()).unwrap();
        conn.query_row(query, [], |r| r.get(0)).unwrap()
    }
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

/// A signed-in account of a given role.
pub struct Account {
    pub id: String,
    pub token: String,
}

impl TestApp {
    /// Registers `username`, gives it `role` directly in the database (there
    /// is no first admin otherwise), and logs in.
    pub async fn account(&self, username: &str, role: &str) -> Account {
        let email = format!("{username}@example.com");
        let created = self.register(username, &email).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let conn = rusqlite::Connection::open(self.db_path()).unwrap();
        conn.execute("UPDATE users SET role = ?1 WHERE id = ?2", [role, &id])
            .unwrap();
        let login = self.login(&email, STRONG_PASSWORD).await;
        assert_eq!(login.status, 200);
        Account {
            id,
            token: login.access_token(),
        }
    }

    /// A request with a bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> TestResponse {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer));
        }
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        if bytes.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.request(method, path, &headers, bytes.as_deref()).await
    }
}

/// `secure-api create-admin` with the password on stdin.
pub async fn create_admin(
    data: &std::path::Path,
    username: &str,
    email: &str,
    password: &str,
) -> std::process::Output {
    let mut args = vec![
        "create-admin",
        "--data-dir",
        data.to_str().unwrap(),
        "--username",
        username,
        "--email",
        email,
    ];
    args.extend_from_slice(&FAST_HASH_ARGS);
    run_cli(&args, Some(password)).await
}

/// Longer than one readiness probe's result is reused: the next caller probes.
pub fn ready_result_expired() -> Duration {
    secure_api::state::READINESS_MAX_AGE + Duration::from_millis(100)
}

/// Asks again (a fresh connection each time) until `done` accepts the
/// response; fails after `within`. For state that changes in the background,
/// with a deadline generous enough for a loaded machine.
pub async fn eventually(
    within: Duration,
    mut ask: impl AsyncFnMut() -> TestResponse,
    mut done: impl FnMut(&TestResponse) -> bool,
) -> TestResponse {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let response = ask().await;
        if done(&response) {
            return response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} after {within:?}: {:?}",
            response.status,
            response.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
