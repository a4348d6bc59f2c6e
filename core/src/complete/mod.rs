//! The upload completer's rules (sans-IO): which abandoned uploads to complete, the
//! `session.upload` event that announces a completed recording, and the recovery of a missing
//! `session.end` ([`SessionEndRecovery`]).
//!
//! Upstream: `lib/events/complete.go` (`UploadCompleter.CheckUploads`,
//! `ensureSessionEndEvent`). The native driver (`tapelog::complete`) does the listing, completing and reading; every decision is here, with
//! time and ids passed in.

mod recovery;

pub use recovery::{MAX_PARTICIPANTS, SessionEndRecovery};

use crate::event::{AuditEvent, Metadata, SessionMetadata, SessionUpload, event_code, event_type};
use crate::proto::Timestamp;

/// Index of `session.upload` events (upstream's `SessionUploadIndex`, `math.MaxInt32`).
pub const SESSION_UPLOAD_INDEX: i64 = i32::MAX as i64;

/// Upstream's `UploadCompleterGracePeriod`: 24 hours, in milliseconds.
pub const DEFAULT_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

/// Upstream's `AbandonedUploadPollingRate` (`SessionTrackerTTL / 6` = 5 minutes), in
/// milliseconds.
pub const DEFAULT_CHECK_PERIOD_MS: u64 = 5 * 60 * 1000;

/// The completer's selection rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Grace period in milliseconds. An upload initiated, or a part written, at most this long
    /// ago is left alone. Zero or negative: no grace period (everything that is not live is
    /// completed). Upstream reads 0 as "the default"; here the caller picks the value and
    /// [`Rules::default`] gives upstream's 24 hours.
    pub grace_ms: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            grace_ms: DEFAULT_GRACE_MS,
        }
    }
}

/// What to do with an upload once its parts are known (see [`Rules::check_parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartsCheck {
    /// The newest part was written within the grace period: a writer may still be alive.
    Recent {
        /// When the newest part was written (ms since the Unix epoch).
        newest_ms: i64,
    },
    /// Complete the upload. With no parts completing only cleans the upload up, and no event
    /// is emitted (`emit_event` is false).
    Complete {
        /// Number of parts to join.
        parts: usize,
        /// Whether to emit `session.upload` and check for `session.end` afterwards.
        emit_event: bool,
    },
}

impl Rules {
    /// Rules with a grace period of `grace_ms` milliseconds (see [`Rules::grace_ms`]).
    pub fn new(grace_ms: i64) -> Rules {
        Rules { grace_ms }
    }

    /// Whether an upload initiated at `initiated_ms` is still within the grace period at
    /// `now_ms` (upstream: `grace > 0 && now - initiated <= grace`).
    pub fn initiated_within_grace(&self, now_ms: i64, initiated_ms: i64) -> bool {
        self.grace_ms > 0 && now_ms.saturating_sub(initiated_ms) <= self.grace_ms
    }

    /// The uploads to look at, from a list sorted oldest first: upstream stops at the first
    /// upload initiated within the grace period, since every later one is newer still.
    pub fn select<'a, T>(
        &self,
        now_ms: i64,
        uploads: &'a [T],
        initiated_ms: impl Fn(&T) -> i64,
    ) -> &'a [T] {
        let n = uploads
            .iter()
            .position(|u| self.initiated_within_grace(now_ms, initiated_ms(u)))
            .unwrap_or(uploads.len());
        &uploads[..n]
    }

    /// Decides on an abandoned (not live) upload from its parts' modification times (ms since
    /// the Unix epoch; 0 when the store does not say). Upstream compares the newest time with
    /// the grace period; with no parts the newest time is Go's zero time, never recent.
    pub fn check_parts(
        &self,
        now_ms: i64,
        part_modified_ms: impl IntoIterator<Item = i64>,
    ) -> PartsCheck {
        let mut parts = 0usize;
        let mut newest = None::<i64>;
        for t in part_modified_ms {
            parts += 1;
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
        if let Some(newest_ms) = newest
            && self.grace_ms > 0
            && now_ms.saturating_sub(newest_ms) <= self.grace_ms
        {
            return PartsCheck::Recent { newest_ms };
        }
        PartsCheck::Complete {
            parts,
            emit_event: parts > 0,
        }
    }
}

/// Upstream's `HalfJitter` (the first check): a delay in `[period/2, period)`, picked by
/// `random` (any value; the driver passes random bits).
pub fn half_jitter_ms(period_ms: u64, random: u64) -> u64 {
    jitter(period_ms, 2, random)
}

/// Upstream's `SeventhJitter` (later checks): a delay in `[period*6/7, period)`, picked by
/// `random`.
pub fn seventh_jitter_ms(period_ms: u64, random: u64) -> u64 {
    jitter(period_ms, 7, random)
}

/// `period - period/div + random % (period/div)`: the last `1/div` of the period is random.
fn jitter(period_ms: u64, div: u64, random: u64) -> u64 {
    let span = period_ms / div;
    if span == 0 {
        return period_ms;
    }
    period_ms - span + random % span
}

/// The `session.upload` event upstream emits after completing an upload: type
/// `session.upload`, code `T2005I`, time `now`, id `uid`, index [`SESSION_UPLOAD_INDEX`], the
/// cluster name, the session id and the recording's URL.
pub fn session_upload_event(
    now: Timestamp,
    uid: &str,
    cluster_name: &str,
    session_id: &str,
    url: &str,
) -> AuditEvent {
    SessionUpload {
        metadata: Metadata {
            index: SESSION_UPLOAD_INDEX,
            type_: event_type::SESSION_UPLOAD.to_string(),
            id: uid.to_string(),
            code: event_code::SESSION_UPLOAD.to_string(),
            time: now,
            cluster_name: cluster_name.to_string(),
            ..Metadata::default()
        },
        session_metadata: SessionMetadata {
            session_id: session_id.to_string(),
            ..SessionMetadata::default()
        },
        session_url: url.to_string(),
        ..SessionUpload::default()
    }
    .into()
}

#[cfg(test)]
mod tests;
