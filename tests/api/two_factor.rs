//! Two-factor authentication, black-box: TOTP codes are computed here from
//! the secret the server hands out, with an HOTP written independently of
//! the server's; time is the injected clock.

use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;

use secure_api::clock::Clock as _;

use crate::helpers::{
    ManualClock, STRONG_PASSWORD, TestApp, TestResponse, assert_problem, db, run_cli, send_http1,
    start_server, tls_connect,
};

const STATUS: &str = "/api/v1/auth/2fa/status";
const SETUP: &str = "/api/v1/auth/2fa/setup";
const VERIFY: &str = "/api/v1/auth/2fa/verify";
const DISABLE: &str = "/api/v1/auth/2fa/disable";
const BACKUP_CODES: &str = "/api/v1/auth/2fa/backup-codes";
const WRONG_PASSWORD: &str = "Not-The-Password-9";

/// RFC 6238 with HMAC-SHA1, 6 digits, 30 s: what an authenticator app shows.
fn totp(secret_base32: &str, at: OffsetDateTime) -> String {
    use aws_lc_rs::hmac;
    let key = data_encoding::BASE32_NOPAD
        .decode(secret_base32.as_bytes())
        .unwrap();
    let counter = (at.unix_timestamp() / 30) as u64;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let h = mac.as_ref();
    let o = usize::from(h[19] & 0x0f);
    let value = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]) % 1_000_000;
    format!("{value:06}")
}

/// A code that is not the current one (nor one step either side).
fn wrong_code(secret: &str, at: OffsetDateTime) -> String {
    let near: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|s| totp(secret, at + time::Duration::seconds(*s)))
        .collect();
    (0..)
        .map(|n| format!("{:06}", 111_111 * (n % 9 + 1)))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The SVG rendered to pixels and read by a QR decoder, as a phone would.
fn decode_qr(svg: &str) -> String {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()).unwrap();
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let (width, height) = (size.width() as usize, size.height() as usize);
    let pixels = pixmap.data();
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        let at = (y * width + x) * 4;
        if pixels[at + 3] < 128 {
            255
        } else {
            pixels[at]
        }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

struct TwoFactorApp {
    app: TestApp,
    clock: Arc<ManualClock>,
}

impl TwoFactorApp {
    async fn spawn() -> Self {
        Self::spawn_with_attempts(5).await
    }

    async fn spawn_with_attempts(max_login_attempts: u32) -> Self {
        let clock = ManualClock::new();
        let app_clock = Arc::clone(&clock);
        let app = TestApp::spawn_with(move |config| {
            config.clock = app_clock;
            config.settings.max_login_attempts = max_login_attempts;
        })
        .await;
        Self { app, clock }
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The next 30-second step: a code not used yet.
    fn next_step(&self) {
        self.clock.advance(time::Duration::seconds(30));
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.app.call("POST", path, Some(token), Some(&body)).await
    }

    async fn login(&self, username: &str, extra: Value) -> TestResponse {
        let mut body =
            json!({"email": format!("{username}@example.com"), "password": STRONG_PASSWORD});
        if let (Some(fields), Value::Object(more)) = (body.as_object_mut(), extra) {
            fields.extend(more);
        }
        self.app.post_json("/api/v1/auth/login", &body).await
    }

    /// Registers `username`, turns 2FA on, and returns the secret, the
    /// backup codes and the access token of the one session left.
    async fn enabled(&self, username: &str) -> (String, Vec<String>, String) {
        let token = self.app.signed_in(username).await.access_token();
        let setup = self
            .post(SETUP, &token, json!({"password": STRONG_PASSWORD}))
            .await;
        assert_eq!(setup.status, 200, "{:?}", setup.body);
        let secret = setup.json()["secret"].as_str().unwrap().to_owned();
        let code = totp(&secret, self.now());
        let verified = self.post(VERIFY, &token, json!({"code": code})).await;
        assert_eq!(verified.status, 200, "{:?}", verified.body);
        let codes = verified.json()["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        // The code of verify is spent: later logins use later steps.
        self.next_step();
        (secret, codes, verified.access_token())
    }
}

#[tokio::test]
async fn setup_verify_login_replay_backup_codes_regenerate_and_disable() {
    let t = TwoFactorApp::spawn().await;
    let token = t.app.signed_in("ann").await.access_token();
    let status = t.app.get_with_token(STATUS, &token).await;
    assert_eq!(
        status.json(),
        json!({"enabled": false, "backup_codes_remaining": 0})
    );

    // Wrong password; nothing to verify yet.
    let refused = t
        .post(SETUP, &token, json!({"password": WRONG_PASSWORD}))
        .await;
    assert_problem(&refused, 400, "invalid_password");
    assert_eq!(refused.json()["detail"], "Current password is incorrect");
    assert_problem(
        &t.post(VERIFY, &token, json!({"code": "123456"})).await,
        409,
        "no_pending_setup",
    );

    let setup = t
        .post(SETUP, &token, json!({"password": STRONG_PASSWORD}))
        .await;
    assert_eq!(setup.status, 200);
    let setup = setup.json();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap()
            .len(),
        20
    );
    let uri = setup["otpauth_uri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/secure-api:ann?secret={secret}&issuer=secure-api&algorithm=SHA1&digits=6&period=30"
        )
    );
    assert_eq!(decode_qr(setup["qr_svg"].as_str().unwrap()), uri);

    // A pending setup changes nothing for login.
    assert_eq!(t.login("ann", json!({})).await.status, 200);
    assert_problem(
        &t.post(
            VERIFY,
            &token,
            json!({"code": wrong_code(&secret, t.now())}),
        )
        .await,
        400,
        "invalid_code",
    );

    let verified = t
        .post(VERIFY, &token, json!({"code": totp(&secret, t.now())}))
        .await;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    let body = verified.json();
    assert_eq!(body["enabled"], true);
    assert_eq!(body["token_type"], "bearer");
    let codes: Vec<String> = body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(verified.refresh_cookie().is_some());
    // Every other session ended; the caller's new one works.
    assert_eq!(
        t.app
            .get_with_token("/api/v1/users/me", &token)
            .await
            .status,
        401
    );
    let token = verified.access_token();
    let me = t.app.get_with_token("/api/v1/users/me", &token).await;
    assert_eq!(me.json()["two_factor_enabled"], true);
    let status = t.app.get_with_token(STATUS, &token).await;
    assert_eq!(
        status.json(),
        json!({"enabled": true, "backup_codes_remaining": 10})
    );
    assert_problem(
        &t.post(SETUP, &token, json!({"password": STRONG_PASSWORD}))
            .await,
        409,
        "two_factor_enabled",
    );

    // Right password, no code: 401, neither a failure nor a success.
    assert_eq!(db::failed_logins_of(&t.app, "ann"), 0);
    let bad = t
        .app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ann@example.com", "password": WRONG_PASSWORD}),
        )
        .await;
    assert_problem(&bad, 401, "invalid_credentials");
    assert_eq!(db::failed_logins_of(&t.app, "ann"), 1);
    let no_code = t.login("ann", json!({})).await;
    assert_problem(&no_code, 401, "two_factor_required");
    assert_eq!(no_code.json()["detail"], "Two-factor code required");
    assert!(no_code.set_cookie().is_none());
    assert_eq!(
        db::failed_logins_of(&t.app, "ann"),
        1,
        "not counted, not reset"
    );
    // A wrong password with a right code: the one generic 401.
    let with_code = t
        .app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ann@example.com", "password": WRONG_PASSWORD,
                    "totp_code": totp(&secret, t.now() + time::Duration::seconds(30))}),
        )
        .await;
    assert_problem(&with_code, 401, "invalid_credentials");

    // The verify code's step is spent; the next step's code logs in once.
    t.next_step();
    let code = totp(&secret, t.now());
    assert_eq!(t.login("ann", json!({"totp_code": code})).await.status, 200);
    assert_eq!(
        db::failed_logins_of(&t.app, "ann"),
        0,
        "a success resets the count"
    );
    let replay = t.login("ann", json!({"totp_code": code})).await;
    assert_problem(&replay, 401, "invalid_two_factor_code");
    assert_eq!(
        db::failed_logins_of(&t.app, "ann"),
        1,
        "a wrong code is a failure"
    );
    // An older step than the last accepted one is refused too.
    let older = totp(&secret, t.now() - time::Duration::seconds(30));
    assert_problem(
        &t.login("ann", json!({"totp_code": older})).await,
        401,
        "invalid_two_factor_code",
    );
    let wrong = wrong_code(&secret, t.now());
    assert_problem(
        &t.login("ann", json!({"totp_code": wrong})).await,
        401,
        "invalid_two_factor_code",
    );
    assert_eq!(db::failed_logins_of(&t.app, "ann"), 3);

    // Backup codes: once each, case and hyphen free.
    assert_eq!(
        t.login("ann", json!({"backup_code": codes[0]}))
            .await
            .status,
        200
    );
    assert_problem(
        &t.login("ann", json!({"backup_code": codes[0]})).await,
        401,
        "invalid_two_factor_code",
    );
    let typed = codes[1].replace('-', "").to_uppercase();
    let second = t.login("ann", json!({"backup_code": typed})).await;
    assert_eq!(second.status, 200);
    let token = second.access_token();
    let status = t.app.get_with_token(STATUS, &token).await;
    assert_eq!(status.json()["backup_codes_remaining"], 8);

    // New backup codes need the password and a code; the old ones die.
    t.next_step();
    assert_problem(
        &t.post(
            BACKUP_CODES,
            &token,
            json!({"password": WRONG_PASSWORD, "code": totp(&secret, t.now())}),
        )
        .await,
        400,
        "invalid_password",
    );
    let renewed = t
        .post(
            BACKUP_CODES,
            &token,
            json!({"password": STRONG_PASSWORD, "code": totp(&secret, t.now())}),
        )
        .await;
    assert_eq!(renewed.status, 200, "{:?}", renewed.body);
    let new_codes: Vec<String> = renewed.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new_codes.len(), 10);
    assert_problem(
        &t.login("ann", json!({"backup_code": codes[2]})).await,
        401,
        "invalid_two_factor_code",
    );
    assert_eq!(
        t.login("ann", json!({"backup_code": new_codes[0]}))
            .await
            .status,
        200
    );

    // Off again: password and a code (a backup code will do).
    assert_problem(
        &t.post(
            DISABLE,
            &token,
            json!({"password": STRONG_PASSWORD, "code": wrong_code(&secret, t.now())}),
        )
        .await,
        400,
        "invalid_code",
    );
    let disabled = t
        .post(
            DISABLE,
            &token,
            json!({"password": STRONG_PASSWORD, "code": new_codes[1]}),
        )
        .await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    assert_eq!(disabled.json()["enabled"], false);
    assert!(disabled.json()["access_token"].is_string());
    assert_eq!(
        t.app
            .get_with_token("/api/v1/users/me", &token)
            .await
            .status,
        401
    );
    let token = disabled.access_token();
    assert_eq!(
        t.app.get_with_token(STATUS, &token).await.json(),
        json!({"enabled": false, "backup_codes_remaining": 0})
    );
    assert_problem(
        &t.post(
            DISABLE,
            &token,
            json!({"password": STRONG_PASSWORD, "code": "123456"}),
        )
        .await,
        409,
        "two_factor_not_enabled",
    );
    assert_eq!(t.login("ann", json!({})).await.status, 200);

    for event in [
        "two_factor_enabled",
        "two_factor_failed",
        "backup_code_used",
        "backup_codes_regenerated",
        "two_factor_disabled",
    ] {
        assert!(db::audit_count(&t.app, event) >= 1, "{event}");
    }
    assert_eq!(db::audit_count(&t.app, "backup_code_used"), 4);
}

#[tokio::test]
async fn wrong_codes_after_the_right_password_lock_the_account() {
    let t = TwoFactorApp::spawn_with_attempts(3).await;
    let (secret, _, _) = t.enabled("ann").await;
    for _ in 0..3 {
        let wrong = wrong_code(&secret, t.now());
        assert_problem(
            &t.login("ann", json!({"totp_code": wrong})).await,
            401,
            "invalid_two_factor_code",
        );
    }
    assert_eq!(db::audit_count(&t.app, "lockout"), 1);
    // Locked: even the right code gets the generic 401, and reveals nothing.
    let right = t
        .login("ann", json!({"totp_code": totp(&secret, t.now())}))
        .await;
    assert_problem(&right, 401, "invalid_credentials");
    let no_code = t.login("ann", json!({})).await;
    assert_problem(&no_code, 401, "invalid_credentials");
}

#[tokio::test]
async fn one_code_wins_once_among_concurrent_logins() {
    let t = TwoFactorApp::spawn().await;
    let (secret, codes, _) = t.enabled("ann").await;
    let code = totp(&secret, t.now());
    let with = json!({"totp_code": code});
    let (a, b) = tokio::join!(t.login("ann", with.clone()), t.login("ann", with.clone()));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401], "one TOTP code, two logins");

    let with = json!({"backup_code": codes[0]});
    let (a, b) = tokio::join!(t.login("ann", with.clone()), t.login("ann", with.clone()));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401], "one backup code, two logins");
}

#[tokio::test]
async fn a_secret_copied_to_another_account_does_not_decrypt() {
    let t = TwoFactorApp::spawn().await;
    let (ann_secret, _, _) = t.enabled("ann").await;
    let (_, _, _) = t.enabled("bob").await;
    db::copy_totp_secret(&t.app, "ann", "bob");
    t.next_step();
    let stolen = t
        .login("bob", json!({"totp_code": totp(&ann_secret, t.now())}))
        .await;
    assert_eq!(stolen.status, 500, "{:?}", stolen.body);
    assert!(stolen.json().get("access_token").is_none());
    // Ann's own secret still works for ann.
    let own = t
        .login("ann", json!({"totp_code": totp(&ann_secret, t.now())}))
        .await;
    assert_eq!(own.status, 200);
}

#[tokio::test]
async fn an_admin_or_moderator_resets_someone_elses_second_factor() {
    let t = TwoFactorApp::spawn().await;
    let admin = t.app.account("boss", "admin").await;
    let moderator = t.app.account("modest", "moderator").await;
    let (_, _, user_token) = t.enabled("ann").await;
    let ann_id = t
        .app
        .get_with_token("/api/v1/users/me", &user_token)
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/users/{ann_id}/2fa/reset");

    // Nobody resets their own through the admin route.
    let admin_path = format!("/api/v1/users/{}/2fa/reset", admin.id);
    let own = t
        .app
        .call("POST", &admin_path, Some(&admin.token), None)
        .await;
    assert_problem(&own, 400, "self_protection");
    // A moderator may not touch an admin.
    let upward = t
        .app
        .call("POST", &admin_path, Some(&moderator.token), None)
        .await;
    assert_problem(&upward, 403, "forbidden");

    let reset = t
        .app
        .call("POST", &path, Some(&moderator.token), None)
        .await;
    assert_eq!(reset.status, 200, "{:?}", reset.body);
    assert_eq!(reset.json()["two_factor_enabled"], false);
    assert_eq!(
        t.app
            .get_with_token("/api/v1/users/me", &user_token)
            .await
            .status,
        401,
        "sessions ended"
    );
    assert_eq!(
        t.login("ann", json!({})).await.status,
        200,
        "no code needed any more"
    );
    let rows = db::audit_rows(&t.app);
    let (_, user, _, _, detail) = rows.iter().find(|r| r.0 == "two_factor_reset").unwrap();
    assert_eq!(user.as_deref(), Some(ann_id.as_str()));
    let detail: Value = serde_json::from_str(detail).unwrap();
    assert_eq!(detail["actor_id"], moderator.id);
    assert_eq!(
        t.app
            .call(
                "POST",
                "/api/v1/users/00000000-0000-4000-8000-000000000000/2fa/reset",
                Some(&admin.token),
                None
            )
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn reset_2fa_on_the_command_line_turns_it_off_and_ends_the_sessions() {
    let t = TwoFactorApp::spawn().await;
    let (_, _, token) = t.enabled("ann").await;
    let data = t.app.data_dir();
    let data_arg = data.to_str().unwrap();
    let output = run_cli(
        &[
            "reset-2fa",
            "--data-dir",
            data_arg,
            "--email",
            "ann@example.com",
        ],
        None,
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("turned off for ann"));
    assert_eq!(t.login("ann", json!({})).await.status, 200);
    // The server notices the other process's write and drops what it cached.
    crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        async || t.app.get_with_token("/api/v1/users/me", &token).await,
        |r| r.status == 401,
    )
    .await;
    let rows = db::audit_rows(&t.app);
    let (_, _, ip, _, detail) = rows.iter().find(|r| r.0 == "two_factor_reset").unwrap();
    assert!(ip.is_none());
    assert_eq!(
        serde_json::from_str::<Value>(detail).unwrap(),
        json!({"via": "command_line"})
    );

    let unknown = run_cli(
        &[
            "reset-2fa",
            "--data-dir",
            data_arg,
            "--email",
            "nobody@example.com",
        ],
        None,
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no account with that email"));
}

/// Calls a server process over TLS.
async fn call(
    server: &crate::helpers::ServerProcess,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> TestResponse {
    let bytes = body.to_string();
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let stream = tls_connect(server.addr, Arc::clone(tls)).await;
    send_http1(stream, "POST", path, &headers, Some(bytes.as_bytes())).await
}

#[tokio::test]
async fn secrets_stay_sealed_on_disk_out_of_logs_and_tied_to_their_data_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, &[]).await;
    let tls = crate::helpers::client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    let register =
        json!({"username": "ann", "email": "ann@example.com", "password": STRONG_PASSWORD});
    assert_eq!(
        call(&server, &tls, "/api/v1/auth/register", None, register)
            .await
            .status,
        201
    );
    let login = json!({"email": "ann@example.com", "password": STRONG_PASSWORD});
    let token = call(&server, &tls, "/api/v1/auth/login", None, login.clone())
        .await
        .access_token();
    let setup = call(
        &server,
        &tls,
        SETUP,
        Some(&token),
        json!({"password": STRONG_PASSWORD}),
    )
    .await;
    let secret = setup.json()["secret"].as_str().unwrap().to_owned();
    let code = totp(&secret, OffsetDateTime::now_utc());
    let verified = call(&server, &tls, VERIFY, Some(&token), json!({"code": code})).await;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    let codes: Vec<String> = verified.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let mut with_backup = login.clone();
    with_backup["backup_code"] = json!(codes[0]);
    assert_eq!(
        call(&server, &tls, "/api/v1/auth/login", None, with_backup)
            .await
            .status,
        200
    );
    let mut with_wrong = login.clone();
    with_wrong["totp_code"] = json!(wrong_code(&secret, OffsetDateTime::now_utc()));
    assert_eq!(
        call(&server, &tls, "/api/v1/auth/login", None, with_wrong)
            .await
            .status,
        401
    );

    let backup = dir.path().join("copy.db");
    let copied = run_cli(
        &[
            "backup",
            "--data-dir",
            data.to_str().unwrap(),
            backup.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(copied.status.success(), "{copied:?}");
    let (status, stdout, stderr) = server.stop_with_logs().await;
    assert!(status.success());

    // Neither the secret (base32 or raw), nor a code, anywhere.
    let raw_secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let on_disk = [db::database_bytes(&data), std::fs::read(&backup).unwrap()];
    for bytes in &on_disk {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert!(
            !bytes
                .windows(raw_secret.len())
                .any(|w| w == raw_secret.as_slice())
        );
        for backup_code in &codes {
            for form in [backup_code.clone(), backup_code.replace('-', "")] {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{form}"
                );
            }
        }
    }
    let logs = format!("{stdout}\n{stderr}");
    assert!(
        logs.contains("two_factor_enabled"),
        "the audit lines are there"
    );
    // (A six-digit TOTP code could match a timestamp by chance; the secret
    // and the backup codes cannot.)
    for needle in std::iter::once(&secret).chain(&codes) {
        assert!(!logs.contains(needle.as_str()), "{needle} in the logs");
        assert!(
            !logs.contains(&needle.replace('-', "")),
            "{needle} in the logs"
        );
    }

    // Another data key: refused at start-up while sealed secrets exist.
    let key = data.join("data-key.key");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let refused = run_cli(&crate::helpers::serve_args(&data, &[]), None).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("data key"), "{message}");
    assert!(message.contains("reset-2fa"), "{message}");
    // The original key starts it again.
    std::fs::write(&key, &original).unwrap();
    let again = start_server(&data, &[]).await;
    let (status, _) = again.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn init_secrets_makes_a_data_key_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let output = run_cli(&["init-secrets", "--dir", secrets.to_str().unwrap()], None).await;
    assert!(output.status.success(), "{output:?}");
    let key = std::fs::read(secrets.join("data-key")).unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(crate::helpers::mode_of(&secrets.join("data-key")), 0o600);
    let again = run_cli(&["init-secrets", "--dir", secrets.to_str().unwrap()], None).await;
    assert!(again.status.success());
    assert_eq!(std::fs::read(secrets.join("data-key")).unwrap(), key);
}

#[tokio::test]
async fn a_data_key_file_must_hold_exactly_32_private_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("short.key");
    std::fs::write(&key, [1u8; 16]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let args = crate::helpers::serve_args(&data, &["--data-key-file", key.to_str().unwrap()]);
    let short = run_cli(&args, None).await;
    assert_eq!(short.status.code(), Some(1));
    let message = String::from_utf8_lossy(&short.stderr);
    assert!(message.contains("exactly 32 bytes"), "{message}");

    std::fs::write(&key, [1u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let open = run_cli(&args, None).await;
    assert_eq!(open.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&open.stderr).is_empty());
    assert!(
        !data.join("data-key.key").exists(),
        "a configured key is never generated"
    );
}
