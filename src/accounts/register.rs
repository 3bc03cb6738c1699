//! New accounts: self-registration, creation by an admin or moderator, and
//! the first admin made by `secure-api create-admin`.

use crate::domain::audit::{AuditEvent, Event, Origin};
use crate::domain::policy;
use crate::domain::user::{NewUser, User};
use crate::store::Store;
use crate::store::rows::Tx;
use time::OffsetDateTime;

use super::{AccountError, fresh_actor};

/// A visitor's own account (`POST /auth/register`).
pub async fn register(
    store: &Store,
    origin: Origin,
    user: NewUser,
    masked_email: String,
    now: OffsetDateTime,
) -> Result<User, AccountError> {
    store
        .write(now, move |tx| {
            let created = tx.insert_user(&user, now)?;
            let event = Event::Registration {
                username: created.username.clone(),
                email: masked_email,
            };
            tx.record(AuditEvent::new(&origin, Some(created.id.as_str()), event))?;
            Ok(created)
        })
        .await
}

/// An account made by `actor_id`, whose rights are re-read here.
pub async fn create_by(
    store: &Store,
    origin: Origin,
    actor_id: String,
    user: NewUser,
    now: OffsetDateTime,
) -> Result<User, AccountError> {
    store
        .write(now, move |tx| {
            let actor = fresh_actor(&mut **tx, &actor_id)?;
            policy::check_create(&actor, user.role)?;
            let created = tx.insert_user(&user, now)?;
            let event = Event::UserCreated {
                actor_id,
                role: created.role,
                username: created.username.clone(),
            };
            tx.record(AuditEvent::new(&origin, Some(created.id.as_str()), event))?;
            Ok(created)
        })
        .await
}

/// The script of `secure-api create-admin`: an account made by the
/// operator of the machine, who needs no rights in the database.
pub fn create_admin(tx: &mut Tx<'_>, user: &NewUser) -> Result<User, AccountError> {
    let now = tx.now();
    Ok(tx.insert_user(user, now)?)
}
