//! The caller's own account (`PUT /users/me`), and the audit events a
//! change of an account amounts to.

use time::OffsetDateTime;

use crate::domain::audit::{AuditEvent, Event, Origin};
use crate::domain::email::Email;
use crate::domain::full_name::FullName;
use crate::domain::policy::UserPatch;
use crate::domain::user::User;
use crate::store::Store;

use super::AccountError;

/// What a user may change about themselves: their name and email, never
/// their role or whether they are active.
#[derive(Debug, Clone, Default)]
pub struct OwnProfile {
    /// `Some(None)` clears the name.
    pub full_name: Option<Option<FullName>>,
    pub email: Option<Email>,
}

pub async fn update_own_profile(
    store: &Store,
    origin: Origin,
    user_id: String,
    profile: OwnProfile,
    now: OffsetDateTime,
) -> Result<User, AccountError> {
    let patch = UserPatch {
        full_name: profile.full_name,
        email: profile.email,
        role: None,
        is_active: None,
    };
    store
        .write(now, move |tx| {
            let before = tx.user_by_id(&user_id)?.ok_or(AccountError::NotFound)?;
            let updated = tx.apply_patch(&user_id, &patch, now)?;
            for event in change_events(&before, &updated, &user_id) {
                tx.record(AuditEvent::new(&origin, Some(&user_id), event))?;
            }
            Ok(updated)
        })
        .await
}

/// The audit events a change from `before` to `after` by `actor_id` amounts to.
pub(super) fn change_events(before: &User, after: &User, actor_id: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let mut fields = Vec::new();
    if before.full_name != after.full_name {
        fields.push("full_name");
    }
    if before.email != after.email {
        fields.push("email");
    }
    if !fields.is_empty() {
        events.push(Event::ProfileChange {
            fields,
            actor_id: actor_id.to_owned(),
        });
    }
    if before.role != after.role {
        events.push(Event::RoleChange {
            from: before.role,
            to: after.role,
            actor_id: actor_id.to_owned(),
        });
    }
    if before.is_active != after.is_active {
        events.push(Event::ActivationChange {
            is_active: after.is_active,
            actor_id: actor_id.to_owned(),
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::domain::role::Role;
    use crate::domain::user::UserId;

    fn user() -> User {
        User {
            id: UserId::random(),
            username: "someone".into(),
            email: "someone@example.com".into(),
            full_name: None,
            role: Role::User,
            is_active: true,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            two_factor_enabled: false,
        }
    }

    #[test]
    fn each_kind_of_change_is_one_event_naming_the_actor() {
        let before = user();
        assert!(change_events(&before, &before, "a").is_empty());

        let after = User {
            full_name: Some("Some One".into()),
            email: "one@example.com".into(),
            role: Role::Moderator,
            is_active: false,
            ..before.clone()
        };
        let events = change_events(&before, &after, "a");
        let described: Vec<_> = events.iter().map(|e| (e.as_str(), e.detail())).collect();
        assert_eq!(
            described,
            [
                (
                    "profile_change",
                    json!({ "fields": ["full_name", "email"], "actor_id": "a" })
                ),
                (
                    "role_change",
                    json!({ "from": "user", "to": "moderator", "actor_id": "a" })
                ),
                (
                    "activation_change",
                    json!({ "is_active": false, "actor_id": "a" })
                ),
            ]
        );
    }
}
