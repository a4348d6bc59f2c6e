//! A server that is not an Auth server (here: TLS without HTTP/2, as a Proxy's web port
//! may answer) fails with an error that says only the Auth address is supported.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tapelog_teleport::{AuthClient, Credentials, ErrorKind};

#[tokio::test]
async fn tls_without_h2_is_reported_as_not_an_auth_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A CA, a server certificate for teleport.cluster.local and a client identity.
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("key");
    let server_cert = CertificateParams::new(vec!["teleport.cluster.local".to_string()])
        .expect("params")
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let client_key = KeyPair::generate().expect("key");
    let client_cert = CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .signed_by(&client_key, &issuer)
        .expect("client cert");
    let identity = dir.path().join("identity");
    std::fs::write(
        &identity,
        format!(
            "{}{}{}",
            client_key.serialize_pem(),
            client_cert.pem(),
            ca_cert.pem()
        ),
    )
    .expect("write identity");

    // TLS server without ALPN (no client certificate asked).
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(server_cert.pem().as_bytes()).expect("cert")],
            PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _conn = acceptor.accept(tcp).await;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            });
        }
    });

    let creds = Credentials::identity_file(&identity).expect("identity");
    let err = AuthClient::connect(&addr, &creds)
        .await
        .expect_err("not an Auth server");
    server.abort();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let text = err.to_string();
    assert!(text.contains("ALPN h2") && text.contains("3025"), "{text}");
}
