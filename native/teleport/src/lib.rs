//! Client of a Teleport Auth server's audit-log gRPC API: the calls `teleport-event-handler`
//! makes (bulk export, page polling, session streams, locks), over mutual TLS with a Teleport
//! identity, plus the typed `GetEvents`/`StreamSessionEvents` calls whose `events.OneOf`
//! items become [`tapelog_core::AuditEvent`]s, and [`recording`] writes those back into a
//! ProtoStream recording. Feature `testkit` adds [`double`], a test
//! double of the server.
//!
//! Depends on tapelog-core (events), tonic/prost (gRPC, code generated from `proto/` at
//! build time with protox) and rustls (aws-lc-rs). See docs/teleport.md.

pub mod codec;
pub mod connect;
pub mod credentials;
#[cfg(feature = "testkit")]
pub mod double;
pub mod error;
pub mod recording;
pub mod structjson;

/// Messages, clients and servers generated from `proto/`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    /// `teleport.auditlog.v1`.
    pub mod auditlog {
        tonic::include_proto!("teleport.auditlog.v1");
    }
    /// `proto` (the AuthService subset).
    pub mod proto {
        tonic::include_proto!("proto");
    }
    /// `types` (locks).
    pub mod types {
        tonic::include_proto!("types");
    }
    /// `events` (the opaque `OneOf` stand-in).
    pub mod events {
        tonic::include_proto!("events");
    }
}

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use prost::Message as _;
use tapelog_core::{AuditEvent, Timestamp};
use tonic::codegen::http::uri::PathAndQuery;

pub use connect::{API_VERSION, ConnectOptions, DEFAULT_ADDR, SERVER_NAME};
pub use credentials::{Credentials, CredentialsSource, KeyFormat};
pub use error::{CredentialsError, ErrorKind, TeleportError};

use codec::{EventsWire, RawCodec};
use connect::AuthChannel;
use pb::auditlog::audit_log_service_client::AuditLogServiceClient;
use pb::proto::auth_service_client::AuthServiceClient;

/// Path of the typed page query.
pub const GET_EVENTS_PATH: &str = "/proto.AuthService/GetEvents";
/// Path of the typed session stream.
pub const STREAM_SESSION_EVENTS_PATH: &str = "/proto.AuthService/StreamSessionEvents";

/// A stream of results from a server-streaming call.
pub type ResultStream<T> = BoxStream<'static, Result<T, TeleportError>>;

/// What `Ping` says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingInfo {
    /// The cluster's name.
    pub cluster_name: String,
    /// Teleport version of the Auth server.
    pub server_version: String,
    /// The Proxy's public address, if set.
    pub proxy_public_addr: String,
    /// Our address as the server sees it.
    pub remote_addr: String,
}

/// A page query (`GetUnstructuredEvents`, `GetEvents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Oldest event time.
    pub start: Timestamp,
    /// Newest event time.
    pub end: Timestamp,
    /// Only these types (empty = all).
    pub event_types: Vec<String>,
    /// Page size (0 = the server's default, 500; at most 10,000).
    pub limit: i32,
    /// The previous page's `last_key` (empty for the first page).
    pub start_key: String,
    /// Oldest first (the event handler's order) or newest first.
    pub ascending: bool,
}

impl EventQuery {
    /// All events in `[start, end]`, oldest first, pages of `limit`.
    pub fn new(start: Timestamp, end: Timestamp, limit: i32) -> EventQuery {
        EventQuery {
            start,
            end,
            event_types: Vec::new(),
            limit,
            start_key: String::new(),
            ascending: true,
        }
    }
}

/// An event of the unstructured API: its JSON with the server's type, id, time and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnstructuredEvent {
    /// Event type (`event`).
    pub event_type: String,
    /// The event's id (or the server's hash of it).
    pub id: String,
    /// Event time.
    pub time: Timestamp,
    /// Index within the session.
    pub index: i64,
    /// The event as one line of JSON.
    pub json: String,
}

/// An exported event and the cursor that resumes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedEvent {
    /// The event.
    pub event: UnstructuredEvent,
    /// Resume point inside the chunk.
    pub cursor: String,
}

/// A page of `GetUnstructuredEvents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnstructuredPage {
    /// The events.
    pub items: Vec<UnstructuredEvent>,
    /// Key of the next page; empty when there is none.
    pub last_key: String,
}

/// A connection to a Teleport Auth server. Cheap to clone; calls may run concurrently.
#[derive(Debug, Clone)]
pub struct AuthClient {
    addr: String,
    channel: AuthChannel,
}

const NAMESPACE: &str = "default";

impl AuthClient {
    /// Connects to `addr` (`host:port` of the Auth Service) with default timeouts.
    pub async fn connect(addr: &str, creds: &Credentials) -> Result<AuthClient, TeleportError> {
        AuthClient::connect_with(addr, creds, &ConnectOptions::default()).await
    }

    /// Connects with explicit timeouts.
    pub async fn connect_with(
        addr: &str,
        creds: &Credentials,
        opts: &ConnectOptions,
    ) -> Result<AuthClient, TeleportError> {
        let channel = connect::connect(addr, creds, opts).await?;
        Ok(AuthClient {
            addr: addr.to_string(),
            channel,
        })
    }

    /// The Auth address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn err(&self, rpc: &'static str) -> impl Fn(tonic::Status) -> TeleportError + use<> {
        let addr = self.addr.clone();
        move |s| TeleportError::from_status(&addr, rpc, &s)
    }

    fn auditlog(&self) -> AuditLogServiceClient<AuthChannel> {
        AuditLogServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// `Ping`: the cluster's name and version.
    pub async fn ping(&self) -> Result<PingInfo, TeleportError> {
        let r = AuthServiceClient::new(self.channel.clone())
            .ping(pb::proto::PingRequest {})
            .await
            .map_err(self.err("Ping"))?
            .into_inner();
        Ok(PingInfo {
            cluster_name: r.cluster_name,
            server_version: r.server_version,
            proxy_public_addr: r.proxy_public_addr,
            remote_addr: r.remote_addr,
        })
    }

    /// `GetEventExportChunks`: the chunk names of one UTC date (only the date of `date` counts).
    pub async fn get_event_export_chunks(
        &self,
        date: Timestamp,
    ) -> Result<ResultStream<String>, TeleportError> {
        const RPC: &str = "GetEventExportChunks";
        let stream = self
            .auditlog()
            .get_event_export_chunks(pb::auditlog::GetEventExportChunksRequest {
                date: Some(to_pb(date)),
            })
            .await
            .map_err(self.err(RPC))?
            .into_inner();
        let err = self.err(RPC);
        Ok(stream
            .map(move |r| r.map(|c| c.chunk).map_err(&err))
            .boxed())
    }

    /// `ExportUnstructuredEvents`: the events of a chunk, from `cursor` (empty = its start).
    pub async fn export_unstructured_events(
        &self,
        date: Timestamp,
        chunk: &str,
        cursor: &str,
    ) -> Result<ResultStream<ExportedEvent>, TeleportError> {
        const RPC: &str = "ExportUnstructuredEvents";
        let stream = self
            .auditlog()
            .export_unstructured_events(pb::auditlog::ExportUnstructuredEventsRequest {
                date: Some(to_pb(date)),
                chunk: chunk.to_string(),
                cursor: cursor.to_string(),
            })
            .await
            .map_err(self.err(RPC))?
            .into_inner();
        let err = self.err(RPC);
        let addr = self.addr.clone();
        Ok(stream
            .enumerate()
            .map(move |(i, r)| {
                let e = r.map_err(&err)?;
                let event = e.event.ok_or_else(|| bad_item(&addr, RPC, i, "no event"))?;
                Ok(ExportedEvent {
                    event: from_pb_event(event),
                    cursor: e.cursor,
                })
            })
            .boxed())
    }

    /// `GetUnstructuredEvents`: one page of events as JSON.
    pub async fn get_unstructured_events(
        &self,
        q: &EventQuery,
    ) -> Result<UnstructuredPage, TeleportError> {
        use pb::auditlog::Order;
        let r = self
            .auditlog()
            .get_unstructured_events(pb::auditlog::GetUnstructuredEventsRequest {
                namespace: NAMESPACE.to_string(),
                start_date: Some(to_pb(q.start)),
                end_date: Some(to_pb(q.end)),
                event_types: q.event_types.clone(),
                limit: q.limit,
                start_key: q.start_key.clone(),
                order: if q.ascending {
                    Order::Ascending
                } else {
                    Order::DescendingUnspecified
                } as i32,
            })
            .await
            .map_err(self.err("GetUnstructuredEvents"))?
            .into_inner();
        Ok(UnstructuredPage {
            items: r.items.into_iter().map(from_pb_event).collect(),
            last_key: r.last_key,
        })
    }

    /// `StreamUnstructuredSessionEvents`: a recording's events as JSON, from `start_index`
    /// (inclusive) on.
    pub async fn stream_unstructured_session_events(
        &self,
        session_id: &str,
        start_index: i32,
    ) -> Result<ResultStream<UnstructuredEvent>, TeleportError> {
        const RPC: &str = "StreamUnstructuredSessionEvents";
        let stream = self
            .auditlog()
            .stream_unstructured_session_events(
                pb::auditlog::StreamUnstructuredSessionEventsRequest {
                    session_id: session_id.to_string(),
                    start_index,
                },
            )
            .await
            .map_err(self.err(RPC))?
            .into_inner();
        let err = self.err(RPC);
        Ok(stream
            .map(move |r| r.map(from_pb_event).map_err(&err))
            .boxed())
    }

    fn raw(&self) -> tonic::client::Grpc<AuthChannel> {
        tonic::client::Grpc::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// `GetEvents`: one page of typed events, and the next page's key (empty at the end).
    pub async fn get_events(
        &self,
        q: &EventQuery,
    ) -> Result<(Vec<AuditEvent>, String), TeleportError> {
        const RPC: &str = "GetEvents";
        use pb::proto::Order;
        let req = pb::proto::GetEventsRequest {
            namespace: NAMESPACE.to_string(),
            start_date: Some(to_pb(q.start)),
            end_date: Some(to_pb(q.end)),
            event_types: q.event_types.clone(),
            limit: q.limit,
            start_key: q.start_key.clone(),
            order: if q.ascending {
                Order::Ascending
            } else {
                Order::Descending
            } as i32,
        };
        let mut grpc = self.raw();
        grpc.ready().await.map_err(|e| self.transport_err(RPC, e))?;
        let reply = grpc
            .unary(
                tonic::Request::new(Bytes::from(req.encode_to_vec())),
                PathAndQuery::from_static(GET_EVENTS_PATH),
                RawCodec,
            )
            .await
            .map_err(self.err(RPC))?
            .into_inner();
        let wire = EventsWire::decode(reply)
            .map_err(|e| bad_item(&self.addr, RPC, 0, &format!("the reply: {e}")))?;
        let mut events = Vec::with_capacity(wire.items.len());
        for (i, item) in wire.items.iter().enumerate() {
            events.push(
                AuditEvent::decode_oneof(item)
                    .map_err(|e| bad_item(&self.addr, RPC, i, &e.to_string()))?,
            );
        }
        Ok((events, wire.last_key))
    }

    /// `StreamSessionEvents`: a recording's typed events (with `print` data), from
    /// `start_index` on.
    pub async fn stream_session_events(
        &self,
        session_id: &str,
        start_index: i32,
    ) -> Result<ResultStream<AuditEvent>, TeleportError> {
        const RPC: &str = "StreamSessionEvents";
        let req = pb::proto::StreamSessionEventsRequest {
            session_id: session_id.to_string(),
            start_index,
        };
        let mut grpc = self.raw();
        grpc.ready().await.map_err(|e| self.transport_err(RPC, e))?;
        let stream = grpc
            .server_streaming(
                tonic::Request::new(Bytes::from(req.encode_to_vec())),
                PathAndQuery::from_static(STREAM_SESSION_EVENTS_PATH),
                RawCodec,
            )
            .await
            .map_err(self.err(RPC))?
            .into_inner();
        let err = self.err(RPC);
        let addr = self.addr.clone();
        Ok(stream
            .enumerate()
            .map(move |(i, r)| {
                let bytes = r.map_err(&err)?;
                AuditEvent::decode_oneof(&bytes)
                    .map_err(|e| bad_item(&addr, RPC, i, &e.to_string()))
            })
            .boxed())
    }

    fn transport_err(&self, rpc: &'static str, e: tonic::transport::Error) -> TeleportError {
        match connect::describe_chain(&e) {
            Some(what) => TeleportError::Connect {
                addr: self.addr.clone(),
                what,
            },
            None => TeleportError::Rpc {
                kind: ErrorKind::Unavailable,
                code: tonic::Code::Unavailable,
                message: e.to_string(),
                addr: self.addr.clone(),
                rpc,
            },
        }
    }

    /// `UpsertLock`: locks `login` of `user` (the event handler's auto-lock, named
    /// `event-handler-auto-lock-<user>-<login>`), until `expires` or for ever.
    pub async fn upsert_lock(
        &self,
        user: &str,
        login: &str,
        message: &str,
        expires: Option<Timestamp>,
    ) -> Result<(), TeleportError> {
        AuthServiceClient::new(self.channel.clone())
            .upsert_lock(auto_lock(user, login, message, expires))
            .await
            .map_err(self.err("UpsertLock"))?;
        Ok(())
    }
}

/// Largest reply accepted (a page of 10,000 big events).
const MAX_MESSAGE: usize = 256 << 20;

/// The lock the event handler writes after too many failed logins.
pub fn auto_lock(
    user: &str,
    login: &str,
    message: &str,
    expires: Option<Timestamp>,
) -> pb::types::LockV2 {
    pb::types::LockV2 {
        kind: "lock".into(),
        sub_kind: String::new(),
        version: "v2".into(),
        metadata: Some(pb::types::Metadata {
            name: format!("event-handler-auto-lock-{user}-{login}"),
            namespace: NAMESPACE.into(),
            ..Default::default()
        }),
        spec: Some(pb::types::LockSpecV2 {
            target: Some(pb::types::LockTarget {
                user: user.into(),
                login: login.into(),
                ..Default::default()
            }),
            message: message.into(),
            expires: expires.map(to_pb),
            ..Default::default()
        }),
    }
}

fn bad_item(addr: &str, rpc: &'static str, position: usize, what: &str) -> TeleportError {
    TeleportError::BadItem {
        addr: addr.to_string(),
        rpc,
        position,
        what: what.to_string(),
    }
}

/// A tapelog timestamp as protobuf's.
pub fn to_pb(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

/// A protobuf timestamp as tapelog's.
pub fn from_pb(t: &prost_types::Timestamp) -> Timestamp {
    Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

fn from_pb_event(e: pb::auditlog::EventUnstructured) -> UnstructuredEvent {
    let json = e.unstructured.as_ref().map_or_else(
        || "{}".to_string(),
        |s| serde_json::Value::Object(structjson::struct_to_json(s)).to_string(),
    );
    UnstructuredEvent {
        event_type: e.r#type,
        id: e.id,
        time: e.time.as_ref().map_or(Timestamp::ZERO, from_pb),
        index: e.index,
        json,
    }
}
