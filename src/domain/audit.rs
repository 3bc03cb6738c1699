//! Audit events: what happened, to whom, from where. Each kind carries its
//! detail as typed fields; the detail never holds a password, a hash, a
//! token or a clear email (emails are masked before they get here).

use std::collections::BTreeMap;

use serde::Serialize;

use super::lockout::Verdict;
use super::role::Role;

/// What happened, with its detail. The kind's name (`as_str`) is the
/// variant's name in snake case; the detail is the variant's fields as a
/// JSON object (`{}` for a variant without any).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::EnumDiscriminants,
)]
#[serde(untagged)]
#[strum(serialize_all = "snake_case")]
#[strum_discriminants(
    name(AuditKind),
    derive(strum::EnumString, strum::IntoStaticStr, strum::EnumIter),
    strum(serialize_all = "snake_case")
)]
pub enum Event {
    Registration {
        username: String,
        email: String,
    },
    LoginSuccess {},
    LoginFailure {
        email: String,
        reason: LoginFailure,
    },
    /// A failed password check that locked the account.
    Lockout {
        /// Unix seconds.
        locked_until: i64,
    },
    RefreshReuseDetected {
        family_id: String,
    },
    /// A consumed refresh token presented again inside the grace window.
    RefreshReuseInGrace {
        family_id: String,
    },
    Logout {},
    LogoutAll {
        sessions_ended: usize,
    },
    PasswordChange {},
    /// A wrong current password given to change-password.
    PasswordChangeFailure {
        reason: LoginFailure,
    },
    ProfileChange {
        fields: Vec<&'static str>,
        actor_id: String,
    },
    RoleChange {
        from: Role,
        to: Role,
        actor_id: String,
    },
    ActivationChange {
        is_active: bool,
        actor_id: String,
    },
    UserCreated {
        actor_id: String,
        role: Role,
        username: String,
    },
    UserDeleted {
        actor_id: String,
        username: String,
        role: Role,
    },
    Unlock {
        #[serde(flatten)]
        by: Initiator,
    },
    ConfigChange {
        /// Setting name to its new value, as stored.
        changed: BTreeMap<String, String>,
    },
    PermissionDenied {
        permission: &'static str,
        role: Role,
        method: String,
    },
    RateLimited {
        /// The path as the limiter matched it; never the query.
        path: String,
    },
    /// An invalid, expired or revoked access token (one per client a minute).
    TokenRejected {
        reason: TokenRejection,
    },
    /// A login ended by its user from the session list.
    SessionEnded {
        session_id: String,
    },
    TwoFactorEnabled {},
    TwoFactorDisabled {},
    /// A wrong password or code given for a second-factor step.
    TwoFactorFailed {
        reason: LoginFailure,
    },
    /// Turned off for someone who lost the device.
    TwoFactorReset {
        #[serde(flatten)]
        by: Initiator,
    },
    BackupCodeUsed {
        remaining: i64,
    },
    BackupCodesRegenerated {},
    ApiKeyCreated {
        key_id: String,
        name: String,
        scopes: String,
    },
    ApiKeyRotated {
        key_id: String,
        /// Until when the previous secret keeps working (unix seconds).
        old_secret_until: i64,
    },
    ApiKeyRevoked {
        key_id: String,
        actor_id: String,
    },
    /// An invalid key presented (at most one per client address a minute).
    ApiKeyRejected {
        reason: KeyRejection,
    },
}

impl Event {
    pub fn kind(&self) -> AuditKind {
        self.into()
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// The detail as the audit trail stores it: a JSON object.
    pub fn detail(&self) -> serde_json::Value {
        // Every variant is a struct of plain fields, so this cannot fail;
        // an empty object is the safe answer if it ever did.
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}))
    }
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

/// Why a password check failed, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    UnknownEmail,
    WrongPassword,
    Locked,
    Inactive,
    /// The password or token version moved while the check ran.
    CredentialsChanged,
    /// A wrong, expired or replayed TOTP code, or an unknown backup code.
    WrongCode,
}

impl LoginFailure {
    /// The failure a verdict amounts to; `None` for an accepted check.
    pub fn of(verdict: Verdict) -> Option<Self> {
        match verdict {
            Verdict::Accepted => None,
            Verdict::WrongPassword(_) => Some(LoginFailure::WrongPassword),
            Verdict::Locked => Some(LoginFailure::Locked),
            Verdict::Inactive => Some(LoginFailure::Inactive),
            Verdict::CredentialsChanged => Some(LoginFailure::CredentialsChanged),
        }
    }
}

/// Who cleared a lockout or reset a second factor: an account through the
/// API, or an operator at the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Initiator {
    /// An admin or moderator through the API.
    Actor { actor_id: String },
    /// An operator with `secure-api unlock`.
    CommandLine { via: CommandLine },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLine {
    CommandLine,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRejection {
    /// Not a bearer token at all.
    Malformed,
    /// A bad signature or claims.
    Invalid,
    /// A refresh token used as an access token.
    WrongKind,
    Expired,
    /// Signed by us, but its session ended, its token version was bumped, or
    /// its account is inactive or gone.
    Revoked,
}

/// Why an API key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRejection {
    /// Not shaped like a key at all.
    Malformed,
    /// No live key has this secret (never issued, revoked, or an old secret
    /// past its overlap).
    Unknown,
    Expired,
    /// The owner is deactivated.
    OwnerInactive,
}

/// Where an event came from: the request, or nowhere (a command).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub event: Event,
    pub user_id: Option<String>,
    pub origin: Origin,
}

impl AuditEvent {
    pub fn new(origin: &Origin, user_id: Option<&str>, event: Event) -> Self {
        Self {
            event,
            user_id: user_id.map(str::to_owned),
            origin: origin.clone(),
        }
    }

    pub fn kind(&self) -> AuditKind {
        self.event.kind()
    }

    /// Writes the event as one JSON log line (target `audit`).
    pub fn log(&self) {
        tracing::info!(
            target: "audit",
            event = self.event.as_str(),
            user_id = self.user_id.as_deref().unwrap_or("-"),
            client_ip = self.origin.client_ip.as_deref().unwrap_or("-"),
            audit_request_id = self.origin.request_id.as_deref().unwrap_or("-"),
            detail = %self.event.detail(),
            "audit"
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn kinds_are_named_in_snake_case_and_parse_back() {
        let event = Event::RefreshReuseInGrace {
            family_id: "f".into(),
        };
        assert_eq!(event.as_str(), "refresh_reuse_in_grace");
        assert_eq!(event.kind().as_str(), "refresh_reuse_in_grace");
        for kind in AuditKind::iter() {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AuditKind::iter().count(), 31);
        assert_eq!(AuditKind::parse("LoginSuccess"), None);
        assert_eq!(AuditKind::parse("nope"), None);
    }

    #[test]
    fn details_are_the_fields_as_stored_before_they_were_typed() {
        assert_eq!(Event::LoginSuccess {}.detail(), json!({}));
        assert_eq!(
            Event::LoginFailure {
                email: "a***@example.com".into(),
                reason: LoginFailure::UnknownEmail
            }
            .detail(),
            json!({ "email": "a***@example.com", "reason": "unknown_email" })
        );
        assert_eq!(
            Event::RoleChange {
                from: Role::User,
                to: Role::Admin,
                actor_id: "x".into()
            }
            .detail(),
            json!({ "from": "user", "to": "admin", "actor_id": "x" })
        );
        assert_eq!(
            Event::Unlock {
                by: Initiator::CommandLine {
                    via: CommandLine::CommandLine
                }
            }
            .detail(),
            json!({ "via": "command_line" })
        );
        assert_eq!(
            Event::Unlock {
                by: Initiator::Actor {
                    actor_id: "x".into()
                }
            }
            .detail(),
            json!({ "actor_id": "x" })
        );
        assert_eq!(
            Event::TokenRejected {
                reason: TokenRejection::WrongKind
            }
            .detail(),
            json!({ "reason": "wrong_kind" })
        );
    }
}
