//! Emitters: where audit events go. The [`Emitter`] trait is what the upload completer (and
//! the audit log) hand events to; this module has the JSON-lines writer ([`JsonLinesEmitter`])
//! and the in-memory one ([`MemoryEmitter`], for tests). Errors say whether retrying can help
//! ([`EmitError::is_permanent`]).

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use tapelog_core::AuditEvent;
use thiserror::Error;

/// Why an event was not emitted.
#[derive(Debug, Error)]
pub enum EmitError {
    /// The event itself is unacceptable; sending it again will fail again.
    #[error("{event_type:?} event refused: {reason}")]
    Invalid {
        /// The event's type ("" when it has none).
        event_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing failed (a transient condition: the same event may succeed later).
    #[error("writing {event_type} event: {source}")]
    Io {
        /// The event's type.
        event_type: String,
        /// The writer's error.
        #[source]
        source: std::io::Error,
    },
    /// The emitter is shut down or its destination is gone.
    #[error("emitter closed: {0}")]
    Closed(String),
}

impl EmitError {
    /// Whether the event is at fault (do not retry it).
    pub fn is_permanent(&self) -> bool {
        matches!(self, EmitError::Invalid { .. })
    }

    /// Whether the failure came from the destination and a retry may succeed.
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }
}

/// A destination for audit events.
pub trait Emitter: Send + Sync + 'static {
    /// Emits one event.
    fn emit(&self, event: AuditEvent) -> impl Future<Output = Result<(), EmitError>> + Send;
}

impl<E: Emitter> Emitter for Arc<E> {
    fn emit(&self, event: AuditEvent) -> impl Future<Output = Result<(), EmitError>> + Send {
        (**self).emit(event)
    }
}

/// Locks `m`, taking the value over if a panicking holder poisoned it (the data is a writer
/// or a list; neither is left half-updated by our code).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes each event as one line of Teleport's JSON (`AuditEvent::to_json`, as upstream's
/// `utils.FastMarshal`) and flushes after each line. Writes happen on the calling task: use it
/// with fast writers (files, standard output).
pub struct JsonLinesEmitter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLinesEmitter<W> {
    /// An emitter writing to `out`.
    pub fn new(out: W) -> JsonLinesEmitter<W> {
        JsonLinesEmitter {
            out: Mutex::new(out),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the writer (e.g. to read what a `Vec<u8>` holds so far).
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        f(&mut lock(&self.out))
    }

    fn write_event(&self, event: &AuditEvent) -> Result<(), EmitError> {
        let event_type = event.event_type();
        if event_type.is_empty() {
            return Err(EmitError::Invalid {
                event_type: String::new(),
                reason: "the event has no type".into(),
            });
        }
        let mut line = event.to_json();
        line.push('\n');
        let mut out = lock(&self.out);
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| EmitError::Io {
                event_type: event_type.to_string(),
                source,
            })
    }
}

impl<W: Write + Send + 'static> Emitter for JsonLinesEmitter<W> {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.write_event(&event)
    }
}

/// Keeps every event it gets, in order (tests, and callers that collect events).
#[derive(Default)]
pub struct MemoryEmitter {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryEmitter {
    /// An empty emitter.
    pub fn new() -> MemoryEmitter {
        MemoryEmitter::default()
    }

    /// A copy of the events emitted so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        lock(&self.events).clone()
    }

    /// How many events were emitted.
    pub fn len(&self) -> usize {
        lock(&self.events).len()
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        lock(&self.events).is_empty()
    }

    /// Takes the events emitted so far, leaving none.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *lock(&self.events))
    }
}

impl Emitter for MemoryEmitter {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        lock(&self.events).push(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tapelog_core::vectors::sample_session;

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn json_lines_one_event_per_line() {
        let events = sample_session(2);
        let e = JsonLinesEmitter::new(Vec::new());
        for ev in &events {
            e.emit(ev.clone()).await.unwrap();
        }
        let text = String::from_utf8(e.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), events.len());
        for (line, ev) in lines.iter().zip(&events) {
            assert_eq!(*line, ev.to_json());
        }
        assert!(text.ends_with('\n'));
    }

    #[tokio::test]
    async fn json_lines_errors_are_typed() {
        let e = JsonLinesEmitter::new(Broken);
        let err = e.emit(sample_session(0).remove(0)).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.to_string(), "writing session.start event: disk full");

        let e = JsonLinesEmitter::new(Vec::new());
        let no_type: AuditEvent = tapelog_core::event::SessionJoin::default().into();
        let err = e.emit(no_type).await.unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert!(e.into_inner().is_empty());
    }

    #[tokio::test]
    async fn memory_keeps_events_in_order() {
        let m = Arc::new(MemoryEmitter::new());
        let events = sample_session(3);
        for ev in &events {
            m.emit(ev.clone()).await.unwrap();
        }
        assert_eq!(m.events(), events);
        assert_eq!(m.len(), events.len());
        assert_eq!(m.take(), events);
        assert!(m.is_empty());
    }
}
