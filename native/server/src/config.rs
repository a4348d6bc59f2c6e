//! The settings of `tapelog serve` ([`ServeConfig`]), the TOML file that can hold them
//! ([`FileConfig`]), and the admin token the server makes for itself when given none.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ServeError;
use super::auth::TokenSpec;
use tapelog_api::{ADMIN_TOKEN_FILE, DEFAULT_PORT};
use tapelog_audit::{Durability, LimiterConfig};
use tapelog_store::StorageOptions;
use tapelog_store::stream::DriverConfig;

/// Default request body limit: 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;
/// Default grace before the in-server completer takes an upload as abandoned (1 h: a stream
/// of this server is never taken, it is live; the grace covers writers of other servers).
pub const DEFAULT_COMPLETER_GRACE: Duration = Duration::from_secs(3600);
/// Default length of the completer lease among replicas sharing a database (30 s).
pub const DEFAULT_COMPLETER_LEASE: Duration = Duration::from_secs(30);

/// Default decode threads per recording read (measured in docs/benchmarks.md, "Parallel
/// decode").
pub const DEFAULT_DECODE_JOBS: usize = 1;

/// Default time between completer passes (5 min, upstream's check period).
pub const DEFAULT_COMPLETER_INTERVAL: Duration = Duration::from_secs(300);
/// Default time the server waits on shutdown for open streams to flush.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default search limiter: 20 searches at once, then 10 a second.
pub const DEFAULT_SEARCH_LIMIT: LimiterConfig = LimiterConfig {
    refill_time: Duration::from_millis(100),
    refill_amount: 1,
    burst: 20,
};

/// TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs client certificates (PEM); none: tokens only.
    pub client_ca: Option<PathBuf>,
}

/// Everything `tapelog serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The data directory: audit log under `log/`, recordings in `log/records` by default,
    /// the admin token file.
    pub data_dir: PathBuf,
    /// Where to listen (port 0: any free port; see [`RunningServer::local_addr`](super::RunningServer::local_addr)).
    pub listen: SocketAddr,
    /// Where recordings go: a directory, or a URL for `open_storage`; `None`:
    /// `<data_dir>/log/records`.
    pub storage: Option<String>,
    /// Credentials and endpoints of the store.
    pub storage_options: StorageOptions,
    /// HTTPS with these files; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Accepted bearer tokens; empty: the server makes an admin token file.
    pub tokens: Vec<TokenSpec>,
    /// Allow plain HTTP on an address that is not loopback.
    pub allow_insecure: bool,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// This server's directory name in the audit log (`log/<server id>/`).
    pub server_id: String,
    /// Cluster name set on events that have none.
    pub cluster_name: String,
    /// When an audit event counts as stored.
    pub durability: Durability,
    /// Uploads younger than this are left alone by the completer.
    pub completer_grace: Duration,
    /// With a database audit log (replicas sharing it): how long the completer lease lasts;
    /// one replica at a time completes uploads, and a leader that dies loses the lease
    /// within this time.
    pub completer_lease: Duration,
    /// The audit logs, as URIs (`--audit`): `file://DIR`, `postgres://…`, `stdout://`,
    /// `discard://`; events go to every one, searches to the first. Empty:
    /// `file://<data_dir>`.
    pub audit: Vec<String>,
    /// Time between completer passes; zero: the completer does not run periodically.
    pub completer_interval: Duration,
    /// The search limiter.
    pub search_limit: LimiterConfig,
    /// How long shutdown waits for open streams to flush.
    pub shutdown_timeout: Duration,
    /// Stream settings (part size, concurrency, retries).
    pub stream: DriverConfig,
    /// The web player's files, served at `/`; `None`: a page that says how to build it.
    pub web_dir: Option<PathBuf>,
    /// A read-only gateway to this Teleport cluster instead of the local audit log and store.
    pub teleport: Option<super::TeleportGateway>,
    /// Threads that decode a recording's parts for `GET /v1/sessions/{sid}/events` and the
    /// legacy playback calls (1: part after part on the request's task).
    pub decode_jobs: usize,
}

impl ServeConfig {
    /// The defaults, with data under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            storage: None,
            storage_options: StorageOptions::default(),
            tls: None,
            tokens: Vec::new(),
            allow_insecure: false,
            max_body: DEFAULT_MAX_BODY,
            server_id: tapelog_audit::default_server_id(),
            cluster_name: "tapelog".into(),
            durability: Durability::Write,
            completer_grace: DEFAULT_COMPLETER_GRACE,
            completer_interval: DEFAULT_COMPLETER_INTERVAL,
            completer_lease: DEFAULT_COMPLETER_LEASE,
            audit: Vec::new(),
            search_limit: DEFAULT_SEARCH_LIMIT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            stream: DriverConfig::default(),
            web_dir: None,
            teleport: None,
            decode_jobs: DEFAULT_DECODE_JOBS,
        }
    }

    /// The admin token file (`<data_dir>/admin.token`).
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join(ADMIN_TOKEN_FILE)
    }
}

/// The TOML configuration file (`--config`). Every key is optional; flags and `TAPELOG_*`
/// variables win over it.
///
/// ```toml
/// data_dir = "/var/lib/tapelog"
/// listen = "0.0.0.0:7450"
/// storage = "s3://bucket/recordings"
/// audit = ["postgresql://tapelog@db/teleport_audit?sslmode=verify-full", "file:///var/lib/tapelog"]
/// tls_cert = "server.pem"
/// tls_key = "server-key.pem"
/// client_ca = "ca.pem"
/// max_body = 16777216
/// completer_grace = 3600        # seconds
/// decode_jobs = 2               # threads decoding a recording's parts for playback
/// # teleport = "auth.example.com:3025"   # a read-only gateway to a Teleport cluster
/// # teleport_identity = "identity"
/// [[tokens]]
/// role = "recorder"
/// name = "host1"
/// token = "a long random secret"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `listen`.
    pub listen: Option<String>,
    /// `storage`.
    pub storage: Option<String>,
    /// `endpoint` of an S3-compatible store.
    pub endpoint: Option<String>,
    /// `region` of the bucket.
    pub region: Option<String>,
    /// `allow_http` to a non-loopback store endpoint.
    pub allow_http: Option<bool>,
    /// `tls_cert`.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`.
    pub tls_key: Option<PathBuf>,
    /// `client_ca`.
    pub client_ca: Option<PathBuf>,
    /// `[[tokens]]`.
    #[serde(default)]
    pub tokens: Vec<FileToken>,
    /// `allow_insecure`.
    pub allow_insecure: Option<bool>,
    /// `max_body` in bytes.
    pub max_body: Option<usize>,
    /// `server_id`.
    pub server_id: Option<String>,
    /// `cluster_name`.
    pub cluster_name: Option<String>,
    /// `durability`: `write` or `fsync`.
    pub durability: Option<String>,
    /// `completer_grace` in seconds.
    pub completer_grace: Option<u64>,
    /// `completer_interval` in seconds (0: off).
    pub completer_interval: Option<u64>,
    /// `completer_lease` (seconds).
    pub completer_lease: Option<u64>,
    /// `audit`: a list of audit log URIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<String>,
    /// `search_rate`: searches a second.
    pub search_rate: Option<u64>,
    /// `search_burst`: searches at once.
    pub search_burst: Option<u64>,
    /// `shutdown_timeout` in seconds.
    pub shutdown_timeout: Option<u64>,
    /// `web_dir`: the web player's files.
    pub web_dir: Option<PathBuf>,
    /// `teleport`: `HOST:PORT` of a Teleport Auth Service (a read-only gateway to it).
    pub teleport: Option<String>,
    /// `teleport_identity`: its identity file.
    pub teleport_identity: Option<PathBuf>,
    /// `teleport_cert`: a client certificate for it (with `teleport_key`, `teleport_ca`).
    pub teleport_cert: Option<PathBuf>,
    /// `teleport_key`.
    pub teleport_key: Option<PathBuf>,
    /// `teleport_ca`: the cluster's CA certificates.
    pub teleport_ca: Option<PathBuf>,
    /// `decode_jobs`: threads that decode a recording's parts when it is played back.
    pub decode_jobs: Option<usize>,
}

/// A `[[tokens]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileToken {
    /// `recorder`, `auditor` or `admin`.
    pub role: String,
    /// The caller's name.
    pub name: String,
    /// The secret.
    pub token: String,
}

impl std::fmt::Debug for FileToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileToken({}:{})", self.role, self.name)
    }
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text, &path.display().to_string())
    }

    /// Parses the TOML text of a config file; `origin` (the file's name) starts the message
    /// of an error.
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ServeError> {
        toml::from_str(text).map_err(|e| ServeError::Config(format!("{origin}: {e}")))
    }

    /// The config as TOML text that [`FileConfig::parse`] reads back to an equal config.
    pub fn to_toml(&self) -> Result<String, ServeError> {
        toml::to_string(self).map_err(|e| ServeError::Config(format!("config as TOML: {e}")))
    }

    /// The file's tokens, checked.
    pub fn token_specs(&self) -> Result<Vec<TokenSpec>, ServeError> {
        self.tokens
            .iter()
            .map(|t| {
                TokenSpec::new(&t.role, &t.name, &t.token)
                    .map_err(|e| ServeError::Config(format!("[[tokens]]: {e}")))
            })
            .collect()
    }
}

/// Reads the admin token of `path`, creating the file (mode 0600, a random token) if it
/// does not exist.
pub fn admin_token(path: &Path) -> Result<String, ServeError> {
    let io = |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= super::auth::MIN_TOKEN_LEN => return Ok(t.trim().to_string()),
        Ok(_) => {
            return Err(ServeError::Config(format!(
                "{}: the admin token in it is too short; delete the file to get a new one",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        // Another server on the same data directory made it first: use its token.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let t = std::fs::read_to_string(path).map_err(io)?;
            if t.trim().len() < super::auth::MIN_TOKEN_LEN {
                return Err(ServeError::Config(format!(
                    "{}: another process is writing the admin token; start again",
                    path.display()
                )));
            }
            return Ok(t.trim().to_string());
        }
        Err(e) => return Err(io(e)),
    };
    f.write_all(token.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn config_text_parses_and_prints_back() {
        let text = r#"
data_dir = "/var/lib/tapelog"
listen = "0.0.0.0:7450"
storage = "s3://bucket/recordings"
max_body = 16777216
completer_grace = 3600
durability = "fsync"
[[tokens]]
role = "recorder"
name = "host1"
token = "a long random secret"
"#;
        let c = FileConfig::parse(text, "serve.toml").unwrap();
        assert_eq!(c.data_dir, Some(PathBuf::from("/var/lib/tapelog")));
        assert_eq!(c.max_body, Some(16 << 20));
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.tokens[0].name, "host1");
        assert_eq!(c.token_specs().unwrap().len(), 1);
        let printed = c.to_toml().unwrap();
        assert_eq!(FileConfig::parse(&printed, "printed").unwrap(), c);
        assert_eq!(
            FileConfig::parse("", "empty").unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn bad_config_text_names_the_file() {
        for bad in [
            "listen = 7450",
            "no_such_key = 1",
            "[[tokens]]\nrole = \"x\"",
            "= =",
        ] {
            let e = FileConfig::parse(bad, "serve.toml").unwrap_err();
            assert!(e.to_string().starts_with("serve.toml: "), "{bad}: {e}");
        }
    }
}
