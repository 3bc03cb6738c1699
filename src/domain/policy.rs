//! Who may do what to whom, beyond the permission map: moderator limits,
//! self-protection and the last active admin. Pure functions over fresh data,
//! which `accounts` calls inside the write transaction that applies the change.

use super::email::Email;
use super::full_name::FullName;
use super::role::Role;
use super::user::User;

/// The caller, as re-read inside the transaction.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: String,
    pub role: Role,
    pub is_active: bool,
}

/// An admin's or moderator's change to an account; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// `Some(None)` clears the name.
    pub full_name: Option<Option<FullName>>,
    pub email: Option<Email>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

impl UserPatch {
    pub fn changes_role_of(&self, target: &User) -> bool {
        self.role.is_some_and(|role| role != target.role)
    }

    pub fn changes_activation_of(&self, target: &User) -> bool {
        self.is_active
            .is_some_and(|active| active != target.is_active)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 400: nobody removes their own access through the admin routes.
    SelfProtection(&'static str),
    /// 403
    Forbidden(&'static str),
    /// 409: the change would leave no active admin.
    LastAdmin,
}

fn moderator_may_touch(actor: &Actor, target: &User) -> Result<(), Denied> {
    if actor.role == Role::Moderator && matches!(target.role, Role::Admin | Role::Moderator) {
        return Err(Denied::Forbidden(
            "Moderators may not modify admins or moderators",
        ));
    }
    Ok(())
}

/// The caller's rights as they are now, not as they were at authentication.
pub fn check_actor(actor: &Actor, needs_admin_rights: bool) -> Result<(), Denied> {
    let allowed = actor.is_active
        && match actor.role {
            Role::Admin => true,
            Role::Moderator => !needs_admin_rights,
            Role::User | Role::Viewer => false,
        };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "You do not have permission to perform this action",
        ))
    }
}

pub fn check_create(actor: &Actor, role: Role) -> Result<(), Denied> {
    check_actor(actor, false)?;
    if actor.role == Role::Moderator && !matches!(role, Role::User | Role::Viewer) {
        return Err(Denied::Forbidden(
            "Moderators may only create user or viewer accounts",
        ));
    }
    Ok(())
}

/// `active_admins` counts active admins before the change, the target included.
pub fn check_patch(
    actor: &Actor,
    target: &User,
    patch: &UserPatch,
    active_admins: i64,
) -> Result<(), Denied> {
    check_actor(actor, false)?;
    if actor.role == Role::Moderator && patch.role.is_some() {
        return Err(Denied::Forbidden("Moderators may not change roles"));
    }
    moderator_may_touch(actor, target)?;
    if actor.user_id == target.id.as_str() {
        if patch.changes_role_of(target) {
            return Err(Denied::SelfProtection("You cannot change your own role"));
        }
        if patch.is_active == Some(false) {
            return Err(Denied::SelfProtection(
                "You cannot deactivate your own account",
            ));
        }
    }
    let removes_an_admin = target.role == Role::Admin
        && target.is_active
        && (patch.changes_role_of(target) || patch.is_active == Some(false));
    if removes_an_admin && active_admins <= 1 {
        return Err(Denied::LastAdmin);
    }
    Ok(())
}

pub fn check_delete(actor: &Actor, target: &User, active_admins: i64) -> Result<(), Denied> {
    check_actor(actor, true)?;
    if actor.user_id == target.id.as_str() {
        return Err(Denied::SelfProtection("You cannot delete your own account"));
    }
    if target.role == Role::Admin && target.is_active && active_admins <= 1 {
        return Err(Denied::LastAdmin);
    }
    Ok(())
}

pub fn check_unlock(actor: &Actor, target: &User) -> Result<(), Denied> {
    check_actor(actor, false)?;
    moderator_may_touch(actor, target)
}

/// Turning off someone else's second factor (they lost the device). One's
/// own goes through `/auth/2fa/disable`, which asks for the password and a
/// code: a stolen access token must not be enough to remove it.
pub fn check_two_factor_reset(actor: &Actor, target: &User) -> Result<(), Denied> {
    check_actor(actor, false)?;
    moderator_may_touch(actor, target)?;
    if actor.user_id == target.id.as_str() {
        return Err(Denied::SelfProtection(
            "Use /api/v1/auth/2fa/disable for your own account",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::user::UserId;
    use time::OffsetDateTime;

    fn user(role: Role) -> User {
        User {
            id: UserId::random(),
            username: "u".into(),
            email: "u@example.com".into(),
            full_name: None,
            role,
            is_active: true,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            two_factor_enabled: false,
        }
    }

    fn actor_of(user: &User) -> Actor {
        Actor {
            user_id: user.id.as_str().to_owned(),
            role: user.role,
            is_active: true,
        }
    }

    #[test]
    fn moderators_manage_only_users_and_viewers_and_never_roles() {
        let moderator = actor_of(&user(Role::Moderator));
        let demote = UserPatch {
            role: Some(Role::Viewer),
            ..UserPatch::default()
        };
        let rename = UserPatch {
            full_name: Some(None),
            ..UserPatch::default()
        };
        assert!(matches!(
            check_patch(&moderator, &user(Role::User), &demote, 2),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            check_patch(&moderator, &user(Role::User), &rename, 2),
            Ok(())
        );
        for protected in [Role::Admin, Role::Moderator] {
            assert!(matches!(
                check_patch(&moderator, &user(protected), &rename, 2),
                Err(Denied::Forbidden(_))
            ));
            assert!(check_unlock(&moderator, &user(protected)).is_err());
        }
        assert!(check_create(&moderator, Role::Viewer).is_ok());
        assert!(check_create(&moderator, Role::Moderator).is_err());
        assert!(
            check_delete(&moderator, &user(Role::User), 2).is_err(),
            "admin rights needed"
        );
    }

    #[test]
    fn nobody_demotes_deactivates_or_deletes_themselves() {
        let me = user(Role::Admin);
        let actor = actor_of(&me);
        let demote = UserPatch {
            role: Some(Role::User),
            ..UserPatch::default()
        };
        let deactivate = UserPatch {
            is_active: Some(false),
            ..UserPatch::default()
        };
        let same_role = UserPatch {
            role: Some(Role::Admin),
            ..UserPatch::default()
        };
        assert!(matches!(
            check_patch(&actor, &me, &demote, 3),
            Err(Denied::SelfProtection(_))
        ));
        assert!(matches!(
            check_patch(&actor, &me, &deactivate, 3),
            Err(Denied::SelfProtection(_))
        ));
        assert_eq!(check_patch(&actor, &me, &same_role, 3), Ok(()));
        assert!(matches!(
            check_delete(&actor, &me, 3),
            Err(Denied::SelfProtection(_))
        ));
    }

    #[test]
    fn the_last_active_admin_stays() {
        let actor = actor_of(&user(Role::Admin));
        let other_admin = user(Role::Admin);
        let demote = UserPatch {
            role: Some(Role::Moderator),
            ..UserPatch::default()
        };
        assert_eq!(
            check_patch(&actor, &other_admin, &demote, 1),
            Err(Denied::LastAdmin)
        );
        assert_eq!(check_patch(&actor, &other_admin, &demote, 2), Ok(()));
        assert_eq!(
            check_delete(&actor, &other_admin, 1),
            Err(Denied::LastAdmin)
        );
        let mut inactive_admin = user(Role::Admin);
        inactive_admin.is_active = false;
        assert_eq!(check_delete(&actor, &inactive_admin, 1), Ok(()));
    }

    #[test]
    fn a_caller_demoted_meanwhile_has_no_rights_left() {
        let mut actor = actor_of(&user(Role::Admin));
        actor.role = Role::User;
        assert!(check_unlock(&actor, &user(Role::Viewer)).is_err());
        actor.role = Role::Admin;
        actor.is_active = false;
        assert!(check_create(&actor, Role::User).is_err());
    }
}
