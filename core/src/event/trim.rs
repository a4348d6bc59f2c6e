//! `TrimToMaxSize`: how Teleport shrinks an event that is too large for a recording or the
//! audit log. Which fields each event kind trims comes from `core/schema/trim.tsv` (generated
//! into `Trim` impls); the arithmetic is here.

use std::collections::BTreeMap;

use crate::proto::{JsonStruct, Message};

/// What an event kind's `TrimToMaxSize` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimAction {
    /// Clears and re-fills its trimmable fields within a per-field budget.
    Trim,
    /// Upstream has special logic for it (handled in this module).
    Custom,
    /// Returns the event unchanged.
    Unchanged,
    /// Upstream has no `TrimToMaxSize` for it: unchanged.
    NotImplemented,
}

/// A trimmable field.
pub enum Slot<'a> {
    /// A string.
    Str(&'a mut String),
    /// A list of strings, trimmed element by element.
    Strs(&'a mut Vec<String>),
    /// A string map, trimmed key by key and value by value.
    Map(&'a mut BTreeMap<String, String>),
    /// A JSON struct.
    Struct(&'a mut Option<JsonStruct>),
    /// A byte string.
    Bytes(&'a mut Vec<u8>),
}

/// Implemented (generated) for every event kind.
pub trait Trim: Message + Clone {
    /// Upstream's behaviour for this kind.
    const ACTION: TrimAction;
    /// The trimmable fields, in upstream's order.
    fn slots(&mut self) -> Vec<Slot<'_>>;
}

/// Cuts `s` so that its JSON-escaped size (2 for the quotes, 2 for each `"` or `\`, 1 for
/// other bytes) stays within `max`, at a character boundary.
pub fn trim_str(s: &str, max: usize) -> &str {
    let quoted = 2 + s.len() + s.bytes().filter(|b| *b == b'"' || *b == b'\\').count();
    if quoted <= max {
        return s;
    }
    let mut budget = max.saturating_sub(2);
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let cost = c.len_utf8() + usize::from(c == '"' || c == '\\');
        if cost > budget {
            break;
        }
        budget -= cost;
        end = i + c.len_utf8();
    }
    &s[..end]
}

impl Slot<'_> {
    fn clear(&mut self) {
        match self {
            Slot::Str(s) => s.clear(),
            Slot::Strs(v) => v.clear(),
            Slot::Map(m) => m.clear(),
            Slot::Struct(s) => **s = None,
            Slot::Bytes(b) => b.clear(),
        }
    }

    fn non_empty(&self) -> usize {
        match self {
            Slot::Str(s) => usize::from(!s.is_empty()),
            Slot::Strs(v) => v.iter().filter(|s| !s.is_empty()).count(),
            Slot::Map(m) => m.iter().filter(|(k, v)| !k.is_empty() || !v.is_empty()).count(),
            Slot::Struct(s) => usize::from(s.as_ref().is_some_and(|s| !s.0.is_empty())),
            Slot::Bytes(b) => usize::from(!b.is_empty()),
        }
    }

    fn trim(&mut self, per_field: usize) {
        match self {
            Slot::Str(s) => {
                let t = trim_str(s, per_field).len();
                s.truncate(t);
            }
            Slot::Strs(v) => {
                for s in v.iter_mut() {
                    let t = trim_str(s, per_field).len();
                    s.truncate(t);
                }
            }
            Slot::Map(m) => {
                let old = std::mem::take(*m);
                for (k, v) in old {
                    m.insert(trim_str(&k, per_field).to_string(), trim_str(&v, per_field).to_string());
                }
            }
            Slot::Struct(_) => {}
            Slot::Bytes(b) => {
                if b.len() > per_field {
                    b.truncate(per_field);
                }
            }
        }
    }
}

/// Teleport's `TrimToMaxSize` for one event kind.
pub fn trim_to_max_size<T: Trim>(e: &T, max: usize) -> T {
    if !matches!(T::ACTION, TrimAction::Trim) || e.encoded_len() <= max {
        return e.clone();
    }
    let mut cleared = e.clone();
    for mut s in cleared.slots() {
        s.clear();
    }
    let fixed = cleared.encoded_len();
    let mut out = e.clone();
    let mut slots = out.slots();
    let non_empty: usize = slots.iter().map(Slot::non_empty).sum();
    let adjusted = max.saturating_sub(max / 10 + fixed);
    let per_field = if non_empty == 0 { adjusted } else { adjusted / non_empty };
    for s in slots.iter_mut() {
        s.trim(per_field);
    }
    drop(slots);
    out
}
