//! TLS: PEM loading through rustls-pki-types, a self-signed certificate
//! generated on first start, and the rustls server configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::files::{self, SecretFileError};

/// Names the generated certificate is valid for.
const GENERATED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    KeyFile(#[from] SecretFileError),
    #[error("no usable private key in {}: {source}", .path.display())]
    NoKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot read {}: {source}", .path.display())]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad certificate PEM in {}: {source}", .path.display())]
    BadCertPem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate in {}", .path.display())]
    NoCert { path: PathBuf },
    #[error("cannot generate a certificate: {0}")]
    Generate(rcgen::Error),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the certificate and key do not form a usable pair: {0}")]
    UnusablePair(rustls::Error),
    #[error("TLS protocol versions: {0}")]
    Versions(rustls::Error),
}

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
pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsMaterial, TlsError> {
    let key_pem = files::read_secret_file(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::NoKey {
        path: key_path.to_owned(),
        source,
    })?;
    let cert_pem = std::fs::read(cert_path).map_err(|source| TlsError::ReadCert {
        path: cert_path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertPem {
            path: cert_path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: cert_path.to_owned(),
        });
    }
    Ok(TlsMaterial { certs, key })
}

/// Writes a self-signed certificate for localhost and its key (both 0600).
pub fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names: Vec<String> = GENERATED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names).map_err(TlsError::Generate)?;
    let write = |path: &Path, contents: String| {
        files::write_private_file(path, contents.as_bytes()).map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
    };
    write(key_path, generated.signing_key.serialize_pem())?;
    write(cert_path, generated.cert.pem())
}

/// The certificate the server presents, replaceable while serving: open
/// connections keep the one they started with, new ones get the new one.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let provider = crypto_provider();
        let certified = certified_key(cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Arc::new(certified)),
        })
    }

    /// Reads the files again; on any error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(certified),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(certified),
        }
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let material = load(cert_path, key_path)?;
    CertifiedKey::from_der(material.certs, material.key, provider).map_err(TlsError::UnusablePair)
}

/// TLS 1.2 and 1.3 only, ALPN h2 then http/1.1, no client certificates.
pub fn server_config(certs: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Versions)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
