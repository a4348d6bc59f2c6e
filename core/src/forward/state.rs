//! The exporter's stored state, as upstream keeps it: one small file per key in the storage
//! directory.
//!
//! | file | content |
//! |---|---|
//! | `start_time` | RFC 3339, whole seconds |
//! | `window_time` | RFC 3339: the start of the current search window |
//! | `cursor` | the page key the current page was fetched with (`""`: the window's start) |
//! | `id` | the checkpoint (`uid`, or the SHA-256 of the JSON) of the last event accepted |
//! | `session<sid>` | 8 bytes, big-endian: the index of the next session event to send |
//!
//! [`check_start_time`] is upstream's guard against changing `--start-time` once exporting
//! has begun.

use thiserror::Error;

use crate::proto::Timestamp;

/// The `start_time` file.
pub const START_TIME: &str = "start_time";
/// The `window_time` file.
pub const WINDOW_TIME: &str = "window_time";
/// The `cursor` file.
pub const CURSOR: &str = "cursor";
/// The `id` file.
pub const ID: &str = "id";
/// The prefix of per-session files.
pub const SESSION_PREFIX: &str = "session";

/// Where the audit export stands: the committed position after accepted batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// Start of the search window (RFC 3339).
    pub window_time: String,
    /// The page key of the page the last accepted event came from.
    pub cursor: String,
    /// The checkpoint of the last accepted event of that page ("" = none of it yet).
    pub id: String,
}

/// A state file that can't be read back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// A session file is not 8 bytes.
    #[error("session state {key}: expected 8 bytes (a big-endian index), found {len}")]
    SessionIndex {
        /// The file name.
        key: String,
        /// Its length.
        len: usize,
    },
    /// A stored time is not RFC 3339.
    #[error("state file {key}: {value:?} is not an RFC 3339 time")]
    Time {
        /// The file name.
        key: String,
        /// Its content (cut to 100 characters).
        value: String,
    },
    /// A missing-recording file can't be read.
    #[error(transparent)]
    Missing(#[from] crate::forward::missing::MissingError),
}

/// The last sessions exported to the end, oldest first, at most [`DoneSessions::KEPT`]: a
/// `session.upload` read again after a crash does not export its session twice. Stored one
/// id a line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoneSessions(std::collections::VecDeque<String>);

impl DoneSessions {
    /// How many finished sessions are kept.
    pub const KEPT: usize = 1024;

    /// The list as stored (blank lines ignored; only the newest [`Self::KEPT`] kept).
    pub fn decode(text: &str) -> DoneSessions {
        let mut done = DoneSessions::default();
        for sid in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            done.push(sid);
        }
        done
    }

    /// The file's content.
    pub fn encode(&self) -> String {
        self.0.iter().map(|sid| format!("{sid}\n")).collect()
    }

    /// Whether `sid` is in the list.
    pub fn contains(&self, sid: &str) -> bool {
        self.0.iter().any(|s| s == sid)
    }

    /// Notes `sid` as finished, dropping the oldest past [`Self::KEPT`]; `false` when it
    /// was already there (nothing changed).
    pub fn push(&mut self, sid: &str) -> bool {
        if self.contains(sid) {
            return false;
        }
        self.0.push_back(sid.to_string());
        while self.0.len() > Self::KEPT {
            self.0.pop_front();
        }
        true
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The file name of a session's state.
pub fn session_key(session_id: &str) -> String {
    format!("{SESSION_PREFIX}{session_id}")
}

/// The session id of a state file name, when it is one (`session` alone is not).
pub fn session_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(SESSION_PREFIX).filter(|s| !s.is_empty())
}

/// A session index as stored.
pub fn encode_session_index(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Reads a session file (empty = 0, as upstream's v2 reads it).
pub fn decode_session_index(key: &str, bytes: &[u8]) -> Result<u64, StateError> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StateError::SessionIndex {
        key: key.to_string(),
        len: bytes.len(),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// A time truncated to whole seconds, RFC 3339.
pub fn format_seconds(t: Timestamp) -> String {
    let nanos = t.unix_nanos();
    Timestamp::from_unix_nanos(nanos - nanos.rem_euclid(1_000_000_000)).to_rfc3339()
}

/// Reads a stored time.
pub fn parse_stored_time(key: &str, value: &str) -> Result<Timestamp, StateError> {
    Timestamp::parse_rfc3339(value.trim()).ok_or_else(|| StateError::Time {
        key: key.to_string(),
        value: value.chars().take(100).collect(),
    })
}

/// `--start-time` differs from the stored one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "You can not change start time in the middle of ingestion. To restart the ingestion, rm -rf {storage}"
)]
pub struct StartTimeError {
    /// The storage directory, as the user gave it.
    pub storage: String,
}

/// Upstream's `setStartTime`: the start time to use and whether it must be stored.
///
/// - stored and no flag: the stored one;
/// - stored and the same flag (to the second): the stored one;
/// - stored and a different flag: [`StartTimeError`] naming `storage`;
/// - nothing stored: the flag, else `now`, truncated to seconds, to be stored.
///
/// An empty stored value counts as nothing stored.
pub fn check_start_time(
    stored: Option<&str>,
    flag: Option<Timestamp>,
    now: Timestamp,
    storage: &str,
) -> Result<(String, bool), StartTimeError> {
    let stored = stored.map(str::trim).filter(|s| !s.is_empty());
    match (stored, flag) {
        (Some(s), None) => Ok((s.to_string(), false)),
        (Some(s), Some(f)) => {
            let same =
                Timestamp::parse_rfc3339(s).is_some_and(|t| format_seconds(t) == format_seconds(f));
            if same {
                Ok((s.to_string(), false))
            } else {
                Err(StartTimeError {
                    storage: storage.to_string(),
                })
            }
        }
        (None, f) => Ok((format_seconds(f.unwrap_or(now)), true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn start_time_guard() {
        let now = t("2024-05-01T10:11:12.9Z");
        assert_eq!(
            check_start_time(None, None, now, "st").unwrap(),
            ("2024-05-01T10:11:12Z".to_string(), true)
        );
        assert_eq!(
            check_start_time(Some(""), Some(t("2024-01-01T00:00:00.5Z")), now, "st").unwrap(),
            ("2024-01-01T00:00:00Z".to_string(), true)
        );
        assert_eq!(
            check_start_time(Some("2024-01-01T00:00:00Z"), None, now, "st").unwrap(),
            ("2024-01-01T00:00:00Z".to_string(), false)
        );
        assert!(
            check_start_time(
                Some("2024-01-01T00:00:00Z"),
                Some(t("2024-01-01T00:00:00.7Z")),
                now,
                "st"
            )
            .is_ok()
        );
        let e = check_start_time(
            Some("2024-01-01T00:00:00Z"),
            Some(t("2024-01-02T00:00:00Z")),
            now,
            "./storage",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "You can not change start time in the middle of ingestion. To restart the ingestion, rm -rf ./storage"
        );
    }

    #[test]
    fn session_files() {
        assert_eq!(session_key("abc"), "sessionabc");
        assert_eq!(session_of_key("sessionabc"), Some("abc"));
        assert_eq!(session_of_key("session"), None);
        assert_eq!(session_of_key("cursor"), None);
        let b = encode_session_index(258);
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(decode_session_index("s", &b).unwrap(), 258);
        assert_eq!(decode_session_index("s", b"").unwrap(), 0);
        assert!(decode_session_index("s", b"123").is_err());
        assert!(parse_stored_time("w", "yesterday").is_err());
        assert_eq!(
            format_seconds(parse_stored_time("w", "2024-05-01T10:11:12.345Z").unwrap()),
            "2024-05-01T10:11:12Z"
        );
    }

    #[test]
    fn done_sessions_are_bounded_and_round_trip() {
        let mut d = DoneSessions::decode("a\n\n b \n");
        assert_eq!(d.encode(), "a\nb\n");
        assert!(!d.push("a"), "already there");
        for i in 0..DoneSessions::KEPT {
            assert!(d.push(&format!("s{i}")));
        }
        assert_eq!(d.len(), DoneSessions::KEPT);
        assert!(!d.contains("a") && !d.contains("b"), "the oldest go first");
        assert!(d.contains("s0") && d.contains(&format!("s{}", DoneSessions::KEPT - 1)));
        assert_eq!(DoneSessions::decode(&d.encode()), d);
    }
}
