//! Forward protocol messages: a batch of events out, `ack`s back, and the receiver's
//! decoder of every message mode.
//!
//! # Why PackedForward
//!
//! The protocol has four modes for events: Message (one event), Forward
//! (`[tag, [[time, record], ...], option]`), PackedForward (`[tag, bin, option]`, the `bin`
//! being the `[time, record]` entries concatenated) and CompressedPackedForward (the same,
//! gzipped). tapelog sends **PackedForward**, as Fluentd's own `out_forward` does (its
//! buffer chunk under a `str 32` header; tapelog uses `bin`, which the spec allows
//! equally): `in_forward` hands the packed bytes to its event stream without rebuilding
//! every entry, and the entries are encoded once into one buffer. Compression is left out: audit events are small, and TLS or the network
//! rarely makes it worth the CPU at the sizes a batch has (20 events by default).
//!
//! Each entry is `[EventTime, record]`: the time is the event's `time` field (RFC 3339, as
//! Teleport writes it) as Fluentd's EventTime (ext type 0, 4-byte big-endian seconds then
//! 4-byte big-endian nanoseconds, `fixext 8`), or the send time when the event has none; the
//! record is the event's JSON object as a map with every key kept, `time` included.
//!
//! The option map carries `size` (the number of entries) and `chunk` (a unique id the
//! caller makes): `in_forward` answers any message that has a `chunk` with
//! `{"ack": chunk}` once it has taken the whole message (the server half of `out_forward`'s
//! `require_ack_response`), which is what makes the output at-least-once.

use thiserror::Error;

use super::msgpack::{self, DecodeError, Limits, Value};
use crate::proto::Timestamp;

/// Fluentd's EventTime: seconds since the Unix epoch and nanoseconds, as two `u32`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: u32,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl EventTime {
    /// The extension type Fluentd gives EventTime.
    pub const EXT_TYPE: i8 = 0;

    /// The EventTime of `t`, if it is between 1970 and 2106 (what the format can hold).
    pub fn from_timestamp(t: Timestamp) -> Option<EventTime> {
        Some(EventTime {
            seconds: u32::try_from(t.seconds).ok()?,
            nanos: u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?,
        })
    }

    /// As a [`Timestamp`].
    pub fn to_timestamp(self) -> Timestamp {
        Timestamp {
            seconds: i64::from(self.seconds),
            nanos: self.nanos as i32,
        }
    }

    /// The 8 bytes of the extension value.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.seconds.to_be_bytes());
        b[4..].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }

    fn from_value(v: &Value) -> Option<EventTime> {
        match v {
            Value::Ext(Self::EXT_TYPE, data) => {
                let data: &[u8; 8] = data.as_slice().try_into().ok()?;
                let seconds = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let nanos = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                (nanos < 1_000_000_000).then_some(EventTime { seconds, nanos })
            }
            // Older clients send integer seconds; in_forward takes them too.
            Value::UInt(s) => Some(EventTime {
                seconds: u32::try_from(*s).ok()?,
                nanos: 0,
            }),
            _ => None,
        }
    }
}

/// Why a batch could not be encoded. Each is a fault of one event (`index` in the batch),
/// and sending the same batch again would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The tag is empty.
    #[error("empty Fluentd tag")]
    EmptyTag,
    /// The chunk id is empty (the server's ack could not be matched).
    #[error("empty chunk id")]
    EmptyChunk,
    /// An event is not valid JSON.
    #[error("event {index} of the batch is not valid JSON: {message}")]
    InvalidJson {
        /// Its place in the batch.
        index: usize,
        /// What the parser said.
        message: String,
    },
    /// An event is JSON but not an object.
    #[error("event {index} of the batch is not a JSON object")]
    NotAnObject {
        /// Its place in the batch.
        index: usize,
    },
    /// An event's `time` is not an RFC 3339 string that EventTime can hold (1970 to 2106).
    /// Fluentd's `in_http` refuses an unparseable time too (400).
    #[error(
        "event {index} of the batch: `time` {value} is not an RFC 3339 time between 1970 and 2106"
    )]
    BadTime {
        /// Its place in the batch.
        index: usize,
        /// The `time` value, as JSON.
        value: String,
    },
}

/// Encodes `events` (each one JSON object) as one PackedForward message for `tag`, with the
/// option `{"size": events.len(), "chunk": chunk}`. `now` stamps events that have no `time`.
pub fn encode_packed_forward<S: AsRef<str>>(
    tag: &str,
    events: &[S],
    chunk: &str,
    now: EventTime,
) -> Result<Vec<u8>, EncodeError> {
    if tag.is_empty() {
        return Err(EncodeError::EmptyTag);
    }
    if chunk.is_empty() {
        return Err(EncodeError::EmptyChunk);
    }
    let mut entries = Vec::with_capacity(events.iter().map(|e| e.as_ref().len()).sum());
    for (index, event) in events.iter().enumerate() {
        let json: serde_json::Value =
            serde_json::from_str(event.as_ref()).map_err(|e| EncodeError::InvalidJson {
                index,
                message: e.to_string(),
            })?;
        let serde_json::Value::Object(record) = &json else {
            return Err(EncodeError::NotAnObject { index });
        };
        let time = match record.get("time") {
            None | Some(serde_json::Value::Null) => now,
            Some(t) => t
                .as_str()
                .and_then(Timestamp::parse_rfc3339)
                .and_then(EventTime::from_timestamp)
                .ok_or_else(|| EncodeError::BadTime {
                    index,
                    value: t.to_string(),
                })?,
        };
        msgpack::write_array_len(&mut entries, 2);
        msgpack::write_ext(&mut entries, EventTime::EXT_TYPE, &time.to_bytes());
        msgpack::write_json(&mut entries, &json);
    }
    let mut out = Vec::with_capacity(entries.len() + tag.len() + chunk.len() + 32);
    msgpack::write_array_len(&mut out, 3);
    msgpack::write_str(&mut out, tag);
    msgpack::write_bin(&mut out, &entries);
    msgpack::write_map_len(&mut out, 2);
    msgpack::write_str(&mut out, "size");
    msgpack::write_uint(&mut out, events.len() as u64);
    msgpack::write_str(&mut out, "chunk");
    msgpack::write_str(&mut out, chunk);
    Ok(out)
}

/// The server's answer to a message whose option carried `chunk`: `{"ack": chunk}`.
pub fn encode_ack(chunk: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len() + 8);
    msgpack::write_map_len(&mut out, 1);
    msgpack::write_str(&mut out, "ack");
    msgpack::write_str(&mut out, chunk);
    out
}

/// Why the bytes read back were not an ack.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AckError {
    /// More bytes arrived than any ack needs.
    #[error("the server sent {len} bytes without completing an ack (limit {limit})")]
    TooLarge {
        /// Bytes buffered.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not MessagePack.
    #[error("the server's answer is not MessagePack: {0}")]
    Decode(DecodeError),
    /// MessagePack, but not a map with a string `ack`.
    #[error("the server's answer is not an ack: {0}")]
    NotAnAck(String),
}

/// Reads `{"ack": chunk}` answers from the bytes of a connection, as they come.
#[derive(Debug, Clone)]
pub struct AckDecoder {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for AckDecoder {
    fn default() -> Self {
        AckDecoder::new(AckDecoder::DEFAULT_LIMIT)
    }
}

impl AckDecoder {
    /// Bytes an unfinished ack may take by default (a chunk id is 24 base64 characters).
    pub const DEFAULT_LIMIT: usize = 4096;

    /// A decoder that refuses to buffer more than `limit` bytes of one answer.
    pub fn new(limit: usize) -> AckDecoder {
        AckDecoder {
            buf: Vec::new(),
            limit,
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), AckError> {
        let len = self.buf.len().saturating_add(bytes.len());
        if len > self.limit {
            return Err(AckError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete ack's chunk id, `None` until one has fully arrived.
    pub fn poll(&mut self) -> Result<Option<String>, AckError> {
        let limits = Limits {
            max_depth: 4,
            max_bytes: self.limit,
        };
        let (value, used) = match msgpack::decode(&self.buf, &limits) {
            Ok(v) => v,
            Err(DecodeError::Incomplete) => return Ok(None),
            Err(e) => return Err(AckError::Decode(e)),
        };
        self.buf.drain(..used);
        match &value {
            Value::Map(_) => match value.get("ack") {
                Some(Value::Str(chunk)) => Ok(Some(chunk.clone())),
                Some(other) => Err(AckError::NotAnAck(format!(
                    "`ack` is {other:?}, not a string"
                ))),
                None => Err(AckError::NotAnAck("a map without `ack`".into())),
            },
            other => Err(AckError::NotAnAck(format!("{other:?}"))),
        }
    }

    /// Bytes received after the last complete ack.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Which of the protocol's modes a message used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `[tag, time, record, option?]`.
    Message,
    /// `[tag, [[time, record], ...], option?]`.
    Forward,
    /// `[tag, bin|str, option?]`.
    PackedForward,
}

/// One `[time, record]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The event time.
    pub time: EventTime,
    /// The record (a map).
    pub record: Value,
}

/// The option map of a message (the keys tapelog knows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `size`: the number of entries.
    pub size: Option<u64>,
    /// `chunk`: the id to ack.
    pub chunk: Option<String>,
    /// `compressed` (`"gzip"` for CompressedPackedForward, refused here).
    pub compressed: Option<String>,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardMessage {
    /// The tag.
    pub tag: String,
    /// The mode it came in.
    pub mode: Mode,
    /// Its entries, in order.
    pub entries: Vec<Entry>,
    /// Its option map (empty when absent).
    pub options: Options,
}

/// Why bytes were not a Forward protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// Not MessagePack (or over the limits).
    #[error("not MessagePack: {0}")]
    Decode(DecodeError),
    /// A message bigger than the decoder's limit.
    #[error("a message of over {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// MessagePack, but not a message of any mode.
    #[error("not a Forward protocol message: {0}")]
    Shape(String),
    /// CompressedPackedForward, which this decoder does not inflate.
    #[error("compressed messages ({0}) are not supported")]
    Compressed(String),
    /// `size` disagrees with the entries.
    #[error("option size {declared} but {actual} entries")]
    SizeMismatch {
        /// The option's `size`.
        declared: u64,
        /// Entries found.
        actual: usize,
    },
}

fn shape(what: impl Into<String>) -> MessageError {
    MessageError::Shape(what.into())
}

/// Decodes one complete message (any mode but the compressed one) from `bytes`.
pub fn decode_message(bytes: &[u8], limits: &Limits) -> Result<ForwardMessage, MessageError> {
    let (value, used) = msgpack::decode(bytes, limits).map_err(MessageError::Decode)?;
    if used != bytes.len() {
        return Err(shape(format!(
            "{} bytes after the message",
            bytes.len() - used
        )));
    }
    let Value::Array(items) = value else {
        return Err(shape("the message is not an array"));
    };
    let mut items = items.into_iter();
    let tag = match items.next() {
        Some(Value::Str(tag)) if !tag.is_empty() => tag,
        Some(_) => return Err(shape("the tag is not a non-empty string")),
        None => return Err(shape("an empty array")),
    };
    let rest: Vec<Value> = items.collect();
    let (mode, entries, option) = match rest.as_slice() {
        [Value::Array(list), option @ ..] if option.len() <= 1 => {
            let entries = list.iter().map(entry_of).collect::<Result<Vec<_>, _>>()?;
            (Mode::Forward, entries, option.first())
        }
        [Value::Bin(packed), option @ ..] if option.len() <= 1 => (
            Mode::PackedForward,
            packed_entries(packed, limits, option.first())?,
            option.first(),
        ),
        [Value::Str(packed), option @ ..] if option.len() <= 1 => (
            Mode::PackedForward,
            packed_entries(packed.as_bytes(), limits, option.first())?,
            option.first(),
        ),
        [time, record, option @ ..] if option.len() <= 1 => {
            let entry = entry_of(&Value::Array(vec![time.clone(), record.clone()]))?;
            (Mode::Message, vec![entry], option.first())
        }
        _ => return Err(shape(format!("{} items after the tag", rest.len()))),
    };
    let options = options_of(option)?;
    if let Some(declared) = options.size
        && declared != entries.len() as u64
    {
        return Err(MessageError::SizeMismatch {
            declared,
            actual: entries.len(),
        });
    }
    Ok(ForwardMessage {
        tag,
        mode,
        entries,
        options,
    })
}

fn packed_entries(
    mut packed: &[u8],
    limits: &Limits,
    option: Option<&Value>,
) -> Result<Vec<Entry>, MessageError> {
    if let Some(c) = option.and_then(|o| o.get("compressed")) {
        return Err(MessageError::Compressed(format!("{c:?}")));
    }
    let mut entries = Vec::new();
    while !packed.is_empty() {
        let (value, used) = msgpack::decode(packed, limits).map_err(|e| match e {
            DecodeError::Incomplete => shape("the packed entries end inside an entry"),
            e => MessageError::Decode(e),
        })?;
        entries.push(entry_of(&value)?);
        packed = &packed[used..];
    }
    Ok(entries)
}

fn entry_of(v: &Value) -> Result<Entry, MessageError> {
    let Value::Array(pair) = v else {
        return Err(shape("an entry is not an array"));
    };
    let [time, record] = pair.as_slice() else {
        return Err(shape(format!("an entry of {} items, not 2", pair.len())));
    };
    let time =
        EventTime::from_value(time).ok_or_else(|| shape(format!("an entry's time is {time:?}")))?;
    if !matches!(record, Value::Map(_)) {
        return Err(shape("an entry's record is not a map"));
    }
    Ok(Entry {
        time,
        record: record.clone(),
    })
}

fn options_of(option: Option<&Value>) -> Result<Options, MessageError> {
    let mut out = Options::default();
    let Some(option) = option else {
        return Ok(out);
    };
    let Value::Map(entries) = option else {
        return Err(shape("the option is not a map"));
    };
    for (k, v) in entries {
        match (k.as_str(), v) {
            (Some("size"), Value::UInt(n)) => out.size = Some(*n),
            (Some("size"), _) => return Err(shape("option size is not a count")),
            (Some("chunk"), Value::Str(c)) => out.chunk = Some(c.clone()),
            (Some("chunk"), _) => return Err(shape("option chunk is not a string")),
            (Some("compressed"), Value::Str(c)) => out.compressed = Some(c.clone()),
            _ => {}
        }
    }
    if let Some(c) = &out.compressed {
        return Err(MessageError::Compressed(c.clone()));
    }
    Ok(out)
}

/// Reads messages from the bytes of a connection as they come (the receiver's side).
#[derive(Debug, Clone)]
pub struct MessageDecoder {
    buf: Vec<u8>,
    max_message: usize,
    limits: Limits,
}

impl MessageDecoder {
    /// A decoder that refuses messages over `max_message` bytes.
    pub fn new(max_message: usize) -> MessageDecoder {
        MessageDecoder {
            buf: Vec::new(),
            max_message,
            limits: Limits {
                max_bytes: max_message,
                ..Limits::default()
            },
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), MessageError> {
        if self.buf.len().saturating_add(bytes.len()) > self.max_message.saturating_mul(2) {
            return Err(MessageError::TooLarge {
                limit: self.max_message,
            });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete message, `None` until one has fully arrived.
    pub fn poll(&mut self) -> Result<Option<ForwardMessage>, MessageError> {
        let used = match msgpack::skip(&self.buf, &self.limits) {
            Ok(n) => n,
            Err(DecodeError::Incomplete) => {
                if self.buf.len() > self.max_message {
                    return Err(MessageError::TooLarge {
                        limit: self.max_message,
                    });
                }
                return Ok(None);
            }
            Err(e) => return Err(MessageError::Decode(e)),
        };
        if used > self.max_message {
            return Err(MessageError::TooLarge {
                limit: self.max_message,
            });
        }
        let message = decode_message(&self.buf[..used], &self.limits);
        self.buf.drain(..used);
        message.map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const NOW: EventTime = EventTime {
        seconds: 1_700_000_000,
        nanos: 5,
    };

    fn events() -> Vec<String> {
        vec![
            r#"{"event":"user.login","uid":"u1","code":"T1000I","time":"2024-05-01T10:11:12.345Z","ei":0,"success":true}"#.into(),
            r#"{"event":"session.start","sid":"7f3c","time":"2024-05-01T10:11:13+02:00","size":"80:25","bytes":-1,"ratio":0.5}"#.into(),
            r#"{"event":"no.time","nested":{"a":[1,2,{"b":null}]}}"#.into(),
        ]
    }

    #[test]
    fn a_batch_decodes_back_to_its_events() {
        let events = events();
        let bytes = encode_packed_forward("test.log", &events, "Y2h1bmsx", NOW).unwrap();
        let m = decode_message(&bytes, &Limits::default()).unwrap();
        assert_eq!(m.tag, "test.log");
        assert_eq!(m.mode, Mode::PackedForward);
        assert_eq!(m.options.size, Some(3));
        assert_eq!(m.options.chunk.as_deref(), Some("Y2h1bmsx"));
        assert_eq!(m.entries.len(), 3);
        for (entry, json) in m.entries.iter().zip(&events) {
            let want: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(entry.record.to_json().unwrap(), want);
        }
        assert_eq!(
            m.entries[0].time,
            EventTime {
                seconds: 1_714_558_272,
                nanos: 345_000_000
            }
        );
        // +02:00 is two hours earlier in UTC.
        assert_eq!(m.entries[1].time.seconds, 1_714_558_273 - 7200);
        assert_eq!(m.entries[2].time, NOW);
        assert_eq!(
            m.entries[0].record.get("ei"),
            Some(&Value::UInt(0)),
            "integers stay integers"
        );
        assert_eq!(m.entries[1].record.get("bytes"), Some(&Value::Int(-1)));
        assert_eq!(m.entries[1].record.get("ratio"), Some(&Value::F64(0.5)));
    }

    #[test]
    fn the_message_layout_is_byte_exact() {
        let bytes = encode_packed_forward(
            "t",
            &[r#"{"a":1,"time":"1970-01-01T00:00:02.000000003Z"}"#],
            "c",
            NOW,
        )
        .unwrap();
        let mut want = vec![0x93, 0xa1, b't'];
        let entry: Vec<u8> = [
            &[0x92][..],                               // [time, record]
            &[0xd7, 0x00, 0, 0, 0, 2, 0, 0, 0, 3][..], // fixext 8, type 0: 2 s, 3 ns
            &[0x82, 0xa1, b'a', 0x01][..],             // {"a": 1,
            &[0xa4, b't', b'i', b'm', b'e', 0xbe][..], //  "time": str of 30 bytes
            b"1970-01-01T00:00:02.000000003Z",
        ]
        .concat();
        want.extend_from_slice(&[0xc4, entry.len() as u8]); // bin 8
        want.extend_from_slice(&entry);
        want.extend_from_slice(&[0x82, 0xa4, b's', b'i', b'z', b'e', 0x01]);
        want.extend_from_slice(&[0xa5, b'c', b'h', b'u', b'n', b'k', 0xa1, b'c']);
        assert_eq!(bytes, want);
        assert_eq!(encode_ack("c"), [0x81, 0xa3, b'a', b'c', b'k', 0xa1, b'c']);
    }

    #[test]
    fn bad_events_name_their_index() {
        let ok = r#"{"a":1}"#;
        let e = |events: &[&str]| encode_packed_forward("t", events, "c", NOW).unwrap_err();
        assert!(matches!(
            e(&[ok, "{"]),
            EncodeError::InvalidJson { index: 1, .. }
        ));
        assert_eq!(e(&[ok, ok, "[1]"]), EncodeError::NotAnObject { index: 2 });
        assert!(matches!(
            e(&[r#"{"time":"yesterday"}"#]),
            EncodeError::BadTime { index: 0, .. }
        ));
        assert!(matches!(
            e(&[r#"{"time":"0001-01-01T00:00:00Z"}"#]),
            EncodeError::BadTime { index: 0, .. }
        ));
        assert_eq!(
            encode_packed_forward::<&str>("", &[], "c", NOW),
            Err(EncodeError::EmptyTag)
        );
        assert_eq!(
            encode_packed_forward::<&str>("t", &[], "", NOW),
            Err(EncodeError::EmptyChunk)
        );
    }

    #[test]
    fn acks_decode_from_partial_reads() {
        let mut bytes = encode_ack("QUJD");
        bytes.extend(encode_ack("REVG"));
        for split in 0..bytes.len() {
            let mut d = AckDecoder::default();
            let mut got = Vec::new();
            for part in [&bytes[..split], &bytes[split..]] {
                d.push(part).unwrap();
                while let Some(chunk) = d.poll().unwrap() {
                    got.push(chunk);
                }
            }
            assert_eq!(got, ["QUJD", "REVG"], "split at {split}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn bad_acks_are_typed() {
        let mut d = AckDecoder::new(16);
        assert!(matches!(
            d.push(&[0xa0; 17]),
            Err(AckError::TooLarge { len: 17, limit: 16 })
        ));
        let mut d = AckDecoder::default();
        d.push(&[0xc1]).unwrap();
        assert!(matches!(d.poll(), Err(AckError::Decode(_))));
        let mut d = AckDecoder::default();
        d.push(&[0x81, 0xa1, b'x', 0x01]).unwrap();
        assert!(matches!(d.poll(), Err(AckError::NotAnAck(_))));
        let mut d = AckDecoder::default();
        d.push(&[0x81, 0xa3, b'a', b'c', b'k', 0x01]).unwrap();
        assert!(matches!(d.poll(), Err(AckError::NotAnAck(_))));
        // A string header that promises more than the limit fails at once.
        let mut d = AckDecoder::new(64);
        d.push(&[0x81, 0xa3, b'a', b'c', b'k', 0xdb, 0xff, 0xff, 0xff, 0xff])
            .unwrap();
        assert!(matches!(
            d.poll(),
            Err(AckError::Decode(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn every_mode_decodes_and_streams_in_pieces() {
        let record = Value::Map(vec![(Value::Str("k".into()), Value::Str("v".into()))]);
        let time = Value::Ext(0, NOW.to_bytes().to_vec());
        let entry = Value::Array(vec![time.clone(), record.clone()]);
        let message = Value::Array(vec![Value::Str("a.b".into()), time, record.clone()]);
        let forward = Value::Array(vec![
            Value::Str("a.b".into()),
            Value::Array(vec![
                entry.clone(),
                Value::Array(vec![Value::UInt(7), record.clone()]),
            ]),
            Value::Map(vec![(Value::Str("size".into()), Value::UInt(2))]),
        ]);
        let mut stream = Vec::new();
        msgpack::write_value(&mut stream, &message);
        msgpack::write_value(&mut stream, &forward);
        stream.extend(encode_packed_forward("p", &events(), "id", NOW).unwrap());
        let mut d = MessageDecoder::new(1 << 20);
        let mut got = Vec::new();
        for byte in &stream {
            d.push(std::slice::from_ref(byte)).unwrap();
            while let Some(m) = d.poll().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got.iter().map(|m| m.mode).collect::<Vec<_>>(),
            [Mode::Message, Mode::Forward, Mode::PackedForward]
        );
        assert_eq!(
            got[0].entries,
            vec![Entry {
                time: NOW,
                record: record.clone()
            }]
        );
        assert_eq!(
            got[1].entries[1].time,
            EventTime {
                seconds: 7,
                nanos: 0
            }
        );
        assert_eq!(got[2].entries.len(), 3);
    }

    #[test]
    fn bad_messages_are_typed() {
        let limits = Limits::default();
        let enc = |v: &Value| {
            let mut b = Vec::new();
            msgpack::write_value(&mut b, v);
            b
        };
        let s = |x: &str| Value::Str(x.into());
        assert!(matches!(
            decode_message(&enc(&Value::UInt(1)), &limits),
            Err(MessageError::Shape(_))
        ));
        assert!(matches!(
            decode_message(
                &enc(&Value::Array(vec![s(""), Value::Array(vec![])])),
                &limits
            ),
            Err(MessageError::Shape(_))
        ));
        let size3 = Value::Map(vec![(s("size"), Value::UInt(3))]);
        assert_eq!(
            decode_message(
                &enc(&Value::Array(vec![s("t"), Value::Array(vec![]), size3])),
                &limits
            ),
            Err(MessageError::SizeMismatch {
                declared: 3,
                actual: 0
            })
        );
        let gz = Value::Map(vec![(s("compressed"), s("gzip"))]);
        assert!(matches!(
            decode_message(
                &enc(&Value::Array(vec![s("t"), Value::Bin(vec![]), gz])),
                &limits
            ),
            Err(MessageError::Compressed(_))
        ));
        // Packed entries cut short.
        assert!(matches!(
            decode_message(
                &enc(&Value::Array(vec![s("t"), Value::Bin(vec![0x92, 0x01])])),
                &limits
            ),
            Err(MessageError::Shape(_))
        ));
        let mut d = MessageDecoder::new(32);
        d.push(&[0xdd, 0, 0, 0, 40]).unwrap();
        d.push(&[0xc0; 40]).unwrap();
        assert!(matches!(
            d.poll(),
            Err(MessageError::TooLarge { limit: 32 })
        ));
    }
}
