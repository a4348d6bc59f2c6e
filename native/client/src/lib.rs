//! # tapelog-client: the client of `tapelog serve`
//!
//! The client of `tapelog serve` (docs/api.md): [`Client`] with a method per endpoint, the
//! credentials it sends ([`Credentials`]: a bearer token, or a TLS client certificate), and
//! the two adapters that let the rest of the library work through a server:
//! [`RemoteStreamer`] (the session writer's [`AuditStreamer`](tapelog_session::AuditStreamer)
//! over the stream endpoints) and [`RemoteEmitter`] (an [`Emitter`](tapelog_audit::emit::Emitter)
//! over `POST /v1/events`).
//!
//! - `credentials.rs`: token and certificate resolution (flags, `TAPELOG_*`, the data
//!   directory's admin token).
//! - `error.rs`: [`ClientError`].
//! - `failover.rs`: [`Failover`], and the rules a call follows through several servers.
//! - `lines.rs`: JSON lines out of network chunks, bounded.
//! - `streamer.rs`, `emitter.rs`: the adapters.
//!
//! Large answers are streams: a session's events are decoded line by line as they arrive
//! ([`Client::session_events`]), a recording comes as byte chunks
//! ([`Client::download_recording`]); neither is buffered whole.
//!
//! Connections are kept alive between calls. A kept-alive connection can turn out closed
//! only once a request is on it (the server stopped or restarted meanwhile). A request
//! whose second copy does what the first would have (an idempotent one: every `GET`, and
//! the `POST`s the API makes safe, each method says) is then sent once more on a new
//! connection. Any other request is not sent again: whether its first copy was applied is
//! unknown, so the error says so, and the caller's own recovery decides (the session
//! writer resumes the stream and replays what no status confirmed). Either way, a server
//! that is gone, refusing the new connection or closing it too, is
//! [`ClientError::Connect`], naming the address.
//!
//! A client may be given several servers ([`ClientConfig::replicas`]): replicas of one
//! service, `tapelog serve` processes that share one storage. Calls go to the server that
//! answered last (the first given, at the start). A call that fails there goes on to the next
//! server when it surely was not applied (the connection could not be made, or the server
//! answered 503: it is shutting down and handled nothing), and, when it is idempotent, also
//! when it went out and got no answer (the connection closed or reset, a timeout). A request
//! that is not sent twice and got no answer ends with its error as above; the server is
//! passed over, so the caller's recovery (a resume) goes to the next one. Any other answer
//! ends the call. With several servers a call makes up to [`Failover::rounds`] passes over
//! them, pausing between passes; when all are used up, [`ClientError::AllServersFailed`]
//! names every server and what it said. With one server a call behaves as without failover.
//! The session writer's recovery ([`RemoteStreamer`]) thereby resumes an upload through the
//! next replica, which opens it from the shared storage. (`failover.rs`: the rules.)
//!
//! Depends on `tapelog-core`, `tapelog-api`, `tapelog-audit`, `tapelog-session` and
//! `tapelog-store` (no cloud features).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod credentials;
mod emitter;
mod error;
mod failover;
mod lines;
mod streamer;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Response};
use serde::de::DeserializeOwned;
use tapelog_audit::{Condition, Order};
use tapelog_core::AuditEvent;

use tapelog_api::{
    AcceptedBody, CompleteReportBody, CompletedBody, EventsPage, NDJSON_CONTENT_TYPE,
    RECORDS_CONTENT_TYPE, StreamRequest, StreamStatusBody, UploadBody, UploadsBody,
};
use tapelog_audit::{SearchQuery, SessionQuery};

use failover::{Failure, Replay, Rotation, moves_on};

pub use credentials::{CredentialOptions, Credentials, Token, TokenSource};
pub use emitter::RemoteEmitter;
pub use error::ClientError;
pub use failover::Failover;
pub use lines::{LineSplitter, LineTooLong, MAX_LINE};
pub use streamer::{RemoteStream, RemoteStreamConfig, RemoteStreamer};

/// The server a client talks to when given none: `tapelog serve`'s default address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7450";

/// The largest JSON answer read into memory (a search page is capped at 1 MiB of events by
/// the server; this leaves room for JSON overhead and unusual servers).
pub const MAX_JSON_ANSWER: usize = 64 << 20;

/// How much of an error answer is read.
const MAX_ERROR_ANSWER: usize = 64 << 10;

/// A session's events as they arrive.
pub type EventStream = BoxStream<'static, Result<AuditEvent, ClientError>>;

/// A recording's bytes as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, ClientError>>;

/// A stream of search pages (ends after the page without a next key, or at the first error).
pub type PageStream = BoxStream<'static, Result<EventsPage, ClientError>>;

/// A recording being downloaded.
pub struct Download {
    /// Its size, when the server said.
    pub length: Option<u64>,
    /// Its bytes.
    pub bytes: ByteStream,
}

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The servers' base URLs (`http://127.0.0.1:7450`, `https://host:7450`): one, or several
    /// replicas of one service that a call fails over between ([`Failover`]).
    pub servers: Vec<String>,
    /// What it proves itself with (the same to every server).
    pub credentials: Credentials,
    /// Bound on establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Bound on a call with a bounded answer (streamed answers are bounded per read instead).
    pub request_timeout: Duration,
    /// How a call goes through several servers.
    pub failover: Failover,
}

impl ClientConfig {
    /// Defaults (5 s to connect, 60 s per call) for `server` with `credentials`.
    pub fn new(server: &str, credentials: Credentials) -> ClientConfig {
        ClientConfig::replicas(&[server], credentials)
    }

    /// Defaults (5 s to connect, 60 s per call, [`Failover::default`]) for the replicas
    /// `servers`, tried in this order, with `credentials`.
    pub fn replicas<S: AsRef<str>>(servers: &[S], credentials: Credentials) -> ClientConfig {
        ClientConfig {
            servers: servers.iter().map(|s| s.as_ref().to_string()).collect(),
            credentials,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            failover: Failover::default(),
        }
    }
}

/// A client of `tapelog serve` (of one server, or of several replicas it fails over
/// between); cheap to clone (one connection pool per server, and the server calls start at,
/// are shared by the clones).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// The servers, in the order given.
    servers: Vec<Endpoint>,
    /// Which server a call starts at.
    rotation: Rotation,
    failover: Failover,
    /// `Bearer TOKEN`, marked sensitive.
    auth: Option<HeaderValue>,
    request_timeout: Duration,
    connect_timeout: Duration,
}

/// One server.
struct Endpoint {
    http: reqwest::Client,
    /// The same settings with no pool: every request on a new connection (for the second
    /// copy of a request whose kept-alive connection was closed, and to check whether the
    /// server is there).
    fresh: reqwest::Client,
    /// The base URL without a trailing `/`.
    base: String,
}

impl Endpoint {
    fn url(&self, path: &str, query: &Query) -> Result<reqwest::Url, ClientError> {
        let text = format!("{}{}", self.base, path);
        let mut url = reqwest::Url::parse(&text).map_err(|e| ClientError::InvalidUrl {
            url: text.clone(),
            reason: e.to_string(),
        })?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers())
            .field("token", &self.inner.auth.is_some())
            .finish()
    }
}

/// Query parameters.
type Query = Vec<(&'static str, String)>;

/// A base URL checked: http or https, no query or user info. Whether it names this machine.
fn check_server(server: &str) -> Result<bool, ClientError> {
    let url = reqwest::Url::parse(server).map_err(|e| ClientError::InvalidUrl {
        url: server.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::InvalidUrl {
            url: server.to_string(),
            reason: format!("the scheme {:?} is not http or https", url.scheme()),
        });
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::InvalidUrl {
            url: server.to_string(),
            reason:
                "it has a query or user info; give credentials with --token-file or a certificate"
                    .into(),
        });
    }
    Ok(match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    })
}

impl Client {
    /// A client of `config.servers`. Checks the URLs and loads the certificates; connects
    /// only on the first call.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        if config.servers.is_empty() {
            return Err(ClientError::InvalidUrl {
                url: String::new(),
                reason: "no server given".into(),
            });
        }
        let creds = &config.credentials;
        let certs = match &creds.ca_pem {
            Some(ca) => {
                let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| {
                    ClientError::Credentials(format!("the CA file is not PEM certificates: {e}"))
                })?;
                if certs.is_empty() {
                    return Err(ClientError::Credentials(
                        "the CA file holds no certificate".into(),
                    ));
                }
                Some(certs)
            }
            None => None,
        };
        let identity = match &creds.identity_pem {
            Some(pem) => Some(reqwest::Identity::from_pem(pem).map_err(|e| {
                ClientError::Credentials(format!(
                    "the client certificate and key are not a PEM certificate and private key: {e}"
                ))
            })?),
            None => None,
        };
        let mut servers = Vec::with_capacity(config.servers.len());
        for server in &config.servers {
            let server = server.trim();
            let loopback = check_server(server)?;
            let build = |pooled: bool| {
                let mut builder = reqwest::Client::builder()
                    .connect_timeout(config.connect_timeout)
                    .read_timeout(config.request_timeout)
                    .tcp_nodelay(true);
                if !pooled {
                    builder = builder.pool_max_idle_per_host(0);
                }
                if loopback {
                    // A proxy from the environment must not intercept a server on this machine.
                    builder = builder.no_proxy();
                }
                if let Some(certs) = &certs {
                    builder = builder.tls_certs_only(certs.clone());
                }
                if let Some(id) = &identity {
                    builder = builder.identity(id.clone());
                }
                builder.build().map_err(|e| {
                    ClientError::Credentials(format!("setting up TLS for {server}: {e}"))
                })
            };
            servers.push(Endpoint {
                http: build(true)?,
                fresh: build(false)?,
                base: server.trim_end_matches('/').to_string(),
            });
        }
        let auth = match &creds.token {
            Some((token, source)) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", token.secret())).map_err(|_| {
                        ClientError::Credentials(format!(
                            "{source} has characters a header can't carry"
                        ))
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                rotation: Rotation::new(servers.len()),
                servers,
                failover: config.failover,
                auth,
                request_timeout: config.request_timeout,
                connect_timeout: config.connect_timeout,
            }),
        })
    }

    /// The base URL of the server calls go to first: the one that answered last (the first
    /// one given, before any answer).
    pub fn server(&self) -> &str {
        let i = self.inner.rotation.current();
        &self.inner.servers[i.min(self.inner.servers.len() - 1)].base
    }

    /// Every server's base URL, in the order given.
    pub fn servers(&self) -> Vec<&str> {
        self.inner.servers.iter().map(|e| e.base.as_str()).collect()
    }

    /// Sends a request; an answer that is not 2xx becomes [`ClientError::Api`]. With several
    /// servers, a call that fails on one goes on to the next as the failover rules say
    /// (`failover.rs`); when a pass over all of them found none that would do, and the
    /// passes are used up, [`ClientError::AllServersFailed`] names what each said. With one
    /// server, its error is the call's.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: Query,
        body: Option<(&'static str, Bytes)>,
        streamed: bool,
        replay: Replay,
    ) -> Result<(String, Response), ClientError> {
        let (_, url, resp) = self
            .send_via(method, path, query, body, streamed, replay, None)
            .await?;
        Ok((url, resp))
    }

    /// [`send`](Self::send), also saying which server answered. With `holder` (the server
    /// a recording stream was open on), each pass starts there, and a 503 from it ends the
    /// call instead of going on: a server shutting down closes its streams, uploading what
    /// they hold, before it exits, and resuming the upload elsewhere meanwhile would race
    /// that last part. Once the holder is unreachable the call goes on as usual.
    #[allow(clippy::too_many_arguments)]
    async fn send_via(
        &self,
        method: Method,
        path: &str,
        query: Query,
        body: Option<(&'static str, Bytes)>,
        streamed: bool,
        replay: Replay,
        holder: Option<usize>,
    ) -> Result<(usize, String, Response), ClientError> {
        let inner = &self.inner;
        let rounds = inner.failover.rounds_for(inner.servers.len());
        let mut failures = Vec::new();
        for round in 0..rounds {
            let pause = inner.failover.pause_before(round);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            failures.clear();
            let order: Vec<usize> = match holder {
                Some(h) => inner.rotation.order_from(h).collect(),
                None => inner.rotation.order().collect(),
            };
            for i in order {
                let server = &inner.servers[i];
                match self
                    .send_to(server, &method, path, &query, &body, streamed, replay)
                    .await
                {
                    Ok((url, resp)) => {
                        inner.rotation.answered(i);
                        return Ok((i, url, resp));
                    }
                    Err((error, failure)) => {
                        let held_here = holder == Some(i) && failure == Failure::Unavailable;
                        if failure != Failure::Final && !held_here {
                            inner.rotation.failed(i);
                        }
                        if inner.servers.len() == 1 || held_here || !moves_on(failure, replay) {
                            return Err(error);
                        }
                        failures.push(error);
                    }
                }
            }
        }
        Err(ClientError::AllServersFailed {
            method: method.as_str().to_string(),
            path: path.to_string(),
            rounds,
            failures,
        })
    }

    /// A request to one server; its error and how it failed (`failover.rs`). When the
    /// connection it went out on is closed before the answer, a [`Replay::Safe`] request
    /// is sent once more on a new connection; see the module documentation.
    #[allow(clippy::too_many_arguments)]
    async fn send_to(
        &self,
        server: &Endpoint,
        method: &Method,
        path: &str,
        query: &Query,
        body: &Option<(&'static str, Bytes)>,
        streamed: bool,
        replay: Replay,
    ) -> Result<(String, Response), (ClientError, Failure)> {
        let url = server.url(path, query).map_err(|e| (e, Failure::Final))?;
        // Messages name the endpoint; the query would only make them longer.
        let shown = format!("{}{}", server.base, path);
        let m = method.as_str();
        let first = self
            .attempt(&server.http, method, &url, body, streamed)
            .await;
        let mut resp = match first {
            Ok(resp) => resp,
            Err(e) if !error::is_closed_connection(&e) => {
                return Err((
                    ClientError::from_reqwest(m, &shown, &e),
                    error::failure_of(&e),
                ));
            }
            Err(e) => {
                let closed = error::reason(&e);
                if replay == Replay::Never {
                    let error = self.not_sent_again(server, m, &shown, &closed).await;
                    return Err((error, Failure::Lost));
                }
                match self
                    .attempt(&server.fresh, method, &url, body, streamed)
                    .await
                {
                    Ok(resp) => resp,
                    Err(e) => {
                        let failure = match error::failure_of(&e) {
                            Failure::Final => Failure::Final,
                            // The first copy went out: the second not being sent does not
                            // make the request one that was surely not applied.
                            _ => Failure::Lost,
                        };
                        return Err((gone_or(m, &shown, &closed, &e), failure));
                    }
                }
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let body = read_bounded(&mut resp, MAX_ERROR_ANSWER, m, &shown, true)
                .await
                .unwrap_or_default();
            let failure = if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                Failure::Unavailable
            } else {
                Failure::Final
            };
            return Err((
                ClientError::from_answer(m, &shown, status.as_u16(), &body),
                failure,
            ));
        }
        Ok((shown, resp))
    }

    /// One copy of a request through `http`.
    async fn attempt(
        &self,
        http: &reqwest::Client,
        method: &Method,
        url: &reqwest::Url,
        body: &Option<(&'static str, Bytes)>,
        streamed: bool,
    ) -> Result<Response, reqwest::Error> {
        let mut req = http.request(method.clone(), url.clone());
        if !streamed {
            req = req.timeout(self.inner.request_timeout);
        }
        if let Some(auth) = &self.inner.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some((content_type, bytes)) = body {
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
                .body(bytes.clone());
        }
        req.send().await
    }

    /// The error of a request that is not sent twice, whose connection was closed before
    /// the answer (`closed` says how). A new connection to `/healthz` tells a server that
    /// is gone ([`ClientError::Connect`]) from one that is there again, or still there
    /// ([`ClientError::Transport`], saying that the request may have been applied).
    async fn not_sent_again(
        &self,
        server: &Endpoint,
        method: &str,
        url: &str,
        closed: &str,
    ) -> ClientError {
        let probe = server
            .fresh
            .get(format!("{}/healthz", server.base))
            .timeout(self.inner.connect_timeout)
            .send()
            .await;
        match probe {
            Err(e) if e.is_connect() || error::is_closed_connection(&e) => ClientError::Connect {
                url: url.to_string(),
                reason: format!(
                    "the connection was closed before the answer ({closed}), and a new one failed: {}",
                    error::reason(&e)
                ),
            },
            _ => ClientError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                reason: format!(
                    "the connection was closed before the answer ({closed}); this request is not sent twice, and the server may or may not have applied it"
                ),
            },
        }
    }

    /// Sends a request and reads its JSON answer.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Query,
        body: Option<(&'static str, Bytes)>,
        replay: Replay,
    ) -> Result<T, ClientError> {
        Ok(self
            .json_via(method, path, query, body, replay, None)
            .await?
            .0)
    }

    /// [`json`](Self::json) through [`send_via`](Self::send_via): the answer and the server
    /// that gave it.
    async fn json_via<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Query,
        body: Option<(&'static str, Bytes)>,
        replay: Replay,
        holder: Option<usize>,
    ) -> Result<(T, usize), ClientError> {
        let m = method.as_str().to_string();
        let (server, url, mut resp) = self
            .send_via(method, path, query, body, false, replay, holder)
            .await?;
        let bytes = read_bounded(&mut resp, MAX_JSON_ANSWER, &m, &url, false).await?;
        let value = serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url,
            reason: format!("not the JSON expected: {e}"),
        })?;
        Ok((value, server))
    }

    /// `GET /healthz`: `Ok` when the server answers 200. Retried once on a new connection
    /// when its kept-alive one was closed (a `GET` changes nothing). The short answer is read
    /// to its end, so the connection can be used again.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let (url, mut resp) = self
            .send(
                Method::GET,
                "/healthz",
                Vec::new(),
                None,
                false,
                Replay::Safe,
            )
            .await?;
        read_bounded(&mut resp, MAX_ERROR_ANSWER, "GET", &url, true).await?;
        Ok(())
    }

    /// `POST /v1/events` with one event; returns how many the server accepted (1).
    ///
    /// Never sent twice: the server appends every event it is given, so a second copy of a
    /// request whose first copy was written would put its events in the audit log twice.
    pub async fn emit(&self, event: &AuditEvent) -> Result<u64, ClientError> {
        let body = event.to_json().into_bytes();
        let a: AcceptedBody = self
            .json(
                Method::POST,
                "/v1/events",
                Vec::new(),
                Some(("application/json", body.into())),
                Replay::Never,
            )
            .await?;
        Ok(a.accepted)
    }

    /// `POST /v1/events` with several events as JSON lines: all are written or, if one is
    /// bad, none (the error names its position). Never sent twice (see [`emit`](Self::emit)).
    pub async fn emit_batch(&self, events: &[AuditEvent]) -> Result<u64, ClientError> {
        let mut body = String::new();
        for e in events {
            body.push_str(&e.to_json());
            body.push('\n');
        }
        self.emit_json_lines(body.into_bytes()).await
    }

    /// `POST /v1/events` with events already in Teleport's JSON, one a line. Never sent
    /// twice (see [`emit`](Self::emit)).
    pub async fn emit_json_lines(&self, lines: Vec<u8>) -> Result<u64, ClientError> {
        let a: AcceptedBody = self
            .json(
                Method::POST,
                "/v1/events",
                Vec::new(),
                Some((NDJSON_CONTENT_TYPE, lines.into())),
                Replay::Never,
            )
            .await?;
        Ok(a.accepted)
    }

    fn stream_request(session_id: &str) -> Result<(&'static str, Bytes), ClientError> {
        let body = serde_json::to_vec(&StreamRequest {
            session_id: session_id.to_string(),
        })
        .map_err(|e| ClientError::Unsupported(format!("encoding a stream request: {e}")))?;
        Ok(("application/json", body.into()))
    }

    /// `POST /v1/streams`: a new recording stream (a new upload) for `session_id`.
    ///
    /// Never sent twice: every copy creates another upload, and the one the first copy made
    /// would stay open on the server with nobody writing to it.
    pub async fn create_stream(&self, session_id: &str) -> Result<StreamStatusBody, ClientError> {
        Ok(self.create_stream_at(session_id).await?.0)
    }

    /// [`create_stream`](Self::create_stream), and the index of the server the stream is
    /// open on.
    pub(crate) async fn create_stream_at(
        &self,
        session_id: &str,
    ) -> Result<(StreamStatusBody, usize), ClientError> {
        let body = Self::stream_request(session_id)?;
        self.json_via(
            Method::POST,
            "/v1/streams",
            Vec::new(),
            Some(body),
            Replay::Never,
            None,
        )
        .await
    }

    /// `POST /v1/streams/{upload_id}/resume`: opens the upload again on the server; the
    /// status says what the store holds.
    ///
    /// Retried once on a new connection when its kept-alive one was closed: the API makes a
    /// resume idempotent (resuming a stream that is open closes it first, then reads back
    /// what the store holds), so a second copy ends in the state the first would have.
    ///
    /// With several servers it goes to the one that answered last, and on as any idempotent
    /// call; [`RemoteStreamer`] instead starts at the server the stream was open on, and
    /// waits while that one answers 503 (see `send_via`).
    pub async fn resume_stream(
        &self,
        upload_id: &str,
        session_id: &str,
    ) -> Result<StreamStatusBody, ClientError> {
        Ok(self.resume_stream_at(upload_id, session_id, None).await?.0)
    }

    /// [`resume_stream`](Self::resume_stream) starting at `holder`, the server the stream
    /// was open on (a 503 from it ends the call), and the index of the server that resumed it.
    pub(crate) async fn resume_stream_at(
        &self,
        upload_id: &str,
        session_id: &str,
        holder: Option<usize>,
    ) -> Result<(StreamStatusBody, usize), ClientError> {
        let body = Self::stream_request(session_id)?;
        let path = format!("/v1/streams/{}/resume", segment(upload_id)?);
        self.json_via(
            Method::POST,
            &path,
            Vec::new(),
            Some(body),
            Replay::Safe,
            holder,
        )
        .await
    }

    /// `POST /v1/streams/{upload_id}/records`: records framed as in a recording part (4-byte
    /// big-endian length, then the `OneOf`).
    ///
    /// Never sent twice, although records carry their event indexes: the server puts every
    /// record it is given into the stream without comparing indexes with what it already
    /// took, so a second copy of a batch the first copy delivered would be recorded twice.
    /// A lost answer is recovered by the session writer instead: it resumes the stream and
    /// sends again what no status confirmed.
    pub async fn write_records(
        &self,
        upload_id: &str,
        records: Bytes,
    ) -> Result<StreamStatusBody, ClientError> {
        let path = format!("/v1/streams/{}/records", segment(upload_id)?);
        self.json(
            Method::POST,
            &path,
            Vec::new(),
            Some((RECORDS_CONTENT_TYPE, records)),
            Replay::Never,
        )
        .await
    }

    /// `GET /v1/streams/{upload_id}`: the stream's status. Retried once on a new connection
    /// when its kept-alive one was closed (a `GET` changes nothing).
    pub async fn stream_status(&self, upload_id: &str) -> Result<StreamStatusBody, ClientError> {
        let path = format!("/v1/streams/{}", segment(upload_id)?);
        self.json(Method::GET, &path, Vec::new(), None, Replay::Safe)
            .await
    }

    /// `POST /v1/streams/{upload_id}/complete`: uploads the rest and completes the upload.
    ///
    /// Never sent twice: a complete ends the stream, so a second copy after a first that
    /// worked answers 404 and would hide that the upload was completed.
    pub async fn complete_stream(&self, upload_id: &str) -> Result<CompletedBody, ClientError> {
        let path = format!("/v1/streams/{}/complete", segment(upload_id)?);
        self.json(Method::POST, &path, Vec::new(), None, Replay::Never)
            .await
    }

    /// `POST /v1/streams/{upload_id}/close`: uploads the rest; the upload stays resumable.
    ///
    /// Never sent twice, for the reason [`complete_stream`](Self::complete_stream) is not.
    pub async fn close_stream(&self, upload_id: &str) -> Result<StreamStatusBody, ClientError> {
        let path = format!("/v1/streams/{}/close", segment(upload_id)?);
        self.json(Method::POST, &path, Vec::new(), None, Replay::Never)
            .await
    }

    /// `GET /v1/events`: one page of the audit log. Retried once on a new connection when
    /// its kept-alive one was closed (a `GET` changes nothing).
    pub async fn search_events(&self, query: &SearchQuery) -> Result<EventsPage, ClientError> {
        let mut q = range_query(
            &query.from,
            &query.to,
            query.limit,
            query.order,
            &query.start_key,
        );
        if !query.event_types.is_empty() {
            q.push(("type", query.event_types.join(",")));
        }
        self.json(Method::GET, "/v1/events", q, None, Replay::Safe)
            .await
    }

    /// `GET /v1/events/feed`: the audit log in arrival order after the feed key `after` (""
    /// for the beginning), at most `limit` events (0: the server's 500). The answer's
    /// `next_key` is never empty: it is the `after` of the next call, and equals `after`
    /// (with no events) when nothing new was there. Retried once on a new connection when
    /// its kept-alive one was closed (a `GET` changes nothing).
    pub async fn events_feed(&self, after: &str, limit: usize) -> Result<EventsPage, ClientError> {
        let mut q: Query = Vec::new();
        if !after.is_empty() {
            q.push(("after", after.to_string()));
        }
        if limit > 0 {
            q.push(("limit", limit.to_string()));
        }
        self.json(Method::GET, "/v1/events/feed", q, None, Replay::Safe)
            .await
    }

    /// `GET /v1/sessions`: one page of session end events. The condition must be field
    /// equalities (`FIELD=VALUE`, several joined by `And`): that is what the API takes.
    /// Retried once on a new connection when its kept-alive one was closed.
    pub async fn search_sessions(&self, query: &SessionQuery) -> Result<EventsPage, ClientError> {
        let mut q = range_query(
            &query.from,
            &query.to,
            query.limit,
            query.order,
            &query.start_key,
        );
        if let Some(c) = &query.condition {
            for w in where_params(c)? {
                q.push(("where", w));
            }
        }
        if !query.session_id.is_empty() {
            q.push(("session_id", query.session_id.clone()));
        }
        self.json(Method::GET, "/v1/sessions", q, None, Replay::Safe)
            .await
    }

    /// Every page of [`search_events`](Self::search_events) from `query.start_key` on.
    pub fn event_pages(&self, query: SearchQuery) -> PageStream {
        let client = self.clone();
        pages(query, move |q| {
            let client = client.clone();
            async move { client.search_events(&q).await }
        })
    }

    /// Every page of [`search_sessions`](Self::search_sessions) from `query.start_key` on.
    pub fn session_pages(&self, query: SessionQuery) -> PageStream {
        let client = self.clone();
        pages(query, move |q| {
            let client = client.clone();
            async move { client.search_sessions(&q).await }
        })
    }

    /// `GET /v1/sessions/{sid}/events?from_index=N`: the session's events from index
    /// `from_index` on, decoded line by line (Teleport's JSON, the core reader) as they
    /// arrive. Retried once on a new connection when its kept-alive one was closed before
    /// the answer began; an answer cut later ends the stream with an error.
    pub async fn session_events(
        &self,
        session_id: &str,
        from_index: i64,
    ) -> Result<EventStream, ClientError> {
        let path = format!("/v1/sessions/{}/events", segment(session_id)?);
        let (url, resp) = self
            .send(
                Method::GET,
                &path,
                vec![("from_index", from_index.to_string())],
                None,
                true,
                Replay::Safe,
            )
            .await?;
        Ok(event_lines(url, resp))
    }

    /// `GET /v1/sessions/{sid}/recording`: the recording's bytes as they arrive. Retried
    /// once on a new connection when its kept-alive one was closed before the answer began;
    /// an answer cut later ends the stream with an error.
    pub async fn download_recording(&self, session_id: &str) -> Result<Download, ClientError> {
        let path = format!("/v1/sessions/{}/recording", segment(session_id)?);
        let (url, resp) = self
            .send(Method::GET, &path, Vec::new(), None, true, Replay::Safe)
            .await?;
        let length = resp.content_length();
        let bytes = futures::stream::unfold(Some(resp), move |state| {
            let url = url.clone();
            async move {
                let mut resp = state?;
                match resp.chunk().await {
                    Ok(Some(b)) => Some((Ok(b), Some(resp))),
                    Ok(None) => None,
                    Err(e) => Some((Err(ClientError::from_reqwest("GET", &url, &e)), None)),
                }
            }
        })
        .boxed();
        Ok(Download { length, bytes })
    }

    /// `GET /v1/uploads`: the uploads the server's store holds open. Retried once on a new
    /// connection when its kept-alive one was closed (a `GET` changes nothing).
    pub async fn list_uploads(&self) -> Result<Vec<UploadBody>, ClientError> {
        let u: UploadsBody = self
            .json(Method::GET, "/v1/uploads", Vec::new(), None, Replay::Safe)
            .await?;
        Ok(u.uploads)
    }

    /// `POST /v1/uploads/complete?grace=SECONDS`: one pass of the server's upload completer;
    /// what it completed, skipped and failed on.
    ///
    /// Retried once on a new connection when its kept-alive one was closed: a pass completes
    /// the abandoned uploads it finds, so a second pass leaves the store as one pass would
    /// (what the first pass completed is no longer listed; the report is the second
    /// pass's, and does not name those).
    pub async fn complete_uploads(
        &self,
        grace: Duration,
    ) -> Result<CompleteReportBody, ClientError> {
        self.json(
            Method::POST,
            "/v1/uploads/complete",
            vec![("grace", grace.as_secs().to_string())],
            None,
            Replay::Safe,
        )
        .await
    }
}

/// The error of a second copy of a request (`e`), sent on a new connection after the first
/// one's connection was closed (`closed` says how): refused or closed again means the server
/// is gone ([`ClientError::Connect`]); anything else is sorted as usual.
fn gone_or(method: &str, url: &str, closed: &str, e: &reqwest::Error) -> ClientError {
    if e.is_connect() || error::is_closed_connection(e) {
        return ClientError::Connect {
            url: url.to_string(),
            reason: format!(
                "a kept-alive connection was closed ({closed}), and a new one failed: {}",
                error::reason(e)
            ),
        };
    }
    ClientError::from_reqwest(method, url, e)
}

/// An id as one path segment: ids are UUIDs, but anything else must not change the path
/// (the server then answers 400 `invalid_id`). `.` and `..` can't be sent at all: URL
/// normalisation removes them even percent-encoded, which would reach another endpoint.
fn segment(id: &str) -> Result<String, ClientError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(ClientError::InvalidId { id: id.to_string() });
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

fn range_query(
    from: &tapelog_core::Timestamp,
    to: &tapelog_core::Timestamp,
    limit: usize,
    order: Order,
    start_key: &str,
) -> Query {
    let mut q: Query = vec![("from", from.to_rfc3339()), ("to", to.to_rfc3339())];
    if limit > 0 {
        q.push(("limit", limit.to_string()));
    }
    q.push((
        "order",
        match order {
            Order::Ascending => "asc",
            Order::Descending => "desc",
        }
        .to_string(),
    ));
    if !start_key.is_empty() {
        q.push(("start_key", start_key.to_string()));
    }
    q
}

/// The `where` parameters of a condition made of string equalities.
fn where_params(c: &Condition) -> Result<Vec<String>, ClientError> {
    match c {
        Condition::FieldEquals { field, value } => match value.as_str() {
            Some(v) => Ok(vec![format!("{field}={v}")]),
            None => Ok(vec![format!("{field}={value}")]),
        },
        Condition::And(all) => {
            let mut out = Vec::new();
            for c in all {
                out.extend(where_params(c)?);
            }
            Ok(out)
        }
        other => Err(ClientError::Unsupported(format!(
            "the server's session search takes FIELD=VALUE conditions only, not {other:?}"
        ))),
    }
}

/// Follows page keys with `fetch` until the last page or the first error.
fn pages<Q, F, Fut>(query: Q, fetch: F) -> PageStream
where
    Q: PageQuery + Send + 'static,
    F: Fn(Q) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<EventsPage, ClientError>> + Send + 'static,
{
    futures::stream::unfold((Some(query), fetch), |(state, fetch)| async move {
        let q = state?;
        let mut next = q.clone();
        match fetch(q).await {
            Ok(page) => {
                let more = !page.next_key.is_empty();
                next.set_start_key(page.next_key.clone());
                Some((Ok(page), (more.then_some(next), fetch)))
            }
            Err(e) => Some((Err(e), (None, fetch))),
        }
    })
    .boxed()
}

/// A query with a page key.
trait PageQuery: Clone {
    fn set_start_key(&mut self, key: String);
}

impl PageQuery for SearchQuery {
    fn set_start_key(&mut self, key: String) {
        self.start_key = key;
    }
}

impl PageQuery for SessionQuery {
    fn set_start_key(&mut self, key: String) {
        self.start_key = key;
    }
}

/// Reads a whole answer of at most `max` bytes.
async fn read_bounded(
    resp: &mut Response,
    max: usize,
    method: &str,
    url: &str,
    truncate: bool,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ClientError::from_reqwest(method, url, &e))?
    {
        if out.len() + chunk.len() > max {
            if truncate {
                out.extend_from_slice(&chunk[..max - out.len()]);
                return Ok(out);
            }
            return Err(ClientError::BadAnswer {
                url: url.to_string(),
                reason: format!("the answer is over {max} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The state of a JSON-lines answer being decoded.
struct Lines {
    url: String,
    resp: Option<Response>,
    splitter: LineSplitter,
    line: u64,
}

impl Lines {
    /// The next event, `None` at the end; an error ends the stream.
    async fn next(&mut self) -> Option<Result<AuditEvent, ClientError>> {
        loop {
            let line = match self.splitter.next_line() {
                Some(l) => Some(l.to_vec()),
                None if self.resp.is_none() => {
                    let last = self.splitter.finish().map(<[u8]>::to_vec)?;
                    Some(last)
                }
                None => None,
            };
            if let Some(line) = line {
                self.line += 1;
                let text = match std::str::from_utf8(&line) {
                    Ok(t) => t.trim(),
                    Err(e) => return Some(Err(self.bad(format!("not UTF-8: {e}")))),
                };
                if text.is_empty() {
                    continue;
                }
                // The server's error line ends the answer (an event's own `error` is a
                // string, so an event never parses as one).
                if text.starts_with("{\"error\"")
                    && let Ok(b) = serde_json::from_str::<tapelog_api::ErrorBody>(text)
                {
                    self.resp = None;
                    return Some(Err(ClientError::Stopped {
                        url: self.url.clone(),
                        line: self.line,
                        code: b.error.code,
                        message: b.error.message,
                    }));
                }
                return Some(
                    AuditEvent::from_json(text)
                        .map_err(|e| self.bad(format!("not a Teleport event: {e}"))),
                );
            }
            let resp = self.resp.as_mut()?;
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = self.splitter.push(&chunk) {
                        self.resp = None;
                        return Some(Err(self.bad(e.to_string())));
                    }
                }
                Ok(None) => self.resp = None,
                Err(e) => {
                    self.resp = None;
                    return Some(Err(ClientError::from_reqwest("GET", &self.url, &e)));
                }
            }
        }
    }

    fn bad(&self, reason: String) -> ClientError {
        ClientError::BadAnswer {
            url: self.url.clone(),
            reason: format!("line {}: {reason}", self.line),
        }
    }
}

fn event_lines(url: String, resp: Response) -> EventStream {
    let lines = Lines {
        url,
        resp: Some(resp),
        splitter: LineSplitter::new(MAX_LINE),
        line: 0,
    };
    futures::stream::unfold(Some(lines), |state| async move {
        let mut lines = state?;
        match lines.next().await? {
            Ok(e) => Some((Ok(e), Some(lines))),
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ids_stay_one_segment() {
        assert_eq!(
            segment("5f0c2d6e-0000-4000-8000-000000000000").unwrap(),
            "5f0c2d6e-0000-4000-8000-000000000000"
        );
        assert_eq!(segment("a/b.c").unwrap(), "a%2Fb%2Ec");
        for bad in ["", ".", ".."] {
            assert!(matches!(segment(bad), Err(ClientError::InvalidId { .. })));
        }
    }

    #[test]
    fn where_conditions() {
        let c = Condition::And(vec![
            Condition::equals("user", "bob"),
            Condition::equals("login", "root"),
        ]);
        assert_eq!(where_params(&c).unwrap(), ["user=bob", "login=root"]);
        let c = Condition::Not(Box::new(Condition::equals("user", "bob")));
        assert!(where_params(&c).is_err());
    }

    #[test]
    fn bad_urls() {
        for url in [
            "ftp://x",
            "not a url",
            "http://u:p@127.0.0.1:1",
            "http://127.0.0.1:1/?a=b",
        ] {
            let err = Client::new(ClientConfig::new(url, Credentials::default())).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidUrl { .. }),
                "{url}: {err}"
            );
        }
        let c = Client::new(ClientConfig::new(
            "http://127.0.0.1:7450/",
            Credentials::default(),
        ))
        .unwrap();
        assert_eq!(c.server(), "http://127.0.0.1:7450");
    }
}
