use anyhow::{anyhow, bail};

use crate::accounts::admin;
use crate::cli::UnlockArgs;
use crate::clock::Clock as _;
use crate::domain::email::Email;
use crate::store::OfflineStore;

/// Clears a lockout without the API, for when no admin can log in. The same
/// audit event as the admin route records it, marked as coming from here.
pub fn run(args: UnlockArgs) -> anyhow::Result<()> {
    let email = Email::parse(&args.email).map_err(|e| anyhow!("--email {}", e.0))?;
    let mut store = OfflineStore::open(&args.data_dir.data_dir, false)?;
    let now = crate::clock::SystemClock.now();
    let Some(unlocked) = store.write(now, |tx| admin::unlock_by_email(tx, email.as_str()))? else {
        bail!("no account with that email");
    };
    let state = if unlocked.was_locked {
        "unlocked"
    } else {
        "was not locked; failed attempts reset for"
    };
    println!(
        "{state} {} ({})",
        unlocked.user.username,
        unlocked.user.id.as_str()
    );
    Ok(())
}
