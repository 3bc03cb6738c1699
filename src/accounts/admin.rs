//! Account management by admins and moderators, and the operator's
//! `secure-api unlock`. The policy is checked inside the transaction that
//! applies the change, against the actor and target as they are then: two
//! concurrent demotions cannot both see two admins.

use time::OffsetDateTime;

use crate::domain::audit::{AuditEvent, CommandLine, Event, Initiator, Origin};
use crate::domain::lockout;
use crate::domain::policy::{self, Actor, UserPatch};
use crate::domain::user::User;
use crate::store::Store;
use crate::store::rows::{SessionEnd, Tx};

use super::profile::change_events;
use super::{AccountError, fresh_actor};

/// Applies an admin's or moderator's change. A role change or deactivation
/// ends the user's sessions and tokens.
pub async fn patch_user(
    store: &Store,
    origin: Origin,
    actor_id: String,
    target_id: String,
    patch: UserPatch,
    now: OffsetDateTime,
) -> Result<User, AccountError> {
    store
        .write(now, move |tx| {
            let (actor, target) = actor_and_target(tx, &actor_id, &target_id)?;
            let admins = tx.count_active_admins()?;
            policy::check_patch(&actor, &target, &patch, admins)?;
            let updated = tx.apply_patch(&target_id, &patch, now)?;
            if patch.changes_role_of(&target) || patch.changes_activation_of(&target) {
                tx.bump_token_version(&target_id)?;
                tx.revoke_sessions_of(&target_id, SessionEnd::AccountChanged, now)?;
            }
            for event in change_events(&target, &updated, &actor_id) {
                tx.record(AuditEvent::new(&origin, Some(&target_id), event))?;
            }
            Ok(updated)
        })
        .await
}

pub async fn delete_user(
    store: &Store,
    origin: Origin,
    actor_id: String,
    target_id: String,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    store
        .write(now, move |tx| {
            let (actor, target) = actor_and_target(tx, &actor_id, &target_id)?;
            let admins = tx.count_active_admins()?;
            policy::check_delete(&actor, &target, admins)?;
            tx.delete_user(&target_id)?;
            let event = Event::UserDeleted {
                actor_id,
                username: target.username,
                role: target.role,
            };
            tx.record(AuditEvent::new(&origin, Some(&target_id), event))?;
            Ok(())
        })
        .await
}

/// Clears a lockout (`POST /users/{id}/unlock`).
pub async fn unlock_user(
    store: &Store,
    origin: Origin,
    actor_id: String,
    target_id: String,
    now: OffsetDateTime,
) -> Result<User, AccountError> {
    store
        .write(now, move |tx| {
            let (actor, target) = actor_and_target(tx, &actor_id, &target_id)?;
            policy::check_unlock(&actor, &target)?;
            tx.unlock(&target_id, now)?;
            let event = Event::Unlock {
                by: Initiator::Actor { actor_id },
            };
            tx.record(AuditEvent::new(&origin, Some(&target_id), event))?;
            tx.user_by_id(&target_id)?.ok_or(AccountError::NotFound)
        })
        .await
}

/// The actor's rights and the target account, as they are in this transaction.
pub(super) fn actor_and_target(
    tx: &mut Tx<'_>,
    actor_id: &str,
    target_id: &str,
) -> Result<(Actor, User), AccountError> {
    let actor = fresh_actor(&mut **tx, actor_id)?;
    let target = tx.user_by_id(target_id)?.ok_or(AccountError::NotFound)?;
    Ok((actor, target))
}

/// What `secure-api unlock` found and did.
#[derive(Debug)]
pub struct Unlocked {
    pub user: User,
    /// Whether a lock was in force (a count of failures alone is cleared too).
    pub was_locked: bool,
}

/// The script of `secure-api unlock`: clears the lockout of the account with
/// `email` for an operator who cannot log in; `None` when there is no such
/// account.
pub fn unlock_by_email(tx: &mut Tx<'_>, email: &str) -> Result<Option<Unlocked>, AccountError> {
    let now = tx.now();
    let Some(found) = tx.credentials_by_email(email)? else {
        return Ok(None);
    };
    let user_id = found.user.id.as_str().to_owned();
    let was_locked = tx
        .guard_state(&user_id)?
        .is_some_and(|state| lockout::is_locked(state.locked_until, now));
    tx.unlock(&user_id, now)?;
    let event = Event::Unlock {
        by: Initiator::CommandLine {
            via: CommandLine::CommandLine,
        },
    };
    tx.record(AuditEvent::new(&Origin::default(), Some(&user_id), event))?;
    Ok(Some(Unlocked {
        user: found.user,
        was_locked,
    }))
}
