//! API.md "Admin": stats, runtime settings applied without restart, the
//! audit trail.

use serde_json::json;

use crate::helpers::db;
use crate::helpers::{
    STRONG_PASSWORD, TestApp, client_config, create_admin, send_http1, start_server, tls_connect,
};

const CONFIG: &str = "/api/v1/admin/config";

#[tokio::test]
async fn config_reads_and_partially_updates_the_three_settings() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    let token = Some(admin.token.as_str());
    let current = app.call("GET", CONFIG, token, None).await;
    assert_eq!(
        current.json(),
        json!({"registration_enabled": true, "max_login_attempts": 5, "lockout_minutes": 30})
    );
    let updated = app
        .call("POST", CONFIG, token, Some(&json!({"lockout_minutes": 45})))
        .await;
    assert_eq!(
        updated.json(),
        json!({"registration_enabled": true, "max_login_attempts": 5, "lockout_minutes": 45})
    );
    assert_eq!(
        app.call("GET", CONFIG, token, None).await.json()["lockout_minutes"],
        45
    );

    for bad in [
        json!({"max_login_attempts": 0}),
        json!({"lockout_minutes": 0}),
        json!({"lockout_minutes": 100000}),
        json!({"max_login_attempts": "five"}),
        json!({"registration_enabled": "no"}),
        json!({"rate_limit": "off"}),
    ] {
        assert_eq!(
            app.call("POST", CONFIG, token, Some(&bad)).await.status,
            422,
            "{bad}"
        );
    }
    assert_eq!(
        app.call("GET", CONFIG, token, None).await.json()["lockout_minutes"],
        45,
        "nothing half-applied"
    );
    let changes: i64 = db::audit_count(&app, "config_change");
    assert_eq!(changes, 1);
}

#[tokio::test]
async fn closing_registration_and_tightening_lockout_apply_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    let token = Some(admin.token.as_str());
    app.call(
        "POST",
        CONFIG,
        token,
        Some(&json!({"registration_enabled": false, "max_login_attempts": 2})),
    )
    .await;

    let closed = app.register("latecomer", "late@example.com").await;
    assert_eq!(closed.status, 403);
    assert_eq!(closed.json()["code"], "registration_closed");
    // Admins still create accounts.
    let created = app
        .call("POST", "/api/v1/users", token, Some(&json!({"username": "invited", "email": "invited@example.com", "password": STRONG_PASSWORD})))
        .await;
    assert_eq!(created.status, 201);
    for _ in 0..2 {
        app.login("invited@example.com", "Wrong-Password-1").await;
    }
    assert_eq!(
        app.login("invited@example.com", STRONG_PASSWORD)
            .await
            .status,
        401,
        "locked after 2"
    );

    app.call(
        "POST",
        CONFIG,
        token,
        Some(&json!({"registration_enabled": true})),
    )
    .await;
    assert_eq!(
        app.register("latecomer", "late@example.com").await.status,
        201
    );
}

#[tokio::test]
async fn stored_settings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let created = create_admin(&data, "ops", "ops@example.com", STRONG_PASSWORD).await;
    assert!(created.status.success(), "{created:?}");

    let server = start_server(&data, &[]).await;
    let tls = client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    let post = |addr, path: &'static str, body: serde_json::Value, token: Option<String>| {
        let tls = tls.clone();
        async move {
            let bytes = body.to_string();
            let bearer = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("content-type", "application/json")];
            if let Some(bearer) = &bearer {
                headers.push(("authorization", bearer.as_str()));
            }
            send_http1(
                tls_connect(addr, tls).await,
                "POST",
                path,
                &headers,
                Some(bytes.as_bytes()),
            )
            .await
        }
    };
    let login = post(
        server.addr,
        "/api/v1/auth/login",
        json!({"email": "ops@example.com", "password": STRONG_PASSWORD}),
        None,
    )
    .await;
    assert_eq!(login.status, 200);
    let token = login.access_token();
    let closed = post(
        server.addr,
        CONFIG,
        json!({"registration_enabled": false}),
        Some(token),
    )
    .await;
    assert_eq!(closed.status, 200);
    server.stop().await;

    let server = start_server(&data, &[]).await;
    let register =
        json!({"username": "after", "email": "after@example.com", "password": STRONG_PASSWORD});
    let response = post(server.addr, "/api/v1/auth/register", register, None).await;
    assert_eq!(
        response.status, 403,
        "the admin's choice outlives the restart"
    );
    server.stop().await;
}

#[tokio::test]
async fn stats_count_users_sessions_locks_and_failures() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    app.account("viewer1", "viewer").await;
    app.account("mod1", "moderator").await;
    app.signed_in("plain1").await;
    for _ in 0..5 {
        app.login("plain1@example.com", "Wrong-Password-1").await;
    }
    app.login("nobody@example.com", "Wrong-Password-1").await;
    let stats = app
        .call("GET", "/api/v1/admin/stats", Some(&admin.token), None)
        .await
        .json();
    assert_eq!(
        stats["users_by_role"],
        json!({"admin": 1, "moderator": 1, "user": 1, "viewer": 1})
    );
    assert_eq!(stats["active_users"], 4);
    assert_eq!(stats["locked_users"], 1);
    assert_eq!(stats["active_sessions"], 4);
    assert_eq!(stats["failed_logins_24h"], 6);
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert!(stats["uptime_seconds"].is_u64());
}

#[tokio::test]
async fn the_audit_trail_is_newest_first_filterable_paginated_and_masked() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    let other = app.account("other1", "user").await;
    app.login("other1@example.com", "Wrong-Password-1").await;
    app.call("GET", "/api/v1/admin/stats", Some(&other.token), None)
        .await;
    let token = Some(admin.token.as_str());

    let all = app
        .call("GET", "/api/v1/admin/audit?per_page=100", token, None)
        .await
        .json();
    let events = all["events"].as_array().unwrap();
    assert_eq!(all["total"].as_i64().unwrap() as usize, events.len());
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(events[0]["event"], "permission_denied");
    let text = all.to_string();
    assert!(
        !text.contains("other1@example.com") && !text.contains("root1@example.com"),
        "{text}"
    );
    assert!(text.contains("o******@example.com"));
    for key in [
        "id",
        "time",
        "event",
        "user_id",
        "client_ip",
        "request_id",
        "detail",
    ] {
        assert!(events[0].get(key).is_some(), "{key}");
    }

    let failures = app
        .call(
            "GET",
            "/api/v1/admin/audit?event=login_failure",
            token,
            None,
        )
        .await
        .json();
    assert_eq!(failures["total"], 1);
    let mine = app
        .call(
            "GET",
            &format!("/api/v1/admin/audit?user_id={}", other.id),
            token,
            None,
        )
        .await
        .json();
    assert!(
        mine["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["user_id"] == other.id.as_str())
    );
    assert!(
        mine["total"].as_i64().unwrap() >= 3,
        "registration, login, failure, denial"
    );
    let paged = app
        .call("GET", "/api/v1/admin/audit?per_page=2&page=2", token, None)
        .await
        .json();
    assert_eq!(paged["events"].as_array().unwrap().len(), 2);
    assert_eq!(paged["events"][0]["id"], events[2]["id"]);

    for query in ["event=made_up", "page=0", "per_page=x"] {
        let response = app
            .call("GET", &format!("/api/v1/admin/audit?{query}"), token, None)
            .await;
        assert_eq!(response.status, 422, "{query}");
    }
}

#[test]
fn the_secret_key_walker_catches_nested_keys() {
    let nested = json!({"users": [{"id": 1, "profile": {"password_hash": "x"}}]});
    let result = std::panic::catch_unwind(|| {
        crate::helpers::assert_no_secret_keys(&nested);
    });
    assert!(result.is_err(), "a nested secret key must fail the check");
    crate::helpers::assert_no_secret_keys(&json!({"access_token": "t", "users": []}));
}
