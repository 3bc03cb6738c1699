//! Whether the storage can take writes. A statement that fails for a storage
//! reason (full disk, I/O error, read-only file system) marks it failing; the
//! next write that commits (a request's, or the readiness probe's) marks it
//! healthy again. Failures are logged at most once a minute, with the number
//! held back since the previous line, so a full disk under load is one error
//! line a minute rather than one per request.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::StoreError;

/// At most one error line per this long while the storage is failing.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct StorageHealth {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failing_since: Option<Instant>,
    last_logged: Option<Instant>,
    /// Failures since the last logged one.
    held_back: u64,
}

impl StorageHealth {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few plain fields updated together; whatever a
        // panicking holder left is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes the outcome of a statement or transaction: a storage failure
    /// marks the storage failing; a committed write, when `wrote`, marks it
    /// healthy. Other errors say nothing about the storage.
    pub(super) fn observe(&self, error: Option<&StoreError>, wrote: bool) {
        match error {
            None if wrote => self.recovered(),
            Some(e) if e.is_unavailable() => self.failed(e),
            _ => {}
        }
    }

    fn failed(&self, cause: &StoreError) {
        let now = Instant::now();
        let mut state = self.state();
        state.failing_since.get_or_insert(now);
        state.held_back += 1;
        let due = state
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if due {
            tracing::error!(
                error = %cause,
                failures = state.held_back,
                "storage cannot take writes; answering 503 until a write succeeds"
            );
            state.last_logged = Some(now);
            state.held_back = 0;
        }
    }

    fn recovered(&self) {
        let mut state = self.state();
        if state.failing_since.take().is_some() {
            tracing::warn!(
                unlogged_failures = state.held_back,
                "storage takes writes again"
            );
            state.held_back = 0;
        }
    }

    /// Since when writes have been failing, if they are.
    pub(super) fn failing_since(&self) -> Option<Instant> {
        self.state().failing_since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_marks_the_storage_failing_until_a_write_commits() {
        let health = StorageHealth::default();
        assert!(health.failing_since().is_none());
        let full = StoreError::Unavailable(super::super::BackendError::new(std::io::Error::other(
            "disk full",
        )));
        health.observe(Some(&full), true);
        let since = health.failing_since().expect("failing after a full disk");
        // More failures neither move the start nor log again within the minute.
        health.observe(Some(&full), true);
        assert_eq!(health.failing_since(), Some(since));
        assert_eq!(health.state().held_back, 1);
        // A read that works, or an error of another kind, says nothing.
        health.observe(None, false);
        health.observe(Some(&StoreError::NotFound), true);
        assert!(health.failing_since().is_some());
        health.observe(None, true);
        assert!(health.failing_since().is_none());
    }
}
