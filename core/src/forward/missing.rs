//! Missing recordings, as teleport-event-handler handles them: a `session.upload` whose
//! recording the cluster cannot find yet (`NotFound` on the session stream; the upload may
//! still be on its way to the store) is noted in a `missing_recording<sid>` file and retried
//! in the background — first after about a minute, then about every three minutes, at most
//! [`RETRY_BATCH`] sessions a round — and dropped once its upload is older than
//! [`GIVE_UP_AFTER_MS`] or it has failed more than [`MAX_ATTEMPTS`] times.
//!
//! The file is upstream's JSON, `{"Index":N,"Attempt":N,"Timestamp":"RFC 3339"}`: the index to
//! resume at, the attempts so far, and the upload's time (when the exporter knows it: from
//! the `session.upload` event it read; for a session registered before a restart, the time of
//! the first failure).

use crate::proto::Timestamp;

/// The prefix of a missing recording's state file.
pub const MISSING_PREFIX: &str = "missing_recording";

/// Sessions retried in one round.
pub const RETRY_BATCH: usize = 10;

/// Failures after which a session is dropped (the third failure drops it).
pub const MAX_ATTEMPTS: u32 = 2;

/// Upload age after which a missing recording is dropped: 48 hours.
pub const GIVE_UP_AFTER_MS: i64 = 48 * 3600 * 1000;

/// The state file of a session's missing recording.
pub fn missing_key(session_id: &str) -> String {
    format!("{MISSING_PREFIX}{session_id}")
}

/// The session a state file name is the missing recording of.
pub fn session_of_missing_key(key: &str) -> Option<&str> {
    key.strip_prefix(MISSING_PREFIX).filter(|s| !s.is_empty())
}

/// A missing recording, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The session index to resume at.
    pub index: u64,
    /// Failed attempts so far.
    pub attempt: u32,
    /// The upload's time, RFC 3339.
    pub timestamp: String,
}

/// A stored missing-recording file that can't be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing-recording state {key}: {reason}")]
pub struct MissingError {
    /// The file.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl Missing {
    /// Reads a stored file.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Missing, MissingError> {
        let bad = |reason: String| MissingError {
            key: key.to_string(),
            reason,
        };
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let index = v
            .get("Index")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("no unsigned \"Index\"".into()))?;
        let attempt = v
            .get("Attempt")
            .and_then(serde_json::Value::as_u64)
            .and_then(|a| u32::try_from(a).ok())
            .ok_or_else(|| bad("no \"Attempt\" count".into()))?;
        let timestamp = v
            .get("Timestamp")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("no \"Timestamp\" text".into()))?
            .to_string();
        Ok(Missing {
            index,
            attempt,
            timestamp,
        })
    }

    /// The file's content (upstream's field order).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{{\"Index\":{},\"Attempt\":{},\"Timestamp\":{}}}",
            self.index,
            self.attempt,
            serde_json::Value::String(self.timestamp.clone())
        )
        .into_bytes()
    }
}

/// What to do after the session stream said the recording is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Store this and retry later.
    Retry(Missing),
    /// Give the session up (the reason, for the log).
    Drop(String),
}

/// The rule after a `NotFound`: `previous` is the stored record if the session was already
/// missing, `uploaded` the upload's time if known, `index` where the session stands, `now`
/// the clock.
pub fn on_not_found(
    previous: Option<&Missing>,
    uploaded: Option<Timestamp>,
    index: u64,
    now: Timestamp,
) -> Outcome {
    let attempt = previous.map_or(0, |m| m.attempt).saturating_add(1);
    let stamp = previous
        .and_then(|m| Timestamp::parse_rfc3339(&m.timestamp))
        .or(uploaded)
        .unwrap_or(now);
    let age_ms = (now.unix_nanos() - stamp.unix_nanos()) / 1_000_000;
    if age_ms > i128::from(GIVE_UP_AFTER_MS) {
        return Outcome::Drop(format!(
            "its upload is {} h old (more than 48 h)",
            age_ms / 3_600_000
        ));
    }
    if attempt > MAX_ATTEMPTS {
        return Outcome::Drop(format!("{attempt} attempts failed"));
    }
    Outcome::Retry(Missing {
        index,
        attempt,
        timestamp: stamp.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_nanos(i128::from(s) * 1_000_000_000)
    }

    #[test]
    fn upstream_json_round_trips() {
        let m = Missing {
            index: 7,
            attempt: 1,
            timestamp: "2024-01-15T10:00:00Z".into(),
        };
        let bytes = m.encode();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"Index":7,"Attempt":1,"Timestamp":"2024-01-15T10:00:00Z"}"#
        );
        assert_eq!(Missing::decode("k", &bytes).unwrap(), m);
        let e = Missing::decode("missing_recordingx", b"{").unwrap_err();
        assert!(e.to_string().contains("missing_recordingx"));
        assert_eq!(missing_key("abc"), "missing_recordingabc");
        assert_eq!(session_of_missing_key("missing_recordingabc"), Some("abc"));
        assert_eq!(session_of_missing_key("missing_recording"), None);
        assert_eq!(session_of_missing_key("sessionabc"), None);
    }

    #[test]
    fn retried_twice_then_dropped_and_old_uploads_dropped() {
        let now = t(1_000_000);
        let first = match on_not_found(None, Some(t(999_000)), 3, now) {
            Outcome::Retry(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(first.attempt, 1);
        assert_eq!(first.index, 3);
        assert_eq!(first.timestamp, t(999_000).to_rfc3339());
        let second = match on_not_found(Some(&first), None, 3, t(1_000_200)) {
            Outcome::Retry(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(second.attempt, 2);
        assert!(matches!(
            on_not_found(Some(&second), None, 3, t(1_000_400)),
            Outcome::Drop(_)
        ));
        // An upload older than 48 h is not retried at all.
        assert!(matches!(
            on_not_found(None, Some(t(1_000_000 - 49 * 3600)), 0, now),
            Outcome::Drop(_)
        ));
        // Unknown upload time: the first failure's time counts.
        match on_not_found(None, None, 0, now) {
            Outcome::Retry(m) => assert_eq!(m.timestamp, now.to_rfc3339()),
            other => panic!("{other:?}"),
        }
    }
}
