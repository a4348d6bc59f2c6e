//! `tapelog serve --teleport ADDR`: a read-only gateway to a Teleport cluster's Auth Service.
//! The read routes answer from the cluster instead of the local audit log and store
//! (`routes` calls in here when [`App`](super::App) has a cluster): searches are pages of
//! `GetUnstructuredEvents`, a session's events and its recording come from the typed
//! `StreamSessionEvents` (print data intact), the recording rebuilt by tapelog's ProtoStream
//! writer as it streams. Every write route (and the local uploads) answers `read_only`.
//! Callers authenticate to the gateway as to any `tapelog serve`.

use axum::body::Body;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
use tapelog_api::{ErrorCode, EventsPage};
use tapelog_audit::{Order, SearchQuery, SessionQuery};
use tapelog_core::EventFields;
use tapelog_core::audit::SESSION_RECORDING_EVENTS;
use tapelog_core::codec::WriterConfig;
use tapelog_teleport::{
    AuthClient, Credentials, CredentialsSource, ErrorKind, EventQuery, ResultStream, TeleportError,
};

use super::App;
use super::Peer;
use super::body::json_response;
use super::error::ApiError;

/// The cluster a gateway reads: `tapelog serve --teleport ADDR` and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeleportGateway {
    /// `HOST:PORT` of the Auth Service.
    pub addr: String,
    /// The identity file, or the certificate, key and CA files.
    pub credentials: CredentialsSource,
}

/// The connection to the cluster: made on first use, made again (credentials read again)
/// after a call failed for want of a connection.
pub(crate) struct Cluster {
    gateway: TeleportGateway,
    client: tokio::sync::Mutex<Option<AuthClient>>,
}

impl Cluster {
    /// A cluster not connected yet; the credentials are read once here, so that a bad file
    /// stops the server from starting.
    pub(crate) fn new(gateway: TeleportGateway) -> Result<Cluster, TeleportError> {
        Credentials::load(&gateway.credentials)?;
        Ok(Cluster {
            gateway,
            client: tokio::sync::Mutex::new(None),
        })
    }

    /// The Auth address.
    pub(crate) fn addr(&self) -> &str {
        &self.gateway.addr
    }

    async fn client(&self) -> Result<AuthClient, TeleportError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let creds = Credentials::load(&self.gateway.credentials)?;
        let c = AuthClient::connect(&self.gateway.addr, &creds).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// `r`, after dropping the connection when the error says it is broken or refused.
    async fn checked<T>(&self, r: Result<T, TeleportError>) -> Result<T, TeleportError> {
        if let Err(e) = &r
            && matches!(
                e.kind(),
                ErrorKind::Connect
                    | ErrorKind::Unavailable
                    | ErrorKind::AccessDenied
                    | ErrorKind::Credentials
            )
        {
            *self.client.lock().await = None;
        }
        r
    }

    /// `Ping`: the cluster's name and version.
    pub(crate) async fn ping(&self) -> Result<tapelog_teleport::PingInfo, TeleportError> {
        let r = match self.client().await {
            Ok(c) => c.ping().await,
            Err(e) => Err(e),
        };
        self.checked(r).await
    }

    async fn page(
        &self,
        q: &EventQuery,
    ) -> Result<tapelog_teleport::UnstructuredPage, TeleportError> {
        let r = match self.client().await {
            Ok(c) => c.get_unstructured_events(q).await,
            Err(e) => Err(e),
        };
        self.checked(r).await
    }

    /// The session's typed events from `from` on; an error the cluster sends as the first
    /// item (a missing recording) is returned here, before any answer has started.
    async fn session(
        &self,
        sid: &str,
        from: i32,
    ) -> Result<ResultStream<tapelog_core::AuditEvent>, TeleportError> {
        let r = match self.client().await {
            Ok(c) => c.stream_session_events(sid, from).await,
            Err(e) => Err(e),
        };
        let mut events = self.checked(r).await?;
        match events.next().await {
            None => Ok(futures::stream::empty().boxed()),
            Some(Err(e)) => self.checked(Err(e)).await,
            Some(Ok(first)) => Ok(futures::stream::iter([Ok(first)]).chain(events).boxed()),
        }
    }
}

fn page_query(
    from: tapelog_core::Timestamp,
    to: tapelog_core::Timestamp,
    event_types: Vec<String>,
    limit: usize,
    order: Order,
    start_key: &str,
) -> Result<EventQuery, ApiError> {
    let limit = i32::try_from(limit)
        .map_err(|_| ApiError::bad_request(format!("limit={limit}: at most 10000")))?;
    Ok(EventQuery {
        start: from,
        end: to,
        event_types,
        limit,
        start_key: start_key.to_string(),
        ascending: order == Order::Ascending,
    })
}

/// One page of the cluster as `GET /v1/events` answers it, with the events `keep` accepts.
async fn page_body(
    cluster: &Cluster,
    q: &EventQuery,
    keep: impl Fn(&EventFields) -> bool,
) -> Result<Response, ApiError> {
    let page = cluster.page(q).await?;
    let mut events = Vec::with_capacity(page.items.len());
    for (position, item) in page.items.into_iter().enumerate() {
        let fields = EventFields::parse(&item.json).map_err(|e| {
            ApiError::from(TeleportError::BadItem {
                addr: cluster.addr().to_string(),
                rpc: "GetUnstructuredEvents",
                position,
                what: format!("its JSON is not an event: {e}"),
            })
        })?;
        if keep(&fields) {
            events.push(Value::Object(fields.0));
        }
    }
    Ok(json_response(&EventsPage {
        events,
        next_key: page.last_key,
    }))
}

/// `GET /v1/events` from the cluster (its page keys).
pub(crate) async fn search(cluster: &Cluster, q: SearchQuery) -> Result<Response, ApiError> {
    let eq = page_query(q.from, q.to, q.event_types, q.limit, q.order, &q.start_key)?;
    page_body(cluster, &eq, |_| true).await
}

/// `GET /v1/sessions` from the cluster: its session end events; `session_id` and `where`
/// are applied here to each page (which may come out shorter; its key still leads on).
pub(crate) async fn sessions(cluster: &Cluster, q: SessionQuery) -> Result<Response, ApiError> {
    let types = SESSION_RECORDING_EVENTS.map(String::from).to_vec();
    let eq = page_query(q.from, q.to, types, q.limit, q.order, &q.start_key)?;
    page_body(cluster, &eq, |f| {
        (q.session_id.is_empty() || f.get_session_id() == q.session_id)
            && q.condition.as_ref().is_none_or(|c| c.matches(f))
    })
    .await
}

/// `GET /v1/sessions/{sid}/events` from the cluster: Teleport's JSON lines, streamed.
pub(crate) async fn session_events(
    cluster: &Cluster,
    sid: &str,
    from_index: i64,
) -> Result<Response, ApiError> {
    let from = i32::try_from(from_index)
        .map_err(|_| ApiError::bad_request(format!("from_index={from_index} is too large")))?;
    let events = cluster.session(sid, from).await?;
    Ok(super::body::ndjson_events(events))
}

/// `GET /v1/sessions/{sid}/recording` from the cluster: the session's events written into a
/// ProtoStream V1 recording as they arrive. A `Range` header is ignored (the whole recording,
/// 200, as RFC 9110 allows; no `Accept-Ranges`): the rebuilt recording's size is not known
/// before its end. The web player then skips to the offset it wanted.
pub(crate) async fn recording(cluster: &Cluster, sid: &str) -> Result<Response, ApiError> {
    let events = cluster.session(sid, 0).await?;
    let bytes = tapelog_teleport::recording::recording_bytes(
        cluster.addr(),
        events,
        WriterConfig::default(),
    )
    .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    let mut r = Body::from_stream(bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

/// `GET /healthz` of a gateway: `ok`, and the cluster on a second line, when its `Ping`
/// answers; else 502 with what failed.
pub(crate) async fn healthz(cluster: &Cluster) -> Response {
    match cluster.ping().await {
        Ok(p) => format!(
            "ok\nTeleport cluster {} (version {}) at {}\n",
            p.cluster_name,
            p.server_version,
            cluster.addr()
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Whether a request is one the gateway refuses: every write, the streams and the uploads.
fn refused(method: &Method, path: &str) -> bool {
    let p = path.trim_end_matches('/');
    let under = |root: &str| p == root || p.starts_with(&format!("{root}/"));
    (p == "/v1/events" && method != Method::GET && method != Method::HEAD)
        || under("/v1/streams")
        || under("/v1/uploads")
}

/// What a gateway answers instead of serving `req`: after authenticating the caller,
/// `read_only` (405, `Allow: GET`) to the routes that write or that have nothing to read in a
/// cluster; `None` for every other request, and on a server that is not a gateway.
pub(crate) fn refusal(app: &App, req: &axum::extract::Request) -> Option<Response> {
    let cluster = app.cluster.as_ref()?;
    if !refused(req.method(), req.uri().path()) {
        return None;
    }
    let peer = req.extensions().get::<Peer>().and_then(|p| p.0.clone());
    if let Err(e) = app.tokens.authenticate(req.headers(), peer.as_deref()) {
        return Some(e.into_response());
    }
    let mut r = ApiError::new(
        ErrorCode::ReadOnly,
        format!(
            "{} {}: this server is a read-only gateway to the Teleport cluster at {}: it records, emits, streams and completes nothing (use a tapelog serve without --teleport, or the cluster itself)",
            req.method(),
            req.uri().path(),
            cluster.addr()
        ),
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::refused;
    use axum::http::Method;

    #[test]
    fn writes_streams_and_uploads_are_refused_reads_are_not() {
        for (m, p) in [
            (Method::POST, "/v1/events"),
            (Method::POST, "/v1/streams"),
            (
                Method::GET,
                "/v1/streams/0b6f1c1e-2c6a-4c3e-9d43-2d6a1f0e6a11",
            ),
            (Method::POST, "/v1/streams/x/records"),
            (Method::GET, "/v1/uploads"),
            (Method::POST, "/v1/uploads/complete"),
        ] {
            assert!(refused(&m, p), "{m} {p}");
        }
        for (m, p) in [
            (Method::GET, "/v1/events"),
            (Method::GET, "/v1/sessions"),
            (Method::GET, "/v1/sessions/x/events"),
            (Method::GET, "/v1/sessions/x/recording"),
            (Method::GET, "/healthz"),
            (Method::GET, "/v1/eventsx"),
        ] {
            assert!(!refused(&m, p), "{m} {p}");
        }
    }
}
