//! [`Preparer`]: upstream's `events.Preparer` (`PrepareSessionEvent`) and the writer's
//! bytes-to-`print` split (`bytesToSessionPrintEvents`).

use thiserror::Error;

use crate::event::{
    AuditEvent, FieldsError, MAX_EVENT_SIZE, Metadata, SessionPrint, check_and_set_event_fields,
    event_type,
};
use crate::proto::{Timestamp, varint_len};

/// Namespace set on events when the configuration names none (upstream `apidefaults.Namespace`).
pub const DEFAULT_NAMESPACE: &str = "default";

/// What the preparer writes into every event of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparerConfig {
    /// The session being recorded (`sid`); required.
    pub session_id: String,
    /// The host recording it (`server_id`).
    pub server_id: String,
    /// The server namespace (`namespace`); empty means [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// The cluster (`cluster_name`), set on events that have none; required.
    pub cluster_name: String,
    /// When set, event indexes are the nanoseconds from this time to `now` (newer upstream);
    /// when not, indexes count from 0. Nanosecond indexes leave gaps, which a resumed stream
    /// reads as holes (`stream::ResumePlan`): keep the counted index for resumable streams.
    pub start_time: Option<Timestamp>,
}

impl PreparerConfig {
    /// A configuration for `session_id` in `cluster_name`, namespace `default`, no server id,
    /// counted indexes.
    pub fn new(session_id: impl Into<String>, cluster_name: impl Into<String>) -> PreparerConfig {
        PreparerConfig {
            session_id: session_id.into(),
            server_id: String::new(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            cluster_name: cluster_name.into(),
            start_time: None,
        }
    }
}

/// A configuration the preparer refuses (upstream's `CheckAndSetDefaults`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PreparerConfigError {
    /// No session id.
    #[error("session event preparer: missing session id")]
    MissingSessionId,
    /// No cluster name.
    #[error("session event preparer for session {session_id}: missing cluster name")]
    MissingClusterName {
        /// The session.
        session_id: String,
    },
}

/// What the next `print` event is computed from.
#[derive(Debug, Clone, Copy)]
struct LastPrint {
    time: Timestamp,
    offset: i64,
    len: i64,
    delay_ms: i64,
    chunk_index: i64,
}

/// Prepares the events of one session, in the order they are recorded. See
/// [`prepare`](Preparer::prepare).
#[derive(Debug, Clone)]
pub struct Preparer {
    config: PreparerConfig,
    /// Index given to the previous event (-1 before the first).
    last_index: i64,
    last_print: Option<LastPrint>,
}

impl Preparer {
    /// A preparer; the namespace defaults to `default`.
    pub fn new(mut config: PreparerConfig) -> Result<Preparer, PreparerConfigError> {
        if config.session_id.is_empty() {
            return Err(PreparerConfigError::MissingSessionId);
        }
        if config.cluster_name.is_empty() {
            return Err(PreparerConfigError::MissingClusterName {
                session_id: config.session_id,
            });
        }
        if config.namespace.is_empty() {
            config.namespace = DEFAULT_NAMESPACE.to_string();
        }
        Ok(Preparer {
            config,
            last_index: -1,
            last_print: None,
        })
    }

    /// The configuration (with defaults applied).
    pub fn config(&self) -> &PreparerConfig {
        &self.config
    }

    /// The checks and defaults that come before an index is given: upstream's
    /// `checkAndSetEventFields` (type required; code required unless `print` /
    /// `desktop.recording`; `uid`, time rounded to the millisecond and cluster name set when
    /// empty), and the refusal of events this build keeps as raw bytes, whose index can't be
    /// written. Repeating it (as [`prepare`](Self::prepare) does) changes nothing.
    pub fn check(
        &self,
        event: &mut AuditEvent,
        now: Timestamp,
        uid: &str,
    ) -> Result<(), FieldsError> {
        check_and_set_event_fields(event, now, uid, &self.config.cluster_name)?;
        if let AuditEvent::Unrecognized(_) = event {
            return Err(FieldsError::Raw {
                field: "ei",
                event_type: event.event_type().to_string(),
            });
        }
        Ok(())
    }

    /// Upstream's `PrepareSessionEvent`: [`check`](Self::check), then the session id (on
    /// events with session metadata), namespace and server id (on events with server
    /// metadata) are set, overwriting what the event had, as upstream; the event gets the next
    /// index; a `print` event following another gets `offset = prev.offset + len(prev.data)`,
    /// `ms = max(0, (time - prev.time) / 1 ms) + prev.ms` and `ci = prev.ci + 1` (the first
    /// print keeps its own values: 0/0/0 for prints made by [`print_events`](Self::print_events)).
    ///
    /// Indexes strictly increase: the counter, or with [`PreparerConfig::start_time`] the
    /// nanoseconds from it to `now`, raised to one above the previous index when the clock did
    /// not move (readers drop an event whose index is not above the previous one).
    pub fn prepare(
        &mut self,
        mut event: AuditEvent,
        now: Timestamp,
        uid: &str,
    ) -> Result<AuditEvent, FieldsError> {
        self.check(&mut event, now, uid)?;
        if let Some(s) = event.session_metadata_mut() {
            s.session_id.clone_from(&self.config.session_id);
        }
        if let Some(s) = event.server_metadata_mut() {
            s.server_namespace.clone_from(&self.config.namespace);
            s.server_id.clone_from(&self.config.server_id);
        }
        let index = self.next_index(now);
        event.set_index(index);
        if let AuditEvent::SessionPrint(p) = &mut event {
            if let Some(prev) = self.last_print {
                p.offset = prev.offset.saturating_add(prev.len);
                p.delay_milliseconds =
                    delay_ms(prev.time, p.metadata.time).saturating_add(prev.delay_ms);
                p.chunk_index = prev.chunk_index.saturating_add(1);
            }
            self.last_print = Some(LastPrint {
                time: p.metadata.time,
                offset: p.offset,
                len: i64::try_from(p.data.len()).unwrap_or(i64::MAX),
                delay_ms: p.delay_milliseconds,
                chunk_index: p.chunk_index,
            });
        }
        Ok(event)
    }

    fn next_index(&mut self, now: Timestamp) -> i64 {
        let floor = self.last_index.saturating_add(1);
        let index = match self.config.start_time {
            Some(start) => clamp_i64(now.unix_nanos() - start.unix_nanos()).max(floor),
            None => floor,
        };
        self.last_index = index;
        index
    }

    /// Terminal bytes as `print` events, not yet prepared: all with time `now` rounded to the
    /// millisecond, `bytes` = length of their data, the data cut into the largest pieces whose
    /// prepared record fits the 64 KiB limit (see [`max_print_data`](Self::max_print_data)).
    /// The pieces concatenate back to `data`; empty input gives no event.
    ///
    /// Upstream cuts differently (its first piece gets only the overflow byte count); the bytes
    /// and their order are the same, only the piece boundaries differ, and nothing in the
    /// recording format depends on them.
    pub fn print_events(&self, data: &[u8], now: Timestamp) -> Vec<AuditEvent> {
        let time = now.round_to_millis();
        let max = self.max_print_data(time);
        data.chunks(max)
            .map(|piece| {
                SessionPrint {
                    metadata: Metadata {
                        type_: event_type::SESSION_PRINT.to_string(),
                        time,
                        ..Default::default()
                    },
                    bytes: piece.len() as i64,
                    data: piece.to_vec(),
                    ..Default::default()
                }
                .into()
            })
            .collect()
    }

    /// Most data bytes one `print` event at `time` may carry so that, once prepared, its whole
    /// `OneOf` record is at most [`MAX_EVENT_SIZE`] (what the recording reader and writer
    /// accept). Measured on a worst case: this session's cluster name and every integer field
    /// (index, chunk index, bytes, delay, offset) at its widest encoding, so no value the
    /// preparer may set can push a piece over. At least 1.
    pub fn max_print_data(&self, time: Timestamp) -> usize {
        let worst = SessionPrint {
            metadata: Metadata {
                index: -1,
                type_: event_type::SESSION_PRINT.to_string(),
                time,
                cluster_name: self.config.cluster_name.clone(),
                ..Default::default()
            },
            chunk_index: -1,
            bytes: -1,
            delay_milliseconds: -1,
            offset: -1,
            ..Default::default()
        };
        let event = AuditEvent::from(worst);
        let base = event.size();
        // One key byte for the data field, its length, the data.
        let record = |d: usize| event.oneof_len_for_size(base + 1 + varint_len(d as u64) + d);
        let mut d = MAX_EVENT_SIZE.saturating_sub(base + 16);
        while record(d + 1) <= MAX_EVENT_SIZE {
            d += 1;
        }
        while d > 1 && record(d) > MAX_EVENT_SIZE {
            d -= 1;
        }
        d.max(1)
    }
}

/// Whole milliseconds from `before` to `after`, 0 if negative (upstream's `diff`).
fn delay_ms(before: Timestamp, after: Timestamp) -> i64 {
    clamp_i64((after.unix_nanos() - before.unix_nanos()) / 1_000_000).max(0)
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}
