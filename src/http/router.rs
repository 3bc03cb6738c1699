//! Generic routing: the request context a handler gets, the handler type,
//! the access rule every route declares, and path/method matching. It knows
//! no handler; the table lives with them in `routes::table`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::HeaderValue;
use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::authenticate::Principal;
use super::error::ApiError;
use super::response::Body;
use crate::domain::rbac::Permission;
use crate::state::AppState;

pub type HandlerResult = Result<Response<Body>, ApiError>;
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
pub type Handler = fn(Ctx, Request<Incoming>) -> HandlerFuture;

/// What a handler knows about the request besides the request itself.
pub struct Ctx {
    pub state: Arc<AppState>,
    pub request_id: Arc<str>,
    pub client_ip: std::net::IpAddr,
    /// Values of the `{param}` segments, in order.
    pub params: Vec<String>,
    /// Set on every route that is not `Access::Public`.
    pub principal: Option<Principal>,
}

impl Ctx {
    /// The authenticated caller; present on every route that is not public.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        self.principal.as_ref().ok_or(ApiError::Unauthorized {
            code: "not_authenticated",
            detail: "Authentication required",
        })
    }

    /// The `{id}` segment as a user id; anything else names no user (404).
    pub fn user_id_param(&self) -> Result<crate::domain::user::UserId, ApiError> {
        self.params
            .first()
            .and_then(|raw| crate::domain::user::UserId::parse(raw))
            .ok_or(ApiError::NotFound)
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any authenticated, active account.
    Authenticated,
    /// An authenticated account whose role grants this permission (and,
    /// for an API key, whose scopes include it).
    Permission(Permission),
    /// Any authenticated account, through a session only: an API key gets
    /// 403 `session_required` (password, 2FA, sessions, logout-all).
    Session,
    /// `Permission`, through a session only (managing API keys).
    SessionPermission(Permission),
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

/// Wraps an `async fn(Ctx, Request<Incoming>) -> HandlerResult` as a `Handler`.
#[macro_export]
macro_rules! handler {
    ($f:path) => {{
        fn boxed(
            ctx: $crate::http::router::Ctx,
            req: ::http::Request<::hyper::body::Incoming>,
        ) -> $crate::http::router::HandlerFuture {
            Box::pin($f(ctx, req))
        }
        boxed as $crate::http::router::Handler
    }};
}

impl Route {
    pub fn new(method: Method, path: &'static str, access: Access, handler: Handler) -> Self {
        Self {
            method,
            path,
            access,
            handler,
        }
    }
}

enum Segment {
    Literal(&'static str),
    Param,
}

struct PathEntry {
    template: &'static str,
    segments: Vec<Segment>,
    routes: Vec<Route>,
    allow: HeaderValue,
}

pub enum Match<'a> {
    Found {
        route: &'a Route,
        template: &'static str,
        params: Vec<String>,
    },
    MethodNotAllowed {
        template: &'static str,
        allow: HeaderValue,
    },
    NotFound,
}

pub struct Router {
    paths: Vec<PathEntry>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut paths: Vec<PathEntry> = Vec::new();
        for route in routes {
            match paths.iter_mut().find(|p| p.template == route.path) {
                Some(entry) => entry.routes.push(route),
                None => paths.push(PathEntry {
                    template: route.path,
                    segments: parse_template(route.path),
                    routes: vec![route],
                    allow: HeaderValue::from_static(""),
                }),
            }
        }
        // Literal segments must win over `{param}` ones whatever the
        // declaration order (`/users/me` before `/users/{id}`).
        paths.sort_by_key(|p| {
            p.segments
                .iter()
                .filter(|s| matches!(s, Segment::Param))
                .count()
        });
        for entry in &mut paths {
            let mut methods: Vec<&str> = entry.routes.iter().map(|r| r.method.as_str()).collect();
            if entry.routes.iter().any(|r| r.method == Method::GET) {
                methods.push("HEAD");
            }
            entry.allow = HeaderValue::from_str(&methods.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
        }
        Self { paths }
    }

    /// Matches `path` (one trailing slash ignored) and `method`.
    pub fn find(&self, method: &Method, path: &str) -> Match<'_> {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        for entry in &self.paths {
            let Some(params) = match_segments(&entry.segments, path) else {
                continue;
            };
            // HEAD is GET without the body (the middleware drops it, for
            // HTTP/2 as for HTTP/1).
            let wanted = if method == Method::HEAD {
                &Method::GET
            } else {
                method
            };
            return match entry.routes.iter().find(|r| r.method == *wanted) {
                Some(route) => Match::Found {
                    route,
                    template: entry.template,
                    params,
                },
                None => Match::MethodNotAllowed {
                    template: entry.template,
                    allow: entry.allow.clone(),
                },
            };
        }
        Match::NotFound
    }

    /// The template and methods of the path `path` matches, if any.
    pub fn methods_at(&self, path: &str) -> Option<(&'static str, Vec<Method>)> {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        self.paths
            .iter()
            .find(|entry| match_segments(&entry.segments, path).is_some())
            .map(|entry| {
                (
                    entry.template,
                    entry.routes.iter().map(|r| r.method.clone()).collect(),
                )
            })
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.paths.iter().flat_map(|p| p.routes.iter())
    }
}

fn parse_template(template: &'static str) -> Vec<Segment> {
    template
        .split('/')
        .skip(1)
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                Segment::Param
            } else {
                Segment::Literal(s)
            }
        })
        .collect()
}

fn match_segments(segments: &[Segment], path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    let mut params = Vec::new();
    let mut parts = rest.split('/');
    for segment in segments {
        let part = parts.next()?;
        match segment {
            Segment::Literal(lit) if *lit == part => {}
            Segment::Param if !part.is_empty() => params.push(part.to_owned()),
            _ => return None,
        }
    }
    parts.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn nothing(_: Ctx, _: Request<Incoming>) -> HandlerResult {
        Err(ApiError::NotFound)
    }

    fn route(method: Method, path: &'static str, access: Access, handler: Handler) -> Route {
        Route::new(method, path, access, handler)
    }

    fn router() -> Router {
        Router::new(vec![
            route(
                Method::GET,
                "/api/v1/users",
                Access::Public,
                handler!(nothing),
            ),
            route(
                Method::POST,
                "/api/v1/users",
                Access::Public,
                handler!(nothing),
            ),
            route(
                Method::GET,
                "/api/v1/users/{id}",
                Access::Public,
                handler!(nothing),
            ),
            route(
                Method::GET,
                "/api/v1/users/me",
                Access::Public,
                handler!(nothing),
            ),
            route(
                Method::DELETE,
                "/api/v1/users/{id}",
                Access::Public,
                handler!(nothing),
            ),
        ])
    }

    #[test]
    fn literal_routes_win_over_parameters_declared_earlier() {
        let router = router();
        match router.find(&Method::GET, "/api/v1/users/me") {
            Match::Found {
                template, params, ..
            } => {
                assert_eq!(template, "/api/v1/users/me");
                assert!(params.is_empty());
            }
            _ => panic!("expected a match"),
        }
        match router.find(&Method::DELETE, "/api/v1/users/abc") {
            Match::Found {
                template, params, ..
            } => {
                assert_eq!(template, "/api/v1/users/{id}");
                assert_eq!(params, vec!["abc".to_owned()]);
            }
            _ => panic!("expected a match"),
        }
    }

    #[test]
    fn trailing_slash_unknown_paths_and_wrong_methods() {
        let router = router();
        assert!(matches!(
            router.find(&Method::GET, "/api/v1/users/"),
            Match::Found { .. }
        ));
        assert!(matches!(
            router.find(&Method::GET, "/api/v1/users//"),
            Match::NotFound
        ));
        assert!(matches!(
            router.find(&Method::GET, "/api/v1/users/a/b"),
            Match::NotFound
        ));
        assert!(matches!(
            router.find(&Method::GET, "/nope"),
            Match::NotFound
        ));
        match router.find(&Method::PUT, "/api/v1/users") {
            Match::MethodNotAllowed { allow, .. } => assert_eq!(allow, "GET, POST, HEAD"),
            _ => panic!("expected 405"),
        }
    }
}
