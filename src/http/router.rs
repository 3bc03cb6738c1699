//! The whole route table, in one place, so one file answers "what can be
//! called, and by whom". Every route names its access rule; a route without
//! one does not compile.
//!
//! | method | path                       | access |
//! |--------|----------------------------|--------|
//! | GET    | /health                    | public |
//! | GET    | /health/ready              | public |
//! | POST   | /api/v1/auth/register      | public |
//! | POST   | /api/v1/auth/login         | public |
//! | POST   | /api/v1/auth/refresh       | public (refresh token) |
//! | POST   | /api/v1/auth/logout        | public (refresh token, optional) |
//! | POST   | /api/v1/auth/logout-all    | authenticated |
//! | GET    | /api/v1/users/me           | self:read |
//! | PUT    | /api/v1/users/me           | self:write |
//! | POST   | /api/v1/users/me/change-password | authenticated |
//! | GET    | /api/v1/users              | users:read |
//! | POST   | /api/v1/users              | users:write |
//! | GET    | /api/v1/users/{id}         | users:read |
//! | PATCH  | /api/v1/users/{id}         | users:write |
//! | POST   | /api/v1/users/{id}/unlock  | users:write |
//! | DELETE | /api/v1/users/{id}         | users:delete |
//! | GET    | /api/v1/admin/stats        | admin:read |
//! | GET    | /api/v1/admin/config       | admin:read |
//! | POST   | /api/v1/admin/config       | admin:write |
//! | GET    | /api/v1/admin/audit        | admin:read |
//! | GET    | /api/v1/openapi.json       | public, only with `--expose-openapi` |

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
use crate::routes;
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
    /// An authenticated account whose role grants this permission.
    Permission(Permission),
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

/// Wraps an `async fn(Ctx, Request<Incoming>) -> HandlerResult` as a `Handler`.
macro_rules! handler {
    ($f:path) => {{
        fn boxed(ctx: Ctx, req: Request<Incoming>) -> HandlerFuture {
            Box::pin($f(ctx, req))
        }
        boxed as Handler
    }};
}

fn route(method: Method, path: &'static str, access: Access, handler: Handler) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// The route table. `with_panic_probe` adds a route that panics, which only
/// tests switch on, to prove a panicking handler costs one 500 and nothing more.
pub fn table(with_panic_probe: bool) -> Vec<Route> {
    table_with(with_panic_probe, false)
}

/// The table, with `GET /api/v1/openapi.json` when `expose_openapi` is set.
pub fn table_with(with_panic_probe: bool, expose_openapi: bool) -> Vec<Route> {
    use crate::domain::rbac::Permission::*;
    use Access::Permission;
    use routes::{admin, users};
    let mut routes = vec![
        route(
            Method::GET,
            "/health",
            Access::Public,
            handler!(routes::health::live),
        ),
        route(
            Method::GET,
            "/health/ready",
            Access::Public,
            handler!(routes::health::ready),
        ),
        route(
            Method::POST,
            "/api/v1/auth/register",
            Access::Public,
            handler!(routes::auth::register),
        ),
        route(
            Method::POST,
            "/api/v1/auth/login",
            Access::Public,
            handler!(routes::auth::login),
        ),
        route(
            Method::POST,
            "/api/v1/auth/refresh",
            Access::Public,
            handler!(routes::auth::refresh),
        ),
        route(
            Method::POST,
            "/api/v1/auth/logout",
            Access::Public,
            handler!(routes::auth::logout),
        ),
        route(
            Method::POST,
            "/api/v1/auth/logout-all",
            Access::Authenticated,
            handler!(routes::auth::logout_all),
        ),
        route(
            Method::GET,
            "/api/v1/users/me",
            Permission(SelfRead),
            handler!(users::me),
        ),
        route(
            Method::PUT,
            "/api/v1/users/me",
            Permission(SelfWrite),
            handler!(users::update_me),
        ),
        route(
            Method::POST,
            "/api/v1/users/me/change-password",
            // Securing one's own account is never a role privilege: a viewer
            // whose password leaked must be able to rotate it.
            Access::Authenticated,
            handler!(users::change_password),
        ),
        route(
            Method::GET,
            "/api/v1/users",
            Permission(UsersRead),
            handler!(users::list),
        ),
        route(
            Method::POST,
            "/api/v1/users",
            Permission(UsersWrite),
            handler!(users::create),
        ),
        route(
            Method::GET,
            "/api/v1/users/{id}",
            Permission(UsersRead),
            handler!(users::get),
        ),
        route(
            Method::PATCH,
            "/api/v1/users/{id}",
            Permission(UsersWrite),
            handler!(users::patch),
        ),
        route(
            Method::POST,
            "/api/v1/users/{id}/unlock",
            Permission(UsersWrite),
            handler!(users::unlock),
        ),
        route(
            Method::DELETE,
            "/api/v1/users/{id}",
            Permission(UsersDelete),
            handler!(users::delete),
        ),
        route(
            Method::GET,
            "/api/v1/admin/stats",
            Permission(AdminRead),
            handler!(admin::stats),
        ),
        route(
            Method::GET,
            "/api/v1/admin/config",
            Permission(AdminRead),
            handler!(admin::config),
        ),
        route(
            Method::POST,
            "/api/v1/admin/config",
            Permission(AdminWrite),
            handler!(admin::update_config),
        ),
        route(
            Method::GET,
            "/api/v1/admin/audit",
            Permission(AdminRead),
            handler!(admin::audit),
        ),
    ];
    if expose_openapi {
        routes.push(route(
            Method::GET,
            "/api/v1/openapi.json",
            Access::Public,
            handler!(routes::health::openapi),
        ));
    }
    if with_panic_probe {
        routes.push(route(
            Method::GET,
            "/api/v1/test/panic",
            Access::Public,
            handler!(routes::health::panic_probe),
        ));
    }
    routes
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

    #[test]
    fn the_real_table_has_no_duplicate_method_and_path() {
        let table = table(true);
        for (i, a) in table.iter().enumerate() {
            for b in table.iter().skip(i + 1) {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
