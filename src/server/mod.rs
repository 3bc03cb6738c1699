//! Sockets and TLS: the accept loop, the per-connection task (TLS handshake
//! under a deadline, then hyper, then an idle watchdog), the connection caps
//! (in total and per client) and graceful shutdown.

pub mod per_ip;
pub mod redirect;
pub mod signals;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::http::middleware::{ConnInfo, HttpApp};
use per_ip::PerIpConnections;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// Connections one client IP may hold at once (trusted proxies exempt).
    pub max_connections_per_ip: u32,
    pub tls_handshake_timeout: Duration,
    /// How long a connection may go without a complete request head after
    /// the TLS handshake or its previous response, whatever the protocol;
    /// also how long an HTTP/2 connection may stay without a request.
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// How long in-flight requests may take to finish after a stop signal.
    pub shutdown_grace: Duration,
    pub h2_max_concurrent_streams: u32,
    pub max_header_bytes: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 64,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            h2_max_concurrent_streams: 100,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// The protocol builders, made once: ALPN decides which one a connection
/// gets. Only a connection that negotiated no protocol is sniffed (`auto`).
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ServerLimits) -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192) as usize);
        auto.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.max_header_bytes)
            .max_pending_accept_reset_streams(20)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let h1 = auto.clone().http1_only();
        let h2 = auto.clone().http2_only();
        Self { auto, h1, h2 }
    }
}

/// What a listener does with each connection it accepted. One accept loop,
/// with its caps and its drain, serves the HTTPS listener and the redirect.
pub trait Connections: Send + Sync + 'static {
    /// Serves one connection until it ends; once `stop` turns true, it
    /// finishes what is in flight and closes.
    fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send;
}

/// Resolves once `stop` is true (at once if it already is); the guard
/// `wait_for` returns stays inside, so no caller holds it across an await.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Accepts connections until `stop` turns true, then stops accepting and
/// waits, up to the grace period, for the connections to finish their
/// in-flight requests (they see `stop` too). `name` tells the listeners
/// apart in the log.
pub async fn accept_loop<C: Connections>(
    name: &'static str,
    listener: TcpListener,
    connections: Arc<C>,
    per_ip: Arc<PerIpConnections>,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::warn!(
                    listener = name,
                    max_connections = limits.max_connections,
                    "connection limit reached; new connections wait in the listen queue"
                );
                tokio::select! {
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends pass; spinning on them would not help.
                    tracing::warn!(listener = name, error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        // Over its own cap, a client's new connection is closed at once,
        // before any TLS work, and its global slot goes back with `permit`.
        let Some(slot) = per_ip.admit(peer.ip()) else {
            continue;
        };
        let serving = Arc::clone(&connections).serve(tcp, peer, stop.clone());
        tokio::spawn(async move {
            // The connection's places under both caps, given back when its
            // task ends, however it ends.
            let _held = (permit, slot);
            serving.await;
        });
    }

    drop(listener);
    tracing::info!(
        listener = name,
        "shutting down: no new connections; draining in-flight requests"
    );
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all)).await {
        Ok(_) => tracing::info!(listener = name, "all connections closed"),
        Err(_) => tracing::warn!(
            listener = name,
            grace_secs = limits.shutdown_grace.as_secs(),
            "grace period over; closing the remaining connections"
        ),
    }
}

/// The HTTPS listener's connections: TLS handshake under a deadline, then
/// hyper with the protocol ALPN chose, beside an idle watchdog.
pub struct TlsConnections {
    acceptor: TlsAcceptor,
    app: Arc<HttpApp>,
    builders: Builders,
    limits: ServerLimits,
}

impl TlsConnections {
    pub fn new(acceptor: TlsAcceptor, app: Arc<HttpApp>, limits: ServerLimits) -> Self {
        Self {
            acceptor,
            app,
            builders: Builders::new(&limits),
            limits,
        }
    }
}

impl Connections for TlsConnections {
    async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let _ = tcp.set_nodelay(true);
        let handshake =
            tokio::time::timeout(self.limits.tls_handshake_timeout, self.acceptor.accept(tcp));
        let tls = tokio::select! {
            result = handshake => match result {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let builder = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => &self.builders.h2,
            Some(b"http/1.1") => &self.builders.h1,
            _ => &self.builders.auto,
        };
        let conn_info = ConnInfo { peer, tls: true };
        let activity = Arc::new(Activity::new());
        let watched = Arc::clone(&activity);
        let app = Arc::clone(&self.app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            let busy = Busy::start(Arc::clone(&watched));
            async move {
                let response = app.handle(conn_info, req).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            () = activity.idle_for(self.limits.header_read_timeout) => {
                tracing::debug!(%peer, "connection idle; closing it");
                // HTTP/1: closed at once (nothing is in flight); HTTP/2: GOAWAY;
                // still sniffing: cancelled. A client that ignores the GOAWAY or
                // stops reading is dropped after the shutdown grace.
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.limits.shutdown_grace, conn.as_mut()).await;
            }
        }
    }
}

/// What a connection's idle watchdog reads: the requests being handled and
/// when the last one ended. Hyper's own header timer covers HTTP/1 only once
/// the protocol is known; this one also covers a connection still being
/// sniffed and HTTP/2, whose requests have no head timer at all.
struct Activity {
    started: Instant,
    busy: AtomicUsize,
    /// Milliseconds after `started` when the last request ended.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// Resolves once no request has been handled for `timeout`: since the
    /// connection started (right after the handshake) or since the last
    /// response.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            // `busy` before `idle_since_ms`: a request that ends after this
            // read moves the deadline, which the next round sees.
            if self.busy.load(Ordering::Acquire) > 0 {
                // A request's own deadlines (body read, handler) bound it.
                tokio::time::sleep(timeout).await;
                continue;
            }
            let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            let deadline = self.started + idle_since + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One request being handled; the connection is not idle while it lives.
/// Costs the request a reference count, two atomic operations and a clock
/// read; no allocation.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.fetch_max(elapsed, Ordering::AcqRel);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}
