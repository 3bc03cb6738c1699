//! Audit events: what happened, to whom, from where. The detail is a small
//! JSON object that never holds a password, a hash, a token or a clear email.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Registration,
    LoginSuccess,
    LoginFailure,
    Lockout,
    RefreshReuseDetected,
    Logout,
    LogoutAll,
    PasswordChange,
    ProfileChange,
    RoleChange,
    ActivationChange,
    UserCreated,
    UserDeleted,
    Unlock,
    ConfigChange,
    PermissionDenied,
    RateLimited,
    /// A consumed refresh token presented again inside the grace window.
    RefreshReuseInGrace,
    /// An invalid, expired or revoked access token (one per client a minute).
    TokenRejected,
    /// A wrong current password given to change-password.
    PasswordChangeFailure,
}

impl AuditKind {
    pub const ALL: [AuditKind; 20] = [
        AuditKind::Registration,
        AuditKind::LoginSuccess,
        AuditKind::LoginFailure,
        AuditKind::Lockout,
        AuditKind::RefreshReuseDetected,
        AuditKind::Logout,
        AuditKind::LogoutAll,
        AuditKind::PasswordChange,
        AuditKind::ProfileChange,
        AuditKind::RoleChange,
        AuditKind::ActivationChange,
        AuditKind::UserCreated,
        AuditKind::UserDeleted,
        AuditKind::Unlock,
        AuditKind::ConfigChange,
        AuditKind::PermissionDenied,
        AuditKind::RateLimited,
        AuditKind::RefreshReuseInGrace,
        AuditKind::TokenRejected,
        AuditKind::PasswordChangeFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Registration => "registration",
            AuditKind::LoginSuccess => "login_success",
            AuditKind::LoginFailure => "login_failure",
            AuditKind::Lockout => "lockout",
            AuditKind::RefreshReuseDetected => "refresh_reuse_detected",
            AuditKind::Logout => "logout",
            AuditKind::LogoutAll => "logout_all",
            AuditKind::PasswordChange => "password_change",
            AuditKind::ProfileChange => "profile_change",
            AuditKind::RoleChange => "role_change",
            AuditKind::ActivationChange => "activation_change",
            AuditKind::UserCreated => "user_created",
            AuditKind::UserDeleted => "user_deleted",
            AuditKind::Unlock => "unlock",
            AuditKind::ConfigChange => "config_change",
            AuditKind::PermissionDenied => "permission_denied",
            AuditKind::RateLimited => "rate_limited",
            AuditKind::RefreshReuseInGrace => "refresh_reuse_in_grace",
            AuditKind::TokenRejected => "token_rejected",
            AuditKind::PasswordChangeFailure => "password_change_failure",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub kind: AuditKind,
    pub user_id: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Value,
}

impl AuditEvent {
    /// The same origin (user, client, request) with another kind and detail.
    pub fn follow_up(&self, kind: AuditKind, detail: Value) -> Self {
        Self {
            kind,
            user_id: self.user_id.clone(),
            client_ip: self.client_ip.clone(),
            request_id: self.request_id.clone(),
            detail,
        }
    }

    /// Writes the event as one JSON log line (target `audit`).
    pub fn log(&self) {
        tracing::info!(
            target: "audit",
            event = self.kind.as_str(),
            user_id = self.user_id.as_deref().unwrap_or("-"),
            client_ip = self.client_ip.as_deref().unwrap_or("-"),
            audit_request_id = self.request_id.as_deref().unwrap_or("-"),
            detail = %self.detail,
            "audit"
        );
    }
}
