//! A test double of a Teleport Auth server (feature `testkit`): both services of `proto/`
//! over mutual TLS on `127.0.0.1:0`, with Teleport-shaped certificates and the behaviour
//! tapelog relies on.
//!
//! What it models: a cluster CA, a server certificate for `teleport.cluster.local`, client
//! identities written to a temp dir in Teleport's identity-file layout (and as cert/key/ca
//! files); client certificates of another CA refused in the handshake; a list of audit events
//! (added at any time, also while clients read) served by the page API (limit 0 → 500,
//! above 10,000 → InvalidArgument, opaque page keys, both orders, time range and type
//! filter), by the export API (chunks of a few events per UTC date, sealed when first listed,
//! so late events land in new chunks; `a1:<skip>` cursors that
//! resume inside a chunk; `Unimplemented` when configured as an old cluster) and by the typed
//! `GetEvents`; session recordings for both session streams (start index inclusive,
//! NotFound for a missing recording); `UpsertLock` calls recorded; the next N calls failing
//! with `Unavailable`; and per-method call counts, including calls without the `version`
//! header.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use prost::Message as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use tapelog_core::{AuditEvent, Timestamp};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

use crate::codec::{EventsWire, RawCodec};
use crate::pb::auditlog::audit_log_service_server::{AuditLogService, AuditLogServiceServer};
use crate::pb::auditlog::{
    EventExportChunk, EventUnstructured, EventsUnstructured, ExportEventUnstructured,
    ExportUnstructuredEventsRequest, GetEventExportChunksRequest, GetUnstructuredEventsRequest,
    StreamUnstructuredSessionEventsRequest,
};
use crate::pb::proto::auth_service_server::{AuthService, AuthServiceServer};
use crate::pb::proto::{
    Events, GetEventsRequest, PingRequest, PingResponse, StreamSessionEventsRequest,
};
use crate::pb::types::LockV2;
use crate::{GET_EVENTS_PATH, STREAM_SESSION_EVENTS_PATH, from_pb, structjson};

/// Events per export chunk unless [`Double::set_chunk_size`] says otherwise.
pub const DEFAULT_CHUNK_SIZE: usize = 3;
/// The cluster name `Ping` reports.
pub const CLUSTER_NAME: &str = "double.example";
/// The server version `Ping` reports.
pub const SERVER_VERSION: &str = "17.5.0";

/// A running double; stops when dropped.
pub struct Double {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: Option<oneshot::Sender<()>>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    events: Vec<(u64, AuditEvent)>,
    next_seq: u64,
    sessions: HashMap<String, Vec<AuditEvent>>,
    raw_sessions: HashMap<String, Vec<Bytes>>,
    chunk_size: usize,
    /// Export chunks per UTC day, sealed when a listing first sees their events: a chunk
    /// never changes once listed (as in Teleport's export backends); events added later,
    /// late ones included, go to new chunks of their own day.
    sealed: BTreeMap<i64, Vec<Vec<AuditEvent>>>,
    /// How many of `events` are in sealed chunks.
    chunked: usize,
    export_unimplemented: bool,
    fail_next: u32,
    calls: BTreeMap<&'static str, u64>,
    without_version: u64,
    locks: Vec<LockV2>,
    handshake_failures: u64,
    restarts: u64,
}

/// Identity files the double writes (all in its temp dir).
pub mod files {
    /// Identity file: PKCS#8 ECDSA key.
    pub const IDENTITY: &str = "identity";
    /// Identity file: SEC1 (`EC PRIVATE KEY`) ECDSA key.
    pub const IDENTITY_SEC1: &str = "identity-sec1";
    /// Identity file: PKCS#1 (`RSA PRIVATE KEY`) RSA key.
    pub const IDENTITY_PKCS1: &str = "identity-pkcs1";
    /// Identity file with a client certificate of another CA (the server refuses it).
    pub const IDENTITY_FOREIGN: &str = "identity-foreign";
    /// Identity file trusting another CA (the client refuses the server).
    pub const IDENTITY_WRONG_CA: &str = "identity-wrong-ca";
    /// `--format=tls` files.
    pub const CERT: &str = "auth.crt";
    /// The key of [`CERT`].
    pub const KEY: &str = "auth.key";
    /// The cluster CA.
    pub const CA: &str = "auth.cas";
}

/// Why the double could not start.
#[derive(Debug, thiserror::Error)]
pub enum DoubleError {
    /// Certificate generation.
    #[error("certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// Socket or file.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

impl Double {
    /// Starts a double with no events.
    pub async fn start() -> Result<Double, DoubleError> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::write(dir.path())?;
        let state = Arc::new(Mutex::new(State {
            chunk_size: DEFAULT_CHUNK_SIZE,
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls = Arc::new(pki.server_config()?);
        let (shutdown, accept) = serve(listener, tls.clone(), state.clone());
        Ok(Double {
            addr,
            dir,
            state,
            tls,
            shutdown: Some(shutdown),
            accept,
        })
    }

    /// Stops serving (connections and streams in flight are cut, as when an Auth server
    /// restarts), waits `down`, then serves again on the same address with the same
    /// certificates and data.
    pub async fn restart(&mut self, down: std::time::Duration) -> Result<(), DoubleError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.accept.abort();
        tokio::time::sleep(down).await;
        let listener = TcpListener::bind(self.addr).await?;
        let (shutdown, accept) = serve(listener, self.tls.clone(), self.state.clone());
        self.shutdown = Some(shutdown);
        self.accept = accept;
        lock(&self.state).restarts += 1;
        Ok(())
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// A file the double wrote (see [`files`]).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The default identity file (PKCS#8 key).
    pub fn identity_file(&self) -> PathBuf {
        self.file(files::IDENTITY)
    }

    /// How many times [`Double::restart`] ran.
    pub fn restarts(&self) -> u64 {
        self.state().restarts
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds audit events (at any time; clients see them on their next call).
    pub fn add_events(&self, events: impl IntoIterator<Item = AuditEvent>) {
        let mut s = self.state();
        for e in events {
            let seq = s.next_seq;
            s.next_seq += 1;
            s.events.push((seq, e));
        }
    }

    /// Stores a session recording.
    pub fn add_session(&self, session_id: &str, events: Vec<AuditEvent>) {
        self.state().sessions.insert(session_id.to_string(), events);
    }

    /// Stores a recording for the typed `StreamSessionEvents` only, as raw `events.OneOf`
    /// records (to test how clients handle items that do not decode).
    pub fn add_raw_session(&self, session_id: &str, records: Vec<Vec<u8>>) {
        self.state().raw_sessions.insert(
            session_id.to_string(),
            records.into_iter().map(Bytes::from).collect(),
        );
    }

    /// Events per export chunk (at least 1).
    pub fn set_chunk_size(&self, n: usize) {
        self.state().chunk_size = n.max(1);
    }

    /// Makes the export API answer `Unimplemented` (an older cluster).
    pub fn set_export_unimplemented(&self, yes: bool) {
        self.state().export_unimplemented = yes;
    }

    /// Makes the next `n` calls fail with `Unavailable`.
    pub fn fail_next(&self, n: u32) {
        self.state().fail_next = n;
    }

    /// Calls of a method so far (method name, e.g. `GetUnstructuredEvents`).
    pub fn calls(&self, method: &str) -> u64 {
        self.state().calls.get(method).copied().unwrap_or(0)
    }

    /// Calls that came without the `version` header.
    pub fn calls_without_version(&self) -> u64 {
        self.state().without_version
    }

    /// Locks received by `UpsertLock`.
    pub fn locks(&self) -> Vec<LockV2> {
        self.state().locks.clone()
    }

    /// TLS handshakes the server refused (or that broke off).
    pub fn handshake_failures(&self) -> u64 {
        self.state().handshake_failures
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.accept.abort();
    }
}

/// Serves both services on `listener` until the returned sender fires (or is dropped);
/// the handle is the accept loop's, aborted to close the listener.
fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<Mutex<State>>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (tx, rx) = mpsc::channel::<Result<TlsConn, io::Error>>(16);
    let accept_state = state.clone();
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    let accept = tokio::spawn(async move {
        // Dropped with this task: every connection it accepted is cut.
        let _cut = cut_tx;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            // As Go's net package does by default (and Teleport with it): without it, small
            // replies wait for the client's delayed ACK (≈ 40 ms a call).
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let state = accept_state.clone();
            let cut = cut_rx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        let _ = tx.send(Ok(TlsConn::new(tls, cut))).await;
                    }
                    Err(_) => lock(&state).handshake_failures += 1,
                }
            });
        }
    });
    let incoming = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let svc = Svc { state };
    let (shutdown, stop) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(AuditLogServiceServer::new(svc.clone()))
        .add_service(AuthRouter {
            inner: AuthServiceServer::new(svc.clone()),
            svc,
        });
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop.await;
            })
            .await;
    });
    (shutdown, accept)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- TLS material ----

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Ca {
    fn new(name: &str) -> Result<Ca, rcgen::Error> {
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
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate with `key`; server when `dns` is given, client otherwise.
    fn issue(
        &self,
        cn: &str,
        org: Option<&str>,
        dns: &[&str],
        key: &KeyPair,
    ) -> Result<String, rcgen::Error> {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name = dn(cn, org);
        params.extended_key_usages = if dns.is_empty() {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        };
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(key, &self.issuer)?.pem())
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

struct Pki {
    ca: Ca,
    server_cert: String,
    server_key: KeyPair,
}

/// A stand-in SSH user certificate line and SSH CA line: tapelog never uses them, but the
/// identity file has them where Teleport writes them.
const SSH_CERT_LINE: &str = "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20= tapelog-double\n";
const SSH_CA_LINE: &str = "@cert-authority double.example,*.double.example ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= type=user\n";

impl Pki {
    fn write(dir: &Path) -> Result<Pki, DoubleError> {
        let ca = Ca::new("double.example")?;
        let other = Ca::new("other.example")?;
        let server_key = KeyPair::generate()?;
        let server_cert = ca.issue(
            crate::SERVER_NAME,
            Some("Admin"),
            &[crate::SERVER_NAME],
            &server_key,
        )?;
        let user = "teleport-event-handler";
        let ec = KeyPair::generate()?;
        let ec_cert = ca.issue(user, Some("teleport-event-handler"), &[], &ec)?;
        // rcgen cannot generate RSA keys; aws-lc-rs (rustls' provider) can.
        let rsa_pkcs8 = {
            use aws_lc_rs::encoding::AsDer as _;
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map_err(|_| io::Error::other("RSA key generation failed"))?
                .as_ref()
                .to_vec()
        };
        let rsa = KeyPair::try_from(rsa_pkcs8.as_slice())?;
        let rsa_cert = ca.issue(user, Some("teleport-event-handler"), &[], &rsa)?;
        let foreign = KeyPair::generate()?;
        let foreign_cert = other.issue(user, None, &[], &foreign)?;

        let ec_pkcs8 = ec.serialize_pem();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text);
        write(
            files::IDENTITY,
            &identity(&ec_pkcs8, &ec_cert, &ca.cert_pem),
        )?;
        let sec1 = pem_block(
            "EC PRIVATE KEY",
            &pkcs8_inner(&ec.serialize_der()).unwrap_or_default(),
        );
        write(
            files::IDENTITY_SEC1,
            &identity(&sec1, &ec_cert, &ca.cert_pem),
        )?;
        let pkcs1 = pem_block(
            "RSA PRIVATE KEY",
            &pkcs8_inner(&rsa.serialize_der()).unwrap_or_default(),
        );
        write(
            files::IDENTITY_PKCS1,
            &identity(&pkcs1, &rsa_cert, &ca.cert_pem),
        )?;
        write(
            files::IDENTITY_FOREIGN,
            &identity(&foreign.serialize_pem(), &foreign_cert, &ca.cert_pem),
        )?;
        write(
            files::IDENTITY_WRONG_CA,
            &identity(&ec_pkcs8, &ec_cert, &other.cert_pem),
        )?;
        write(files::CERT, &ec_cert)?;
        write(files::KEY, &ec_pkcs8)?;
        write(files::CA, &ca.cert_pem)?;
        Ok(Pki {
            ca,
            server_cert,
            server_key,
        })
    }

    fn server_config(&self) -> Result<rustls::ServerConfig, DoubleError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca.cert_pem.as_bytes())
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        roots.add(ca)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| io::Error::other(e.to_string()))?;
        let cert = CertificateDer::from_pem_slice(self.server_cert.as_bytes())
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key.serialize_pem().as_bytes())
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// Teleport's identity-file layout: key, SSH cert, TLS cert, SSH CAs, TLS CAs.
fn identity(key_pem: &str, cert_pem: &str, ca_pem: &str) -> String {
    let mut s = String::new();
    for part in [key_pem, SSH_CERT_LINE, cert_pem, SSH_CA_LINE, ca_pem] {
        s.push_str(part);
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The key inside a PKCS#8 `PrivateKeyInfo` (PKCS#1 for RSA, SEC1 for EC): the contents of
/// its OCTET STRING, the third element of the outer SEQUENCE.
fn pkcs8_inner(der: &[u8]) -> Option<Vec<u8>> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&l0, rest) = rest.split_first()?;
        let (len, rest) = if l0 < 0x80 {
            (usize::from(l0), rest)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |a, &x| (a << 8) | usize::from(x));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }
    let (_, body, _) = tlv(der)?;
    let (_, _, rest) = tlv(body)?; // version
    let (_, _, rest) = tlv(rest)?; // algorithm
    let (tag, key, _) = tlv(rest)?;
    (tag == 0x04).then(|| key.to_vec())
}

// ---- the connection type tonic serves ----

/// A TLS connection of the double, cut (reads and writes fail) once its accept loop is gone,
/// as a process restart cuts its connections.
struct TlsConn(
    tokio_rustls::server::TlsStream<TcpStream>,
    Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
);

impl TlsConn {
    fn new(
        tls: tokio_rustls::server::TlsStream<TcpStream>,
        mut cut: tokio::sync::watch::Receiver<bool>,
    ) -> TlsConn {
        // `changed` fails once the sender (held by the accept loop) is dropped.
        TlsConn(
            tls,
            Box::pin(async move { while cut.changed().await.is_ok() {} }),
        )
    }

    fn is_cut(&mut self, cx: &mut Context<'_>) -> bool {
        std::future::Future::poll(self.1.as_mut(), cx).is_ready()
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the double restarted")
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.is_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

// ---- the services ----

#[derive(Clone)]
struct Svc {
    state: Arc<Mutex<State>>,
}

/// The page size used for limit 0 (upstream's `EventsIterationLimit`).
pub const DEFAULT_LIMIT: i32 = 500;
/// The largest page size (upstream's `EventsMaxIterationLimit`).
pub const MAX_LIMIT: i32 = 10_000;
const KEY_PREFIX: &str = "double-key:";
const CURSOR_PREFIX: &str = "a1:";
const CHUNK_PREFIX: &str = "chunk-";

fn ts_key(t: Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

fn utc_day(t: Timestamp) -> i64 {
    t.seconds.div_euclid(86_400)
}

impl Svc {
    /// Counts the call, checks the header, and applies an injected failure.
    fn enter(
        &self,
        method: &'static str,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<MutexGuard<'_, State>, Status> {
        let mut s = lock(&self.state);
        *s.calls.entry(method).or_insert(0) += 1;
        if md.get("version").is_none() {
            s.without_version += 1;
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(Status::unavailable(
                "injected failure: the Auth server is unavailable",
            ));
        }
        Ok(s)
    }
}

#[allow(clippy::too_many_arguments)]
fn page(
    s: &State,
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    types: &[String],
    limit: i32,
    start_key: &str,
    ascending: bool,
) -> Result<(Vec<AuditEvent>, String), Status> {
    let limit = match limit {
        l if l <= 0 => DEFAULT_LIMIT,
        l if l > MAX_LIMIT => {
            return Err(Status::invalid_argument(format!(
                "limit {l} exceeds the maximum of {MAX_LIMIT}"
            )));
        }
        l => l,
    } as usize;
    let start = start.map_or((i64::MIN, 0), |t| ts_key(from_pb(t)));
    let end = end.map_or((i64::MAX, 0), |t| ts_key(from_pb(t)));
    let mut hits: Vec<&(u64, AuditEvent)> = s
        .events
        .iter()
        .filter(|(_, e)| {
            let t = ts_key(e.time());
            t >= start
                && t <= end
                && (types.is_empty() || types.iter().any(|x| x == e.event_type()))
        })
        .collect();
    hits.sort_by_key(|(seq, e)| (ts_key(e.time()), *seq));
    if !ascending {
        hits.reverse();
    }
    let from = if start_key.is_empty() {
        0
    } else {
        let seq: u64 = start_key
            .strip_prefix(KEY_PREFIX)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Status::invalid_argument(format!("bad start key {start_key:?}")))?;
        hits.iter()
            .position(|(q, _)| *q == seq)
            .map_or(0, |p| p + 1)
    };
    let rest = &hits[from.min(hits.len())..];
    let items: Vec<&(u64, AuditEvent)> = rest.iter().take(limit).copied().collect();
    let last_key = match items.last() {
        Some((seq, _)) if rest.len() > items.len() => format!("{KEY_PREFIX}{seq}"),
        _ => String::new(),
    };
    Ok((
        items.into_iter().map(|(_, e)| e.clone()).collect(),
        last_key,
    ))
}

/// An event as the unstructured API sends it.
pub fn unstructured(e: &AuditEvent) -> EventUnstructured {
    let json = e.to_json();
    let obj = match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    let id = if e.id().is_empty() {
        Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    } else {
        e.id().to_string()
    };
    EventUnstructured {
        r#type: e.event_type().to_string(),
        id,
        time: Some(crate::to_pb(e.time())),
        index: e.index(),
        unstructured: Some(structjson::struct_from_json(&obj)),
    }
}

/// Seals the events not yet in a chunk into new chunks of their days (in arrival order, at
/// most `chunk_size` events each), then gives the chunks of `day`.
fn chunks_of(s: &mut State, day: i64) -> &[Vec<AuditEvent>] {
    if s.chunked < s.events.len() {
        let mut fresh: BTreeMap<i64, Vec<AuditEvent>> = BTreeMap::new();
        for (_, e) in s.events.iter().skip(s.chunked) {
            fresh.entry(utc_day(e.time())).or_default().push(e.clone());
        }
        s.chunked = s.events.len();
        let size = s.chunk_size.max(1);
        for (d, events) in fresh {
            s.sealed
                .entry(d)
                .or_default()
                .extend(events.chunks(size).map(<[AuditEvent]>::to_vec));
        }
    }
    s.sealed.get(&day).map_or(&[], Vec::as_slice)
}

fn session<'a>(s: &'a State, sid: &str, start: i32) -> Result<Vec<&'a AuditEvent>, Status> {
    let events = s
        .sessions
        .get(sid)
        .ok_or_else(|| Status::not_found(format!("a recording for session {sid} was not found")))?;
    Ok(events
        .iter()
        .filter(|e| e.index() >= i64::from(start))
        .collect())
}

#[tonic::async_trait]
impl AuditLogService for Svc {
    type GetEventExportChunksStream = BoxStream<'static, Result<EventExportChunk, Status>>;
    type ExportUnstructuredEventsStream =
        BoxStream<'static, Result<ExportEventUnstructured, Status>>;
    type StreamUnstructuredSessionEventsStream =
        BoxStream<'static, Result<EventUnstructured, Status>>;

    async fn get_event_export_chunks(
        &self,
        req: Request<GetEventExportChunksRequest>,
    ) -> Result<Response<Self::GetEventExportChunksStream>, Status> {
        let mut s = self.enter("GetEventExportChunks", req.metadata())?;
        if s.export_unimplemented {
            return Err(Status::unimplemented(
                "GetEventExportChunks is not implemented",
            ));
        }
        let day = utc_day(req.get_ref().date.as_ref().map_or(Timestamp::ZERO, from_pb));
        let names: Vec<Result<EventExportChunk, Status>> = (0..chunks_of(&mut s, day).len())
            .map(|i| {
                Ok(EventExportChunk {
                    chunk: format!("{CHUNK_PREFIX}{i}"),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(stream::iter(names))))
    }

    async fn export_unstructured_events(
        &self,
        req: Request<ExportUnstructuredEventsRequest>,
    ) -> Result<Response<Self::ExportUnstructuredEventsStream>, Status> {
        let mut s = self.enter("ExportUnstructuredEvents", req.metadata())?;
        if s.export_unimplemented {
            return Err(Status::unimplemented(
                "ExportUnstructuredEvents is not implemented",
            ));
        }
        let r = req.get_ref();
        let day = utc_day(r.date.as_ref().map_or(Timestamp::ZERO, from_pb));
        let chunk = r
            .chunk
            .strip_prefix(CHUNK_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| chunks_of(&mut s, day).get(n))
            .ok_or_else(|| Status::not_found(format!("export chunk {:?} not found", r.chunk)))?;
        let skip = if r.cursor.is_empty() {
            0
        } else {
            r.cursor
                .strip_prefix(CURSOR_PREFIX)
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| Status::invalid_argument(format!("bad cursor {:?}", r.cursor)))?
        };
        let items: Vec<Result<ExportEventUnstructured, Status>> = chunk
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, e)| {
                Ok(ExportEventUnstructured {
                    event: Some(unstructured(e)),
                    cursor: format!("{CURSOR_PREFIX}{}", i + 1),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(stream::iter(items))))
    }

    async fn get_unstructured_events(
        &self,
        req: Request<GetUnstructuredEventsRequest>,
    ) -> Result<Response<EventsUnstructured>, Status> {
        let s = self.enter("GetUnstructuredEvents", req.metadata())?;
        let r = req.get_ref();
        let (events, last_key) = page(
            &s,
            r.start_date.as_ref(),
            r.end_date.as_ref(),
            &r.event_types,
            r.limit,
            &r.start_key,
            r.order == crate::pb::auditlog::Order::Ascending as i32,
        )?;
        Ok(Response::new(EventsUnstructured {
            items: events.iter().map(unstructured).collect(),
            last_key,
        }))
    }

    async fn stream_unstructured_session_events(
        &self,
        req: Request<StreamUnstructuredSessionEventsRequest>,
    ) -> Result<Response<Self::StreamUnstructuredSessionEventsStream>, Status> {
        let s = self.enter("StreamUnstructuredSessionEvents", req.metadata())?;
        let r = req.get_ref();
        let items: Vec<Result<EventUnstructured, Status>> =
            session(&s, &r.session_id, r.start_index)?
                .into_iter()
                .map(|e| Ok(unstructured(e)))
                .collect();
        Ok(Response::new(Box::pin(stream::iter(items))))
    }
}

#[tonic::async_trait]
impl AuthService for Svc {
    type StreamSessionEventsStream = BoxStream<'static, Result<crate::pb::events::OneOf, Status>>;

    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let _s = self.enter("Ping", req.metadata())?;
        Ok(Response::new(PingResponse {
            cluster_name: CLUSTER_NAME.into(),
            server_version: SERVER_VERSION.into(),
            remote_addr: remote,
            ..Default::default()
        }))
    }

    // The two `events.OneOf` calls are served by `AuthRouter` with the byte codec; these
    // prost-typed stubs are never reached.
    async fn get_events(&self, _: Request<GetEventsRequest>) -> Result<Response<Events>, Status> {
        Err(Status::internal("GetEvents is served by the byte codec"))
    }

    async fn stream_session_events(
        &self,
        _: Request<StreamSessionEventsRequest>,
    ) -> Result<Response<Self::StreamSessionEventsStream>, Status> {
        Err(Status::internal(
            "StreamSessionEvents is served by the byte codec",
        ))
    }

    async fn upsert_lock(&self, req: Request<LockV2>) -> Result<Response<()>, Status> {
        let mut s = self.enter("UpsertLock", req.metadata())?;
        s.locks.push(req.into_inner());
        Ok(Response::new(()))
    }
}

/// `proto.AuthService`: the generated server, except for the two `events.OneOf` calls,
/// which go through [`RawCodec`] with [`tapelog_core::AuditEvent`]'s own encoding.
#[derive(Clone)]
struct AuthRouter {
    inner: AuthServiceServer<Svc>,
    svc: Svc,
}

impl NamedService for AuthRouter {
    const NAME: &'static str = "proto.AuthService";
}

impl tower::Service<http::Request<tonic::body::Body>> for AuthRouter {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let svc = self.svc.clone();
        match req.uri().path() {
            GET_EVENTS_PATH => Box::pin(async move {
                Ok(tonic::server::Grpc::new(RawCodec)
                    .unary(GetEventsSvc(svc), req)
                    .await)
            }),
            STREAM_SESSION_EVENTS_PATH => Box::pin(async move {
                Ok(tonic::server::Grpc::new(RawCodec)
                    .server_streaming(StreamSessionSvc(svc), req)
                    .await)
            }),
            _ => {
                let mut inner = self.inner.clone();
                Box::pin(async move { inner.call(req).await })
            }
        }
    }
}

struct GetEventsSvc(Svc);

impl tonic::server::UnaryService<Bytes> for GetEventsSvc {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move {
            let s = svc.enter("GetEvents", req.metadata())?;
            let r = GetEventsRequest::decode(req.into_inner())
                .map_err(|e| Status::invalid_argument(format!("GetEventsRequest: {e}")))?;
            let (events, last_key) = page(
                &s,
                r.start_date.as_ref(),
                r.end_date.as_ref(),
                &r.event_types,
                r.limit,
                &r.start_key,
                r.order == crate::pb::proto::Order::Ascending as i32,
            )?;
            let wire = EventsWire {
                items: events
                    .iter()
                    .map(|e| Bytes::from(e.to_oneof_bytes()))
                    .collect(),
                last_key,
            };
            Ok(Response::new(Bytes::from(wire.encode_to_vec())))
        })
    }
}

struct StreamSessionSvc(Svc);

impl tonic::server::ServerStreamingService<Bytes> for StreamSessionSvc {
    type Response = Bytes;
    type ResponseStream = BoxStream<'static, Result<Bytes, Status>>;
    type Future = BoxFuture<'static, Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move {
            let s = svc.enter("StreamSessionEvents", req.metadata())?;
            let r = StreamSessionEventsRequest::decode(req.into_inner()).map_err(|e| {
                Status::invalid_argument(format!("StreamSessionEventsRequest: {e}"))
            })?;
            let items: Vec<Result<Bytes, Status>> = match s.raw_sessions.get(&r.session_id) {
                Some(raw) => raw.iter().cloned().map(Ok).collect(),
                None => session(&s, &r.session_id, r.start_index)?
                    .into_iter()
                    .map(|e| Ok(Bytes::from(e.to_oneof_bytes())))
                    .collect(),
            };
            let out: Self::ResponseStream = Box::pin(stream::iter(items));
            Ok(Response::new(out))
        })
    }
}
