//! API.md "Roles and permissions", route by route: every authenticated route
//! of the route table, called by each kind of caller (anonymous, viewer, user,
//! moderator, admin), answers 401, 403 or success exactly as the role table
//! says; a denial changes nothing and leaves a `permission_denied` audit row.
//!
//! The expectations come from API.md, written out here, never from
//! `src/domain/rbac.rs`: the test checks the server, not itself.

use std::time::Instant;

use serde_json::{Value, json};

use crate::helpers::db;
use crate::helpers::{STRONG_PASSWORD, TestApp, TestResponse};

/// What a route asks of its caller beyond being signed in.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Any authenticated account.
    Authenticated,
    /// An account whose role grants this permission (API.md names).
    Permission(&'static str),
}

use Need::{Authenticated, Permission};

/// A request body for the `n`-th row (unique names where they must be).
type BodyFn = fn(usize) -> Option<Value>;

/// The authenticated routes of `src/routes/table.rs`, one line each:
/// method, path template, what it needs, success status, a body that succeeds.
#[rustfmt::skip]
const ROUTES: &[(&str, &str, Need, u16, BodyFn)] = &[
    ("GET",    "/api/v1/users/me",                 Permission("self:read"),    200, no_body),
    ("PUT",    "/api/v1/users/me",                 Permission("self:write"),   200, profile),
    ("POST",   "/api/v1/users/me/change-password", Authenticated,              200, new_password),
    ("GET",    "/api/v1/users/me/sessions",        Authenticated,              200, no_body),
    ("DELETE", "/api/v1/users/me/sessions/{id}",   Authenticated,              200, no_body),
    ("GET",    "/api/v1/users",                    Permission("users:read"),   200, no_body),
    ("POST",   "/api/v1/users",                    Permission("users:write"),  201, new_user),
    ("GET",    "/api/v1/users/{id}",               Permission("users:read"),   200, no_body),
    ("PATCH",  "/api/v1/users/{id}",               Permission("users:write"),  200, rename),
    ("POST",   "/api/v1/users/{id}/unlock",        Permission("users:write"),  200, no_body),
    ("DELETE", "/api/v1/users/{id}",               Permission("users:delete"), 200, no_body),
    ("GET",    "/api/v1/admin/stats",              Permission("admin:read"),   200, no_body),
    ("GET",    "/api/v1/admin/config",             Permission("admin:read"),   200, no_body),
    ("POST",   "/api/v1/admin/config",             Permission("admin:write"),  200, lockout_31),
    ("GET",    "/api/v1/admin/audit",              Permission("admin:read"),   200, no_body),
    ("POST",   "/api/v1/auth/logout-all",          Authenticated,              200, no_body),
    ("GET",    "/api/v1/auth/2fa/status",          Authenticated,              200, no_body),
    ("POST",   "/api/v1/auth/2fa/setup",           Authenticated,              200, password),
    // Admitted, then refused for the account's state: nothing is set up to
    // verify, and 2FA is not on to disable or to make backup codes for.
    ("POST",   "/api/v1/auth/2fa/verify",          Authenticated,              409, code),
    ("POST",   "/api/v1/auth/2fa/disable",         Authenticated,              409, password_and_code),
    ("POST",   "/api/v1/auth/2fa/backup-codes",    Authenticated,              409, password_and_code),
    ("POST",   "/api/v1/users/{id}/2fa/reset",     Permission("users:write"),  200, no_body),
    ("GET",    "/api/v1/api-keys",                 Permission("self:read"),    200, no_body),
    ("POST",   "/api/v1/api-keys",                 Permission("self:write"),   201, key_name),
    // Admitted, then 404: the id is a user's, not one of the caller's keys.
    ("GET",    "/api/v1/api-keys/{id}",            Permission("self:read"),    404, no_body),
    ("POST",   "/api/v1/api-keys/{id}/rotate",     Permission("self:write"),   404, no_body),
    ("DELETE", "/api/v1/api-keys/{id}",            Permission("self:write"),   404, no_body),
    ("GET",    "/api/v1/admin/api-keys",           Permission("admin:read"),   200, no_body),
    ("DELETE", "/api/v1/admin/api-keys/{id}",      Permission("admin:write"),  404, no_body),
];

/// API.md "Roles and permissions", copied as written.
const ROLES: &[(&str, &[&str])] = &[
    (
        "admin",
        &[
            "users:read",
            "users:write",
            "users:delete",
            "self:read",
            "self:write",
            "content:read",
            "content:write",
            "content:delete",
            "admin:read",
            "admin:write",
            "system:manage",
        ],
    ),
    (
        "moderator",
        &[
            "users:read",
            "users:write",
            "self:read",
            "self:write",
            "content:read",
            "content:write",
            "content:delete",
        ],
    ),
    (
        "user",
        &["self:read", "self:write", "content:read", "content:write"],
    ),
    ("viewer", &["self:read", "content:read"]),
];

/// The five columns: no token, then each role.
const CALLERS: [Option<&str>; 5] = [
    None,
    Some("viewer"),
    Some("user"),
    Some("moderator"),
    Some("admin"),
];

/// Tables whose rows a refused request must leave exactly as they were
/// (`audit_log` is checked on its own: a 403 must add to it).
const STATE_TABLES: [&str; 4] = ["users", "refresh_families", "refresh_tokens", "settings"];

const CHANGED_PASSWORD: &str = "Another-Strong-Pass-8";

fn no_body(_: usize) -> Option<Value> {
    None
}

fn profile(_: usize) -> Option<Value> {
    Some(json!({"full_name": "New Name"}))
}

fn new_password(_: usize) -> Option<Value> {
    Some(json!({"current_password": STRONG_PASSWORD, "new_password": CHANGED_PASSWORD}))
}

fn new_user(n: usize) -> Option<Value> {
    Some(json!({
        "username": format!("created{n}"),
        "email": format!("created{n}@example.com"),
        "password": STRONG_PASSWORD,
        "role": "viewer",
    }))
}

fn key_name(n: usize) -> Option<Value> {
    Some(json!({"name": format!("key {n}")}))
}

fn password(_: usize) -> Option<Value> {
    Some(json!({"password": STRONG_PASSWORD}))
}

fn code(_: usize) -> Option<Value> {
    Some(json!({"code": "123456"}))
}

fn password_and_code(_: usize) -> Option<Value> {
    Some(json!({"password": STRONG_PASSWORD, "code": "123456"}))
}

fn rename(_: usize) -> Option<Value> {
    Some(json!({"full_name": "Renamed"}))
}

fn lockout_31(_: usize) -> Option<Value> {
    Some(json!({"lockout_minutes": 31}))
}

/// A new route that is not public must get its row above: the matrix is only
/// a proof if it covers the whole table, and it must declare what API.md says.
#[test]
fn the_matrix_covers_every_route_that_is_not_public() {
    use secure_api::http::router::Access;
    use secure_api::routes::table::{Optional, table};
    let mut declared: Vec<(String, String, String)> = table(Optional::SERVABLE)
        .iter()
        .filter_map(|route| {
            let need = match route.access {
                Access::Public => return None,
                // The matrix calls with sessions, for which a session-only
                // rule is the same rule (API keys have tests of their own).
                Access::Authenticated | Access::Session => "authenticated".to_owned(),
                Access::Permission(permission) | Access::SessionPermission(permission) => {
                    permission.as_str().to_owned()
                }
            };
            Some((route.method.to_string(), route.path.to_owned(), need))
        })
        .collect();
    let mut in_matrix: Vec<(String, String, String)> = ROUTES
        .iter()
        .map(|&(method, path, need, _, _)| {
            let need = match need {
                Authenticated => "authenticated",
                Permission(permission) => permission,
            };
            (method.to_owned(), path.to_owned(), need.to_owned())
        })
        .collect();
    declared.sort();
    in_matrix.sort();
    assert_eq!(declared, in_matrix);
}

fn allowed(role: &str, permission: &str) -> bool {
    let (_, granted) = ROLES
        .iter()
        .find(|(name, _)| *name == role)
        .unwrap_or_else(|| panic!("no role {role:?} in API.md's table"));
    granted.contains(&permission)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Unauthenticated,
    Forbidden,
    Success(u16),
}

fn expectation(caller: Option<&str>, need: Need, ok: u16) -> Expect {
    match (caller, need) {
        (None, _) => Expect::Unauthenticated,
        (Some(_), Authenticated) => Expect::Success(ok),
        (Some(role), Permission(p)) if allowed(role, p) => Expect::Success(ok),
        (Some(_), Permission(_)) => Expect::Forbidden,
    }
}

/// Every row of the state tables, as text, in a stable order.
fn state_rows(app: &TestApp) -> Vec<String> {
    db::state_rows(app, &STATE_TABLES)
}

fn denials(app: &TestApp) -> i64 {
    db::audit_count(app, "permission_denied")
}

/// What the server holds, persisted or not: the state tables, plus the
/// runtime settings as an admin observer reads them.
async fn snapshot(app: &TestApp, observer: &str) -> (Vec<String>, Value) {
    let config = app
        .call("GET", "/api/v1/admin/config", Some(observer), None)
        .await;
    assert_eq!(config.status, 200, "observer reads the config");
    (state_rows(app), config.json())
}

/// The rows and settings that differ between two snapshots.
fn difference(before: &(Vec<String>, Value), after: &(Vec<String>, Value)) -> String {
    let gone = before.0.iter().filter(|r| !after.0.contains(r));
    let new = after.0.iter().filter(|r| !before.0.contains(r));
    let mut parts: Vec<String> = gone.map(|r| format!("- {r}")).collect();
    parts.extend(new.map(|r| format!("+ {r}")));
    if before.1 != after.1 {
        parts.push(format!("config {} -> {}", before.1, after.1));
    }
    parts.join("; ")
}

fn body_text(response: &TestResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// The problem+json checks of a refusal; an empty list when all hold.
fn problem_mismatches(response: &TestResponse, status: u16, code: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    if response.status != status {
        wrong.push(format!(
            "status {} (want {status}), body {}",
            response.status,
            body_text(response)
        ));
        return wrong;
    }
    if response.header("content-type") != Some("application/problem+json") {
        wrong.push(format!(
            "content-type {:?} (want application/problem+json)",
            response.header("content-type")
        ));
    }
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if body["code"] != code || body["status"] != status {
        wrong.push(format!("body {body} (want status {status}, code {code:?})"));
    }
    if status == 401 && response.header("www-authenticate") != Some("Bearer") {
        wrong.push(format!(
            "WWW-Authenticate {:?} (want \"Bearer\")",
            response.header("www-authenticate")
        ));
    }
    wrong
}

/// Calls every route once as `caller` on a server of its own, and returns how
/// many rows it checked and what went wrong.
async fn check_column(caller: Option<&str>, first_row: usize) -> (usize, Vec<String>) {
    let app = TestApp::spawn().await;
    let observer = app.account("observer", "admin").await.token;
    let who = caller.unwrap_or("anonymous");
    let mut checked = 0;
    let mut failures = Vec::new();
    for (i, &(method, template, need, ok, body)) in ROUTES.iter().enumerate() {
        let n = first_row + i;
        // A fresh caller per row: change-password and logout-all end the
        // caller's sessions, and nothing a row does can reach the next one.
        let token = match caller {
            Some(role) => Some(app.account(&format!("caller{n}"), role).await.token),
            None => None,
        };
        // One's own sessions are the only ones there are to end.
        let path = if template.ends_with("/sessions/{id}") {
            let session = token
                .as_deref()
                .map_or_else(|| "0".repeat(32), crate::helpers::session_of);
            template.replace("{id}", &session)
        } else if template.contains("{id}") {
            // A plain user, so moderators may touch it and nobody targets themselves.
            let target = app.account(&format!("target{n}"), "user").await;
            template.replace("{id}", &target.id)
        } else {
            template.to_owned()
        };
        let body = body(n);
        let expect = expectation(caller, need, ok);
        let before = snapshot(&app, &observer).await;
        let denied_before = denials(&app);

        let response = app
            .call(method, &path, token.as_deref(), body.as_ref())
            .await;

        let denied_after = denials(&app);
        let mut wrong = match expect {
            Expect::Success(status) if response.status == status => Vec::new(),
            Expect::Success(status) => vec![format!(
                "status {} (want {status}), body {}",
                response.status,
                body_text(&response)
            )],
            Expect::Forbidden => problem_mismatches(&response, 403, "forbidden"),
            Expect::Unauthenticated => problem_mismatches(&response, 401, "not_authenticated"),
        };
        match expect {
            Expect::Forbidden if denied_after != denied_before + 1 => wrong.push(format!(
                "permission_denied audit rows {denied_before} -> {denied_after} (want one more)"
            )),
            Expect::Success(_) | Expect::Unauthenticated if denied_after != denied_before => wrong
                .push(format!(
                    "permission_denied audit rows {denied_before} -> {denied_after} (want none added)"
                )),
            _ => {}
        }
        if expect != Expect::Success(ok) {
            let after = snapshot(&app, &observer).await;
            if after != before {
                wrong.push(format!(
                    "a refused call changed the server: {}",
                    difference(&before, &after)
                ));
            }
        }
        for problem in wrong {
            failures.push(format!(
                "{who} {method} {template}: expected {expect:?}: {problem}"
            ));
        }
        checked += 1;
    }
    (checked, failures)
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_matrix_says() {
    let started = Instant::now();
    let mut checked = 0;
    let mut failures = Vec::new();
    for caller in CALLERS {
        let (rows, wrong) = check_column(caller, checked).await;
        checked += rows;
        failures.extend(wrong);
    }
    eprintln!(
        "matrix: {checked} rows (route x caller) checked in {:.2?}, {} mismatches",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} rows answer differently from API.md:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // 5 callers x the 29 authenticated routes of src/routes/table.rs.
    assert_eq!(checked, CALLERS.len() * ROUTES.len());
    assert_eq!(checked, 145);
}
