//! `TrimToMaxSize`: how Teleport shrinks an event that is too large for a recording or the
//! audit log. Which fields each event kind trims comes from `core/events/schema/trim.tsv` (generated
//! into [`Trim`] impls); the arithmetic, described in `core/events/schema/TRIM.md`, is here.
//!
//! Where upstream is undefined, tapelog decides (and the tests pin it):
//! - upstream cuts strings at a byte and may split a UTF-8 character; tapelog cuts at the
//!   last character boundary at or before that byte (Rust strings stay valid UTF-8);
//! - upstream panics on an absent `Struct` or `Status` pointer; tapelog counts it as empty;
//! - two map keys that trim to the same key: upstream keeps one at random; tapelog keeps the
//!   value of the last key in sorted order.

use std::collections::BTreeMap;

use serde_json::Value;

use super::schema::{
    CommandMetadata, FileTransferStat, MCPJSONRPCMessage, SCIMCommonData, SCIMRequest,
    SCIMResponse, Status,
};
use crate::proto::{JsonStruct, Message, Traits};

/// What an event kind's `TrimToMaxSize` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimAction {
    /// Clears its trimmable fields and refills them within one per-field share.
    Trim,
    /// Upstream has special logic for it (handled by name in [`trim_to_max_size`]).
    Custom,
    /// Returns the event unchanged.
    Unchanged,
    /// No upstream `TrimToMaxSize` is known for it: unchanged.
    NotImplemented,
}

/// A trimmable field.
pub enum Slot<'a> {
    /// A string (`s:`).
    Str(&'a mut String),
    /// A list of strings (`ss:`), counted by elements (empty ones too), trimmed element-wise.
    Strs(&'a mut Vec<String>),
    /// A string map (`m:`): keys and values counted and trimmed.
    Map(&'a mut BTreeMap<String, String>),
    /// An optional `Struct`: only non-empty string entries survive trimming.
    Struct(&'a mut Option<JsonStruct>),
    /// Bytes.
    Bytes(&'a mut Vec<u8>),
    /// User traits / HTTP headers (`map<string, []string>`).
    Traits(&'a mut Traits),
    /// An embedded `Status`: `Error` and `UserMessage` trimmed, `Success` kept.
    Status(&'a mut Status),
    /// A `Status` pointer (legacy `DeviceEvent`): always present after clearing or trimming.
    StatusPtr(&'a mut Option<Status>),
    /// `CommandMetadata`: `Command` and `Error` trimmed, `ExitCode` dropped.
    Command(&'a mut CommandMetadata),
    /// An MCP JSON-RPC message: its three strings and its `Params` struct.
    Mcp(&'a mut MCPJSONRPCMessage),
    /// `SFTPSummary`'s per-file statistics: when trimmed, every path is emptied.
    SftpPaths(&'a mut Vec<FileTransferStat>),
    /// SCIM request/response data: strings trimmed, bodies struct-trimmed, status code kept.
    Scim(&'a mut SCIMCommonData),
}

/// Implemented (generated) for every event kind.
pub trait Trim: Message + Clone {
    /// Upstream's behaviour for this kind.
    const ACTION: TrimAction;
    /// The protobuf message name.
    const MESSAGE: &'static str;
    /// The trimmable fields, in upstream's order.
    fn slots(&mut self) -> Vec<Slot<'_>>;
}

/// Upstream's `trimStr` length: the number of leading bytes of `s` it keeps for a share of
/// `n` (quotes counted as 2, `"` and `\` as 2 each, one unit spare). Negative shares keep
/// nothing.
pub fn trim_len(s: &[u8], n: i64) -> usize {
    let mut c: i64 = 2;
    for (i, &b) in s.iter().enumerate() {
        if c + 1 > n {
            return i;
        }
        c += if b == b'"' || b == b'\\' { 2 } else { 1 };
    }
    s.len()
}

/// `trimStr` on a string, moved back to a character boundary.
pub fn trim_str(s: &str, n: i64) -> &str {
    let mut k = trim_len(s.as_bytes(), n);
    while !s.is_char_boundary(k) {
        k -= 1;
    }
    &s[..k]
}

fn cut(s: &mut String, n: i64) {
    let k = trim_str(s, n).len();
    s.truncate(k);
}

fn count_strs(strs: &[&String]) -> i64 {
    strs.iter().filter(|s| !s.is_empty()).count() as i64
}

fn struct_count(s: &Option<JsonStruct>) -> i64 {
    let Some(s) = s else { return 0 };
    s.0.values()
        .map(|v| {
            1 + match v {
                Value::String(t) => i64::from(!t.is_empty()),
                Value::Array(a) => a
                    .iter()
                    .filter(|x| x.as_str().is_some_and(|t| !t.is_empty()))
                    .count() as i64,
                _ => 0,
            }
        })
        .sum()
}

fn struct_trim(s: &mut Option<JsonStruct>, n: i64) {
    let Some(st) = s else { return };
    if st.0.is_empty() {
        return;
    }
    let mut out = serde_json::Map::new();
    for (k, v) in &st.0 {
        if let Value::String(t) = v
            && !t.is_empty()
        {
            out.insert(
                trim_str(k, n).to_string(),
                Value::String(trim_str(t, n).to_string()),
            );
        }
    }
    *s = Some(JsonStruct(out));
}

impl Slot<'_> {
    fn clear(&mut self) {
        match self {
            Slot::Str(s) => s.clear(),
            Slot::Strs(v) => v.clear(),
            Slot::Map(m) => m.clear(),
            Slot::Struct(s) => **s = None,
            Slot::Bytes(b) => b.clear(),
            Slot::Traits(t) => t.0.clear(),
            Slot::Status(s) => **s = Status::default(),
            Slot::StatusPtr(s) => **s = Some(Status::default()),
            Slot::Command(c) => **c = CommandMetadata::default(),
            Slot::Mcp(m) => **m = MCPJSONRPCMessage::default(),
            Slot::SftpPaths(v) => v.iter_mut().for_each(|f| f.path.clear()),
            Slot::Scim(d) => {
                **d = SCIMCommonData {
                    request: d.request.as_ref().map(|_| SCIMRequest::default()),
                    response: d.response.as_ref().map(|_| SCIMResponse::default()),
                    ..Default::default()
                }
            }
        }
    }

    fn count(&self) -> i64 {
        match self {
            Slot::Str(s) => i64::from(!s.is_empty()),
            Slot::Strs(v) => v.len() as i64,
            Slot::Map(m) => m
                .iter()
                .map(|(k, v)| i64::from(!k.is_empty()) + i64::from(!v.is_empty()))
                .sum(),
            Slot::Struct(s) => struct_count(s),
            Slot::Bytes(b) => i64::from(!b.is_empty()),
            Slot::Traits(t) => {
                t.0.iter()
                    .map(|(k, v)| {
                        i64::from(!k.is_empty()) + v.iter().filter(|x| !x.is_empty()).count() as i64
                    })
                    .sum()
            }
            Slot::Status(s) => count_strs(&[&s.error, &s.user_message]),
            Slot::StatusPtr(s) => s
                .as_ref()
                .map_or(0, |s| count_strs(&[&s.error, &s.user_message])),
            Slot::Command(c) => count_strs(&[&c.command, &c.error]),
            Slot::Mcp(m) => count_strs(&[&m.jsonrpc, &m.id, &m.method]) + struct_count(&m.params),
            Slot::SftpPaths(v) => v.iter().filter(|f| !f.path.is_empty()).count() as i64,
            Slot::Scim(d) => {
                let mut n = count_strs(&[&d.integration, &d.resource_type]);
                if let Some(r) = &d.request {
                    n += count_strs(&[
                        &r.id,
                        &r.source_address,
                        &r.method,
                        &r.path,
                        &r.query,
                        &r.user_agent,
                    ]);
                    n += struct_count(&r.body);
                }
                if let Some(r) = &d.response {
                    n += struct_count(&r.body);
                }
                n
            }
        }
    }

    fn trim(&mut self, n: i64) {
        match self {
            Slot::Str(s) => cut(s, n),
            Slot::Strs(v) => v.iter_mut().for_each(|s| cut(s, n)),
            Slot::Map(m) => {
                let old = std::mem::take(*m);
                for (k, v) in old {
                    m.insert(trim_str(&k, n).to_string(), trim_str(&v, n).to_string());
                }
            }
            Slot::Struct(s) => struct_trim(s, n),
            Slot::Bytes(b) => {
                let k = trim_len(b, n);
                b.truncate(k);
            }
            Slot::Traits(t) => {
                let old = std::mem::take(&mut t.0);
                for (k, mut v) in old {
                    v.iter_mut().for_each(|s| cut(s, n));
                    t.0.insert(trim_str(&k, n).to_string(), v);
                }
            }
            Slot::Status(s) => {
                cut(&mut s.error, n);
                cut(&mut s.user_message, n);
            }
            Slot::StatusPtr(s) => {
                let st = s.get_or_insert_with(Status::default);
                cut(&mut st.error, n);
                cut(&mut st.user_message, n);
            }
            Slot::Command(c) => {
                cut(&mut c.command, n);
                cut(&mut c.error, n);
                c.exit_code.clear();
            }
            Slot::Mcp(m) => {
                cut(&mut m.jsonrpc, n);
                cut(&mut m.id, n);
                cut(&mut m.method, n);
                struct_trim(&mut m.params, n);
            }
            Slot::SftpPaths(v) => v.iter_mut().for_each(|f| f.path.clear()),
            Slot::Scim(d) => {
                cut(&mut d.integration, n);
                cut(&mut d.resource_type, n);
                if let Some(r) = &mut d.request {
                    for s in [
                        &mut r.id,
                        &mut r.source_address,
                        &mut r.user_agent,
                        &mut r.method,
                        &mut r.path,
                        &mut r.query,
                    ] {
                        cut(s, n);
                    }
                    struct_trim(&mut r.body, n);
                }
                if let Some(r) = &mut d.response {
                    struct_trim(&mut r.body, n);
                }
            }
        }
    }
}

/// `maxSizePerField`.
fn share(budget: i64, count: i64) -> i64 {
    if count == 0 { budget } else { budget / count }
}

/// Teleport's `TrimToMaxSize` for one event kind.
pub fn trim_to_max_size<T: Trim>(e: &T, max: usize) -> T {
    if matches!(
        T::ACTION,
        TrimAction::Unchanged | TrimAction::NotImplemented
    ) || e.encoded_len() <= max
    {
        return e.clone();
    }
    let max = max as i64;
    let mut out = e.clone();
    let counts: Vec<i64> = out.slots().iter().map(Slot::count).collect();
    if T::ACTION == TrimAction::Custom && T::MESSAGE.starts_with("WorkloadCluster") {
        // Returned unchanged when its payload is absent.
        if counts.iter().all(|&c| c == 0)
            && out.slots().iter().all(|s| matches!(s, Slot::Struct(None)))
        {
            return out;
        }
    }
    let mut cleared = e.clone();
    for mut s in cleared.slots() {
        s.clear();
    }
    let budget = max - (max / 10 + cleared.encoded_len() as i64);
    let total: i64 = counts.iter().sum();
    let per = share(budget, total);
    for (i, mut s) in out.slots().into_iter().enumerate() {
        let n = if T::ACTION == TrimAction::Custom && T::MESSAGE == "SessionStart" {
            // Each list gets its own share of the whole budget.
            share(budget, counts[i])
        } else {
            per
        };
        s.trim(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_len_matches_upstreams_byte_walk() {
        assert_eq!(trim_len(b"", 0), 0);
        assert_eq!(trim_len(b"abc", 2), 0);
        assert_eq!(trim_len(b"abc", 3), 1);
        assert_eq!(trim_len(b"abc", 5), 3);
        // the last byte's cost is not checked: `a"` fits in 4
        assert_eq!(trim_len(b"a\"", 4), 2);
        assert_eq!(trim_len(b"\"\"\"", 6), 2);
        assert_eq!(trim_len(b"abc", -5), 0);
    }

    #[test]
    fn trim_str_keeps_utf8_whole() {
        assert_eq!(trim_str("é", 3), "");
        assert_eq!(trim_str("aé", 4), "a");
        assert_eq!(trim_str("aé", 5), "aé");
    }
}
