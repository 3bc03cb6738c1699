//! `Application::build(config)`: everything `serve` needs, bound and loaded,
//! used alike by `main` and the tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::accounts::{api_keys, two_factor};
use crate::auth::data_key::DataKey;
use crate::auth::keys;
use crate::auth::password::PasswordHasher;
use crate::auth::tokens::TokenSigner;
use crate::config::{
    Config, GENERATED_DATA_KEY, GENERATED_JWT_KEY, GENERATED_TLS_CERT, GENERATED_TLS_KEY,
    KeySource, TlsSource,
};
use crate::domain::key_usage::{USAGE_DAYS, UsageLog};
use crate::files;
use crate::http::client_ip::ClientIpResolver;
use crate::http::cors::Cors;
use crate::http::middleware::{Edge, HttpApp, TRACKED_API_KEYS};
use crate::http::ratelimit::{KeyLimits, RateLimits};
use crate::http::router::Router;
use crate::routes::table::{self, Optional};
use crate::server::per_ip::PerIpConnections;
use crate::server::redirect::Redirects;
use crate::server::{self, ServerLimits, TlsConnections, tls};
use crate::state::{AppState, HttpLimits, Readiness, SessionPolicy};
use crate::store::rows::Cutoffs;
use crate::store::{PoolOptions, Store};

pub struct Application {
    listener: TcpListener,
    redirect_listener: Option<TcpListener>,
    certs: Arc<tls::CertStore>,
    acceptor: TlsAcceptor,
    app: Arc<HttpApp>,
    per_ip: Arc<PerIpConnections>,
    limits: ServerLimits,
    local_addr: SocketAddr,
    notices: Vec<String>,
    housekeeping: Housekeeping,
}

/// Rows pruned per write transaction: small enough that a batch holds the
/// write lock for milliseconds, not seconds.
const PRUNE_BATCH: usize = 500;

/// Expired sessions are deleted only this long after their expiry: until
/// then a late refresh (JWT leeway, a clock step) still finds its row and is
/// answered as it always was.
const SESSION_GRACE: time::Duration = time::Duration::hours(1);

/// The periodic work beside serving: rate-limit state and retention.
struct Housekeeping {
    state: Arc<AppState>,
    every: std::time::Duration,
    audit_retention: time::Duration,
    usage_flush_every: std::time::Duration,
}

impl Housekeeping {
    async fn run(self, app: Arc<HttpApp>, per_ip: Arc<PerIpConnections>) {
        let mut ticks = tokio::time::interval(self.every);
        // After a pause (a suspended machine), one pass, not a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let tracked = app.tidy() + per_ip.tidy();
            tracing::debug!(tracked, "rate-limit and per-client state tidied");
            self.prune().await;
        }
    }

    async fn prune(&self) {
        let now = self.state.clock.now();
        let cutoffs = Cutoffs {
            sessions_before: now - SESSION_GRACE,
            audit_before: now - self.audit_retention,
            usage_before: now.date() - time::Duration::days(i64::from(USAGE_DAYS) - 1),
        };
        match self.state.store.prune(cutoffs, PRUNE_BATCH).await {
            Ok(pruned) if pruned.any() => tracing::info!(
                refresh_tokens = pruned.refresh_tokens,
                refresh_families = pruned.refresh_families,
                audit_rows = pruned.audit_rows,
                key_usage_days = pruned.key_usage_days,
                "expired sessions, old audit rows and old key usage deleted"
            ),
            Ok(_) => {}
            // A failing disk is logged by the store; the next pass retries.
            Err(e) if e.is_unavailable() => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}

/// Writes API key usage every `every` until stopped: a server under load
/// writes one small transaction per period instead of one per request.
async fn flush_usage_periodically(state: Arc<AppState>, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        flush_usage(&state).await;
    }
}

async fn flush_usage(state: &AppState) {
    let now = state.clock.now();
    let started = Instant::now();
    match api_keys::flush_usage(&state.store, &state.key_usage, now).await {
        Ok(keys) => {
            if keys > 0 {
                // The benchmark reads these to report what flushing costs.
                let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tracing::debug!(keys, duration_us, "API key usage written");
            }
        }
        // A failing disk is logged by the store; the tally waits for the next flush.
        Err(e) if e.is_unavailable() => {}
        Err(e) => tracing::warn!(error = %e, "API key usage not written; kept for the next flush"),
    }
}

/// Database connections in the pool.
const DB_CONNECTIONS: u32 = 8;

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let started_at = Instant::now();
        files::ensure_private_dir(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let mut notices: Vec<String> = files::shared_dir_warning(&config.data_dir)
            .into_iter()
            .collect();

        let (cert_path, key_path) = match &config.tls {
            TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
            TlsSource::Generated => {
                let cert = config.data_dir.join(GENERATED_TLS_CERT);
                let key = config.data_dir.join(GENERATED_TLS_KEY);
                if !cert.exists() && !key.exists() {
                    tls::generate(&cert, &key)?;
                    notices.push(format!(
                        "generated a self-signed TLS certificate for localhost: {} (key {})",
                        cert.display(),
                        key.display()
                    ));
                }
                (cert, key)
            }
        };
        let certs = Arc::new(tls::CertStore::load(&cert_path, &key_path)?);
        let acceptor = TlsAcceptor::from(tls::server_config(Arc::clone(&certs))?);

        let jwt_key = match &config.jwt_key {
            KeySource::File(path) => keys::load(path)?,
            KeySource::Generated => {
                let path = config.data_dir.join(GENERATED_JWT_KEY);
                let (key, was_generated) = keys::load_or_generate(&path)?;
                if was_generated {
                    notices.push(format!(
                        "generated a random 256-bit JWT key: {}",
                        path.display()
                    ));
                }
                key
            }
        };

        let data_key = match &config.data_key {
            KeySource::File(path) => DataKey::load(path, false)?.0,
            KeySource::Generated => {
                let path = config.data_dir.join(GENERATED_DATA_KEY);
                let (key, was_generated) = DataKey::load(&path, true)?;
                if was_generated {
                    notices.push(format!(
                        "generated a random 256-bit data key: {}",
                        path.display()
                    ));
                }
                key
            }
        };

        let hasher =
            PasswordHasher::new(config.hash.clone(), config.hash_workers, config.hash_queue);

        let data_dir = config.data_dir.clone();
        let pool_options = PoolOptions {
            connections: DB_CONNECTIONS,
            user_cache_entries: config.user_cache_entries,
            max_pages: config.max_db_pages,
        };
        let (store, stored_settings) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&data_dir, pool_options)?;
            let stored = store.settings_blocking()?;
            Ok::<_, crate::store::StoreError>((store, stored))
        })
        .await
        .context("opening the database")??;
        two_factor::adopt_data_key(&store, data_key.fingerprint(), config.clock.now())
            .await
            .context("checking the data key against the database")?;
        let mut settings = config.settings;
        for warning in settings.apply_stored(&stored_settings) {
            tracing::warn!("{warning}");
        }

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let redirect_listener = match config.redirect_http {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for HTTP redirects"))?,
            ),
            None => None,
        };

        let state = Arc::new(AppState {
            store,
            hasher,
            tokens: TokenSigner::new(&jwt_key, config.access_token_ttl),
            clock: config.clock,
            limits: HttpLimits {
                max_body_bytes: config.max_body_bytes,
                body_read_timeout: config.server.body_read_timeout,
            },
            sessions: SessionPolicy {
                refresh_lifetime: config.refresh_lifetime,
                reuse_grace: config.refresh_reuse_grace,
            },
            settings: RwLock::new(settings),
            started_at,
            browser_origins: config.cors_origins.clone(),
            hooks: config.hooks.clone(),
            readiness: Readiness::default(),
            data_key: Arc::new(data_key),
            totp_issuer: config.totp_issuer.clone(),
            api_key_rates: config.api_key_rates,
            key_usage: UsageLog::default(),
        });
        // The dummy hash that unknown emails are checked against is made now,
        // so the first such login costs no more than any other.
        let warm = Arc::clone(&state);
        tokio::spawn(async move { warm.hasher.warm_up().await });
        let rate_limits = config.rate_limits.map(RateLimits::new).transpose()?;
        let per_ip = Arc::new(PerIpConnections::new(
            config.server.max_connections_per_ip,
            config.trusted_proxies.clone(),
        ));
        // `--rate-limit off` turns every limit off, the keys' included.
        let key_limits = rate_limits
            .is_some()
            .then(|| KeyLimits::new(TRACKED_API_KEYS));
        let edge = Edge {
            client_ip: ClientIpResolver::new(config.trusted_proxies.clone()),
            cors: Cors::new(config.cors_origins.clone()),
            rate_limits,
            key_limits,
            ..Edge::default()
        };
        let housekeeping = Housekeeping {
            state: Arc::clone(&state),
            every: config.housekeeping_every,
            audit_retention: config.audit_retention,
            usage_flush_every: config.key_usage_flush_every,
        };
        let app = Arc::new(HttpApp::new(
            state,
            Router::new(table::table(Optional {
                openapi: config.expose_openapi,
                panic_probe: config.panic_probe,
            })),
            edge,
        ));
        Ok(Self {
            listener,
            redirect_listener,
            certs,
            acceptor,
            app,
            per_ip,
            limits: config.server,
            local_addr,
            notices,
            housekeeping,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The plain-HTTP redirect listener's address, when there is one.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The served certificate, for reloading it (SIGHUP).
    pub fn certificates(&self) -> Arc<tls::CertStore> {
        Arc::clone(&self.certs)
    }

    /// What the operator must hear about from this start: secrets that
    /// were generated, a data directory open to others.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let state = Arc::clone(&self.housekeeping.state);
        let usage = tokio::spawn(flush_usage_periodically(
            Arc::clone(&state),
            self.housekeeping.usage_flush_every,
        ));
        let housekeeping = tokio::spawn(
            self.housekeeping
                .run(Arc::clone(&self.app), Arc::clone(&self.per_ip)),
        );
        let (stop_tx, stop) = watch::channel(false);
        let https = server::accept_loop(
            "https",
            self.listener,
            Arc::new(TlsConnections::new(self.acceptor, self.app, self.limits)),
            Arc::clone(&self.per_ip),
            self.limits,
            stop.clone(),
        );
        let https_port = self.local_addr.port();
        let redirects = async {
            if let Some(listener) = self.redirect_listener {
                let redirects = Arc::new(Redirects::new(https_port, self.limits));
                server::accept_loop(
                    "redirect",
                    listener,
                    redirects,
                    self.per_ip,
                    self.limits,
                    stop,
                )
                .await;
            }
        };
        let stopping = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(https, redirects, stopping);
        housekeeping.abort();
        usage.abort();
        // The requests drained above are counted too.
        flush_usage(&state).await;
    }
}
