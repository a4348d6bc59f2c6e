//! MessagePack for Fluentd's Forward protocol: encoding on the `rmp` crate, and a bounded,
//! incremental decoder of our own (every type of the spec; timestamps other than Fluentd's
//! EventTime are just an `ext`).
//!
//! The encoder is `rmp`'s low-level writer: it always picks the shortest form (fixint,
//! fixstr, fixarray, fixmap …), as the spec recommends and as Fluentd's Ruby encoder does.
//!
//! Why the decoder is our own: it reads what a network peer sent, so it must (1) work on a
//! byte slice that may end early — [`DecodeError::Incomplete`] means "push more bytes and try
//! again", without consuming anything, which the incremental Forward-message and ack decoders
//! need to resume cleanly at any split; (2) never allocate more than the input it has already
//! seen (a `str 32` header announcing 4 GiB allocates nothing until the bytes are there) and
//! never recurse deeper than [`Limits::max_depth`]; (3) tell those cases apart in a typed
//! error. `rmp`'s readers (`rmp::decode`) read one marker or length at a time from a reader
//! and leave the walk over nested values, the resumption after a short read and the bounds
//! to the caller — which is this decoder; the value readers built on them (`rmpv`) read from
//! `io::Read` and report a short input as an I/O error after consuming it.
//!
//! [`DecodeError::Incomplete`] aside, every decode error means the input is not valid
//! MessagePack (or breaks a [`Limits`] bound).

use std::convert::Infallible;

use rmp::encode::{self, ByteBuf, ValueWriteError};
use thiserror::Error;

/// One MessagePack value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer (non-negative ones decode as [`Value::UInt`]).
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bin(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// A map, in the order of the input (keys may be any value).
    Map(Vec<(Value, Value)>),
    /// An extension value: its type and its bytes.
    Ext(i8, Vec<u8>),
}

impl Value {
    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of the first entry of a map whose key is the string `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as JSON, for comparing with the event it came from: maps with string keys
    /// become objects, integers and floats numbers. `None` for what JSON cannot hold (`bin`,
    /// `ext`, a non-finite float, a map with a key that is not a string).
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::F32(f) => J::Number(serde_json::Number::from_f64(f64::from(*f))?),
            Value::F64(f) => J::Number(serde_json::Number::from_f64(*f)?),
            Value::Str(s) => J::String(s.clone()),
            Value::Bin(_) | Value::Ext(..) => return None,
            Value::Array(items) => J::Array(
                items
                    .iter()
                    .map(Value::to_json)
                    .collect::<Option<Vec<_>>>()?,
            ),
            Value::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.as_str()?.to_string(), v.to_json()?);
                }
                J::Object(map)
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

// The encoding is `rmp`'s (shortest forms throughout, as the spec recommends and as Fluentd's
// Ruby encoder writes). rmp writes into its `ByteBuf`, whose writes cannot fail
// (`Infallible`); these functions keep the `&mut Vec<u8>` signatures the callers use and
// move the vector in and out of a `ByteBuf`, which costs no copy.

/// Runs `f` on `out` as an rmp `ByteBuf`.
fn with_buf(out: &mut Vec<u8>, f: impl FnOnce(&mut ByteBuf)) {
    let mut buf = ByteBuf::from_vec(std::mem::take(out));
    f(&mut buf);
    *out = buf.into_vec();
}

/// The result of an rmp write into a `ByteBuf`, which cannot fail.
fn done<T>(result: Result<T, ValueWriteError<Infallible>>) {
    match result {
        Ok(_) => {}
        Err(ValueWriteError::InvalidMarkerWrite(e) | ValueWriteError::InvalidDataWrite(e)) => {
            match e {}
        }
    }
}

/// A length as MessagePack's 32-bit length. Lengths beyond `u32` are not MessagePack; the
/// callers' inputs (a batch of events) never come near them, and the length is saturated
/// rather than wrapped so that a decoder fails instead of misreading.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn nil(buf: &mut ByteBuf) {
    let Ok(()) = encode::write_nil(buf);
}

fn boolean(buf: &mut ByteBuf, b: bool) {
    let Ok(()) = encode::write_bool(buf, b);
}

fn uint(buf: &mut ByteBuf, n: u64) {
    done(encode::write_uint(buf, n));
}

fn int(buf: &mut ByteBuf, n: i64) {
    if n >= 0 {
        uint(buf, n.unsigned_abs());
    } else {
        done(encode::write_sint(buf, n));
    }
}

fn string(buf: &mut ByteBuf, s: &str) {
    done(encode::write_str_len(buf, len32(s.len())));
    buf.as_mut_vec().extend_from_slice(s.as_bytes());
}

fn array_len(buf: &mut ByteBuf, n: usize) {
    done(encode::write_array_len(buf, len32(n)));
}

fn map_len(buf: &mut ByteBuf, n: usize) {
    done(encode::write_map_len(buf, len32(n)));
}

fn json(buf: &mut ByteBuf, value: &serde_json::Value) {
    use serde_json::Value as J;
    match value {
        J::Null => nil(buf),
        J::Bool(b) => boolean(buf, *b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                uint(buf, u);
            } else if let Some(i) = n.as_i64() {
                int(buf, i);
            } else {
                done(encode::write_f64(buf, n.as_f64().unwrap_or(f64::NAN)));
            }
        }
        J::String(s) => string(buf, s),
        J::Array(items) => {
            array_len(buf, items.len());
            for item in items {
                json(buf, item);
            }
        }
        J::Object(map) => {
            map_len(buf, map.len());
            for (k, v) in map {
                string(buf, k);
                json(buf, v);
            }
        }
    }
}

fn value(buf: &mut ByteBuf, v: &Value) {
    match v {
        Value::Nil => nil(buf),
        Value::Bool(b) => boolean(buf, *b),
        Value::Int(i) => int(buf, *i),
        Value::UInt(u) => uint(buf, *u),
        Value::F32(f) => done(encode::write_f32(buf, *f)),
        Value::F64(f) => done(encode::write_f64(buf, *f)),
        Value::Str(s) => string(buf, s),
        Value::Bin(b) => {
            done(encode::write_bin_len(buf, len32(b.len())));
            buf.as_mut_vec().extend_from_slice(b);
        }
        Value::Array(items) => {
            array_len(buf, items.len());
            for item in items {
                value(buf, item);
            }
        }
        Value::Map(entries) => {
            map_len(buf, entries.len());
            for (k, v) in entries {
                value(buf, k);
                value(buf, v);
            }
        }
        Value::Ext(kind, data) => ext(buf, *kind, data),
    }
}

fn ext(buf: &mut ByteBuf, kind: i8, data: &[u8]) {
    done(encode::write_ext_meta(buf, len32(data.len()), kind));
    buf.as_mut_vec().extend_from_slice(data);
}

/// Appends `nil`.
pub fn write_nil(out: &mut Vec<u8>) {
    with_buf(out, nil);
}

/// Appends `true` or `false`.
pub fn write_bool(out: &mut Vec<u8>, b: bool) {
    with_buf(out, |buf| boolean(buf, b));
}

/// Appends a non-negative integer in its shortest form.
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    with_buf(out, |buf| uint(buf, n));
}

/// Appends a signed integer in its shortest form (non-negative values as unsigned ones).
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    with_buf(out, |buf| int(buf, n));
}

/// Appends a 64-bit float (`float 64`, 0xcb).
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    with_buf(out, |buf| done(encode::write_f64(buf, f)));
}

/// Appends a string (fixstr, str 8, str 16 or str 32).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    with_buf(out, |buf| string(buf, s));
}

/// Appends the header of a `bin` of `n` bytes (bin 8, bin 16 or bin 32); the bytes follow.
pub fn write_bin_header(out: &mut Vec<u8>, n: usize) {
    with_buf(out, |buf| done(encode::write_bin_len(buf, len32(n))));
}

/// Appends a `bin`.
pub fn write_bin(out: &mut Vec<u8>, bytes: &[u8]) {
    write_bin_header(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends the header of an array of `n` items (fixarray, array 16, array 32).
pub fn write_array_len(out: &mut Vec<u8>, n: usize) {
    with_buf(out, |buf| array_len(buf, n));
}

/// Appends the header of a map of `n` entries (fixmap, map 16, map 32).
pub fn write_map_len(out: &mut Vec<u8>, n: usize) {
    with_buf(out, |buf| map_len(buf, n));
}

/// Appends an extension value (fixext 1/2/4/8/16 when the size fits, else ext 8/16/32).
pub fn write_ext(out: &mut Vec<u8>, kind: i8, data: &[u8]) {
    with_buf(out, |buf| ext(buf, kind, data));
}

/// Appends a JSON value: objects become maps (every key kept), arrays arrays, strings
/// strings, numbers integers when JSON wrote them as integers that fit 64 bits and 64-bit
/// floats otherwise (`1.0` stays a float, as Fluentd's own JSON parser reads it).
pub fn write_json(out: &mut Vec<u8>, v: &serde_json::Value) {
    with_buf(out, |buf| json(buf, v));
}

/// Appends any [`Value`] (the receiver's ack and tests use it).
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    with_buf(out, |buf| value(buf, v));
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Bounds on what the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of arrays and maps (the decoder recurses once per level).
    pub max_depth: usize,
    /// Largest single string, `bin` or `ext` payload, in bytes.
    pub max_bytes: usize,
}

impl Default for Limits {
    /// 64 levels, 64 MiB.
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_bytes: 64 << 20,
        }
    }
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ends inside a value: push more bytes and decode again.
    #[error("MessagePack value incomplete: need more bytes")]
    Incomplete,
    /// 0xc1, the one byte the spec never uses.
    #[error("invalid MessagePack marker 0x{marker:02x} at byte {offset}")]
    InvalidMarker {
        /// The byte.
        marker: u8,
        /// Where it is.
        offset: usize,
    },
    /// A `str` that is not UTF-8.
    #[error("MessagePack string at byte {offset} is not UTF-8")]
    InvalidUtf8 {
        /// Where the string starts.
        offset: usize,
    },
    /// Arrays and maps nested deeper than [`Limits::max_depth`].
    #[error("MessagePack nesting deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// The limit.
        limit: usize,
        /// Where the level that broke it starts.
        offset: usize,
    },
    /// A string, `bin` or `ext` longer than [`Limits::max_bytes`].
    #[error("MessagePack item of {len} bytes at byte {offset} is over the {limit}-byte limit")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        limit: usize,
        /// Where the item starts.
        offset: usize,
    },
}

/// Decodes one value from the start of `input`; returns it and the number of bytes it took.
pub fn decode(input: &[u8], limits: &Limits) -> Result<(Value, usize), DecodeError> {
    let mut r = Reader {
        input,
        pos: 0,
        limits,
    };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// The length in bytes of the value at the start of `input`, without building it (fails
/// exactly where [`decode`] fails). Used to frame a message before decoding it.
pub fn skip(input: &[u8], limits: &Limits) -> Result<usize, DecodeError> {
    let mut r = Reader {
        input,
        pos: 0,
        limits,
    };
    r.skip_value(0)?;
    Ok(r.pos)
}

/// What a marker byte announces.
enum Head {
    Nil,
    Bool(bool),
    UInt(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
    Ext(i8, usize),
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Incomplete)?;
        let bytes = self
            .input
            .get(self.pos..end)
            .ok_or(DecodeError::Incomplete)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn len(&mut self, size: usize) -> Result<usize, DecodeError> {
        let n = match size {
            1 => u64::from(self.u8()?),
            2 => u64::from(u16::from_be_bytes(self.array()?)),
            _ => u64::from(u32::from_be_bytes(self.array()?)),
        };
        usize::try_from(n).map_err(|_| DecodeError::TooLarge {
            len: n,
            limit: self.limits.max_bytes,
            offset: self.pos,
        })
    }

    fn head(&mut self) -> Result<Head, DecodeError> {
        let offset = self.pos;
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Head::UInt(u64::from(m)),
            0x80..=0x8f => Head::Map(usize::from(m & 0x0f)),
            0x90..=0x9f => Head::Array(usize::from(m & 0x0f)),
            0xa0..=0xbf => Head::Str(usize::from(m & 0x1f)),
            0xc0 => Head::Nil,
            0xc1 => return Err(DecodeError::InvalidMarker { marker: m, offset }),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => Head::Bin(self.len(1)?),
            0xc5 => Head::Bin(self.len(2)?),
            0xc6 => Head::Bin(self.len(4)?),
            0xc7 => {
                let n = self.len(1)?;
                Head::Ext(self.u8()? as i8, n)
            }
            0xc8 => {
                let n = self.len(2)?;
                Head::Ext(self.u8()? as i8, n)
            }
            0xc9 => {
                let n = self.len(4)?;
                Head::Ext(self.u8()? as i8, n)
            }
            0xca => Head::F32(f32::from_bits(u32::from_be_bytes(self.array()?))),
            0xcb => Head::F64(f64::from_bits(u64::from_be_bytes(self.array()?))),
            0xcc => Head::UInt(u64::from(self.u8()?)),
            0xcd => Head::UInt(u64::from(u16::from_be_bytes(self.array()?))),
            0xce => Head::UInt(u64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Head::UInt(u64::from_be_bytes(self.array()?)),
            0xd0 => Head::Int(i64::from(self.u8()? as i8)),
            0xd1 => Head::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Head::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Head::Int(i64::from_be_bytes(self.array()?)),
            0xd4 => Head::Ext(self.u8()? as i8, 1),
            0xd5 => Head::Ext(self.u8()? as i8, 2),
            0xd6 => Head::Ext(self.u8()? as i8, 4),
            0xd7 => Head::Ext(self.u8()? as i8, 8),
            0xd8 => Head::Ext(self.u8()? as i8, 16),
            0xd9 => Head::Str(self.len(1)?),
            0xda => Head::Str(self.len(2)?),
            0xdb => Head::Str(self.len(4)?),
            0xdc => Head::Array(self.len(2)?),
            0xdd => Head::Array(self.len(4)?),
            0xde => Head::Map(self.len(2)?),
            0xdf => Head::Map(self.len(4)?),
            0xe0..=0xff => Head::Int(i64::from(m as i8)),
        })
    }

    /// Takes `n` payload bytes after checking the size limit (before waiting for them, so
    /// that a huge declared length fails at once instead of buffering).
    fn payload(&mut self, n: usize, offset: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.limits.max_bytes {
            return Err(DecodeError::TooLarge {
                len: n as u64,
                limit: self.limits.max_bytes,
                offset,
            });
        }
        self.take(n)
    }

    fn deeper(&self, depth: usize, offset: usize) -> Result<usize, DecodeError> {
        if depth >= self.limits.max_depth {
            return Err(DecodeError::TooDeep {
                limit: self.limits.max_depth,
                offset,
            });
        }
        Ok(depth + 1)
    }

    /// A capacity no larger than the bytes left: every item takes at least one byte, so a
    /// declared count can never make the decoder allocate more than the input.
    fn capacity(&self, n: usize) -> usize {
        n.min(self.input.len().saturating_sub(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let offset = self.pos;
        Ok(match self.head()? {
            Head::Nil => Value::Nil,
            Head::Bool(b) => Value::Bool(b),
            Head::UInt(u) => Value::UInt(u),
            Head::Int(i) if i >= 0 => Value::UInt(i as u64),
            Head::Int(i) => Value::Int(i),
            Head::F32(f) => Value::F32(f),
            Head::F64(f) => Value::F64(f),
            Head::Str(n) => {
                let bytes = self.payload(n, offset)?;
                let s =
                    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { offset })?;
                Value::Str(s.to_string())
            }
            Head::Bin(n) => Value::Bin(self.payload(n, offset)?.to_vec()),
            Head::Ext(kind, n) => Value::Ext(kind, self.payload(n, offset)?.to_vec()),
            Head::Array(n) => {
                let depth = self.deeper(depth, offset)?;
                let mut items = Vec::with_capacity(self.capacity(n));
                for _ in 0..n {
                    items.push(self.value(depth)?);
                }
                Value::Array(items)
            }
            Head::Map(n) => {
                let depth = self.deeper(depth, offset)?;
                let mut entries = Vec::with_capacity(self.capacity(n));
                for _ in 0..n {
                    let k = self.value(depth)?;
                    let v = self.value(depth)?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
        })
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), DecodeError> {
        let offset = self.pos;
        match self.head()? {
            Head::Nil
            | Head::Bool(_)
            | Head::UInt(_)
            | Head::Int(_)
            | Head::F32(_)
            | Head::F64(_) => {}
            Head::Str(n) => {
                let bytes = self.payload(n, offset)?;
                if std::str::from_utf8(bytes).is_err() {
                    return Err(DecodeError::InvalidUtf8 { offset });
                }
            }
            Head::Bin(n) | Head::Ext(_, n) => {
                self.payload(n, offset)?;
            }
            Head::Array(n) => {
                let depth = self.deeper(depth, offset)?;
                for _ in 0..n {
                    self.skip_value(depth)?;
                }
            }
            Head::Map(n) => {
                let depth = self.deeper(depth, offset)?;
                for _ in 0..n {
                    self.skip_value(depth)?;
                    self.skip_value(depth)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    #[test]
    fn integers_take_their_shortest_form() {
        assert_eq!(enc(|o| write_uint(o, 0)), [0x00]);
        assert_eq!(enc(|o| write_uint(o, 127)), [0x7f]);
        assert_eq!(enc(|o| write_uint(o, 128)), [0xcc, 0x80]);
        assert_eq!(enc(|o| write_uint(o, 256)), [0xcd, 0x01, 0x00]);
        assert_eq!(enc(|o| write_uint(o, 65536)), [0xce, 0, 1, 0, 0]);
        assert_eq!(
            enc(|o| write_uint(o, 1 << 32)),
            [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]
        );
        assert_eq!(enc(|o| write_int(o, -1)), [0xff]);
        assert_eq!(enc(|o| write_int(o, -32)), [0xe0]);
        assert_eq!(enc(|o| write_int(o, -33)), [0xd0, 0xdf]);
        assert_eq!(enc(|o| write_int(o, -129)), [0xd1, 0xff, 0x7f]);
        assert_eq!(enc(|o| write_int(o, 5)), [0x05]);
        assert_eq!(
            enc(|o| write_int(o, i64::MIN)),
            [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn strings_maps_and_ext_match_the_spec_layouts() {
        // fixstr: 101XXXXX then the bytes.
        assert_eq!(enc(|o| write_str(o, "ack")), [0xa3, b'a', b'c', b'k']);
        // str 8: 0xd9, one length byte, for 32..=255 bytes.
        let s = "x".repeat(32);
        let e = enc(|o| write_str(o, &s));
        assert_eq!(&e[..2], [0xd9, 32]);
        assert_eq!(e.len(), 34);
        // str 16 for 256 bytes.
        let e = enc(|o| write_str(o, &"y".repeat(256)));
        assert_eq!(&e[..3], [0xda, 0x01, 0x00]);
        // fixmap {"a": 1}: 1000XXXX.
        let e = enc(|o| write_json(o, &serde_json::json!({"a": 1})));
        assert_eq!(e, [0x81, 0xa1, b'a', 0x01]);
        // map 16 for 16 entries.
        let mut m = serde_json::Map::new();
        for i in 0..16 {
            m.insert(format!("k{i:02}"), serde_json::Value::Null);
        }
        let e = enc(|o| write_json(o, &serde_json::Value::Object(m)));
        assert_eq!(&e[..3], [0xde, 0x00, 0x10]);
        // fixarray and array 16.
        assert_eq!(enc(|o| write_array_len(o, 2)), [0x92]);
        assert_eq!(enc(|o| write_array_len(o, 16)), [0xdc, 0x00, 0x10]);
        // fixext 8 (Fluentd's EventTime) and ext 8 for a 3-byte payload.
        assert_eq!(
            enc(|o| write_ext(o, 0, &[1, 2, 3, 4, 5, 6, 7, 8])),
            [0xd7, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(
            enc(|o| write_ext(o, 5, &[9, 9, 9])),
            [0xc7, 0x03, 0x05, 9, 9, 9]
        );
        // bin 8.
        assert_eq!(
            enc(|o| write_bin(o, &[0xaa, 0xbb])),
            [0xc4, 0x02, 0xaa, 0xbb]
        );
        // float 64 and the scalars.
        assert_eq!(
            enc(|o| write_json(o, &serde_json::json!(1.5))),
            [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            enc(|o| write_json(o, &serde_json::json!([null, true, false]))),
            [0x93, 0xc0, 0xc3, 0xc2]
        );
    }

    #[test]
    fn json_numbers_keep_their_kind() {
        let v = serde_json::json!({"i": -7, "u": 18446744073709551615u64, "f": 1.0, "g": 0.25});
        let bytes = enc(|o| write_json(o, &v));
        let (back, n) = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(back.get("i"), Some(&Value::Int(-7)));
        assert_eq!(back.get("u"), Some(&Value::UInt(u64::MAX)));
        assert_eq!(back.get("f"), Some(&Value::F64(1.0)));
        assert_eq!(back.to_json().unwrap(), v);
    }

    #[test]
    fn every_value_round_trips_and_every_prefix_is_incomplete() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-100_000),
            Value::UInt(300),
            Value::F32(0.5),
            Value::F64(-2.25),
            Value::Str("é".repeat(40)),
            Value::Bin(vec![0; 300]),
            Value::Ext(-1, vec![1, 2, 3]),
            Value::Ext(0, vec![0; 8]),
            Value::Map(vec![(
                Value::UInt(1),
                Value::Array((0..20).map(Value::UInt).collect()),
            )]),
        ]);
        let bytes = enc(|o| write_value(o, &v));
        let limits = Limits::default();
        assert_eq!(decode(&bytes, &limits).unwrap(), (v, bytes.len()));
        assert_eq!(skip(&bytes, &limits).unwrap(), bytes.len());
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut], &limits),
                Err(DecodeError::Incomplete),
                "{cut}"
            );
            assert_eq!(
                skip(&bytes[..cut], &limits),
                Err(DecodeError::Incomplete),
                "{cut}"
            );
        }
    }

    #[test]
    fn bad_input_gets_typed_errors_without_big_allocations() {
        let limits = Limits {
            max_depth: 4,
            max_bytes: 1024,
        };
        assert_eq!(
            decode(&[0xc1], &limits),
            Err(DecodeError::InvalidMarker {
                marker: 0xc1,
                offset: 0
            })
        );
        assert_eq!(
            decode(&[0xa2, 0xff, 0xfe], &limits),
            Err(DecodeError::InvalidUtf8 { offset: 0 })
        );
        assert!(matches!(
            decode(&[0x91, 0x91, 0x91, 0x91, 0x91, 0xc0], &limits),
            Err(DecodeError::TooDeep { limit: 4, .. })
        ));
        // A 4 GiB string is refused from its header, before any byte of it arrives.
        assert!(matches!(
            decode(&[0xdb, 0xff, 0xff, 0xff, 0xff], &limits),
            Err(DecodeError::TooLarge { limit: 1024, .. })
        ));
        // An array that claims 4 billion items only waits for more input.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0], &limits),
            Err(DecodeError::Incomplete)
        );
    }
}
