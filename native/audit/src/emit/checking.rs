//! The checking emitter: upstream's `CheckingEmitter`, the core's
//! [`check_and_set_event_fields`] in front of another emitter.

use crate::clock::{Clock as _, SharedClock, SystemClock};
use crate::metrics::Metrics;
use std::sync::Arc;

use tapelog_core::AuditEvent;
use tapelog_core::event::{FieldsError, check_and_set_event_fields};
use tapelog_core::proto::Timestamp;

use super::{EmitError, Emitter};

/// Where a checking emitter gets the time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;
/// Where a checking emitter gets new event ids.
pub type IdSource = Arc<dyn Fn() -> String + Send + Sync>;

/// The wall clock, to the nanosecond ([`SystemClock`]'s).
pub fn system_clock() -> Timestamp {
    SystemClock.timestamp()
}

/// Event times read from `clock`'s wall time.
pub fn wall_clock_of(clock: SharedClock) -> Clock {
    Arc::new(move || clock.timestamp())
}

/// A random (version 4) UUID, as upstream's `uuid.New()`.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Checks every event and fills its missing fields before passing it on: refuses an event
/// with no type, or with no code unless it is `print` or `desktop.recording`
/// ([`EmitError::Invalid`], permanent); sets a new uid (not on those two types), the time
/// (now, rounded to the millisecond) when zero, and the cluster name when empty.
pub struct CheckingEmitter<E> {
    inner: E,
    cluster_name: String,
    clock: Clock,
    ids: IdSource,
    metrics: Arc<Metrics>,
}

impl<E: Emitter> CheckingEmitter<E> {
    /// Checks events for `inner`, filling `cluster_name`, with the wall clock and random ids.
    pub fn new(inner: E, cluster_name: &str) -> CheckingEmitter<E> {
        CheckingEmitter {
            inner,
            cluster_name: cluster_name.to_string(),
            clock: Arc::new(system_clock),
            ids: Arc::new(new_uuid),
            metrics: Metrics::shared(),
        }
    }

    /// The same counting in `metrics` (a server's) instead of a set of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> CheckingEmitter<E> {
        self.metrics = metrics;
        self
    }

    /// The same with another clock (tests, replays).
    pub fn with_clock(mut self, clock: Clock) -> CheckingEmitter<E> {
        self.clock = clock;
        self
    }

    /// The same with another id source.
    pub fn with_ids(mut self, ids: IdSource) -> CheckingEmitter<E> {
        self.ids = ids;
        self
    }

    /// The emitter events go to.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Applies the checks to `event` without emitting it.
    pub fn check(&self, event: &mut AuditEvent) -> Result<(), EmitError> {
        // A new id (random bytes from the system) and the time only when the event lacks them.
        let (needs_id, needs_time) = event
            .metadata()
            .map_or((true, true), |m| (m.id.is_empty(), m.time.is_zero()));
        let uid = if needs_id {
            (self.ids)()
        } else {
            String::new()
        };
        let now = if needs_time {
            (self.clock)()
        } else {
            Timestamp::ZERO
        };
        check_and_set_event_fields(event, now, &uid, &self.cluster_name)
            .map_err(|e: FieldsError| EmitError::invalid(event, e.to_string()))
    }
}

impl<E: Emitter> Emitter for CheckingEmitter<E> {
    /// Counts the event in `audit_emitted_events` when its destination takes it, in
    /// `audit_failed_emit_events` when it is refused or fails.
    async fn emit(&self, mut event: AuditEvent) -> Result<(), EmitError> {
        let r = match self.check(&mut event) {
            Ok(()) => self.inner.emit(event).await,
            Err(e) => Err(e),
        };
        match &r {
            Ok(()) => self.metrics.audit_emitted_events.inc(),
            Err(_) => self.metrics.audit_failed_emit_events.inc(),
        }
        r
    }

    /// Checks every event first (one refused: the batch is refused, nothing is emitted),
    /// then hands the batch on; counts as [`emit`](Emitter::emit) does, per event.
    async fn emit_batch(&self, mut events: Vec<AuditEvent>) -> Result<(), EmitError> {
        let n = events.len() as u64;
        let r = match events.iter_mut().try_for_each(|e| self.check(e)) {
            Ok(()) => self.inner.emit_batch(events).await,
            Err(e) => Err(e),
        };
        match &r {
            Ok(()) => self.metrics.audit_emitted_events.add(n),
            Err(_) => self.metrics.audit_failed_emit_events.add(n),
        };
        r
    }
}
