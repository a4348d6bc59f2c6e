//! TLS for the database connection, through rustls, with libpq's `sslmode` meanings
//! (`tokio-postgres` itself only knows disable/prefer/require and never verifies).

use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use tapelog_core::audit::pg::{PgUrl, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::AuditError;

/// The connector for `url`'s TLS settings: `require` without `sslrootcert` accepts any
/// certificate (as libpq), `require` with one and `verify-ca` check the chain, `verify-full`
/// the chain and the host name; `sslrootcert=system` (or `verify-full` without a file) uses
/// the platform's roots. `sslcert`/`sslkey` present a client certificate.
pub(super) fn connector(url: &PgUrl) -> Result<MakeRustlsConnect, AuditError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config(url, format!("TLS: {e}")))?;
    let verify = match (url.ssl_mode, url.ssl_root_cert.as_deref()) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Verify::Nothing,
        (SslMode::Require | SslMode::VerifyCa, Some(root)) => Verify::Chain(root.to_string()),
        (SslMode::VerifyCa, None) => {
            return Err(config(
                url,
                "sslmode=verify-ca needs sslrootcert (a PEM file of the CA, or `system`)".into(),
            ));
        }
        (SslMode::VerifyFull, root) => Verify::Full(root.unwrap_or("system").to_string()),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(ChainOnly {
            roots: None,
            provider: provider.clone(),
        }),
        Verify::Full(root) if root == "system" => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| config(url, format!("the platform's CA roots: {e}")))?,
        ),
        Verify::Full(root) => WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(url, &root)?),
            provider.clone(),
        )
        .build()
        .map_err(|e| config(url, format!("sslrootcert {root}: {e}")))?,
        Verify::Chain(root) => Arc::new(ChainOnly {
            roots: Some(Arc::new(roots(url, &root)?)),
            provider: provider.clone(),
        }),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let tls = match (&url.ssl_cert, &url.ssl_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| config(url, format!("sslcert {cert}: {e:?}")))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| config(url, format!("sslkey {key}: {e:?}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config(url, format!("sslcert/sslkey: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(tls))
}

enum Verify {
    Nothing,
    Chain(String),
    Full(String),
}

fn config(url: &PgUrl, what: String) -> AuditError {
    AuditError::Config(format!("{}: {what}", url.shown))
}

fn roots(url: &PgUrl, path: &str) -> Result<rustls::RootCertStore, AuditError> {
    let mut store = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| config(url, format!("sslrootcert {path}: {e:?}")))?;
    for c in certs {
        store
            .add(c)
            .map_err(|e| config(url, format!("sslrootcert {path}: {e}")))?;
    }
    if store.is_empty() {
        return Err(config(
            url,
            format!("sslrootcert {path}: no certificate in it"),
        ));
    }
    Ok(store)
}

/// The server check for `require` without a root certificate (`roots: None`: encrypted, not
/// authenticated) and for `verify-ca` (the chain must lead to a trusted root; the name is not
/// checked). Signatures are always checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<rustls::RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
