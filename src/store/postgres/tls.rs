//! TLS to PostgreSQL: rustls on the same aws-lc-rs provider as the listener,
//! the server's certificate checked against the configured CAs and its name
//! against the host (libpq's `verify-full`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// Where Debian, Fedora and others keep the system's CA bundle, used when
/// the URL names no `sslrootcert`.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn system_bundle() -> Result<PathBuf, StoreError> {
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .ok_or_else(|| {
            StoreError::Config(
                "no system CA bundle found to verify the database's certificate; \
                 name the CA with sslrootcert=/path/to/ca.pem in the database URL"
                    .to_owned(),
            )
        })
}

fn root_store(path: &Path) -> Result<RootCertStore, StoreError> {
    let unreadable = |reason: String| {
        StoreError::Config(format!(
            "cannot read the database CA certificates from {}: {reason}",
            path.display()
        ))
    };
    let mut roots = RootCertStore::empty();
    let certificates =
        CertificateDer::pem_file_iter(path).map_err(|e| unreadable(e.to_string()))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| unreadable(e.to_string()))?;
        roots
            .add(certificate)
            .map_err(|e| unreadable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable("no certificate in the file".to_owned()));
    }
    Ok(roots)
}

/// The connector for `root_cert` (`None`: the system's CA bundle).
pub fn verified(root_cert: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let path = match root_cert {
        Some(path) => path.to_owned(),
        None => system_bundle()?,
    };
    let roots = root_store(&path)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS to the database: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
