//! TLS for `tapelog serve`: the rustls server configuration (certificate, key, and the CA
//! that signs client certificates), the caller identity a client certificate carries, and
//! the generation of a small PKI for tests and first runs ([`certs`]).
//!
//! A client certificate names its caller in the subject: Common Name = the caller's name,
//! Organizational Unit = its role (`recorder`, `auditor`, `admin`). Clients without a
//! certificate are let through the handshake, so that bearer tokens work over TLS too; a
//! certificate that does not chain to the client CA fails the handshake.

pub mod certs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use thiserror::Error;

use crate::Role;

/// What went wrong loading or making TLS material.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the configuration (a key that does not match, a bad CA).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider every TLS configuration here uses (explicit, so that several
/// providers compiled into the process never make rustls guess).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.into(),
            what: "no CERTIFICATE block in the file".into(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    let what = match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no usable PEM block in the file".into(),
        other => format!("not a valid PEM file ({other:?})"),
    };
    TlsError::Pem {
        path: path.into(),
        what,
    }
}

/// The server's TLS configuration: its certificate chain and key and, when `client_ca` is
/// given, client certificates verified against it (optional: a client without one goes on
/// to token authentication). ALPN offers HTTP/1.1.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certs(cert)?;
    let key = read_key(key)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| TlsError::Pem {
                    path: ca.into(),
                    what: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("{} and its key: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The caller a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject's Common Name.
    pub name: String,
    /// The subject's Organizational Unit, when it is a role.
    pub role: Option<Role>,
    /// The Organizational Unit as written (for error messages).
    pub unit: String,
}

/// Reads the caller's name (CN) and role (OU) from a DER certificate.
pub fn cert_identity(der: &[u8]) -> Result<CertIdentity, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Pem {
        path: "(client certificate)".into(),
        what: e.to_string(),
    })?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let name = first(&mut subject.iter_common_name());
    let unit = first(&mut subject.iter_organizational_unit());
    let role = serde_json::from_value::<Role>(serde_json::Value::String(unit.clone())).ok();
    Ok(CertIdentity { name, role, unit })
}
