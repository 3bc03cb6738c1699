//! Two-factor authentication: the second step of a login, turning TOTP on
//! (setup, then verify) and off, backup codes, the reset for someone who
//! lost the device, and the data key's place in the database.
//!
//! Every decision about a code is made inside the write transaction that
//! records it: the newest accepted TOTP step is stored and a step not newer
//! than it is refused, and a backup code is deleted as it is used, so of two
//! concurrent requests with one code at most one gets in.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::auth::backup_codes;
use crate::auth::data_key::DataKey;
use crate::auth::totp;
use crate::domain::audit::{AuditEvent, CommandLine, Event, Initiator, LoginFailure, Origin};
use crate::domain::lockout::{self, AfterFailure, LockoutPolicy, Seen, Verdict};
use crate::domain::policy;
use crate::domain::user::User;
use crate::store::Store;
use crate::store::rows::{NewSession, SessionEnd, TwoFactorState, Tx};

use super::AccountError;
use super::admin::actor_and_target;

/// The name the data key's fingerprint is kept under.
const DATA_KEY: &str = "data";

/// A code given where a second factor is asked for.
#[derive(Debug, Clone)]
pub enum SecondFactor {
    Totp(String),
    Backup(String),
}

impl SecondFactor {
    /// A `code` field: six digits are a TOTP code, anything else is tried
    /// as a backup code.
    pub fn from_code(code: &str) -> Self {
        let code = code.trim();
        if code.len() == totp::DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit()) {
            SecondFactor::Totp(code.to_owned())
        } else {
            SecondFactor::Backup(code.to_owned())
        }
    }
}

/// What the second step of a login with the right password came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondStep {
    /// The account has no second factor.
    NotNeeded,
    /// A code was given and accepted.
    Passed,
    /// No code was given: neither a failure nor a success.
    Required,
    /// A wrong, expired or replayed code: counted as a failed attempt.
    Rejected,
}

impl SecondStep {
    pub fn lets_in(self) -> bool {
        matches!(self, SecondStep::NotNeeded | SecondStep::Passed)
    }
}

/// Whose attempt this is, and what a failure of it counts towards.
pub(super) struct Attempt<'a> {
    pub origin: &'a Origin,
    pub user_id: &'a str,
    pub policy: LockoutPolicy,
    /// Consecutive failures before this attempt.
    pub failures: u32,
}

impl Attempt<'_> {
    /// Counts a failed attempt towards the lockout and audits it (with the
    /// lockout, when this failure locks the account).
    fn fail(&self, tx: &mut Tx<'_>, reason: LoginFailure) -> Result<(), AccountError> {
        let after = self.policy.after_failure(self.failures, tx.now());
        tx.store_failure(self.user_id, after)?;
        self.record(tx, Event::TwoFactorFailed { reason })?;
        if let AfterFailure {
            locked_until: Some(until),
            ..
        } = after
        {
            let event = Event::Lockout {
                locked_until: until.unix_timestamp(),
            };
            self.record(tx, event)?;
        }
        Ok(())
    }

    fn record(&self, tx: &mut Tx<'_>, event: Event) -> Result<(), AccountError> {
        Ok(tx.record(AuditEvent::new(self.origin, Some(self.user_id), event))?)
    }
}

/// The second step of a login whose password was right.
pub(super) fn second_step_in(
    tx: &mut Tx<'_>,
    key: &DataKey,
    attempt: &Attempt<'_>,
    given: Option<&SecondFactor>,
) -> Result<SecondStep, AccountError> {
    let state = tx.two_factor(attempt.user_id)?.unwrap_or_default();
    if state.secret.is_none() {
        return Ok(SecondStep::NotNeeded);
    }
    let Some(given) = given else {
        return Ok(SecondStep::Required);
    };
    match check_code(tx, key, attempt, &state, given)? {
        true => Ok(SecondStep::Passed),
        false => {
            attempt.fail(tx, LoginFailure::WrongCode)?;
            Ok(SecondStep::Rejected)
        }
    }
}

/// Whether `given` is a code of the account's enabled second factor; an
/// accepted code is spent (its step remembered, or the backup code deleted).
fn check_code(
    tx: &mut Tx<'_>,
    key: &DataKey,
    attempt: &Attempt<'_>,
    state: &TwoFactorState,
    given: &SecondFactor,
) -> Result<bool, AccountError> {
    let user_id = attempt.user_id;
    match given {
        SecondFactor::Totp(code) => {
            let Some(sealed) = &state.secret else {
                return Ok(false);
            };
            let secret = key
                .open(sealed, user_id)
                .map_err(|_| AccountError::SecretUnreadable)?;
            let now = tx.now();
            match totp::accepted_step(secret.expose(), code, now, state.last_step) {
                Some(step) => {
                    tx.set_totp_step(user_id, step)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
        SecondFactor::Backup(code) => {
            let Some(hash) = backup_codes::hash(key, code) else {
                return Ok(false);
            };
            if !tx.consume_backup_code(user_id, &hash)? {
                return Ok(false);
            }
            let remaining = (state.backup_codes - 1).max(0);
            attempt.record(tx, Event::BackupCodeUsed { remaining })?;
            Ok(true)
        }
    }
}

/// A password asked again before a change to the second factor, checked
/// (Argon2, outside any transaction) against what was read then.
#[derive(Debug, Clone)]
pub struct Reauthentication {
    pub user_id: String,
    pub seen: Seen,
    pub password_matches: bool,
}

/// The password and a code, asked before turning 2FA off or replacing the
/// backup codes.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub check: Reauthentication,
    pub code: SecondFactor,
    pub policy: LockoutPolicy,
}

/// What turning 2FA on needs besides the pending secret.
#[derive(Debug, Clone)]
pub struct Enabling {
    pub user_id: String,
    /// A code of the pending secret.
    pub code: String,
    /// The keyed hashes of the new backup codes.
    pub backup_hashes: Vec<String>,
    /// The caller's session once every other one has ended.
    pub session: NewSession,
}

/// Why a change to the second factor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong password (counted), or a locked or changed account.
    Password,
    /// 2FA is on already (setup), or off (disable, backup codes).
    WrongState,
    /// Nothing set up to verify.
    NothingPending,
    /// A wrong code.
    Code,
}

/// The password step of a change, inside its transaction; a wrong
/// password is counted towards the lockout like any other. `Ok(failures)`
/// when the password was right.
fn reauthenticate(
    tx: &mut Tx<'_>,
    origin: &Origin,
    check: &Reauthentication,
    policy: LockoutPolicy,
) -> Result<Result<u32, Refusal>, AccountError> {
    let now = tx.now();
    let user_id = check.user_id.as_str();
    let Some(row) = tx.guard_state(user_id)? else {
        return Ok(Err(Refusal::Password));
    };
    match lockout::settle(policy, &row, &check.seen, check.password_matches, now) {
        Verdict::Accepted => Ok(Ok(row.failed_count)),
        verdict => {
            let attempt = Attempt {
                origin,
                user_id,
                policy,
                failures: row.failed_count,
            };
            match verdict {
                Verdict::WrongPassword(_) => attempt.fail(tx, LoginFailure::WrongPassword)?,
                other => {
                    let reason = LoginFailure::of(other).unwrap_or(LoginFailure::Locked);
                    attempt.record(tx, Event::TwoFactorFailed { reason })?;
                }
            }
            Ok(Err(Refusal::Password))
        }
    }
}

/// What the owner of an account may know of its second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub enabled: bool,
    pub backup_codes_remaining: i64,
}

/// `GET /auth/2fa/status`; the sealed secrets stay in here.
pub async fn status(store: &Store, user_id: String) -> Result<Status, AccountError> {
    store
        .read(move |rows| {
            let state = rows.two_factor(&user_id)?.unwrap_or_default();
            let enabled = state.secret.is_some();
            Ok(Status {
                enabled,
                backup_codes_remaining: if enabled { state.backup_codes } else { 0 },
            })
        })
        .await
}

/// Stores `pending` (a secret sealed for this account) as the setup to
/// verify, replacing an earlier one, after the password.
pub async fn setup(
    store: &Store,
    origin: Origin,
    check: Reauthentication,
    policy: LockoutPolicy,
    pending: Vec<u8>,
    now: OffsetDateTime,
) -> Result<Result<(), Refusal>, AccountError> {
    store
        .write(now, move |tx| {
            if let Err(refusal) = reauthenticate(tx, &origin, &check, policy)? {
                return Ok(Err(refusal));
            }
            let user_id = check.user_id.as_str();
            let state = tx.two_factor(user_id)?.unwrap_or_default();
            if state.secret.is_some() {
                return Ok(Err(Refusal::WrongState));
            }
            tx.set_pending_totp(user_id, Some(&pending))?;
            tx.record_success(user_id, None)?;
            Ok(Ok(()))
        })
        .await
}

/// What turning the second factor on or off gives the caller: the only
/// session left, and the account at its new token version.
#[derive(Debug)]
pub struct Changed {
    pub user: User,
    pub token_version: i64,
}

/// Turns 2FA on with the pending secret once `code` is one of its codes:
/// the backup codes (`backup_hashes`) are stored, every other session ends,
/// and the caller gets `session`.
pub async fn enable(
    store: &Store,
    origin: Origin,
    enabling: Enabling,
    key: Arc<DataKey>,
    now: OffsetDateTime,
) -> Result<Result<Changed, Refusal>, AccountError> {
    store
        .write(now, move |tx| {
            let user_id = enabling.user_id.as_str();
            let state = tx.two_factor(user_id)?.ok_or(AccountError::NotFound)?;
            let Some(pending) = state.pending.filter(|_| state.secret.is_none()) else {
                return Ok(Err(Refusal::NothingPending));
            };
            let secret = key
                .open(&pending, user_id)
                .map_err(|_| AccountError::SecretUnreadable)?;
            let Some(step) = totp::accepted_step(secret.expose(), &enabling.code, now, None) else {
                return Ok(Err(Refusal::Code));
            };
            tx.enable_totp(user_id, &pending, step)?;
            tx.replace_backup_codes(user_id, &enabling.backup_hashes)?;
            let changed = restart_sessions(tx, user_id, &enabling.session)?;
            tx.record(AuditEvent::new(
                &origin,
                Some(user_id),
                Event::TwoFactorEnabled {},
            ))?;
            Ok(Ok(changed))
        })
        .await
}

/// The password and a code, then what `action` does with the account.
async fn with_password_and_code<T: Send + 'static>(
    store: &Store,
    origin: Origin,
    confirmation: Confirmation,
    key: Arc<DataKey>,
    now: OffsetDateTime,
    action: impl FnOnce(&mut Tx<'_>, &Origin, &str) -> Result<T, AccountError> + Send + 'static,
) -> Result<Result<T, Refusal>, AccountError> {
    store
        .write(now, move |tx| {
            let Confirmation {
                check,
                code,
                policy,
            } = confirmation;
            let failures = match reauthenticate(tx, &origin, &check, policy)? {
                Ok(failures) => failures,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let user_id = check.user_id.as_str();
            let state = tx.two_factor(user_id)?.unwrap_or_default();
            if state.secret.is_none() {
                return Ok(Err(Refusal::WrongState));
            }
            let attempt = Attempt {
                origin: &origin,
                user_id,
                policy,
                failures,
            };
            if !check_code(tx, &key, &attempt, &state, &code)? {
                attempt.fail(tx, LoginFailure::WrongCode)?;
                return Ok(Err(Refusal::Code));
            }
            tx.record_success(user_id, None)?;
            action(tx, &origin, user_id).map(Ok)
        })
        .await
}

/// Turns 2FA off after the password and a code: every other session ends,
/// and the caller gets `session`.
pub async fn disable(
    store: &Store,
    origin: Origin,
    confirmation: Confirmation,
    key: Arc<DataKey>,
    session: NewSession,
    now: OffsetDateTime,
) -> Result<Result<Changed, Refusal>, AccountError> {
    with_password_and_code(
        store,
        origin,
        confirmation,
        key,
        now,
        move |tx, origin, user_id| {
            tx.disable_totp(user_id)?;
            let changed = restart_sessions(tx, user_id, &session)?;
            tx.record(AuditEvent::new(
                origin,
                Some(user_id),
                Event::TwoFactorDisabled {},
            ))?;
            Ok(changed)
        },
    )
    .await
}

/// Replaces the backup codes with `hashes` after the password and a code.
pub async fn regenerate_backup_codes(
    store: &Store,
    origin: Origin,
    confirmation: Confirmation,
    key: Arc<DataKey>,
    hashes: Vec<String>,
    now: OffsetDateTime,
) -> Result<Result<(), Refusal>, AccountError> {
    with_password_and_code(
        store,
        origin,
        confirmation,
        key,
        now,
        move |tx, origin, user_id| {
            tx.replace_backup_codes(user_id, &hashes)?;
            let event = Event::BackupCodesRegenerated {};
            tx.record(AuditEvent::new(origin, Some(user_id), event))?;
            Ok(())
        },
    )
    .await
}

/// Ends every session of the account (the token version moves) and opens
/// `session` for the caller.
fn restart_sessions(
    tx: &mut Tx<'_>,
    user_id: &str,
    session: &NewSession,
) -> Result<Changed, AccountError> {
    let now = tx.now();
    tx.bump_token_version(user_id)?;
    tx.revoke_sessions_of(user_id, SessionEnd::TwoFactorChange, now)?;
    tx.create_session(user_id, session)?;
    let (user, token_version) = tx
        .with_token_version(user_id)?
        .ok_or(AccountError::NotFound)?;
    Ok(Changed {
        user,
        token_version,
    })
}

/// Turns 2FA off for someone who lost the device
/// (`POST /users/{id}/2fa/reset`), under the moderator rules.
pub async fn reset(
    store: &Store,
    origin: Origin,
    actor_id: String,
    target_id: String,
    now: OffsetDateTime,
) -> Result<User, AccountError> {
    store
        .write(now, move |tx| {
            let (actor, target) = actor_and_target(tx, &actor_id, &target_id)?;
            policy::check_two_factor_reset(&actor, &target)?;
            let by = Initiator::Actor { actor_id };
            reset_in(tx, &origin, &target_id, by)?;
            tx.user_by_id(&target_id)?.ok_or(AccountError::NotFound)
        })
        .await
}

/// What `secure-api reset-2fa` found.
#[derive(Debug)]
pub struct Reset {
    pub user: User,
    /// Whether 2FA was on (a pending setup is cleared too).
    pub was_enabled: bool,
}

/// The script of `secure-api reset-2fa`: turns 2FA off for the account with
/// `email`; `None` when there is no such account.
pub fn reset_by_email(tx: &mut Tx<'_>, email: &str) -> Result<Option<Reset>, AccountError> {
    let Some(found) = tx.credentials_by_email(email)? else {
        return Ok(None);
    };
    let user_id = found.user.id.as_str().to_owned();
    let was_enabled = found.user.two_factor_enabled;
    let by = Initiator::CommandLine {
        via: CommandLine::CommandLine,
    };
    reset_in(tx, &Origin::default(), &user_id, by)?;
    let user = tx.user_by_id(&user_id)?.ok_or(AccountError::NotFound)?;
    Ok(Some(Reset { user, was_enabled }))
}

fn reset_in(
    tx: &mut Tx<'_>,
    origin: &Origin,
    user_id: &str,
    by: Initiator,
) -> Result<(), AccountError> {
    let now = tx.now();
    tx.disable_totp(user_id)?;
    tx.bump_token_version(user_id)?;
    tx.revoke_sessions_of(user_id, SessionEnd::TwoFactorChange, now)?;
    tx.record(AuditEvent::new(
        origin,
        Some(user_id),
        Event::TwoFactorReset { by },
    ))?;
    Ok(())
}

/// Makes the database remember the data key's fingerprint, or refuses a
/// different key while anything sealed under the old one is stored: those
/// secrets would not decrypt, and 2FA must never quietly turn off.
pub async fn adopt_data_key(
    store: &Store,
    fingerprint: &str,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    let fingerprint = fingerprint.to_owned();
    store
        .write(now, move |tx| {
            let known = tx.key_fingerprint(DATA_KEY)?;
            if known.as_deref() == Some(fingerprint.as_str()) {
                return Ok(());
            }
            let sealed = tx.count_sealed_secrets()?;
            if sealed > 0 {
                return Err(AccountError::DataKeyMismatch { sealed });
            }
            tx.put_key_fingerprint(DATA_KEY, &fingerprint)?;
            Ok(())
        })
        .await
}
