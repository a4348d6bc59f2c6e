//! How a client proves who it is: a bearer token, or a TLS client certificate, and the CA
//! that signed the server's certificate.
//!
//! Resolution ([`Credentials::resolve`]), first match wins for the token:
//! 1. `--token-file FILE` ([`CredentialOptions::token_file`]);
//! 2. env `TAPELOG_TOKEN` (the token itself);
//! 3. env `TAPELOG_TOKEN_FILE` (a file holding it);
//! 4. `<data-dir>/admin.token` (the admin token `tapelog serve` writes when it has no
//!    tokens configured), when it exists and no client certificate is given.
//!
//! The client certificate, its key and the CA come from `--cert`/`--key`/`--ca` or env
//! `TAPELOG_CERT`/`TAPELOG_KEY`/`TAPELOG_CA` (PEM files).

use std::path::{Path, PathBuf};

use super::ClientError;
use tapelog_api::ADMIN_TOKEN_FILE;

/// A bearer token. Its `Debug` form does not show it, and nothing in the client prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (surrounding white space removed); `None` if empty.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.to_string()))
    }

    /// The secret, for the `Authorization` header.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What the user gave explicitly (flags); environment variables fill the gaps.
#[derive(Debug, Clone, Default)]
pub struct CredentialOptions {
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// The client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// The CA certificate(s) that signed the server's certificate (PEM); without it the
    /// system's roots are used for `https://`.
    pub ca: Option<PathBuf>,
}

/// Where the bearer token came from (shown in messages; never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file (`--token-file`, `TAPELOG_TOKEN_FILE` or the data directory's admin token).
    File(PathBuf),
    /// The `TAPELOG_TOKEN` variable.
    Env,
    /// Given by the program.
    Given,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "the token in {}", p.display()),
            TokenSource::Env => f.write_str("the token in TAPELOG_TOKEN"),
            TokenSource::Given => f.write_str("the given token"),
        }
    }
}

/// Resolved credentials: read from files, ready for [`super::Client::new`].
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The bearer token and where it came from.
    pub token: Option<(Token, TokenSource)>,
    /// The client certificate and key, PEM, concatenated.
    pub identity_pem: Option<Vec<u8>>,
    /// The CA certificate(s) to trust for the server, PEM.
    pub ca_pem: Option<Vec<u8>>,
}

impl Credentials {
    /// Only a bearer token.
    pub fn token(token: Token) -> Credentials {
        Credentials {
            token: Some((token, TokenSource::Given)),
            ..Credentials::default()
        }
    }

    /// Resolves `opts` with the process environment and the data directory (see the module
    /// documentation).
    pub fn resolve(opts: &CredentialOptions, data_dir: &Path) -> Result<Credentials, ClientError> {
        Credentials::resolve_with(opts, data_dir, |name| std::env::var_os(name))
    }

    /// [`resolve`](Self::resolve) with the environment given as a function (tests).
    pub fn resolve_with(
        opts: &CredentialOptions,
        data_dir: &Path,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Credentials, ClientError> {
        let path_env = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cert = opts.cert.clone().or_else(|| path_env("TAPELOG_CERT"));
        let key = opts.key.clone().or_else(|| path_env("TAPELOG_KEY"));
        let ca = opts.ca.clone().or_else(|| path_env("TAPELOG_CA"));
        let identity_pem = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let mut pem = read("client certificate", &cert)?;
                pem.push(b'\n');
                pem.extend(read("client key", &key)?);
                Some(pem)
            }
            (Some(_), None) => {
                return Err(ClientError::Credentials(
                    "a client certificate needs its key: give --key (or TAPELOG_KEY)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ClientError::Credentials(
                    "a client key needs its certificate: give --cert (or TAPELOG_CERT)".into(),
                ));
            }
        };
        let ca_pem = ca.map(|p| read("CA certificate", &p)).transpose()?;

        let token = if let Some(file) = &opts.token_file {
            Some(token_from_file(file)?)
        } else if let Some(t) = env("TAPELOG_TOKEN").filter(|v| !v.is_empty()) {
            let t = t.to_str().and_then(Token::new).ok_or_else(|| {
                ClientError::Credentials("TAPELOG_TOKEN is not a token (empty or not UTF-8)".into())
            })?;
            Some((t, TokenSource::Env))
        } else if let Some(file) = path_env("TAPELOG_TOKEN_FILE") {
            Some(token_from_file(&file)?)
        } else {
            let admin = data_dir.join(ADMIN_TOKEN_FILE);
            if identity_pem.is_none() && admin.is_file() {
                Some(token_from_file(&admin)?)
            } else {
                None
            }
        };
        Ok(Credentials {
            token,
            identity_pem,
            ca_pem,
        })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::CredentialsFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn token_from_file(path: &Path) -> Result<(Token, TokenSource), ClientError> {
    let bytes = read("token file", path)?;
    let token = std::str::from_utf8(&bytes)
        .ok()
        .and_then(Token::new)
        .ok_or_else(|| {
            ClientError::Credentials(format!(
                "the token file {} is empty or not UTF-8",
                path.display()
            ))
        })?;
    Ok((token, TokenSource::File(path.to_path_buf())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn secret(c: &Credentials) -> Option<(&str, &TokenSource)> {
        c.token.as_ref().map(|(t, s)| (t.secret(), s))
    }

    #[test]
    fn token_resolution_order() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join(ADMIN_TOKEN_FILE);
        std::fs::write(&admin, "admin-secret\n").unwrap();
        let flag = dir.path().join("flag.token");
        std::fs::write(&flag, "  flag-secret \n").unwrap();
        let envfile = dir.path().join("env.token");
        std::fs::write(&envfile, "envfile-secret").unwrap();
        let envfile_s = envfile.to_str().unwrap();

        // The data directory's admin token when nothing else is given.
        let c =
            Credentials::resolve_with(&CredentialOptions::default(), dir.path(), env(&[])).unwrap();
        assert_eq!(
            secret(&c),
            Some(("admin-secret", &TokenSource::File(admin.clone())))
        );
        // TAPELOG_TOKEN_FILE beats the admin token.
        let e = [("TAPELOG_TOKEN_FILE", envfile_s)];
        let c =
            Credentials::resolve_with(&CredentialOptions::default(), dir.path(), env(&e)).unwrap();
        assert_eq!(secret(&c).unwrap().0, "envfile-secret");
        // TAPELOG_TOKEN beats TAPELOG_TOKEN_FILE.
        let e = [
            ("TAPELOG_TOKEN_FILE", envfile_s),
            ("TAPELOG_TOKEN", "env-secret"),
        ];
        let c =
            Credentials::resolve_with(&CredentialOptions::default(), dir.path(), env(&e)).unwrap();
        assert_eq!(secret(&c), Some(("env-secret", &TokenSource::Env)));
        // --token-file beats everything.
        let opts = CredentialOptions {
            token_file: Some(flag.clone()),
            ..CredentialOptions::default()
        };
        let c = Credentials::resolve_with(&opts, dir.path(), env(&e)).unwrap();
        assert_eq!(secret(&c).unwrap().0, "flag-secret");
        // No admin token in another directory: no token.
        let other = tempfile::tempdir().unwrap();
        let c = Credentials::resolve_with(&CredentialOptions::default(), other.path(), env(&[]))
            .unwrap();
        assert!(c.token.is_none());
        // The token never shows in Debug output.
        let c = Credentials::resolve_with(&opts, dir.path(), env(&[])).unwrap();
        assert!(!format!("{c:?}").contains("flag-secret"));
    }

    #[test]
    fn certificate_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "admin").unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "CERT").unwrap();
        std::fs::write(&key, "KEY").unwrap();
        let e = [
            ("TAPELOG_CERT", cert.to_str().unwrap()),
            ("TAPELOG_KEY", key.to_str().unwrap()),
        ];
        let c =
            Credentials::resolve_with(&CredentialOptions::default(), dir.path(), env(&e)).unwrap();
        assert_eq!(c.identity_pem.as_deref(), Some(&b"CERT\nKEY"[..]));
        // With a certificate, the admin token is not picked up by default.
        assert!(c.token.is_none());
        // A certificate without its key is refused, naming the missing flag.
        let opts = CredentialOptions {
            cert: Some(cert),
            ..CredentialOptions::default()
        };
        let err = Credentials::resolve_with(&opts, dir.path(), env(&[])).unwrap_err();
        assert!(err.to_string().contains("--key"), "{err}");
        // A missing file is named.
        let opts = CredentialOptions {
            ca: Some(dir.path().join("nope.pem")),
            ..CredentialOptions::default()
        };
        let err = Credentials::resolve_with(&opts, dir.path(), env(&[])).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        // An empty token file is refused.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let opts = CredentialOptions {
            token_file: Some(empty),
            ..CredentialOptions::default()
        };
        assert!(Credentials::resolve_with(&opts, dir.path(), env(&[])).is_err());
    }
}
