//! serde for the event model: [`AuditEvent`](crate::event::AuditEvent) and every generated
//! message implement `serde::Serialize` and `serde::Deserialize` as Teleport's JSON, so an
//! event can go into any serde format (CBOR, MessagePack, YAML, a `serde_json::Value` …).
//!
//! - `Serialize` hands the serializer the document the JSON writer ([`ToJson`](crate::json::ToJson)) prints,
//!   member for member in its order, with its omission rules and its value spellings (times as
//!   RFC 3339 strings, bytes as base64, durations as nanoseconds). `serde_json::to_string` of
//!   an event is therefore [`ToJson`](crate::json::ToJson)'s text, except the spelling of a float that Go writes in
//!   plain notation and serde_json in exponent notation (or the other way round; only free-form
//!   `Struct` fields hold floats): the value is the same.
//! - `Deserialize` reads any self-describing format into a JSON value and then through the JSON
//!   reader ([`FromJson`](crate::json::FromJson) rules: exact keys first, then
//!   case-insensitively, unknown keys ignored; an event's `event` and `code` choose its type).
//!
//! The writer and reader stay the one place that knows Teleport's JSON: these impls go through
//! them (a JSON text parsed into an ordered tree on the way out), so they cost a little more
//! than [`ToJson`](crate::json::ToJson) and `from_json` themselves, which stay the fast path.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Number;

/// A JSON document with its object members kept in order (serde_json's `Value` sorts them).
enum Ordered {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ordered::Null => s.serialize_unit(),
            Ordered::Bool(b) => s.serialize_bool(*b),
            Ordered::Number(n) => n.serialize(s),
            Ordered::String(v) => s.serialize_str(v),
            Ordered::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Ordered::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Ordered;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Ordered, E> {
        Ok(Ordered::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
        Ok(Ordered::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
        Ok(Ordered::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
        Ok(Ordered::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
        Ok(Number::from_f64(v).map_or(Ordered::Null, Ordered::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
        Ok(Ordered::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Ordered, E> {
        Ok(Ordered::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Ordered::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
            members.push((k, v));
        }
        Ok(Ordered::Object(members))
    }
}

/// Serializes the JSON document `text` (written by [`ToJson`](crate::json::ToJson)) into `s`, members in order.
pub(crate) fn serialize_json_text<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    let doc: Ordered = serde_json::from_str(text)
        .map_err(|e| S::Error::custom(format!("the JSON writer printed invalid JSON: {e}")))?;
    doc.serialize(s)
}

/// Reads any self-describing input as a JSON value (for the JSON reader).
pub(crate) fn deserialize_json_value<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Value, D::Error> {
    serde_json::Value::deserialize(d)
}

/// A reader error as the deserializer's error.
pub(crate) fn de_error<E: de::Error>(e: impl std::fmt::Display) -> E {
    E::custom(e)
}

/// `Serialize` and `Deserialize` for a generated message, through its JSON writer and reader.
macro_rules! serde_via_json {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::json::serialize_json_text(&$crate::json::to_string(self), s)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = $crate::json::deserialize_json_value(d)?;
                $crate::json::from_json_value(&v, stringify!($t)).map_err($crate::json::de_error)
            }
        }
    };
}
pub(crate) use serde_via_json;
