use time::{Duration, OffsetDateTime};

/// After `max_attempts` consecutive failures an account is locked for
/// `duration`; the count starts again from zero once it is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_attempts: u32,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterFailure {
    pub failed_count: u32,
    /// Set when this failure locks the account.
    pub locked_until: Option<OffsetDateTime>,
}

impl LockoutPolicy {
    pub fn after_failure(&self, previous_failures: u32, now: OffsetDateTime) -> AfterFailure {
        let failed_count = previous_failures.saturating_add(1);
        if failed_count >= self.max_attempts.max(1) {
            AfterFailure {
                failed_count: 0,
                locked_until: Some(now + self.duration),
            }
        } else {
            AfterFailure {
                failed_count,
                locked_until: None,
            }
        }
    }
}

pub fn is_locked(locked_until: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    locked_until.is_some_and(|until| until > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_failure_locks_and_restarts_the_count() {
        let policy = LockoutPolicy {
            max_attempts: 5,
            duration: Duration::minutes(30),
        };
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut count = 0;
        for _ in 0..4 {
            let after = policy.after_failure(count, now);
            assert_eq!(after.locked_until, None);
            count = after.failed_count;
        }
        let after = policy.after_failure(count, now);
        assert_eq!(after.locked_until, Some(now + Duration::minutes(30)));
        assert_eq!(after.failed_count, 0);
        assert!(is_locked(after.locked_until, now + Duration::minutes(29)));
        assert!(!is_locked(after.locked_until, now + Duration::minutes(30)));
    }
}
