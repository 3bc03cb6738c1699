//! What every request handler may use: built once by `app`, shared read-only
//! except for the runtime settings an admin may change.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use time::Duration;

use crate::auth::password::PasswordHasher;
use crate::auth::tokens::TokenSigner;
use crate::clock::Clock;
use crate::domain::lockout::LockoutPolicy;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub hasher: PasswordHasher,
    pub tokens: TokenSigner,
    pub clock: Arc<dyn Clock>,
    pub limits: HttpLimits,
    pub sessions: SessionPolicy,
    pub settings: RwLock<RuntimeSettings>,
    pub started_at: Instant,
}

impl AppState {
    /// A copy of the current settings (never held across an await).
    pub fn settings(&self) -> RuntimeSettings {
        match self.settings.read() {
            Ok(guard) => *guard,
            // A writer panicked mid-update; the value is a plain Copy struct,
            // so what is there is still a whole one.
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// How long a login's refresh-token family lives; rotation never extends it.
    pub refresh_lifetime: Duration,
    /// A consumed refresh token presented again within this window is refused
    /// without revoking its family.
    pub reuse_grace: Duration,
}

/// Settings an admin can change at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    pub registration_enabled: bool,
    pub max_login_attempts: u32,
    pub lockout_minutes: u32,
}

impl RuntimeSettings {
    pub fn lockout_policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            max_attempts: self.max_login_attempts,
            duration: Duration::minutes(i64::from(self.lockout_minutes)),
        }
    }
}
