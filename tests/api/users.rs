//! API.md "Users": self-service, management, BOLA, moderator limits,
//! self-protection, the last admin, and the immediate effect of changes.

use std::sync::Arc;

use serde_json::json;

use crate::helpers::db;
use crate::helpers::{Account, STRONG_PASSWORD, TestApp};

const ME: &str = "/api/v1/users/me";
const USERS: &str = "/api/v1/users";

fn user_path(id: &str) -> String {
    format!("{USERS}/{id}")
}

#[tokio::test]
async fn the_profile_can_change_name_and_email_but_nothing_else() {
    let app = TestApp::spawn().await;
    let me = app.account("olga", "user").await;
    let token = Some(me.token.as_str());

    let updated = app
        .call(
            "PUT",
            ME,
            token,
            Some(&json!({"full_name": "<i>Olga</i> K", "email": " Olga.K@Example.com "})),
        )
        .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(updated.json()["full_name"], "Olga K");
    assert_eq!(updated.json()["email"], "olga.k@example.com");
    let cleared = app
        .call("PUT", ME, token, Some(&json!({"full_name": null})))
        .await;
    assert_eq!(cleared.json()["full_name"], serde_json::Value::Null);
    assert_eq!(
        cleared.json()["email"],
        "olga.k@example.com",
        "absent fields stay"
    );

    for body in [
        json!({"role": "admin"}),
        json!({"is_active": false}),
        json!({"id": "x"}),
    ] {
        assert_eq!(
            app.call("PUT", ME, token, Some(&body)).await.status,
            422,
            "{body}"
        );
    }
    assert_eq!(
        app.call("GET", ME, token, None).await.json()["role"],
        "user"
    );
    assert_eq!(
        app.call("PUT", ME, token, Some(&json!({"email": "nope"})))
            .await
            .status,
        422
    );

    app.account("pete", "user").await;
    let taken = app
        .call(
            "PUT",
            ME,
            token,
            Some(&json!({"email": "pete@example.com"})),
        )
        .await;
    assert_eq!(taken.status, 400);
    assert_eq!(
        taken.json()["detail"],
        "Unable to update account with provided information"
    );
    assert_eq!(db::audit_count(&app, "profile_change"), 2);
}

#[tokio::test]
async fn wrong_current_passwords_count_towards_the_lockout_and_are_audited() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("thief").await;
    let token = login.access_token();
    let path = "/api/v1/users/me/change-password";
    let new_password = "Another-Strong-Pass-8";
    for i in 0..5 {
        let wrong = app
            .call(
                "POST",
                path,
                Some(&token),
                Some(&json!({"current_password": format!("Guess-{i}-xX!"), "new_password": new_password})),
            )
            .await;
        assert_eq!(wrong.status, 400, "{:?}", wrong.body);
    }
    assert_eq!(db::audit_count(&app, "password_change_failure"), 5);
    assert_eq!(db::audit_count(&app, "lockout"), 1);
    // A stolen access token guessed its way to the lock: now even the right
    // password is refused, here and at the login form.
    let right = app
        .call(
            "POST",
            path,
            Some(&token),
            Some(&json!({"current_password": STRONG_PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(right.status, 400);
    assert_eq!(right.json()["detail"], "Current password is incorrect");
    assert_eq!(
        app.login("thief@example.com", STRONG_PASSWORD).await.status,
        401
    );
    assert_eq!(db::audit_count(&app, "password_change"), 0);
}

#[tokio::test]
async fn change_password_shares_the_login_rate_limit() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = Some(secure_api::config::default_rate_limits());
    })
    .await;
    let login = app.signed_in("guesser").await;
    let token = login.access_token();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = app
            .call(
                "POST",
                "/api/v1/users/me/change-password",
                Some(&token),
                Some(&json!({"current_password": format!("Guess-{i}-xX!"), "new_password": "Another-Strong-Pass-8"})),
            )
            .await;
        statuses.push(response.status);
    }
    // The login above took one of the 5 a minute.
    assert_eq!(statuses, [400, 400, 400, 400, 429], "{statuses:?}");
}

#[tokio::test]
async fn a_viewer_can_change_its_own_password() {
    let app = TestApp::spawn().await;
    let viewer = app.account("reader", "viewer").await;
    let changed = app
        .call(
            "POST",
            "/api/v1/users/me/change-password",
            Some(&viewer.token),
            Some(&json!({"current_password": STRONG_PASSWORD, "new_password": "Another-Strong-Pass-8"})),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    // Its role still grants no writes elsewhere.
    let profile = app
        .call(
            "PUT",
            ME,
            Some(&changed.access_token()),
            Some(&json!({"full_name": "Nope"})),
        )
        .await;
    assert_eq!(profile.status, 403);
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_renews_the_callers() {
    let app = TestApp::spawn().await;
    let laptop = app.signed_in("quinn").await;
    let phone = app.login("quinn@example.com", STRONG_PASSWORD).await;
    let token = laptop.access_token();
    let path = "/api/v1/users/me/change-password";
    let new_password = "Another-Strong-Pass-8";

    let wrong = app
        .call(
            "POST",
            path,
            Some(&token),
            Some(&json!({"current_password": "Wrong-Pass-1!", "new_password": new_password})),
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.json()["detail"], "Current password is incorrect");
    let same = app
        .call(
            "POST",
            path,
            Some(&token),
            Some(&json!({"current_password": STRONG_PASSWORD, "new_password": STRONG_PASSWORD})),
        )
        .await;
    assert_eq!(same.status, 422);
    let weak = app
        .call(
            "POST",
            path,
            Some(&token),
            Some(&json!({"current_password": STRONG_PASSWORD, "new_password": "Password1!"})),
        )
        .await;
    assert_eq!(weak.status, 400);
    assert!(weak.json()["detail"].as_str().unwrap().contains("common"));

    let changed = app
        .call(
            "POST",
            path,
            Some(&token),
            Some(&json!({"current_password": STRONG_PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.json()["message"], "Password changed successfully");
    let fresh_access = changed.access_token();
    let fresh_refresh = changed.refresh_cookie().expect("a fresh refresh cookie");

    for old in [&laptop, &phone] {
        assert_eq!(
            app.get_with_token(ME, &old.access_token()).await.status,
            401
        );
        assert_eq!(
            app.refresh_with_cookie(&old.refresh_cookie().unwrap())
                .await
                .status,
            401
        );
    }
    assert_eq!(app.get_with_token(ME, &fresh_access).await.status, 200);
    assert_eq!(app.refresh_with_cookie(&fresh_refresh).await.status, 200);
    assert_eq!(
        app.login("quinn@example.com", STRONG_PASSWORD).await.status,
        401
    );
    assert_eq!(
        app.login("quinn@example.com", new_password).await.status,
        200
    );
    assert_eq!(db::audit_count(&app, "password_change"), 1);
}

#[tokio::test]
async fn listing_pages_filters_and_refuses_bad_parameters() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    for i in 0..5 {
        app.account(&format!("member{i}"), if i < 2 { "viewer" } else { "user" })
            .await;
    }
    let token = Some(admin.token.as_str());
    let page = app
        .call("GET", &format!("{USERS}?page=2&per_page=2"), token, None)
        .await;
    assert_eq!(page.status, 200);
    let body = page.json();
    assert_eq!(
        (
            body["total"].as_i64(),
            body["page"].as_i64(),
            body["per_page"].as_i64(),
            body["pages"].as_i64()
        ),
        (Some(6), Some(2), Some(2), Some(3))
    );
    assert_eq!(body["users"].as_array().unwrap().len(), 2);

    let defaults = app
        .call("GET", &format!("{USERS}/"), token, None)
        .await
        .json();
    assert_eq!(
        (defaults["page"].as_i64(), defaults["per_page"].as_i64()),
        (Some(1), Some(20))
    );
    let capped = app
        .call("GET", &format!("{USERS}?per_page=500"), token, None)
        .await
        .json();
    assert_eq!(capped["per_page"], 100);
    let past = app
        .call("GET", &format!("{USERS}?page=9"), token, None)
        .await
        .json();
    assert_eq!(
        (
            past["users"].as_array().unwrap().len(),
            past["total"].as_i64()
        ),
        (0, Some(6))
    );
    let viewers = app
        .call("GET", &format!("{USERS}?role=viewer"), token, None)
        .await
        .json();
    assert_eq!(viewers["total"], 2);
    assert!(
        viewers["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["role"] == "viewer")
    );

    for query in [
        "page=0",
        "per_page=0",
        "page=abc",
        "per_page=-1",
        "role=superuser",
        "page=1.5",
    ] {
        let response = app
            .call("GET", &format!("{USERS}?{query}"), token, None)
            .await;
        assert_eq!(response.status, 422, "{query}");
    }
}

#[tokio::test]
async fn creating_accounts_follows_the_role_rules() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    let moderator = app.account("mod1", "moderator").await;
    let body = |name: &str, role: Option<&str>| {
        let mut b = json!({"username": name, "email": format!("{name}@example.com"), "password": STRONG_PASSWORD});
        if let Some(role) = role {
            b["role"] = json!(role);
        }
        b
    };
    let plain = app
        .call(
            "POST",
            USERS,
            Some(&admin.token),
            Some(&body("plain", None)),
        )
        .await;
    assert_eq!(
        (plain.status, plain.json()["role"].as_str()),
        (201, Some("user"))
    );
    let second_admin = app
        .call(
            "POST",
            USERS,
            Some(&admin.token),
            Some(&body("admin2", Some("admin"))),
        )
        .await;
    assert_eq!(second_admin.status, 201);
    for role in ["user", "viewer"] {
        let name = format!("by-mod-{role}");
        assert_eq!(
            app.call(
                "POST",
                USERS,
                Some(&moderator.token),
                Some(&body(&name, Some(role)))
            )
            .await
            .status,
            201
        );
    }
    for role in ["moderator", "admin"] {
        let name = format!("escalate-{role}");
        let response = app
            .call(
                "POST",
                USERS,
                Some(&moderator.token),
                Some(&body(&name, Some(role))),
            )
            .await;
        assert_eq!(response.status, 403, "{role}");
    }
    let duplicate = app
        .call(
            "POST",
            USERS,
            Some(&admin.token),
            Some(&body("plain", None)),
        )
        .await;
    assert_eq!(duplicate.status, 409);
    let bad_role = app
        .call(
            "POST",
            USERS,
            Some(&admin.token),
            Some(&body("weird", Some("root"))),
        )
        .await;
    assert_eq!(bad_role.status, 422);
    assert_eq!(db::audit_count(&app, "user_created"), 4);
}

#[tokio::test]
async fn a_user_cannot_read_change_or_delete_another_user_by_id() {
    let app = TestApp::spawn().await;
    let mallory = app.account("mallory", "user").await;
    let victim = app.account("victim", "user").await;
    let path = user_path(&victim.id);
    let before: String = db::accounts_fingerprint(&app);
    let denied_before = db::audit_count(&app, "permission_denied");
    for (method, body) in [
        ("GET", None),
        (
            "PATCH",
            Some(json!({"full_name": "pwned", "role": "admin"})),
        ),
        ("POST", None),
        ("DELETE", None),
    ] {
        let target = if method == "POST" {
            format!("{path}/unlock")
        } else {
            path.clone()
        };
        let response = app
            .call(method, &target, Some(&mallory.token), body.as_ref())
            .await;
        assert_eq!(response.status, 403, "{method}");
        assert_eq!(response.json()["code"], "forbidden");
    }
    let after: String = db::accounts_fingerprint(&app);
    assert_eq!(before, after, "no side effect");
    assert_eq!(
        db::audit_count(&app, "permission_denied"),
        denied_before + 4
    );
    assert_eq!(app.get_with_token(ME, &victim.token).await.status, 200);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    for id in [
        "5b6f1a3e-0000-4000-8000-000000000000",
        "not-a-uuid",
        "5B6F1A3E-0000-4000-8000-000000000000",
    ] {
        for method in ["GET", "PATCH", "DELETE"] {
            let body = (method == "PATCH").then(|| json!({"full_name": "x"}));
            let response = app
                .call(method, &user_path(id), Some(&admin.token), body.as_ref())
                .await;
            assert_eq!(response.status, 404, "{method} {id}");
        }
    }
}

#[tokio::test]
async fn moderators_manage_users_but_not_roles_admins_or_moderators() {
    let app = TestApp::spawn().await;
    let moderator = app.account("mod1", "moderator").await;
    let admin = app.account("root1", "admin").await;
    let other_mod = app.account("mod2", "moderator").await;
    let user = app.account("plainuser", "user").await;
    let token = Some(moderator.token.as_str());
    let rename = json!({"full_name": "Renamed"});

    assert_eq!(
        app.call("PATCH", &user_path(&user.id), token, Some(&rename))
            .await
            .status,
        200
    );
    assert_eq!(
        app.call(
            "PATCH",
            &user_path(&user.id),
            token,
            Some(&json!({"is_active": false}))
        )
        .await
        .status,
        200
    );
    let promote = app
        .call(
            "PATCH",
            &user_path(&user.id),
            token,
            Some(&json!({"role": "moderator"})),
        )
        .await;
    assert_eq!(promote.status, 403);
    for target in [&admin, &other_mod] {
        assert_eq!(
            app.call("PATCH", &user_path(&target.id), token, Some(&rename))
                .await
                .status,
            403
        );
        assert_eq!(
            app.call(
                "POST",
                &format!("{}/unlock", user_path(&target.id)),
                token,
                None
            )
            .await
            .status,
            403
        );
    }
    assert_eq!(
        app.call("DELETE", &user_path(&user.id), token, None)
            .await
            .status,
        403,
        "no users:delete"
    );
    let role: String = db::role_of(&app, &user.id);
    assert_eq!(role, "user");
}

#[tokio::test]
async fn nobody_removes_their_own_access_through_the_admin_routes() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    app.account("root2", "admin").await;
    let me = user_path(&admin.id);
    let token = Some(admin.token.as_str());
    for (method, body) in [
        ("DELETE", None),
        ("PATCH", Some(json!({"role": "user"}))),
        ("PATCH", Some(json!({"is_active": false}))),
    ] {
        let response = app.call(method, &me, token, body.as_ref()).await;
        assert_eq!(response.status, 400, "{method} {body:?}");
        assert_eq!(response.json()["code"], "self_protection");
    }
    let renamed = app
        .call(
            "PATCH",
            &me,
            token,
            Some(&json!({"full_name": "Still Me", "role": "admin"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "a no-op role and a rename are fine");
    assert_eq!(app.get_with_token(ME, &admin.token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    for round in 0..5 {
        let app = Arc::new(TestApp::spawn().await);
        let a = app.account(&format!("admin-a{round}"), "admin").await;
        let b = app.account(&format!("admin-b{round}"), "admin").await;
        let demote = |actor: Account, target: String| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                app.call(
                    "PATCH",
                    &user_path(&target),
                    Some(&actor.token),
                    Some(&json!({"role": "user"})),
                )
                .await
                .status
            })
        };
        let (a_id, b_id) = (a.id.clone(), b.id.clone());
        let first = demote(a, b_id);
        let second = demote(b, a_id);
        let statuses = [first.await.unwrap(), second.await.unwrap()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| [200, 401, 403, 409].contains(s)),
            "{statuses:?}"
        );
        let admins: i64 = db::active_admin_count(&app);
        assert_eq!(admins, 1, "round {round}");
    }
}

#[tokio::test]
async fn role_change_deactivation_and_deletion_end_sessions_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.account("root1", "admin").await;
    for (change, body) in [
        ("role", Some(json!({"role": "viewer"}))),
        ("deactivate", Some(json!({"is_active": false}))),
        ("delete", None),
    ] {
        let name = format!("target-{change}");
        let login = app.signed_in(&name).await;
        let id = app.get_with_token(ME, &login.access_token()).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let method = if body.is_some() { "PATCH" } else { "DELETE" };
        let response = app
            .call(method, &user_path(&id), Some(&admin.token), body.as_ref())
            .await;
        assert_eq!(response.status, 200, "{change}: {:?}", response.body);
        assert_eq!(
            app.get_with_token(ME, &login.access_token()).await.status,
            401,
            "{change}"
        );
        assert_eq!(
            app.refresh_with_cookie(&login.refresh_cookie().unwrap())
                .await
                .status,
            401,
            "{change}"
        );
    }
    let deactivated = app
        .login("target-deactivate@example.com", STRONG_PASSWORD)
        .await;
    assert_eq!(deactivated.status, 401);
    let demoted = app.login("target-role@example.com", STRONG_PASSWORD).await;
    assert_eq!(
        app.get_with_token(ME, &demoted.access_token()).await.json()["role"],
        "viewer"
    );
    let deleted = app
        .call("GET", USERS, Some(&admin.token), None)
        .await
        .json();
    assert!(
        deleted["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["username"] != "target-delete")
    );
    for event in ["role_change", "activation_change", "user_deleted"] {
        assert_eq!(db::audit_count(&app, event), 1, "{event}");
    }
}

#[tokio::test]
async fn unlock_clears_a_lockout() {
    let app = TestApp::spawn().await;
    let moderator = app.account("mod1", "moderator").await;
    let locked = app.account("locked1", "user").await;
    for _ in 0..5 {
        app.login("locked1@example.com", "Wrong-Password-1").await;
    }
    assert_eq!(
        app.login("locked1@example.com", STRONG_PASSWORD)
            .await
            .status,
        401
    );
    let unlocked = app
        .call(
            "POST",
            &format!("{}/unlock", user_path(&locked.id)),
            Some(&moderator.token),
            None,
        )
        .await;
    assert_eq!(unlocked.status, 200);
    assert_eq!(unlocked.json()["username"], "locked1");
    assert_eq!(
        app.login("locked1@example.com", STRONG_PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(db::audit_count(&app, "unlock"), 1);
}
