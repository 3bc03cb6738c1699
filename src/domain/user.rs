use time::OffsetDateTime;

use super::email::Email;
use super::full_name::FullName;
use super::role::Role;
use super::username::Username;

/// A user account as the rest of the program sees it. The password hash and
/// the counters that guard it stay in `Credentials`.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub role: Role,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub two_factor_enabled: bool,
}

/// Opaque user identifier (a random UUID, so ids cannot be enumerated).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts only the canonical hyphenated form, so one user has one id.
    pub fn parse(raw: &str) -> Option<Self> {
        let uuid = uuid::Uuid::try_parse(raw).ok()?;
        let canonical = uuid.hyphenated().to_string();
        (canonical == raw).then_some(Self(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything needed to create an account; the hash is made before the store
/// sees it.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub full_name: Option<FullName>,
    pub role: Role,
    pub password_hash: String,
}

/// What login needs to know about an account, hash included. Never leaves
/// the server: there is no DTO for it.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub token_version: i64,
}

/// What every authenticated request checks: the account still exists, is
/// active, and has not bumped its token version since the token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthState {
    pub role: Role,
    pub is_active: bool,
    pub token_version: i64,
}

/// What a request with an access token is checked against: the account, its
/// token version, and when the token's session ends (`None`: ended, or not
/// the account's).
#[derive(Debug, Clone)]
pub struct TokenSubject {
    pub user: User,
    pub token_version: i64,
    /// Unix seconds.
    pub session_ends_at: Option<i64>,
}

impl TokenSubject {
    /// A token issued under `token_version` for `session_id` may act now.
    pub fn admits(&self, token_version: i64, now_unix: i64) -> bool {
        self.user.is_active
            && self.token_version == token_version
            && self.session_ends_at.is_some_and(|end| now_unix < end)
    }
}
