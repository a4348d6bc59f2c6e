//! The Forward protocol output: `forward://host:port/TAG` (plain TCP) and
//! `forward+tls://host:port/TAG` (TLS, server verified against `--fluentd-ca`, client
//! certificate from `--fluentd-cert`/`--fluentd-key`).
//!
//! Each batch is one PackedForward message ([`tapelog_core::fluentd`]) with a fresh `chunk`
//! id; the batch counts as delivered only when the server answers `{"ack": chunk}` on the
//! same connection within the timeout. Anything else (no connection, a TLS failure, no ack,
//! a wrong ack, a closed connection) is [`SendError::Transient`] and the connection is
//! dropped; an event that can never be encoded (not a JSON object, a bad `time`) is
//! [`SendError::Rejected`]. Connections are kept in a small pool (at most
//! `max_connections` in use at once per server) and reused.
//!
//! Tags: the audit destination's tag is the URL's path without its leading `/`; a session's
//! tag is the session URL's path + `.<sid>.log`, as with `in_http`, so that a fluent.conf's
//! `<match session.*.log>` works for both outputs. See `docs/forward-protocol.md`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use tapelog_audit::clock::{Clock, SharedClock};
use tapelog_core::fluentd::{AckDecoder, EventTime, encode_packed_forward};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::output::{Destination, Output, SendError};
use tapelog_api::tls::{self, TlsError};

/// How long a send waits for its ack by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The port `in_forward` listens on by default, used when a URL gives none.
pub const DEFAULT_PORT: u16 = 24224;

/// What [`TcpOutput::new`] needs.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// `--fluentd-url`: `forward://host:port/TAG` or `forward+tls://host:port/TAG`.
    pub audit_url: String,
    /// `--fluentd-session-url`: the same schemes; a session's tag is this path +
    /// `.<sid>.log`.
    pub session_url: String,
    /// `--fluentd-ca`: the CA that signs the server's certificate (`forward+tls` only; the
    /// system's roots when absent).
    pub ca: Option<PathBuf>,
    /// `--fluentd-cert`: the client certificate (`forward+tls` only; with `key`).
    pub cert: Option<PathBuf>,
    /// `--fluentd-key`: the client certificate's key.
    pub key: Option<PathBuf>,
    /// Connections in use at once per server (at least 1; the audit and session URLs share
    /// them when they name the same server). Upstream's `--fluentd-max-connections` 0 means
    /// 2 × `--concurrency`: the caller resolves that. Sends beyond it wait their turn.
    pub max_connections: usize,
    /// How long one send may take once it has a connection slot: connecting, the TLS
    /// handshake, writing and the ack (waiting for a slot is not counted).
    pub timeout: Duration,
    /// The send time of events without `time` (wall) and the sends' deadlines (monotonic);
    /// the system's by default.
    pub clock: SharedClock,
}

impl TcpConfig {
    /// A configuration for the two URLs with no TLS files, 10 connections and
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(audit_url: impl Into<String>, session_url: impl Into<String>) -> TcpConfig {
        TcpConfig {
            audit_url: audit_url.into(),
            session_url: session_url.into(),
            ca: None,
            cert: None,
            key: None,
            max_connections: 10,
            timeout: DEFAULT_TIMEOUT,
            clock: tapelog_audit::clock::system(),
        }
    }
}

/// Why a [`TcpOutput`] could not be made.
#[derive(Debug, Error)]
pub enum TcpError {
    /// A URL that is not `forward://host[:port]/TAG` or `forward+tls://host[:port]/TAG`.
    #[error("Fluentd URL {url:?}: {what}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        what: String,
    },
    /// `--fluentd-cert` without `--fluentd-key`, or the other way round.
    #[error("--fluentd-cert and --fluentd-key go together; only {given} was given")]
    CertWithoutKey {
        /// The one that was given.
        given: &'static str,
    },
    /// TLS files given for a plain `forward://` URL: they would be ignored and the events
    /// sent in clear, which is not what whoever set them wanted.
    #[error(
        "{url}: --fluentd-ca/--fluentd-cert/--fluentd-key are set but the URL is plain forward://; use forward+tls://"
    )]
    TlsFilesWithoutTls {
        /// The plain URL.
        url: String,
    },
    /// `max_connections` is 0.
    #[error("the Forward output needs at least one connection (max connections is 0)")]
    NoConnections,
    /// A certificate or key file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// rustls refused the client configuration (a key that does not match its certificate,
    /// no system roots).
    #[error("TLS client configuration: {0}")]
    TlsConfig(String),
}

/// Where one URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    tag: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, TcpError> {
        let bad = |what: &str| TcpError::Url {
            url: url.to_string(),
            what: what.to_string(),
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("forward+tls://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("forward://") {
            (false, rest)
        } else {
            return Err(bad("the scheme must be forward:// or forward+tls://"));
        };
        if rest.contains(['?', '#']) {
            return Err(bad("a query or fragment has no meaning here"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(bad(
                "user names and passwords are not supported (use client certificates)",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an unclosed [ in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        if path.is_empty() {
            return Err(bad(
                "no tag: the path is the tag, as in forward://host:24224/test.log",
            ));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the tag has a space or control character"));
        }
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            tag: path.to_string(),
        })
    }

    fn same_server(&self, other: &Target) -> bool {
        self.tls == other.tls && self.host == other.host && self.port == other.port
    }

    fn server(&self) -> String {
        let scheme = if self.tls { "forward+tls" } else { "forward" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The Forward protocol output (see the module documentation).
pub struct TcpOutput {
    audit: Target,
    session: Target,
    audit_pool: Arc<Pool>,
    session_pool: Arc<Pool>,
    clock: SharedClock,
}

impl std::fmt::Debug for TcpOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpOutput")
            .field("audit", &self.audit)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl TcpOutput {
    /// Checks the URLs, reads the TLS files and makes the connection pools (no connection
    /// is opened until the first send). Needs a tokio runtime only to send.
    pub fn new(config: TcpConfig) -> Result<TcpOutput, TcpError> {
        if config.max_connections == 0 {
            return Err(TcpError::NoConnections);
        }
        let audit = Target::parse(&config.audit_url)?;
        let session = Target::parse(&config.session_url)?;
        let has_tls_files = config.ca.is_some() || config.cert.is_some() || config.key.is_some();
        for (t, url) in [(&audit, &config.audit_url), (&session, &config.session_url)] {
            if !t.tls && has_tls_files {
                return Err(TcpError::TlsFilesWithoutTls { url: url.clone() });
            }
        }
        let connector = if audit.tls || session.tls {
            Some(tokio_rustls::TlsConnector::from(client_config(
                config.ca.as_deref(),
                config.cert.as_deref(),
                config.key.as_deref(),
            )?))
        } else {
            None
        };
        let pool = |t: &Target| -> Result<Arc<Pool>, TcpError> {
            let tls = match (t.tls, &connector) {
                (true, Some(c)) => {
                    let name = ServerName::try_from(t.host.clone()).map_err(|_| TcpError::Url {
                        url: t.server(),
                        what: "the host is not a valid DNS name or IP address".into(),
                    })?;
                    Some((c.clone(), name))
                }
                _ => None,
            };
            Ok(Arc::new(Pool {
                host: t.host.clone(),
                port: t.port,
                label: t.server(),
                tls,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(config.max_connections),
                timeout: config.timeout,
                clock: config.clock.clone(),
            }))
        };
        let audit_pool = pool(&audit)?;
        let session_pool = if session.same_server(&audit) {
            audit_pool.clone()
        } else {
            pool(&session)?
        };
        Ok(TcpOutput {
            audit,
            session,
            audit_pool,
            session_pool,
            clock: config.clock.clone(),
        })
    }

    fn route(&self, to: Destination<'_>) -> (&Target, &Arc<Pool>, String) {
        match to {
            Destination::Audit => (&self.audit, &self.audit_pool, self.audit.tag.clone()),
            Destination::Session(sid) => (
                &self.session,
                &self.session_pool,
                tapelog_core::forward::session_target(&self.session.tag, sid),
            ),
        }
    }

    /// Connections open and idle in the pools (for tests and metrics).
    pub fn idle_connections(&self) -> usize {
        let count = |p: &Pool| p.idle.lock().map(|v| v.len()).unwrap_or(0);
        if Arc::ptr_eq(&self.audit_pool, &self.session_pool) {
            count(&self.audit_pool)
        } else {
            count(&self.audit_pool) + count(&self.session_pool)
        }
    }
}

impl Output for TcpOutput {
    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        events: &'a [String],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let (_, pool, tag) = self.route(to);
            let chunk =
                base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
            let message = encode_packed_forward(&tag, events, &chunk, send_time(&*self.clock))
                .map_err(|e| SendError::Rejected(format!("{} tag {tag}: {e}", pool.label)))?;
            pool.send(&message, &chunk)
                .await
                .map_err(|e| SendError::Transient(format!("{} tag {tag}: {e}", pool.label)))
        })
    }

    fn describe(&self, to: Destination<'_>) -> String {
        let (target, _, tag) = self.route(to);
        format!("{} tag {tag}", target.server())
    }
}

/// Now as an EventTime (the stamp of events without `time`); the epoch if the clock is
/// before it, the last representable second after 2106.
fn send_time(clock: &dyn Clock) -> EventTime {
    let since = clock
        .now_wall()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    EventTime {
        seconds: u32::try_from(since.as_secs()).unwrap_or(u32::MAX),
        nanos: since.subsec_nanos(),
    }
}

fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TcpError> {
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TcpError::TlsConfig(e.to_string()))?;
    let builder = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in tls::read_certs(ca)? {
                roots.add(c).map_err(|e| TlsError::Pem {
                    path: ca.into(),
                    what: format!("not a usable CA certificate: {e}"),
                })?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| TcpError::TlsConfig(format!("the system's CA roots: {e}")))?
        }
    };
    let config = match (cert, key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(tls::read_certs(cert)?, tls::read_key(key)?)
            .map_err(|e| {
                TcpError::TlsConfig(format!("{} and {}: {e}", cert.display(), key.display()))
            })?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(TcpError::CertWithoutKey {
                given: "--fluentd-cert",
            });
        }
        (None, Some(_)) => {
            return Err(TcpError::CertWithoutKey {
                given: "--fluentd-key",
            });
        }
    };
    Ok(Arc::new(config))
}

/// A connection, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

type Conn = Box<dyn Stream>;

/// The connections to one server.
struct Pool {
    host: String,
    port: u16,
    label: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    timeout: Duration,
    clock: SharedClock,
}

/// How one attempt on one connection failed.
struct Failure {
    message: String,
    /// Nothing came back before the failure: on a reused connection this means the server
    /// closed it while it sat idle, and a fresh connection is worth one more try.
    stale: bool,
}

impl Pool {
    /// Sends `message` and waits for the ack of `chunk`: on an idle connection when there
    /// is one (and once more on a new connection if that one turns out closed), else on a
    /// new one. The whole send is bounded by the timeout.
    async fn send(&self, message: &[u8], chunk: &str) -> Result<(), String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "the connection pool is closed".to_string())?;
        let deadline = self.clock.now_mono() + self.timeout;
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        if let Some(mut conn) = idle {
            match self.attempt(&mut conn, message, chunk, deadline).await {
                Ok(true) => {
                    self.put_back(conn);
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(f) if f.stale => {} // the server closed it while idle: try a new one
                Err(f) => return Err(f.message),
            }
        }
        let mut conn = self.connect(deadline).await?;
        match self.attempt(&mut conn, message, chunk, deadline).await {
            Ok(true) => {
                self.put_back(conn);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(f) => Err(f.message),
        }
    }

    fn put_back(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    async fn connect(&self, deadline: Instant) -> Result<Conn, String> {
        let work = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            // Small messages and their acks must not wait for Nagle; not fatal if refused.
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Box::new(tcp) as Conn),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|s| Box::new(s) as Conn)
                    .map_err(|e| format!("TLS handshake failed: {}", io_message(&e))),
            }
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| format!("no connection within {:?}", self.timeout))?
    }

    /// One message and its ack. `Ok(true)`: acked and the connection can be reused;
    /// `Ok(false)`: acked, but the server sent more than the ack (don't reuse).
    async fn attempt(
        &self,
        conn: &mut Conn,
        message: &[u8],
        chunk: &str,
        deadline: Instant,
    ) -> Result<bool, Failure> {
        let work = async {
            let write = async {
                conn.write_all(message).await?;
                conn.flush().await
            };
            write.await.map_err(|e| Failure {
                message: format!("sending failed: {}", io_message(&e)),
                stale: true,
            })?;
            let mut acks = AckDecoder::default();
            let mut buf = [0u8; 512];
            let mut received = false;
            loop {
                let n = conn.read(&mut buf).await.map_err(|e| Failure {
                    // With TLS 1.3 a refused client certificate shows up here, after the
                    // client's side of the handshake is done: say that, not "no ack".
                    message: if tls_error(&e).is_some() {
                        io_message(&e)
                    } else {
                        format!("no ack for chunk {chunk}: {e}")
                    },
                    stale: !received && is_closed(&e),
                })?;
                if n == 0 {
                    return Err(Failure {
                        message: format!(
                            "the server closed the connection before the ack of chunk {chunk}"
                        ),
                        stale: !received,
                    });
                }
                received = true;
                let bad = |e: tapelog_core::fluentd::AckError| Failure {
                    message: format!("waiting for the ack of chunk {chunk}: {e}"),
                    stale: false,
                };
                acks.push(&buf[..n]).map_err(bad)?;
                if let Some(got) = acks.poll().map_err(bad)? {
                    if got != chunk {
                        return Err(Failure {
                            message: format!("wrong ack: {got:?} for chunk {chunk:?}"),
                            stale: false,
                        });
                    }
                    return Ok(acks.buffered() == 0);
                }
            }
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(Failure {
                    message: format!("no ack for chunk {chunk} within {:?}", self.timeout),
                    stale: false,
                })
            })
    }
}

/// Whether an error means the peer had closed the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// The rustls error inside an I/O error, if any.
fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// An I/O error for people: a TLS alert from the server says the handshake was refused.
fn io_message(e: &io::Error) -> String {
    match tls_error(e) {
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the server refused the TLS handshake ({alert:?}): check that --fluentd-cert and \
             --fluentd-key are given and signed by a CA the server trusts"
        ),
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "the server's certificate is not trusted ({why:?}): check --fluentd-ca and the host name"
        ),
        Some(other) => format!("TLS: {other}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn target(url: &str) -> Result<Target, TcpError> {
        Target::parse(url)
    }

    #[test]
    fn urls_give_host_port_and_tag() {
        let t = target("forward+tls://127.0.0.1:24224/test.log").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "127.0.0.1".into(),
                port: 24224,
                tag: "test.log".into()
            }
        );
        let t = target("forward://fluentd/session").unwrap();
        assert_eq!(
            (t.tls, t.port, t.tag.as_str()),
            (false, DEFAULT_PORT, "session")
        );
        let t = target("forward://[::1]:9/a.b").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert_eq!(t.server(), "forward://[::1]:9");
        for bad in [
            "https://localhost:8888/test.log",
            "forward://localhost:24224",
            "forward://localhost:24224/",
            "forward://:24224/t",
            "forward://h:0/t",
            "forward://h:99999/t",
            "forward://h:x/t",
            "forward://u:p@h/t",
            "forward://h/t?x=1",
            "forward://h/a b",
            "forward://[::1/t",
        ] {
            assert!(matches!(target(bad), Err(TcpError::Url { .. })), "{bad}");
        }
    }

    #[test]
    fn constructor_checks_its_options() {
        let mut c = TcpConfig::new("forward://h/a", "forward://h/s");
        c.ca = Some("/nonexistent/ca.crt".into());
        assert!(matches!(
            TcpOutput::new(c.clone()),
            Err(TcpError::TlsFilesWithoutTls { .. })
        ));
        c.audit_url = "forward+tls://h/a".into();
        c.session_url = "forward+tls://h/s".into();
        assert!(matches!(TcpOutput::new(c.clone()), Err(TcpError::Tls(_))));
        c.max_connections = 0;
        assert!(matches!(TcpOutput::new(c), Err(TcpError::NoConnections)));
        let out = TcpOutput::new(TcpConfig::new(
            "forward://h:1/test.log",
            "forward://h:1/session",
        ))
        .unwrap();
        assert!(Arc::ptr_eq(&out.audit_pool, &out.session_pool));
        assert_eq!(
            out.describe(Destination::Audit),
            "forward://h:1 tag test.log"
        );
        assert_eq!(
            out.describe(Destination::Session("7f3c")),
            "forward://h:1 tag session.7f3c.log"
        );
    }
}
