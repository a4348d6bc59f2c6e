//! Emitters: where audit events go, as upstream's `lib/events` emitters.
//!
//! [`Emitter`] is what the upload completer, the session writer's callers and the audit log
//! take events through. The emitters here compose:
//!
//! | emitter | upstream | does |
//! |---|---|---|
//! | [`CheckingEmitter`] | `CheckingEmitter` | `checkAndSetEventFields` (core rules): refuses events without type or code, fills uid, time (rounded to ms), cluster name |
//! | [`AsyncEmitter`] | `AsyncEmitter` | a bounded buffer in front of a slow emitter: never blocks the caller, counts every event it drops (`audit_failed_emit_events`) |
//! | [`MultiEmitter`] | `MultiEmitter` | sends each event to several emitters |
//! | [`LoggingEmitter`] | `LoggingEmitter` | one log line per event |
//! | [`JsonLinesEmitter`] | `WriterEmitter` | Teleport's JSON, one line per event, to any writer |
//! | [`DiscardEmitter`] | `DiscardEmitter` | drops everything |
//! | [`CallbackEmitter`] | `CallbackEmitter` | calls a function (fault injection in tests) |
//! | [`MemoryEmitter`] | — | keeps events in memory (tests) |
//!
//! Errors say whether retrying can help ([`EmitError::is_permanent`]).

mod checking;
mod queue;
mod sinks;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tapelog_core::AuditEvent;
use thiserror::Error;

pub use checking::{CheckingEmitter, Clock, IdSource, new_uuid, system_clock, wall_clock_of};
pub use queue::{AsyncEmitter, AsyncEmitterStats, DEFAULT_BUFFER};
pub use sinks::{
    CallbackEmitter, DiscardEmitter, JsonLinesEmitter, LoggingEmitter, MemoryEmitter, MultiEmitter,
};

/// Why an event was not emitted.
#[derive(Debug, Error)]
pub enum EmitError {
    /// The event itself is unacceptable (upstream's `BadParameter`); sending it again will
    /// fail again.
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
    /// The destination can't be reached now (a database down); the same event may succeed
    /// later. Nothing of the call was stored.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// Several emitters of a [`MultiEmitter`] failed; the first error decides whether it is
    /// permanent.
    #[error("{} emitters failed: {}", .0.len(), join_errors(.0))]
    Many(Vec<EmitError>),
}

fn join_errors(errors: &[EmitError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl EmitError {
    /// Whether the event is at fault (do not retry it). An aggregate is permanent when every
    /// error in it is, as upstream's `trace.IsBadParameter` on an aggregate of bad parameters.
    pub fn is_permanent(&self) -> bool {
        match self {
            EmitError::Invalid { .. } => true,
            EmitError::Many(v) => !v.is_empty() && v.iter().all(EmitError::is_permanent),
            _ => false,
        }
    }

    /// Whether the destination is down (every error of an aggregate that is not the event's
    /// fault is [`EmitError::Unavailable`]): a caller answers "try again later".
    pub fn is_unavailable(&self) -> bool {
        match self {
            EmitError::Unavailable(_) => true,
            EmitError::Many(v) => {
                v.iter().any(|e| matches!(e, EmitError::Unavailable(_)))
                    && v.iter()
                        .all(|e| e.is_unavailable() || matches!(e, EmitError::Many(_)))
            }
            _ => false,
        }
    }

    /// Whether the failure came from the destination and a retry may succeed.
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }

    /// An [`EmitError::Invalid`] for `event`.
    pub fn invalid(event: &AuditEvent, reason: impl Into<String>) -> EmitError {
        EmitError::Invalid {
            event_type: event.event_type().to_string(),
            reason: reason.into(),
        }
    }
}

/// A destination for audit events.
pub trait Emitter: Send + Sync + 'static {
    /// Emits one event.
    fn emit(&self, event: AuditEvent) -> impl Future<Output = Result<(), EmitError>> + Send;

    /// Emits several events, in order. By default one [`emit`](Emitter::emit) after the
    /// other, stopping at the first failure; a destination that can store a batch at once
    /// (the database log: one statement) does so.
    fn emit_batch(
        &self,
        events: Vec<AuditEvent>,
    ) -> impl Future<Output = Result<(), EmitError>> + Send {
        async move {
            for e in events {
                self.emit(e).await?;
            }
            Ok(())
        }
    }
}

impl<E: Emitter> Emitter for Arc<E> {
    fn emit(&self, event: AuditEvent) -> impl Future<Output = Result<(), EmitError>> + Send {
        (**self).emit(event)
    }

    fn emit_batch(
        &self,
        events: Vec<AuditEvent>,
    ) -> impl Future<Output = Result<(), EmitError>> + Send {
        (**self).emit_batch(events)
    }
}

/// The future a [`DynEmitter`] returns.
pub type EmitFuture<'a> = Pin<Box<dyn Future<Output = Result<(), EmitError>> + Send + 'a>>;

/// [`Emitter`] in a form that can be a trait object (`Arc<dyn DynEmitter>`), for emitters
/// chosen at run time or held together ([`MultiEmitter`]). Every `Emitter` is one.
pub trait DynEmitter: Send + Sync + 'static {
    /// Emits one event.
    fn emit_boxed(&self, event: AuditEvent) -> EmitFuture<'_>;

    /// Emits several events ([`Emitter::emit_batch`]).
    fn emit_batch_boxed(&self, events: Vec<AuditEvent>) -> EmitFuture<'_>;
}

impl<E: Emitter> DynEmitter for E {
    fn emit_boxed(&self, event: AuditEvent) -> EmitFuture<'_> {
        Box::pin(self.emit(event))
    }

    fn emit_batch_boxed(&self, events: Vec<AuditEvent>) -> EmitFuture<'_> {
        Box::pin(self.emit_batch(events))
    }
}

/// A shared emitter chosen at run time.
pub type BoxEmitter = Arc<dyn DynEmitter>;

impl Emitter for BoxEmitter {
    fn emit(&self, event: AuditEvent) -> impl Future<Output = Result<(), EmitError>> + Send {
        (**self).emit_boxed(event)
    }

    fn emit_batch(
        &self,
        events: Vec<AuditEvent>,
    ) -> impl Future<Output = Result<(), EmitError>> + Send {
        (**self).emit_batch_boxed(events)
    }
}

/// Locks `m`, taking the value over if a panicking holder poisoned it (the data is a writer
/// or a list; neither is left half-updated by our code).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
