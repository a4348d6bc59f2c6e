//! Identity-file parsing: the layout Teleport writes, and clear errors for what is missing.

use std::path::Path;

use tapelog_teleport::double::{Double, files};
use tapelog_teleport::{Credentials, CredentialsError, KeyFormat};

fn blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END") {
            out.push(cur.clone());
        }
    }
    out
}

fn what(e: CredentialsError) -> String {
    match e {
        CredentialsError::Invalid { what, .. } => what,
        other => panic!("expected Invalid, got {other}"),
    }
}

#[tokio::test]
async fn identity_layouts() {
    let double = Double::start().await.expect("double");
    let text = std::fs::read_to_string(double.identity_file()).expect("read");
    let parts = blocks(&text);
    assert_eq!(parts.len(), 3, "key, cert, CA");
    let p = Path::new("id");

    let good = Credentials::parse_identity(p, text.as_bytes()).expect("good");
    assert_eq!(good.key_format, KeyFormat::Pkcs8);
    assert_eq!(good.cert_chain.len(), 1);
    assert_eq!(good.cas.len(), 1);
    assert!(
        good.ssh_cert
            .as_deref()
            .is_some_and(|l| l.contains("-cert-v01@openssh.com"))
    );

    // Two CAs (a rotation in progress) are both kept.
    let two = format!("{text}{}", parts[2]);
    assert_eq!(
        Credentials::parse_identity(p, two.as_bytes())
            .expect("two")
            .cas
            .len(),
        2
    );

    let e = Credentials::parse_identity(p, b"").expect_err("empty");
    assert!(what(e).contains("no PEM block"));
    let e = Credentials::parse_identity(p, parts[0].as_bytes()).expect_err("key only");
    assert!(what(e).contains("no TLS certificate"));
    let e = Credentials::parse_identity(p, format!("{}{}", parts[0], parts[1]).as_bytes())
        .expect_err("no CA");
    assert!(what(e).contains("no TLS CA"));
    let e = Credentials::parse_identity(p, format!("{}{}", parts[1], parts[0]).as_bytes())
        .expect_err("cert first");
    assert!(what(e).contains("not a private key"));

    for (name, format) in [
        (files::IDENTITY_SEC1, KeyFormat::Sec1),
        (files::IDENTITY_PKCS1, KeyFormat::Pkcs1),
    ] {
        let c = Credentials::identity_file(&double.file(name)).expect("identity");
        assert_eq!(c.key_format, format);
    }

    let missing = double.file("nope");
    match Credentials::identity_file(&missing) {
        Err(CredentialsError::Read { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a read error, got {other:?}"),
    }
    let e = Credentials::files(
        &double.file(files::KEY),
        &double.file(files::KEY),
        &double.file(files::CA),
    )
    .expect_err("key as cert");
    assert!(
        e.to_string().contains(files::KEY) && e.to_string().contains("CERTIFICATE"),
        "{e}"
    );
}
