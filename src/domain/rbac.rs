//! Roles and what each may do: the one place that maps one to the other.

use super::role::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
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
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::UsersDelete => "users:delete",
            Permission::SelfRead => "self:read",
            Permission::SelfWrite => "self:write",
            Permission::ContentRead => "content:read",
            Permission::ContentWrite => "content:write",
            Permission::ContentDelete => "content:delete",
            Permission::AdminRead => "admin:read",
            Permission::AdminWrite => "admin:write",
            Permission::SystemManage => "system:manage",
        }
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
