use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, anyhow, bail};

use crate::accounts::{AccountError, register};
use crate::auth::password::PasswordHasher;
use crate::cli::CreateAdminArgs;
use crate::clock::Clock as _;
use crate::config::hash_params;
use crate::domain::role::Role;
use crate::http::error::ApiError;
use crate::routes::auth::AccountInput;
use crate::secret::SecretString;
use crate::store::OfflineStore;

/// Passwords are at most 128 characters; anything much longer is a mistake.
const MAX_PASSWORD_INPUT: u64 = 4096;

pub fn run(args: CreateAdminArgs) -> anyhow::Result<()> {
    let params = hash_params(&args.hash)?;
    let password = read_password(args.password_file.as_deref())?;
    let input = AccountInput::parse(&args.username, &args.email, None, password)
        .map_err(|e| anyhow!(describe(&e)))?;

    crate::files::ensure_private_dir(&args.data_dir.data_dir)?;
    let mut store = OfflineStore::open(&args.data_dir.data_dir, true)?;

    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let hasher = PasswordHasher::new(params, 1, 0);
    let user = runtime
        .block_on(input.into_new_user(&hasher, Role::Admin))
        .map_err(|e| anyhow!(describe(&e)))?;
    let now = crate::clock::SystemClock.now();
    match store.write(now, |tx| register::create_admin(tx, &user)) {
        Ok(created) => {
            println!(
                "created admin {} ({})",
                created.username,
                created.id.as_str()
            );
            Ok(())
        }
        Err(AccountError::Duplicate) => bail!("a user with that username or email already exists"),
        Err(other) => Err(other.into()),
    }
}

/// From `--password-file`, else a no-echo prompt on a terminal, else stdin.
fn read_password(file: Option<&Path>) -> anyhow::Result<SecretString> {
    let raw = match file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            read_bounded(file).with_context(|| format!("cannot read {}", path.display()))?
        }
        None if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("Password for the new admin: ")?;
            let again = rpassword::prompt_password("Repeat the password: ")?;
            if first != again {
                bail!("the passwords do not match");
            }
            first
        }
        None => {
            read_bounded(std::io::stdin().lock()).context("cannot read the password from stdin")?
        }
    };
    Ok(SecretString::new(strip_one_newline(raw)))
}

fn read_bounded(reader: impl Read) -> anyhow::Result<String> {
    let mut text = String::new();
    reader
        .take(MAX_PASSWORD_INPUT + 1)
        .read_to_string(&mut text)
        .context("the password is not valid UTF-8")?;
    if text.len() as u64 > MAX_PASSWORD_INPUT {
        bail!("the password input is too long");
    }
    Ok(text)
}

fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

fn describe(error: &ApiError) -> String {
    match error {
        ApiError::Validation(fields) => fields
            .iter()
            .map(|f| format!("{} {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::BadRequest { detail, .. } => detail.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_trailing_newline_is_dropped() {
        assert_eq!(strip_one_newline("pw\n".into()), "pw");
        assert_eq!(strip_one_newline("pw\r\n".into()), "pw");
        assert_eq!(strip_one_newline("pw\n\n".into()), "pw\n");
        assert_eq!(strip_one_newline("pw ".into()), "pw ");
    }
}
