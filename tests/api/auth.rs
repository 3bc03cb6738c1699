//! Login, refresh rotation, reuse detection, logout, lockout: API.md
//! "Authentication". Time moves through a manual clock, never by sleeping.

use std::sync::Arc;

use serde_json::json;
use time::Duration;

use crate::helpers::db;
use crate::helpers::{ManualClock, STRONG_PASSWORD, TestApp, TestResponse, b64url_decode};

const ME: &str = "/api/v1/users/me";

async fn app_with_clock() -> (TestApp, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let app = {
        let clock = Arc::clone(&clock);
        TestApp::spawn_with(move |c| c.clock = clock).await
    };
    (app, clock)
}

#[tokio::test]
async fn login_returns_a_bearer_token_and_a_strict_refresh_cookie() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("alice").await;
    let body = login.json();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    let cookie = login.set_cookie().unwrap();
    let token = login.refresh_cookie().unwrap();
    assert_eq!(
        cookie,
        format!(
            "refresh_token={token}; HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth; Max-Age=604800"
        )
    );
    let me = app.get_with_token(ME, &login.access_token()).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["username"], "alice");
}

fn comparable(response: &TestResponse) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let mut body = response.json();
    body.as_object_mut().unwrap().remove("request_id");
    (response.status, headers, body)
}

#[tokio::test]
async fn the_four_kinds_of_login_failure_are_indistinguishable() {
    let app = TestApp::spawn().await;
    for name in ["wrongpw", "inactive", "locked"] {
        assert_eq!(
            app.register(name, &format!("{name}@example.com"))
                .await
                .status,
            201
        );
    }
    db::deactivate(&app, "inactive");
    db::lock_for_an_hour(&app, "locked");

    let unknown = app.login("nobody@example.com", STRONG_PASSWORD).await;
    let wrong = app.login("wrongpw@example.com", "Not-The-Password-1").await;
    let inactive = app.login("inactive@example.com", STRONG_PASSWORD).await;
    let locked = app.login("locked@example.com", STRONG_PASSWORD).await;

    let reference = comparable(&unknown);
    assert_eq!(reference.0, 401);
    assert_eq!(unknown.header("www-authenticate"), Some("Bearer"));
    assert_eq!(reference.2["detail"], "Invalid email or password");
    assert_eq!(reference.2["code"], "invalid_credentials");
    for (kind, response) in [
        ("wrong password", &wrong),
        ("inactive", &inactive),
        ("locked", &locked),
    ] {
        assert_eq!(comparable(response), reference, "{kind}");
        assert!(response.refresh_cookie().is_none());
    }
}

#[tokio::test]
async fn injection_payloads_never_cause_a_server_error() {
    let app = TestApp::spawn().await;
    app.signed_in("victim").await;
    for (email, password) in [
        ("' OR '1'='1", "' OR '1'='1"),
        ("victim@example.com' --", "x"),
        ("victim@example.com", "' OR 1=1; DROP TABLE users; --"),
        ("\"; DELETE FROM users; --@example.com", "password"),
        ("victim@example.com\u{0}", STRONG_PASSWORD),
    ] {
        let response = app.login(email, password).await;
        assert!(
            response.status == 401 || response.status == 422,
            "{email:?}: {}",
            response.status
        );
    }
    assert_eq!(db::user_count(&app), 1);
}

#[tokio::test]
async fn login_input_is_validated_before_any_hashing() {
    let app = TestApp::spawn().await;
    let long = "A1!a".repeat(33);
    for (body, field) in [
        (
            json!({"email": "a@example.com", "password": ""}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": long}),
            "password",
        ),
        (json!({"email": "", "password": "x"}), "email"),
        (json!({"email": "a@example.com"}), "password"),
    ] {
        let response = app.post_json("/api/v1/auth/login", &body).await;
        assert_eq!(response.status, 422, "{body}");
        assert_eq!(response.json()["errors"][0]["field"], field);
    }
    let extra = json!({"email": "a@example.com", "password": "x", "role": "admin"});
    assert_eq!(
        app.post_json("/api/v1/auth/login", &extra).await.status,
        422
    );
    let totp = json!({"email": "a@example.com", "password": "x", "totp_code": "123456"});
    assert_eq!(app.post_json("/api/v1/auth/login", &totp).await.status, 401);
}

#[tokio::test]
async fn five_failures_lock_the_account_for_thirty_minutes_and_success_resets_the_count() {
    let (app, clock) = app_with_clock().await;
    app.signed_in("carol").await;
    let email = "carol@example.com";

    for _ in 0..4 {
        assert_eq!(app.login(email, "Wrong-Password-1").await.status, 401);
    }
    assert_eq!(db::failed_login_count(&app), 4);
    assert_eq!(app.login(email, STRONG_PASSWORD).await.status, 200);
    assert_eq!(db::failed_login_count(&app), 0, "success resets");

    for _ in 0..5 {
        assert_eq!(app.login(email, "Wrong-Password-1").await.status, 401);
    }
    assert_eq!(db::audit_count(&app, "lockout"), 1);
    assert_eq!(
        app.login(email, STRONG_PASSWORD).await.status,
        401,
        "locked"
    );

    clock.advance(Duration::minutes(29));
    assert_eq!(
        app.login(email, STRONG_PASSWORD).await.status,
        401,
        "still locked"
    );
    clock.advance(Duration::minutes(1));
    assert_eq!(
        app.login(email, STRONG_PASSWORD).await.status,
        200,
        "lock over"
    );
}

fn reasons(app: &TestApp, event: &str) -> Vec<String> {
    db::audit_reasons(app, event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_are_counted_only_up_to_the_lock() {
    let app = Arc::new(TestApp::spawn().await);
    assert_eq!(app.register("burst", "burst@example.com").await.status, 201);
    let guesses: Vec<_> = (0..30)
        .map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                app.login("burst@example.com", &format!("Wrong-guess-{i}!"))
                    .await
                    .status
            })
        })
        .collect();
    for guess in guesses {
        assert_eq!(guess.await.unwrap(), 401);
    }
    let failures = reasons(&app, "login_failure");
    assert_eq!(failures.len(), 30);
    assert_eq!(
        failures.iter().filter(|r| *r == "wrong_password").count(),
        5,
        "exactly max_login_attempts wrong passwords count before the lock: {failures:?}"
    );
    assert!(
        failures
            .iter()
            .all(|r| r == "wrong_password" || r == "locked")
    );
    assert_eq!(reasons(&app, "lockout").len(), 1);
    assert_eq!(
        app.login("burst@example.com", STRONG_PASSWORD).await.status,
        401,
        "the lock holds against the right password"
    );
}

/// A login held after its password check, until the test releases it.
struct HeldLogin {
    armed: std::sync::atomic::AtomicBool,
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl HeldLogin {
    fn hook(self: &Arc<Self>) -> secure_api::state::Checkpoint {
        let held = Arc::clone(self);
        Arc::new(move || {
            let held = Arc::clone(&held);
            Box::pin(async move {
                if held.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    held.arrived.notify_one();
                    held.release.notified().await;
                }
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_that_raced_a_password_change_is_refused_and_writes_nothing() {
    let held = Arc::new(HeldLogin {
        armed: false.into(),
        arrived: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let app = {
        let hook = held.hook();
        Arc::new(
            TestApp::spawn_with(move |c| c.hooks.after_login_password_check = Some(hook)).await,
        )
    };
    let owner = app.signed_in("racer2").await;
    // A hash with older parameters, so the raced login would also write back
    // a fresh hash of the old password if nothing stopped it.
    use argon2::PasswordHasher;
    let old = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(2048, 2, 1, None).unwrap(),
    )
    .hash_password(
        STRONG_PASSWORD.as_bytes(),
        &argon2::password_hash::SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap(),
    )
    .unwrap()
    .to_string();
    db::set_password_hash(&app, &old);

    held.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let raced = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.login("racer2@example.com", STRONG_PASSWORD).await })
    };
    held.arrived.notified().await;
    let new_password = "Another-Strong-Pass-42";
    let changed = app
        .call(
            "POST",
            "/api/v1/users/me/change-password",
            Some(&owner.access_token()),
            Some(&json!({"current_password": STRONG_PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    let sessions_after_change: i64 = db::live_session_count(&app);
    held.release.notify_one();

    let raced = raced.await.unwrap();
    assert_eq!(raced.status, 401, "{:?}", raced.body);
    assert!(raced.refresh_cookie().is_none());
    assert_eq!(
        db::live_session_count(&app),
        sessions_after_change,
        "no session was created for the old password"
    );
    assert_eq!(
        app.login("racer2@example.com", STRONG_PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        app.login("racer2@example.com", new_password).await.status,
        200,
        "the new password's hash was not overwritten"
    );
}

#[tokio::test]
async fn lockout_thresholds_are_configurable() {
    let app = TestApp::spawn_with(|c| {
        c.settings.max_login_attempts = 2;
        c.settings.lockout_minutes = 1;
    })
    .await;
    app.signed_in("dave").await;
    for _ in 0..2 {
        app.login("dave@example.com", "Wrong-Password-1").await;
    }
    assert_eq!(
        app.login("dave@example.com", STRONG_PASSWORD).await.status,
        401
    );
    let locked_for: i64 = db::locked_for_secs(&app);
    assert!((55..=60).contains(&locked_for), "{locked_for}");
}

#[tokio::test]
async fn refresh_rotates_the_token_and_rereads_the_user() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("erin").await;
    let first = login.refresh_cookie().unwrap();

    let refreshed = app.refresh_with_cookie(&first).await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let second = refreshed.refresh_cookie().unwrap();
    assert_ne!(first, second, "a new refresh token");
    assert_eq!(
        app.get_with_token(ME, &refreshed.access_token())
            .await
            .status,
        200
    );

    // The new access token carries the role as it is now.
    db::set_every_role(&app, "viewer");
    let again = app.refresh_with_cookie(&second).await;
    assert_eq!(again.status, 200);
    let payload = again.access_token().split('.').nth(1).unwrap().to_owned();
    let claims: serde_json::Value = serde_json::from_slice(&b64url_decode(&payload)).unwrap();
    assert_eq!(claims["role"], "viewer");
}

#[tokio::test]
async fn refresh_accepts_the_token_in_the_body_for_scripts() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("frank").await;
    let token = login.refresh_cookie().unwrap();
    let response = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": token}))
        .await;
    assert_eq!(response.status, 200);
    assert!(response.refresh_cookie().is_some());
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_whole_family() {
    let (app, clock) = app_with_clock().await;
    let login = app.signed_in("grace").await;
    let first = login.refresh_cookie().unwrap();
    let second = app.rotate(&first).await;
    let third_response = app.refresh_with_cookie(&second).await;
    let third = third_response.refresh_cookie().unwrap();

    clock.advance(Duration::seconds(3));
    let replay = app.refresh_with_cookie(&first).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.header("www-authenticate"), Some("Bearer"));
    assert!(
        replay.set_cookie().unwrap().contains("Max-Age=0"),
        "cookie cleared"
    );
    // The newest token of the family, never used, is dead too.
    assert_eq!(app.refresh_with_cookie(&third).await.status, 401);
    assert_eq!(db::audit_count(&app, "refresh_reuse_detected"), 1);
    // Another login of the same user is untouched.
    let other = app.login("grace@example.com", STRONG_PASSWORD).await;
    let other_token = other.refresh_cookie().unwrap();
    assert_eq!(app.refresh_with_cookie(&other_token).await.status, 200);
}

#[tokio::test]
async fn reuse_within_the_grace_window_is_refused_without_revoking() {
    let (app, clock) = app_with_clock().await;
    let login = app.signed_in("tabs").await;
    let first = login.refresh_cookie().unwrap();
    let second = app.rotate(&first).await;

    // The window is measured to the millisecond: 1.999 s is inside 2 s.
    clock.advance(Duration::milliseconds(1_999));
    let other_tab = app.refresh_with_cookie(&first).await;
    assert_eq!(other_tab.status, 401);
    assert!(
        other_tab.set_cookie().is_none(),
        "the other tab's fresh cookie must not be cleared"
    );
    assert_eq!(
        db::audit_count(&app, "refresh_reuse_in_grace"),
        1,
        "a presentation inside the window is audited"
    );
    assert_eq!(
        app.refresh_with_cookie(&second).await.status,
        200,
        "family alive"
    );
    assert_eq!(db::audit_count(&app, "refresh_reuse_detected"), 0);
}

#[tokio::test]
async fn the_grace_window_ends_to_the_millisecond() {
    let (app, clock) = app_with_clock().await;
    let login = app.signed_in("edge").await;
    let first = login.refresh_cookie().unwrap();
    let second = app.rotate(&first).await;
    // Whole seconds would still call 2.5 s "2 s, inside".
    clock.advance(Duration::milliseconds(2_500));
    assert_eq!(app.refresh_with_cookie(&first).await.status, 401);
    assert_eq!(
        app.refresh_with_cookie(&second).await.status,
        401,
        "reuse after the window revokes the family"
    );
}

#[tokio::test]
async fn the_grace_window_covers_only_the_newest_rotation() {
    let (app, _clock) = app_with_clock().await;
    let login = app.signed_in("line").await;
    let first = login.refresh_cookie().unwrap();
    let second = app.rotate(&first).await;
    let third = app.rotate(&second).await;
    // Still within 2 s of its rotation, but the token that replaced it has
    // been used in turn: a stolen copy of `first`, not a racing tab.
    let replay = app.refresh_with_cookie(&first).await;
    assert_eq!(replay.status, 401);
    assert!(replay.set_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(
        app.refresh_with_cookie(&third).await.status,
        401,
        "the family is revoked"
    );
    assert_eq!(db::audit_count(&app, "refresh_reuse_detected"), 1);
}

#[tokio::test]
async fn the_grace_window_is_configurable() {
    let app = TestApp::spawn_with(|c| c.refresh_reuse_grace = Duration::ZERO).await;
    let login = app.signed_in("nograce").await;
    let first = login.refresh_cookie().unwrap();
    let second = app.rotate(&first).await;
    // Zero means no window at all, not "within the same second".
    assert_eq!(app.refresh_with_cookie(&first).await.status, 401);
    assert_eq!(
        app.refresh_with_cookie(&second).await.status,
        401,
        "revoked at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_with_one_token_let_exactly_one_through() {
    let app = Arc::new(TestApp::spawn().await);
    let login = app.signed_in("racer").await;
    let token = login.refresh_cookie().unwrap();
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (app, token) = (Arc::clone(&app), token.clone());
            tokio::spawn(async move { app.refresh_with_cookie(&token).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_login_lives_seven_days_whatever_the_rotations() {
    let (app, clock) = app_with_clock().await;
    let login = app.signed_in("weekly").await;
    let mut token = login.refresh_cookie().unwrap();
    for _ in 0..6 {
        clock.advance(Duration::days(1));
        let response = app.refresh_with_cookie(&token).await;
        assert_eq!(response.status, 200);
        token = response.refresh_cookie().unwrap();
        let max_age: i64 = response
            .set_cookie()
            .unwrap()
            .rsplit("Max-Age=")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            max_age <= 604_800,
            "never beyond the family's end: {max_age}"
        );
    }
    clock.advance(Duration::days(1));
    let response = app.refresh_with_cookie(&token).await;
    assert_eq!(
        response.status, 401,
        "seven days after login the family is over"
    );
}

#[tokio::test]
async fn invalid_refresh_tokens_get_401_and_a_cleared_cookie() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("ivan").await;
    for token in ["garbage", "eyJ.eyJ.invalid", &login.access_token()] {
        let response = app.refresh_with_cookie(token).await;
        assert_eq!(response.status, 401, "{token}");
        assert!(response.set_cookie().unwrap().contains("Max-Age=0"));
    }
    let none = app.request("POST", "/api/v1/auth/refresh", &[], None).await;
    assert_eq!(none.status, 401);
}

#[tokio::test]
async fn logout_ends_the_login_and_clears_the_cookie() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("judy").await;
    let token = login.refresh_cookie().unwrap();
    let cookie = format!("refresh_token={token}");
    let response = app
        .request("POST", "/api/v1/auth/logout", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"message": "Successfully logged out"})
    );
    assert!(response.set_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(app.refresh_with_cookie(&token).await.status, 401);
    assert_eq!(db::audit_count(&app, "logout"), 1);

    let anonymous = app.request("POST", "/api/v1/auth/logout", &[], None).await;
    assert_eq!(
        anonymous.status, 200,
        "logging out without a session is fine"
    );
}

#[tokio::test]
async fn logout_ends_the_access_tokens_of_that_login_at_once() {
    let app = TestApp::spawn().await;
    let laptop = app.signed_in("kim").await;
    let phone = app.login("kim@example.com", STRONG_PASSWORD).await;
    let (laptop_access, phone_access) = (laptop.access_token(), phone.access_token());
    assert_eq!(app.get_with_token(ME, &laptop_access).await.status, 200);
    let cookie = format!("refresh_token={}", laptop.refresh_cookie().unwrap());
    let out = app
        .request("POST", "/api/v1/auth/logout", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(out.status, 200);
    assert_eq!(
        app.get_with_token(ME, &laptop_access).await.status,
        401,
        "the access token of the ended login stops at once, not in 15 minutes"
    );
    assert_eq!(
        app.get_with_token(ME, &phone_access).await.status,
        200,
        "another login of the same user goes on"
    );

    // A client holding only the access token ends its login with it.
    let bearer = format!("Bearer {phone_access}");
    let out = app
        .request(
            "POST",
            "/api/v1/auth/logout",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(out.status, 200);
    assert_eq!(app.get_with_token(ME, &phone_access).await.status, 401);
    assert_eq!(
        app.refresh_with_cookie(&phone.refresh_cookie().unwrap())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn refresh_reuse_ends_the_access_tokens_of_the_family() {
    let (app, clock) = app_with_clock().await;
    let login = app.signed_in("stolen").await;
    let first = login.refresh_cookie().unwrap();
    let rotated = app.refresh_with_cookie(&first).await;
    let access = rotated.access_token();
    assert_eq!(app.get_with_token(ME, &access).await.status, 200);
    clock.advance(Duration::seconds(3));
    assert_eq!(app.refresh_with_cookie(&first).await.status, 401);
    assert_eq!(
        app.get_with_token(ME, &access).await.status,
        401,
        "a revoked family's access tokens stop too"
    );
}

#[tokio::test]
async fn logout_all_ends_every_session_and_every_access_token() {
    let app = TestApp::spawn().await;
    let laptop = app.signed_in("kate").await;
    let phone = app.login("kate@example.com", STRONG_PASSWORD).await;
    assert_eq!(
        app.post_with_token("/api/v1/auth/logout-all", &laptop.access_token())
            .await
            .status,
        200
    );

    for session in [&laptop, &phone] {
        assert_eq!(
            app.get_with_token(ME, &session.access_token()).await.status,
            401
        );
        let refresh = session.refresh_cookie().unwrap();
        assert_eq!(app.refresh_with_cookie(&refresh).await.status, 401);
    }
    assert_eq!(
        app.login("kate@example.com", STRONG_PASSWORD).await.status,
        200
    );
    let anonymous = app
        .request("POST", "/api/v1/auth/logout-all", &[], None)
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn changes_through_the_api_reach_live_access_tokens_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.account("ada", "admin").await;
    let leo = app.account("leo", "user").await;
    let leo_path = format!("/api/v1/users/{}", leo.id);
    let patch = |body: serde_json::Value| {
        let path = leo_path.clone();
        let token = admin.token.clone();
        let app = &app;
        async move {
            app.call("PATCH", &path, Some(&token), Some(&body))
                .await
                .status
        }
    };
    // Read twice so the user's state is certainly in the server's cache.
    for _ in 0..2 {
        assert_eq!(app.get_with_token(ME, &leo.token).await.status, 200);
    }

    assert_eq!(patch(json!({"is_active": false})).await, 200);
    assert_eq!(
        app.get_with_token(ME, &leo.token).await.status,
        401,
        "deactivated"
    );
    assert_eq!(patch(json!({"is_active": true})).await, 200);
    assert_eq!(
        app.get_with_token(ME, &leo.token).await.status,
        401,
        "deactivation ended the token for good"
    );
    let token = app
        .login("leo@example.com", STRONG_PASSWORD)
        .await
        .access_token();
    assert_eq!(app.get_with_token(ME, &token).await.status, 200);

    let renamed = app
        .call(
            "PUT",
            ME,
            Some(&token),
            Some(&json!({"full_name": "Leo Renamed"})),
        )
        .await;
    assert_eq!(renamed.status, 200);
    let me = app.get_with_token(ME, &token).await;
    assert_eq!(me.json()["full_name"], "Leo Renamed", "no stale profile");

    assert_eq!(patch(json!({"role": "moderator"})).await, 200);
    assert_eq!(
        app.get_with_token(ME, &token).await.status,
        401,
        "role changed"
    );

    let token = app
        .login("leo@example.com", STRONG_PASSWORD)
        .await
        .access_token();
    assert_eq!(
        app.get_with_token(ME, &token).await.json()["role"],
        "moderator"
    );
    let deleted = app
        .call("DELETE", &leo_path, Some(&admin.token), None)
        .await;
    assert!(deleted.status / 100 == 2, "{:?}", deleted.body);
    assert_eq!(app.get_with_token(ME, &token).await.status, 401, "deleted");
}

/// Edits made to the database file by another process (an operator with
/// `sqlite3`) are noticed by the server's watcher within a moment.
#[tokio::test]
async fn changes_made_by_another_process_reach_live_access_tokens_promptly() {
    let app = TestApp::spawn().await;
    let token = app.signed_in("leo").await.access_token();
    assert_eq!(app.get_with_token(ME, &token).await.status, 200);
    let becomes = |expected: u16, token: String| {
        let app = &app;
        async move {
            // A bound on waiting, not a speed requirement: the watcher looks
            // every 100 ms.
            for _ in 0..250 {
                if app.get_with_token(ME, &token).await.status == expected {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            false
        }
    };

    db::set_everyone_active(&app, false);
    assert!(becomes(401, token.clone()).await, "deactivated");
    db::set_everyone_active(&app, true);
    assert!(becomes(200, token.clone()).await, "active again");
    db::bump_every_token_version(&app);
    assert!(becomes(401, token.clone()).await, "version bump");
    let token = app
        .login("leo@example.com", STRONG_PASSWORD)
        .await
        .access_token();
    assert_eq!(app.get_with_token(ME, &token).await.status, 200);
    db::delete_everyone(&app);
    assert!(becomes(401, token).await, "deleted");
}

#[tokio::test]
async fn a_hash_made_with_older_parameters_is_upgraded_at_login() {
    let app = TestApp::spawn().await;
    app.signed_in("mia").await;
    use argon2::PasswordHasher;
    let old_params = argon2::Params::new(2048, 2, 1, None).unwrap();
    let old = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        old_params,
    )
    .hash_password(
        STRONG_PASSWORD.as_bytes(),
        &argon2::password_hash::SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap(),
    )
    .unwrap()
    .to_string();
    db::set_password_hash(&app, &old);
    assert_eq!(
        app.login("mia@example.com", STRONG_PASSWORD).await.status,
        200
    );
    let now: String = db::password_hash(&app);
    assert!(now.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{now}");
}

#[tokio::test]
async fn audit_rows_are_written_masked_and_without_secrets() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("nina").await;
    app.login("nina@example.com", "Wrong-Password-1").await;
    app.login("ghost@example.com", "Wrong-Password-1").await;
    let cookie = format!("refresh_token={}", login.refresh_cookie().unwrap());
    app.request("POST", "/api/v1/auth/logout", &[("cookie", &cookie)], None)
        .await;

    let rows = db::audit_rows(&app);
    let events: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        events,
        [
            "registration",
            "login_success",
            "login_failure",
            "login_failure",
            "logout"
        ]
    );
    for (event, user_id, client_ip, request_id, detail) in &rows {
        assert_eq!(client_ip.as_deref(), Some("127.0.0.1"), "{event}");
        assert!(request_id.is_some(), "{event}");
        assert!(!detail.contains(STRONG_PASSWORD) && !detail.contains("Wrong-Password"));
        assert!(!detail.contains("nina@example.com") && !detail.contains("ghost@example.com"));
        assert!(!detail.contains("eyJ"), "no token in {detail}");
        if event != "login_failure" || detail.contains("n******") {
            assert!(user_id.is_some(), "{event} names its user");
        }
    }
    assert!(rows[3].4.contains("g******@example.com"), "{}", rows[3].4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashing_flood_is_refused_with_503_instead_of_queued() {
    let app = Arc::new(
        TestApp::spawn_with(|c| {
            c.hash = secure_api::auth::password::HashParams {
                memory_kib: 16 * 1024,
                time_cost: 1,
                parallelism: 1,
            }
            .validate(true)
            .unwrap();
            c.hash_workers = 1;
            c.hash_queue = 0;
        })
        .await,
    );
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                app.register(&format!("flood{i}"), &format!("flood{i}@example.com"))
                    .await
            })
        })
        .collect();
    let mut busy = 0;
    let mut created = 0;
    for attempt in attempts {
        let response = attempt.await.unwrap();
        match response.status {
            201 => created += 1,
            503 => {
                busy += 1;
                assert_eq!(response.header("retry-after"), Some("1"));
                assert_eq!(response.json()["code"], "service_unavailable");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        created >= 1 && busy >= 1,
        "created {created}, refused {busy}"
    );
}
