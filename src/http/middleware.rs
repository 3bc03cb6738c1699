//! What wraps every request, in the order it runs: request id and client IP
//! → CORS preflight (answered here) → rate limit (429) → route match
//! (404/405) → body precheck (413/415) → authentication and the route's
//! access rule (401/403) → handler, a panic in it turned into a logged 500;
//! then on the way out, whatever the outcome: the CORS grant, security
//! headers, `X-Request-Id`, the access log line, and for a request made
//! with a known API key, its use tallied (`domain::key_usage`).
//! A HEAD request gets its GET response without the body.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::{Body as _, Incoming};

use super::authenticate::{API_KEY_HEADER, AuthError, Principal, Rejection, Via, authenticate};
use super::client_ip::ClientIpResolver;
use super::cors::Cors;
use super::error::ApiError;
use super::extract::precheck_body;
use super::ratelimit::{Decision, KeyLimits, OncePerMinute, RateInfo, RateLimits};
use super::response::Body;
use super::router::{Access, Ctx, Match, Route, Router};
use crate::domain::audit::{AuditEvent, Event, Origin};
use crate::state::AppState;
use crate::telemetry::{self, context::RequestContext};

/// The connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// The application as hyper sees it: a function from request to response
/// that never fails.
pub struct HttpApp {
    state: Arc<AppState>,
    router: Router,
    edge: Edge,
}

/// What the HTTP layer decides before any handler: who the client is, which
/// origins may call, how fast.
pub struct Edge {
    pub client_ip: ClientIpResolver,
    pub cors: Cors,
    pub rate_limits: Option<RateLimits>,
    /// Each API key's own limit; `None` when rate limits are off.
    pub key_limits: Option<KeyLimits>,
    /// One `token_rejected` audit event per client per minute: a client
    /// replaying a dead token must not write a row per request.
    pub token_rejections: OncePerMinute,
}

/// Clients tracked by the token-rejection audit gate before it starts afresh.
const TOKEN_REJECTION_CLIENTS: usize = 100_000;
/// API keys whose budgets are tracked before a limiter starts afresh.
pub const TRACKED_API_KEYS: usize = 100_000;

impl Default for Edge {
    fn default() -> Self {
        Self {
            client_ip: ClientIpResolver::default(),
            cors: Cors::default(),
            rate_limits: None,
            key_limits: None,
            token_rejections: OncePerMinute::new(TOKEN_REJECTION_CLIENTS),
        }
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 64;
const MAX_LOGGED_USER_AGENT: usize = 200;

const SECURITY_HEADERS: [(HeaderName, HeaderValue); 6] = [
    (
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    ),
    (
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ),
    (
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    ),
    (
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    ),
];
const HSTS: (HeaderName, HeaderValue) = (
    HeaderName::from_static("strict-transport-security"),
    HeaderValue::from_static("max-age=31536000; includeSubDomains"),
);
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

impl HttpApp {
    pub fn new(state: Arc<AppState>, router: Router, edge: Edge) -> Self {
        Self {
            state,
            router,
            edge,
        }
    }

    /// Drops idle rate-limit entries; called every minute.
    pub fn tidy(&self) -> usize {
        self.edge.rate_limits.as_ref().map_or(0, RateLimits::tidy)
            + self.edge.token_rejections.tidy()
    }

    pub async fn handle(&self, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
        let request_id: Arc<str> = incoming_request_id(req.headers())
            .map(Arc::from)
            .unwrap_or_else(|| {
                let mut text = [0u8; uuid::fmt::Simple::LENGTH];
                Arc::from(&*uuid::Uuid::new_v4().simple().encode_lower(&mut text))
            });
        let client_ip = self.edge.client_ip.resolve(conn.peer.ip(), req.headers());
        let context = RequestContext::new(Arc::clone(&request_id), client_ip);
        // Boxed once here, the request's future (a few KiB) is not copied
        // again each time a layer above moves it.
        let handling = Box::pin(self.handle_in_context(conn, request_id, client_ip, req));
        let response = telemetry::context::within(Arc::clone(&context), handling).await;
        if let Some(key_id) = context.api_key_id() {
            let denied = matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
            );
            let now = self.state.clock.now();
            self.state.key_usage.note(key_id, now, client_ip, denied);
        }
        response
    }

    async fn handle_in_context(
        &self,
        conn: ConnInfo,
        request_id: Arc<str>,
        client_ip: IpAddr,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let is_api = req.uri().path().starts_with("/api/");
        let user_agent = logged_user_agent(req.headers());
        let origin = Cors::origin_of(req.headers());

        // A preflight carries its own (possibly withheld) grant; only actual
        // requests get the grant added here.
        let (route, mut response) = if Cors::is_preflight(req.method(), req.headers()) {
            self.preflight(&req, &request_id)
        } else {
            // Boxed: held inline, rustc laid this future out so that the
            // enclosing one took 6.9 KiB instead of 0.8 KiB, all of it copied
            // into place on every request.
            let (route, mut response) =
                Box::pin(self.dispatch(client_ip, Arc::clone(&request_id), req)).await;
            self.edge.cors.apply(origin.as_ref(), &mut response);
            (route, response)
        };

        let headers = response.headers_mut();
        headers.reserve(SECURITY_HEADERS.len() + 3);
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, value);
        }
        if conn.tls {
            headers.insert(HSTS.0, HSTS.1);
        }
        if is_api {
            headers.insert(CACHE_CONTROL, NO_STORE);
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert(X_REQUEST_ID, value);
        }
        if method == Method::HEAD {
            drop_body(&mut response);
        }

        telemetry::access(&telemetry::AccessRecord {
            method: method.as_str(),
            route,
            status: response.status().as_u16(),
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            user_agent: user_agent.as_deref().unwrap_or("-"),
        });
        response
    }

    /// A CORS preflight: answered here, before limits and authentication.
    fn preflight(
        &self,
        req: &Request<Incoming>,
        request_id: &str,
    ) -> (&'static str, Response<Body>) {
        match self.router.methods_at(req.uri().path()) {
            Some((template, methods)) => {
                (template, self.edge.cors.preflight(req.headers(), &methods))
            }
            None => ("-", ApiError::NotFound.into_response(request_id)),
        }
    }

    /// Rate limit, then route, body precheck, authentication, handler.
    /// Returns the matched route template (for the access log) and the response.
    async fn dispatch(
        &self,
        client_ip: IpAddr,
        request_id: Arc<str>,
        req: Request<Incoming>,
    ) -> (&'static str, Response<Body>) {
        // A request with an API key counts against the key's own limit once
        // the key is known to be valid; against its address otherwise
        // (see `route`).
        let keyed = req.headers().contains_key(&API_KEY_HEADER);
        let mut rate_info = None;
        if !keyed {
            match self
                .ip_limit(client_ip, &request_id, req.uri().path())
                .await
            {
                Ok(info) => rate_info = info,
                Err(limited) => return ("-", limited.into_response(&request_id)),
            }
        }
        let (template, mut response) = self.route(client_ip, request_id, req, keyed).await;
        if let Some(info) = rate_info {
            rate_limit_headers(&mut response, info);
        }
        (template, response)
    }

    /// The client address's limits on this path: a 429 when over one.
    async fn ip_limit(
        &self,
        client_ip: IpAddr,
        request_id: &str,
        path: &str,
    ) -> Result<Option<RateInfo>, Limited> {
        let Some(limits) = &self.edge.rate_limits else {
            return Ok(None);
        };
        match limits.check(path, client_ip) {
            Some(Decision::Limited {
                info,
                retry_after_secs,
            }) => {
                if limits.should_audit(client_ip) {
                    // Boxed: a rare branch should not grow every request's future.
                    Box::pin(self.audit_rate_limited(client_ip, request_id, path)).await;
                }
                Err(Limited {
                    info,
                    retry_after_secs,
                })
            }
            Some(Decision::Allowed(info)) => Ok(Some(info)),
            None => Ok(None),
        }
    }

    /// The key's own limit: a 429 when over it.
    fn key_limit(&self, principal: &Principal) -> Result<Option<RateInfo>, Limited> {
        let (Some(limits), Via::ApiKey { key_id, rate, .. }) =
            (&self.edge.key_limits, &principal.via)
        else {
            return Ok(None);
        };
        match limits.check(key_id, *rate) {
            Decision::Limited {
                info,
                retry_after_secs,
            } => Err(Limited {
                info,
                retry_after_secs,
            }),
            Decision::Allowed(info) => Ok(Some(info)),
        }
    }

    async fn audit_rate_limited(&self, client_ip: IpAddr, request_id: &str, path: &str) {
        // The path as matched by the limiter only: the query is never logged.
        let event = Event::RateLimited {
            path: path.chars().take(100).collect(),
        };
        self.record_audit(client_ip, request_id, None, event).await;
    }

    async fn record_audit(
        &self,
        client_ip: IpAddr,
        request_id: &str,
        user_id: Option<&str>,
        event: Event,
    ) {
        let origin = Origin {
            client_ip: Some(client_ip.to_string()),
            request_id: Some(request_id.to_owned()),
        };
        let now = self.state.clock.now();
        let event = AuditEvent::new(&origin, user_id, event);
        self.state.store.record_audit(event, now).await;
    }

    async fn route(
        &self,
        client_ip: IpAddr,
        request_id: Arc<str>,
        req: Request<Incoming>,
        keyed: bool,
    ) -> (&'static str, Response<Body>) {
        let found = self.router.find(req.method(), req.uri().path());
        let mut rate_info = None;
        // A key authenticates nothing on a public route, an unknown path or
        // a refused body: there the address pays, as without a key.
        let key_counts =
            matches!(&found, Match::Found { route, .. } if route.access != Access::Public);
        let body_ok = precheck_body(&req, self.state.limits.max_body_bytes);
        if keyed && (!key_counts || body_ok.is_err()) {
            match self
                .ip_limit(client_ip, &request_id, req.uri().path())
                .await
            {
                Ok(info) => rate_info = info,
                Err(limited) => return ("-", limited.into_response(&request_id)),
            }
        }
        let (template, route, params) = match found {
            Match::Found {
                route,
                template,
                params,
            } => (template, route, params),
            Match::MethodNotAllowed { template, allow } => {
                let error = ApiError::MethodNotAllowed { allow };
                return (template, error.into_response(&request_id));
            }
            Match::NotFound => return ("-", ApiError::NotFound.into_response(&request_id)),
        };
        if let Err(error) = body_ok {
            return (template, error.into_response(&request_id));
        }
        let principal = match self
            .authenticate_for(route.access, &req, client_ip, &request_id)
            .await
        {
            Ok(principal) => principal,
            Err(error) => {
                // An invalid key counts against the address it came from.
                if keyed
                    && let Err(limited) = self
                        .ip_limit(client_ip, &request_id, req.uri().path())
                        .await
                {
                    return (template, limited.into_response(&request_id));
                }
                return (template, error.into_response(&request_id));
            }
        };
        if let Some(principal) = &principal {
            match self.key_limit(principal) {
                Ok(Some(info)) => rate_info = Some(info),
                Ok(None) => {}
                Err(limited) => return (template, limited.into_response(&request_id)),
            }
        }
        let found = Found { route, params };
        let mut response = self
            .authorized(found, principal, req, client_ip, request_id)
            .await;
        if let Some(info) = rate_info {
            rate_limit_headers(&mut response, info);
        }
        (template, response)
    }

    /// The route's permission, then the handler.
    async fn authorized(
        &self,
        found: Found<'_>,
        principal: Option<Principal>,
        req: Request<Incoming>,
        client_ip: IpAddr,
        request_id: Arc<str>,
    ) -> Response<Body> {
        let Found { route, params } = found;
        if let Some(principal) = &principal
            && let Err(error) = self
                .permit(route.access, principal, &req, client_ip, &request_id)
                .await
        {
            return error.into_response(&request_id);
        }
        let ctx = Ctx {
            state: Arc::clone(&self.state),
            request_id: Arc::clone(&request_id),
            client_ip,
            params,
            principal,
        };
        let outcome = AssertUnwindSafe((route.handler)(ctx, req))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::internal(anyhow::anyhow!(
                    "request handler panicked"
                )))
            });
        outcome.unwrap_or_else(|error| error.into_response(&request_id))
    }
}

/// A matched route and the values of its `{param}` segments.
struct Found<'a> {
    route: &'a Route,
    params: Vec<String>,
}

impl HttpApp {
    /// Authentication, for a route that is not public; a rejected
    /// credential is audited (at most once a minute per client).
    async fn authenticate_for(
        &self,
        access: Access,
        req: &Request<Incoming>,
        client_ip: IpAddr,
        request_id: &str,
    ) -> Result<Option<Principal>, ApiError> {
        if access == Access::Public {
            return Ok(None);
        }
        match authenticate(&self.state, req.headers()).await {
            Ok(principal) => {
                telemetry::context::set_user(principal.user_id());
                Ok(Some(principal))
            }
            Err(error) => {
                if let AuthError::Rejected { reason, user_id } = &error
                    && self.edge.token_rejections.allows(client_ip)
                {
                    let event = match *reason {
                        Rejection::Token(reason) => Event::TokenRejected { reason },
                        Rejection::Key(reason) => Event::ApiKeyRejected { reason },
                    };
                    Box::pin(self.record_audit(client_ip, request_id, user_id.as_deref(), event))
                        .await;
                }
                Err(error.into())
            }
        }
    }

    /// The route's rule for an authenticated caller: a session where one is
    /// needed, and the permission. A denied permission is a 403 and an
    /// audit event.
    async fn permit(
        &self,
        access: Access,
        principal: &Principal,
        req: &Request<Incoming>,
        client_ip: IpAddr,
        request_id: &str,
    ) -> Result<(), ApiError> {
        let (required, session_only) = match access {
            Access::Public | Access::Authenticated => (None, false),
            Access::Permission(permission) => (Some(permission), false),
            Access::Session => (None, true),
            Access::SessionPermission(permission) => (Some(permission), true),
        };
        if session_only && principal.api_key_id().is_some() {
            return Err(SESSION_REQUIRED);
        }
        if let Some(permission) = required
            && !principal.permits(permission)
        {
            let event = Event::PermissionDenied {
                permission: permission.as_str(),
                role: principal.role(),
                method: req.method().as_str().to_owned(),
            };
            let user_id = Some(principal.user_id());
            Box::pin(self.record_audit(client_ip, request_id, user_id, event)).await;
            return Err(ApiError::Forbidden {
                code: "forbidden",
                detail: "You do not have permission to perform this action",
            });
        }
        Ok(())
    }
}

/// A request over a rate limit.
struct Limited {
    info: RateInfo,
    retry_after_secs: u64,
}

impl Limited {
    fn into_response(self, request_id: &str) -> Response<Body> {
        let retry_after_secs = self.retry_after_secs;
        let mut response = ApiError::RateLimited { retry_after_secs }.into_response(request_id);
        rate_limit_headers(&mut response, self.info);
        response
    }
}

/// What an API key gets on a route that only a session may call.
pub const SESSION_REQUIRED: ApiError = ApiError::Forbidden {
    code: "session_required",
    detail: "This action needs a signed-in session, not an API key",
};

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn rate_limit_headers(response: &mut Response<Body>, info: RateInfo) {
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(info.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(info.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(info.reset_secs));
}

/// HEAD answers what GET would, headers and length included, without the
/// body. HTTP/1 would leave the body out by itself, but HTTP/2 sends it after
/// headers that promised none, which clients reject as a protocol error; so
/// it goes here, for both.
fn drop_body(response: &mut Response<Body>) {
    let length = response.body().size_hint().exact();
    *response.body_mut() = Body::new(bytes::Bytes::new());
    let status = response.status();
    let may_have_length = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    if let Some(length) = length
        && may_have_length
        && !response.headers().contains_key(CONTENT_LENGTH)
    {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// A client's own request id is kept when it is short and plain enough to be
/// logged and echoed safely; otherwise a fresh one is made.
fn incoming_request_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(X_REQUEST_ID)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    plain.then_some(value)
}

fn logged_user_agent(headers: &HeaderMap) -> Option<String> {
    let agent = headers.get(USER_AGENT)?.to_str().ok()?;
    Some(agent.chars().take(MAX_LOGGED_USER_AGENT).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_status_headers_and_length_but_not_the_body() {
        let mut response = super::super::response::with_body(
            StatusCode::NOT_FOUND,
            super::super::response::APPLICATION_JSON,
            bytes::Bytes::from_static(b"{\"status\":404}"),
        );
        drop_body(&mut response);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_LENGTH], "14");
        assert_eq!(response.body().size_hint().exact(), Some(0));

        let mut empty = Response::new(Body::new(bytes::Bytes::new()));
        *empty.status_mut() = StatusCode::NO_CONTENT;
        drop_body(&mut empty);
        assert!(!empty.headers().contains_key(CONTENT_LENGTH));
    }

    #[test]
    fn request_ids_are_echoed_only_when_plain_and_short() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_XYZ"));
        assert_eq!(incoming_request_id(&headers), Some("abc-123_XYZ"));
        for bad in ["", "has space", "semi;colon", "<script>"] {
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            assert_eq!(incoming_request_id(&headers), None, "{bad:?}");
        }
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(65)).unwrap(),
        );
        assert_eq!(incoming_request_id(&headers), None);
    }
}
