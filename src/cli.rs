//! The command line: clap definitions only. Every `serve` flag also reads a
//! `SECURE_API_*` environment variable; the flag wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "secure-api",
    version,
    about = "A self-contained HTTPS API for users, sessions and roles",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API over HTTPS
    Serve(Box<ServeArgs>),
    /// Bring the database schema up to date
    Migrate(MigrateArgs),
    /// Create an active admin account (password from a prompt, stdin or --password-file)
    CreateAdmin(CreateAdminArgs),
    /// Write a consistent copy of the database to FILE, also while serving
    Backup(BackupArgs),
    /// Create missing secrets for systemd credentials: a JWT key and a self-signed certificate
    InitSecrets(InitSecretsArgs),
    /// Clear the lockout of an account (recovery when every admin is locked out)
    Unlock(UnlockArgs),
    /// Turn two-factor authentication off for an account (recovery when the
    /// device is lost and no other admin can reset it); ends its sessions
    #[command(name = "reset-2fa")]
    ResetTwoFactor(ResetTwoFactorArgs),
}

#[derive(Debug, Args)]
pub struct InitSecretsArgs {
    /// Where to write jwt-secret, data-key, tls-cert.pem and tls-key.pem (existing files are kept)
    #[arg(long, default_value = "/etc/secure-api", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Directory of the database, generated key and certificate
    #[arg(
        long,
        env = "SECURE_API_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Argon2id memory cost in KiB
    #[arg(long, env = "SECURE_API_ARGON2_MEMORY_KIB", default_value_t = 65_536)]
    pub argon2_memory_kib: u32,
    /// Argon2id time cost (iterations)
    #[arg(long, env = "SECURE_API_ARGON2_TIME_COST", default_value_t = 3)]
    pub argon2_time_cost: u32,
    /// Argon2id parallelism (lanes)
    #[arg(long, env = "SECURE_API_ARGON2_PARALLELISM", default_value_t = 4)]
    pub argon2_parallelism: u32,
    /// Allow Argon2 parameters below OWASP's minimum (tests only)
    #[arg(long, env = "SECURE_API_INSECURE_FAST_HASH")]
    pub insecure_fast_hash: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for journald and log shippers)
    Json,
    /// Human-readable lines
    Console,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on
    #[arg(
        long,
        env = "SECURE_API_LISTEN",
        default_value = "127.0.0.1:8443",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub data_dir: DataDirArgs,
    /// PEM certificate chain [default: generated self-signed in the data dir]
    #[arg(
        long,
        env = "SECURE_API_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, mode 0600 or stricter
    #[arg(
        long,
        env = "SECURE_API_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// JWT signing key file, at least 32 bytes [default: generated in the data dir]
    #[arg(long, env = "SECURE_API_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Data key file, exactly 32 bytes, that encrypts TOTP secrets at rest
    /// [default: generated in the data dir]
    #[arg(long, env = "SECURE_API_DATA_KEY_FILE", value_name = "FILE")]
    pub data_key_file: Option<PathBuf>,
    /// Issuer shown by authenticator apps next to the account name
    #[arg(
        long,
        env = "SECURE_API_TOTP_ISSUER",
        default_value = "secure-api",
        value_name = "NAME"
    )]
    pub totp_issuer: String,
    #[command(flatten)]
    pub hash: HashArgs,
    /// Password hashes computed at once [default: CPU cores, at most 4: each
    /// worker keeps --argon2-memory-kib of memory, and serve refuses to start
    /// when workers x that + 256 MiB exceed the cgroup memory limit]
    #[arg(long, env = "SECURE_API_HASH_WORKERS", value_name = "N")]
    pub hash_workers: Option<usize>,
    /// Password hashes allowed to wait; past that, 503 with Retry-After
    #[arg(
        long,
        env = "SECURE_API_HASH_QUEUE",
        default_value_t = 32,
        value_name = "N"
    )]
    pub hash_queue: usize,
    /// Users whose state (active flag, token version, profile) each runtime
    /// thread keeps in memory; any write to the database clears it. 0 turns
    /// it off
    #[arg(
        long,
        env = "SECURE_API_USER_CACHE_ENTRIES",
        default_value_t = 4096,
        value_name = "N"
    )]
    pub user_cache_entries: usize,
    /// Largest accepted request body in bytes
    #[arg(
        long,
        env = "SECURE_API_MAX_BODY_BYTES",
        default_value_t = 16_384,
        value_name = "BYTES"
    )]
    pub max_body_bytes: usize,
    /// Most simultaneous client connections
    #[arg(
        long,
        env = "SECURE_API_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub max_connections: usize,
    /// Most simultaneous connections from one client IP (an IPv6 client by
    /// its /64); trusted proxies are exempt. Past it, new connections from
    /// that client are closed at once
    #[arg(
        long,
        env = "SECURE_API_MAX_CONNECTIONS_PER_IP",
        default_value_t = 64,
        value_name = "N"
    )]
    pub max_connections_per_ip: u32,
    /// Origin allowed to call the API from a browser, exactly as sent (repeat)
    #[arg(
        long = "cors-origin",
        env = "SECURE_API_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,
    /// Proxy network (CIDR) whose X-Forwarded-For is believed (repeat)
    #[arg(
        long = "trusted-proxy",
        env = "SECURE_API_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<String>,
    /// Per-client limit on /api/ (N/second, N/minute, N/hour); `off` disables every limit
    #[arg(
        long,
        env = "SECURE_API_RATE_LIMIT",
        default_value = "60/minute",
        value_name = "RATE"
    )]
    pub rate_limit: String,
    /// Per-client limit on login
    #[arg(
        long,
        env = "SECURE_API_LOGIN_RATE_LIMIT",
        default_value = "5/minute",
        value_name = "RATE"
    )]
    pub login_rate_limit: String,
    /// Per-client limit on registration
    #[arg(
        long,
        env = "SECURE_API_REGISTER_RATE_LIMIT",
        default_value = "3/minute",
        value_name = "RATE"
    )]
    pub register_rate_limit: String,
    /// Per-client limit on token refresh
    #[arg(
        long,
        env = "SECURE_API_REFRESH_RATE_LIMIT",
        default_value = "10/minute",
        value_name = "RATE"
    )]
    pub refresh_rate_limit: String,
    /// Default rate limit of a new API key
    #[arg(
        long,
        env = "SECURE_API_API_KEY_RATE_LIMIT",
        default_value = "600/minute",
        value_name = "RATE"
    )]
    pub api_key_rate_limit: String,
    /// The highest rate limit an API key may ask for
    #[arg(
        long,
        env = "SECURE_API_API_KEY_MAX_RATE_LIMIT",
        default_value = "6000/minute",
        value_name = "RATE"
    )]
    pub api_key_max_rate_limit: String,
    /// Also listen for plain HTTP here and redirect every request to HTTPS
    #[arg(long, env = "SECURE_API_REDIRECT_HTTP", value_name = "ADDR")]
    pub redirect_http: Option<SocketAddr>,
    /// Serve the OpenAPI document at /api/v1/openapi.json
    #[arg(long, env = "SECURE_API_EXPOSE_OPENAPI")]
    pub expose_openapi: bool,
    /// Lifetime of access tokens
    #[arg(
        long,
        env = "SECURE_API_ACCESS_TOKEN_MINUTES",
        default_value_t = 15,
        value_name = "MINUTES"
    )]
    pub access_token_minutes: u32,
    /// Lifetime of a login's refresh tokens (rotation does not extend it)
    #[arg(
        long,
        env = "SECURE_API_REFRESH_TOKEN_DAYS",
        default_value_t = 7,
        value_name = "DAYS"
    )]
    pub refresh_token_days: u32,
    /// A rotated refresh token presented again this soon is refused without
    /// revoking its login (two tabs refreshing at once)
    #[arg(
        long,
        env = "SECURE_API_REFRESH_REUSE_GRACE_SECONDS",
        default_value_t = 2,
        value_name = "SECONDS"
    )]
    pub refresh_reuse_grace_seconds: u32,
    /// Audit rows older than this are deleted by the housekeeping that runs every minute (at least 1)
    #[arg(
        long,
        env = "SECURE_API_AUDIT_RETENTION_DAYS",
        default_value_t = 365,
        value_name = "DAYS"
    )]
    pub audit_retention_days: u32,
    /// Consecutive failed logins that lock an account
    #[arg(
        long,
        env = "SECURE_API_MAX_LOGIN_ATTEMPTS",
        default_value_t = 5,
        value_name = "N"
    )]
    pub max_login_attempts: u32,
    /// How long a lockout lasts
    #[arg(
        long,
        env = "SECURE_API_LOCKOUT_MINUTES",
        default_value_t = 30,
        value_name = "MINUTES"
    )]
    pub lockout_minutes: u32,
    /// Log line format
    #[arg(
        long,
        env = "SECURE_API_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace), or per-target levels such as `warn,secure_api=info`
    #[arg(
        long,
        env = "SECURE_API_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub data_dir: DataDirArgs,
    /// Only report: exit 0 when up to date, 1 when a migration is pending
    #[arg(long)]
    pub check: bool,
    /// A `postgres://` URL: migrate that PostgreSQL database instead of the
    /// SQLite file in the data directory (sslmode=verify-full by default,
    /// sslrootcert= names the CA; prefer the environment variable to the
    /// flag when the URL holds a password)
    #[arg(
        long,
        env = "SECURE_API_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateAdminArgs {
    #[command(flatten)]
    pub data_dir: DataDirArgs,
    /// Username of the new admin
    #[arg(long)]
    pub username: String,
    /// Email of the new admin
    #[arg(long)]
    pub email: String,
    /// Read the password from this file (one trailing newline is dropped)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub hash: HashArgs,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub data_dir: DataDirArgs,
    /// Email of the locked-out account
    #[arg(long)]
    pub email: String,
}

#[derive(Debug, Args)]
pub struct ResetTwoFactorArgs {
    #[command(flatten)]
    pub data_dir: DataDirArgs,
    /// Email of the account
    #[arg(long)]
    pub email: String,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["file", "dir"]))]
pub struct BackupArgs {
    #[command(flatten)]
    pub data_dir: DataDirArgs,
    /// Where to write the copy; must not exist yet
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Instead of FILE: write secure-api-<UTC time>.db into this directory
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// With --dir: keep only the newest N backups there
    #[arg(long, requires = "dir", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
}
