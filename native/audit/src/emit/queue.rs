//! The async emitter: upstream's `AsyncEmitter`, a bounded buffer and a task in front of an
//! emitter that may be slow, so that the caller never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tapelog_core::AuditEvent;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use super::{EmitError, Emitter, lock};
use crate::metrics::Metrics;

/// Upstream's default buffer (`defaults.AsyncBufferSize`).
pub const DEFAULT_BUFFER: usize = 1024;

/// What an [`AsyncEmitter`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncEmitterStats {
    /// Events handed to the inner emitter, which accepted them.
    pub emitted: u64,
    /// Events dropped because the buffer was full.
    pub dropped: u64,
    /// Events the inner emitter refused or failed on.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    emitted: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Emits through a bounded buffer: [`emit`](Emitter::emit) never blocks. When the buffer is
/// full the event is dropped and counted (here and in its [`Metrics`]'
/// `audit_dropped_events` and `audit_failed_emit_events`) and `emit` still returns `Ok`, as upstream: a caller
/// recording a session must not stall because the audit log is slow. Failures of the inner
/// emitter are counted the same way. [`close`](AsyncEmitter::close) delivers what is buffered.
pub struct AsyncEmitter {
    tx: std::sync::Mutex<Option<mpsc::Sender<AuditEvent>>>,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl AsyncEmitter {
    /// An emitter in front of `inner` holding at most `buffer` events (at least 1). Spawns
    /// its task on the current tokio runtime.
    pub fn new<E: Emitter>(inner: E, buffer: usize) -> AsyncEmitter {
        AsyncEmitter::with_metrics(inner, buffer, Metrics::shared())
    }

    /// The same, counting in `metrics` (a server's) instead of a set of its own.
    pub fn with_metrics<E: Emitter>(
        inner: E,
        buffer: usize,
        metrics: Arc<Metrics>,
    ) -> AsyncEmitter {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(buffer.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match inner.emit(event).await {
                    Ok(()) => c.emitted.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        m.audit_failed_emit_events.inc();
                        c.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        AsyncEmitter {
            tx: std::sync::Mutex::new(Some(tx)),
            counters,
            metrics,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> AsyncEmitterStats {
        AsyncEmitterStats {
            emitted: self.counters.emitted.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops taking events and waits until the buffered ones reached the inner emitter.
    pub async fn close(&self) -> AsyncEmitterStats {
        drop(lock(&self.tx).take());
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.stats()
    }
}

impl Emitter for AsyncEmitter {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else {
            return Err(EmitError::Closed("the async emitter is closed".into()));
        };
        match tx.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.audit_failed_emit_events.inc();
                self.metrics.audit_dropped_events.inc();
                Ok(())
            }
            Err(TrySendError::Closed(_)) => {
                Err(EmitError::Closed("the async emitter's task stopped".into()))
            }
        }
    }
}

impl Drop for AsyncEmitter {
    fn drop(&mut self) {
        // Without `close` the buffered events still drain: the task ends when the sender goes.
        drop(lock(&self.tx).take());
    }
}
