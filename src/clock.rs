//! Time as a parameter: token lifetimes, lockouts and the refresh grace window
//! read the clock through this trait, so tests move time instead of sleeping.

use std::sync::Arc;

use time::OffsetDateTime;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock, at whole-second precision (what tokens and rows store).
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
