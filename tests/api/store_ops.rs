//! `backup` while the server writes, and restoring from the copy.

use std::sync::Arc;

use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::helpers::db;
use crate::helpers::{
    TestApp, client_config, mode_of, run_cli, send_http1, start_server, tls_connect,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_is_consistent_and_restorable() {
    let app = Arc::new(TestApp::spawn().await);
    assert_eq!(
        app.register("before", "before@example.com").await.status,
        201
    );

    // Keep registering while the backup runs.
    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (app, writing, written) =
            (Arc::clone(&app), Arc::clone(&writing), Arc::clone(&written));
        tokio::spawn(async move {
            let mut i = 0;
            while writing.load(Ordering::Relaxed) && i < 500 {
                let response = app
                    .register(&format!("user{i}"), &format!("user{i}@example.com"))
                    .await;
                assert_eq!(response.status, 201);
                written.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    while written.load(Ordering::Relaxed) < 5 {
        tokio::task::yield_now().await;
    }

    let backup = app.dir.path().join("backup.db");
    let data_arg = app.data_dir();
    let output = run_cli(
        &[
            "backup",
            backup.to_str().unwrap(),
            "--data-dir",
            data_arg.to_str().unwrap(),
        ],
        None,
    )
    .await;
    writing.store(false, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(mode_of(&backup), 0o600);

    assert_eq!(db::integrity_check(&backup), "ok");
    let users = db::users_in(&backup);
    assert!(
        users >= 6,
        "the copy holds what was written before it: {users}"
    );
    // A self-contained file: nothing left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial") || n.ends_with("-wal"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Never overwrite an existing file.
    let again = run_cli(
        &[
            "backup",
            backup.to_str().unwrap(),
            "--data-dir",
            data_arg.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // Restore: serve a new data directory whose database is the copy.
    let restored = tempfile::tempdir().unwrap();
    let restored_data = restored.path().join("data");
    std::fs::create_dir_all(&restored_data).unwrap();
    std::fs::copy(&backup, restored_data.join("secure-api.db")).unwrap();
    let server = start_server(&restored_data, &[]).await;
    let config = client_config(&restored_data.join("tls-cert.pem"), &[b"http/1.1"]);
    let body = serde_json::json!({
        "username": "before", "email": "before@example.com", "password": crate::helpers::STRONG_PASSWORD
    })
    .to_string();
    let response = send_http1(
        tls_connect(server.addr, config.clone()).await,
        "POST",
        "/api/v1/auth/register",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(response.status, 400, "the restored copy knows the user");
    let login = json!({"email": "before@example.com", "password": crate::helpers::STRONG_PASSWORD})
        .to_string();
    let logged_in = send_http1(
        tls_connect(server.addr, config.clone()).await,
        "POST",
        "/api/v1/auth/login",
        &[("content-type", "application/json")],
        Some(login.as_bytes()),
    )
    .await;
    assert_eq!(logged_in.status, 200, "a user from the backup logs in");
    let ready = send_http1(
        tls_connect(server.addr, config).await,
        "GET",
        "/health/ready",
        &[],
        None,
    )
    .await;
    assert_eq!(ready.status, 200);
    let (status, _) = server.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn backup_without_a_database_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_cli(
        &[
            "backup",
            dir.path().join("copy.db").to_str().unwrap(),
            "--data-dir",
            dir.path().join("nothing").to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no database at"));
}
