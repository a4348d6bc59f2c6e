//! The TLS gRPC connection to a Teleport Auth server, as Teleport's Go client makes it
//! (`authConnect`): mutual TLS with the identity's certificate, the cluster CAs as roots,
//! SNI `teleport.cluster.local`, ALPN `h2`, HTTP/2 keepalive every minute with three missed
//! probes allowed, a 30 s dial timeout, and a `version` header on every call.
//!
//! Only the Auth address (default `localhost:3025`) is supported. A Proxy address with TLS
//! routing needs an SSH tunnel inside TLS (upstream's `tlsRoutingConnect`), which tapelog
//! does not implement; such a server fails the handshake or does not speak `h2`, and the
//! error says so.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::credentials::Credentials;
use crate::error::{PROXY_NOTE, TeleportError};

/// The Auth address used when none is given.
pub const DEFAULT_ADDR: &str = "localhost:3025";
/// The TLS server name every Auth server's certificate carries.
pub const SERVER_NAME: &str = "teleport.cluster.local";
/// The Teleport API version this client announces in the `version` header.
pub const API_VERSION: &str = "18.0.0";

/// Timeouts of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// TCP connect plus TLS handshake.
    pub dial_timeout: Duration,
    /// HTTP/2 ping period.
    pub keepalive: Duration,
    /// Missed pings before the connection is dropped.
    pub keepalive_count: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            dial_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(60),
            keepalive_count: 3,
        }
    }
}

/// Adds `version: <API_VERSION>` to every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionHeader;

impl Interceptor for VersionHeader {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut()
            .insert("version", MetadataValue::from_static(API_VERSION));
        Ok(req)
    }
}

/// The channel every call goes through.
pub type AuthChannel = InterceptedService<Channel, VersionHeader>;

/// The rustls client configuration for these credentials.
pub fn tls_config(addr: &str, creds: &Credentials) -> Result<rustls::ClientConfig, TeleportError> {
    let fail = |what: String| TeleportError::Connect {
        addr: addr.to_string(),
        what,
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in &creds.cas {
        roots
            .add(ca.clone())
            .map_err(|e| fail(format!("a CA certificate of the identity is unusable: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(creds.cert_chain.clone(), creds.key.clone_key())
        .map_err(|e| {
            fail(format!(
                "the identity's certificate and key are unusable: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Opens the connection (TCP and TLS now; fails fast when the server is unreachable or the
/// handshake fails), with the `version` header on every call.
pub async fn connect(
    addr: &str,
    creds: &Credentials,
    opts: &ConnectOptions,
) -> Result<AuthChannel, TeleportError> {
    let channel = connect_without_header(addr, creds, opts).await?;
    Ok(InterceptedService::new(channel, VersionHeader))
}

/// As [`connect`], without the `version` header (for tests of servers that check it).
pub async fn connect_without_header(
    addr: &str,
    creds: &Credentials,
    opts: &ConnectOptions,
) -> Result<Channel, TeleportError> {
    let config = Arc::new(tls_config(addr, creds)?);
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| TeleportError::Connect {
            addr: addr.to_string(),
            what: format!("not a host:port address ({e})"),
        })?
        .connect_timeout(opts.dial_timeout)
        .http2_keep_alive_interval(opts.keepalive)
        .keep_alive_timeout(opts.keepalive * opts.keepalive_count)
        .keep_alive_while_idle(true);
    let target = addr.to_string();
    let dial_timeout = opts.dial_timeout;
    let connector = tower::service_fn(move |_: Uri| {
        let target = target.clone();
        let tls = TlsConnector::from(config.clone());
        async move { dial(&target, tls, dial_timeout).await }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| TeleportError::Connect {
            addr: addr.to_string(),
            what: describe_chain(&e).unwrap_or_else(|| e.to_string()),
        })?;
    Ok(channel)
}

/// A failure of [`dial`], found again in tonic's error chains by [`describe_chain`].
#[derive(Debug)]
pub struct DialError(pub String);

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for DialError {}

async fn dial(
    addr: &str,
    tls: TlsConnector,
    timeout: Duration,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, DialError> {
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| DialError(format!("TCP connection failed: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(SERVER_NAME).map_err(|e| DialError(e.to_string()))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| DialError(describe_io(&e)))?;
        let alpn = stream.get_ref().1.alpn_protocol();
        if alpn != Some(b"h2".as_slice()) {
            return Err(DialError(format!(
                "the server did not agree to HTTP/2 (ALPN h2); it is not a Teleport Auth \
                 server: {PROXY_NOTE}"
            )));
        }
        Ok(TokioIo::new(stream))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DialError(format!("no TLS connection within {timeout:?}")))?
}

fn describe_io(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe_tls(tls),
        None => describe_alert_text(&e.to_string())
            .unwrap_or_else(|| format!("TLS handshake failed: {e}")),
    }
}

/// A TLS alert that reaches us only as text (rustls errors read after the handshake come
/// through hyper as I/O errors holding the message).
fn describe_alert_text(text: &str) -> Option<String> {
    const REFUSED: [&str; 7] = [
        "BadCertificate",
        "CertificateExpired",
        "CertificateUnknown",
        "UnknownCA",
        "CertificateRevoked",
        "CertificateRequired",
        "AccessDenied",
    ];
    if !text.contains("received fatal alert") {
        return None;
    }
    if REFUSED.iter().any(|a| text.contains(a)) {
        return Some(format!("TLS: {text}: {REFUSED_ADVICE}"));
    }
    Some(format!("TLS: {text}"))
}

const REFUSED_ADVICE: &str = "the server refused the client certificate (expired identity, or \
    an identity of another cluster: renew it with `tctl auth sign`)";

/// What a TLS failure means for a Teleport connection.
pub fn describe_tls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let advice = match e {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "the server's certificate is not signed by the identity's CA (wrong CA or \
             identity of another cluster; or not an Auth server: {PROXY_NOTE})"
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_string()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("the server's certificate is not valid for {SERVER_NAME}; {PROXY_NOTE}")
        }
        E::AlertReceived(
            A::BadCertificate
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRevoked
            | A::CertificateRequired
            | A::AccessDenied
            | A::DecryptError,
        ) => REFUSED_ADVICE.to_string(),
        E::NoApplicationProtocol | E::AlertReceived(A::NoApplicationProtocol) => {
            format!("the server does not speak HTTP/2 (ALPN h2): {PROXY_NOTE}")
        }
        _ => String::new(),
    };
    if advice.is_empty() {
        format!("TLS: {e}")
    } else {
        format!("TLS: {e}: {advice}")
    }
}

/// Looks through an error's sources for a dial or TLS failure and describes it.
pub fn describe_chain(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<DialError>() {
            return Some(d.0.clone());
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(describe_tls(t));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(describe_tls(t));
            }
            if let Some(what) = describe_alert_text(&io.to_string()) {
                return Some(what);
            }
        }
        cur = err.source();
    }
    None
}

/// A call's status that is really a connection failure, described.
pub(crate) fn dial_failure(s: &tonic::Status) -> Option<String> {
    let src = StdError::source(s)?;
    describe_chain(src)
}
