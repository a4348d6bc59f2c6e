//! The direct JSON reader: an object is read as (key, value text) pairs — the values left as
//! slices of the input (serde_json's `RawValue`), the keys borrowed when they hold no escape —
//! and each value is read straight into the field it sets. No `serde_json::Value` tree is
//! built for the common fields (strings, times, nested messages), and no key is copied.
//!
//! It is written here, not as a serde `Deserialize` per message, because it must give exactly
//! what the `Value` reader ([`super::from_json_value`], `JsonFields::merge_json_object`) gives,
//! and that reader has rules a streaming deserializer does not: the last of duplicate keys
//! wins, keys are taken in sorted order (a `BTreeMap`), exact names before case-insensitive
//! ones, `null` leaves a field as is, and every value is checked as serde_json checks it for a
//! `Value` (numbers in range, no lone surrogate, nesting depth) even when no field reads it.
//!
//! The reader never reports an error of its own: on anything it is not sure of (a value of the
//! wrong kind, an escape it would have to judge, a deep value) it *declines* ([`Decline`]),
//! and the caller reads the text again with the `Value` reader, which gives the event or the
//! error. So an event read here is always the `Value` reader's event, and errors are always
//! the `Value` reader's errors.

use std::borrow::Cow;

use serde::Deserializer as _;
use serde::de::{self, Deserialize, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::read::{JsonError, JsonFields};
use crate::proto::Timestamp;

/// The direct reader cannot vouch for the result: read the text with the `Value` reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decline;

impl From<JsonError> for Decline {
    fn from(_: JsonError) -> Decline {
        Decline
    }
}

/// Nesting depth past which the direct reader declines. serde_json refuses a document nested
/// deeper than 128; values read through a `Value` of their own are checked against this lower
/// bound, counted from the top of the whole document, so that the direct reader never accepts
/// a document the `Value` reader would refuse as too deep.
const MAX_DEPTH: u32 = 100;

/// One member's value: its JSON text, and how deep it sits in the document (the top-level
/// object's members are at depth 1).
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    text: &'a str,
    depth: u32,
}

/// The members of one JSON object as the `Value` reader sees them: sorted by key (byte
/// order, as `BTreeMap<String, _>`), the last of duplicate keys kept.
#[derive(Debug)]
pub struct Members<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
    depth: u32,
}

/// A key, borrowed from the input when it holds no escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Key)
    }
}

/// Reads a JSON string as text, borrowed when it holds no escape.
struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Collects an object's members in document order.
struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(24));
        while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

/// The text of a JSON string value, borrowed when it holds no escape.
fn str_of(text: &str) -> Result<Cow<'_, str>, Decline> {
    let mut d = serde_json::Deserializer::from_str(text);
    let s = d.deserialize_str(StrVisitor).map_err(|_| Decline)?;
    d.end().map_err(|_| Decline)?;
    Ok(s)
}

impl<'a> Members<'a> {
    /// The members of the object `text` (nothing but the object and white space), whose
    /// members sit at `depth` (1 for a document that is the object).
    pub fn parse(text: &'a str, depth: u32) -> Result<Members<'a>, Decline> {
        if depth > MAX_DEPTH {
            return Err(Decline);
        }
        let mut d = serde_json::Deserializer::from_str(text);
        let mut members = d.deserialize_map(MembersVisitor).map_err(|_| Decline)?;
        d.end().map_err(|_| Decline)?;
        // Sorted by key, equal keys kept in document order (a stable sort), then only the
        // last of each key kept: what inserting them one by one into a `BTreeMap` gives.
        if !members.is_sorted_by(|a, b| a.0 < b.0) {
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let mut kept: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(members.len());
            for m in members {
                if let Some(last) = kept.last_mut()
                    && last.0 == m.0
                {
                    // The value replaced must still be one the `Value` reader accepts.
                    check_ignored(Raw {
                        text: last.1.get(),
                        depth,
                    })?;
                    *last = m;
                } else {
                    kept.push(m);
                }
            }
            members = kept;
        }
        Ok(Members { members, depth })
    }

    /// The value of the member named exactly `key`.
    pub fn get(&self, key: &str) -> Option<Raw<'a>> {
        self.members
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| Raw {
                text: self.members[i].1.get(),
                depth: self.depth,
            })
    }

    /// Sets the members on `m` as `JsonFields::merge_json_object` does: `null` skipped, exact
    /// names first, then case-insensitively, unknown keys ignored (their values still checked).
    pub fn merge_into<T: JsonFields>(&self, m: &mut T) -> Result<(), Decline> {
        for (k, v) in &self.members {
            let raw = Raw {
                text: v.get(),
                depth: self.depth,
            };
            if raw.is_null() {
                continue;
            }
            if m.set_json_field_direct(k, raw)? {
                continue;
            }
            match T::json_field_names()
                .iter()
                .find(|n| n.eq_ignore_ascii_case(k))
            {
                Some(name) => {
                    m.set_json_field_direct(name, raw)?;
                }
                None => check_ignored(raw)?,
            }
        }
        Ok(())
    }
}

impl<'a> Raw<'a> {
    /// The value's JSON text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.text == "null"
    }

    /// Its text if it is a JSON string (borrowed when it holds no escape).
    pub fn str(&self) -> Result<Cow<'a, str>, Decline> {
        str_of(self.text)
    }
}

/// A value no field reads: it must still be one the `Value` reader accepts.
fn check_ignored(raw: Raw<'_>) -> Result<(), Decline> {
    match raw.text.as_bytes().first() {
        Some(b't' | b'f' | b'n') => Ok(()),
        Some(b'"') => str_of(raw.text).map(drop),
        _ => value(raw).map(drop),
    }
}

/// How deeply `v` nests (0 for a scalar).
fn nesting(v: &Value) -> u32 {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// The value as a `serde_json::Value` (what the `Value` reader has for it), for the fields
/// read from one: numbers, lists, maps, structs.
pub fn value(raw: Raw<'_>) -> Result<Value, Decline> {
    let v: Value = serde_json::from_str(raw.text).map_err(|_| Decline)?;
    if raw.depth + nesting(&v) > MAX_DEPTH {
        return Err(Decline);
    }
    Ok(v)
}

/// A string field.
pub fn string(raw: Raw<'_>) -> Result<String, Decline> {
    raw.str().map(Cow::into_owned)
}

/// A time field (RFC 3339 text).
pub fn timestamp(raw: Raw<'_>) -> Result<Timestamp, Decline> {
    Timestamp::parse_rfc3339(&raw.str()?).ok_or(Decline)
}

/// A message field (an object).
pub fn message<T: JsonFields>(raw: Raw<'_>) -> Result<T, Decline> {
    let mut m = T::default();
    Members::parse(raw.text, raw.depth + 1)?.merge_into(&mut m)?;
    Ok(m)
}

/// The items of the JSON array `text` (nothing but the array and white space), as their
/// texts: each item still to be read (e.g. by [`crate::AuditEvent::from_json_direct`]).
/// Declines on anything but an array.
pub fn array_items(text: &str) -> Result<Vec<&str>, Decline> {
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| Decline)?;
    Ok(items.into_iter().map(RawValue::get).collect())
}
