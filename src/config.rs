//! Flags and environment turned into one validated `Config` for `serve`.
//! Secret files are located here; they are read by `app`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::auth::password::{self, HashParams, HashParamsError};
use crate::cli::{HashArgs, ServeArgs};
use crate::clock::{self, Clock};
use crate::server::ServerLimits;
use ipnet::IpNet;

use crate::http::cors::{BadOrigin, parse_origin};
use crate::http::ratelimit::{Rate, RateError, RateLimitConfig};
use crate::state::{ApiKeyRates, RuntimeSettings, TestHooks};

/// systemd credential names looked up in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_JWT_KEY: &str = "jwt-secret";
pub const CREDENTIAL_DATA_KEY: &str = "data-key";
pub const CREDENTIAL_TLS_CERT: &str = "tls-cert";
pub const CREDENTIAL_TLS_KEY: &str = "tls-key";

/// Files generated in the data directory when nothing else is configured.
pub const GENERATED_JWT_KEY: &str = "jwt-secret.key";
pub const GENERATED_DATA_KEY: &str = "data-key.key";
pub const GENERATED_TLS_CERT: &str = "tls-cert.pem";
pub const GENERATED_TLS_KEY: &str = "tls-key.pem";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Self-signed for localhost, kept in the data directory.
    Generated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Generated,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: TlsSource,
    pub jwt_key: KeySource,
    /// The key that seals TOTP secrets and keys backup-code hashes.
    pub data_key: KeySource,
    /// Issuer in `otpauth://` URIs.
    pub totp_issuer: String,
    /// A new API key's rate limit, and the most one may ask for.
    pub api_key_rates: ApiKeyRates,
    /// Validated once here (`--insecure-fast-hash` lets weak ones through).
    pub hash: argon2::Params,
    pub hash_workers: usize,
    pub hash_queue: usize,
    pub max_body_bytes: usize,
    pub server: ServerLimits,
    /// Users whose state each runtime thread keeps in memory; 0 turns it off.
    pub user_cache_entries: usize,
    pub access_token_ttl: time::Duration,
    pub refresh_lifetime: time::Duration,
    pub refresh_reuse_grace: time::Duration,
    /// Audit rows older than this are deleted.
    pub audit_retention: time::Duration,
    /// How often housekeeping runs (rate-limit state, retention).
    pub housekeeping_every: std::time::Duration,
    /// How often API key usage is written (and so how old the usage an owner
    /// reads may be: the contract allows 5 s).
    pub key_usage_flush_every: std::time::Duration,
    /// `PRAGMA max_page_count` for the serving pool; only tests set it, to
    /// get "database or disk is full" without filling a disk.
    pub max_db_pages: Option<u32>,
    pub cors_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    /// `None` turns every rate limit off.
    pub rate_limits: Option<RateLimitConfig>,
    pub redirect_http: Option<SocketAddr>,
    pub expose_openapi: bool,
    /// Start-up values of the settings an admin can change at run time.
    pub settings: RuntimeSettings,
    pub clock: Arc<dyn Clock>,
    /// Adds a route that panics; only tests set it.
    pub panic_probe: bool,
    /// Points where tests hold requests; empty outside tests.
    pub hooks: TestHooks,
}

impl Config {
    /// Defaults for everything, as `serve` with no flags would use them.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: data_dir.into(),
            tls: TlsSource::Generated,
            jwt_key: KeySource::Generated,
            data_key: KeySource::Generated,
            totp_issuer: "secure-api".to_owned(),
            api_key_rates: ApiKeyRates::default(),
            hash: password::default_params(),
            hash_workers: default_hash_workers(),
            hash_queue: 32,
            max_body_bytes: 16_384,
            server: ServerLimits::default(),
            user_cache_entries: 4096,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            rate_limits: Some(default_rate_limits()),
            redirect_http: None,
            expose_openapi: false,
            access_token_ttl: time::Duration::minutes(15),
            refresh_lifetime: time::Duration::days(7),
            refresh_reuse_grace: time::Duration::seconds(2),
            audit_retention: time::Duration::days(365),
            housekeeping_every: std::time::Duration::from_secs(60),
            key_usage_flush_every: std::time::Duration::from_secs(2),
            max_db_pages: None,
            settings: RuntimeSettings {
                registration_enabled: true,
                max_login_attempts: 5,
                lockout_minutes: 30,
            },
            clock: clock::system(),
            panic_probe: false,
            hooks: TestHooks::default(),
        }
    }

    /// `credentials_dir` is `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`);
    /// an explicit flag or variable wins over a credential.
    pub fn from_args(
        args: &ServeArgs,
        credentials_dir: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let credential = |name: &str| {
            credentials_dir
                .map(|dir| dir.join(name))
                .filter(|path| path.exists())
        };
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None) => match (
                credential(CREDENTIAL_TLS_CERT),
                credential(CREDENTIAL_TLS_KEY),
            ) {
                (Some(cert), Some(key)) => TlsSource::Files { cert, key },
                (None, None) => TlsSource::Generated,
                _ => return Err(ConfigError::HalfTlsCredentials),
            },
            _ => return Err(ConfigError::HalfTlsFlags),
        };
        let jwt_key = match (&args.jwt_secret_file, credential(CREDENTIAL_JWT_KEY)) {
            (Some(path), _) => KeySource::File(path.clone()),
            (None, Some(path)) => KeySource::File(path),
            (None, None) => KeySource::Generated,
        };
        let data_key = match (&args.data_key_file, credential(CREDENTIAL_DATA_KEY)) {
            (Some(path), _) => KeySource::File(path.clone()),
            (None, Some(path)) => KeySource::File(path),
            (None, None) => KeySource::Generated,
        };
        let totp_issuer = args.totp_issuer.trim();
        if totp_issuer.is_empty() || totp_issuer.chars().count() > 64 || totp_issuer.contains(':') {
            return Err(ConfigError::TotpIssuer);
        }
        let rate = |flag: &'static str, raw: &str| {
            Rate::parse(raw).map_err(|source| ConfigError::Rate { flag, source })
        };
        let api_key_rates = ApiKeyRates {
            default: rate("--api-key-rate-limit", &args.api_key_rate_limit)?,
            max: rate("--api-key-max-rate-limit", &args.api_key_max_rate_limit)?,
        };
        if !api_key_rates.default.at_most(api_key_rates.max) {
            return Err(ConfigError::ApiKeyRates);
        }
        let hash = hash_params(&args.hash)?;
        in_range("--max-body-bytes", args.max_body_bytes, 1, 64 * 1024 * 1024)?;
        in_range("--max-connections", args.max_connections, 1, 1_000_000)?;
        in_range(
            "--max-connections-per-ip",
            args.max_connections_per_ip,
            1,
            1_000_000,
        )?;
        in_range("--hash-queue", args.hash_queue, 0, 100_000)?;
        in_range(
            "--user-cache-entries",
            args.user_cache_entries,
            0,
            1_000_000,
        )?;
        let hash_workers = match args.hash_workers {
            Some(n) => in_range("--hash-workers", n, 1, 1024)?,
            None => default_hash_workers(),
        };
        let mut config = Self::new(args.data_dir.data_dir.clone());
        config.listen = args.listen;
        config.tls = tls;
        config.jwt_key = jwt_key;
        config.data_key = data_key;
        config.totp_issuer = totp_issuer.to_owned();
        config.api_key_rates = api_key_rates;
        config.hash = hash;
        config.hash_workers = hash_workers;
        config.hash_queue = args.hash_queue;
        config.user_cache_entries = args.user_cache_entries;
        config.max_body_bytes = args.max_body_bytes;
        config.server.max_connections = args.max_connections;
        config.server.max_connections_per_ip = args.max_connections_per_ip;
        config.cors_origins = args
            .cors_origins
            .iter()
            .map(|o| parse_origin(o))
            .collect::<Result<_, _>>()?;
        config.trusted_proxies = args
            .trusted_proxies
            .iter()
            .map(|cidr| parse_cidr(cidr))
            .collect::<Result<_, _>>()?;
        let rate = |flag: &'static str, raw: &str| {
            Rate::parse_optional(raw).map_err(|source| ConfigError::Rate { flag, source })
        };
        config.rate_limits = match rate("--rate-limit", &args.rate_limit)? {
            None => None,
            Some(api) => Some(RateLimitConfig {
                api: Some(api),
                login: rate("--login-rate-limit", &args.login_rate_limit)?,
                register: rate("--register-rate-limit", &args.register_rate_limit)?,
                refresh: rate("--refresh-rate-limit", &args.refresh_rate_limit)?,
                max_keys: MAX_RATE_LIMIT_KEYS,
            }),
        };
        config.redirect_http = args.redirect_http;
        config.expose_openapi = args.expose_openapi;
        config.access_token_ttl = time::Duration::minutes(i64::from(in_range(
            "--access-token-minutes",
            args.access_token_minutes,
            1,
            1440,
        )?));
        config.refresh_lifetime = time::Duration::days(i64::from(in_range(
            "--refresh-token-days",
            args.refresh_token_days,
            1,
            365,
        )?));
        config.refresh_reuse_grace = time::Duration::seconds(i64::from(in_range(
            "--refresh-reuse-grace-seconds",
            args.refresh_reuse_grace_seconds,
            0,
            60,
        )?));
        config.audit_retention = time::Duration::days(i64::from(in_range(
            "--audit-retention-days",
            args.audit_retention_days,
            1,
            36_500,
        )?));
        config.settings.max_login_attempts =
            in_range("--max-login-attempts", args.max_login_attempts, 1, 100)?;
        config.settings.lockout_minutes =
            in_range("--lockout-minutes", args.lockout_minutes, 1, 10_080)?;
        Ok(config)
    }
}

/// Clients tracked per rate limiter before it starts afresh (about 100 bytes each).
pub const MAX_RATE_LIMIT_KEYS: usize = 200_000;

pub fn default_rate_limits() -> RateLimitConfig {
    let rate = |count: u32| {
        std::num::NonZeroU32::new(count).map(|count| Rate {
            count,
            period: std::time::Duration::from_secs(60),
        })
    };
    RateLimitConfig {
        api: rate(60),
        login: rate(5),
        register: rate(3),
        refresh: rate(10),
        max_keys: MAX_RATE_LIMIT_KEYS,
    }
}

/// A network in CIDR form; a bare address is that one host.
fn parse_cidr(raw: &str) -> Result<IpNet, ConfigError> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| ConfigError::Proxy(raw.to_owned()))
}

/// `value` when it lies in `min..=max`: upper bounds keep every derived
/// count (semaphores, buffers) sane.
fn in_range<T>(flag: &'static str, value: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            flag,
            min: min.to_string(),
            max: max.to_string(),
        })
    }
}

/// Why `serve`'s flags and variables do not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "only one of the credentials {CREDENTIAL_TLS_CERT} and {CREDENTIAL_TLS_KEY} is present; \
         provide both or neither"
    )]
    HalfTlsCredentials,
    #[error("--tls-cert and --tls-key go together")]
    HalfTlsFlags,
    #[error("--totp-issuer must be 1 to 64 characters without a colon")]
    TotpIssuer,
    #[error("--api-key-rate-limit must not exceed --api-key-max-rate-limit")]
    ApiKeyRates,
    #[error("{flag} must be between {min} and {max}")]
    OutOfRange {
        flag: &'static str,
        min: String,
        max: String,
    },
    #[error(transparent)]
    Hash(#[from] HashParamsError),
    #[error(transparent)]
    Origin(#[from] BadOrigin),
    #[error("--trusted-proxy {0:?} is not an address or CIDR network")]
    Proxy(String),
    #[error("{flag} {source}")]
    Rate {
        flag: &'static str,
        source: RateError,
    },
}

/// The Argon2 parameters of the flags, validated: weak ones only with
/// `--insecure-fast-hash`.
pub fn hash_params(args: &HashArgs) -> Result<argon2::Params, HashParamsError> {
    HashParams {
        memory_kib: args.argon2_memory_kib,
        time_cost: args.argon2_time_cost,
        parallelism: args.argon2_parallelism,
    }
    .validate(args.insecure_fast_hash)
}

/// Hashing is pure CPU, so at most one worker per core; and each worker
/// keeps its Argon2 memory (64 MiB by default), so no more than four by
/// default: that fits the unit's `MemoryMax=` on any host, and four already
/// verify more logins a second than the login rate limits let through.
pub const MAX_DEFAULT_HASH_WORKERS: usize = 4;

fn default_hash_workers() -> usize {
    hash_workers_for_cores(std::thread::available_parallelism().map_or(1, usize::from))
}

fn hash_workers_for_cores(cores: usize) -> usize {
    cores.clamp(1, MAX_DEFAULT_HASH_WORKERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let mut full = vec!["secure-api", "serve"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_generate_secrets_in_the_data_dir() {
        let config = Config::from_args(&serve_args(&[]), None).unwrap();
        assert_eq!(config.tls, TlsSource::Generated);
        assert_eq!(config.jwt_key, KeySource::Generated);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.max_body_bytes, 16_384);
        assert_eq!(config.server.max_connections_per_ip, 64);
        assert_eq!(config.audit_retention, time::Duration::days(365));
    }

    #[test]
    fn audit_retention_comes_from_the_flag() {
        let config =
            Config::from_args(&serve_args(&["--audit-retention-days", "30"]), None).unwrap();
        assert_eq!(config.audit_retention, time::Duration::days(30));
    }

    #[test]
    fn systemd_credentials_are_used_when_no_flag_is_given() {
        let dir = tempfile::tempdir().unwrap();
        for name in [CREDENTIAL_JWT_KEY, CREDENTIAL_TLS_CERT, CREDENTIAL_TLS_KEY] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let config = Config::from_args(&serve_args(&[]), Some(dir.path())).unwrap();
        assert_eq!(
            config.jwt_key,
            KeySource::File(dir.path().join(CREDENTIAL_JWT_KEY))
        );
        assert!(matches!(config.tls, TlsSource::Files { .. }));

        let flagged = serve_args(&["--jwt-secret-file", "/etc/key"]);
        let config = Config::from_args(&flagged, Some(dir.path())).unwrap();
        assert_eq!(config.jwt_key, KeySource::File("/etc/key".into()));
    }

    #[test]
    fn proxies_origins_and_rates_are_parsed_from_flags() {
        let args = serve_args(&[
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "::1",
            "--cors-origin",
            "https://app.example.com",
            "--login-rate-limit",
            "off",
        ]);
        let config = Config::from_args(&args, None).unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(
            config.cors_origins,
            vec!["https://app.example.com".to_owned()]
        );
        let limits = config.rate_limits.unwrap();
        assert_eq!(limits.login, None);
        assert_eq!(limits.api.unwrap().count.get(), 60);
        let capped = serve_args(&["--max-connections-per-ip", "2"]);
        assert_eq!(
            Config::from_args(&capped, None)
                .unwrap()
                .server
                .max_connections_per_ip,
            2
        );
        let off = Config::from_args(&serve_args(&["--rate-limit", "off"]), None).unwrap();
        assert!(off.rate_limits.is_none());
        for bad in [
            vec!["--max-connections", "18446744073709551615"],
            vec!["--max-connections-per-ip", "0"],
            vec!["--hash-workers", "0"],
            vec!["--hash-queue", "999999999"],
            vec!["--trusted-proxy", "10.0.0.0/33"],
            vec!["--cors-origin", "*"],
            vec!["--cors-origin", "null"],
            vec!["--rate-limit", "lots"],
            vec!["--audit-retention-days", "0"],
        ] {
            assert!(
                Config::from_args(&serve_args(&bad), None).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hash_workers_default_to_the_cores_but_at_most_four() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let config = Config::from_args(&serve_args(&[]), None).unwrap();
        assert_eq!(config.hash_workers, cores.min(MAX_DEFAULT_HASH_WORKERS));
        // The 16-core host of the audit gets 4 x 64 MiB, not 16 x 64 MiB.
        assert_eq!(hash_workers_for_cores(16), 4);
        assert_eq!(hash_workers_for_cores(2), 2);
        // An explicit choice is the operator's, within the memory check.
        let many = Config::from_args(&serve_args(&["--hash-workers", "16"]), None).unwrap();
        assert_eq!(many.hash_workers, 16);
    }

    #[test]
    fn weak_argon2_parameters_need_the_insecure_flag() {
        let weak = serve_args(&["--argon2-memory-kib", "1024", "--argon2-time-cost", "1"]);
        assert!(
            Config::from_args(&weak, None)
                .unwrap_err()
                .to_string()
                .contains("OWASP")
        );
        let allowed = serve_args(&[
            "--argon2-memory-kib",
            "1024",
            "--argon2-time-cost",
            "1",
            "--insecure-fast-hash",
        ]);
        assert!(Config::from_args(&allowed, None).is_ok());
    }
}
