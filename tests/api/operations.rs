//! Running it as a daemon: systemd notifications, the unit files, the Debian
//! package, crash safety and the upgrade path.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Mutex;

use crate::helpers::db;
use crate::helpers::{
    STRONG_PASSWORD, b64url_decode, bin, client_config, create_admin, run_cli, send_http1,
    start_server, start_server_with_env, tls_connect,
};

fn notifications(socket: &UnixDatagram, until: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    while let Ok(n) = socket.recv(&mut buf) {
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = message.contains(until);
        seen.push(message);
        if done {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let server = start_server_with_env(
        &dir.path().join("data"),
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    let first = notifications(&socket, "READY=1");
    assert!(first.iter().any(|m| m.contains("READY=1")), "{first:?}");
    let pings = notifications(&socket, "WATCHDOG=1");
    assert!(pings.iter().any(|m| m.contains("WATCHDOG=1")), "{pings:?}");
    crate::helpers::send_signal(&server.child, "TERM");
    let last = notifications(&socket, "STOPPING=1");
    assert!(last.iter().any(|m| m.contains("STOPPING=1")), "{last:?}");
    let (status, _) = server.stop_after_signal().await;
    assert!(status.success());
}

/// The units as installed, with the binary path pointing at this build.
fn units_for_checking(dir: &Path) -> Vec<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    [
        "secure-api.service",
        "secure-api-backup.service",
        "secure-api-backup.timer",
    ]
    .iter()
    .map(|name| {
        let text = std::fs::read_to_string(source.join(name)).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text.replace("/usr/bin/secure-api", bin())).unwrap();
        path
    })
    .collect()
}

fn systemd_analyze() -> Option<&'static str> {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    match found {
        Ok(out) if out.status.success() => Some("systemd-analyze"),
        _ => {
            eprintln!("SKIPPED: systemd-analyze is not installed (.ci/run installs it)");
            None
        }
    }
}

#[test]
fn the_units_verify_and_the_service_exposure_is_at_most_1_5() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_checking(dir.path());
    let verify = std::process::Command::new(analyze)
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    for (unit, ceiling) in [(&units[0], 1.5), (&units[1], 1.5)] {
        let out = std::process::Command::new(analyze)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure score in {text}"));
        eprintln!("{}: exposure {score}", unit.display());
        assert!(score <= ceiling, "{} scores {score}", unit.display());
    }
    let unit = std::fs::read_to_string(&units[0]).unwrap();
    for must in [
        "Type=notify",
        "DynamicUser=yes",
        "ExecStartPre=",
        "LoadCredential=jwt-secret",
        "LoadCredential=data-key",
        "UMask=0077",
    ] {
        assert!(unit.contains(must), "{must}");
    }
}

fn newest_deb() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
}

#[test]
fn the_debian_package_holds_the_right_files_and_no_secret() {
    let deb = match (newest_deb(), std::env::var_os("CI")) {
        (Some(deb), _) => deb,
        (None, Some(_)) => panic!("CI builds the package first (packaging/build-deb)"),
        (None, None) => {
            eprintln!("SKIPPED: no target/debian/*.deb; run packaging/build-deb");
            return;
        }
    };
    let info = std::process::Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("Package: secure-api"), "{info}");
    assert!(
        info.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    let listing = std::process::Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/secure-api"),
        ("-rw-r--r--", "./lib/systemd/system/secure-api.service"),
        (
            "-rw-r--r--",
            "./lib/systemd/system/secure-api-backup.service",
        ),
        ("-rw-r--r--", "./lib/systemd/system/secure-api-backup.timer"),
        ("-rw-r-----", "./etc/secure-api/secure-api.env"),
        ("-rw-r--r--", "./usr/share/man/man1/secure-api.1.gz"),
        ("-rw-r--r--", "./usr/share/doc/secure-api/README.md"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing from {listing}"));
        assert!(line.starts_with(mode), "{line}");
    }
    for forbidden in ["jwt-secret", "tls-key", ".pem", ".db"] {
        assert!(!listing.contains(forbidden), "{forbidden} in {listing}");
    }
    // Nothing in the payload looks like key material.
    let unpacked = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(status.success());
    let grep = std::process::Command::new("grep")
        .args(["-rlE", "BEGIN [A-Z ]*PRIVATE KEY"])
        .arg(unpacked.path())
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "key material in: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    // The maintainer scripts never start anything.
    let control = tempfile::tempdir().unwrap();
    std::process::Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path())
        .status()
        .unwrap();
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(
        !postinst.contains("systemctl start") && !postinst.contains("systemctl enable"),
        "{postinst}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_write_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, &[]).await;
    let tls = client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    let addr = server.addr;
    let running = Arc::new(AtomicBool::new(true));
    let registered = Arc::new(Mutex::new(Vec::<String>::new()));
    let rotated = Arc::new(Mutex::new(Vec::<String>::new()));

    let mut workers = Vec::new();
    for worker in 0..4 {
        let (tls, running, registered, rotated) = (
            Arc::clone(&tls),
            Arc::clone(&running),
            Arc::clone(&registered),
            Arc::clone(&rotated),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                let name = format!("crash{worker}x{i}");
                i += 1;
                let body = json!({"username": name, "email": format!("{name}@example.com"), "password": STRONG_PASSWORD}).to_string();
                let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(2), async {
                    Ok::<_, ()>(tls_connect(addr, Arc::clone(&tls)).await)
                })
                .await
                else {
                    break;
                };
                let response = send_http1(stream, "POST", "/api/v1/auth/register", &[("content-type", "application/json")], Some(body.as_bytes())).await;
                if response.status == 201 {
                    registered.lock().await.push(name.clone());
                }
                // Log in once, then rotate the refresh token as fast as possible.
                let login = json!({"email": format!("{name}@example.com"), "password": STRONG_PASSWORD}).to_string();
                let stream = tls_connect(addr, Arc::clone(&tls)).await;
                let response = send_http1(stream, "POST", "/api/v1/auth/login", &[("content-type", "application/json")], Some(login.as_bytes())).await;
                let Some(mut refresh) = response.refresh_cookie() else { continue };
                for _ in 0..3 {
                    let stream = tls_connect(addr, Arc::clone(&tls)).await;
                    let cookie = format!("refresh_token={refresh}");
                    let response = send_http1(stream, "POST", "/api/v1/auth/refresh", &[("cookie", &cookie)], None).await;
                    match response.refresh_cookie() {
                        Some(next) if response.status == 200 => {
                            rotated.lock().await.push(next.clone());
                            refresh = next;
                        }
                        _ => break,
                    }
                }
            }
        }));
    }
    // Let the load run, then kill without warning.
    while registered.lock().await.len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crate::helpers::send_signal(&server.child, "KILL");
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        // Workers die on the closed server; only their acknowledgements matter.
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    let (status, _) = server.stop_after_signal().await;
    assert!(!status.success(), "killed");

    let database = db::database_file(&data);
    assert_eq!(db::integrity_check(&database), "ok");
    let registered = registered.lock().await.clone();
    let rotated = rotated.lock().await.clone();
    for name in &registered {
        let found = db::users_named(&database, name);
        assert_eq!(found, 1, "acknowledged registration {name} lost");
    }
    for token in &rotated {
        let claims: serde_json::Value =
            serde_json::from_slice(&b64url_decode(token.split('.').nth(1).unwrap())).unwrap();
        let jti = claims["jti"].as_str().unwrap();
        let found = db::refresh_tokens_with_jti(&database, jti);
        assert_eq!(found, 1, "acknowledged refresh token {jti} lost");
    }
    eprintln!(
        "crash test: {} registrations and {} refresh rotations acknowledged before SIGKILL; all present after restart",
        registered.len(),
        rotated.len()
    );
    // And it starts again on that database.
    let restarted = start_server(&data, &[]).await;
    restarted.stop().await;
}

#[tokio::test]
async fn upgrading_runs_migrate_on_a_copy_of_the_old_database_then_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let created = create_admin(&old, "ops", "ops@example.com", STRONG_PASSWORD).await;
    assert!(created.status.success(), "{created:?}");

    // The documented path: back up, migrate the copy, serve it.
    let copy = dir.path().join("new");
    std::fs::create_dir_all(&copy).unwrap();
    let backup = run_cli(
        &[
            "backup",
            copy.join("secure-api.db").to_str().unwrap(),
            "--data-dir",
            old.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(backup.status.success(), "{backup:?}");
    let check = run_cli(
        &["migrate", "--check", "--data-dir", copy.to_str().unwrap()],
        None,
    )
    .await;
    assert!(check.status.success(), "{check:?}");
    let migrate = run_cli(&["migrate", "--data-dir", copy.to_str().unwrap()], None).await;
    assert!(migrate.status.success(), "{migrate:?}");

    let server = start_server(&copy, &[]).await;
    let tls = client_config(&copy.join("tls-cert.pem"), &[b"http/1.1"]);
    let body = json!({"email": "ops@example.com", "password": STRONG_PASSWORD}).to_string();
    let login = send_http1(
        tls_connect(server.addr, tls).await,
        "POST",
        "/api/v1/auth/login",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(login.status, 200, "the admin from the old database logs in");
    server.stop().await;
}

#[tokio::test]
async fn secrets_come_from_the_systemd_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    for (name, contents) in [
        ("tls-cert", generated.cert.pem().into_bytes()),
        (
            "tls-key",
            generated.signing_key.serialize_pem().into_bytes(),
        ),
        ("jwt-secret", vec![7u8; 48]),
        ("data-key", vec![9u8; 32]),
    ] {
        let path = credentials.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .unwrap();
    }
    let data = dir.path().join("data");
    let server = start_server_with_env(
        &data,
        &[],
        &[("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap())],
    )
    .await;
    // The certificate served is the credential's: a client trusting only it connects.
    let tls = client_config(&credentials.join("tls-cert"), &[b"http/1.1"]);
    let health = send_http1(
        tls_connect(server.addr, Arc::clone(&tls)).await,
        "GET",
        "/health",
        &[],
        None,
    )
    .await;
    assert_eq!(health.status, 200);
    // Tokens are signed with the credential's key.
    let body =
        json!({"username": "creds", "email": "creds@example.com", "password": STRONG_PASSWORD})
            .to_string();
    let headers = [("content-type", "application/json")];
    let created = send_http1(
        tls_connect(server.addr, Arc::clone(&tls)).await,
        "POST",
        "/api/v1/auth/register",
        &headers,
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(created.status, 201);
    let body = json!({"email": "creds@example.com", "password": STRONG_PASSWORD}).to_string();
    let login = send_http1(
        tls_connect(server.addr, tls).await,
        "POST",
        "/api/v1/auth/login",
        &headers,
        Some(body.as_bytes()),
    )
    .await;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["secure-api"]);
    validation.set_issuer(&["secure-api"]);
    let verified = jsonwebtoken::decode::<serde_json::Value>(
        login.access_token(),
        &jsonwebtoken::DecodingKey::from_secret(&[7u8; 48]),
        &validation,
    );
    assert!(verified.is_ok(), "{verified:?}");
    let (status, stderr) = server.stop().await;
    assert!(status.success());
    assert!(!stderr.contains("generated"), "nothing generated: {stderr}");
    for file in [
        "tls-cert.pem",
        "tls-key.pem",
        "jwt-secret.key",
        "data-key.key",
    ] {
        assert!(!data.join(file).exists(), "{file} must not be generated");
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_only_when_asked_for() {
    let hidden = crate::helpers::TestApp::spawn().await;
    assert_eq!(hidden.get("/api/v1/openapi.json").await.status, 404);
    let exposed = crate::helpers::TestApp::spawn_with(|c| c.expose_openapi = true).await;
    let document = exposed.get("/api/v1/openapi.json").await;
    assert_eq!(document.status, 200);
    assert_eq!(document.json()["openapi"], "3.1.0");
    assert_eq!(
        document.json()["info"]["version"],
        env!("CARGO_PKG_VERSION")
    );
}
