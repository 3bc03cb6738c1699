//! What every request handler may use: built once by `app`, shared read-only
//! except for the runtime settings an admin may change.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use time::Duration;

use crate::auth::data_key::DataKey;
use crate::auth::password::PasswordHasher;
use crate::auth::tokens::TokenSigner;
use crate::clock::Clock;
use crate::domain::key_usage::UsageLog;
use crate::domain::lockout::LockoutPolicy;
use crate::domain::rate::Rate;
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
    /// The configured CORS origins, which may also spend the refresh cookie.
    pub browser_origins: Vec<String>,
    pub hooks: TestHooks,
    pub readiness: Readiness,
    /// Seals TOTP secrets and keys backup-code hashes.
    pub data_key: Arc<DataKey>,
    /// Issuer in `otpauth://` URIs.
    pub totp_issuer: String,
    /// A new API key's rate limit, and the most one may ask for.
    pub api_key_rates: ApiKeyRates,
    /// API key usage since the last flush.
    pub key_usage: UsageLog,
}

/// Rate limits of API keys.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyRates {
    pub default: Rate,
    pub max: Rate,
}

impl Default for ApiKeyRates {
    fn default() -> Self {
        let per_minute = |n| Rate {
            count: std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN),
            period: std::time::Duration::from_secs(60),
        };
        Self {
            default: per_minute(600),
            max: per_minute(6000),
        }
    }
}

/// A point where a test holds a request so that a race happens on purpose.
pub type Checkpoint = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Points inside request handling that tests can hold; all empty in a server.
#[derive(Clone, Default)]
pub struct TestHooks {
    /// After a login's Argon2 check, before its outcome is settled.
    pub after_login_password_check: Option<Checkpoint>,
    /// Before each database probe of `/health/ready` (tests count them).
    pub before_readiness_probe: Option<Checkpoint>,
}

impl std::fmt::Debug for TestHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHooks")
            .field(
                "after_login_password_check",
                &self.after_login_password_check.is_some(),
            )
            .field(
                "before_readiness_probe",
                &self.before_readiness_probe.is_some(),
            )
            .finish()
    }
}

impl TestHooks {
    pub async fn after_login_password_check(&self) {
        if let Some(hold) = &self.after_login_password_check {
            hold().await;
        }
    }

    pub async fn before_readiness_probe(&self) {
        if let Some(hold) = &self.before_readiness_probe {
            hold().await;
        }
    }
}

/// How long one readiness probe's result answers every caller.
pub const READINESS_MAX_AGE: StdDuration = StdDuration::from_secs(1);

/// Why the service is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The database did not let a write start in time.
    NotAnswering,
    /// Writes fail for a storage reason (full disk, I/O errors).
    StorageFailing,
}

/// `/health/ready` answers from one probe shared by every caller: a result
/// younger than `READINESS_MAX_AGE` is reused, and callers that arrive while
/// a probe runs wait for its result instead of starting their own. So a
/// flood of readiness requests costs at most one database probe a second,
/// and never queues on the connection pool or the write lock.
#[derive(Debug, Default)]
pub struct Readiness {
    last: Arc<tokio::sync::Mutex<Option<Probed>>>,
}

#[derive(Debug, Clone, Copy)]
struct Probed {
    started: Instant,
    finished: Instant,
    outcome: Result<(), NotReady>,
}

impl Readiness {
    pub async fn check(&self, store: &Store, hooks: &TestHooks) -> Result<(), NotReady> {
        // Waiting here is the single flight: whoever holds the lock is
        // probing, and leaves the result behind for the rest.
        let mut last = Arc::clone(&self.last).lock_owned().await;
        if let Some(probed) = *last
            && probed.finished.elapsed() < READINESS_MAX_AGE
        {
            // A write that failed after the probe began outdates its
            // "ready" at once, without another probe.
            let overtaken = store
                .failing_since()
                .is_some_and(|since| since >= probed.started);
            return match probed.outcome {
                Ok(()) if overtaken => Err(NotReady::StorageFailing),
                outcome => outcome,
            };
        }
        let store = store.clone();
        let hooks = hooks.clone();
        // In a task of its own, so that a caller who hangs up does not
        // cancel the probe the others are waiting for.
        let probe = tokio::spawn(async move {
            let started = Instant::now();
            hooks.before_readiness_probe().await;
            let outcome = match store.ping().await {
                Ok(()) => Ok(()),
                // Logged by the store, at most once a minute.
                Err(cause) if cause.is_unavailable() => Err(NotReady::StorageFailing),
                Err(cause) => {
                    tracing::warn!(error = %cause, "readiness check failed");
                    Err(NotReady::NotAnswering)
                }
            };
            *last = Some(Probed {
                started,
                finished: Instant::now(),
                outcome,
            });
            outcome
        });
        probe.await.unwrap_or(Err(NotReady::NotAnswering))
    }
}

impl AppState {
    /// A copy of the current settings (never held across an await).
    pub fn replace_settings(&self, settings: RuntimeSettings) {
        match self.settings.write() {
            Ok(mut guard) => *guard = settings,
            Err(poisoned) => *poisoned.into_inner() = settings,
        }
    }

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
    /// The whole body must arrive within this time.
    pub body_read_timeout: std::time::Duration,
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

const REGISTRATION_ENABLED: &str = "registration_enabled";
const MAX_LOGIN_ATTEMPTS: &str = "max_login_attempts";
const LOCKOUT_MINUTES: &str = "lockout_minutes";

impl RuntimeSettings {
    pub fn check_max_login_attempts(n: u32) -> Result<(), &'static str> {
        if (1..=100).contains(&n) {
            Ok(())
        } else {
            Err("must be between 1 and 100")
        }
    }

    pub fn check_lockout_minutes(n: u32) -> Result<(), &'static str> {
        if (1..=10_080).contains(&n) {
            Ok(())
        } else {
            Err("must be between 1 and 10080")
        }
    }

    /// The stored form, one pair per setting, in a fixed order.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        vec![
            (
                REGISTRATION_ENABLED.to_owned(),
                self.registration_enabled.to_string(),
            ),
            (
                MAX_LOGIN_ATTEMPTS.to_owned(),
                self.max_login_attempts.to_string(),
            ),
            (LOCKOUT_MINUTES.to_owned(), self.lockout_minutes.to_string()),
        ]
    }

    /// Values an admin stored win over the start-up flags; an unreadable one
    /// is skipped and named in the returned warnings.
    pub fn apply_stored(&mut self, stored: &[(String, String)]) -> Vec<String> {
        let mut warnings = Vec::new();
        for (key, value) in stored {
            let applied = match key.as_str() {
                REGISTRATION_ENABLED => {
                    value.parse().map(|v| self.registration_enabled = v).is_ok()
                }
                MAX_LOGIN_ATTEMPTS => value
                    .parse()
                    .ok()
                    .filter(|n| Self::check_max_login_attempts(*n).is_ok())
                    .map(|n| self.max_login_attempts = n)
                    .is_some(),
                LOCKOUT_MINUTES => value
                    .parse()
                    .ok()
                    .filter(|n| Self::check_lockout_minutes(*n).is_ok())
                    .map(|n| self.lockout_minutes = n)
                    .is_some(),
                _ => false,
            };
            if !applied {
                warnings.push(format!("ignoring stored setting {key:?}"));
            }
        }
        warnings
    }

    pub fn lockout_policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            max_attempts: self.max_login_attempts,
            duration: Duration::minutes(i64::from(self.lockout_minutes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_settings_round_trip_and_bad_values_are_skipped() {
        let defaults = RuntimeSettings {
            registration_enabled: true,
            max_login_attempts: 5,
            lockout_minutes: 30,
        };
        let changed = RuntimeSettings {
            registration_enabled: false,
            max_login_attempts: 9,
            lockout_minutes: 60,
        };
        let mut loaded = defaults;
        assert!(loaded.apply_stored(&changed.to_pairs()).is_empty());
        assert_eq!(loaded, changed);

        let mut loaded = defaults;
        let bad = vec![
            ("max_login_attempts".to_owned(), "0".to_owned()),
            ("lockout_minutes".to_owned(), "soon".to_owned()),
            ("unknown".to_owned(), "1".to_owned()),
        ];
        assert_eq!(loaded.apply_stored(&bad).len(), 3);
        assert_eq!(loaded, defaults);
    }
}
