//! API.md "Roles and permissions", route by route: every authenticated route
//! of the route table, called by each kind of caller (anonymous, viewer, user,
//! moderator, admin, and API keys of several owners and scope sets), answers
//! 401, 403 or success exactly as the role table and the key's scopes say; a
//! denial changes nothing and leaves a `permission_denied` audit row, and a
//! route that needs a session refuses every key with `session_required`.
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
    /// Any signed-in session; never an API key (API.md "API keys": the
    /// password, the email, 2FA, sessions, logout-all, and the keys themselves).
    Session,
    /// An account whose role grants this permission (API.md names), and for
    /// an API key, a key whose scopes hold it too.
    Permission(&'static str),
    /// Both: a session whose role grants the permission.
    SessionPermission(&'static str),
}

use Need::{Permission, Session, SessionPermission};

/// A request body for the `n`-th row (unique names where they must be).
type BodyFn = fn(usize) -> Option<Value>;

/// The authenticated routes of `src/routes/table.rs`, one line each:
/// method, path template, what it needs, success status, a body that succeeds.
#[rustfmt::skip]
const ROUTES: &[(&str, &str, Need, u16, BodyFn)] = &[
    ("GET",    "/api/v1/users/me",                 Permission("self:read"),    200, no_body),
    ("PUT",    "/api/v1/users/me",                 Permission("self:write"),   200, profile),
    ("POST",   "/api/v1/users/me/change-password", Session,                    200, new_password),
    ("GET",    "/api/v1/users/me/sessions",        Session,                    200, no_body),
    ("DELETE", "/api/v1/users/me/sessions/{id}",   Session,                    200, no_body),
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
    ("POST",   "/api/v1/auth/logout-all",          Session,                    200, no_body),
    ("GET",    "/api/v1/auth/2fa/status",          Session,                    200, no_body),
    ("POST",   "/api/v1/auth/2fa/setup",           Session,                    200, password),
    // Admitted, then refused for the account's state: nothing is set up to
    // verify, and 2FA is not on to disable or to make backup codes for.
    ("POST",   "/api/v1/auth/2fa/verify",          Session,                    409, code),
    ("POST",   "/api/v1/auth/2fa/disable",         Session,                    409, password_and_code),
    ("POST",   "/api/v1/auth/2fa/backup-codes",    Session,                    409, password_and_code),
    ("POST",   "/api/v1/users/{id}/2fa/reset",     Permission("users:write"),  200, no_body),
    ("GET",    "/api/v1/api-keys",                 SessionPermission("self:read"),  200, no_body),
    ("POST",   "/api/v1/api-keys",                 SessionPermission("self:write"), 201, key_name),
    // Admitted, then 404: the id is a user's, not one of the caller's keys.
    ("GET",    "/api/v1/api-keys/{id}",            SessionPermission("self:read"),  404, no_body),
    ("GET",    "/api/v1/api-keys/{id}/usage",      SessionPermission("self:read"),  404, no_body),
    ("POST",   "/api/v1/api-keys/{id}/rotate",     SessionPermission("self:write"), 404, no_body),
    ("DELETE", "/api/v1/api-keys/{id}",            SessionPermission("self:write"), 404, no_body),
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

/// Who calls a column's rows.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Anonymous,
    /// An access token of an account with this role.
    Role(&'static str),
    /// An API key of an account with role `owner`, made with these scopes
    /// (`None`: the default, every permission of the owner).
    Key {
        owner: &'static str,
        scopes: Option<&'static [&'static str]>,
    },
}

/// The columns: no credentials, each role, then API keys: an admin's key
/// with no scope, with each one permission a route asks for, and with all;
/// keys of the other roles that may make keys (a viewer lacks `self:write`)
/// with their defaults; a moderator's key with part of its role.
#[rustfmt::skip]
const CALLERS: [Caller; 17] = [
    Caller::Anonymous,
    Caller::Role("viewer"),
    Caller::Role("user"),
    Caller::Role("moderator"),
    Caller::Role("admin"),
    Caller::Key { owner: "admin", scopes: Some(&[]) },
    Caller::Key { owner: "admin", scopes: Some(&["self:read"]) },
    Caller::Key { owner: "admin", scopes: Some(&["self:write"]) },
    Caller::Key { owner: "admin", scopes: Some(&["users:read"]) },
    Caller::Key { owner: "admin", scopes: Some(&["users:write"]) },
    Caller::Key { owner: "admin", scopes: Some(&["users:delete"]) },
    Caller::Key { owner: "admin", scopes: Some(&["admin:read"]) },
    Caller::Key { owner: "admin", scopes: Some(&["admin:write"]) },
    Caller::Key { owner: "admin", scopes: None },
    Caller::Key { owner: "user", scopes: None },
    Caller::Key { owner: "moderator", scopes: None },
    Caller::Key { owner: "moderator", scopes: Some(&["self:read", "users:read"]) },
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
                Access::Authenticated => "authenticated".to_owned(),
                Access::Session => "session".to_owned(),
                Access::Permission(permission) => permission.as_str().to_owned(),
                Access::SessionPermission(permission) => {
                    format!("{} session", permission.as_str())
                }
            };
            Some((route.method.to_string(), route.path.to_owned(), need))
        })
        .collect();
    let mut in_matrix: Vec<(String, String, String)> = ROUTES
        .iter()
        .map(|&(method, path, need, _, _)| {
            let need = match need {
                Session => "session".to_owned(),
                Permission(permission) => permission.to_owned(),
                SessionPermission(permission) => format!("{permission} session"),
            };
            (method.to_owned(), path.to_owned(), need)
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
    SessionRequired,
    Success(u16),
}

fn expectation(caller: Caller, need: Need, ok: u16) -> Expect {
    let permitted = |p: &str| match caller {
        Caller::Anonymous => false,
        Caller::Role(role) => allowed(role, p),
        Caller::Key { owner, scopes } => {
            allowed(owner, p) && scopes.is_none_or(|scopes| scopes.contains(&p))
        }
    };
    match (caller, need) {
        (Caller::Anonymous, _) => Expect::Unauthenticated,
        (Caller::Key { .. }, Session | SessionPermission(_)) => Expect::SessionRequired,
        (_, Session) => Expect::Success(ok),
        (_, Permission(p) | SessionPermission(p)) if permitted(p) => Expect::Success(ok),
        (_, Permission(_) | SessionPermission(_)) => Expect::Forbidden,
    }
}

/// How a row's request authenticates.
#[derive(Clone)]
enum Credential {
    None,
    Bearer(String),
    Key(String),
}

impl Credential {
    async fn call(
        &self,
        app: &TestApp,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> TestResponse {
        match self {
            Credential::None => app.call(method, path, None, body).await,
            Credential::Bearer(token) => app.call(method, path, Some(token), body).await,
            Credential::Key(key) => {
                let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
                let mut headers = vec![("x-api-key", key.as_str())];
                if bytes.is_some() {
                    headers.push(("content-type", "application/json"));
                }
                app.request(method, path, &headers, bytes.as_deref()).await
            }
        }
    }
}

/// A fresh account for row `n` and the credential `caller` uses, with the
/// access token of the account's own session (which session routes name).
async fn credential_for(app: &TestApp, caller: Caller, n: usize) -> (Credential, Option<String>) {
    match caller {
        Caller::Anonymous => (Credential::None, None),
        Caller::Role(role) => {
            let token = app.account(&format!("caller{n}"), role).await.token;
            (Credential::Bearer(token.clone()), Some(token))
        }
        Caller::Key { owner, scopes } => {
            let token = app.account(&format!("caller{n}"), owner).await.token;
            let mut body = json!({"name": format!("matrix {n}")});
            if let Some(scopes) = scopes {
                body["scopes"] = json!(scopes);
            }
            let made = app
                .call("POST", "/api/v1/api-keys", Some(&token), Some(&body))
                .await;
            assert_eq!(made.status, 201, "{}", body_text(&made));
            let key = made.json()["key"].as_str().unwrap().to_owned();
            (Credential::Key(key), Some(token))
        }
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
async fn check_column(caller: Caller, first_row: usize) -> (usize, Vec<String>) {
    let app = TestApp::spawn().await;
    let observer = app.account("observer", "admin").await.token;
    let who = format!("{caller:?}");
    let mut checked = 0;
    let mut failures = Vec::new();
    // Every row that could end or change the owner's sessions refuses a key,
    // so one key serves its whole column.
    let column_key = match caller {
        Caller::Key { .. } => Some(credential_for(&app, caller, first_row).await),
        Caller::Anonymous | Caller::Role(_) => None,
    };
    for (i, &(method, template, need, ok, body)) in ROUTES.iter().enumerate() {
        let n = first_row + i;
        // A fresh caller per row: change-password and logout-all end the
        // caller's sessions, and nothing a row does can reach the next one.
        let (credential, token) = match &column_key {
            Some(reused) => reused.clone(),
            None => credential_for(&app, caller, n).await,
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

        let response = credential.call(&app, method, &path, body.as_ref()).await;

        let denied_after = denials(&app);
        let mut wrong = match expect {
            Expect::Success(status) if response.status == status => Vec::new(),
            Expect::Success(status) => vec![format!(
                "status {} (want {status}), body {}",
                response.status,
                body_text(&response)
            )],
            Expect::Forbidden => problem_mismatches(&response, 403, "forbidden"),
            Expect::SessionRequired => problem_mismatches(&response, 403, "session_required"),
            Expect::Unauthenticated => problem_mismatches(&response, 401, "not_authenticated"),
        };
        match expect {
            Expect::Forbidden if denied_after != denied_before + 1 => wrong.push(format!(
                "permission_denied audit rows {denied_before} -> {denied_after} (want one more)"
            )),
            Expect::Success(_) | Expect::Unauthenticated | Expect::SessionRequired
                if denied_after != denied_before =>
            {
                wrong.push(format!(
                    "permission_denied audit rows {denied_before} -> {denied_after} (want none added)"
                ))
            }
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

// Columns run side by side, each on a server of its own: one after the
// other they took 42 s, most of it TLS handshakes of an unoptimised build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_matrix_says() {
    let started = Instant::now();
    let columns = CALLERS
        .iter()
        .enumerate()
        .map(|(column, &caller)| tokio::spawn(check_column(caller, column * ROUTES.len())));
    let mut checked = 0;
    let mut failures = Vec::new();
    for column in columns.collect::<Vec<_>>() {
        let (rows, wrong) = column.await.expect("a column runs to its end");
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
    // 17 callers x the 30 authenticated routes of src/routes/table.rs.
    assert_eq!(checked, CALLERS.len() * ROUTES.len());
    assert_eq!(checked, 510);
}
