//! What every request handler may use: built once by `app`, shared read-only.

use std::time::Instant;

use crate::auth::password::PasswordHasher;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub hasher: PasswordHasher,
    pub limits: HttpLimits,
    pub started_at: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
}
