//! [`DiscardStreamer`] and [`DiscardStream`]: upstream's `DiscardStream` (and the streams of its
//! `DiscardEmitter`, the recorder of sessions that are not recorded): every event is taken and
//! dropped, completing and closing succeed at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tapelog_core::AuditEvent;
use tapelog_core::stream::StreamStatus;
use tokio::sync::watch;

use super::streamer::{AuditStreamer, SessionStream, StreamFailure};
use tapelog_audit::clock::SharedClock;
use tapelog_audit::emit::{EmitError, Emitter, new_uuid};

/// Opens [`DiscardStream`]s, and drops the events emitted on it (upstream's `DiscardEmitter`
/// is both; so is this, a [`StreamEmitter`](super::StreamEmitter)). Counts what it dropped.
#[derive(Debug, Default, Clone)]
pub struct DiscardStreamer {
    dropped: Arc<AtomicU64>,
    /// Stamps the streams' statuses (the system clock unless [`DiscardStreamer::with_clock`]).
    clock: Option<SharedClock>,
}

impl DiscardStreamer {
    /// A streamer that keeps nothing.
    pub fn new() -> DiscardStreamer {
        DiscardStreamer::default()
    }

    /// The same streamer stamping its streams' statuses with `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> DiscardStreamer {
        self.clock = Some(clock);
        self
    }

    /// Events dropped so far, by every stream of this streamer and by `emit`.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn open(&self, upload_id: String) -> Box<dyn SessionStream> {
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(tapelog_audit::clock::system);
        Box::new(DiscardStream::with_counter(
            upload_id,
            self.dropped.clone(),
            clock,
        ))
    }
}

impl AuditStreamer for DiscardStreamer {
    /// A stream on a made-up upload (a new UUID, nothing is stored anywhere).
    fn create<'a>(
        &'a self,
        _session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move { Ok(self.open(new_uuid())) })
    }

    /// A stream that says it holds nothing of `upload_id` (status index -1).
    fn resume<'a>(
        &'a self,
        _session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move { Ok(self.open(upload_id.to_string())) })
    }
}

impl Emitter for DiscardStreamer {
    async fn emit(&self, _event: AuditEvent) -> Result<(), EmitError> {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A stream that takes every event and keeps none. Each record is confirmed at once (the
/// status names the event's index as durable), so a session writer over it holds nothing
/// for replay. [`SessionStream::done`] resolves (`Ok`) when the stream is completed, closed
/// or dropped.
pub struct DiscardStream {
    status: watch::Sender<StreamStatus>,
    dropped: Arc<AtomicU64>,
    clock: SharedClock,
}

impl DiscardStream {
    /// A stream of `upload_id` (any text: nothing is stored).
    pub fn new(upload_id: &str) -> DiscardStream {
        DiscardStream::with_counter(
            upload_id.to_string(),
            Arc::default(),
            tapelog_audit::clock::system(),
        )
    }

    fn with_counter(
        upload_id: String,
        dropped: Arc<AtomicU64>,
        clock: SharedClock,
    ) -> DiscardStream {
        let (status, _) = watch::channel(StreamStatus {
            upload_id,
            last_event_index: -1,
            last_upload_time_ms: clock.unix_ms(),
        });
        DiscardStream {
            status,
            dropped,
            clock,
        }
    }

    /// Events this stream (and the others of its streamer) dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl SessionStream for DiscardStream {
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>> {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        let index = event.index();
        self.status.send_modify(|s| {
            s.last_event_index = s.last_event_index.max(index);
            s.last_upload_time_ms = self.clock.unix_ms();
        });
        Box::pin(async { Ok(()) })
    }

    fn statuses(&self) -> watch::Receiver<StreamStatus> {
        // The current value counts as received, as for a recording stream.
        let mut rx = self.status.subscribe();
        rx.mark_changed();
        rx
    }

    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        Box::pin(async { Ok(()) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        Box::pin(async { Ok(()) })
    }
}
