use anyhow::{anyhow, bail};

use crate::accounts::two_factor;
use crate::cli::ResetTwoFactorArgs;
use crate::clock::Clock as _;
use crate::domain::email::Email;
use crate::store::OfflineStore;

/// Turns 2FA off for an account whose device is lost, without the API (the
/// last admin's own, say). The same audit event as the admin route records
/// it, marked as coming from here, and the account's sessions end.
pub fn run(args: ResetTwoFactorArgs) -> anyhow::Result<()> {
    let email = Email::parse(&args.email).map_err(|e| anyhow!("--email {}", e.0))?;
    let mut store = OfflineStore::open(&args.data_dir.data_dir, false)?;
    let now = crate::clock::SystemClock.now();
    let Some(reset) = store.write(now, |tx| two_factor::reset_by_email(tx, email.as_str()))? else {
        bail!("no account with that email");
    };
    let state = if reset.was_enabled {
        "two-factor authentication turned off for"
    } else {
        "two-factor authentication was not on; sessions ended for"
    };
    println!(
        "{state} {} ({})",
        reset.user.username,
        reset.user.id.as_str()
    );
    Ok(())
}
