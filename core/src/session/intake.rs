//! [`Intake`]: the caller side of the session writer (upstream's `SessionWriter.RecordEvent`):
//! counts, the index check and the backoff. The driver does the waiting; this decides, with
//! `now` (milliseconds on any monotonic clock) as an argument.
//!
//! An event is *accepted* when it passes the checks. It is then handed over at once, or the
//! hand-over is *slow* (the writer's queue is full) and the caller waits up to the backoff
//! timeout. A caller that times out puts the writer into *backoff* for the backoff duration:
//! every event accepted during it is *lost* at once, so that a stuck stream costs a caller at
//! most one timeout and never blocks it for good.

use thiserror::Error;

/// Upstream's `AuditBackoffTimeout`: longest a caller waits to hand an event over.
pub const BACKOFF_TIMEOUT_MS: u64 = 5_000;
/// Upstream's `NetworkBackoffDuration`: how long events are dropped after a timeout.
pub const BACKOFF_DURATION_MS: u64 = 30_000;
/// Upstream reports slow writes on close when they exceed this share of accepted events.
pub const SLOW_WRITE_WARN_RATIO: f64 = 0.15;

/// Timeouts of the intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeConfig {
    /// Longest wait to hand an event over before backing off.
    pub backoff_timeout_ms: u64,
    /// How long events are lost after a timed-out hand-over.
    pub backoff_duration_ms: u64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            backoff_timeout_ms: BACKOFF_TIMEOUT_MS,
            backoff_duration_ms: BACKOFF_DURATION_MS,
        }
    }
}

/// The writer's counters (upstream's `SessionWriterStats`, plus `refused`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Events that passed the checks.
    pub accepted: u64,
    /// Accepted events that were not recorded: dropped in backoff, after a timed-out wait,
    /// refused by the stream, or still queued when the writer stopped.
    pub lost: u64,
    /// Hand-overs that could not happen at once (the queue was full).
    pub slow_writes: u64,
    /// Of the lost events, those the stream refused for good (e.g. too large even after
    /// trimming).
    pub refused: u64,
    /// Times a failed stream was replaced by a new or resumed one.
    pub recoveries: u64,
    /// Events sent again on a replacement stream.
    pub replayed: u64,
}

impl WriterStats {
    /// Slow writes per accepted event (0 when none was accepted).
    pub fn slow_write_ratio(&self) -> f64 {
        if self.accepted == 0 {
            0.0
        } else {
            self.slow_writes as f64 / self.accepted as f64
        }
    }

    /// What upstream logs when a writer closes: lost events, and slow writes above
    /// [`SLOW_WRITE_WARN_RATIO`]. Empty when there is nothing to say.
    pub fn warnings(&self, session_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.lost > 0 {
            out.push(format!(
                "session {session_id} lost {} of {} audit events ({} refused by the stream) \
                 because of disk or network issues; check disk and network on this server",
                self.lost, self.accepted, self.refused
            ));
        }
        if self.slow_write_ratio() > SLOW_WRITE_WARN_RATIO {
            out.push(format!(
                "session {session_id} had {} slow writes for {} events; check disk and network \
                 on this server",
                self.slow_writes, self.accepted
            ));
        }
        out
    }
}

/// What to do with an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Hand it over (waiting at most until [`Intake::deadline`] if the queue is full).
    Proceed,
    /// The writer is in backoff: the event is lost (already counted).
    Lose,
}

/// An event the intake refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IntakeError {
    /// A caller-indexed event with index 0 after others were accepted (upstream: "missing
    /// mandatory event index field"): indexes start at 0, so only the first event may have it.
    #[error(
        "event index is 0 but {accepted} events were accepted before it: missing mandatory event index field"
    )]
    MissingIndex {
        /// Events accepted before it.
        accepted: u64,
    },
}

/// The caller-side state of one writer. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Intake {
    config: IntakeConfig,
    stats: WriterStats,
    backoff_until_ms: Option<u64>,
}

impl Intake {
    /// A fresh intake.
    pub fn new(config: IntakeConfig) -> Intake {
        Intake {
            config,
            stats: WriterStats::default(),
            backoff_until_ms: None,
        }
    }

    /// The counters.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Accepts an event (`index`: the caller's own index, checked as upstream; `None` for
    /// events the writer indexes itself). In backoff the event is lost; a backoff that has
    /// expired by `now_ms` is lifted.
    pub fn admit(&mut self, index: Option<i64>, now_ms: u64) -> Result<Admission, IntakeError> {
        if index == Some(0) && self.stats.accepted > 0 {
            return Err(IntakeError::MissingIndex {
                accepted: self.stats.accepted,
            });
        }
        self.stats.accepted += 1;
        if self.in_backoff(now_ms) {
            self.stats.lost += 1;
            return Ok(Admission::Lose);
        }
        Ok(Admission::Proceed)
    }

    /// Whether events are being dropped at `now_ms` (lifts an expired backoff).
    pub fn in_backoff(&mut self, now_ms: u64) -> bool {
        match self.backoff_until_ms {
            Some(until) if until > now_ms => true,
            Some(_) => {
                self.backoff_until_ms = None;
                false
            }
            None => false,
        }
    }

    /// When backoff ends, if the writer is in it.
    pub fn backoff_until_ms(&self) -> Option<u64> {
        self.backoff_until_ms
    }

    /// Latest time a call that started at `started_ms` may wait to hand events over.
    pub fn deadline(&self, started_ms: u64) -> u64 {
        started_ms.saturating_add(self.config.backoff_timeout_ms)
    }

    /// The queue was full: this hand-over is slow (count it once per event).
    pub fn slow_write(&mut self) {
        self.stats.slow_writes += 1;
    }

    /// The wait for a hand-over ran out at `now_ms`: the event is lost and, unless the writer
    /// already is, it goes into backoff. Returns whether this call started the backoff.
    pub fn timed_out(&mut self, now_ms: u64) -> bool {
        self.stats.lost += 1;
        if self.backoff_until_ms.is_some() {
            return false;
        }
        self.backoff_until_ms = Some(now_ms.saturating_add(self.config.backoff_duration_ms));
        true
    }

    /// `n` accepted events will never be recorded (the writer stopped with them queued, or a
    /// waiting caller saw it stop).
    pub fn lost(&mut self, n: u64) {
        self.stats.lost += n;
    }

    /// The stream refused an event for good (it is lost).
    pub fn refused(&mut self) {
        self.stats.refused += 1;
        self.stats.lost += 1;
    }

    /// A failed stream was replaced and `replayed` events were sent to the new one.
    pub fn recovered(&mut self, replayed: u64) {
        self.stats.recoveries += 1;
        self.stats.replayed += replayed;
    }
}
