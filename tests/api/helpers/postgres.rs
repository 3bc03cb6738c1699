//! A private, throwaway PostgreSQL cluster for the tests that need one: one
//! per test binary, started on first use from the installed server binaries
//! (`initdb` in a temp dir, TLS on with a CA and certificate made here, a
//! random port, as the `postgres` OS user when the tests run as root), with
//! a fresh database per test. A watchdog process stops it and removes its
//! directory when the test binary exits, however it exits.
//!
//! Where PostgreSQL is not installed the tests that need it print one loud
//! line and pass without running; with `SECURE_API_REQUIRE_POSTGRES=1` (set
//! by `.ci/run`) a missing PostgreSQL fails them instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The role the tests connect as (not a superuser).
pub const ROLE: &str = "secure_api";

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    password: String,
    /// The CA that signed the server's certificate (for `sslrootcert=`).
    pub ca_file: PathBuf,
    /// A CA that signed nothing here: verification against it must fail.
    pub other_ca_file: PathBuf,
    as_postgres: bool,
}

static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();

/// The shared cluster, or `None` (after one loud line) where PostgreSQL is
/// not installed and not required.
pub fn cluster() -> Option<&'static PgCluster> {
    CLUSTER
        .get_or_init(|| match server_binaries() {
            Some(bin) => Some(PgCluster::start(bin)),
            None if std::env::var_os("SECURE_API_REQUIRE_POSTGRES").is_some_and(|v| v == "1") => {
                panic!(
                    "SECURE_API_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries \
                     (initdb, pg_ctl) were found: apt-get install postgresql"
                )
            }
            None => {
                eprintln!(
                    "\n*** SKIPPED: PostgreSQL tests: no PostgreSQL server binaries (initdb) \
                     found; apt-get install postgresql to run them ***\n"
                );
                None
            }
        })
        .as_ref()
}

/// Debian's `/usr/lib/postgresql/<version>/bin`, newest first, or `initdb`
/// on the PATH.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
}

fn run(mut command: Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A CA, a certificate it signed for `localhost` only (so that 127.0.0.1
/// is a wrong name), and another CA.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let make_ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (params, key, cert)
    };
    let (ca_params, ca_key, ca_cert) = make_ca("secure-api test CA");
    let (_, _, other_cert) = make_ca("a CA that signed nothing");
    let leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let key = write("server.key", leaf_key.serialize_pem());
    // PostgreSQL refuses a key others may read.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (
        write("ca.pem", ca_cert.pem()),
        write("other-ca.pem", other_cert.pem()),
        write("server.crt", leaf.pem()),
        key,
    )
}

impl PgCluster {
    fn start(bin: PathBuf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("secure-api-pg.")
            .tempdir()
            .unwrap()
            .keep();
        let as_postgres = rustix::process::geteuid().is_root();
        let password: String = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(dir.join("pw"), &password).unwrap();
        let (ca_file, other_ca_file, cert, key) = certificates(&dir);
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            password,
            ca_file,
            other_ca_file,
            as_postgres,
        };
        if as_postgres {
            // initdb refuses root: the cluster belongs to `postgres`.
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:").arg(&cluster.dir);
            run(chown, "chown the cluster directory to postgres");
        }
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(cluster.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", cluster.dir.join("pw").display()))
            .args(["-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
        run(initdb, "initdb");
        let socket_dir = cluster.dir.display().to_string();
        let hba = "local all all trust\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   hostnossl all all 0.0.0.0/0 reject\n";
        std::fs::write(cluster.dir.join("data/pg_hba.conf"), hba).unwrap();
        // A port taken by something else: try another.
        for attempt in 0..5 {
            let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 40_000) as u16;
            let conf = format!(
                "listen_addresses = '127.0.0.1'\nport = {port}\n\
                 unix_socket_directories = '{socket_dir}'\nssl = on\n\
                 ssl_cert_file = '{}'\nssl_key_file = '{}'\n\
                 fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                 max_connections = 300\n",
                cert.display(),
                key.display()
            );
            std::fs::write(cluster.dir.join("data/postgresql.auto.conf"), conf).unwrap();
            let mut start = cluster.command("pg_ctl");
            start
                .arg("-D")
                .arg(cluster.dir.join("data"))
                .arg("-l")
                .arg(cluster.dir.join("server.log"))
                .args(["-w", "-t", "30", "start"]);
            if start.output().is_ok_and(|o| o.status.success()) {
                cluster.port = port;
                break;
            }
            assert!(
                attempt < 4,
                "PostgreSQL did not start: see {}",
                cluster.dir.display()
            );
        }
        cluster.watch_for_exit();
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{}'", cluster.password),
        );
        cluster
    }

    /// A server binary, run as `postgres` when the tests run as root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Stops the cluster and removes its directory once this test binary
    /// has exited (the tests have no teardown of their own).
    fn watch_for_exit(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = if self.as_postgres {
                format!(
                    "runuser -u postgres -- '{}'",
                    self.bin.join("pg_ctl").display()
                )
            } else {
                format!("'{}'", self.bin.join("pg_ctl").display())
            },
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        // Its own session (setsid): an interrupt of the test run's process
        // group must not take the watchdog down before the cluster. Never
        // waited for: it outlives this process by design.
        #[allow(clippy::zombie_processes)]
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    }

    /// Runs `sql` as the superuser over the Unix socket.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut psql = self.command("psql");
        psql.args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.dir)
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-d", database, "-c", sql]);
        run(psql, "psql")
    }

    /// A new, empty database owned by the test role.
    pub fn new_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER {ROLE}"));
        name
    }

    /// The URL of `database` over TLS, verified against the test CA.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{}@localhost:{}/{database}?sslrootcert={}",
            self.password,
            self.port,
            self.ca_file.display()
        )
    }

    /// The same over the Unix socket: no TLS, trust authentication.
    pub fn socket_url(&self, database: &str) -> String {
        let dir = self.dir.display().to_string().replace('/', "%2F");
        format!("postgres://{ROLE}@{dir}:{}/{database}", self.port)
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}
