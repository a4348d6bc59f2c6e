//! The audit event model: every member of Teleport's `events.OneOf` as a Rust type, the
//! [`AuditEvent`] enum over them, Teleport's JSON both ways, the dynamic [`EventFields`] view,
//! the event type/code tables, `TrimToMaxSize` and the emitters' checks
//! (`checkAndSetEventFields`).
//!
//! The message types are generated from `core/events/proto/events.proto` by `core/events/build.rs`; their
//! field numbers and JSON names are upstream Teleport's.

mod check;
mod fields;
pub mod trim;

use serde_json::Value;
use thiserror::Error;

pub use check::{FieldsError, check_and_set_event_fields, is_too_verbose_to_log, is_uncoded};
pub use fields::EventFields;

use crate::json::{JsonError, JsonFields, ObjectWriter, ToJson};
use crate::proto::{DecodeError, Message, Timestamp, WireType};

/// The generated message types (one per protobuf message of the schema).
#[allow(
    missing_docs,
    non_camel_case_types,
    clippy::all,
    clippy::pedantic,
    unused_imports,
    unused_qualifications
)]
pub mod schema {
    include!(concat!(env!("OUT_DIR"), "/schema.rs"));
}

#[allow(clippy::all, missing_docs)]
mod tables {
    include!(concat!(env!("OUT_DIR"), "/tables.rs"));
}

pub use schema::*;
pub use tables::{EVENT_CODES, EVENT_TYPES, event_code, event_type, message_for};

/// Largest protobuf event Teleport writes into a recording (`MaxProtoMessageSizeBytes`).
pub const MAX_EVENT_SIZE: usize = 64 * 1024;
/// `Unknown` events' type (`events.UnknownEvent`).
pub const UNKNOWN_EVENT_TYPE: &str = "unknown";
/// `Unknown` events' code (`events.UnknownCode`).
pub const UNKNOWN_EVENT_CODE: &str = "TCC00E";

/// One row of the event type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypeInfo {
    /// The `event` string, e.g. `session.start`.
    pub event_type: &'static str,
    /// Teleport's Go constant, e.g. `SessionStartEvent`.
    pub go_const: &'static str,
    /// The protobuf message Teleport builds for it, if any.
    pub message: Option<&'static str>,
    /// Codes that select this message when one type maps to several messages.
    pub codes: &'static [&'static str],
}

/// One row of the event code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCodeInfo {
    /// The code, e.g. `T2000I`.
    pub code: &'static str,
    /// Teleport's Go constant, e.g. `SessionStartCode`.
    pub go_const: &'static str,
    /// The event type it is used with, or "" when the table does not say.
    pub event_type: &'static str,
}

/// Common metadata accessors that every event kind implements (generated).
pub trait EventKind {
    /// `Metadata` (index, type, id, code, time, cluster).
    fn metadata(&self) -> Option<&Metadata>;
    /// Mutable `Metadata`.
    fn metadata_mut(&mut self) -> Option<&mut Metadata>;
    /// `SessionMetadata`, for session events.
    fn session_metadata(&self) -> Option<&SessionMetadata>;
    /// Mutable `SessionMetadata`.
    fn session_metadata_mut(&mut self) -> Option<&mut SessionMetadata>;
    /// `UserMetadata`, for events done by a user.
    fn user_metadata(&self) -> Option<&UserMetadata>;
    /// Mutable `UserMetadata`.
    fn user_metadata_mut(&mut self) -> Option<&mut UserMetadata>;
    /// `ServerMetadata`, for events on a host.
    fn server_metadata(&self) -> Option<&ServerMetadata>;
    /// Mutable `ServerMetadata`.
    fn server_metadata_mut(&mut self) -> Option<&mut ServerMetadata>;
    /// `ConnectionMetadata`.
    fn connection_metadata(&self) -> Option<&ConnectionMetadata>;
    /// Mutable `ConnectionMetadata`.
    fn connection_metadata_mut(&mut self) -> Option<&mut ConnectionMetadata>;
}

/// An event whose `OneOf` member this build does not know (a newer Teleport's event): its
/// bytes are kept and written back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// The `OneOf` field number.
    pub field: u32,
    /// The whole encoded `OneOf` message.
    pub oneof_bytes: Vec<u8>,
    /// The event's metadata (field 1 of every event), when it could be read.
    pub metadata: Option<Metadata>,
}

impl RawEvent {
    /// The member's message bytes (the record without its key and length).
    pub fn body(&self) -> &[u8] {
        match last_member(&self.oneof_bytes) {
            Ok(Some((_, body))) => body,
            _ => &self.oneof_bytes,
        }
    }

    /// Its JSON (docs/schema.md, "Events this build does not know"): the `Metadata` fields
    /// when they could be read (`event` and `code` become `unknown` / `TCC00E` when the
    /// metadata has no type), then `unknown_member` (the `OneOf` field number) and
    /// `unknown_body` (the member's message bytes, base64), so nothing is lost.
    fn write_json_fields(&self, w: &mut ObjectWriter<'_>) {
        let typed = self.metadata.as_ref().filter(|m| !m.type_.is_empty());
        match typed {
            Some(m) => m.write_json_fields(w),
            None => {
                let mut m = self.metadata.clone().unwrap_or_default();
                m.type_ = UNKNOWN_EVENT_TYPE.to_string();
                m.code = UNKNOWN_EVENT_CODE.to_string();
                m.write_json_fields(w);
            }
        }
        w.int("unknown_member", self.field);
        w.bytes("unknown_body", self.body());
    }
}

/// Errors of the event model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    /// The bytes are not a valid `OneOf`.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A `OneOf` with no event in it (Teleport: "failed to parse event, session record is corrupted").
    #[error("empty OneOf: the record holds no event")]
    EmptyOneOf,
    /// JSON that is not an event.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// An event larger than the limit even after trimming.
    #[error(
        "{event_type} event of {size} bytes exceeds the maximum of {max} bytes even after trimming"
    )]
    TooLarge {
        /// Its type.
        event_type: String,
        /// Its encoded size after trimming.
        size: usize,
        /// The limit.
        max: usize,
    },
}

macro_rules! define_audit_event {
    ($(($n:literal, $v:ident, $t:ident)),* $(,)?) => {
        /// One audit event: a member of Teleport's `events.OneOf`, or one this build does not
        /// know, kept as raw bytes.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum AuditEvent {
            $(
                #[doc = concat!("`", stringify!($t), "` (OneOf field ", stringify!($n), ").")]
                $v(Box<$t>),
            )*
            /// An event kind this build does not know.
            Unrecognized(RawEvent),
        }

        $(
            impl From<$t> for AuditEvent {
                fn from(e: $t) -> Self {
                    AuditEvent::$v(Box::new(e))
                }
            }
        )*

        /// Every event kind this build knows: `(OneOf field number, message name)`.
        pub const EVENT_KINDS: &[(u32, &str)] = &[$(($n, stringify!($t)),)*];

        impl AuditEvent {
            /// A random event of the kind with this OneOf field number (feature `random`).
            #[cfg(feature = "random")]
            pub fn random_of(field: u32, r: &mut crate::random::Rng) -> Option<AuditEvent> {
                use crate::random::Random as _;
                match field {
                    $($n => Some(AuditEvent::$v(Box::new($t::random(r, 0)))),)*
                    _ => None,
                }
            }

            /// The `OneOf` field number of this event kind.
            pub fn oneof_field(&self) -> u32 {
                match self {
                    $(AuditEvent::$v(_) => $n,)*
                    AuditEvent::Unrecognized(r) => r.field,
                }
            }

            /// The protobuf message name of this event kind (`"Unrecognized"` for raw ones).
            pub fn message_name(&self) -> &'static str {
                match self {
                    $(AuditEvent::$v(_) => stringify!($t),)*
                    AuditEvent::Unrecognized(_) => "Unrecognized",
                }
            }

            /// The event's `Metadata`.
            pub fn metadata(&self) -> Option<&Metadata> {
                match self {
                    $(AuditEvent::$v(e) => e.metadata(),)*
                    AuditEvent::Unrecognized(r) => r.metadata.as_ref(),
                }
            }

            /// The event's `Metadata`, mutable (None for raw events: their bytes are fixed).
            pub fn metadata_mut(&mut self) -> Option<&mut Metadata> {
                match self {
                    $(AuditEvent::$v(e) => e.metadata_mut(),)*
                    AuditEvent::Unrecognized(_) => None,
                }
            }

            /// The event's `SessionMetadata`, for session events.
            pub fn session_metadata(&self) -> Option<&SessionMetadata> {
                match self {
                    $(AuditEvent::$v(e) => e.session_metadata(),)*
                    AuditEvent::Unrecognized(_) => None,
                }
            }

            /// The event's `SessionMetadata`, mutable.
            pub fn session_metadata_mut(&mut self) -> Option<&mut SessionMetadata> {
                match self {
                    $(AuditEvent::$v(e) => e.session_metadata_mut(),)*
                    AuditEvent::Unrecognized(_) => None,
                }
            }

            /// The event's `UserMetadata`.
            pub fn user_metadata(&self) -> Option<&UserMetadata> {
                match self {
                    $(AuditEvent::$v(e) => e.user_metadata(),)*
                    AuditEvent::Unrecognized(_) => None,
                }
            }

            /// The event's `ServerMetadata`.
            pub fn server_metadata(&self) -> Option<&ServerMetadata> {
                match self {
                    $(AuditEvent::$v(e) => e.server_metadata(),)*
                    AuditEvent::Unrecognized(_) => None,
                }
            }

            /// The event's `ServerMetadata`, mutable.
            pub fn server_metadata_mut(&mut self) -> Option<&mut ServerMetadata> {
                match self {
                    $(AuditEvent::$v(e) => e.server_metadata_mut(),)*
                    AuditEvent::Unrecognized(_) => None,
                }
            }

            /// The event's `ConnectionMetadata`.
            pub fn connection_metadata(&self) -> Option<&ConnectionMetadata> {
                match self {
                    $(AuditEvent::$v(e) => e.connection_metadata(),)*
                    AuditEvent::Unrecognized(_) => None,
                }
            }

            /// Encoded size of the event message itself (Go's `event.Size()`).
            pub fn size(&self) -> usize {
                match self {
                    $(AuditEvent::$v(e) => e.encoded_len(),)*
                    AuditEvent::Unrecognized(r) => {
                        let mut b = &r.oneof_bytes[..];
                        match (crate::proto::read_key(&mut b), crate::proto::read_varint(&mut b)) {
                            (Ok(_), Ok(len)) => len as usize,
                            _ => r.oneof_bytes.len(),
                        }
                    }
                }
            }

            /// Encoded size of the `OneOf` record holding this event.
            pub fn oneof_len(&self) -> usize {
                match self {
                    $(AuditEvent::$v(e) => crate::proto::message_field_len($n, &**e),)*
                    AuditEvent::Unrecognized(r) => r.oneof_bytes.len(),
                }
            }

            /// [`oneof_len`](Self::oneof_len) when [`size`](Self::size) is already known.
            pub fn oneof_len_for_size(&self, size: usize) -> usize {
                match self {
                    $(AuditEvent::$v(_) => crate::proto::len_field_len($n, size),)*
                    AuditEvent::Unrecognized(r) => r.oneof_bytes.len(),
                }
            }

            /// [`encode_oneof`](Self::encode_oneof) when [`size`](Self::size) is already
            /// known (saves walking the event once more to measure it).
            pub fn encode_oneof_sized(&self, buf: &mut Vec<u8>, size: usize) {
                match self {
                    $(AuditEvent::$v(e) => {
                        crate::proto::put_key(buf, $n, WireType::Len);
                        crate::proto::put_varint(buf, size as u64);
                        e.encode_raw(buf);
                    })*
                    AuditEvent::Unrecognized(r) => buf.extend_from_slice(&r.oneof_bytes),
                }
            }

            /// Appends the `OneOf` record holding this event.
            pub fn encode_oneof(&self, buf: &mut Vec<u8>) {
                match self {
                    $(AuditEvent::$v(e) => crate::proto::put_message_field(buf, $n, &**e),)*
                    AuditEvent::Unrecognized(r) => buf.extend_from_slice(&r.oneof_bytes),
                }
            }

            /// The member `field` decoded from its message bytes `body` as its type; `None`
            /// for a member this build does not know.
            fn decode_member(field: u32, mut body: &[u8]) -> Option<Result<AuditEvent, DecodeError>> {
                Some(match field {
                    $($n => {
                        let mut e = $t::default();
                        crate::proto::merge_message(&mut e, &mut body, 1)
                            .map(|()| AuditEvent::$v(Box::new(e)))
                    })*
                    _ => return None,
                })
            }

            fn write_fields(&self, w: &mut ObjectWriter<'_>) {
                match self {
                    $(AuditEvent::$v(e) => e.write_json_fields(w),)*
                    AuditEvent::Unrecognized(r) => r.write_json_fields(w),
                }
            }

            /// Builds the event from JSON as the message named `message` (a OneOf member's type).
            pub fn from_json_object_as(
                message: &str,
                obj: &serde_json::Map<String, Value>,
            ) -> Option<Result<AuditEvent, JsonError>> {
                Some(match message {
                    $(stringify!($t) => {
                        let mut e = $t::default();
                        e.merge_json_object(obj).map(|()| AuditEvent::$v(Box::new(e)))
                    })*
                    _ => return None,
                })
            }

            /// As [`AuditEvent::from_json_object_as`], with the direct reader (`json/direct.rs`).
            fn from_json_members_as(
                message: &str,
                members: &crate::json::direct::Members<'_>,
            ) -> Option<Result<AuditEvent, crate::json::direct::Decline>> {
                Some(match message {
                    $(stringify!($t) => {
                        let mut e = $t::default();
                        members.merge_into(&mut e).map(|()| AuditEvent::$v(Box::new(e)))
                    })*
                    _ => return None,
                })
            }

            /// `TrimToMaxSize`: the event with its trimmable fields cut so that it fits
            /// `max_size` bytes, as Teleport does it.
            pub fn trim_to_max_size(&self, max_size: usize) -> AuditEvent {
                match self {
                    $(AuditEvent::$v(e) => AuditEvent::$v(Box::new(trim::trim_to_max_size(&**e, max_size))),)*
                    AuditEvent::Unrecognized(r) => AuditEvent::Unrecognized(r.clone()),
                }
            }
        }
    };
}

schema::with_event_kinds!(define_audit_event);

/// Teleport's JSON in any serde format (see `json/serde_impl.rs`): what [`AuditEvent::to_json`]
/// writes, member for member.
impl serde::Serialize for AuditEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::json::serialize_json_text(&self.to_json(), s)
    }
}

/// Reads what [`AuditEvent::from_json`] reads, from any self-describing serde format.
impl<'de> serde::Deserialize<'de> for AuditEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = crate::json::deserialize_json_value(d)?;
        AuditEvent::from_json_value(&v, None).map_err(crate::json::de_error)
    }
}

impl AuditEvent {
    /// Decodes one `OneOf` record.
    ///
    /// The member that counts is the last length-delimited field of the record (protobuf's
    /// rule for a `oneof` seen twice). A member this build does not know, or a known member
    /// whose body does not decode as its type, is kept whole as a [`RawEvent`] (with its
    /// `Metadata` when that can be read), so that a recording from a newer Teleport never
    /// fails to decode and writes back byte for byte. Only a record that is not protobuf at
    /// all, or has no member, is an error ([`EventError::EmptyOneOf`]).
    pub fn decode_oneof(bytes: &[u8]) -> Result<AuditEvent, EventError> {
        let (field, body) = last_member(bytes)?.ok_or(EventError::EmptyOneOf)?;
        if let Some(Ok(e)) = AuditEvent::decode_member(field, body) {
            return Ok(e);
        }
        Ok(AuditEvent::Unrecognized(RawEvent {
            field,
            oneof_bytes: bytes.to_vec(),
            metadata: raw_metadata(body),
        }))
    }

    /// The `OneOf` record as bytes.
    pub fn to_oneof_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.oneof_len());
        self.encode_oneof(&mut b);
        b
    }

    /// Event index within its session (`ei`).
    pub fn index(&self) -> i64 {
        self.metadata().map_or(0, |m| m.index)
    }
    /// Sets the event index (no effect on raw events).
    pub fn set_index(&mut self, index: i64) {
        if let Some(m) = self.metadata_mut() {
            m.index = index;
        }
    }
    /// Event type (`event`), e.g. `session.start`.
    pub fn event_type(&self) -> &str {
        self.metadata().map_or("", |m| m.type_.as_str())
    }
    /// Event code (`code`), e.g. `T2000I`.
    pub fn code(&self) -> &str {
        self.metadata().map_or("", |m| m.code.as_str())
    }
    /// Unique event id (`uid`).
    pub fn id(&self) -> &str {
        self.metadata().map_or("", |m| m.id.as_str())
    }
    /// Event time.
    pub fn time(&self) -> Timestamp {
        self.metadata().map_or(Timestamp::ZERO, |m| m.time)
    }
    /// Sets the event time (no effect on raw events).
    pub fn set_time(&mut self, t: Timestamp) {
        if let Some(m) = self.metadata_mut() {
            m.time = t;
        }
    }
    /// Cluster name.
    pub fn cluster_name(&self) -> &str {
        self.metadata().map_or("", |m| m.cluster_name.as_str())
    }
    /// Session id (`sid`), for session events.
    pub fn session_id(&self) -> &str {
        self.session_metadata()
            .map_or("", |m| m.session_id.as_str())
    }
    /// Teleport user.
    pub fn user(&self) -> &str {
        self.user_metadata().map_or("", |m| m.user.as_str())
    }
    /// OS login.
    pub fn login(&self) -> &str {
        self.user_metadata().map_or("", |m| m.login.as_str())
    }
    /// Server id.
    pub fn server_id(&self) -> &str {
        self.server_metadata().map_or("", |m| m.server_id.as_str())
    }

    /// Terminal bytes of a `print` event.
    pub fn print_data(&self) -> Option<&[u8]> {
        match self {
            AuditEvent::SessionPrint(p) => Some(&p.data),
            _ => None,
        }
    }

    /// Teleport's JSON for the event (one line, no newline).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_json(&mut out);
        out
    }

    /// Parses Teleport's JSON for an event. The `event` (and `code`) fields choose the message
    /// as Teleport's `FromEventFields` does; an unknown type becomes an `Unknown` event that
    /// keeps the original JSON, as upstream.
    ///
    /// The common case is read without a `serde_json::Value` tree ([`AuditEvent::from_json_direct`]);
    /// anything else, errors included, by the `Value` reader ([`AuditEvent::from_json_value`]).
    pub fn from_json(text: &str) -> Result<AuditEvent, EventError> {
        if let Some(e) = AuditEvent::from_json_direct(text) {
            return Ok(e);
        }
        let v: Value = serde_json::from_str(text).map_err(|e| JsonError::Syntax(e.to_string()))?;
        AuditEvent::from_json_value(&v, Some(text))
    }

    /// The event [`AuditEvent::from_json`] reads from `text`, when the direct reader
    /// (`json/direct.rs`: values read from the text straight into the event's fields) can
    /// vouch for it: a known type (`event`, `code`) whose message accepts every member.
    /// `None` otherwise — unknown types, the SFTP fallback, anything wrong — and then only
    /// the `Value` reader says what the text is. Never an event that reader would not give.
    pub fn from_json_direct(text: &str) -> Option<AuditEvent> {
        use crate::json::direct::Members;
        let members = Members::parse(text, 1).ok()?;
        let event_type = members.get("event")?.str().ok()?;
        if event_type.is_empty() {
            return None;
        }
        let code = match members.get("code") {
            None => std::borrow::Cow::Borrowed(""),
            Some(raw) if raw.is_null() => std::borrow::Cow::Borrowed(""),
            Some(raw) => raw.str().ok()?,
        };
        let message = message_for(&event_type, &code)?;
        AuditEvent::from_json_members_as(message, &members)?.ok()
    }

    /// As [`AuditEvent::from_json`], from a parsed value (`raw` is the original text, kept by
    /// `Unknown` events; rebuilt from the value when absent).
    pub fn from_json_value(v: &Value, raw: Option<&str>) -> Result<AuditEvent, EventError> {
        let Value::Object(obj) = v else {
            return Err(JsonError::wrong("(event)", "an object", v).into());
        };
        let event_type = match obj.get("event") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(other) if !other.is_null() => {
                return Err(JsonError::wrong("event", "a string", other).into());
            }
            _ => return Err(JsonError::MissingType.into()),
        };
        let code = obj.get("code").and_then(Value::as_str).unwrap_or("");
        // As upstream: a type whose message does not accept the fields falls back to
        // `unknown` (keeping the JSON); only when even that fails is it an error, and then the
        // typed error is the one reported because it names the field at fault.
        let mut typed_error = None;
        if let Some(message) = message_for(event_type, code) {
            match AuditEvent::from_json_object_as(message, obj) {
                Some(Ok(e)) => return Ok(e),
                Some(Err(e)) => typed_error = Some(e),
                None => {}
            }
            // Teleport once wrote some SFTP events as `scp` with code T3010E; upstream reads
            // those back as SFTP events (gravitational/teleport#59469).
            if event_type == event_type::SCP
                && code == event_code::SCP_DISALLOWED
                && let Some(Ok(AuditEvent::SFTP(mut e))) =
                    AuditEvent::from_json_object_as("SFTP", obj)
            {
                e.metadata.type_ = event_type::SFTP.to_string();
                e.metadata.code = event_code::SFTP_DISALLOWED.to_string();
                return Ok(AuditEvent::SFTP(e));
            }
        }
        let mut unknown = Unknown::default();
        if let Err(e) = unknown.merge_json_object(obj) {
            return Err(typed_error.unwrap_or(e).into());
        }
        unknown.metadata.type_ = UNKNOWN_EVENT_TYPE.to_string();
        unknown.metadata.code = UNKNOWN_EVENT_CODE.to_string();
        unknown.unknown_type = event_type.to_string();
        unknown.unknown_code = code.to_string();
        // Upstream marshals the fields it decoded (`json.Marshal` over a map), not the line.
        let mut data = String::with_capacity(raw.map_or(256, str::len));
        crate::json::write_go_marshal_value(&mut data, v);
        unknown.data = data;
        Ok(AuditEvent::Unknown(Box::new(unknown)))
    }

    /// Applies Teleport's size rule for recordings: an event over `max` bytes is trimmed
    /// (`TrimToMaxSize`); if it still does not fit it is refused with [`EventError::TooLarge`].
    pub fn fit_to_size(self, max: usize) -> Result<AuditEvent, EventError> {
        if self.size() <= max {
            return Ok(self);
        }
        let trimmed = self.trim_to_max_size(max);
        let size = trimmed.size();
        if size > max {
            return Err(EventError::TooLarge {
                event_type: self.event_type().to_string(),
                size,
                max,
            });
        }
        Ok(trimmed)
    }
}

impl ToJson for AuditEvent {
    fn write_json(&self, out: &mut String) {
        let mut w = ObjectWriter::begin(out);
        self.write_fields(&mut w);
        w.end();
    }
}

/// The last length-delimited field of a `OneOf` record (the member that counts) and its
/// body; `None` when there is none. Errors only when the record itself is not protobuf.
#[doc(hidden)] // for the codec's record reader in tapelog-core
pub fn last_member(oneof: &[u8]) -> Result<Option<(u32, &[u8])>, DecodeError> {
    let mut buf = oneof;
    let mut last = None;
    while !buf.is_empty() {
        let (field, wt) = crate::proto::read_key(&mut buf)?;
        if wt == WireType::Len {
            last = Some((field, crate::proto::read_len_bytes(&mut buf, "an event")?));
        } else {
            crate::proto::skip_value(wt, &mut buf)?;
        }
    }
    Ok(last)
}

/// Reads field 1 (`Metadata`) of an event message kept raw: `None` unless the whole body is
/// protobuf and every `Metadata` in it decodes.
fn raw_metadata(mut body: &[u8]) -> Option<Metadata> {
    let mut meta: Option<Metadata> = None;
    while !body.is_empty() {
        let (field, wt) = crate::proto::read_key(&mut body).ok()?;
        if field == 1 && wt == WireType::Len {
            let m = meta.get_or_insert_with(Metadata::default);
            crate::proto::merge_nested(m, &mut body, 0).ok()?;
        } else {
            crate::proto::skip_value(wt, &mut body).ok()?;
        }
    }
    meta
}
