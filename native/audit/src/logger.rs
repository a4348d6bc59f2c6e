//! [`AuditLogger`]: an audit log as one value, emit, search and close (upstream's
//! `AuditLogger` interface), with its implementations: the file log ([`FileLog`]), one that
//! keeps nothing ([`DiscardAuditLog`], upstream's `DiscardAuditLog`) and one that writes JSON
//! lines to any writer and can't search ([`WriterLog`], upstream's `WriterLog`).

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tapelog_core::AuditEvent;

use super::{AuditError, AuditLog, FileLog, SearchLimiter, SearchPage, SearchQuery, SessionQuery};
use crate::emit::{EmitError, Emitter, JsonLinesEmitter};

/// An audit log: where events are emitted ([`Emitter`]), searched ([`AuditLog`]) and, at the
/// end, closed. Upstream's `AuditLogger`.
pub trait AuditLogger: Emitter + AuditLog {
    /// Releases what the log holds (open files, the writer). What a log does with events
    /// emitted after `close` is its own: see each implementation.
    fn close(&self) -> impl Future<Output = Result<(), AuditError>> + Send;
}

impl<A: AuditLogger> AuditLogger for Arc<A> {
    fn close(&self) -> impl Future<Output = Result<(), AuditError>> + Send {
        (**self).close()
    }
}

impl<L: AuditLogger> AuditLogger for SearchLimiter<L> {
    fn close(&self) -> impl Future<Output = Result<(), AuditError>> + Send {
        self.inner().close()
    }
}

impl AuditLogger for FileLog {
    /// Syncs and lets go of the open day files ([`FileLog::close_files`], on tokio's blocking
    /// pool). Later events open their file again.
    async fn close(&self) -> Result<(), AuditError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.close_files())
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }
}

/// An audit log that keeps nothing (upstream's `DiscardAuditLog`): every event is taken and
/// dropped, every search answers an empty last page, `close` does nothing.
#[derive(Debug, Default)]
pub struct DiscardAuditLog {
    dropped: AtomicU64,
}

impl DiscardAuditLog {
    /// A log that keeps nothing.
    pub fn new() -> DiscardAuditLog {
        DiscardAuditLog::default()
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Emitter for DiscardAuditLog {
    async fn emit(&self, _event: AuditEvent) -> Result<(), EmitError> {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl AuditLog for DiscardAuditLog {
    async fn search_events(&self, _query: SearchQuery) -> Result<SearchPage, AuditError> {
        Ok(SearchPage::default())
    }

    async fn search_session_events(&self, _query: SessionQuery) -> Result<SearchPage, AuditError> {
        Ok(SearchPage::default())
    }
}

impl AuditLogger for DiscardAuditLog {
    async fn close(&self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// An audit log that writes each event as one line of Teleport's JSON to a writer (a file,
/// standard output, a pipe), through a [`JsonLinesEmitter`], and can't read them back
/// (upstream's `WriterLog`): searches fail with [`AuditError::NotSupported`] (permanent), as
/// upstream's answer `NotImplemented`, rather than pretend that nothing matched.
///
/// `close` flushes the writer; events emitted after it are refused with
/// [`EmitError::Closed`]. Writes happen on the calling task: use it with fast writers.
pub struct WriterLog<W: Write + Send> {
    lines: JsonLinesEmitter<W>,
    closed: AtomicBool,
}

impl<W: Write + Send + 'static> WriterLog<W> {
    /// A log writing to `out`.
    pub fn new(out: W) -> WriterLog<W> {
        WriterLog {
            lines: JsonLinesEmitter::new(out),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the writer (e.g. to read what a `Vec<u8>` holds so far).
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        self.lines.with_writer(f)
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.lines.into_inner()
    }

    /// Whether [`close`](AuditLogger::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl<W: Write + Send + 'static> Emitter for WriterLog<W> {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        if self.is_closed() {
            return Err(EmitError::Closed(format!(
                "the writer audit log is closed; {:?} event not written",
                event.event_type()
            )));
        }
        self.lines.emit(event).await
    }
}

impl<W: Write + Send + 'static> AuditLog for WriterLog<W> {
    async fn search_events(&self, _query: SearchQuery) -> Result<SearchPage, AuditError> {
        Err(AuditError::NotSupported(
            "searching events: the writer audit log only writes",
        ))
    }

    async fn search_session_events(&self, _query: SessionQuery) -> Result<SearchPage, AuditError> {
        Err(AuditError::NotSupported(
            "searching sessions: the writer audit log only writes",
        ))
    }
}

impl<W: Write + Send + 'static> AuditLogger for WriterLog<W> {
    /// Flushes the writer and refuses later events.
    async fn close(&self) -> Result<(), AuditError> {
        self.closed.store(true, Ordering::Release);
        self.with_writer(|w| w.flush()).map_err(AuditError::Writer)
    }
}
