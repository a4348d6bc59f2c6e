//! Where `tapelog forward` reads: the audit log in order (pages with resumable keys by time,
//! [`Source::page`], for a Teleport cluster; the arrival-order feed, [`Source::feed`], for a
//! data directory or a `tapelog serve`) and the events of one session from an index.
//!
//! - [`Source::Local`]: a tapelog data directory (`--data-dir`): the file audit log under
//!   `DIR/log/` and the recordings under `DIR/log/records` (and legacy session files).
//! - [`Source::Teleport`]: a Teleport cluster's Auth Service over gRPC (`--teleport-addr
//!   HOST:PORT`, as teleport-event-handler), through [`tapelog_teleport::AuthClient`]: pages of
//!   `GetUnstructuredEvents` (the handler's polling mode) and sessions from
//!   `StreamUnstructuredSessionEvents`, with an identity file (`--teleport-identity`) or
//!   `--teleport-cert/--teleport-key/--teleport-ca`, re-read every
//!   `--teleport-refresh-interval` when `--teleport-refresh-enabled`.
//! - [`Source::Remote`]: a `tapelog serve` over mutual TLS (`--teleport-addr https://HOST:PORT`:
//!   a URL), with the same credentials (an identity PEM here is certificate, key and CA).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use tapelog_core::forward::lock::LockRequest;
use tapelog_core::{AuditEvent, EventFields, Timestamp};

use super::ForwardError;
use super::options::ForwardOptions;
use tapelog_audit::{FileLog, FileLogConfig, SearchQuery, default_server_id};
use tapelog_client::{Client, ClientConfig, ClientError};
use tapelog_store::StoreUploader;
use tapelog_store::playback::{Playback, PlaybackError};
use tapelog_teleport::{AuthClient, Credentials, CredentialsSource, EventQuery, TeleportError};

/// One audit event as read.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEvent {
    /// Teleport's JSON, one line.
    pub json: String,
    /// Its type.
    pub event_type: String,
    /// Its checkpoint: `uid`, or the hex SHA-256 of the JSON when it has none.
    pub checkpoint: String,
    /// Its `sid` ("" when none).
    pub session_id: String,
}

/// An event's checkpoint: its `uid`, else the hex SHA-256 of its JSON.
fn checkpoint_of(uid: &str, json: &str) -> String {
    match uid {
        "" => Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        id => id.to_string(),
    }
}

impl SourceEvent {
    fn new(json: String, fields: &EventFields) -> SourceEvent {
        SourceEvent {
            event_type: fields.get_type().to_string(),
            session_id: fields.get_session_id().to_string(),
            checkpoint: checkpoint_of(fields.get_id(), &json),
            json,
        }
    }

    /// An event of the file log's fast feed read (its fields are those of [`Self::new`]).
    fn of_feed(e: tapelog_audit::FeedEvent) -> SourceEvent {
        let checkpoint = if e.uid.is_empty() {
            checkpoint_of("", &e.json)
        } else {
            e.uid
        };
        SourceEvent {
            event_type: e.event_type,
            session_id: e.session_id,
            checkpoint,
            json: e.json,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Clone, Default)]
pub struct SourcePage {
    /// The events, in order.
    pub events: Vec<SourceEvent>,
    /// The key of the next page; "" on the last.
    pub next_key: String,
}

/// A read of the audit log's arrival-order feed ([`Source::feed`]).
#[derive(Debug, Clone, Default)]
pub struct SourceFeed {
    /// The events in the order read, each with its time (`time`; Go's zero time when it has
    /// none).
    pub events: Vec<(SourceEvent, Timestamp)>,
    /// The feed key after them; the key read from (with no events) when nothing was new.
    pub next_key: String,
}

/// A session's events as they are read.
pub type SessionEvents = BoxStream<'static, Result<AuditEvent, ForwardError>>;

/// The audit log and recordings to export.
pub enum Source {
    /// A local data directory.
    Local {
        /// The audit log.
        log: FileLog,
        /// The recordings.
        playback: Arc<Playback<Arc<StoreUploader>>>,
    },
    /// A `tapelog serve`.
    Remote(RemoteSource),
    /// A Teleport cluster.
    Teleport(Box<TeleportSource>),
}

/// A Teleport Auth Service: the credentials' source and a connection made on first use, made
/// again after a failure and, with `--teleport-refresh-enabled`, after each
/// `--teleport-refresh-interval` (with the credentials read again).
pub struct TeleportSource {
    addr: String,
    credentials: CredentialsSource,
    refresh: Option<Duration>,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

/// A connection, when it was made, and whether it has answered a call. A call that ends
/// `Cancelled` on a connection that has answered before was cut by the connection's end (the
/// server restarting, calls queued on it failing together), and is tried again; on one that
/// never answered, `Cancelled` may be a refused client certificate (see
/// [`teleport_error`]).
#[derive(Clone)]
struct Conn {
    client: AuthClient,
    made: tokio::time::Instant,
    answered: Arc<std::sync::atomic::AtomicBool>,
}

impl Conn {
    fn answered(&self) -> bool {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn mark_answered(&self) {
        self.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl TeleportSource {
    /// The connection, made (again) when there is none or the refresh interval has passed.
    async fn conn(&self) -> Result<Conn, ForwardError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref()
            && self.refresh.is_none_or(|every| c.made.elapsed() < every)
        {
            return Ok(c.clone());
        }
        let creds = Credentials::load(&self.credentials).map_err(|e| ForwardError::Source {
            message: e.to_string(),
            // A renewed identity may be on its way when it is re-read.
            transient: self.refresh.is_some(),
        })?;
        let client = AuthClient::connect(&self.addr, &creds)
            .await
            .map_err(|e| self.error(e, false))?;
        let c = Conn {
            client,
            made: tokio::time::Instant::now(),
            answered: Arc::default(),
        };
        *conn = Some(c.clone());
        Ok(c)
    }

    /// One call on the connection: a success marks the connection as answered, a failure is
    /// [`fail`](Self::fail)ed.
    async fn call<T, F>(&self, f: impl FnOnce(AuthClient) -> F) -> Result<T, ForwardError>
    where
        F: std::future::Future<Output = Result<T, TeleportError>>,
    {
        let conn = self.conn().await?;
        match f(conn.client.clone()).await {
            Ok(v) => {
                conn.mark_answered();
                Ok(v)
            }
            Err(e) => Err(self.fail(e, conn.answered()).await),
        }
    }

    /// A failed call as the exporter sees it (`answered`: its connection had answered an
    /// earlier call); the connection is dropped after a transient failure, so the next call
    /// connects again.
    async fn fail(&self, e: TeleportError, answered: bool) -> ForwardError {
        let e = self.error(e, answered);
        if matches!(
            e,
            ForwardError::Source {
                transient: true,
                ..
            }
        ) {
            *self.conn.lock().await = None;
        }
        e
    }

    fn error(&self, e: TeleportError, answered: bool) -> ForwardError {
        teleport_error(e, self.refresh.is_some(), answered)
    }
}

/// A server, with a client that an identity refresh may replace.
pub struct RemoteSource {
    client: Arc<RwLock<Client>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RemoteSource {
    fn drop(&mut self) {
        if let Some(h) = self.refresher.take() {
            h.abort();
        }
    }
}

/// Splits an identity file into (certificate + key PEM, CA PEM): the first certificate is
/// the client's, the later ones the CA's.
pub fn split_identity(pem: &str) -> Result<(Vec<u8>, Vec<u8>), ForwardError> {
    let mut identity = String::new();
    let mut ca = String::new();
    let mut certs = 0;
    let mut keys = 0;
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block_and_after = &rest[start..];
        let Some(end_marker) = block_and_after.find("-----END ") else {
            break;
        };
        let after_end = &block_and_after[end_marker + 9..];
        let Some(close) = after_end.find("-----") else {
            break;
        };
        let block_len = end_marker + 9 + close + 5;
        let block = &block_and_after[..block_len];
        if block.starts_with("-----BEGIN CERTIFICATE-----") {
            certs += 1;
            if certs == 1 {
                identity.push_str(block);
                identity.push('\n');
            } else {
                ca.push_str(block);
                ca.push('\n');
            }
        } else if block.contains("PRIVATE KEY-----") {
            keys += 1;
            identity.push_str(block);
            identity.push('\n');
        }
        rest = &block_and_after[block_len..];
    }
    if certs < 2 || keys != 1 {
        return Err(ForwardError::Credentials(format!(
            "the identity file must hold the client certificate, its private key and the CA certificate (found {certs} certificate(s) and {keys} key(s))"
        )));
    }
    Ok((identity.into_bytes(), ca.into_bytes()))
}

fn credentials(opts: &ForwardOptions) -> Result<tapelog_client::Credentials, ForwardError> {
    let read = |what: &str, p: &Path| {
        std::fs::read(p)
            .map_err(|e| ForwardError::Credentials(format!("{what} {}: {e}", p.display())))
    };
    if let Some(id) = &opts.teleport_identity {
        let text = String::from_utf8_lossy(&read("--teleport-identity", id)?).to_string();
        let (identity, ca) = split_identity(&text)?;
        return Ok(tapelog_client::Credentials {
            token: None,
            identity_pem: Some(identity),
            ca_pem: Some(ca),
        });
    }
    let mut creds = tapelog_client::Credentials::default();
    if let (Some(cert), Some(key)) = (&opts.teleport_cert, &opts.teleport_key) {
        let mut pem = read("--teleport-cert", cert)?;
        pem.push(b'\n');
        pem.extend(read("--teleport-key", key)?);
        creds.identity_pem = Some(pem);
    }
    if let Some(ca) = &opts.teleport_ca {
        creds.ca_pem = Some(read("--teleport-ca", ca)?);
    }
    Ok(creds)
}

fn client(opts: &ForwardOptions) -> Result<Client, ForwardError> {
    let config = ClientConfig::new(&opts.teleport_addr, credentials(opts)?);
    Client::new(config).map_err(ForwardError::from)
}

/// Whether `--teleport-addr` names a `tapelog serve` (a URL) rather than a Teleport Auth
/// Service (`HOST:PORT`, as teleport-event-handler takes it).
pub fn is_tapelog_server(addr: &str) -> bool {
    addr.contains("://")
}

impl Source {
    /// The source `opts` names: `--data-dir`; else `--teleport-addr`: a Teleport cluster for
    /// `HOST:PORT`, a `tapelog serve` for a URL (`https://HOST:PORT`). Starts the identity
    /// refresh task of a `tapelog serve` source (on the current tokio runtime) when asked.
    pub fn open(opts: &ForwardOptions) -> Result<Source, ForwardError> {
        if let Some(dir) = &opts.data_dir {
            return Source::local(dir);
        }
        if !is_tapelog_server(&opts.teleport_addr) {
            let credentials = match (
                &opts.teleport_identity,
                &opts.teleport_cert,
                &opts.teleport_key,
                &opts.teleport_ca,
            ) {
                (Some(id), ..) => CredentialsSource::IdentityFile(id.clone()),
                (None, Some(cert), Some(key), Some(ca)) => CredentialsSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: ca.clone(),
                },
                _ => {
                    return Err(ForwardError::Credentials(format!(
                        "--teleport-addr {}: a Teleport cluster needs --teleport-identity, or --teleport-cert, --teleport-key and --teleport-ca",
                        opts.teleport_addr
                    )));
                }
            };
            return Ok(Source::Teleport(Box::new(TeleportSource {
                addr: opts.teleport_addr.clone(),
                credentials,
                refresh: opts
                    .teleport_refresh_enabled
                    .then(|| opts.teleport_refresh_interval.max(Duration::from_secs(1))),
                conn: tokio::sync::Mutex::new(None),
            })));
        }
        let shared = Arc::new(RwLock::new(client(opts)?));
        let refresher =
            (opts.teleport_refresh_enabled && opts.teleport_identity.is_some()).then(|| {
                let shared = shared.clone();
                let opts = opts.clone();
                let every = opts.teleport_refresh_interval.max(Duration::from_secs(1));
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        match client(&opts) {
                            Ok(c) => {
                                if let Ok(mut g) = shared.write() {
                                    *g = c;
                                }
                                super::log::debug("identity file re-read");
                            }
                            Err(e) => super::log::warn(&format!(
                                "re-reading the identity file failed, keeping the old one: {e}"
                            )),
                        }
                    }
                })
            });
        Ok(Source::Remote(RemoteSource {
            client: shared,
            refresher,
        }))
    }

    /// A local data directory.
    pub fn local(dir: &Path) -> Result<Source, ForwardError> {
        if !dir.join("log").is_dir() {
            return Err(ForwardError::Source {
                message: format!(
                    "--data-dir {}: no audit log there (expected {})",
                    dir.display(),
                    dir.join("log").display()
                ),
                transient: false,
            });
        }
        let log = FileLog::open(FileLogConfig::new(dir, &default_server_id()))?;
        let records: PathBuf = dir.join("log").join("records");
        let store = StoreUploader::local(&records).map_err(|e| ForwardError::Source {
            message: format!("{}: {e}", records.display()),
            transient: false,
        })?;
        let playback = Playback::new(Arc::new(store), Some(&dir.join("log")));
        Ok(Source::Local {
            log,
            playback: Arc::new(playback),
        })
    }

    /// A failed call to the server as the exporter sees it. With an identity file that is
    /// re-read (`--teleport-refresh-enabled`), a refused certificate (TLS alert, 401, 403)
    /// is worth waiting for: whatever renews the file (tbot, a cron job) may not have run
    /// yet. Without a refresh it is fatal, with the client's message naming the files.
    fn remote_error(r: &RemoteSource, e: ClientError) -> ForwardError {
        let refused = matches!(e, ClientError::Tls { .. })
            || e.status().is_some_and(|s| s == 401 || s == 403);
        match ForwardError::from(e) {
            ForwardError::Source { message, .. } if refused && r.refresher.is_some() => {
                ForwardError::Source {
                    message: format!(
                        "{message} (retrying: the identity file is re-read every --teleport-refresh-interval)"
                    ),
                    transient: true,
                }
            }
            other => other,
        }
    }

    fn remote_client(r: &RemoteSource) -> Result<Client, ForwardError> {
        r.client
            .read()
            .map(|c| c.clone())
            .map_err(|_| ForwardError::Source {
                message: "the client lock is poisoned".into(),
                transient: false,
            })
    }

    /// One page of the audit log.
    pub async fn page(&self, q: &SearchQuery) -> Result<SourcePage, ForwardError> {
        match self {
            Source::Local { log, .. } => {
                let log = log.clone();
                let q = q.clone();
                let page = tokio::task::spawn_blocking(move || log.search_events_blocking(&q))
                    .await
                    .map_err(|e| ForwardError::Source {
                        message: format!("search task: {e}"),
                        transient: true,
                    })??;
                Ok(SourcePage {
                    events: page
                        .events
                        .into_iter()
                        .map(|e| SourceEvent::new(e.json, &e.fields))
                        .collect(),
                    next_key: page.next_key,
                })
            }
            Source::Remote(r) => {
                let client = Self::remote_client(r)?;
                let page = client
                    .search_events(q)
                    .await
                    .map_err(|e| Self::remote_error(r, e))?;
                let next_key = page.next_key.clone();
                let events = page
                    .into_events()
                    .into_iter()
                    .map(|(json, fields)| SourceEvent::new(json, &fields))
                    .collect();
                Ok(SourcePage { events, next_key })
            }
            Source::Teleport(t) => {
                let query = EventQuery {
                    start: q.from,
                    end: q.to,
                    event_types: q.event_types.clone(),
                    limit: i32::try_from(q.limit).unwrap_or(i32::MAX),
                    start_key: q.start_key.clone(),
                    ascending: q.order == tapelog_audit::Order::Ascending,
                };
                let page = t
                    .call(|c| async move { c.get_unstructured_events(&query).await })
                    .await?;
                let events = page
                    .items
                    .into_iter()
                    .map(SourceEvent::from_teleport)
                    .collect();
                Ok(SourcePage {
                    events,
                    next_key: page.last_key,
                })
            }
        }
    }

    /// The events of `session_id` with index ≥ `from_index`, in order.
    pub async fn session_events(
        &self,
        session_id: &str,
        from_index: u64,
    ) -> Result<SessionEvents, ForwardError> {
        let from = i64::try_from(from_index).unwrap_or(i64::MAX);
        match self {
            Source::Local { playback, .. } => {
                let s = playback
                    .stream_session_events(session_id, from)
                    .await
                    .map_err(ForwardError::from)?;
                Ok(s.map(|r| r.map_err(ForwardError::from)).boxed())
            }
            Source::Remote(r) => {
                let client = Self::remote_client(r)?;
                let s = client
                    .session_events(session_id, from)
                    .await
                    .map_err(|e| Self::remote_error(r, e))?;
                Ok(s.map(|r| r.map_err(ForwardError::from)).boxed())
            }
            Source::Teleport(t) => {
                let start = i32::try_from(from).unwrap_or(i32::MAX);
                let s = t
                    .call(|c| async move {
                        c.stream_unstructured_session_events(session_id, start)
                            .await
                    })
                    .await?;
                let addr = t.addr.clone();
                let reread = t.refresh.is_some();
                Ok(s
                    .map(move |r| {
                        // The stream opened: the connection had answered.
                        let e = r.map_err(|e| teleport_error(e, reread, true))?;
                        AuditEvent::from_json(&e.json).map_err(|err| ForwardError::Source {
                            message: format!(
                                "StreamUnstructuredSessionEvents on {addr}: event {} of type {:?}: {err}",
                                e.index, e.event_type
                            ),
                            transient: false,
                        })
                    })
                    .boxed())
            }
        }
    }
}

/// One event of an export chunk and the cursor that resumes after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportItem {
    /// The event.
    pub event: SourceEvent,
    /// The chunk's cursor after this event.
    pub cursor: String,
}

/// A chunk's events as they are read.
pub type ExportEvents = BoxStream<'static, Result<ExportItem, ForwardError>>;

impl SourceEvent {
    /// An event as a Teleport cluster gives it (its id is the server's checkpoint).
    fn from_teleport(e: tapelog_teleport::UnstructuredEvent) -> SourceEvent {
        let fields = EventFields::parse(&e.json).unwrap_or_default();
        SourceEvent {
            event_type: e.event_type,
            session_id: fields.get_session_id().to_string(),
            // The server's id: the event's own, or its hash of the payload.
            checkpoint: e.id,
            json: e.json,
        }
    }
}

impl Source {
    /// The cluster, for the calls only a Teleport cluster has.
    fn teleport(&self, what: &str) -> Result<&TeleportSource, ForwardError> {
        match self {
            Source::Teleport(t) => Ok(t),
            _ => Err(ForwardError::Source {
                message: format!("{what} needs a Teleport cluster (--teleport-addr HOST:PORT)"),
                transient: false,
            }),
        }
    }

    /// Whether the source has the bulk export API, asked as upstream asks: the chunks of the
    /// date two days ahead, read to the end. `Unimplemented` (an older cluster, or an audit
    /// backend without export) means no; so does any source that is not a cluster.
    pub async fn probe_export(&self, now: tapelog_core::Timestamp) -> Result<bool, ForwardError> {
        let Source::Teleport(_) = self else {
            return Ok(false);
        };
        match self
            .export_chunks(tapelog_core::forward::export::probe_day(now))
            .await
        {
            Ok(_) => Ok(true),
            Err(ForwardError::NotImplemented(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The chunk names of a UTC date (`GetEventExportChunks`, read to the end).
    pub async fn export_chunks(&self, day: i64) -> Result<Vec<String>, ForwardError> {
        let t = self.teleport("the export API")?;
        let date = tapelog_core::forward::export::date_start(day);
        let mut stream = t
            .call(|c| async move { c.get_event_export_chunks(date).await })
            .await?;
        let mut chunks = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(c) => chunks.push(c),
                // The stream opened: the connection had answered.
                Err(e) => return Err(t.fail(e, true).await),
            }
        }
        Ok(chunks)
    }

    /// A chunk's events from `cursor` ("" = its start), each with the cursor after it
    /// (`ExportUnstructuredEvents`).
    pub async fn export_events(
        &self,
        day: i64,
        chunk: &str,
        cursor: &str,
    ) -> Result<ExportEvents, ForwardError> {
        let t = self.teleport("the export API")?;
        let date = tapelog_core::forward::export::date_start(day);
        let s = t
            .call(|c| async move { c.export_unstructured_events(date, chunk, cursor).await })
            .await?;
        let reread = t.refresh.is_some();
        Ok(s.map(move |r| {
            // The stream opened: the connection had answered.
            let e = r.map_err(|e| teleport_error(e, reread, true))?;
            Ok(ExportItem {
                event: SourceEvent::from_teleport(e.event),
                cursor: e.cursor,
            })
        })
        .boxed())
    }
}

impl Source {
    /// Whether the audit log is read as an arrival-order feed ([`Source::feed`]: a data
    /// directory, a `tapelog serve`) rather than by time windows ([`Source::page`]: a
    /// Teleport cluster).
    pub fn reads_feed(&self) -> bool {
        !matches!(self, Source::Teleport(_))
    }

    /// One read of the audit log's arrival-order feed after the feed key `after` ("" for
    /// the beginning), at most `limit` events. Only for sources that [`reads_feed`](Self::reads_feed).
    pub async fn feed(&self, after: &str, limit: usize) -> Result<SourceFeed, ForwardError> {
        let with_time = |json: String, fields: &EventFields| {
            let time = fields.get_timestamp();
            (SourceEvent::new(json, fields), time)
        };
        match self {
            Source::Local { log, .. } => {
                // The fast read: the four fields used here, not each line's map.
                let page = log.feed_events(after.to_string(), limit).await?;
                Ok(SourceFeed {
                    events: page
                        .events
                        .into_iter()
                        .map(|e| {
                            let time = e.time;
                            (SourceEvent::of_feed(e), time)
                        })
                        .collect(),
                    next_key: page.next_key,
                })
            }
            Source::Remote(r) => {
                let client = Self::remote_client(r)?;
                let page = match client.events_feed(after, limit).await {
                    Ok(p) => p,
                    Err(e) if e.status() == Some(404) => {
                        return Err(ForwardError::Source {
                            message: format!(
                                "{e} (the server has no event feed, GET /v1/events/feed: a tapelog serve older than this exporter; upgrade it)"
                            ),
                            transient: false,
                        });
                    }
                    Err(e) => return Err(Self::remote_error(r, e)),
                };
                let next_key = page.next_key.clone();
                let events = page
                    .into_events()
                    .into_iter()
                    .map(|(json, fields)| with_time(json, &fields))
                    .collect();
                Ok(SourceFeed { events, next_key })
            }
            Source::Teleport(_) => Err(ForwardError::Source {
                message: "a Teleport cluster is read by time windows, not as a feed".into(),
                transient: false,
            }),
        }
    }

    /// Upserts an auto-lock (`UpsertLock`): only a Teleport cluster can lock a user.
    pub async fn upsert_lock(&self, request: &LockRequest) -> Result<(), ForwardError> {
        let Source::Teleport(t) = self else {
            return Err(ForwardError::Source {
                message: "auto-lock needs a Teleport cluster (--teleport-addr HOST:PORT); this source cannot lock users".into(),
                transient: false,
            });
        };
        let expires = request
            .expires_ms
            .map(|ms| tapelog_core::Timestamp::from_unix_nanos(i128::from(ms) * 1_000_000));
        t.call(|c| async move {
            c.upsert_lock(&request.user, &request.login, request.message, expires)
                .await
        })
        .await
    }
}

/// A Teleport error as the exporter sees it (`identity_reread`: `--teleport-refresh-enabled`;
/// `answered`: the call's connection had answered before, or the call is a stream that had
/// opened). Inside a stream there is no connection to drop: the next call makes one.
///
/// `Cancelled` is the client's word for a call whose connection ended before it was
/// answered. On a connection that never answered, that may be a client certificate refused
/// after a TLS 1.3 handshake (its alert is not always in the error), which waits for a
/// renewed identity like any refusal; on one that had answered, it is the connection lost
/// (the Auth server restarting cuts every call on it at once), and is tried again.
fn teleport_error(e: TeleportError, identity_reread: bool, answered: bool) -> ForwardError {
    use tapelog_teleport::ErrorKind as K;
    let kind = e.kind();
    if kind == K::NotFound {
        return ForwardError::NotFound(e.to_string());
    }
    if kind == K::NotImplemented {
        return ForwardError::NotImplemented(e.to_string());
    }
    // Refused credentials are worth waiting for only when the identity is re-read.
    ForwardError::Source {
        transient: e.is_retryable()
            || (e.is_refused_identity() && identity_reread)
            || (answered && e.is_cancelled()),
        message: e.to_string(),
    }
}

impl From<ClientError> for ForwardError {
    fn from(e: ClientError) -> Self {
        let transient = e.is_unreachable() || e.status().is_some_and(|s| s >= 500 || s == 429);
        let not_found = e.status() == Some(404);
        if not_found {
            return ForwardError::NotFound(e.to_string());
        }
        ForwardError::Source {
            message: e.to_string(),
            transient,
        }
    }
}

impl From<tapelog_audit::AuditError> for ForwardError {
    fn from(e: tapelog_audit::AuditError) -> Self {
        ForwardError::Source {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

impl From<PlaybackError> for ForwardError {
    fn from(e: PlaybackError) -> Self {
        match e {
            PlaybackError::NotFound { .. } => ForwardError::NotFound(e.to_string()),
            PlaybackError::Read { .. } | PlaybackError::Io { .. } => ForwardError::Source {
                message: e.to_string(),
                transient: true,
            },
            other => ForwardError::Source {
                message: other.to_string(),
                transient: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `Cancelled` on a connection that had answered is the connection lost (tried again);
    /// on one that never answered it is a possible refused identity, waited for only when
    /// the identity is re-read.
    #[test]
    fn cancelled_calls_are_retried_once_the_connection_has_answered() {
        use tonic::Code;
        let err = |code: Code| TeleportError::Rpc {
            kind: tapelog_teleport::ErrorKind::from_code(code),
            code,
            message: "operation was canceled".into(),
            addr: "127.0.0.1:3025".into(),
            rpc: "ExportUnstructuredEvents",
        };
        let transient =
            |code, reread, answered| teleport_error(err(code), reread, answered).is_transient();
        assert!(transient(Code::Cancelled, false, true));
        assert!(!transient(Code::Cancelled, false, false));
        assert!(transient(Code::Cancelled, true, false));
        // Other refusals stay as they were, answered or not.
        assert!(!transient(Code::PermissionDenied, false, true));
        assert!(!transient(Code::InvalidArgument, true, true));
        assert!(transient(Code::Unavailable, false, false));
    }

    #[test]
    fn identity_files_split() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n";
        let (id, ca) = split_identity(pem).unwrap();
        let id = String::from_utf8(id).unwrap();
        assert!(id.contains("AAA") && id.contains("BBB") && !id.contains("CCC"));
        assert!(String::from_utf8(ca).unwrap().contains("CCC"));
        assert!(
            split_identity("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(is_tapelog_server("https://h:1") && !is_tapelog_server("h:3025"));
    }
}
