//! Read-only views for admins and moderators: accounts, statistics, the
//! audit trail.

use time::OffsetDateTime;

use crate::domain::audit::AuditKind;
use crate::domain::role::Role;
use crate::domain::user::User;
use crate::store::Store;
use crate::store::rows::AuditRecord;

use super::AccountError;

pub async fn user(store: &Store, user_id: String) -> Result<Option<User>, AccountError> {
    store.read(move |rows| Ok(rows.user_by_id(&user_id)?)).await
}

/// One page of accounts, oldest first, and how many match.
pub async fn users(
    store: &Store,
    offset: i64,
    limit: i64,
    role: Option<Role>,
) -> Result<(Vec<User>, i64), AccountError> {
    store
        .read(move |rows| Ok(rows.list_users(offset, limit, role)?))
        .await
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub users_by_role: Vec<(Role, i64)>,
    pub active_users: i64,
    pub locked_users: i64,
    pub active_sessions: i64,
    pub failed_logins_24h: i64,
}

pub async fn stats(store: &Store, now: OffsetDateTime) -> Result<Stats, AccountError> {
    store
        .read(move |rows| {
            Ok(Stats {
                users_by_role: rows.role_counts()?,
                active_users: rows.count_active_users()?,
                locked_users: rows.count_locked_users(now)?,
                active_sessions: rows.count_live_sessions(now)?,
                failed_logins_24h: rows
                    .count_audit_since(AuditKind::LoginFailure, now - time::Duration::hours(24))?,
            })
        })
        .await
}

/// One page of the audit trail, newest first, and how many match.
pub async fn audit_trail(
    store: &Store,
    offset: i64,
    limit: i64,
    kind: Option<AuditKind>,
    user_id: Option<String>,
) -> Result<(Vec<AuditRecord>, i64), AccountError> {
    store
        .read(move |rows| Ok(rows.list_audit(offset, limit, kind, user_id.as_deref())?))
        .await
}
