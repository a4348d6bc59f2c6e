//! # tapelog-server: `tapelog serve`
//!
//! `tapelog serve`: the HTTP API of docs/api.md over the library's parts — the file audit
//! log behind the checking emitter (`POST /v1/events`) and the search limiter (searches),
//! recording streams ([`RecordingStream`]) over the configured store, playback, the upload
//! completer — with bearer tokens or TLS client certificates for authentication.
//!
//! [`Server::start`] binds, then serves on tokio tasks; [`RunningServer::shutdown`] stops
//! accepting, lets requests in flight finish, and closes every open stream so that its
//! upload stays resumable. Connections are served by hyper directly (plain TCP or rustls),
//! so that a client certificate's identity reaches the handlers.
//!
//! With [`ServeConfig::teleport`] it is a read-only gateway to a Teleport cluster instead
//! (`gateway`): searches, session events and recordings come from the cluster's Auth
//! Service, writes are refused.
//!
//! - `auth`: tokens, certificate identities, roles; `error`: the JSON errors;
//!   `body`: content types and size limits; `streams`: the open streams and their
//!   handlers; `routes`: every other handler; `config`: [`ServeConfig`], the TOML file, the
//!   admin token file.
//!
//! Depends on `tapelog-core`, `tapelog-api`, `tapelog-audit`, `tapelog-store` (with its
//! cloud features `s3`, `azure`, `gcp`) and `tapelog-teleport` (the gateway); not on the session writer, the client or the
//! terminal crates.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod body;
mod config;
mod error;
mod gateway;
mod leader;
mod routes;
mod streams;
mod web;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::{Caller, MIN_TOKEN_LEN, TokenSpec, Tokens, constant_time_eq, parse_role};
pub use body::{decode_events, decode_json, decode_records};
pub use config::{
    DEFAULT_COMPLETER_GRACE, DEFAULT_COMPLETER_INTERVAL, DEFAULT_COMPLETER_LEASE,
    DEFAULT_DECODE_JOBS, DEFAULT_MAX_BODY, DEFAULT_SEARCH_LIMIT, DEFAULT_SHUTDOWN_TIMEOUT,
    FileConfig, FileToken, ServeConfig, TlsFiles, admin_token,
};
pub use error::ApiError;
pub use gateway::TeleportGateway;
pub use web::{DEFAULT_WEB_DIR, WebRoot};

use streams::Registry;
use tapelog_api::tls::{CertIdentity, TlsError};
use tapelog_api::{ErrorCode, Role};
use tapelog_audit::emit::CheckingEmitter;
use tapelog_audit::metrics::Metrics;
use tapelog_audit::{MultiLog, OpenOptions, SearchLimiter};
use tapelog_store::complete::{CompleterConfig, UploadCompleter};
use tapelog_store::playback::Playback;
use tapelog_store::stream::DriverConfig;
use tapelog_store::{StoreUploader, open_storage};

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A setting is wrong; the message names it.
    #[error("{0}")]
    Config(String),
    /// A file or the listening socket failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file, or the address.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The TLS files are wrong.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The storage can't be opened.
    #[error(transparent)]
    Storage(#[from] tapelog_store::StorageError),
    /// The recordings directory can't be used.
    #[error(transparent)]
    Upload(#[from] tapelog_store::UploadError),
    /// The audit log can't be opened.
    #[error(transparent)]
    Audit(#[from] tapelog_audit::AuditError),
}

/// What the handlers share.
pub(crate) struct App {
    uploader: Arc<StoreUploader>,
    /// The audit logs (`--audit`): events go to all, searches to the first that can.
    logs: MultiLog,
    emitter: CheckingEmitter<MultiLog>,
    search: SearchLimiter<MultiLog>,
    playback: Playback<Arc<StoreUploader>>,
    streams: Arc<Registry>,
    tokens: Tokens,
    max_body: usize,
    stream_config: DriverConfig,
    metrics: Arc<Metrics>,
    cluster_name: String,
    server_id: String,
    shutting_down: AtomicBool,
    web: WebRoot,
    /// `serve --teleport`: the read routes answer from this cluster, the others refuse.
    cluster: Option<gateway::Cluster>,
}

impl App {
    /// An upload completer over this server's store and audit log; the open streams are
    /// its live sessions.
    fn completer(
        &self,
        grace: Duration,
        period: Duration,
    ) -> UploadCompleter<StoreUploader, CheckingEmitter<MultiLog>, Arc<Registry>> {
        let mut config = CompleterConfig::new(&self.cluster_name);
        config.grace = grace;
        config.check_period = period;
        UploadCompleter::new(
            self.uploader.clone(),
            CheckingEmitter::new(self.logs.clone(), &self.cluster_name)
                .with_metrics(self.metrics.clone()),
            config,
        )
        .with_tracker(self.streams.clone())
        .with_clock(self.stream_config.clock.clone())
    }
}

/// The client certificate of a TLS connection, as its requests see it.
#[derive(Debug, Clone, Default)]
struct Peer(Option<Arc<CertIdentity>>);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        let peer = parts.extensions.get::<Peer>().and_then(|p| p.0.clone());
        app.tokens.authenticate(&parts.headers, peer.as_deref())
    }
}

/// Answers, before routing, the requests this server does not serve now: every request once
/// shutdown has begun (503 `unavailable`), and a gateway's writes ([`gateway::refusal`]).
/// Both checks are synchronous, so this is a plain tower layer rather than axum's
/// `middleware::from_fn`, which boxes the rest of the stack and a future for every request.
#[derive(Clone)]
struct GateLayer(Arc<App>);

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            app: self.0.clone(),
        }
    }
}

/// The service of [`GateLayer`].
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    app: Arc<App>,
}

impl<S> tower::Service<axum::extract::Request> for Gate<S>
where
    S: tower::Service<axum::extract::Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        use futures::future::Either;
        if self.app.shutting_down.load(Ordering::Relaxed) {
            let r = ApiError::new(
                ErrorCode::Unavailable,
                "the server is shutting down: try again when it is back",
            )
            .into_response();
            return Either::Left(std::future::ready(Ok(r)));
        }
        if let Some(r) = gateway::refusal(&self.app, &req) {
            return Either::Left(std::future::ready(Ok(r)));
        }
        Either::Right(self.inner.call(req))
    }
}

fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/events", post(routes::emit).get(routes::search))
        .route("/events/feed", get(routes::feed))
        .route("/streams", post(streams::create))
        .route("/streams/{upload_id}", get(streams::status))
        .route("/streams/{upload_id}/resume", post(streams::resume))
        .route("/streams/{upload_id}/records", post(streams::records))
        .route("/streams/{upload_id}/complete", post(streams::complete))
        .route("/streams/{upload_id}/close", post(streams::close))
        .route("/sessions", get(routes::sessions))
        .route("/sessions/{sid}/events", get(routes::session_events))
        .route("/sessions/{sid}/recording", get(routes::recording))
        .route("/uploads", get(routes::uploads))
        .route("/uploads/complete", post(routes::complete_uploads));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .nest("/v1", v1)
        .fallback(web_or_not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(GateLayer(app.clone()))
        .with_state(app)
}

/// `GET` of any other path outside `/v1/`: the web player's files; everything else is
/// answered as an unknown endpoint.
async fn web_or_not_found(
    State(app): State<Arc<App>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    let path = uri.path();
    if method == axum::http::Method::GET && !path.starts_with("/v1/") && path != "/v1" {
        return app.web.get(path).await;
    }
    routes::not_found().await.into_response()
}

/// The entry point: builds the parts from a [`ServeConfig`] and starts serving.
pub struct Server;

/// A server that is serving.
pub struct RunningServer {
    addr: SocketAddr,
    https: bool,
    admin_token_file: Option<PathBuf>,
    /// The admin token of `admin_token_file` (for [`RunningServer::login_url`]); `None` when
    /// tokens were configured.
    admin_token: Option<String>,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    completer: Option<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

/// What a shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Streams closed (their uploads stay resumable).
    pub streams_closed: usize,
    /// Streams whose close failed, with the error (their uploads hold what was stored).
    pub stream_errors: Vec<String>,
}

impl Server {
    /// Opens the store and the audit log, binds `config.listen` and serves until
    /// [`RunningServer::shutdown`]. Refuses plain HTTP on a non-loopback address unless
    /// `allow_insecure` is set.
    pub async fn start(config: ServeConfig) -> Result<RunningServer, ServeError> {
        if config.tls.is_none() && !config.listen.ip().is_loopback() && !config.allow_insecure {
            return Err(ServeError::Config(format!(
                "refusing to listen on {} without TLS: give --tls-cert and --tls-key, or --allow-insecure to accept that tokens cross the network in clear text",
                config.listen
            )));
        }
        if config.max_body == 0 {
            return Err(ServeError::Config("--max-body must be more than 0".into()));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let uploader = Arc::new(open_store(&config)?);
        // This server's metrics: its log, emitters and streams count here, `/metrics` shows them.
        let metrics = Metrics::shared();
        let logs = MultiLog::open(
            &config.audit,
            &OpenOptions {
                data_dir: config.data_dir.clone(),
                server_id: config.server_id.clone(),
                durability: config.durability,
                metrics: metrics.clone(),
            },
        )
        .await?;
        let search = SearchLimiter::new(logs.clone(), config.search_limit)?;
        let mut tokens = config.tokens.clone();
        let mut admin_token_file = None;
        let mut login_token = None;
        if tokens.is_empty() {
            let path = config.admin_token_path();
            let token = admin_token(&path)?;
            login_token = Some(token.clone());
            tokens.push(TokenSpec {
                role: Role::Admin,
                name: "admin".into(),
                token,
            });
            admin_token_file = Some(path);
        }
        let tls = match &config.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                tapelog_api::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?,
            )),
            None => None,
        };
        let log_root = logs.file_log().map(|f| f.log_root().to_path_buf());
        let cluster = match &config.teleport {
            None => None,
            Some(g) => Some(
                gateway::Cluster::new(g.clone())
                    .map_err(|e| ServeError::Config(format!("--teleport {}: {e}", g.addr)))?,
            ),
        };
        let app = Arc::new(App {
            playback: Playback::new(uploader.clone(), log_root.as_deref())
                .with_decode_jobs(config.decode_jobs),
            uploader,
            emitter: CheckingEmitter::new(logs.clone(), &config.cluster_name)
                .with_metrics(metrics.clone()),
            logs,
            search,
            streams: Arc::new(Registry::default()),
            tokens: Tokens::new(tokens),
            max_body: config.max_body,
            stream_config: DriverConfig {
                metrics: metrics.clone(),
                ..config.stream.clone()
            },
            metrics,
            cluster_name: config.cluster_name.clone(),
            server_id: config.server_id.clone(),
            shutting_down: AtomicBool::new(false),
            web: WebRoot::new(config.web_dir.clone()),
            cluster,
        });
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Io {
                path: config.listen.to_string().into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Io {
            path: config.listen.to_string().into(),
            source,
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let https = tls.is_some();
        let accept = tokio::spawn(accept_loop(
            listener,
            tls,
            router(app.clone()),
            stop_rx.clone(),
            config.shutdown_timeout,
        ));
        // A gateway completes nothing: its uploads are the cluster's.
        let completer =
            (!config.completer_interval.is_zero() && app.cluster.is_none()).then(|| {
                let app = app.clone();
                let mut stop_rx = stop_rx;
                let (grace, period) = (config.completer_grace, config.completer_interval);
                let lease = config.completer_lease;
                tokio::spawn(async move {
                    match app.logs.postgres().cloned() {
                        None => {
                            app.completer(grace, period)
                                .run(async move { stopped(&mut stop_rx).await })
                                .await
                        }
                        Some(db) => {
                            leader::run_completer(&app, db, grace, period, lease, &mut stop_rx)
                                .await
                        }
                    }
                })
            });
        Ok(RunningServer {
            addr,
            https,
            admin_token_file,
            admin_token: login_token,
            app,
            stop,
            accept,
            completer,
            shutdown_timeout: config.shutdown_timeout,
        })
    }
}

/// The recordings store: `--storage` (a URL or a directory), else `<data_dir>/log/records`.
fn open_store(config: &ServeConfig) -> Result<StoreUploader, ServeError> {
    match &config.storage {
        Some(url) if url.contains("://") => Ok(open_storage(url, &config.storage_options)?),
        Some(dir) => {
            let dir = std::path::absolute(dir).map_err(|source| ServeError::Io {
                path: dir.into(),
                source,
            })?;
            Ok(StoreUploader::local(&dir)?)
        }
        None => Ok(StoreUploader::local(
            &config.data_dir.join("log").join("records"),
        )?),
    }
}

/// `s` with every byte outside RFC 3986's unreserved set percent-encoded, so that it reads
/// back unchanged from a URL fragment (`URLSearchParams` in the page).
fn fragment_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
        }
    }
    out
}

/// Resolves once `stop` says true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    mut stop: watch::Receiver<bool>,
    shutdown_timeout: Duration,
) {
    let (conn_stop, _) = watch::channel(false);
    let conn_stop = Arc::new(conn_stop);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    // Out of file descriptors and the like: wait a little, go on.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let router = router.clone();
                let tls = tls.clone();
                let stop_rx = conn_stop.subscribe();
                conns.spawn(serve_connection(tcp, tls, router, stop_rx));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = conn_stop.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(shutdown_timeout, drain).await.is_err() {
        conns.abort_all();
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => serve_io(TokioIo::new(tcp), Peer::default(), router, stop).await,
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| tapelog_api::tls::cert_identity(c.as_ref()).ok())
                .map(Arc::new);
            serve_io(TokioIo::new(stream), Peer(peer), router, stop).await
        }
    }
}

async fn serve_io<I>(io: TokioIo<I>, peer: Peer, router: Router, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    // Only a certificate is worth noting: inserting into a request's extensions allocates
    // their map, and a plain connection's requests are read as having no certificate anyway.
    let service = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        if peer.0.is_some() {
            req.extensions_mut().insert(peer.clone());
        }
        req
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    // `pipeline_flush`: answers to requests a client pipelined are written together.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .pipeline_flush(true)
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

impl RunningServer {
    /// The address the server listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This server's metrics (what `GET /metrics` shows).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.app.metrics
    }

    /// The base URL of the API (`http://…` or `https://…`).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The web player's address for the person who started the server: with no token
    /// configured, `URL/#token=ADMIN_TOKEN` (the admin token file's token in the fragment,
    /// which browsers never send to the server; the page moves it into the tab's storage and
    /// clears it from the address bar); with configured tokens, `URL/` alone: those belong
    /// to named callers and are never printed. An unspecified listening address
    /// (`0.0.0.0`, `::`) is given as the loopback address of its family.
    pub fn login_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        match &self.admin_token {
            Some(t) => format!("{scheme}://{addr}/#token={}", fragment_escape(t)),
            None => format!("{scheme}://{addr}/"),
        }
    }

    /// The admin token file the server made or read, when no token was configured.
    pub fn admin_token_file(&self) -> Option<&std::path::Path> {
        self.admin_token_file.as_deref()
    }

    /// How many recording streams are open.
    pub fn open_streams(&self) -> usize {
        self.app.streams.len()
    }

    /// Stops accepting connections, lets requests in flight finish (up to the shutdown
    /// timeout; requests that arrive meanwhile get 503), then closes every open stream:
    /// what they hold is uploaded and their uploads stay open, to be resumed.
    ///
    /// The open streams are closed before the listener stops: meanwhile every request gets
    /// 503, which a client with several servers waits out on this one, so that it resumes a
    /// stream elsewhere only once what this server held is stored (no part written twice).
    pub async fn shutdown(self) -> ShutdownReport {
        self.app.shutting_down.store(true, Ordering::Relaxed);
        let (streams_closed, stream_errors) =
            match tokio::time::timeout(self.shutdown_timeout, self.app.streams.close_all()).await {
                Ok(r) => r,
                Err(_) => (0, vec!["closing the open streams timed out".to_string()]),
            };
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        if let Some(c) = self.completer {
            let _ = c.await;
        }
        ShutdownReport {
            streams_closed,
            stream_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fragment_escape;

    #[test]
    fn fragment_escape_keeps_unreserved_bytes_only() {
        assert_eq!(fragment_escape("0123abcXYZ-._~"), "0123abcXYZ-._~");
        assert_eq!(fragment_escape("a b&c=d#e%+"), "a%20b%26c%3Dd%23e%25%2B");
        assert_eq!(fragment_escape("é"), "%C3%A9");
    }
}
