//! The storage interface: the row operations a backend supplies. The
//! business logic (`accounts`) is written once against these traits, as
//! synchronous transaction scripts; a backend implements them over its own
//! connection and runs each script inside one of its transactions (see
//! `Store::write`). Nothing here names a driver.

use time::{Date, OffsetDateTime};

use crate::domain::api_key::{ApiKey, KeySubject, NewApiKey};
use crate::domain::audit::{AuditEvent, AuditKind};
use crate::domain::key_usage::{KeyUsage, UsageDelta};
use crate::domain::lockout::{AfterFailure, GuardState};
use crate::domain::policy::UserPatch;
use crate::domain::role::Role;
use crate::domain::user::{AuthState, Credentials, NewUser, TokenSubject, User};

use super::StoreError;

/// Reads: what a script may do on any connection.
pub trait Reads {
    fn user_by_id(&mut self, user_id: &str) -> Result<Option<User>, StoreError>;
    fn credentials_by_email(&mut self, email: &str) -> Result<Option<Credentials>, StoreError>;
    fn credentials_by_id(&mut self, user_id: &str) -> Result<Option<Credentials>, StoreError>;
    /// The row as a password check must settle against it.
    fn guard_state(&mut self, user_id: &str) -> Result<Option<GuardState>, StoreError>;
    fn auth_state(&mut self, user_id: &str) -> Result<Option<AuthState>, StoreError>;
    /// What every request with an access token checks, in one read: the
    /// user, its token version, and the end of the session `session_id` if
    /// it is live and the user's.
    fn token_subject(
        &mut self,
        user_id: &str,
        session_id: &str,
    ) -> Result<Option<TokenSubject>, StoreError>;
    /// The user and its token version.
    fn with_token_version(&mut self, user_id: &str) -> Result<Option<(User, i64)>, StoreError>;
    fn count_active_admins(&mut self) -> Result<i64, StoreError>;
    /// One page of users, oldest first, and how many match in all.
    fn list_users(
        &mut self,
        offset: i64,
        limit: i64,
        role: Option<Role>,
    ) -> Result<(Vec<User>, i64), StoreError>;
    fn role_counts(&mut self) -> Result<Vec<(Role, i64)>, StoreError>;
    fn count_active_users(&mut self) -> Result<i64, StoreError>;
    fn count_locked_users(&mut self, now: OffsetDateTime) -> Result<i64, StoreError>;

    /// A refresh token and the state of its family, by `jti`.
    fn refresh_token(&mut self, jti: &str) -> Result<Option<StoredRefresh>, StoreError>;
    /// Logins neither revoked nor past their family's end.
    fn count_live_sessions(&mut self, now: OffsetDateTime) -> Result<i64, StoreError>;
    /// A user's live logins, newest first.
    fn live_sessions_of(
        &mut self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// The two-factor state of an account; `None` when there is no such account.
    fn two_factor(&mut self, user_id: &str) -> Result<Option<TwoFactorState>, StoreError>;
    /// Accounts holding a sealed secret (enabled or pending).
    fn count_sealed_secrets(&mut self) -> Result<i64, StoreError>;
    /// The fingerprint remembered for the key `name`.
    fn key_fingerprint(&mut self, name: &str) -> Result<Option<String>, StoreError>;

    /// A user's unrevoked API keys, newest first.
    fn api_keys_of(&mut self, user_id: &str) -> Result<Vec<ApiKey>, StoreError>;
    /// Every unrevoked API key, newest first.
    fn all_api_keys(&mut self) -> Result<Vec<ApiKey>, StoreError>;
    /// An unrevoked API key by id.
    fn api_key(&mut self, key_id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// The unrevoked key whose current or overlapping old secret has
    /// `digest`, with its owner: what a request with that key acts as.
    fn key_subject(&mut self, digest: &str) -> Result<Option<KeySubject>, StoreError>;
    /// An unrevoked key's usage: its total, its last use, and its days
    /// from `since` on, newest first.
    fn key_usage(&mut self, key_id: &str, since: Date) -> Result<Option<KeyUsage>, StoreError>;

    fn settings(&mut self) -> Result<Vec<(String, String)>, StoreError>;

    /// One page of the audit trail, newest first, and how many match.
    fn list_audit(
        &mut self,
        offset: i64,
        limit: i64,
        kind: Option<AuditKind>,
        user_id: Option<&str>,
    ) -> Result<(Vec<AuditRecord>, i64), StoreError>;
    fn count_audit_since(
        &mut self,
        kind: AuditKind,
        since: OffsetDateTime,
    ) -> Result<i64, StoreError>;
}

/// Writes: what a script may do inside a write transaction.
pub trait Rows: Reads {
    /// `StoreError::Duplicate` when the username or email is taken.
    fn insert_user(&mut self, user: &NewUser, now: OffsetDateTime) -> Result<User, StoreError>;
    /// `StoreError::Duplicate` when the new email is taken.
    fn apply_patch(
        &mut self,
        user_id: &str,
        patch: &UserPatch,
        now: OffsetDateTime,
    ) -> Result<User, StoreError>;
    fn delete_user(&mut self, user_id: &str) -> Result<(), StoreError>;
    /// Stores the count (and lock) a wrong password leads to.
    fn store_failure(&mut self, user_id: &str, after: AfterFailure) -> Result<(), StoreError>;
    /// Clears the failure count and any lock; stores `rehash` when given.
    fn record_success(&mut self, user_id: &str, rehash: Option<&str>) -> Result<(), StoreError>;
    /// A new hash, the failure count and lock cleared, the token version bumped.
    fn set_password(
        &mut self,
        user_id: &str,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Makes every access token issued so far for this user fail.
    fn bump_token_version(&mut self, user_id: &str) -> Result<(), StoreError>;
    fn unlock(&mut self, user_id: &str, now: OffsetDateTime) -> Result<(), StoreError>;

    /// A new login: its family and its first refresh token.
    fn create_session(&mut self, user_id: &str, session: &NewSession) -> Result<(), StoreError>;
    fn insert_refresh_token(&mut self, token: &NewRefreshToken<'_>) -> Result<(), StoreError>;
    /// Marks `jti` consumed at `at` and replaced by `replaced_by`.
    fn consume_refresh_token(
        &mut self,
        jti: &str,
        at: OffsetDateTime,
        replaced_by: &str,
    ) -> Result<(), StoreError>;
    /// Ends one login; its user when it existed and was live.
    fn revoke_session(
        &mut self,
        family_id: &str,
        why: SessionEnd,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError>;
    /// Ends `family_id` if it is a live login of `user_id`; whether it was.
    fn revoke_session_of(
        &mut self,
        user_id: &str,
        family_id: &str,
        why: SessionEnd,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Notes that a login was used (a refresh) at `now`.
    fn touch_session(&mut self, family_id: &str, now: OffsetDateTime) -> Result<(), StoreError>;
    /// Ends every live login of a user; how many there were.
    fn revoke_sessions_of(
        &mut self,
        user_id: &str,
        why: SessionEnd,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError>;

    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Replaces the pending (not yet verified) TOTP secret, or clears it.
    fn set_pending_totp(&mut self, user_id: &str, sealed: Option<&[u8]>) -> Result<(), StoreError>;
    /// Turns two-factor authentication on with `sealed`, whose code for
    /// `step` has just been accepted; the pending secret is cleared.
    fn enable_totp(&mut self, user_id: &str, sealed: &[u8], step: i64) -> Result<(), StoreError>;
    /// Turns it off: secret, pending secret, last step and backup codes go.
    fn disable_totp(&mut self, user_id: &str) -> Result<(), StoreError>;
    /// Remembers the newest accepted step.
    fn set_totp_step(&mut self, user_id: &str, step: i64) -> Result<(), StoreError>;
    /// Replaces every backup code of the account with `hashes`.
    fn replace_backup_codes(&mut self, user_id: &str, hashes: &[String]) -> Result<(), StoreError>;
    /// Deletes the backup code with `hash`; whether it was there.
    fn consume_backup_code(&mut self, user_id: &str, hash: &str) -> Result<bool, StoreError>;
    fn put_key_fingerprint(&mut self, name: &str, fingerprint: &str) -> Result<(), StoreError>;

    fn insert_api_key(&mut self, key: &NewApiKey) -> Result<(), StoreError>;
    /// Gives the key a new secret; the current one becomes the old secret
    /// until `old_until` (a previous old secret ends at once).
    fn rotate_api_key(
        &mut self,
        key_id: &str,
        digest: &str,
        prefix: &str,
        now: OffsetDateTime,
        old_until: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Revokes a key, both its secrets; whether it was live.
    fn revoke_api_key(&mut self, key_id: &str, now: OffsetDateTime) -> Result<bool, StoreError>;
    /// Adds a key's tallied usage to what is stored: a later last use
    /// replaces an earlier one, counts add up. A key deleted meanwhile (with
    /// its owner) is skipped.
    fn add_key_usage(&mut self, delta: &UsageDelta) -> Result<(), StoreError>;

    fn insert_audit(&mut self, event: &AuditEvent, now: OffsetDateTime) -> Result<(), StoreError>;

    /// Deletes at most `limit` rows of one kind, older than its cutoff.
    /// Each batch must find its rows through an index, so that it holds the
    /// write lock briefly however large the backlog.
    fn delete_expired(
        &mut self,
        what: Prunable,
        cutoffs: Cutoffs,
        limit: usize,
    ) -> Result<usize, StoreError>;
}

/// What one housekeeping pass deletes: what ended or happened before these.
#[derive(Debug, Clone, Copy)]
pub struct Cutoffs {
    /// Sessions (and their tokens) that ended before this.
    pub sessions_before: OffsetDateTime,
    /// Audit rows older than this.
    pub audit_before: OffsetDateTime,
    /// API key usage of the days before this one.
    pub usage_before: Date,
}

/// What one kind of retention batch deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prunable {
    /// Refresh tokens past their own expiry (never later than their family's).
    Tokens,
    /// Refresh families past their expiry, with any token left in them.
    Families,
    /// Audit rows older than the retention.
    Audit,
    /// API key usage of days no longer shown.
    KeyUsage,
}

impl Prunable {
    pub const ALL: [Prunable; 4] = [
        Prunable::Tokens,
        Prunable::Families,
        Prunable::Audit,
        Prunable::KeyUsage,
    ];
}

/// Rows deleted by one housekeeping pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub refresh_tokens: usize,
    pub refresh_families: usize,
    pub audit_rows: usize,
    pub key_usage_days: usize,
}

impl Pruned {
    pub fn add(&mut self, what: Prunable, rows: usize) {
        let field = match what {
            Prunable::Tokens => &mut self.refresh_tokens,
            Prunable::Families => &mut self.refresh_families,
            Prunable::Audit => &mut self.audit_rows,
            Prunable::KeyUsage => &mut self.key_usage_days,
        };
        *field += rows;
    }

    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// A login's first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub family_id: String,
    pub jti: String,
    pub issued_at: OffsetDateTime,
    /// The family's end: the login time plus the refresh lifetime.
    pub family_expires_at: OffsetDateTime,
    pub client: SessionClient,
}

/// Who logged in, as the session list shows it.
#[derive(Debug, Clone, Default)]
pub struct SessionClient {
    pub ip: Option<String>,
    /// At most 200 characters.
    pub user_agent: Option<String>,
}

/// A live login as its user sees it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub client: SessionClient,
}

/// An account's two-factor state. The secrets are sealed (see
/// `auth::data_key`).
#[derive(Debug, Clone, Default)]
pub struct TwoFactorState {
    /// Set: two-factor authentication is on.
    pub secret: Option<Vec<u8>>,
    /// A setup waiting for its first code.
    pub pending: Option<Vec<u8>>,
    /// The newest TOTP step accepted.
    pub last_step: Option<i64>,
    pub backup_codes: i64,
}

/// A refresh token that replaces a consumed one in its family.
#[derive(Debug, Clone)]
pub struct NewRefreshToken<'a> {
    pub jti: &'a str,
    pub family_id: &'a str,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A stored refresh token, with what its rotation decides on.
#[derive(Debug, Clone)]
pub struct StoredRefresh {
    pub family_id: String,
    pub user_id: String,
    pub expires_at: OffsetDateTime,
    /// When it was consumed, to the millisecond.
    pub consumed_at: Option<OffsetDateTime>,
    /// Whether the token that replaced it has been consumed in turn.
    pub successor_used: bool,
    pub family_expires_at: OffsetDateTime,
    pub family_revoked: bool,
}

/// Why a login ended, as stored with its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    Logout,
    LogoutAll,
    PasswordChange,
    /// A role change or deactivation.
    AccountChanged,
    ReuseDetected,
    /// Ended by its user from the session list.
    Ended,
    /// Two-factor authentication turned on or off, or reset.
    TwoFactorChange,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Logout => "logout",
            SessionEnd::LogoutAll => "logout_all",
            SessionEnd::PasswordChange => "password_change",
            SessionEnd::AccountChanged => "account_changed",
            SessionEnd::ReuseDetected => "reuse_detected",
            SessionEnd::Ended => "ended",
            SessionEnd::TwoFactorChange => "two_factor_change",
        }
    }
}

/// An audit row as the admin API shows it.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: i64,
    pub occurred_at: String,
    pub event: String,
    pub user_id: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    /// A JSON object, as stored.
    pub detail: String,
}

/// One write transaction as a script sees it: the backend's rows, the time
/// it runs at, and the audit sink. `record` writes the audit row in this
/// transaction; the runner logs what was recorded once the transaction has
/// committed, and nothing when it rolled back.
pub struct Tx<'a> {
    rows: &'a mut dyn Rows,
    now: OffsetDateTime,
    recorded: Vec<AuditEvent>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(rows: &'a mut dyn Rows, now: OffsetDateTime) -> Self {
        Self {
            rows,
            now,
            recorded: Vec::new(),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    pub fn record(&mut self, event: AuditEvent) -> Result<(), StoreError> {
        self.rows.insert_audit(&event, self.now)?;
        self.recorded.push(event);
        Ok(())
    }

    pub(super) fn into_recorded(self) -> Vec<AuditEvent> {
        self.recorded
    }
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = dyn Rows + 'a;

    fn deref(&self) -> &Self::Target {
        self.rows
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.rows
    }
}
