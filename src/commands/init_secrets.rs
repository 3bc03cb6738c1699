//! The secrets the systemd unit loads as credentials, made once: the package
//! runs this at install so `systemctl start` works, and an operator replaces
//! the certificate with a real one later. Existing files are never touched.

use anyhow::{Context, anyhow};

use crate::auth::keys;
use crate::cli::InitSecretsArgs;
use crate::files;
use crate::server::tls;

pub const JWT_FILE: &str = "jwt-secret";
pub const DATA_KEY_FILE: &str = "data-key";
pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";

pub fn run(args: InitSecretsArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if !dir.is_dir() {
        files::ensure_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for name in [JWT_FILE, DATA_KEY_FILE] {
        let (_key, generated) = keys::load_or_generate(&dir.join(name))?;
        if generated {
            println!("generated {}", dir.join(name).display());
        }
    }
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    match (cert.exists(), key.exists()) {
        (false, false) => {
            tls::generate(&cert, &key)?;
            println!(
                "generated a self-signed certificate for localhost: {} (replace it with your own)",
                cert.display()
            );
        }
        (true, true) => {
            tls::load(&cert, &key)?;
        }
        _ => {
            return Err(anyhow!(
                "only one of {} and {} exists; provide both or neither",
                cert.display(),
                key.display()
            ));
        }
    }
    Ok(())
}
