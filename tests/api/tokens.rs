//! Access-token verification at the HTTP boundary: forged, malformed and
//! mis-scoped tokens all get the same 401, and a token only counts when it
//! came from the `Authorization` header. Every forgery that is correctly
//! signed is paired with a control (the same token with the one field put
//! back) that the server accepts, so each test proves which field is refused.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::db;
use crate::helpers::{TestApp, TestResponse, b64url, b64url_decode};

const ME: &str = "/api/v1/users/me";
const ACCESS_TYP: &str = "at+jwt";
const INVALID_DETAIL: &str = "Invalid or expired token";

fn b64url_json(value: &Value) -> String {
    b64url(&serde_json::to_vec(value).unwrap())
}

/// The JSON of one dot-separated part of a genuine token.
fn part_of(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&b64url_decode(part)).unwrap()
}

fn claims_of(token: &str) -> Value {
    part_of(token, 1)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A token signed by `jsonwebtoken` itself with `key`.
fn forge(key: &[u8], typ: &str, alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

/// A token whose header is written by hand, HMAC-SHA256-signed with `key`.
fn forge_raw(header: &Value, claims: &Value, key: &[u8]) -> String {
    let message = format!("{}.{}", b64url_json(header), b64url_json(claims));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

/// `header.payload.` with no signature at all.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", b64url_json(header), b64url_json(claims))
}

/// `claims` with `field` set to `value`.
fn with(claims: &Value, field: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    claims[field] = value;
    claims
}

/// `claims` without `field`.
fn without(claims: &Value, field: &str) -> Value {
    let mut claims = claims.clone();
    claims.as_object_mut().unwrap().remove(field).unwrap();
    claims
}

/// 401, `WWW-Authenticate: Bearer`, problem+json with `code`; an invalid token
/// is never told apart from another (one detail for every reason).
fn assert_unauthorized(response: &TestResponse, code: &str, case: &str) {
    assert_eq!(response.status, 401, "{case}: {:?}", response.body);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer"),
        "{case}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{case}"
    );
    let body = response.json();
    assert_eq!(body["status"], 401, "{case}: {body}");
    assert_eq!(body["code"], code, "{case}: {body}");
    if code == "invalid_token" {
        assert_eq!(body["detail"], INVALID_DETAIL, "{case}: {body}");
    }
}

async fn assert_token_rejected(app: &TestApp, token: &str, case: &str) {
    let response = app.get_with_token(ME, token).await;
    assert_unauthorized(&response, "invalid_token", case);
}

async fn assert_token_accepted(app: &TestApp, token: &str, case: &str) {
    let response = app.get_with_token(ME, token).await;
    assert_eq!(response.status, 200, "{case}: {:?}", response.body);
}

/// A fresh app, a signed-in user, that user's access token and its claims.
async fn genuine() -> (TestApp, String, Value) {
    let app = TestApp::spawn().await;
    let token = app.signed_in("alice").await.access_token();
    let claims = claims_of(&token);
    (app, token, claims)
}

/// Signs `bad` and `good` (which differ in one field or in the header) with
/// the server's own key: `bad` is refused, `good` is accepted.
async fn refused_only_for_the_change(
    app: &TestApp,
    bad: (&str, Algorithm, &Value),
    good: (&str, Algorithm, &Value),
    case: &str,
) {
    let key = app.jwt_key();
    let (typ, alg, claims) = bad;
    assert_token_rejected(app, &forge(&key, typ, alg, claims), case).await;
    let (typ, alg, claims) = good;
    let control = format!("{case} (control)");
    assert_token_accepted(app, &forge(&key, typ, alg, claims), &control).await;
}

#[test]
fn base64url_helper_matches_rfc_4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(b64url(plain.as_bytes()), encoded);
        assert_eq!(b64url_decode(encoded), plain.as_bytes());
    }
    assert_eq!(b64url(&[0xfb, 0xff, 0xbf]), "-_-_", "URL-safe alphabet");
    assert_eq!(b64url_decode("-_-_"), [0xfb, 0xff, 0xbf]);
}

#[tokio::test]
async fn the_genuine_access_token_is_accepted() {
    let (app, token, claims) = genuine().await;
    let response = app.get_with_token(ME, &token).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.json()["id"], claims["sub"]);
    assert_eq!(part_of(&token, 0), json!({"typ": "at+jwt", "alg": "HS256"}));
    assert_eq!(claims["type"], "access");
    assert_eq!(
        (&claims["iss"], &claims["aud"]),
        (&json!("secure-api"), &json!("secure-api"))
    );
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    let lower = format!("bearer {token}");
    let response = app
        .request("GET", ME, &[("authorization", &lower)], None)
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}

#[tokio::test]
async fn malformed_tokens_and_other_schemes_get_401() {
    let (app, token, _) = genuine().await;
    let (header_part, payload_part, _) = {
        let mut parts = token.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let signature_removed = format!("{header_part}.{payload_part}.");
    let two_parts = format!("{header_part}.{payload_part}");
    let extra_part = format!("{token}.{payload_part}");
    for malformed in [
        "not-a-jwt",
        "eyJ.eyJ.invalid",
        "null",
        "a.b.c.d",
        "..",
        signature_removed.as_str(),
        two_parts.as_str(),
        extra_part.as_str(),
    ] {
        assert_token_rejected(&app, malformed, malformed).await;
    }
    for authorization in [
        "Bearer ",
        "Bearer",
        "Bearer    ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        token.as_str(),
    ] {
        let response = app
            .request("GET", ME, &[("authorization", authorization)], None)
            .await;
        assert_unauthorized(&response, "invalid_token", authorization);
    }
    let response = app.get(ME).await;
    assert_unauthorized(&response, "not_authenticated", "no Authorization header");
}

#[tokio::test]
async fn alg_none_and_stripped_signatures_get_401() {
    let (app, _, claims) = genuine().await;
    for header in [
        json!({"alg": "none", "typ": ACCESS_TYP}),
        json!({"alg": "None", "typ": ACCESS_TYP}),
        json!({"alg": "NONE", "typ": ACCESS_TYP}),
        json!({"alg": "HS256", "typ": ACCESS_TYP}),
        json!({"alg": "HS256"}),
    ] {
        let token = unsigned(&header, &claims);
        assert_token_rejected(&app, &token, &header.to_string()).await;
        // Without even the trailing dot.
        let token = token.trim_end_matches('.');
        assert_token_rejected(&app, token, &format!("{header} (2 parts)")).await;
    }
}

#[tokio::test]
async fn a_token_signed_with_another_key_gets_401() {
    let (app, _, claims) = genuine().await;
    let mut attacker_key = app.jwt_key();
    assert_eq!(attacker_key.len(), 32);
    attacker_key[0] ^= 1;
    let forged = forge(&attacker_key, ACCESS_TYP, Algorithm::HS256, &claims);
    assert_token_rejected(&app, &forged, "key differing in one bit").await;
    let forged = forge(&[0x42; 32], ACCESS_TYP, Algorithm::HS256, &claims);
    assert_token_rejected(&app, &forged, "unrelated 32-byte key").await;
    let forged = forge(b"", ACCESS_TYP, Algorithm::HS256, &claims);
    assert_token_rejected(&app, &forged, "empty key").await;
    let genuine = forge(&app.jwt_key(), ACCESS_TYP, Algorithm::HS256, &claims);
    assert_token_accepted(&app, &genuine, "the server's key").await;
}

#[tokio::test]
async fn a_role_changed_to_admin_under_the_original_signature_gets_401() {
    let (app, token, claims) = genuine().await;
    assert_eq!(claims["role"], "user");
    let mut parts = token.split('.');
    let (header_part, _, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let admin = b64url_json(&with(&claims, "role", json!("admin")));
    let tampered = format!("{header_part}.{admin}.{signature}");
    assert_token_rejected(&app, &tampered, "role admin, old signature").await;
    // Re-encoding the unchanged claims under the old signature is refused
    // too (the signature covers the exact bytes), so the check is byte-wise.
    let reencoded = format!(
        "{header_part}.{}.{signature}",
        b64url_json(&with(&claims, "role", json!("user")))
    );
    if reencoded != token {
        assert_token_rejected(&app, &reencoded, "same claims, other bytes").await;
    }
    assert_token_accepted(&app, &token, "the untouched token").await;
}

#[tokio::test]
async fn a_refresh_token_is_not_an_access_token() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("alice").await;
    let refresh = login.refresh_cookie().unwrap();
    assert_eq!(part_of(&refresh, 0)["typ"], "rt+jwt");
    assert_token_rejected(&app, &refresh, "refresh token as Bearer").await;
    assert_token_accepted(&app, &login.access_token(), "the access token").await;
}

#[tokio::test]
async fn a_token_without_exp_gets_401() {
    let (app, _, claims) = genuine().await;
    let bad = without(&claims, "exp");
    let alg = Algorithm::HS256;
    refused_only_for_the_change(
        &app,
        (ACCESS_TYP, alg, &bad),
        (ACCESS_TYP, alg, &claims),
        "no exp",
    )
    .await;
}

#[tokio::test]
async fn expired_token_gives_401() {
    let (app, _, claims) = genuine().await;
    let alg = Algorithm::HS256;
    for (iat, exp) in [(now() - 4500, now() - 3600), (now() - 1020, now() - 120)] {
        let bad = with(&with(&claims, "exp", json!(exp)), "iat", json!(iat));
        refused_only_for_the_change(
            &app,
            (ACCESS_TYP, alg, &bad),
            (ACCESS_TYP, alg, &claims),
            &format!("exp = now - {}", now() - exp),
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_for_another_audience_gets_401() {
    let (app, _, claims) = genuine().await;
    let alg = Algorithm::HS256;
    for aud in [json!("someone-else"), json!(["someone-else"]), json!("")] {
        let bad = with(&claims, "aud", aud.clone());
        refused_only_for_the_change(
            &app,
            (ACCESS_TYP, alg, &bad),
            (ACCESS_TYP, alg, &claims),
            &format!("aud {aud}"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_from_another_issuer_gets_401() {
    let (app, _, claims) = genuine().await;
    let alg = Algorithm::HS256;
    for iss in ["someone-else", "Secure-API", ""] {
        let bad = with(&claims, "iss", json!(iss));
        refused_only_for_the_change(
            &app,
            (ACCESS_TYP, alg, &bad),
            (ACCESS_TYP, alg, &claims),
            &format!("iss {iss:?}"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_header_typ_other_than_at_jwt_gets_401() {
    let (app, _, claims) = genuine().await;
    let alg = Algorithm::HS256;
    for typ in ["JWT", "rt+jwt", "AT+JWT", ""] {
        refused_only_for_the_change(
            &app,
            (typ, alg, &claims),
            (ACCESS_TYP, alg, &claims),
            &format!("typ {typ:?}"),
        )
        .await;
    }
    // No `typ` at all.
    let key = app.jwt_key();
    let header = Header::new(alg);
    let mut header = serde_json::to_value(header).unwrap();
    header.as_object_mut().unwrap().remove("typ");
    assert_token_rejected(&app, &forge_raw(&header, &claims, &key), "no typ").await;
}

#[tokio::test]
async fn a_type_claim_of_refresh_gets_401_even_with_typ_at_jwt() {
    let (app, _, claims) = genuine().await;
    let alg = Algorithm::HS256;
    for kind in [json!("refresh"), json!("Access"), json!("")] {
        let bad = with(&claims, "type", kind.clone());
        refused_only_for_the_change(
            &app,
            (ACCESS_TYP, alg, &bad),
            (ACCESS_TYP, alg, &claims),
            &format!("type {kind}"),
        )
        .await;
    }
    let bad = without(&claims, "type");
    refused_only_for_the_change(
        &app,
        (ACCESS_TYP, alg, &bad),
        (ACCESS_TYP, alg, &claims),
        "no type claim",
    )
    .await;
}

#[tokio::test]
async fn a_token_version_other_than_the_users_gets_401() {
    let (app, _, claims) = genuine().await;
    let ver = claims["ver"].as_i64().unwrap();
    let alg = Algorithm::HS256;
    for other in [ver + 1, ver - 1] {
        let bad = with(&claims, "ver", json!(other));
        refused_only_for_the_change(
            &app,
            (ACCESS_TYP, alg, &bad),
            (ACCESS_TYP, alg, &claims),
            &format!("ver {other} (real {ver})"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_for_a_user_that_does_not_exist_gets_401() {
    let (app, _, claims) = genuine().await;
    let sub = claims["sub"].as_str().unwrap();
    let random = uuid::Uuid::new_v4();
    // Same textual form as the server's own ids.
    let stranger = if sub.contains('-') {
        random.hyphenated().to_string()
    } else {
        random.simple().to_string()
    };
    assert_ne!(stranger, sub);
    let alg = Algorithm::HS256;
    for other in [stranger.as_str(), "", "' OR '1'='1"] {
        let bad = with(&claims, "sub", json!(other));
        refused_only_for_the_change(
            &app,
            (ACCESS_TYP, alg, &bad),
            (ACCESS_TYP, alg, &claims),
            &format!("sub {other:?}"),
        )
        .await;
    }
}

#[tokio::test]
async fn another_hmac_algorithm_with_the_server_key_gets_401() {
    let (app, _, claims) = genuine().await;
    for alg in [Algorithm::HS512, Algorithm::HS384] {
        refused_only_for_the_change(
            &app,
            (ACCESS_TYP, alg, &claims),
            (ACCESS_TYP, Algorithm::HS256, &claims),
            &format!("{alg:?}"),
        )
        .await;
    }
}

#[tokio::test]
async fn key_pointers_in_the_header_are_never_followed() {
    let (app, _, claims) = genuine().await;
    let attacker_key = [0x5a_u8; 32];
    let jwk = json!({"kty": "oct", "k": b64url(&attacker_key), "alg": "HS256"});
    let jku = json!("https://attacker.example/jwks.json");
    let x5u = json!("https://attacker.example/cert.pem");
    let base = json!({"alg": "HS256", "typ": ACCESS_TYP});
    let headers = [
        with(&base, "jwk", jwk.clone()),
        with(&base, "jku", jku.clone()),
        with(&base, "x5u", x5u.clone()),
        with(&with(&with(&base, "jwk", jwk), "jku", jku), "x5u", x5u),
    ];
    for header in &headers {
        let forged = forge_raw(header, &claims, &attacker_key);
        assert_token_rejected(&app, &forged, &format!("attacker key, {header}")).await;
    }
    // The same headers are well-formed and harmless: signed with the
    // server's key they pass, so only the attacker's signature was refused.
    let key = app.jwt_key();
    for header in &headers {
        let token = forge_raw(header, &claims, &key);
        assert_token_accepted(&app, &token, &format!("server key, {header}")).await;
    }
}

#[tokio::test]
async fn an_access_token_in_the_url_is_ignored() {
    let (app, token, _) = genuine().await;
    for query in ["access_token", "token", "bearer"] {
        let path = format!("{ME}?{query}={token}");
        let response = app.get(&path).await;
        assert_unauthorized(&response, "not_authenticated", &path);
        // The query string does not stop the route from answering.
        let response = app.get_with_token(&path, &token).await;
        assert_eq!(response.status, 200, "{path}: {:?}", response.body);
    }
}

#[tokio::test]
async fn rejected_tokens_are_audited_once_per_client_per_minute() {
    let app = TestApp::spawn().await;
    let login = app.signed_in("auditee").await;
    let token = login.access_token();
    assert_eq!(
        app.post_with_token("/api/v1/auth/logout-all", &token)
            .await
            .status,
        200
    );
    for _ in 0..5 {
        assert_eq!(app.get_with_token(ME, &token).await.status, 401);
        assert_eq!(
            app.get_with_token(ME, "garbage.token.here").await.status,
            401
        );
    }
    let rows = db::audit_rows_with_reason(&app, "token_rejected");
    assert_eq!(rows.len(), 1, "one event per client per minute: {rows:?}");
    let (user_id, client_ip, reason) = &rows[0];
    assert_eq!(reason, "revoked");
    assert_eq!(client_ip, "127.0.0.1");
    assert_eq!(
        user_id.as_deref(),
        login_user_id(&app, &token).as_deref(),
        "a token we signed names its user"
    );
    // No credentials at all is not a rejected token.
    assert_eq!(app.get(ME).await.status, 401);
    assert_eq!(db::audit_count(&app, "token_rejected"), 1);
}

/// The `sub` claim of an access token.
fn login_user_id(_app: &TestApp, token: &str) -> Option<String> {
    let claims: Value = serde_json::from_slice(&b64url_decode(token.split('.').nth(1)?)).ok()?;
    claims["sub"].as_str().map(str::to_owned)
}
