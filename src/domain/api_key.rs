//! API keys for machine clients: what a key may do (its scopes), and what a
//! request with one is checked against.

use time::OffsetDateTime;

use super::Invalid;
use super::rate::Rate;
use super::rbac::{self, Permission};
use super::user::User;

/// A key's scopes: permission names, checked against the owner's role when
/// the key is made and on every request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Permission>);

impl Scopes {
    /// Every name must be a permission; duplicates collapse.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, Invalid> {
        let mut scopes = Vec::new();
        for name in names {
            let permission =
                Permission::parse(name).ok_or(Invalid("holds a name that is not a permission"))?;
            if !scopes.contains(&permission) {
                scopes.push(permission);
            }
        }
        Ok(Self(scopes))
    }

    pub fn of(permissions: &[Permission]) -> Self {
        Self(permissions.to_vec())
    }

    pub fn contains(&self, permission: Permission) -> bool {
        self.0.contains(&permission)
    }

    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }

    /// As stored: names separated by spaces.
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn from_text(text: &str) -> Result<Self, Invalid> {
        Self::parse(text.split_whitespace())
    }
}

/// A key as its owner sees it: never the key itself or its digest.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The key's first 12 characters, to recognise it by.
    pub prefix: String,
    pub scopes: Scopes,
    /// `N/second|minute|hour`.
    pub rate_limit: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub rotated_at: Option<OffsetDateTime>,
}

/// A key to store: its digest, never the key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub digest: String,
    pub scopes: Scopes,
    pub rate_limit: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What a request with an API key is checked against, read in one query:
/// the key's state and its owner as they are now.
#[derive(Debug, Clone)]
pub struct KeySubject {
    pub key_id: String,
    pub owner: User,
    pub scopes: Scopes,
    pub rate: Rate,
    pub expires_at: OffsetDateTime,
    /// Set when the presented secret is the one replaced by the last
    /// rotation: it works until then.
    pub old_secret_until: Option<OffsetDateTime>,
}

impl KeySubject {
    /// Whether the key may act now: not expired, an overlapping old secret
    /// still inside its overlap, an active owner.
    pub fn admits(&self, now: OffsetDateTime) -> bool {
        self.owner.is_active
            && now < self.expires_at
            && self.old_secret_until.is_none_or(|until| now < until)
    }

    /// The owner's current permissions intersected with the key's scopes.
    pub fn allows(&self, permission: Permission) -> bool {
        self.scopes.contains(permission) && rbac::allows(self.owner.role, permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_name_parses_back() {
        use strum::IntoEnumIterator;
        for permission in Permission::iter() {
            assert_eq!(Permission::parse(permission.as_str()), Some(permission));
        }
        assert_eq!(Permission::iter().count(), 11);
    }

    #[test]
    fn scopes_parse_round_trip_and_refuse_unknown_names() {
        let scopes = Scopes::parse(["self:read", "users:read", "self:read"]).unwrap();
        assert_eq!(scopes.to_text(), "self:read users:read");
        assert_eq!(Scopes::from_text(&scopes.to_text()).unwrap(), scopes);
        assert!(Scopes::parse(["self:read", "root"]).is_err());
        assert!(Scopes::parse(["Self:Read"]).is_err());
    }
}
