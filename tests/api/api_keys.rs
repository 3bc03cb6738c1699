//! API keys, black-box: made through a session, used with `X-API-Key`.

use std::sync::Arc;

use secure_api::clock::Clock as _;

use serde_json::{Value, json};

use crate::helpers::{ManualClock, STRONG_PASSWORD, TestApp, TestResponse, assert_problem, db};

const KEYS: &str = "/api/v1/api-keys";

async fn with_key(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> TestResponse {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let mut headers = vec![("x-api-key", key)];
    if bytes.is_some() {
        headers.push(("content-type", "application/json"));
    }
    app.request(method, path, &headers, bytes.as_deref()).await
}

/// The real binary as a child process, and a client that sends each
/// request on a fresh TLS connection to it.
struct ProcessClient {
    server: crate::helpers::ServerProcess,
    tls: Arc<rustls::ClientConfig>,
}

impl ProcessClient {
    async fn start(data: &std::path::Path) -> Self {
        let server = crate::helpers::start_server(data, &[]).await;
        let tls = crate::helpers::client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
        Self { server, tls }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> TestResponse {
        let bytes = body.map(|b| b.to_string());
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let stream = crate::helpers::tls_connect(self.server.addr, Arc::clone(&self.tls)).await;
        crate::helpers::send_http1(
            stream,
            method,
            path,
            &all,
            bytes.as_deref().map(str::as_bytes),
        )
        .await
    }

    /// Registers and signs in ann: the `Authorization` value of her session.
    async fn signed_in_ann(&self) -> String {
        let register =
            json!({"username": "ann", "email": "ann@example.com", "password": STRONG_PASSWORD});
        let registered = self
            .send("POST", "/api/v1/auth/register", &[], Some(register))
            .await;
        assert_eq!(registered.status, 201);
        let login = json!({"email": "ann@example.com", "password": STRONG_PASSWORD});
        let token = self
            .send("POST", "/api/v1/auth/login", &[], Some(login))
            .await
            .access_token();
        format!("Bearer {token}")
    }
}

async fn me_with(app: &TestApp, key: &str) -> TestResponse {
    with_key(app, "GET", "/api/v1/users/me", key, None).await
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let made = app.call("POST", KEYS, Some(token), Some(&body)).await;
    assert_eq!(
        made.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&made.body)
    );
    made.json()
}

#[tokio::test]
async fn a_key_is_shown_once_listed_without_it_and_acts_within_its_scopes() {
    let app = TestApp::spawn().await;
    let token = app.signed_in("ann").await.access_token();
    let made = create(&app, &token, json!({"name": "ci", "scopes": ["self:read"]})).await;
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sak_") && key.len() >= 44, "{key}");
    assert!(key[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(made["prefix"], &key[..12]);
    assert_eq!(made["scopes"], json!(["self:read"]));
    assert_eq!(made["rate_limit"], "600/minute");
    assert!(made["last_used_at"].is_null() && made["rotated_at"].is_null());
    let id = made["id"].as_str().unwrap().to_owned();

    let listed = app.call("GET", KEYS, Some(&token), None).await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 1);
    assert!(listed["api_keys"][0].get("key").is_none());
    assert!(!listed.to_string().contains(&key[12..]));
    let one = app
        .call("GET", &format!("{KEYS}/{id}"), Some(&token), None)
        .await;
    assert_eq!(one.json()["id"], id.as_str());
    assert!(one.json().get("key").is_none());

    let me = me_with(&app, &key).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["username"], "ann");
    // self:write is not among its scopes.
    let rename = with_key(
        &app,
        "PUT",
        "/api/v1/users/me",
        &key,
        Some(json!({"full_name": "A"})),
    )
    .await;
    assert_problem(&rename, 403, "forbidden");
    assert_eq!(db::audit_count(&app, "api_key_created"), 1);
}

#[tokio::test]
async fn scopes_must_be_known_and_the_owners() {
    let app = TestApp::spawn().await;
    let token = app.signed_in("ann").await.access_token();
    let unknown = app
        .call(
            "POST",
            KEYS,
            Some(&token),
            Some(&json!({"name": "x", "scopes": ["root"]})),
        )
        .await;
    assert_problem(&unknown, 422, "validation_error");
    let beyond = app
        .call(
            "POST",
            KEYS,
            Some(&token),
            Some(&json!({"name": "x", "scopes": ["users:read"]})),
        )
        .await;
    assert_problem(&beyond, 403, "forbidden");
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "x", "expires_in_days": 0}),
        json!({"name": "x", "expires_in_days": 366}),
        json!({"name": "x", "rate_limit": "6001/minute"}),
        json!({"name": "x", "rate_limit": "fast"}),
        json!({"name": "x", "owner": "someone"}),
    ] {
        let response = app.call("POST", KEYS, Some(&token), Some(&bad)).await;
        assert_eq!(
            response.status,
            422,
            "{bad}: {:?}",
            String::from_utf8_lossy(&response.body)
        );
    }
    // Default scopes: everything a user may do.
    let made = create(&app, &token, json!({"name": "all"})).await;
    assert_eq!(
        made["scopes"],
        json!(["self:read", "self:write", "content:read", "content:write"])
    );
}

#[tokio::test]
async fn a_key_expires_and_a_revoked_key_stops_at_once() {
    let clock = ManualClock::new();
    let app_clock = Arc::clone(&clock);
    let app = TestApp::spawn_with(move |config| config.clock = app_clock).await;
    let token = app.signed_in("ann").await.access_token();
    let short = create(&app, &token, json!({"name": "short", "expires_in_days": 1})).await;
    let short_key = short["key"].as_str().unwrap();
    assert_eq!(me_with(&app, short_key).await.status, 200);
    clock.advance(time::Duration::days(1) + time::Duration::seconds(1));
    assert_problem(&me_with(&app, short_key).await, 401, "invalid_token");

    // The access token itself is 15 minutes old by now: log in again.
    let token = app
        .login("ann@example.com", STRONG_PASSWORD)
        .await
        .access_token();
    let made = create(&app, &token, json!({"name": "ci"})).await;
    let key = made["key"].as_str().unwrap();
    assert_eq!(me_with(&app, key).await.status, 200);
    let path = format!("{KEYS}/{}", made["id"].as_str().unwrap());
    let revoked = app.call("DELETE", &path, Some(&token), None).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json(), json!({"message": "API key revoked"}));
    assert_problem(&me_with(&app, key).await, 401, "invalid_token");
    assert_eq!(app.call("GET", &path, Some(&token), None).await.status, 404);
    assert_eq!(
        app.call("DELETE", &path, Some(&token), None).await.status,
        404
    );
    assert_eq!(db::audit_count(&app, "api_key_revoked"), 1);
    assert!(db::audit_count(&app, "api_key_rejected") >= 1);
}

#[tokio::test]
async fn rotation_overlaps_and_a_second_rotation_ends_the_first_old_secret() {
    let clock = ManualClock::new();
    let app_clock = Arc::clone(&clock);
    let app = TestApp::spawn_with(move |config| config.clock = app_clock).await;
    let token = app.signed_in("ann").await.access_token();
    let made = create(&app, &token, json!({"name": "ci"})).await;
    let first = made["key"].as_str().unwrap().to_owned();
    let rotate = format!("{KEYS}/{}/rotate", made["id"].as_str().unwrap());

    let rotated = app
        .call(
            "POST",
            &rotate,
            Some(&token),
            Some(&json!({"overlap_seconds": 60})),
        )
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let second = rotated.json()["key"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(rotated.json()["prefix"], &second[..12]);
    assert!(rotated.json()["rotated_at"].is_string());
    assert_eq!(me_with(&app, &second).await.status, 200);
    assert_eq!(
        me_with(&app, &first).await.status,
        200,
        "inside the overlap"
    );
    clock.advance(time::Duration::seconds(61));
    assert_problem(&me_with(&app, &first).await, 401, "invalid_token");
    assert_eq!(me_with(&app, &second).await.status, 200);

    // A long overlap, then a second rotation: the first old secret ends now.
    let token = app
        .login("ann@example.com", STRONG_PASSWORD)
        .await
        .access_token();
    let third = app.call("POST", &rotate, Some(&token), None).await;
    assert_eq!(third.status, 200);
    let third_key = third.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(
        me_with(&app, &second).await.status,
        200,
        "default overlap: a day"
    );
    let fourth = app
        .call(
            "POST",
            &rotate,
            Some(&token),
            Some(&json!({"overlap_seconds": 0})),
        )
        .await;
    let fourth_key = fourth.json()["key"].as_str().unwrap().to_owned();
    assert_problem(&me_with(&app, &second).await, 401, "invalid_token");
    assert_problem(&me_with(&app, &third_key).await, 401, "invalid_token");
    assert_eq!(me_with(&app, &fourth_key).await.status, 200);
    let bad = app
        .call(
            "POST",
            &rotate,
            Some(&token),
            Some(&json!({"overlap_seconds": 604_801})),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(db::audit_count(&app, "api_key_rotated"), 3);
}

#[tokio::test]
async fn the_owners_current_role_and_state_bound_the_key_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.account("boss", "admin").await;
    let moderator = app.account("modest", "moderator").await;
    let made = create(
        &app,
        &moderator.token,
        json!({"name": "ops", "scopes": ["users:read", "self:read"]}),
    )
    .await;
    let key = made["key"].as_str().unwrap().to_owned();
    assert_eq!(
        with_key(&app, "GET", "/api/v1/users", &key, None)
            .await
            .status,
        200
    );

    // Demoted to user: users:read is gone from the key too.
    let target = format!("/api/v1/users/{}", moderator.id);
    let demoted = app
        .call(
            "PATCH",
            &target,
            Some(&admin.token),
            Some(&json!({"role": "user"})),
        )
        .await;
    assert_eq!(demoted.status, 200);
    assert_problem(
        &with_key(&app, "GET", "/api/v1/users", &key, None).await,
        403,
        "forbidden",
    );
    assert_eq!(me_with(&app, &key).await.status, 200);

    let deactivated = app
        .call(
            "PATCH",
            &target,
            Some(&admin.token),
            Some(&json!({"is_active": false})),
        )
        .await;
    assert_eq!(deactivated.status, 200);
    assert_problem(&me_with(&app, &key).await, 401, "invalid_token");
    let back = app
        .call(
            "PATCH",
            &target,
            Some(&admin.token),
            Some(&json!({"is_active": true})),
        )
        .await;
    assert_eq!(back.status, 200);
    assert_eq!(me_with(&app, &key).await.status, 200);
    let deleted = app.call("DELETE", &target, Some(&admin.token), None).await;
    assert_eq!(deleted.status, 200);
    assert_problem(&me_with(&app, &key).await, 401, "invalid_token");
}

#[tokio::test]
async fn a_key_cannot_do_what_needs_a_session() {
    let app = TestApp::spawn().await;
    let token = app.signed_in("ann").await.access_token();
    let key = create(&app, &token, json!({"name": "all"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_id = "00000000-0000-4000-8000-000000000000";
    for (method, path, body) in [
        ("GET", KEYS.to_owned(), None),
        ("POST", KEYS.to_owned(), Some(json!({"name": "child"}))),
        ("GET", format!("{KEYS}/{key_id}"), None),
        ("POST", format!("{KEYS}/{key_id}/rotate"), None),
        ("DELETE", format!("{KEYS}/{key_id}"), None),
        (
            "POST",
            "/api/v1/users/me/change-password".to_owned(),
            Some(json!({"current_password": STRONG_PASSWORD, "new_password": "Another-Strong-9!"})),
        ),
        (
            "PUT",
            "/api/v1/users/me".to_owned(),
            Some(json!({"email": "new@example.com"})),
        ),
        ("GET", "/api/v1/auth/2fa/status".to_owned(), None),
        (
            "POST",
            "/api/v1/auth/2fa/setup".to_owned(),
            Some(json!({"password": STRONG_PASSWORD})),
        ),
        (
            "POST",
            "/api/v1/auth/2fa/verify".to_owned(),
            Some(json!({"code": "123456"})),
        ),
        (
            "POST",
            "/api/v1/auth/2fa/disable".to_owned(),
            Some(json!({"password": STRONG_PASSWORD, "code": "123456"})),
        ),
        (
            "POST",
            "/api/v1/auth/2fa/backup-codes".to_owned(),
            Some(json!({"password": STRONG_PASSWORD, "code": "123456"})),
        ),
        ("GET", "/api/v1/users/me/sessions".to_owned(), None),
        (
            "DELETE",
            "/api/v1/users/me/sessions/0123456789abcdef0123456789abcdef".to_owned(),
            None,
        ),
        ("POST", "/api/v1/auth/logout-all".to_owned(), None),
    ] {
        let response = with_key(&app, method, &path, &key, body).await;
        assert_problem(&response, 403, "session_required");
    }
    // A name change is fine; the email stays as it was.
    let renamed = with_key(
        &app,
        "PUT",
        "/api/v1/users/me",
        &key,
        Some(json!({"full_name": "Ann"})),
    )
    .await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.json()["email"], "ann@example.com");
}

#[tokio::test]
async fn both_credentials_at_once_or_a_malformed_key_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.signed_in("ann").await.access_token();
    let key = create(&app, &token, json!({"name": "ci"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");
    // The key with its last character changed (to one it was not).
    let last = if key.ends_with('x') { "y" } else { "x" };
    let altered = format!("{}{last}", &key[..key.len() - 1]);
    let both = app
        .request(
            "GET",
            "/api/v1/users/me",
            &[("x-api-key", &key), ("authorization", &bearer)],
            None,
        )
        .await;
    assert_problem(&both, 400, "ambiguous_credentials");
    for bad in ["sak_short", "nope", &key[..key.len() - 1], &altered] {
        let response = me_with(&app, bad).await;
        assert_problem(&response, 401, "invalid_token");
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
}

#[tokio::test]
async fn admins_list_and_revoke_every_users_keys() {
    let app = TestApp::spawn().await;
    let admin = app.account("boss", "admin").await;
    let token = app.signed_in("ann").await.access_token();
    let made = create(&app, &token, json!({"name": "ci"})).await;
    let key = made["key"].as_str().unwrap().to_owned();
    let listed = app
        .call("GET", "/api/v1/admin/api-keys", Some(&admin.token), None)
        .await;
    assert_eq!(listed.status, 200);
    let entries = listed.json()["api_keys"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1);
    assert!(entries[0]["user_id"].is_string());
    assert!(entries[0].get("key").is_none());
    // Another user's key is not found through the owner routes.
    let other = format!("{KEYS}/{}", made["id"].as_str().unwrap());
    assert_eq!(
        app.call("GET", &other, Some(&admin.token), None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.call("DELETE", &other, Some(&admin.token), None)
            .await
            .status,
        404
    );
    let path = format!("/api/v1/admin/api-keys/{}", made["id"].as_str().unwrap());
    let revoked = app.call("DELETE", &path, Some(&admin.token), None).await;
    assert_eq!(revoked.status, 200);
    assert_problem(&me_with(&app, &key).await, 401, "invalid_token");
    // The audit rows name keys by id, never by secret, and the file has no key.
    let rows = db::audit_rows(&app);
    for (event, _, _, _, detail) in &rows {
        assert!(!detail.contains(&key[4..]), "{event}: {detail}");
    }
    let on_disk = db::database_bytes(&app.data_dir());
    assert!(
        !on_disk
            .windows(key.len() - 4)
            .any(|w| w == &key.as_bytes()[4..])
    );
}

#[tokio::test]
async fn every_keyed_request_is_in_the_access_log_with_its_key_id_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = ProcessClient::start(&data).await;
    let send = async |method: &str, path: &str, headers: &[(&str, &str)], body: Option<Value>| {
        client.send(method, path, headers, body).await
    };
    let bearer = client.signed_in_ann().await;
    let made = send(
        "POST",
        KEYS,
        &[("authorization", &bearer)],
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(made.status, 201);
    let key = made.json()["key"].as_str().unwrap().to_owned();
    let key_id = made.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send("GET", "/api/v1/users/me", &[("x-api-key", &key)], None)
            .await
            .status,
        200
    );
    assert_eq!(
        send(
            "GET",
            "/api/v1/users/me",
            &[("x-api-key", "sak_wrong")],
            None
        )
        .await
        .status,
        401
    );
    let (status, stdout, stderr) = client.server.stop_with_logs().await;
    assert!(status.success());
    let keyed: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            line.contains("\"route\":\"/api/v1/users/me\"") && line.contains("\"status\":200")
        })
        .collect();
    assert_eq!(keyed.len(), 1, "{stdout}");
    assert!(
        keyed[0].contains(&format!("\"api_key_id\":\"{key_id}\"")),
        "{}",
        keyed[0]
    );
    let logs = format!("{stdout}{stderr}");
    assert!(!logs.contains(&key[4..]), "the key is never logged");
    assert!(logs.contains("api_key_rejected"));
}

#[tokio::test]
async fn each_key_has_its_own_limit_instead_of_its_address_and_bad_keys_pay_as_the_address() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = Some(secure_api::config::default_rate_limits());
    })
    .await;
    let token = app.signed_in("ann").await.access_token();
    let slow = create(
        &app,
        &token,
        json!({"name": "slow", "rate_limit": "3/minute"}),
    )
    .await;
    let slow = slow["key"].as_str().unwrap().to_owned();
    let fast = create(&app, &token, json!({"name": "fast"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    for n in 0..3 {
        let response = me_with(&app, &slow).await;
        assert_eq!(response.status, 200, "request {n}");
        assert_eq!(response.header("ratelimit-limit"), Some("3"));
    }
    let limited = me_with(&app, &slow).await;
    assert_problem(&limited, 429, "rate_limited");
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
    );
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));

    // Another key of the same owner has its own budget, and keyed requests
    // do not spend the address's 60/minute: 70 go through.
    for n in 0..70 {
        let response = me_with(&app, &fast).await;
        assert_eq!(response.status, 200, "request {n}");
        assert_eq!(response.header("ratelimit-limit"), Some("600"));
    }
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &token).await.status,
        200
    );

    // Invalid keys are the address's requests: refused at its limit.
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(me_with(&app, "sak_notakeyatall").await.status);
    }
    assert!(statuses.starts_with(&[401]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // A valid key still gets through while its address is over the limit.
    assert_eq!(me_with(&app, &fast).await.status, 200);
    assert_problem(
        &app.get_with_token("/api/v1/users/me", &token).await,
        429,
        "rate_limited",
    );
}

#[tokio::test]
async fn a_key_header_on_unknown_paths_or_public_routes_is_still_the_addresss_request() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = Some(secure_api::config::default_rate_limits());
    })
    .await;
    let token = app.signed_in("ann").await.access_token();
    let key = create(&app, &token, json!({"name": "ci"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(
            with_key(&app, "GET", "/api/v1/nowhere", &key, None)
                .await
                .status,
        );
    }
    assert_eq!(statuses.first(), Some(&404), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let login = with_key(
        &app,
        "POST",
        "/api/v1/auth/login",
        &key,
        Some(json!({"email": "ann@example.com", "password": STRONG_PASSWORD})),
    )
    .await;
    assert_problem(&login, 429, "rate_limited");
    // The key itself still works where it authenticates.
    assert_eq!(me_with(&app, &key).await.status, 200);
}

/// Polls the key's usage until `done` holds, for at most the 5 s the
/// contract allows.
async fn usage_within_5s(
    app: &TestApp,
    token: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("{KEYS}/{id}/usage");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let response = app.call("GET", &path, Some(token), None).await;
        assert_eq!(
            response.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&response.body)
        );
        let usage = response.json();
        if done(&usage) {
            return usage;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not current within 5 s: {usage}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn usage_counts_requests_and_denials_per_day_and_is_current_within_5_s() {
    let clock = ManualClock::new();
    let app_clock = Arc::clone(&clock);
    let app = TestApp::spawn_with(move |c| {
        c.clock = app_clock;
        c.rate_limits = Some(secure_api::config::default_rate_limits());
    })
    .await;
    let token = app.signed_in("ann").await.access_token();
    let made = create(
        &app,
        &token,
        json!({"name": "ci", "scopes": ["self:read"], "rate_limit": "3/minute"}),
    )
    .await;
    let (key, id) = (made["key"].as_str().unwrap(), made["id"].as_str().unwrap());
    let idle = create(&app, &token, json!({"name": "idle"})).await;

    let first_day = clock.now().date();
    assert_eq!(me_with(&app, key).await.status, 200);
    assert_eq!(me_with(&app, key).await.status, 200);
    let rename = with_key(
        &app,
        "PUT",
        "/api/v1/users/me",
        key,
        Some(json!({"full_name": "A"})),
    );
    assert_problem(&rename.await, 403, "forbidden");
    assert_problem(&me_with(&app, key).await, 429, "rate_limited");
    // Not this key's requests: an invalid key, a public route.
    assert_eq!(me_with(&app, "sak_notakey").await.status, 401);
    assert_eq!(
        with_key(&app, "GET", "/health", key, None).await.status,
        200
    );

    let usage = usage_within_5s(&app, &token, id, |u| u["total"] == 4).await;
    assert_eq!(
        usage["days"],
        json!([{"date": first_day.to_string(), "requests": 4, "denied": 2}])
    );
    assert_eq!(usage["last_used_ip"], "127.0.0.1");
    let last_used = usage["last_used_at"].as_str().unwrap();
    let last_used =
        time::OffsetDateTime::parse(last_used, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(last_used, clock.now());
    let listed = app
        .call("GET", &format!("{KEYS}/{id}"), Some(&token), None)
        .await;
    assert_eq!(listed.json()["last_used_at"], usage["last_used_at"]);

    let unused = app
        .call(
            "GET",
            &format!("{KEYS}/{}/usage", idle["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        unused.json(),
        json!({"total": 0, "last_used_at": null, "last_used_ip": null, "days": []})
    );

    // The next day: a day of its own, newest first. The key's budget was
    // spent within the minute (the limiter keeps real time): denied.
    clock.advance(time::Duration::days(1));
    let token = app
        .login("ann@example.com", STRONG_PASSWORD)
        .await
        .access_token();
    assert_problem(&me_with(&app, key).await, 429, "rate_limited");
    let usage = usage_within_5s(&app, &token, id, |u| u["total"] == 5).await;
    let second_day = first_day.next_day().unwrap();
    assert_eq!(
        usage["days"],
        json!([
            {"date": second_day.to_string(), "requests": 1, "denied": 1},
            {"date": first_day.to_string(), "requests": 4, "denied": 2},
        ])
    );

    // Only its owner reads it, and only through a session.
    let bob = app.signed_in("bob").await.access_token();
    let path = format!("{KEYS}/{id}/usage");
    assert_problem(
        &app.call("GET", &path, Some(&bob), None).await,
        404,
        "not_found",
    );
    let other_key = idle["key"].as_str().unwrap();
    assert_problem(
        &with_key(&app, "GET", &path, other_key, None).await,
        403,
        "session_required",
    );
    assert_problem(
        &app.call(
            "GET",
            &format!("{KEYS}/not-a-key/usage"),
            Some(&token),
            None,
        )
        .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn usage_is_never_written_per_request_and_is_written_at_shutdown() {
    let mut app = TestApp::spawn_with(|c| {
        c.key_usage_flush_every = std::time::Duration::from_secs(3600);
    })
    .await;
    let token = app.signed_in("ann").await.access_token();
    let made = create(&app, &token, json!({"name": "ci"})).await;
    let (key, id) = (made["key"].as_str().unwrap(), made["id"].as_str().unwrap());
    for _ in 0..5 {
        assert_eq!(me_with(&app, key).await.status, 200);
    }
    assert_eq!(
        db::stored_key_requests(&app, id),
        0,
        "nothing is written per request"
    );
    app.shut_down().await;
    assert_eq!(
        db::stored_key_requests(&app, id),
        5,
        "the tally is written at shutdown"
    );
}

/// SHA-256 of the key in lowercase hex, as a careless server would store or
/// log it.
fn digest_hex(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    data_encoding::HEXLOWER.encode(digest.as_ref())
}

#[tokio::test]
async fn no_key_or_digest_leaves_in_a_response_a_log_line_or_an_audit_row_and_the_file_holds_no_key()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = ProcessClient::start(&data).await;
    let send = async |method: &str, path: &str, headers: &[(&str, &str)], body: Option<Value>| {
        client.send(method, path, headers, body).await
    };
    let bearer = client.signed_in_ann().await;
    let session = [("authorization", bearer.as_str())];

    // The only answers that may carry a key: its creation and its rotation.
    let made = send("POST", KEYS, &session, Some(json!({"name": "ci"}))).await;
    let other = send("POST", KEYS, &session, Some(json!({"name": "spare"}))).await;
    let first = made.json()["key"].as_str().unwrap().to_owned();
    let spare = other.json()["key"].as_str().unwrap().to_owned();
    let id = made.json()["id"].as_str().unwrap().to_owned();
    let spare_id = other.json()["id"].as_str().unwrap().to_owned();
    let rotated = send("POST", &format!("{KEYS}/{id}/rotate"), &session, None).await;
    assert_eq!(rotated.status, 200);
    let second = rotated.json()["key"].as_str().unwrap().to_owned();
    let keys = [first.clone(), second.clone(), spare.clone()];
    for (answer, own) in [(&made, &first), (&other, &spare), (&rotated, &second)] {
        let text = String::from_utf8_lossy(&answer.body);
        for key in &keys {
            assert_eq!(text.contains(key.as_str()), key == own, "{text}");
            assert!(!text.contains(&digest_hex(key)));
        }
    }

    let mut answers = Vec::new();
    let last = if first.ends_with('x') { "y" } else { "x" };
    let altered = format!("{}{last}", &first[..first.len() - 1]);
    for key in [&first, &second, &spare, &altered] {
        let as_key = [("x-api-key", key.as_str())];
        answers.push(send("GET", "/api/v1/users/me", &as_key, None).await);
        answers.push(send("GET", "/api/v1/users", &as_key, None).await);
        answers.push(send("POST", "/api/v1/auth/logout-all", &as_key, None).await);
        let both = [
            ("x-api-key", key.as_str()),
            ("authorization", bearer.as_str()),
        ];
        answers.push(send("GET", "/api/v1/users/me", &both, None).await);
    }
    answers.push(send("GET", KEYS, &session, None).await);
    answers.push(send("GET", &format!("{KEYS}/{id}"), &session, None).await);
    answers.push(send("GET", &format!("{KEYS}/{id}/usage"), &session, None).await);
    answers.push(send("DELETE", &format!("{KEYS}/{spare_id}"), &session, None).await);
    answers.push(send("GET", "/api/v1/users/me", &[("x-api-key", &spare)], None).await);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&401),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&403) && statuses.contains(&400),
        "{statuses:?}"
    );
    for answer in &answers {
        let text = format!(
            "{:?}{}",
            answer.headers,
            String::from_utf8_lossy(&answer.body)
        );
        for key in &keys {
            assert!(!text.contains(&key[12..]), "a key in {text}");
            assert!(!text.contains(&digest_hex(key)), "a digest in {text}");
        }
    }

    let (status, stdout, stderr) = client.server.stop_with_logs().await;
    assert!(status.success());
    let logs = format!("{stdout}{stderr}");
    let audit = db::every_audit_value(&data.join("secure-api.db"));
    assert!(audit.contains("api_key_created") && audit.contains("api_key_rejected"));
    let mut stored = std::fs::read(data.join("secure-api.db")).unwrap();
    if let Ok(wal) = std::fs::read(data.join("secure-api.db-wal")) {
        stored.extend(wal);
    }
    let stored = String::from_utf8_lossy(&stored);
    for key in &keys {
        let (secret, digest) = (&key[12..], digest_hex(key));
        assert!(!logs.contains(secret) && !logs.contains(&digest), "logged");
        assert!(
            !audit.contains(secret) && !audit.contains(&digest),
            "audited"
        );
        assert!(!stored.contains(secret), "the database file holds a key");
    }
    // What is stored instead: the digest, for the lookup.
    assert!(stored.contains(&digest_hex(&second)));
}
