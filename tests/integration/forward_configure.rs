//! `tapelog forward configure`: the files it writes are a working mutual-TLS PKI (checked by
//! a real rustls handshake, in memory), a TOML with upstream's keys and a fluent.conf that
//! points at them; it refuses to overwrite without `force`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tapelog_forward::configure::{self, ConfigureError, ConfigureOptions, Protocol};

fn certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    tapelog_api::tls::read_certs(path).unwrap()
}

fn roots(path: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path) {
        roots.add(c).unwrap();
    }
    Arc::new(roots)
}

/// A TLS 1.3 or 1.2 handshake between a rustls server that requires client certificates
/// signed by `client_ca` and a rustls client, bytes moved in memory until both are done or
/// one fails. Returns the first error.
fn handshake(
    server: (&Path, &Path, &Path),
    client: (&Path, &Path, &Path),
    name: &str,
) -> Result<(), rustls::Error> {
    let provider = tapelog_api::tls::provider();
    let (s_cert, s_key, client_ca) = server;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(client_ca),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(s_cert), tapelog_api::tls::read_key(s_key).unwrap())
        .unwrap();
    let (c_cert, c_key, server_ca) = client;
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(server_ca))
        .with_client_auth_cert(certs(c_cert), tapelog_api::tls::read_key(c_key).unwrap())
        .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
            // The server saw the client's certificate and accepted it.
            assert!(server.peer_certificates().is_some_and(|c| !c.is_empty()));
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn configure_writes_a_working_pki_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("conf");
    let opts = ConfigureOptions {
        dns_names: vec!["localhost".into(), "fluentd.example".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
        ttl: configure::parse_go_duration("2h").unwrap(),
        ..ConfigureOptions::default()
    };
    let files = configure::run(&out, &opts).unwrap();
    for f in files.all() {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
        assert!(f.is_absolute() && f.starts_with(out.canonicalize().unwrap()));
    }

    // The certificates: names, CA flag, lifetime, issuer.
    let parse = |p: &Path| {
        let der = certs(p).remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        (
            cert.subject().to_string(),
            cert.issuer().to_string(),
            cert.is_ca(),
            cert.validity()
                .time_to_expiration()
                .map(|d| d.whole_minutes()),
            cert.subject_alternative_name()
                .unwrap()
                .map(|s| format!("{:?}", s.value.general_names)),
        )
    };
    let (subject, issuer, is_ca, left, _) = parse(&files.ca_cert);
    assert_eq!(
        (subject.as_str(), issuer.as_str(), is_ca),
        ("CN=CA", "CN=CA", true)
    );
    assert!(left.is_some_and(|m| (115..=120).contains(&m)), "{left:?}");
    let (subject, issuer, is_ca, _, sans) = parse(&files.server_cert);
    assert_eq!(
        (subject.as_str(), issuer.as_str(), is_ca),
        ("CN=Server", "CN=CA", false)
    );
    let sans = sans.unwrap();
    for want in [
        "DNSName(\"localhost\")",
        "DNSName(\"fluentd.example\")",
        "IPAddress([127, 0, 0, 1])",
    ] {
        assert!(sans.contains(want), "{sans}");
    }
    let (subject, issuer, _, _, _) = parse(&files.client_cert);
    assert_eq!((subject.as_str(), issuer.as_str()), ("CN=Client", "CN=CA"));

    // A real handshake: Fluentd's side with server.crt/key requiring clients of ca.crt,
    // tapelog's side with client.crt/key trusting ca.crt; by DNS name and by IP.
    let server = (
        files.server_cert.as_path(),
        files.server_key.as_path(),
        files.ca_cert.as_path(),
    );
    let client = (
        files.client_cert.as_path(),
        files.client_key.as_path(),
        files.ca_cert.as_path(),
    );
    handshake(server, client, "localhost").unwrap();
    handshake(server, client, "127.0.0.1").unwrap();
    assert!(
        handshake(server, client, "elsewhere.example").is_err(),
        "not in the SANs"
    );

    // A client certificate from another run's CA is refused by this server, and this
    // client refuses a server of another CA.
    let other = configure::run(&dir.path().join("other"), &ConfigureOptions::default()).unwrap();
    let foreign = (
        other.client_cert.as_path(),
        other.client_key.as_path(),
        files.ca_cert.as_path(),
    );
    let err = handshake(server, foreign, "localhost").unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
    let other_server = (
        other.server_cert.as_path(),
        other.server_key.as_path(),
        files.ca_cert.as_path(),
    );
    assert!(handshake(other_server, client, "localhost").is_err());

    // The TOML: upstream's keys, the files' paths.
    let text = std::fs::read_to_string(&files.toml).unwrap();
    let toml: toml::Table = text.parse().unwrap();
    assert_eq!(toml["storage"].as_str(), Some("./storage"));
    assert_eq!(toml["timeout"].as_str(), Some("10s"));
    assert_eq!(toml["batch"].as_integer(), Some(20));
    let fluentd = &toml["forward"]["fluentd"];
    assert_eq!(fluentd["ca"].as_str(), files.ca_cert.to_str());
    assert_eq!(fluentd["cert"].as_str(), files.client_cert.to_str());
    assert_eq!(fluentd["key"].as_str(), files.client_key.to_str());
    assert_eq!(
        fluentd["url"].as_str(),
        Some("https://localhost:8888/test.log")
    );
    assert_eq!(
        fluentd["session-url"].as_str(),
        Some("https://localhost:8888/session")
    );
    let teleport = &toml["teleport"];
    assert_eq!(teleport["addr"].as_str(), Some("localhost:3025"));
    assert_eq!(teleport["identity"].as_str(), Some("identity"));
    assert_eq!(teleport["refresh"]["enabled"].as_bool(), Some(true));

    // fluent.conf: in_http with mutual TLS on the files written, upstream's parser, the two
    // matches, no <buffer> inside <source>, no passphrase.
    let conf = std::fs::read_to_string(&files.fluent_conf).unwrap();
    for want in [
        "@type http".to_string(),
        "port 8888".into(),
        "client_cert_auth true".into(),
        format!("ca_path {}", files.ca_cert.display()),
        format!("cert_path {}", files.server_cert.display()),
        format!("private_key_path {}", files.server_key.display()),
        "time_type string".into(),
        "time_format %Y-%m-%dT%H:%M:%S".into(),
        "<match test.log>".into(),
        "<match session.*.log>".into(),
        "# <source>\n#   @type forward".into(),
    ] {
        assert!(conf.contains(&want), "fluent.conf lacks {want:?}:\n{conf}");
    }
    assert!(
        !conf.contains("<buffer>\n") && !conf.contains("passphrase"),
        "{conf}"
    );
    let sources = conf.split("\n<source>").skip(1);
    for s in sources {
        let body = s.split("</source>").next().unwrap();
        assert!(!body.contains("<buffer"), "a <buffer> inside <source>");
    }
}

#[test]
fn configure_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ConfigureOptions::default();
    let first = configure::run(dir.path(), &opts).unwrap();
    let ca = std::fs::read(&first.ca_cert).unwrap();

    // One existing file is enough to refuse, and nothing is written.
    std::fs::remove_file(&first.client_key).unwrap();
    let err = configure::run(dir.path(), &opts).unwrap_err();
    assert!(
        matches!(err, ConfigureError::Exists { ref path } if path == &first.ca_cert),
        "{err}"
    );
    assert!(err.to_string().contains("--force"));
    assert!(!first.client_key.exists());
    assert_eq!(std::fs::read(&first.ca_cert).unwrap(), ca);

    // --force: everything is new and 0600 again.
    std::fs::set_permissions(&first.ca_cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = ConfigureOptions {
        force: true,
        protocol: Protocol::Forward,
        ..ConfigureOptions::default()
    };
    let second = configure::run(dir.path(), &forced).unwrap();
    assert_ne!(std::fs::read(&second.ca_cert).unwrap(), ca);
    assert!(second.client_key.exists());
    let mode = std::fs::metadata(&second.ca_cert)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // The Forward protocol: the TOML's URLs are forward+tls:// and the source is active.
    let toml: toml::Table = std::fs::read_to_string(&second.toml)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        toml["forward"]["fluentd"]["url"].as_str(),
        Some("forward+tls://localhost:24224/test.log")
    );
    let conf = std::fs::read_to_string(&second.fluent_conf).unwrap();
    assert!(
        conf.contains("\n<source>\n  @type forward\n  port 24224\n"),
        "{conf}"
    );
}

#[test]
fn configure_checks_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let no_hosts = ConfigureOptions {
        dns_names: Vec::new(),
        ..ConfigureOptions::default()
    };
    assert!(matches!(
        configure::run(dir.path(), &no_hosts),
        Err(ConfigureError::NoHosts)
    ));
    let forever = ConfigureOptions {
        ttl: std::time::Duration::from_secs(u64::MAX / 4),
        ..ConfigureOptions::default()
    };
    assert!(matches!(
        configure::run(dir.path(), &forever),
        Err(ConfigureError::Ttl { .. })
    ));
    let zero = ConfigureOptions {
        ttl: std::time::Duration::ZERO,
        ..ConfigureOptions::default()
    };
    assert!(matches!(
        configure::run(dir.path(), &zero),
        Err(ConfigureError::Ttl { .. })
    ));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
