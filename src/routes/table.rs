//! The whole route table, in one place, so one screen answers "what can be
//! called, and by whom": one line per route, each with its access rule (a
//! route without one does not compile).

use http::Method;

use super::{admin, api_keys, auth, health, sessions, two_factor, users};
use crate::handler;
use crate::http::router::{Access, Handler, Route};

/// Routes that exist only when the operator or a test asks for them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Optional {
    /// `GET /api/v1/openapi.json` (`--expose-openapi`).
    pub openapi: bool,
    /// A route that panics, which only tests switch on, to prove a
    /// panicking handler costs one 500 and nothing more.
    pub panic_probe: bool,
}

impl Optional {
    /// Every route a deployment can serve: what the OpenAPI document and
    /// the RBAC matrix describe.
    pub const SERVABLE: Optional = Optional {
        openapi: true,
        panic_probe: false,
    };
}

#[rustfmt::skip]
pub fn table(options: Optional) -> Vec<Route> {
    use crate::domain::rbac::Permission::*;
    use Access::{Permission as Needs, Public, Session, SessionPermission as SessionNeeds};
    use Method as M;
    let route = |method: M, path, access, handler: Handler| Route::new(method, path, access, handler);
    let mut routes = vec![
        route(M::GET,    "/health",                          Public,             handler!(health::live)),
        route(M::GET,    "/health/ready",                    Public,             handler!(health::ready)),
        route(M::POST,   "/api/v1/auth/register",            Public,             handler!(auth::register)),
        route(M::POST,   "/api/v1/auth/login",               Public,             handler!(auth::login)),
        route(M::POST,   "/api/v1/auth/refresh",             Public,             handler!(auth::refresh)),
        route(M::POST,   "/api/v1/auth/logout",              Public,             handler!(auth::logout)),
        route(M::POST,   "/api/v1/auth/logout-all",          Session,            handler!(auth::logout_all)),
        // One's own second factor, like one's own password: every role.
        route(M::GET,    "/api/v1/auth/2fa/status",          Session,            handler!(two_factor::status)),
        route(M::POST,   "/api/v1/auth/2fa/setup",           Session,            handler!(two_factor::setup)),
        route(M::POST,   "/api/v1/auth/2fa/verify",          Session,            handler!(two_factor::verify)),
        route(M::POST,   "/api/v1/auth/2fa/disable",         Session,            handler!(two_factor::disable)),
        route(M::POST,   "/api/v1/auth/2fa/backup-codes",    Session,            handler!(two_factor::regenerate_backup_codes)),
        route(M::GET,    "/api/v1/users/me",                 Needs(SelfRead),    handler!(users::me)),
        route(M::PUT,    "/api/v1/users/me",                 Needs(SelfWrite),   handler!(users::update_me)),
        // Securing one's own account is never a role privilege: a viewer
        // whose password leaked must be able to rotate it.
        route(M::POST,   "/api/v1/users/me/change-password", Session,            handler!(users::change_password)),
        route(M::GET,    "/api/v1/users/me/sessions",        Session,            handler!(sessions::list)),
        route(M::DELETE, "/api/v1/users/me/sessions/{id}",   Session,            handler!(sessions::end)),
        // Keys are managed through a session only: a key never makes keys.
        route(M::GET,    "/api/v1/api-keys",                 SessionNeeds(SelfRead),  handler!(api_keys::list)),
        route(M::POST,   "/api/v1/api-keys",                 SessionNeeds(SelfWrite), handler!(api_keys::create)),
        route(M::GET,    "/api/v1/api-keys/{id}",            SessionNeeds(SelfRead),  handler!(api_keys::get)),
        route(M::GET,    "/api/v1/api-keys/{id}/usage",      SessionNeeds(SelfRead),  handler!(api_keys::usage)),
        route(M::POST,   "/api/v1/api-keys/{id}/rotate",     SessionNeeds(SelfWrite), handler!(api_keys::rotate)),
        route(M::DELETE, "/api/v1/api-keys/{id}",            SessionNeeds(SelfWrite), handler!(api_keys::revoke)),
        route(M::GET,    "/api/v1/users",                    Needs(UsersRead),   handler!(users::list)),
        route(M::POST,   "/api/v1/users",                    Needs(UsersWrite),  handler!(users::create)),
        route(M::GET,    "/api/v1/users/{id}",               Needs(UsersRead),   handler!(users::get)),
        route(M::PATCH,  "/api/v1/users/{id}",               Needs(UsersWrite),  handler!(users::patch)),
        route(M::POST,   "/api/v1/users/{id}/unlock",        Needs(UsersWrite),  handler!(users::unlock)),
        route(M::POST,   "/api/v1/users/{id}/2fa/reset",     Needs(UsersWrite),  handler!(users::reset_two_factor)),
        route(M::DELETE, "/api/v1/users/{id}",               Needs(UsersDelete), handler!(users::delete)),
        route(M::GET,    "/api/v1/admin/stats",              Needs(AdminRead),   handler!(admin::stats)),
        route(M::GET,    "/api/v1/admin/config",             Needs(AdminRead),   handler!(admin::config)),
        route(M::POST,   "/api/v1/admin/config",             Needs(AdminWrite),  handler!(admin::update_config)),
        route(M::GET,    "/api/v1/admin/audit",              Needs(AdminRead),   handler!(admin::audit)),
        route(M::GET,    "/api/v1/admin/api-keys",           Needs(AdminRead),   handler!(api_keys::admin_list)),
        route(M::DELETE, "/api/v1/admin/api-keys/{id}",      Needs(AdminWrite),  handler!(api_keys::admin_revoke)),
    ];
    if options.openapi {
        routes.push(route(M::GET, "/api/v1/openapi.json", Public, handler!(health::openapi)));
    }
    if options.panic_probe {
        routes.push(route(M::GET, "/api/v1/test/panic", Public, handler!(health::panic_probe)));
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_method_and_path_is_declared_twice() {
        let table = table(Optional {
            openapi: true,
            panic_probe: true,
        });
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
