//! Password checks: a login, or the current password of change-password.
//! The Argon2 work runs outside any transaction, so its outcome is settled
//! here, inside one, against the account row as it is by then.

use time::OffsetDateTime;

use std::sync::Arc;

use crate::auth::data_key::DataKey;
use crate::domain::audit::{AuditEvent, Event, LoginFailure, Origin};
use crate::domain::lockout::{self, AfterFailure, LockoutPolicy, Seen, Verdict};
use crate::domain::user::{Credentials, User};
use crate::store::Store;
use crate::store::rows::{NewSession, SessionEnd, Tx};

use super::AccountError;
use super::two_factor::{self, Attempt, SecondFactor, SecondStep};

/// What a login or a change-password checks a password against.
pub async fn credentials_by_email(
    store: &Store,
    email: String,
) -> Result<Option<Credentials>, AccountError> {
    store
        .read(move |rows| Ok(rows.credentials_by_email(&email)?))
        .await
}

pub async fn credentials_by_id(
    store: &Store,
    user_id: String,
) -> Result<Option<Credentials>, AccountError> {
    store
        .read(move |rows| Ok(rows.credentials_by_id(&user_id)?))
        .await
}

/// A login with an email no account has: the same answer as any other
/// failure, audited with its real reason.
pub async fn refuse_unknown_email(
    store: &Store,
    origin: Origin,
    masked_email: String,
    now: OffsetDateTime,
) {
    let event = Event::LoginFailure {
        email: masked_email,
        reason: LoginFailure::UnknownEmail,
    };
    store
        .record_audit(AuditEvent::new(&origin, None, event), now)
        .await;
}

/// A finished Argon2 check of a password against `seen`.
#[derive(Debug, Clone)]
pub struct PasswordCheck {
    pub user_id: String,
    pub seen: Seen,
    pub presented: Presented,
}

impl PasswordCheck {
    /// The check of a password against `credentials` as they were read.
    pub fn against(credentials: Credentials, presented: Presented) -> Self {
        Self {
            user_id: credentials.user.id.as_str().to_owned(),
            seen: Seen {
                password_hash: credentials.password_hash,
                token_version: credentials.token_version,
            },
            presented,
        }
    }
}

/// What the password was presented for, and the outcome of its check.
#[derive(Debug, Clone)]
pub enum Presented {
    Login {
        /// The email as given, masked, for the audit trail.
        masked_email: String,
        outcome: Checked<LoginGrant>,
    },
    ChangePassword(Checked<NewPasswordGrant>),
}

/// A wrong password, or a right one with what it is for.
#[derive(Debug, Clone)]
pub enum Checked<T> {
    Wrong,
    Right(T),
}

/// What an accepted login writes.
#[derive(Debug, Clone)]
pub struct LoginGrant {
    /// A hash with the current parameters, replacing one made with older ones.
    pub rehash: Option<String>,
    pub session: NewSession,
    /// The code given with the password, for an account with 2FA on.
    pub second_factor: Option<SecondFactor>,
}

/// What an accepted change-password writes: every other login ends, the
/// caller gets `session`.
#[derive(Debug, Clone)]
pub struct NewPasswordGrant {
    pub new_hash: String,
    pub session: NewSession,
}

#[derive(Debug)]
pub struct Settled {
    pub verdict: Verdict,
    /// The account and its token version, after an accepted check.
    pub account: Option<(User, i64)>,
    /// For a login whose password was right: what its second factor did.
    pub second_step: SecondStep,
}

/// Settles a password check inside one write transaction (see
/// `lockout::settle`). Only an accepted check writes what the right
/// password asked for; a wrong one is counted and may lock. A lock always
/// wins, so however many checks run in parallel, at most the policy's
/// number of wrong passwords is counted per lock period.
pub async fn settle(
    store: &Store,
    origin: Origin,
    check: PasswordCheck,
    policy: LockoutPolicy,
    key: Arc<DataKey>,
    now: OffsetDateTime,
) -> Result<Settled, AccountError> {
    store
        .write(now, move |tx| settle_in(tx, &origin, check, policy, &key))
        .await
}

fn settle_in(
    tx: &mut Tx<'_>,
    origin: &Origin,
    check: PasswordCheck,
    policy: LockoutPolicy,
    key: &DataKey,
) -> Result<Settled, AccountError> {
    let now = tx.now();
    let user_id = check.user_id.as_str();
    let grant = match &check.presented {
        Presented::Login {
            outcome: Checked::Right(grant),
            ..
        } => Some(Grant::Login(grant)),
        Presented::ChangePassword(Checked::Right(grant)) => Some(Grant::NewPassword(grant)),
        _ => None,
    };
    let row = tx.guard_state(user_id)?;
    let verdict = match &row {
        // Deleted while the hash ran: nothing to count or to grant.
        None => Verdict::Inactive,
        Some(row) => lockout::settle(policy, row, &check.seen, grant.is_some(), now),
    };
    let mut account = None;
    let mut second_step = SecondStep::NotNeeded;
    match (verdict, grant) {
        (Verdict::WrongPassword(after), _) => tx.store_failure(user_id, after)?,
        (Verdict::Accepted, Some(grant)) => {
            if let Grant::Login(login) = grant {
                let failures = row.as_ref().map_or(0, |r| r.failed_count);
                let given = login.second_factor.as_ref();
                let attempt = Attempt {
                    origin,
                    user_id,
                    policy,
                    failures,
                };
                second_step = two_factor::second_step_in(tx, key, &attempt, given)?;
                if !second_step.lets_in() {
                    return Ok(Settled {
                        verdict,
                        account,
                        second_step,
                    });
                }
            }
            let session = match grant {
                Grant::Login(login) => {
                    tx.record_success(user_id, login.rehash.as_deref())?;
                    &login.session
                }
                Grant::NewPassword(change) => {
                    tx.set_password(user_id, &change.new_hash, now)?;
                    tx.revoke_sessions_of(user_id, SessionEnd::PasswordChange, now)?;
                    &change.session
                }
            };
            tx.create_session(user_id, session)?;
            account = tx.with_token_version(user_id)?;
        }
        _ => {}
    }
    for event in verdict_events(&check.presented, verdict) {
        tx.record(AuditEvent::new(origin, Some(user_id), event))?;
    }
    Ok(Settled {
        verdict,
        account,
        second_step,
    })
}

enum Grant<'a> {
    Login(&'a LoginGrant),
    NewPassword(&'a NewPasswordGrant),
}

/// The events a settled check amounts to: a success; or a failure with its
/// reason and, when this failure locks the account, a lockout.
fn verdict_events(presented: &Presented, verdict: Verdict) -> Vec<Event> {
    let Some(reason) = LoginFailure::of(verdict) else {
        return vec![match presented {
            Presented::Login { .. } => Event::LoginSuccess {},
            Presented::ChangePassword(_) => Event::PasswordChange {},
        }];
    };
    let failure = match presented {
        Presented::Login { masked_email, .. } => Event::LoginFailure {
            email: masked_email.clone(),
            reason,
        },
        Presented::ChangePassword(_) => Event::PasswordChangeFailure { reason },
    };
    let mut events = vec![failure];
    if let Verdict::WrongPassword(AfterFailure {
        locked_until: Some(until),
        ..
    }) = verdict
    {
        events.push(Event::Lockout {
            locked_until: until.unix_timestamp(),
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;

    fn login() -> Presented {
        Presented::Login {
            masked_email: "s***@example.com".into(),
            outcome: Checked::Wrong,
        }
    }

    fn described(events: Vec<Event>) -> Vec<(&'static str, serde_json::Value)> {
        events.iter().map(|e| (e.as_str(), e.detail())).collect()
    }

    #[test]
    fn a_failure_that_locks_is_followed_by_one_lockout_event() {
        let until = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let locking = Verdict::WrongPassword(AfterFailure {
            failed_count: 0,
            locked_until: Some(until),
        });
        assert_eq!(
            described(verdict_events(&login(), locking)),
            [
                (
                    "login_failure",
                    json!({ "email": "s***@example.com", "reason": "wrong_password" })
                ),
                ("lockout", json!({ "locked_until": 1_900_000_000 })),
            ]
        );
        let change = Presented::ChangePassword(Checked::Wrong);
        assert_eq!(
            described(verdict_events(&change, locking)),
            [
                (
                    "password_change_failure",
                    json!({ "reason": "wrong_password" })
                ),
                ("lockout", json!({ "locked_until": 1_900_000_000 })),
            ]
        );
    }

    #[test]
    fn other_verdicts_are_one_event_with_their_reason() {
        let counted = Verdict::WrongPassword(AfterFailure {
            failed_count: 2,
            locked_until: None,
        });
        for (verdict, reason) in [
            (counted, "wrong_password"),
            (Verdict::Locked, "locked"),
            (Verdict::Inactive, "inactive"),
            (Verdict::CredentialsChanged, "credentials_changed"),
        ] {
            assert_eq!(
                described(verdict_events(&login(), verdict)),
                [(
                    "login_failure",
                    json!({ "email": "s***@example.com", "reason": reason })
                )]
            );
        }
        assert_eq!(
            described(verdict_events(&login(), Verdict::Accepted)),
            [("login_success", json!({}))]
        );
        let change = Presented::ChangePassword(Checked::Wrong);
        assert_eq!(
            described(verdict_events(&change, Verdict::Accepted)),
            [("password_change", json!({}))]
        );
    }
}
