//! [`ReplayBuffer`]: every event sent to a stream stays here until a stream status says it is
//! durably stored; when the stream fails, what is left is sent again on the resumed (or new)
//! stream. [`RecoveryPolicy`]: the attempts and waits of that recovery.

use std::collections::VecDeque;

use crate::event::AuditEvent;

/// How a failed stream is replaced (upstream's `tryResumeStream`: `FastAttempts` = 10,
/// linear waits of 1 s steps up to 30 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Attempts to open a replacement stream before the writer gives up (at least 1).
    pub attempts: u32,
    /// Wait after the first failed attempt; each further one waits this much longer.
    pub step_ms: u64,
    /// Longest wait.
    pub max_ms: u64,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            attempts: 10,
            step_ms: 1_000,
            max_ms: 30_000,
        }
    }
}

impl RecoveryPolicy {
    /// How long attempt `attempt` (1-based) may wait for the new stream's first status, and
    /// the pause after it when it fails: `min(step × attempt, max)`.
    pub fn wait_ms(&self, attempt: u32) -> u64 {
        self.step_ms
            .saturating_mul(u64::from(attempt.max(1)))
            .min(self.max_ms)
    }

    /// Attempts allowed (at least 1).
    pub fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }
}

/// How to open the replacement stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopen<'a> {
    /// No status was ever received, so the upload is unknown: create a new one (upstream).
    Create,
    /// Resume this upload.
    Resume(&'a str),
}

/// Events not yet confirmed by a stream status, in the order they were sent.
#[derive(Debug, Clone, Default)]
pub struct ReplayBuffer {
    events: VecDeque<AuditEvent>,
    bytes: usize,
    upload_id: Option<String>,
    confirmed: i64,
}

impl ReplayBuffer {
    /// An empty buffer; no status seen.
    pub fn new() -> ReplayBuffer {
        ReplayBuffer {
            confirmed: -1,
            ..Default::default()
        }
    }

    /// Keeps `event` (it is being sent to the stream).
    pub fn push(&mut self, event: AuditEvent) {
        self.bytes += event.size();
        self.events.push_back(event);
    }

    /// The event pushed last.
    pub fn last(&self) -> Option<&AuditEvent> {
        self.events.back()
    }

    /// Forgets the event pushed last (the stream refused it for good).
    pub fn discard_last(&mut self) -> Option<AuditEvent> {
        let e = self.events.pop_back()?;
        self.bytes -= e.size();
        Some(e)
    }

    /// A stream status: `upload_id` holds every event up to `last_event_index`. Drops the
    /// buffered events up to it (a status of -1 only names the upload). Returns how many were
    /// dropped.
    ///
    /// Upstream drops only when the last confirmed event is not the first one in its buffer
    /// (it compares a buffer position with 0); that keeps one already durable event for
    /// replay, which readers then skip as a duplicate. Here every confirmed event is dropped.
    pub fn on_status(&mut self, upload_id: &str, last_event_index: i64) -> usize {
        if self.upload_id.as_deref() != Some(upload_id) {
            self.upload_id = Some(upload_id.to_string());
        }
        self.confirmed = last_event_index;
        let mut dropped = 0;
        while let Some(front) = self.events.front() {
            if front.index() > last_event_index {
                break;
            }
            self.bytes -= front.size();
            self.events.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// The upload of the last status, if any status came.
    pub fn upload_id(&self) -> Option<&str> {
        self.upload_id.as_deref()
    }

    /// The highest index the last status confirmed (-1 if none).
    pub fn confirmed(&self) -> i64 {
        self.confirmed
    }

    /// Create or resume, after a stream failed.
    pub fn reopen(&self) -> Reopen<'_> {
        match &self.upload_id {
            Some(id) => Reopen::Resume(id),
            None => Reopen::Create,
        }
    }

    /// What must be sent again on a replacement stream, in order: every buffered event (call
    /// [`on_status`](Self::on_status) with the new stream's first status before, so that what
    /// it already holds is left out).
    pub fn to_replay(&self) -> impl ExactSizeIterator<Item = &AuditEvent> {
        self.events.iter()
    }

    /// Events buffered.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Encoded size of the buffered events (the writer's replay memory, roughly).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
