//! # tapelog-audit: the audit log and where events go
//!
//! The file audit log: upstream's `FileLog` (`lib/events/filelog.go`) with a search that
//! resumes in O(page), and upstream's `SearchEventsLimiter`.
//!
//! [`FileLog`] appends events as JSON lines to one file per UTC day under
//! `<data dir>/log/<server id>/`, safely from several processes at once (advisory `flock`,
//! one `write` per line), keeps `<data dir>/log/events.log` pointing at the newest file, and
//! searches every server directory of the log root together. Each day file gets a sidecar
//! index (`.index/<file>.idx`), built lazily by searches, that keeps its events in sort order
//! so that a page key is resolved by binary search. The rules (file names, line preparation,
//! order, keys, pages, index encoding) are the core's (`tapelog_core::audit`); this module
//! does the file work. See `docs/audit-log.md`.
//!
//! [`FileLog::read_feed`] reads the same files in arrival order instead (byte offsets per day
//! file, the core's `audit::feed`), so that an exporter misses no event appended late with
//! an old time.
//!
//! [`AuditLog`] is the search interface that [`FileLog`] implements and [`SearchLimiter`]
//! wraps. [`AuditLogger`] (`logger.rs`) is a whole audit log in one value (emit, search,
//! close), implemented by [`FileLog`], [`DiscardAuditLog`] and [`WriterLog`].
//!
//! Besides the file log (this module's root), [`emit`] holds the emitters (upstream's
//! `Emitter`: checking, async queue, sinks) and [`metrics`] the counters and gauge of one
//! server or log (a `Metrics` value, Prometheus text).
//!
//! Depends on `tapelog-core`, `rustix` (file locks, the host name) and `prometheus-client`.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod clock;
pub mod emit;
pub mod metrics;

mod feed;
mod feed_line;
mod filelog;
mod index;
mod limiter;
mod logger;
mod multi;
pub mod pg;
mod search;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tapelog_core::audit::QueryError;
use tapelog_core::audit::feed::FeedKeyError;
use tapelog_core::audit::files::RotationError;
use tapelog_core::audit::key::KeyError;
use tapelog_core::audit::limiter::LimiterError;
use tapelog_core::audit::lines::LineError;
use tapelog_core::{AuditEvent, EventError, EventFields, Timestamp};
use thiserror::Error;

pub use feed::{FeedEvent, FeedEvents, FeedPage};
pub use filelog::{
    Durability, FileLog, FileLogConfig, FileLogStats, PreparedEvents, default_server_id,
};
pub use limiter::{LimiterClock, SearchLimiter};
pub use logger::{AuditLogger, DiscardAuditLog, WriterLog};
pub use multi::{AuditBackend, AuditUri, MultiLog, OpenOptions};
pub use pg::{PgLog, PgLogConfig};
pub use tapelog_core::audit::Order;
pub use tapelog_core::audit::condition::Condition;
pub use tapelog_core::audit::limiter::LimiterConfig;

/// Why an audit log operation failed.
#[derive(Debug, Error)]
pub enum AuditError {
    /// The event can't be stored (no type, no time, too big even after trimming). Permanent.
    #[error("event refused: {0}")]
    Event(#[from] LineError),
    /// The search can't be served as asked (limit over 10,000).
    #[error("bad search: {0}")]
    Query(#[from] QueryError),
    /// The start key can't be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The feed key can't be read.
    #[error(transparent)]
    FeedKey(#[from] FeedKeyError),
    /// The start key names an event that is no longer there.
    #[error(
        "resume key {key:?} no longer matches an event ({reason}); start the search again without it"
    )]
    KeyNoLongerMatches {
        /// The key (cut to 100 characters).
        key: String,
        /// What was found instead.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is wrong.
    #[error("audit log configuration: {0}")]
    Config(String),
    /// The search limiter refused (transient: try again later).
    #[error("rate limit exceeded")]
    RateLimited,
    /// A stored event could not be turned back into a typed event.
    #[error("{file} at byte {offset}: {source}")]
    Decode {
        /// The file (`server/day file`).
        file: String,
        /// The line's offset.
        offset: u64,
        /// What was wrong.
        source: EventError,
    },
    /// A background task failed (panicked or was cancelled).
    #[error("audit log task failed: {0}")]
    Task(String),
    /// This log can't do that (a [`WriterLog`] can't search). Permanent.
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    /// The database can't be reached now (refused, closed, restarting); try again later.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// The database refused the statement (permissions, a schema it does not know).
    #[error("audit database: {0}")]
    Database(String),
    /// A database page key can't be read.
    #[error(transparent)]
    PgKey(#[from] tapelog_core::audit::pg::PgKeyError),
    /// The writer of a [`WriterLog`] failed.
    #[error("writing the audit log: {0}")]
    Writer(#[source] std::io::Error),
}

impl From<RotationError> for AuditError {
    fn from(e: RotationError) -> Self {
        AuditError::Config(e.to_string())
    }
}

impl From<LimiterError> for AuditError {
    fn from(e: LimiterError) -> Self {
        AuditError::Config(e.to_string())
    }
}

impl AuditError {
    /// Whether repeating the same call will fail again (upstream's `BadParameter`).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            AuditError::Event(_)
                | AuditError::Query(_)
                | AuditError::Key(_)
                | AuditError::FeedKey(_)
                | AuditError::KeyNoLongerMatches { .. }
                | AuditError::Config(_)
                | AuditError::Decode { .. }
                | AuditError::NotSupported(_)
                | AuditError::PgKey(_)
        )
    }

    /// Whether a retry may succeed (I/O, rate limit).
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Io { path, source }
    }
}

/// A search of the audit log (upstream's `SearchEventsRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Earliest event time (inclusive).
    pub from: Timestamp,
    /// Latest event time (inclusive).
    pub to: Timestamp,
    /// Event types to return; empty means all.
    pub event_types: Vec<String>,
    /// Page size; 0 means 500; at most 10,000.
    pub limit: usize,
    /// Result order.
    pub order: Order,
    /// "" for the first page, else the `next_key` of the previous page (or an upstream
    /// checkpoint: an event's `uid` or hash).
    pub start_key: String,
}

impl SearchQuery {
    /// Every event of `[from, to]`, first page of 500, ascending.
    pub fn new(from: Timestamp, to: Timestamp) -> SearchQuery {
        SearchQuery {
            from,
            to,
            event_types: Vec::new(),
            limit: 0,
            order: Order::Ascending,
            start_key: String::new(),
        }
    }
}

/// A search of completed sessions (upstream's `SearchSessionEventsRequest`): events of the
/// types `session.end`, `windows.desktop.session.end` and `db.session.end`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionQuery {
    /// Earliest event time (inclusive).
    pub from: Timestamp,
    /// Latest event time (inclusive).
    pub to: Timestamp,
    /// Page size; 0 means 500; at most 10,000.
    pub limit: usize,
    /// Result order.
    pub order: Order,
    /// As in [`SearchQuery::start_key`].
    pub start_key: String,
    /// Only events whose fields satisfy this.
    pub condition: Option<Condition>,
    /// Only events of this session (`sid`); "" for all.
    pub session_id: String,
}

impl SessionQuery {
    /// Every session end of `[from, to]`, first page of 500, ascending.
    pub fn new(from: Timestamp, to: Timestamp) -> SessionQuery {
        SessionQuery {
            from,
            to,
            limit: 0,
            order: Order::Ascending,
            start_key: String::new(),
            condition: None,
            session_id: String::new(),
        }
    }
}

/// One event found by a search.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The event as upstream's `EventFields`.
    pub fields: EventFields,
    /// The line as stored (Teleport's JSON, no newline).
    pub json: String,
    /// The file it is in (`server/day file`).
    pub file: String,
    /// The line's byte offset in that file.
    pub offset: u64,
}

impl StoredEvent {
    /// The typed event.
    pub fn to_event(&self) -> Result<AuditEvent, AuditError> {
        AuditEvent::from_json(&self.json).map_err(|source| AuditError::Decode {
            file: self.file.clone(),
            offset: self.offset,
            source,
        })
    }
}

/// One page of results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchPage {
    /// The events, in the order asked for.
    pub events: Vec<StoredEvent>,
    /// The key of the next page; "" when there is none.
    pub next_key: String,
}

impl SearchPage {
    /// The events' fields.
    pub fn fields(&self) -> impl Iterator<Item = &EventFields> {
        self.events.iter().map(|e| &e.fields)
    }

    /// The events, typed.
    pub fn to_events(&self) -> Result<Vec<AuditEvent>, AuditError> {
        self.events.iter().map(StoredEvent::to_event).collect()
    }
}

/// The search side of an audit log (upstream's `AuditLogger` search methods).
pub trait AuditLog: Send + Sync + 'static {
    /// One page of events.
    fn search_events(
        &self,
        query: SearchQuery,
    ) -> impl Future<Output = Result<SearchPage, AuditError>> + Send;

    /// One page of completed sessions.
    fn search_session_events(
        &self,
        query: SessionQuery,
    ) -> impl Future<Output = Result<SearchPage, AuditError>> + Send;
}

impl<A: AuditLog> AuditLog for Arc<A> {
    fn search_events(
        &self,
        query: SearchQuery,
    ) -> impl Future<Output = Result<SearchPage, AuditError>> + Send {
        (**self).search_events(query)
    }

    fn search_session_events(
        &self,
        query: SessionQuery,
    ) -> impl Future<Output = Result<SearchPage, AuditError>> + Send {
        (**self).search_session_events(query)
    }
}
