//! Client credentials for a Teleport Auth server: an identity file (`tctl auth sign
//! --format=file`, or what `tbot` writes) or separate certificate, key and CA files
//! (`--format=tls`).
//!
//! An identity file holds, in order: the private key (PEM), the SSH certificate (one
//! `*-cert-v01@openssh.com` line), the TLS certificate (PEM), the SSH CAs (`@cert-authority`
//! lines) and the TLS CAs (PEM). As upstream's parser does, tapelog takes the first PEM block
//! as the key, the second as the TLS certificate and every further one as a CA; the SSH
//! lines are kept only to be reported.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use crate::error::CredentialsError;

/// Where the credentials come from; kept so that they can be read again
/// ([`Credentials::reload`]) when a renewed identity is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsSource {
    /// A Teleport identity file.
    IdentityFile(PathBuf),
    /// A client certificate, its key and the cluster's CA certificates.
    Files {
        /// Client certificate (PEM; the first certificate is the leaf).
        cert: PathBuf,
        /// Private key (PEM: PKCS#1, PKCS#8 or SEC1).
        key: PathBuf,
        /// CA certificates (PEM) the server's certificate must chain to.
        ca: PathBuf,
    },
}

/// The encoding of the private key, as its PEM label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `RSA PRIVATE KEY`.
    Pkcs1,
    /// `PRIVATE KEY`.
    Pkcs8,
    /// `EC PRIVATE KEY`.
    Sec1,
}

/// A client certificate with its key and the CAs to trust.
#[derive(Debug)]
pub struct Credentials {
    /// Where they were read from.
    pub source: CredentialsSource,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
    /// Its encoding.
    pub key_format: KeyFormat,
    /// The client certificate chain (leaf first).
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The TLS CA certificates.
    pub cas: Vec<CertificateDer<'static>>,
    /// The SSH certificate line of an identity file, if any (not used for the connection).
    pub ssh_cert: Option<String>,
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials {
            source: self.source.clone(),
            key: self.key.clone_key(),
            key_format: self.key_format,
            cert_chain: self.cert_chain.clone(),
            cas: self.cas.clone(),
            ssh_cert: self.ssh_cert.clone(),
        }
    }
}

impl Credentials {
    /// Reads credentials from their source.
    pub fn load(source: &CredentialsSource) -> Result<Credentials, CredentialsError> {
        match source {
            CredentialsSource::IdentityFile(path) => Credentials::identity_file(path),
            CredentialsSource::Files { cert, key, ca } => Credentials::files(cert, key, ca),
        }
    }

    /// Reads the same source again (a renewed identity).
    pub fn reload(&self) -> Result<Credentials, CredentialsError> {
        Credentials::load(&self.source)
    }

    /// Reads a Teleport identity file.
    pub fn identity_file(path: &Path) -> Result<Credentials, CredentialsError> {
        let bytes = read(path)?;
        Credentials::parse_identity(path, &bytes)
    }

    /// Parses identity-file bytes (`path` only names the file in errors).
    pub fn parse_identity(path: &Path, bytes: &[u8]) -> Result<Credentials, CredentialsError> {
        let blocks = pem_blocks(path, bytes)?;
        let mut blocks = blocks.into_iter();
        let Some((kind, der)) = blocks.next() else {
            return Err(invalid(
                path,
                "no PEM block: expected the private key, the TLS certificate and the CAs",
            ));
        };
        let (key, key_format) = key_of(path, kind, der)?;
        let cert = match blocks.next() {
            Some((SectionKind::Certificate, der)) => CertificateDer::from(der),
            Some((other, _)) => {
                return Err(invalid(
                    path,
                    &format!("the second PEM block is {other:?}, not the TLS certificate"),
                ));
            }
            None => return Err(invalid(path, "no TLS certificate after the private key")),
        };
        let mut cas = Vec::new();
        for (kind, der) in blocks {
            match kind {
                SectionKind::Certificate => cas.push(CertificateDer::from(der)),
                other => {
                    return Err(invalid(
                        path,
                        &format!("a {other:?} block among the CA certificates"),
                    ));
                }
            }
        }
        if cas.is_empty() {
            return Err(invalid(
                path,
                "no TLS CA certificate after the TLS certificate (is it an SSH-only identity?)",
            ));
        }
        let ssh_cert = String::from_utf8_lossy(bytes)
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|t| t.ends_with("-cert-v01@openssh.com"))
            })
            .map(str::to_string);
        Ok(Credentials {
            source: CredentialsSource::IdentityFile(path.to_path_buf()),
            key,
            key_format,
            cert_chain: vec![cert],
            cas,
            ssh_cert,
        })
    }

    /// Reads a certificate, key and CA file.
    pub fn files(cert: &Path, key: &Path, ca: &Path) -> Result<Credentials, CredentialsError> {
        let cert_chain = certs_of(cert, &pem_blocks(cert, &read(cert)?)?, "client certificate")?;
        let key_blocks = pem_blocks(key, &read(key)?)?;
        let Some((kind, der)) = key_blocks.into_iter().find(|(k, _)| {
            matches!(
                k,
                SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey
            )
        }) else {
            return Err(invalid(key, "no private key PEM block"));
        };
        let (key_der, key_format) = key_of(key, kind, der)?;
        let cas = certs_of(ca, &pem_blocks(ca, &read(ca)?)?, "CA certificate")?;
        Ok(Credentials {
            source: CredentialsSource::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                ca: ca.to_path_buf(),
            },
            key: key_der,
            key_format,
            cert_chain,
            cas,
            ssh_cert: None,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialsError> {
    std::fs::read(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, what: &str) -> CredentialsError {
    CredentialsError::Invalid {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// Every PEM block of a file, in order (lines outside blocks, such as SSH lines, skipped).
fn pem_blocks(path: &Path, bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, CredentialsError> {
    let mut rd: &[u8] = bytes;
    let mut out = Vec::new();
    loop {
        match pem::from_buf(&mut rd) {
            Ok(Some(block)) => out.push(block),
            Ok(None) => return Ok(out),
            Err(e) => return Err(invalid(path, &format!("not a valid PEM file ({e:?})"))),
        }
    }
}

fn key_of(
    path: &Path,
    kind: SectionKind,
    der: Vec<u8>,
) -> Result<(PrivateKeyDer<'static>, KeyFormat), CredentialsError> {
    match kind {
        SectionKind::RsaPrivateKey => Ok((PrivatePkcs1KeyDer::from(der).into(), KeyFormat::Pkcs1)),
        SectionKind::PrivateKey => Ok((PrivatePkcs8KeyDer::from(der).into(), KeyFormat::Pkcs8)),
        SectionKind::EcPrivateKey => Ok((PrivateSec1KeyDer::from(der).into(), KeyFormat::Sec1)),
        other => Err(invalid(
            path,
            &format!("the first PEM block is {other:?}, not a private key"),
        )),
    }
}

fn certs_of(
    path: &Path,
    blocks: &[(SectionKind, Vec<u8>)],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, CredentialsError> {
    let certs: Vec<CertificateDer<'static>> = blocks
        .iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        return Err(invalid(
            path,
            &format!("no CERTIFICATE block (expected the {what})"),
        ));
    }
    Ok(certs)
}
