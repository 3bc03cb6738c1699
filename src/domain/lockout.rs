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

/// The password-guarding part of an account row, as read inside the write
/// transaction that settles a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardState {
    pub is_active: bool,
    pub password_hash: String,
    pub token_version: i64,
    pub failed_count: u32,
    pub locked_until: Option<OffsetDateTime>,
}

/// What a password check saw when it started: the hash it verified against
/// and the token version read with it. The Argon2 work runs outside any
/// transaction, so the row may have moved on by the time it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub password_hash: String,
    pub token_version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Locked now, even if the lock was set while the hash ran: a correct
    /// guess that raced the lock must not clear it.
    Locked,
    Inactive,
    /// A wrong password, counted; `after` says whether it locks.
    WrongPassword(AfterFailure),
    /// The right password for a hash that has since been replaced, or a
    /// token version bumped meanwhile (password change, logout-all): the
    /// check proves nothing about the account as it is now.
    CredentialsChanged,
    Accepted,
}

/// Settles a password check against the row as it is now. A lock always
/// wins, so however many checks run in parallel, at most `max_attempts`
/// wrong passwords are counted per lock period, and none after the lock.
pub fn settle(
    policy: LockoutPolicy,
    now_row: &GuardState,
    seen: &Seen,
    password_matches: bool,
    now: OffsetDateTime,
) -> Verdict {
    if is_locked(now_row.locked_until, now) {
        return Verdict::Locked;
    }
    if !now_row.is_active {
        return Verdict::Inactive;
    }
    if !password_matches {
        return Verdict::WrongPassword(policy.after_failure(now_row.failed_count, now));
    }
    if now_row.password_hash != seen.password_hash || now_row.token_version != seen.token_version {
        return Verdict::CredentialsChanged;
    }
    Verdict::Accepted
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

    fn row(failed_count: u32, locked_until: Option<OffsetDateTime>) -> GuardState {
        GuardState {
            is_active: true,
            password_hash: "hash-1".to_owned(),
            token_version: 3,
            failed_count,
            locked_until,
        }
    }

    fn seen() -> Seen {
        Seen {
            password_hash: "hash-1".to_owned(),
            token_version: 3,
        }
    }

    const POLICY: LockoutPolicy = LockoutPolicy {
        max_attempts: 5,
        duration: Duration::minutes(30),
    };

    #[test]
    fn a_lock_set_while_the_hash_ran_wins_over_the_right_password() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let locked = row(0, Some(now + Duration::minutes(1)));
        assert_eq!(settle(POLICY, &locked, &seen(), true, now), Verdict::Locked);
        assert_eq!(
            settle(POLICY, &locked, &seen(), false, now),
            Verdict::Locked
        );
        // An expired lock no longer counts.
        let expired = row(0, Some(now));
        assert_eq!(
            settle(POLICY, &expired, &seen(), true, now),
            Verdict::Accepted
        );
    }

    #[test]
    fn wrong_passwords_count_from_the_row_as_it_is_now() {
        let now = OffsetDateTime::UNIX_EPOCH;
        match settle(POLICY, &row(4, None), &seen(), false, now) {
            Verdict::WrongPassword(after) => {
                assert_eq!(after.locked_until, Some(now + Duration::minutes(30)));
            }
            other => panic!("{other:?}"),
        }
        match settle(POLICY, &row(1, None), &seen(), false, now) {
            Verdict::WrongPassword(after) => assert_eq!(after.failed_count, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_password_or_version_changed_meanwhile_refuses_the_right_password() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut changed = row(0, None);
        changed.password_hash = "hash-2".to_owned();
        assert_eq!(
            settle(POLICY, &changed, &seen(), true, now),
            Verdict::CredentialsChanged
        );
        let mut bumped = row(0, None);
        bumped.token_version = 4;
        assert_eq!(
            settle(POLICY, &bumped, &seen(), true, now),
            Verdict::CredentialsChanged
        );
        let mut inactive = row(0, None);
        inactive.is_active = false;
        assert_eq!(
            settle(POLICY, &inactive, &seen(), true, now),
            Verdict::Inactive
        );
    }
}
