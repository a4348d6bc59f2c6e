//! Page keys and the total order of search results.
//!
//! Results are ordered by event time, then session (a hash of `sid`, so that the events of
//! one session at the same time sort by `ei`), then `ei`, then the file (`server/day file`)
//! and the byte offset of the line: a total order, the same on every search. Descending
//! searches use the reverse.
//!
//! A page key is `tl1.` + base64url (no padding) of a small JSON object holding the sort
//! position of the last returned event and its checkpoint (upstream's: the event's `uid`, or
//! the hex SHA-256 of its JSON when it has none), so that a search resumes exactly after it by
//! binary search, and can tell when the event is no longer where the key says. A key without
//! the prefix is upstream's bare checkpoint (a `uid` or a hash), found by a scan.

use std::cmp::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use thiserror::Error;

use super::index::IndexEntry;
use crate::EventFields;
use crate::proto::Timestamp;

/// The prefix of tapelog page keys.
pub const KEY_PREFIX: &str = "tl1.";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 4096;

/// A start key that can't be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed page key {key:?}: {reason}")]
pub struct KeyError {
    /// The key (cut to 100 characters).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

fn key_error(key: &str, reason: impl Into<String>) -> KeyError {
    KeyError {
        key: key.chars().take(100).collect(),
        reason: reason.into(),
    }
}

/// Where an event is in the total order of search results.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Event time, seconds.
    pub seconds: i64,
    /// Event time, nanoseconds.
    pub nanos: u32,
    /// Hash of the session id.
    pub sid_hash: u64,
    /// The event index (`ei`).
    pub index: i64,
    /// The file, as `server/day file` relative to the log root.
    pub file: String,
    /// Byte offset of the line in the file.
    pub offset: u64,
}

impl Position {
    /// The position of an index entry of `file`.
    pub fn of(entry: &IndexEntry, file: &str) -> Position {
        Position {
            seconds: entry.seconds,
            nanos: entry.nanos,
            sid_hash: entry.sid_hash,
            index: entry.index,
            file: file.to_string(),
            offset: entry.offset,
        }
    }

    /// The event time.
    pub fn time(&self) -> Timestamp {
        Timestamp {
            seconds: self.seconds,
            nanos: self.nanos as i32,
        }
    }
}

/// Compares an entry of the file named `file` with a position, in ascending order.
pub fn cmp_entry(entry: &IndexEntry, file: &str, pos: &Position) -> Ordering {
    (entry.seconds, entry.nanos, entry.sid_hash, entry.index)
        .cmp(&(pos.seconds, pos.nanos, pos.sid_hash, pos.index))
        .then_with(|| file.cmp(pos.file.as_str()))
        .then_with(|| entry.offset.cmp(&pos.offset))
}

/// A resumable position: the last returned event and its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// Where the event is.
    pub position: Position,
    /// Its checkpoint ([`checkpoint_with`]).
    pub checkpoint: String,
}

/// What a search starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartKey {
    /// The beginning (empty key).
    Beginning,
    /// Just after a position (a tapelog key).
    After(PageKey),
    /// Just after the event with this checkpoint (upstream's keys), found by a scan.
    Checkpoint(String),
}

impl StartKey {
    /// Reads a start key: "" is the beginning, `tl1.…` a tapelog key, anything else (one
    /// word of printable ASCII) an upstream checkpoint.
    pub fn parse(key: &str) -> Result<StartKey, KeyError> {
        if key.is_empty() {
            return Ok(StartKey::Beginning);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(key_error(
                key,
                format!("longer than {MAX_KEY_LEN} characters"),
            ));
        }
        if let Some(body) = key.strip_prefix(KEY_PREFIX) {
            return PageKey::decode_body(key, body).map(StartKey::After);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(key_error(
                key,
                "neither a tapelog key (tl1.…) nor an event id or hash",
            ));
        }
        Ok(StartKey::Checkpoint(key.to_string()))
    }
}

impl PageKey {
    /// The key's text (`tl1.` + base64url of its JSON).
    pub fn encode(&self) -> String {
        let p = &self.position;
        let v = json!({
            "t": p.seconds,
            "n": p.nanos,
            "s": format!("{:016x}", p.sid_hash),
            "e": p.index,
            "f": p.file,
            "o": p.offset,
            "c": self.checkpoint,
        });
        format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(v.to_string()))
    }

    fn decode_body(key: &str, body: &str) -> Result<PageKey, KeyError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| key_error(key, format!("not base64url: {e}")))?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| key_error(key, format!("not JSON: {e}")))?;
        let Value::Object(m) = v else {
            return Err(key_error(key, "not a JSON object"));
        };
        let int = |m: &Map<String, Value>, k: &str| -> Result<i64, KeyError> {
            m.get(k)
                .and_then(Value::as_i64)
                .ok_or_else(|| key_error(key, format!("field {k:?} is missing or not an integer")))
        };
        let uint = |m: &Map<String, Value>, k: &str| -> Result<u64, KeyError> {
            m.get(k).and_then(Value::as_u64).ok_or_else(|| {
                key_error(
                    key,
                    format!("field {k:?} is missing or not a non-negative integer"),
                )
            })
        };
        let string = |m: &Map<String, Value>, k: &str| -> Result<String, KeyError> {
            m.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| key_error(key, format!("field {k:?} is missing or not a string")))
        };
        let nanos = uint(&m, "n")?;
        if nanos >= 1_000_000_000 {
            return Err(key_error(key, "field \"n\" is not a nanosecond count"));
        }
        let sid = string(&m, "s")?;
        let sid_hash = u64::from_str_radix(&sid, 16)
            .ok()
            .filter(|_| sid.len() == 16)
            .ok_or_else(|| key_error(key, "field \"s\" is not 16 hex digits"))?;
        let file = string(&m, "f")?;
        if file.is_empty()
            || file
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(key_error(key, format!("file {file:?} is not server/file")));
        }
        let checkpoint = string(&m, "c")?;
        if checkpoint.is_empty() {
            return Err(key_error(key, "empty checkpoint"));
        }
        Ok(PageKey {
            position: Position {
                seconds: int(&m, "t")?,
                nanos: nanos as u32,
                sid_hash,
                index: int(&m, "e")?,
                file,
                offset: uint(&m, "o")?,
            },
            checkpoint,
        })
    }
}

/// Upstream's checkpoint of an event: its `uid`, or when it has none the lower-case hex
/// SHA-256 of its JSON (`EventFields::to_json`, upstream's `FastMarshal` of the fields).
/// `sha256` is given by the caller (the core has no hash implementation of its own).
pub fn checkpoint_with(fields: &EventFields, sha256: impl FnOnce(&[u8]) -> [u8; 32]) -> String {
    let uid = fields.get_id();
    if !uid.is_empty() {
        return uid.to_string();
    }
    let digest = sha256(fields.to_json().as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::index::{sid_hash, type_hash};

    fn key() -> PageKey {
        PageKey {
            position: Position {
                seconds: 1_705_312_800,
                nanos: 123,
                sid_hash: sid_hash("s1"),
                index: -1,
                file: "auth/2024-01-15.00:00:00.log".into(),
                offset: 4096,
            },
            checkpoint: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
        }
    }

    #[test]
    fn keys_round_trip() {
        let k = key();
        let s = k.encode();
        assert!(s.starts_with("tl1."));
        assert!(
            s[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(StartKey::parse(&s), Ok(StartKey::After(k)));
        assert_eq!(StartKey::parse(""), Ok(StartKey::Beginning));
        assert_eq!(
            StartKey::parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            Ok(StartKey::Checkpoint(
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into()
            ))
        );
    }

    #[test]
    fn malformed_keys_say_why() {
        let enc = |v: Value| format!("tl1.{}", URL_SAFE_NO_PAD.encode(v.to_string()));
        let good = serde_json::to_value(json!({
            "t": 1, "n": 0, "s": "00000000000000ff", "e": 0, "f": "a/b.log", "o": 0, "c": "x"
        }))
        .unwrap();
        assert!(StartKey::parse(&enc(good.clone())).is_ok());
        let cases: Vec<(String, &str)> = vec![
            ("tl1.***".into(), "not base64url"),
            (
                format!("tl1.{}", URL_SAFE_NO_PAD.encode("[1]")),
                "not a JSON object",
            ),
            (format!("tl1.{}", URL_SAFE_NO_PAD.encode("{")), "not JSON"),
            ("with space".into(), "neither a tapelog key"),
            ("x".repeat(5000), "longer than"),
        ];
        for (k, why) in cases {
            let e = StartKey::parse(&k).unwrap_err();
            assert!(e.reason.contains(why), "{k}: {e}");
            assert!(e.to_string().starts_with("malformed page key"), "{e}");
        }
        for (field, bad, why) in [
            ("t", json!("1"), "\"t\""),
            ("n", json!(2_000_000_000u64), "nanosecond"),
            ("s", json!("xyz"), "16 hex"),
            ("f", json!("../etc"), "server/file"),
            ("f", json!(""), "server/file"),
            ("o", json!(-1), "\"o\""),
            ("c", json!(""), "empty checkpoint"),
        ] {
            let mut v = good.clone();
            v[field] = bad;
            let e = StartKey::parse(&enc(v)).unwrap_err();
            assert!(e.reason.contains(why), "{field}: {e}");
        }
    }

    #[test]
    fn order_is_total() {
        let p = key().position;
        let e = IndexEntry {
            seconds: p.seconds,
            nanos: p.nanos,
            type_hash: type_hash("x"),
            sid_hash: p.sid_hash,
            index: p.index,
            offset: p.offset,
            len: 1,
        };
        assert_eq!(cmp_entry(&e, &p.file, &p), Ordering::Equal);
        assert_eq!(
            cmp_entry(&e, "auth/2024-01-16.00:00:00.log", &p),
            Ordering::Greater
        );
        assert_eq!(cmp_entry(&e, "a", &p), Ordering::Less);
        let later = IndexEntry {
            offset: 1,
            index: 0,
            ..e
        };
        assert_eq!(cmp_entry(&later, "a", &p), Ordering::Greater);
        let earlier = IndexEntry {
            nanos: 122,
            offset: 99_999,
            ..e
        };
        assert_eq!(cmp_entry(&earlier, "z", &p), Ordering::Less);
    }

    #[test]
    fn checkpoints() {
        let with_uid = EventFields::parse(r#"{"event":"x","uid":"u-1"}"#).unwrap();
        assert_eq!(checkpoint_with(&with_uid, |_| [0; 32]), "u-1");
        let no_uid = EventFields::parse(r#"{"event":"print","ei":2}"#).unwrap();
        let mut seen = String::new();
        let c = checkpoint_with(&no_uid, |b| {
            seen = String::from_utf8(b.to_vec()).unwrap();
            let mut d = [0u8; 32];
            d[0] = 0xab;
            d[31] = 0x01;
            d
        });
        assert_eq!(seen, r#"{"ei":2,"event":"print"}"#);
        assert_eq!(c.len(), 64);
        assert!(c.starts_with("ab00") && c.ends_with("01"));
    }
}
