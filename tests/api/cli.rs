//! The real binary: every subcommand's happy path and its bad input.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::db;
use crate::helpers::{
    FAST_HASH_ARGS, STRONG_PASSWORD, TestApp, client_config, create_admin, mode_of, run_cli,
    serve_args, start_server, tls_connect,
};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_one_line_error(output: &std::process::Output, needle: &str) {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = stderr_of(output);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains(needle),
        "{stderr:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn version_matches_health() {
    let output = run_cli(&["--version"], None).await;
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("secure-api {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    for args in [
        vec!["frobnicate"],
        vec!["serve", "--listen", "not-an-address"],
        vec!["serve", "--tls-cert", "/tmp/only-cert.pem"],
        vec!["create-admin", "--email", "a@example.com"],
        vec!["backup"],
        vec![],
    ] {
        let output = run_cli(&args, None).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

#[tokio::test]
async fn first_start_generates_private_secrets_loudly_and_later_starts_reuse_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, &[]).await;
    let (status, stderr) = server.stop().await;
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    assert!(
        stderr.contains("generated a self-signed TLS certificate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("generated a random 256-bit JWT key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("generated a random 256-bit data key"),
        "{stderr}"
    );

    assert_eq!(mode_of(&data), 0o700);
    for file in [
        "tls-cert.pem",
        "tls-key.pem",
        "jwt-secret.key",
        "data-key.key",
        "secure-api.db",
    ] {
        assert_eq!(mode_of(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read(data.join("jwt-secret.key")).unwrap().len(),
        32
    );
    assert_eq!(std::fs::read(data.join("data-key.key")).unwrap().len(), 32);
    let cert = std::fs::read(data.join("tls-cert.pem")).unwrap();
    let key = std::fs::read(data.join("jwt-secret.key")).unwrap();

    let server = start_server(&data, &[]).await;
    let config = client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    // The generated certificate verifies for "localhost".
    let stream = tls_connect(server.addr, config).await;
    drop(stream);
    let (status, stderr) = server.stop().await;
    assert!(status.success());
    assert!(
        !stderr.contains("generated"),
        "nothing new generated: {stderr}"
    );
    assert_eq!(std::fs::read(data.join("tls-cert.pem")).unwrap(), cert);
    assert_eq!(std::fs::read(data.join("jwt-secret.key")).unwrap(), key);
}

#[tokio::test]
async fn serve_refuses_a_tls_key_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Generate a certificate and key, then loosen the key's mode.
    start_server(&data, &[]).await.stop().await;
    let key = data.join("tls-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = run_cli(&serve_args(&data, &[]), None).await;
    assert_one_line_error(&output, "readable by group or others");
    assert!(stderr_of(&output).contains("chmod 600"));
}

#[tokio::test]
async fn serve_warns_about_a_data_directory_open_to_group_or_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, quiet) = start_server(&data, &[]).await.stop().await;
    assert!(!quiet.contains("open to group or others"), "{quiet}");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, stderr) = start_server(&data, &[]).await.stop().await;
    assert!(status.success());
    assert!(
        stderr.contains("open to group or others (mode 0755); run `chmod 700"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_refuses_a_short_jwt_key_and_weak_argon2_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("short.key");
    std::fs::write(&key, b"too-short").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = run_cli(
        &serve_args(&data, &["--jwt-secret-file", key.to_str().unwrap()]),
        None,
    )
    .await;
    assert_one_line_error(&output, "at least 32");

    let output = run_cli(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--argon2-memory-kib",
            "1024",
        ],
        None,
    )
    .await;
    assert_one_line_error(&output, "OWASP");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, &[]).await;
    let config = client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    let mut stream = tls_connect(server.addr, config).await;

    let body = serde_json::json!({
        "username": "inflight", "email": "inflight@example.com", "password": STRONG_PASSWORD
    })
    .to_string();
    let head = format!(
        "POST /api/v1/auth/register HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.as_bytes().split_at(10);
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();

    crate::helpers::send_signal(&server.child, "TERM");
    // The drain has begun, with this request still half-read.
    server.wait_for_log("draining in-flight requests").await;
    stream.write_all(rest).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("response arrives")
        .ok();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");

    let mut child = server.child;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn create_admin_reads_stdin_and_stores_an_argon2id_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = create_admin(
        &data,
        "rootish",
        "Ops@Example.com",
        &format!("{STRONG_PASSWORD}\n"),
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("created admin rootish"));
    assert_eq!(mode_of(&data.join("secure-api.db")), 0o600);

    let account = db::stored_account(&db::database_file(&data), "rootish");
    assert_eq!(
        (
            account.role.as_str(),
            account.is_active,
            account.email.as_str()
        ),
        ("admin", true, "ops@example.com")
    );
    let hash = account.password_hash;
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(STRONG_PASSWORD));
    // The trailing newline was not part of the password.
    use argon2::PasswordVerifier;
    let parsed = argon2::PasswordHash::new(&hash).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(STRONG_PASSWORD.as_bytes(), &parsed)
            .is_ok()
    );

    let again = create_admin(&data, "ROOTISH", "other@example.com", STRONG_PASSWORD).await;
    assert_one_line_error(&again, "already exists");
}

#[tokio::test]
async fn create_admin_reads_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{STRONG_PASSWORD}\n")).unwrap();
    let mut args = vec![
        "create-admin",
        "--data-dir",
        data.to_str().unwrap(),
        "--username",
        "opsadmin",
        "--email",
        "ops@example.com",
        "--password-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(&FAST_HASH_ARGS);
    let output = run_cli(&args, None).await;
    assert!(output.status.success(), "{output:?}");
}

#[tokio::test]
async fn create_admin_applies_the_validation_and_password_policy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let weak = create_admin(&data, "opsadmin", "ops@example.com", "Password1!").await;
    assert_one_line_error(&weak, "too common");
    assert!(
        !stderr_of(&weak).contains("Password1!"),
        "the password is never echoed"
    );
    let short = create_admin(&data, "opsadmin", "ops@example.com", "Ab1!").await;
    assert_one_line_error(&short, "at least 8");
    let reserved = create_admin(&data, "admin", "ops@example.com", STRONG_PASSWORD).await;
    assert_one_line_error(&reserved, "username is reserved");
    let email = create_admin(&data, "opsadmin", "not-an-email", STRONG_PASSWORD).await;
    assert_one_line_error(&email, "email is not a valid email address");
    let empty = create_admin(&data, "opsadmin", "ops@example.com", "").await;
    assert_eq!(empty.status.code(), Some(1));
}

#[tokio::test]
async fn migrate_creates_checks_and_refuses_a_newer_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let check = run_cli(&["migrate", "--check", "--data-dir", data_arg], None).await;
    assert_eq!(check.status.code(), Some(1), "no database yet: {check:?}");
    assert!(
        !data.join("secure-api.db").exists(),
        "--check changes nothing"
    );

    let migrate = run_cli(&["migrate", "--data-dir", data_arg], None).await;
    assert!(migrate.status.success(), "{migrate:?}");
    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join("secure-api.db")), 0o600);
    let check = run_cli(&["migrate", "--check", "--data-dir", data_arg], None).await;
    assert!(check.status.success(), "{check:?}");
    let again = run_cli(&["migrate", "--data-dir", data_arg], None).await;
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    db::set_schema_version(&db::database_file(&data), 99);
    assert_one_line_error(
        &run_cli(&["migrate", "--data-dir", data_arg], None).await,
        "newer",
    );
    assert_one_line_error(
        &run_cli(&["migrate", "--check", "--data-dir", data_arg], None).await,
        "newer",
    );
    assert_one_line_error(&run_cli(&serve_args(&data, &[]), None).await, "newer");
}

#[tokio::test]
async fn serve_refuses_a_database_of_another_program() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    db::make_foreign_database(&db::database_file(&data));
    assert_one_line_error(
        &run_cli(&serve_args(&data, &[]), None).await,
        "no secure-api schema",
    );
}

#[tokio::test]
async fn logs_are_json_lines_with_one_access_line_per_request_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, &[]).await;
    let config = client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    let body = serde_json::json!({
        "username": "logcheck", "email": "logcheck@example.com", "password": STRONG_PASSWORD
    })
    .to_string();
    let response = crate::helpers::send_http1(
        tls_connect(server.addr, config).await,
        "POST",
        "/api/v1/auth/register",
        &[
            ("content-type", "application/json"),
            ("user-agent", "log-test/1.0"),
            ("x-request-id", "log-test-request"),
        ],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(response.status, 201);
    let (status, stdout, _) = server.stop_with_logs().await;
    assert!(status.success());

    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let access: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "log-test-request" && l["message"] == "request")
        .collect();
    assert_eq!(access.len(), 1, "{stdout}");
    let line = access[0];
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/api/v1/auth/register");
    assert_eq!(line["status"], 201);
    assert!(line["duration_us"].is_u64());
    assert_eq!(line["span"]["client_ip"], "127.0.0.1");
    assert_eq!(line["user_agent"], "log-test/1.0");
    assert!(!stdout.contains(STRONG_PASSWORD), "no password in logs");
    assert!(!stdout.contains("$argon2"), "no hash in logs");
    assert!(
        !stdout.contains("logcheck@example.com"),
        "no clear email in logs"
    );
}

#[tokio::test]
async fn console_log_format_is_available() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = serve_args(
        &data,
        &["--log-format", "console", "--log-level", "nonsense=="],
    );
    let output = run_cli(&args, None).await;
    assert_one_line_error(&output, "log-level");
    // The console format starts fine; then binding a port that is taken
    // fails with one clear line.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let args = [
        "serve",
        "--listen",
        taken_addr.as_str(),
        "--data-dir",
        data.to_str().unwrap(),
        "--log-format",
        "console",
        "--argon2-memory-kib",
        "1024",
        "--argon2-time-cost",
        "1",
        "--insecure-fast-hash",
    ];
    let output = run_cli(&args, None).await;
    assert_one_line_error(&output, &format!("cannot listen on {taken_addr}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.trim_start().starts_with('{'),
        "console lines: {stdout}"
    );
}

#[tokio::test]
async fn unlock_clears_a_lockout_from_the_command_line_and_is_audited() {
    let app = TestApp::spawn().await;
    let data = app.data_dir();
    let data_arg = data.to_str().unwrap();
    let email = "locked@example.com";
    assert_eq!(app.register("lockedout", email).await.status, 201);
    for _ in 0..5 {
        assert_eq!(app.login(email, "Wrong-Password-1").await.status, 401);
    }
    assert_eq!(
        app.login(email, STRONG_PASSWORD).await.status,
        401,
        "locked"
    );

    // The server keeps running: the command writes beside it.
    let output = run_cli(
        &[
            "unlock",
            "--data-dir",
            data_arg,
            "--email",
            "Locked@Example.com",
        ],
        None,
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("unlocked lockedout ("),
        "{output:?}"
    );
    assert_eq!(app.login(email, STRONG_PASSWORD).await.status, 200);

    let admin = create_admin(&data, "opsadmin", "ops@example.com", STRONG_PASSWORD).await;
    assert!(admin.status.success(), "{admin:?}");
    let token = app
        .login("ops@example.com", STRONG_PASSWORD)
        .await
        .access_token();
    let audit = app
        .get_with_token("/api/v1/admin/audit?event=unlock", &token)
        .await;
    assert_eq!(audit.status, 200);
    let items = audit.json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["detail"]["via"], "command_line");
    assert!(items[0]["user_id"].is_string());

    // Not locked: nothing to clear, and said so.
    let again = run_cli(&["unlock", "--data-dir", data_arg, "--email", email], None).await;
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("was not locked"));
}

#[tokio::test]
async fn unlock_refuses_unknown_accounts_bad_emails_and_missing_databases() {
    let app = TestApp::spawn().await;
    let data = app.data_dir();
    let data_arg = data.to_str().unwrap();
    assert_eq!(
        app.register("someone", "someone@example.com").await.status,
        201
    );
    let unknown = run_cli(
        &[
            "unlock",
            "--data-dir",
            data_arg,
            "--email",
            "nobody@example.com",
        ],
        None,
    )
    .await;
    assert_one_line_error(&unknown, "no account with that email");
    let invalid = run_cli(&["unlock", "--data-dir", data_arg, "--email", "nope"], None).await;
    assert_one_line_error(&invalid, "--email");
    let empty = tempfile::tempdir().unwrap();
    let missing = run_cli(
        &[
            "unlock",
            "--data-dir",
            empty.path().to_str().unwrap(),
            "--email",
            "someone@example.com",
        ],
        None,
    )
    .await;
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        !empty.path().join("secure-api.db").exists(),
        "nothing created"
    );
    let usage = run_cli(&["unlock", "--data-dir", data_arg], None).await;
    assert_eq!(usage.status.code(), Some(2), "--email is required");
}

/// A private memory cgroup with `limit` bytes, removed on drop; `None` (and
/// one loud line) where this machine does not let the test make one.
struct MemoryCgroup {
    dir: std::path::PathBuf,
}

impl MemoryCgroup {
    fn create(limit: u64) -> Option<Self> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let name = format!("secure-api-test-{}", std::process::id());
        for line in membership.lines() {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next(), fields.next()?, fields.next()?);
            let (mount, file) = if controllers.split(',').any(|c| c == "memory") {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            } else if controllers.is_empty() {
                ("/sys/fs/cgroup", "memory.max")
            } else {
                continue;
            };
            let dir = std::path::Path::new(mount)
                .join(path.trim_start_matches('/'))
                .join(&name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let made = Self { dir };
            if std::fs::write(made.dir.join(file), limit.to_string()).is_ok() {
                return Some(made);
            }
        }
        eprintln!(
            "SKIPPED: cannot create a memory cgroup here (needs root and a writable cgroup fs)"
        );
        None
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[tokio::test]
async fn serve_refuses_more_hashing_memory_than_its_cgroup_allows() {
    let Some(cgroup) = MemoryCgroup::create(512 * 1024 * 1024) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Joins the cgroup, then becomes `secure-api serve` with the real
    // Argon2 memory (64 MiB), so the sums are the production ones.
    let serve_in_cgroup = |workers: &str| {
        let procs = cgroup.dir.join("cgroup.procs");
        let script = format!("echo $$ > '{}' && exec \"$0\" \"$@\"", procs.display());
        let mut command = tokio::process::Command::new("sh");
        command
            .args(["-c", &script, crate::helpers::bin(), "serve"])
            .args(["--listen", "127.0.0.1:0", "--rate-limit", "off"])
            .arg("--data-dir")
            .arg(&data)
            .args(["--hash-workers", workers])
            .env_clear();
        command
    };
    // 8 x 64 MiB + 256 MiB > 512 MiB: refused at once, naming both numbers.
    let refused = tokio::time::timeout(Duration::from_secs(60), serve_in_cgroup("8").output())
        .await
        .expect("exits")
        .unwrap();
    assert_one_line_error(&refused, "only 512 MiB");
    let stderr = stderr_of(&refused);
    assert!(stderr.contains("512 MiB (8 workers x 64 MiB"), "{stderr}");
    assert!(
        !data.join("secure-api.db").exists(),
        "refused before any write"
    );

    // 2 x 64 MiB + 256 MiB fits.
    let server = crate::helpers::start_serving(serve_in_cgroup("2")).await;
    let (status, _) = server.stop().await;
    assert!(status.success());
}
