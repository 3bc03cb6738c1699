use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::domain::user::User;

/// A user as clients see it: never a hash, a counter or a token version.
#[derive(Debug, Serialize)]
pub struct UserDto {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub role: &'static str,
    pub is_active: bool,
    pub two_factor_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&User> for UserDto {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.as_str().to_owned(),
            username: user.username.clone(),
            email: user.email.clone(),
            full_name: user.full_name.clone(),
            role: user.role.as_str(),
            is_active: user.is_active,
            two_factor_enabled: user.two_factor_enabled,
            created_at: user.created_at.format(&Rfc3339).unwrap_or_default(),
            updated_at: user.updated_at.format(&Rfc3339).unwrap_or_default(),
        }
    }
}
