//! Roles and what each may do: the one place that maps one to the other.

use super::role::Role;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
)]
pub enum Permission {
    #[strum(serialize = "users:read")]
    UsersRead,
    #[strum(serialize = "users:write")]
    UsersWrite,
    #[strum(serialize = "users:delete")]
    UsersDelete,
    #[strum(serialize = "self:read")]
    SelfRead,
    #[strum(serialize = "self:write")]
    SelfWrite,
    #[strum(serialize = "content:read")]
    ContentRead,
    #[strum(serialize = "content:write")]
    ContentWrite,
    #[strum(serialize = "content:delete")]
    ContentDelete,
    #[strum(serialize = "admin:read")]
    AdminRead,
    #[strum(serialize = "admin:write")]
    AdminWrite,
    #[strum(serialize = "system:manage")]
    SystemManage,
}

impl Permission {
    /// The name API.md uses.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}

pub fn permissions(role: Role) -> &'static [Permission] {
    use Permission::*;
    match role {
        Role::Admin => &[
            UsersRead,
            UsersWrite,
            UsersDelete,
            SelfRead,
            SelfWrite,
            ContentRead,
            ContentWrite,
            ContentDelete,
            AdminRead,
            AdminWrite,
            SystemManage,
        ],
        Role::Moderator => &[
            UsersRead,
            UsersWrite,
            SelfRead,
            SelfWrite,
            ContentRead,
            ContentWrite,
            ContentDelete,
        ],
        Role::User => &[SelfRead, SelfWrite, ContentRead, ContentWrite],
        Role::Viewer => &[SelfRead, ContentRead],
    }
}

pub fn allows(role: Role, permission: Permission) -> bool {
    permissions(role).contains(&permission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_of_api_md() {
        let names = |role| -> Vec<&str> { permissions(role).iter().map(|p| p.as_str()).collect() };
        assert_eq!(names(Role::Viewer), ["self:read", "content:read"]);
        assert_eq!(
            names(Role::User),
            ["self:read", "self:write", "content:read", "content:write"]
        );
        assert!(!allows(Role::Moderator, Permission::UsersDelete));
        assert!(!allows(Role::Moderator, Permission::AdminRead));
        assert!(allows(Role::Admin, Permission::SystemManage));
        assert_eq!(permissions(Role::Admin).len(), 11);
    }
}
