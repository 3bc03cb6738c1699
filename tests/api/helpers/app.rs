//! The application in this process, with a client bound to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use secure_api::app::Application;
use secure_api::auth::password::HashParams;
use secure_api::config::Config;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;

use super::*;

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
    serving: Option<tokio::task::JoinHandle<()>>,
    /// An admin's token for giving accounts their roles through the API:
    /// the first admin `account` made, or one made for the purpose when a
    /// test asks for a viewer or moderator before any admin.
    role_giver: tokio::sync::Mutex<Option<String>>,
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
        let serving = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let tls = client_config(&data_dir.join("tls-cert.pem"), &[b"http/1.1"]);
        Self {
            addr,
            dir,
            tls,
            stop: Some(stop),
            serving: Some(serving),
            role_giver: tokio::sync::Mutex::new(None),
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

    /// Spends `refresh_token` and returns the one that replaced it.
    pub async fn rotate(&self, refresh_token: &str) -> String {
        let response = self.refresh_with_cookie(refresh_token).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response.refresh_cookie().expect("a new refresh cookie")
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

    /// A signed-in account with `role`, made as an operator would: an admin
    /// with `secure-api create-admin`, a user by registering, a viewer or
    /// moderator by registering and an admin's role change. No SQL: the same
    /// helper serves every storage backend.
    pub async fn account(&self, username: &str, role: &str) -> Account {
        let email = format!("{username}@example.com");
        let id = if role == "admin" {
            let created = create_admin(&self.data_dir(), username, &email, STRONG_PASSWORD).await;
            assert!(created.status.success(), "{created:?}");
            None
        } else {
            let created = self.register(username, &email).await;
            assert_eq!(created.status, 201, "{:?}", created.body);
            Some(created.json()["id"].as_str().unwrap().to_owned())
        };
        if let Some(id) = &id
            && role != "user"
        {
            let giver = self.role_giver().await;
            let changed = self
                .call(
                    "PATCH",
                    &format!("/api/v1/users/{id}"),
                    Some(&giver),
                    Some(&serde_json::json!({ "role": role })),
                )
                .await;
            assert_eq!(changed.status, 200, "{:?}", changed.body);
        }
        let login = self.login(&email, STRONG_PASSWORD).await;
        assert_eq!(login.status, 200, "{:?}", login.body);
        let token = login.access_token();
        let id = match id {
            Some(id) => id,
            None => {
                let me = self.get_with_token("/api/v1/users/me", &token).await;
                me.json()["id"].as_str().unwrap().to_owned()
            }
        };
        if role == "admin" {
            let mut giver = self.role_giver.lock().await;
            giver.get_or_insert_with(|| token.clone());
        }
        Account { id, token }
    }

    /// The admin token of `role_giver`, made when there is none yet.
    async fn role_giver(&self) -> String {
        if let Some(token) = self.role_giver.lock().await.clone() {
            return token;
        }
        Box::pin(self.account("rolegiver", "admin")).await.token
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

impl TestApp {
    /// Stops the server as a signal would, and waits until it has finished
    /// (drained, and written what it writes at shutdown).
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            tokio::time::timeout(Duration::from_secs(30), serving)
                .await
                .expect("the server stops")
                .expect("the server task ends normally");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A signed-in account of a given role.
pub struct Account {
    pub id: String,
    pub token: String,
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
