//! A small PKI made with rcgen (`tapelog certs init`): a CA, a server certificate for the
//! given host names and addresses, and one client certificate per role (subject CN = the
//! caller's name, OU = its role). PEM files; keys are written with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::TlsError;
use crate::Role;

/// The hosts a server certificate is for when none are given.
pub const DEFAULT_HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// Every role, in the order `certs init` writes their certificates.
pub const ROLES: [Role; 3] = [Role::Recorder, Role::Auditor, Role::Admin];

/// The lower-case name of a role (its OU and file name).
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Recorder => "recorder",
        Role::Auditor => "auditor",
        Role::Admin => "admin",
    }
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct PemPair {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A certificate authority that can issue server and client certificates.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    pem: PemPair,
}

impl CertAuthority {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<CertAuthority, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pem = PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok(CertAuthority {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The CA's certificate and key.
    pub fn pem(&self) -> &PemPair {
        &self.pem
    }

    /// A server certificate for `hosts` (DNS names or IP addresses).
    pub fn server(&self, hosts: &[String]) -> Result<PemPair, TlsError> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name = dn(hosts.first().map_or("tapelog", String::as_str), None);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate for the caller `name` with `role` (CN = name, OU = role).
    pub fn client(&self, name: &str, role: Role) -> Result<PemPair, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name, Some(role_name(role)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, mut params: CertificateParams) -> Result<PemPair, TlsError> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

fn dn(common_name: &str, unit: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(u) = unit {
        dn.push(DnType::OrganizationalUnitName, u);
    }
    dn
}

/// The files [`init`] wrote.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// `ca.pem`.
    pub ca: PathBuf,
    /// `ca-key.pem`.
    pub ca_key: PathBuf,
    /// `server.pem`.
    pub server: PathBuf,
    /// `server-key.pem`.
    pub server_key: PathBuf,
    /// Per role: `<role>.pem` and `<role>-key.pem`.
    pub clients: Vec<(Role, PathBuf, PathBuf)>,
}

impl CertFiles {
    /// The certificate and key of `role`'s client.
    pub fn client(&self, role: Role) -> Option<(&Path, &Path)> {
        self.clients
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, c, k)| (c.as_path(), k.as_path()))
    }
}

/// Writes a CA, a server certificate for `hosts` ([`DEFAULT_HOSTS`] when empty) and a client
/// certificate per role (CN `tapelog-<role>`) into `dir` (created if missing).
pub fn init(dir: &Path, hosts: &[String]) -> Result<CertFiles, TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let hosts: Vec<String> = if hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        hosts.to_vec()
    };
    let ca = CertAuthority::new("tapelog CA")?;
    let write = |name: &str, pair: &PemPair| -> Result<(PathBuf, PathBuf), TlsError> {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        write_file(&cert, &pair.cert, 0o644).map_err(io(&cert))?;
        write_file(&key, &pair.key, 0o600).map_err(io(&key))?;
        Ok((cert, key))
    };
    let (ca_cert, ca_key) = write("ca", ca.pem())?;
    let (server, server_key) = write("server", &ca.server(&hosts)?)?;
    let mut clients = Vec::new();
    for role in ROLES {
        let name = role_name(role);
        let (c, k) = write(name, &ca.client(&format!("tapelog-{name}"), role)?)?;
        clients.push((role, c, k));
    }
    Ok(CertFiles {
        ca: ca_cert,
        ca_key,
        server,
        server_key,
        clients,
    })
}

fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())
}
