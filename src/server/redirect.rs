//! The optional plain-HTTP listener: every request gets a 308 to the same
//! path on HTTPS, and nothing else is served in clear text.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HOST, HeaderValue, LOCATION};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Connections, ServerLimits, stopped};

/// The redirect listener's connections: HTTP/1.1 only, one request each.
pub struct Redirects {
    https_port: u16,
    limits: ServerLimits,
}

impl Redirects {
    pub fn new(https_port: u16, limits: ServerLimits) -> Self {
        Self { https_port, limits }
    }
}

impl Connections for Redirects {
    async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        _peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let https_port = self.https_port;
        let service =
            service_fn(move |req| async move { Ok::<_, Infallible>(redirect(&req, https_port)) });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(false);
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

fn redirect(req: &Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_without_port);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut response = Response::new(Full::new(Bytes::new()));
    let location = host.and_then(|host| {
        let port = if https_port == 443 {
            String::new()
        } else {
            format!(":{https_port}")
        };
        HeaderValue::from_str(&format!("https://{host}{port}{path}")).ok()
    });
    match location {
        Some(location) => {
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            response.headers_mut().insert(LOCATION, location);
        }
        None => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// The host part of a `Host` header, when it is a plain name or address;
/// anything else would let a client shape the redirect target.
fn host_without_port(header: &str) -> Option<&str> {
    let host = if let Some(rest) = header.strip_prefix('[') {
        let end = rest.find(']')?;
        header.get(..end + 2)?
    } else {
        header.split(':').next()?
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
    (!host.is_empty() && host.len() <= 253 && host.chars().all(plain)).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_shape_the_target() {
        assert_eq!(host_without_port("example.com:8080"), Some("example.com"));
        assert_eq!(host_without_port("[::1]:80"), Some("[::1]"));
        assert_eq!(host_without_port("evil.com/@good.com"), None);
        assert_eq!(host_without_port(""), None);
        assert_eq!(host_without_port("a b"), None);
    }
}
