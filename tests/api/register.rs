//! `POST /api/v1/auth/register`: validation exactly as API.md.

use serde_json::json;

use crate::helpers::db;
use crate::helpers::{STRONG_PASSWORD, TestApp};

const REGISTER: &str = "/api/v1/auth/register";

#[tokio::test]
async fn registration_returns_the_user_and_nothing_secret() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            REGISTER,
            &json!({"username": "Jane_Doe", "email": "  Jane.Doe@Example.COM ",
                    "password": STRONG_PASSWORD, "full_name": "<b>Jane</b> Doe\u{7}"}),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    let user = response.json();
    let keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "email",
            "full_name",
            "id",
            "is_active",
            "role",
            "two_factor_enabled",
            "updated_at",
            "username"
        ]
    );
    assert_eq!(user["username"], "Jane_Doe");
    assert_eq!(user["email"], "jane.doe@example.com");
    assert_eq!(user["full_name"], "Jane Doe");
    assert_eq!(user["role"], "user");
    assert_eq!(user["is_active"], true);
    assert_eq!(user["two_factor_enabled"], false);
    let created = user["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    assert!(!String::from_utf8_lossy(&response.body).contains(STRONG_PASSWORD));
}

#[tokio::test]
async fn a_taken_username_or_email_gets_the_same_generic_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.register("alice", "alice@example.com").await.status, 201);
    let same_name = app.register("ALICE", "other@example.com").await;
    let same_email = app.register("alice2", "Alice@Example.com").await;
    for response in [&same_name, &same_email] {
        assert_eq!(response.status, 400);
        let body = response.json();
        assert_eq!(
            body["detail"],
            "Unable to create account with provided information"
        );
        assert_eq!(body["code"], "registration_failed");
    }
}

#[tokio::test]
async fn role_and_other_unknown_fields_are_refused_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    for extra in [
        json!({"role": "admin"}),
        json!({"is_active": false}),
        json!({"id": "x"}),
    ] {
        let mut body = json!({"username": "mallory", "email": "mallory@example.com", "password": STRONG_PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let response = app.post_json(REGISTER, &body).await;
        assert_eq!(response.status, 422);
        let field = extra.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(response.json()["errors"][0]["field"], field.as_str());
    }
    assert_eq!(db::user_count(&app), 0);
}

#[tokio::test]
async fn malformed_usernames_and_emails_are_validation_errors_that_echo_nothing() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(10_000);
    for (username, email, field) in [
        ("<script>alert(1)</script>", "a@example.com", "username"),
        (huge.as_str(), "a@example.com", "username"),
        ("ab", "a@example.com", "username"),
        ("Administrator", "a@example.com", "username"),
        ("valid_name", "not-an-email", "email"),
        ("valid_name", "<script>@example.com", "email"),
    ] {
        let response = app
            .post_json(
                REGISTER,
                &json!({"username": username, "email": email, "password": STRONG_PASSWORD}),
            )
            .await;
        assert_eq!(response.status, 422, "{username} {email}");
        let body = response.json();
        assert_eq!(body["errors"][0]["field"], field);
        let text = String::from_utf8_lossy(&response.body);
        assert!(
            !text.contains("script") && !text.contains("xxxxxxxx"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn each_weak_password_is_refused_naming_its_rule() {
    let app = TestApp::spawn().await;
    for (password, rule) in [
        ("Ab1!", "at least 8"),
        ("abcdefgh1!", "uppercase"),
        ("ABCDEFGH1!", "lowercase"),
        ("Abcdefgh!!", "digit"),
        ("Abcdefgh12", "special"),
        ("P@ssw0rd", "common"),
        ("Password1!", "common"),
        ("pASSWORD123!", "common"),
    ] {
        let response = app
            .post_json(
                REGISTER,
                &json!({"username": "bob", "email": "bob@example.com", "password": password}),
            )
            .await;
        assert_eq!(response.status, 400, "{password}");
        let detail = response.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(rule), "{password}: {detail}");
        assert!(!detail.contains(password));
    }
}

#[tokio::test]
async fn a_huge_password_is_refused_without_hashing() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4 * 1024 * 1024).await;
    let huge = format!("Aa1!{}", "x".repeat(1024 * 1024));
    let response = app
        .post_json(
            REGISTER,
            &json!({"username": "bob", "email": "bob@example.com", "password": huge}),
        )
        .await;
    assert_eq!(response.status, 400);
    assert!(
        response.json()["detail"]
            .as_str()
            .unwrap()
            .contains("at most 128")
    );
    // With the default limit the body itself is refused.
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            REGISTER,
            &json!({"username": "bob", "email": "bob@example.com", "password": huge}),
        )
        .await;
    assert_eq!(response.status, 413);
}

#[tokio::test]
async fn full_name_loses_bidi_overrides_and_zero_width_characters() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            REGISTER,
            &json!({"username": "mallory", "email": "mallory@example.com",
                    "password": STRONG_PASSWORD,
                    "full_name": "Mal\u{202E}lory\u{200B} \u{2066}Admin\u{2069}\u{FEFF}"}),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.json()["full_name"], "Mallory Admin");
}
