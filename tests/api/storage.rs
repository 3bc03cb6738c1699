//! Storage under pressure: readiness probes shared by a flood of callers,
//! retention of sessions and audit rows, and a full disk answered as 503
//! `storage_unavailable` (and recovered from) rather than as a server bug.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::db;
use crate::helpers::{
    ManualClock, STRONG_PASSWORD, TestApp, TestResponse, client_config, eventually,
    ready_result_expired, send_http1, start_server, tls_connect,
};

/// Generous: these wait for background work on a possibly loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn assert_storage_unavailable(response: &TestResponse) {
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        response.json()["code"],
        "storage_unavailable",
        "{:?}",
        response.body
    );
    let retry: u64 = response
        .header("retry-after")
        .expect("Retry-After on a storage failure")
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn a_flood_of_readiness_requests_costs_one_probe_a_second() {
    let probes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&probes);
    let app = TestApp::spawn_with(move |config| {
        // All 200 probes come from 127.0.0.1.
        config.server.max_connections_per_ip = 1000;
        config.hooks.before_readiness_probe = Some(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            // A slow probe, so that many callers arrive while it runs.
            Box::pin(tokio::time::sleep(Duration::from_millis(200)))
        }));
    })
    .await;

    let started = Instant::now();
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let (addr, tls) = (app.addr, Arc::clone(&app.tls));
            tokio::spawn(async move {
                let stream = tls_connect(addr, tls).await;
                send_http1(stream, "GET", "/health/ready", &[], None).await
            })
        })
        .collect();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.json(), serde_json::json!({"status": "ready"}));
    }
    let elapsed = started.elapsed();
    // A new probe starts only once the last result is a second old, however
    // slowly the machine got through the 200 requests.
    let allowed = 2 + elapsed.as_secs() as usize;
    let ran = probes.load(Ordering::SeqCst);
    assert!(
        (1..=allowed).contains(&ran),
        "{ran} probes for 200 requests in {elapsed:?}"
    );
}

#[tokio::test]
async fn housekeeping_deletes_expired_sessions_and_old_audit_rows() {
    let clock = ManualClock::new();
    let app_clock = Arc::clone(&clock);
    let app = TestApp::spawn_with(move |config| {
        config.clock = app_clock;
        config.audit_retention = time::Duration::days(30);
        config.housekeeping_every = Duration::from_millis(50);
    })
    .await;

    // An old login, with a rotation: two tokens in its family.
    let old = app.signed_in("old_timer").await;
    let rotated = app
        .refresh_with_cookie(&old.refresh_cookie().unwrap())
        .await;
    assert_eq!(rotated.status, 200);
    let old_audit = db::audit_total(&app);
    assert!(old_audit >= 2, "{old_audit}");

    // Past the 7-day refresh lifetime and the 30-day audit retention.
    clock.advance(time::Duration::days(31));
    let recent = app.signed_in("newcomer").await;
    let recent_family = db::session_of(&app, "newcomer");

    // Every audit row that is not about the newcomer is from before.
    eventually(
        PATIENCE,
        async || app.get("/health").await,
        |_| db::session_count(&app) == 1 && db::audit_rows_not_about(&app, "newcomer") == 0,
    )
    .await;
    assert_eq!(
        db::only_session(&app),
        recent_family,
        "the live login stays"
    );
    assert_eq!(
        db::refresh_token_counts(&app, &recent_family),
        (1, 1),
        "only the live login's token is left"
    );
    // The recent audit rows (registration and login of the newcomer) stay.
    let kept = db::audit_total(&app);
    assert!(kept >= 2, "{kept}");
    // Accounts are not touched, and the live login still works.
    assert_eq!(db::user_count(&app), 2);
    let me = app
        .get_with_token("/api/v1/users/me", &recent.access_token())
        .await;
    assert_eq!(me.status, 200);
}

/// Registers `username` on `app`, answering what the server said.
async fn try_register(app: &TestApp, username: &str) -> TestResponse {
    app.register(username, &format!("{username}@example.com"))
        .await
}

/// Registers fresh users until one is refused; every refusal must be the
/// storage's 503, never a 500.
async fn register_until_refused(mut register: impl AsyncFnMut(String) -> TestResponse) -> usize {
    for n in 0..400 {
        let response = register(format!("filler_{n}")).await;
        match response.status {
            201 => continue,
            503 => {
                assert_storage_unavailable(&response);
                return n;
            }
            other => panic!("registration {n}: {other} {:?}", response.body),
        }
    }
    panic!("the storage never filled up");
}

#[tokio::test]
async fn a_full_database_is_503_storage_unavailable_until_there_is_room_again() {
    // SQLite's own limit stands in for the disk: the same SQLITE_FULL.
    let app = TestApp::spawn_with(|config| config.max_db_pages = Some(64)).await;
    assert_eq!(app.get("/health/ready").await.status, 200);
    let signed_in = app.signed_in("early_bird").await;

    // Bring the file to its limit with rows the server never reads.
    db::fill_to_pages(&app.db_path(), 64);

    register_until_refused(async |name| try_register(&app, &name).await).await;
    // Reads still work.
    let me = app
        .get_with_token("/api/v1/users/me", &signed_in.access_token())
        .await;
    assert_eq!(me.status, 200);
    // Readiness says so at once: a write failed after its last probe.
    assert_storage_unavailable(&app.get("/health/ready").await);
    tokio::time::sleep(ready_result_expired()).await;
    assert_storage_unavailable(&app.get("/health/ready").await);

    // Room again: readiness finds out by itself, and writes work.
    db::make_room(&app.db_path());
    eventually(
        PATIENCE,
        async || app.get("/health/ready").await,
        |r| r.status == 200,
    )
    .await;
    assert_eq!(try_register(&app, "after_the_flood").await.status, 201);
    let login = app.login("early_bird@example.com", STRONG_PASSWORD).await;
    assert_eq!(login.status, 200);
}

/// A tmpfs mounted for the test and unmounted (lazily: the server may still
/// hold its files) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Self(at.to_owned()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `path` with one file, up to the last byte.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x55u8; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // The last partial chunk may have gone in; whatever is left is less than a page.
    let _ = file.sync_all();
}

#[tokio::test]
async fn a_full_disk_is_503_storage_unavailable_logged_once_and_recovered_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, "3m") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_is_503_storage_unavailable_logged_once_and_recovered_from: \
                 cannot mount a tmpfs here ({why}); the max_page_count test covers SQLITE_FULL"
            );
            return;
        }
    };
    let server = start_server(&data, &[]).await;
    let addr = server.addr;
    let tls = client_config(&data.join("tls-cert.pem"), &[b"http/1.1"]);
    let call = async |method: &str, path: &str, body: Option<serde_json::Value>| {
        let stream = tls_connect(addr, Arc::clone(&tls)).await;
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let headers: &[(&str, &str)] = if bytes.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        send_http1(stream, method, path, headers, bytes.as_deref()).await
    };
    let register = async |username: String| {
        call(
            "POST",
            "/api/v1/auth/register",
            Some(serde_json::json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": STRONG_PASSWORD,
            })),
        )
        .await
    };
    assert_eq!(call("GET", "/health/ready", None).await.status, 200);
    assert_eq!(register("first".to_owned()).await.status, 201);

    let full_since = Instant::now();
    let filler = data.join("filler");
    fill(&filler);
    let mut acknowledged = 1 + register_until_refused(async |name| register(name).await).await;
    // More attempts: each is a 503 or (when a checkpoint let the WAL start
    // over in place) a stored registration, never a 500.
    for n in 0..20 {
        let response = register(format!("later_{n}")).await;
        if response.status == 201 {
            acknowledged += 1;
        } else {
            assert_storage_unavailable(&response);
        }
    }
    let ready = call("GET", "/health/ready", None).await;
    assert_storage_unavailable(&ready);
    tokio::time::sleep(ready_result_expired()).await;
    assert_storage_unavailable(&call("GET", "/health/ready", None).await);

    std::fs::remove_file(&filler).unwrap();
    eventually(
        PATIENCE,
        async || call("GET", "/health/ready", None).await,
        |r| r.status == 200,
    )
    .await;
    assert_eq!(register("after_the_flood".to_owned()).await.status, 201);
    acknowledged += 1;
    assert_eq!(call("GET", "/health/ready", None).await.status, 200);
    let minutes_full = full_since.elapsed().as_secs() / 60;

    let (status, stdout, _) = server.stop_with_logs().await;
    assert!(status.success());
    // Every registration acknowledged before, during and after is there.
    let users = db::users_in(&db::database_file(&data));
    assert_eq!(users, acknowledged as i64);
    // Twenty-odd refusals: one error line a minute, not one per request.
    let errors = stdout
        .lines()
        .filter(|line| line.contains("storage cannot take writes"))
        .count();
    assert!(
        (1..=1 + minutes_full as usize).contains(&errors),
        "{errors} error lines:\n{stdout}"
    );
    assert!(!stdout.contains("request failed"), "{stdout}");
}
