//! A clock the tests move by hand.

use std::sync::Arc;

/// A clock the test moves by hand (tokens, lockouts and grace windows read it).
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<time::OffsetDateTime>);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        let now = time::OffsetDateTime::now_utc();
        Arc::new(Self(std::sync::Mutex::new(
            now.replace_nanosecond(0).unwrap(),
        )))
    }

    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl secure_api::clock::Clock for ManualClock {
    fn now(&self) -> time::OffsetDateTime {
        *self.0.lock().unwrap()
    }
}
