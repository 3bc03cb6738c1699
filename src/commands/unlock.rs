use anyhow::{anyhow, bail};
use serde_json::json;

use crate::cli::UnlockArgs;
use crate::clock::Clock as _;
use crate::domain::audit::{AuditEvent, AuditKind};
use crate::domain::email::Email;
use crate::store::{DB_FILE, OfflineStore};

/// Clears a lockout without the API, for when no admin can log in. The same
/// audit event as the admin route records it, marked as coming from here.
pub fn run(args: UnlockArgs) -> anyhow::Result<()> {
    let email = Email::parse(&args.email).map_err(|e| anyhow!("--email {}", e.0))?;
    let path = args.data_dir.data_dir.join(DB_FILE);
    let mut store = OfflineStore::open(&path, false)?;
    let event = AuditEvent {
        kind: AuditKind::Unlock,
        user_id: None,
        client_ip: None,
        request_id: None,
        detail: json!({ "via": "command_line" }),
    };
    let now = crate::clock::SystemClock.now();
    let Some(unlocked) = store.unlock_by_email(email.as_str(), now, event)? else {
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
