//! The real binary as a child process: commands, and `serve` until it
//! logs its address.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::*;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_secure-api")
}

/// Runs the binary to completion with `stdin` as its standard input.
pub async fn run_cli(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    run_cli_with_env(args, &[], stdin).await
}

/// `run_cli` with these environment variables (and no others).
pub async fn run_cli_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("command finishes")
        .unwrap()
}

/// `secure-api serve` as a child process, ready once it logged its address.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: tokio::task::JoinHandle<String>,
    stdout: tokio::task::JoinHandle<String>,
    /// Every log line so far, and a wake-up for each new one.
    live_log: Arc<(std::sync::Mutex<String>, tokio::sync::Notify)>,
    /// The log lines written up to readiness.
    pub startup_log: String,
}

impl ServerProcess {
    /// Waits until a log line contains `needle`: a test proceeds on the
    /// event itself, not on a guess of how long it takes.
    pub async fn wait_for_log(&self, needle: &str) {
        let (log, new_line) = &*self.live_log;
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let notified = new_line.notified();
                if log.lock().unwrap().contains(needle) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(
            seen.is_ok(),
            "no log line with {needle:?}: {}",
            log.lock().unwrap()
        );
    }

    /// Sends SIGTERM, waits for the exit, and returns the status and stderr.
    pub async fn stop(self) -> (std::process::ExitStatus, String) {
        let (status, _, stderr) = self.stop_with_logs().await;
        (status, stderr)
    }

    /// Waits for an exit already caused (by a signal sent elsewhere).
    pub async fn stop_after_signal(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits")
            .unwrap();
        (status, self.stderr.await.unwrap())
    }

    /// Like `stop`, also returning every log line written to stdout.
    pub async fn stop_with_logs(mut self) -> (std::process::ExitStatus, String, String) {
        send_signal(&self.child, "TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server stops after SIGTERM")
            .unwrap();
        (
            status,
            self.stdout.await.unwrap(),
            self.stderr.await.unwrap(),
        )
    }
}

pub fn serve_args<'a>(data_dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--rate-limit",
        "off",
    ];
    args.extend_from_slice(&FAST_HASH_ARGS);
    args.extend_from_slice(extra);
    args
}

pub async fn start_server(data_dir: &Path, extra: &[&str]) -> ServerProcess {
    start_server_with_env(data_dir, extra, &[]).await
}

pub async fn start_server_with_env(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> ServerProcess {
    let mut command = Command::new(bin());
    command
        .args(serve_args(data_dir, extra))
        .env_clear()
        .envs(env.iter().copied());
    start_serving(command).await
}

/// Runs `command`, a prepared `serve` (possibly behind a wrapper), until it
/// logs its address.
pub async fn start_serving(mut command: Command) -> ServerProcess {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text).await;
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(address) = entry.get("address").and_then(|a| a.as_str()) {
                return address.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server becomes ready");
    let startup_log = log.clone();
    let live_log = Arc::new((std::sync::Mutex::new(log), tokio::sync::Notify::new()));
    let writer = Arc::clone(&live_log);
    // Keep draining stdout so the server never blocks on a full pipe.
    let stdout = tokio::spawn(async move {
        let (log, new_line) = &*writer;
        while let Ok(Some(line)) = stdout.next_line().await {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
            drop(log);
            new_line.notify_waiters();
        }
        log.lock().unwrap().clone()
    });
    ServerProcess {
        child,
        addr,
        stderr,
        stdout,
        live_log,
        startup_log,
    }
}

/// Sends SIGTERM (no unsafe code: through kill(1)).
pub fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().expect("child is running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `secure-api create-admin` with the password on stdin.
pub async fn create_admin(
    data: &std::path::Path,
    username: &str,
    email: &str,
    password: &str,
) -> std::process::Output {
    let mut args = vec![
        "create-admin",
        "--data-dir",
        data.to_str().unwrap(),
        "--username",
        username,
        "--email",
        email,
    ];
    args.extend_from_slice(&FAST_HASH_ARGS);
    run_cli(&args, Some(password)).await
}
