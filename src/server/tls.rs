//! TLS: PEM loading through rustls-pki-types, a self-signed certificate
//! generated on first start, and the rustls server configuration.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::files;

/// Names the generated certificate is valid for.
const GENERATED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

pub struct TlsMaterial {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The one crypto library of the process, chosen explicitly (aws-lc-rs, which
/// also signs our JWTs and backs the generated certificate) rather
/// than by whichever crate feature happens to be on.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads a PEM certificate chain and key; the key file must not be readable
/// by group or others.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsMaterial, String> {
    let key_pem = files::read_secret_file(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("no usable private key in {}: {e}", key_path.display()))?;
    let cert_pem = std::fs::read(cert_path)
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM in {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert_path.display()));
    }
    Ok(TlsMaterial { certs, key })
}

/// Writes a self-signed certificate for localhost and its key (both 0600).
pub fn generate(cert_path: &Path, key_path: &Path) -> Result<(), String> {
    let names: Vec<String> = GENERATED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    files::write_private_file(key_path, generated.signing_key.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    files::write_private_file(cert_path, generated.cert.pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))
}

/// TLS 1.2 and 1.3 only, ALPN h2 then http/1.1, no client certificates.
pub fn server_config(material: TlsMaterial) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(material.certs, material.key)
        .map_err(|e| format!("the certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
