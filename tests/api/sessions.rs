//! `/api/v1/users/me/sessions`: one's own logins, listed and ended.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{ManualClock, STRONG_PASSWORD, TestApp, TestResponse, db, session_of};

const SESSIONS: &str = "/api/v1/users/me/sessions";

async fn login_as(app: &TestApp, email: &str, user_agent: &str) -> TestResponse {
    let body = serde_json::to_vec(&json!({"email": email, "password": STRONG_PASSWORD})).unwrap();
    let response = app
        .request(
            "POST",
            "/api/v1/auth/login",
            &[
                ("content-type", "application/json"),
                ("user-agent", user_agent),
            ],
            Some(&body),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response
}

fn sessions_of(response: &TestResponse) -> Vec<Value> {
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.json()["sessions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_live_login_is_listed_newest_first_with_the_current_one_marked() {
    let clock = ManualClock::new();
    let app_clock = Arc::clone(&clock);
    let app = TestApp::spawn_with(move |config| config.clock = app_clock).await;
    assert_eq!(app.register("ann", "ann@example.com").await.status, 201);
    let laptop = login_as(&app, "ann@example.com", "Laptop/1.0").await;
    clock.advance(time::Duration::seconds(10));
    let long_agent = format!("Phone/2.0 {}", "x".repeat(300));
    let phone = login_as(&app, "ann@example.com", &long_agent).await;

    let listed = sessions_of(&app.get_with_token(SESSIONS, &phone.access_token()).await);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let (newest, oldest) = (&listed[0], &listed[1]);
    assert_eq!(newest["id"], session_of(&phone.access_token()));
    assert_eq!(oldest["id"], session_of(&laptop.access_token()));
    assert_eq!(
        (newest["current"].clone(), oldest["current"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(oldest["user_agent"], "Laptop/1.0");
    let kept = newest["user_agent"].as_str().unwrap();
    assert_eq!(kept.chars().count(), 200);
    assert!(long_agent.starts_with(kept));
    assert_eq!(newest["client_ip"], "127.0.0.1");
    let mut keys: Vec<&str> = newest
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "client_ip",
            "created_at",
            "current",
            "expires_at",
            "id",
            "last_used_at",
            "user_agent"
        ]
    );
    assert_eq!(newest["created_at"], newest["last_used_at"]);
    // Seen from the other login, the other one is current.
    let from_laptop = sessions_of(&app.get_with_token(SESSIONS, &laptop.access_token()).await);
    assert_eq!(from_laptop[1]["current"], true);
    assert_eq!(from_laptop[0]["current"], false);
}

#[tokio::test]
async fn last_use_moves_on_refresh_and_not_on_requests() {
    let clock = ManualClock::new();
    let app_clock = Arc::clone(&clock);
    let app = TestApp::spawn_with(move |config| config.clock = app_clock).await;
    let login = app.signed_in("ann").await;
    let first = sessions_of(&app.get_with_token(SESSIONS, &login.access_token()).await);

    clock.advance(time::Duration::minutes(5));
    let again = sessions_of(&app.get_with_token(SESSIONS, &login.access_token()).await);
    assert_eq!(again[0]["last_used_at"], first[0]["last_used_at"]);

    let refreshed = app
        .refresh_with_cookie(&login.refresh_cookie().unwrap())
        .await;
    assert_eq!(refreshed.status, 200);
    let after = sessions_of(
        &app.get_with_token(SESSIONS, &refreshed.access_token())
            .await,
    );
    assert_eq!(after.len(), 1, "a refresh continues the same session");
    assert_eq!(after[0]["id"], first[0]["id"]);
    assert_eq!(after[0]["created_at"], first[0]["created_at"]);
    assert_ne!(after[0]["last_used_at"], first[0]["last_used_at"]);
    assert_eq!(after[0]["expires_at"], first[0]["expires_at"]);
}

#[tokio::test]
async fn ending_another_session_stops_its_refresh_and_access_tokens_at_once() {
    let app = TestApp::spawn().await;
    let kept = app.signed_in("ann").await;
    let ended = app.login("ann@example.com", STRONG_PASSWORD).await;
    assert_eq!(ended.status, 200);
    let ended_id = session_of(&ended.access_token());
    // Warm the per-thread cache with the session that is about to end.
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &ended.access_token())
            .await
            .status,
        200
    );

    let path = format!("{SESSIONS}/{ended_id}");
    let response = app
        .call("DELETE", &path, Some(&kept.access_token()), None)
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.json(), json!({"message": "Session ended"}));

    let me = app
        .get_with_token("/api/v1/users/me", &ended.access_token())
        .await;
    assert_eq!(me.status, 401);
    let refresh = app
        .refresh_with_cookie(&ended.refresh_cookie().unwrap())
        .await;
    assert_eq!(refresh.status, 401);
    // The other login goes on, and the list shows it alone.
    let listed = sessions_of(&app.get_with_token(SESSIONS, &kept.access_token()).await);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], session_of(&kept.access_token()));
    assert_eq!(db::audit_count(&app, "session_ended"), 1);
    // Ended already: 404 the second time.
    let again = app
        .call("DELETE", &path, Some(&kept.access_token()), None)
        .await;
    assert_eq!(again.status, 404);
}

#[tokio::test]
async fn ending_ones_own_current_session_logs_it_out() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("ann").await;
    let path = format!("{SESSIONS}/{}", session_of(&login.access_token()));
    let response = app
        .call("DELETE", &path, Some(&login.access_token()), None)
        .await;
    assert_eq!(response.status, 200);
    let me = app
        .get_with_token("/api/v1/users/me", &login.access_token())
        .await;
    assert_eq!(me.status, 401);
    let refresh = app
        .refresh_with_cookie(&login.refresh_cookie().unwrap())
        .await;
    assert_eq!(refresh.status, 401);
}

#[tokio::test]
async fn another_users_session_or_an_unknown_id_is_not_found_and_stays_live() {
    let app = TestApp::spawn().await;
    let ann = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    let bobs = format!("{SESSIONS}/{}", session_of(&bob.access_token()));
    let response = app
        .call("DELETE", &bobs, Some(&ann.access_token()), None)
        .await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["code"], "not_found");
    for unknown in [
        "0123456789abcdef0123456789abcdef",
        "nope",
        "%27%20OR%201%3D1",
    ] {
        let path = format!("{SESSIONS}/{unknown}");
        let response = app
            .call("DELETE", &path, Some(&ann.access_token()), None)
            .await;
        assert_eq!(response.status, 404, "{unknown}");
    }
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &bob.access_token())
            .await
            .status,
        200
    );
    let listed = sessions_of(&app.get_with_token(SESSIONS, &ann.access_token()).await);
    assert_eq!(listed.len(), 1, "only ann's own session: {listed:?}");
}

#[tokio::test]
async fn logout_ends_the_session_and_its_access_token() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("ann").await;
    let cookie = format!("refresh_token={}", login.refresh_cookie().unwrap());
    let response = app
        .request("POST", "/api/v1/auth/logout", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(response.status, 200);
    let me = app
        .get_with_token("/api/v1/users/me", &login.access_token())
        .await;
    assert_eq!(me.status, 401);
}
