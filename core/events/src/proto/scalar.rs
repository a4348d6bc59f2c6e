//! Scalar field codecs and the generic helpers the generated code calls, so that each field
//! costs one line of generated code.

use std::collections::BTreeMap;

use super::{
    DecodeError, Message, WireType, expect_wire, key_len, len_field_len, merge_nested, put_key,
    put_varint, read_fixed32, read_fixed64, read_len_bytes, read_string, read_varint, unzigzag64,
    varint_len, zigzag64,
};

/// How one protobuf scalar type is written and read.
pub trait Scalar {
    /// The Rust value type.
    type V: Clone + Default + PartialEq;
    /// The wire type of one value.
    const WIRE: WireType;
    /// Encoded size of a value (without key).
    fn len(v: &Self::V) -> usize;
    /// Appends a value (without key).
    fn put(buf: &mut Vec<u8>, v: &Self::V);
    /// Reads a value.
    fn read(buf: &mut &[u8]) -> Result<Self::V, DecodeError>;
}

macro_rules! varint_scalar {
    ($name:ident, $t:ty, $to:expr, $from:expr) => {
        /// A varint-encoded scalar.
        pub struct $name;
        impl Scalar for $name {
            type V = $t;
            const WIRE: WireType = WireType::Varint;
            #[inline]
            fn len(v: &$t) -> usize {
                varint_len(($to)(*v))
            }
            #[inline]
            fn put(buf: &mut Vec<u8>, v: &$t) {
                put_varint(buf, ($to)(*v))
            }
            #[inline]
            fn read(buf: &mut &[u8]) -> Result<$t, DecodeError> {
                read_varint(buf).map($from)
            }
        }
    };
}

varint_scalar!(PInt64, i64, |v: i64| v as u64, |u: u64| u as i64);
varint_scalar!(PInt32, i32, |v: i32| v as i64 as u64, |u: u64| u as i32);
varint_scalar!(PUint64, u64, |v: u64| v, |u: u64| u);
varint_scalar!(PUint32, u32, |v: u32| u64::from(v), |u: u64| u as u32);
varint_scalar!(PSint64, i64, zigzag64, unzigzag64);
varint_scalar!(
    PSint32,
    i32,
    |v: i32| zigzag64(i64::from(v)),
    |u: u64| unzigzag64(u) as i32
);
varint_scalar!(PBool, bool, |v: bool| u64::from(v), |u: u64| u != 0);

macro_rules! fixed_scalar {
    ($name:ident, $t:ty, $wire:expr, $size:expr, $read:ident, $to:expr, $from:expr) => {
        /// A fixed-width scalar.
        pub struct $name;
        impl Scalar for $name {
            type V = $t;
            const WIRE: WireType = $wire;
            #[inline]
            fn len(_: &$t) -> usize {
                $size
            }
            #[inline]
            fn put(buf: &mut Vec<u8>, v: &$t) {
                buf.extend_from_slice(&($to)(*v).to_le_bytes())
            }
            #[inline]
            fn read(buf: &mut &[u8]) -> Result<$t, DecodeError> {
                $read(buf).map($from)
            }
        }
    };
}

fixed_scalar!(
    PFixed64,
    u64,
    WireType::Fixed64,
    8,
    read_fixed64,
    |v: u64| v,
    |u: u64| u
);
fixed_scalar!(
    PSfixed64,
    i64,
    WireType::Fixed64,
    8,
    read_fixed64,
    |v: i64| v as u64,
    |u: u64| u as i64
);
fixed_scalar!(
    PDouble,
    f64,
    WireType::Fixed64,
    8,
    read_fixed64,
    |v: f64| v.to_bits(),
    f64::from_bits
);
fixed_scalar!(
    PFixed32,
    u32,
    WireType::Fixed32,
    4,
    read_fixed32,
    |v: u32| v,
    |u: u32| u
);
fixed_scalar!(
    PSfixed32,
    i32,
    WireType::Fixed32,
    4,
    read_fixed32,
    |v: i32| v as u32,
    |u: u32| u as i32
);
fixed_scalar!(
    PFloat,
    f32,
    WireType::Fixed32,
    4,
    read_fixed32,
    |v: f32| v.to_bits(),
    f32::from_bits
);

/// A `string` field.
pub struct PString;
impl Scalar for PString {
    type V = String;
    const WIRE: WireType = WireType::Len;
    #[inline]
    fn len(v: &String) -> usize {
        varint_len(v.len() as u64) + v.len()
    }
    #[inline]
    fn put(buf: &mut Vec<u8>, v: &String) {
        put_varint(buf, v.len() as u64);
        buf.extend_from_slice(v.as_bytes());
    }
    #[inline]
    fn read(buf: &mut &[u8]) -> Result<String, DecodeError> {
        read_string(buf)
    }
}

/// A `bytes` field.
pub struct PBytes;
impl Scalar for PBytes {
    type V = Vec<u8>;
    const WIRE: WireType = WireType::Len;
    #[inline]
    fn len(v: &Vec<u8>) -> usize {
        varint_len(v.len() as u64) + v.len()
    }
    #[inline]
    fn put(buf: &mut Vec<u8>, v: &Vec<u8>) {
        put_varint(buf, v.len() as u64);
        buf.extend_from_slice(v);
    }
    #[inline]
    fn read(buf: &mut &[u8]) -> Result<Vec<u8>, DecodeError> {
        read_len_bytes(buf, "a bytes field").map(<[u8]>::to_vec)
    }
}

/// Size of a scalar field that is written only when not zero/empty (proto3 implicit presence).
#[inline]
pub fn single_len<C: Scalar>(field: u32, v: &C::V) -> usize {
    if *v == C::V::default() {
        0
    } else {
        key_len(field) + C::len(v)
    }
}

/// Writes a scalar field unless it is zero/empty.
#[inline]
pub fn put_single<C: Scalar>(buf: &mut Vec<u8>, field: u32, v: &C::V) {
    if *v != C::V::default() {
        put_key(buf, field, C::WIRE);
        C::put(buf, v);
    }
}

/// Size of a scalar field that is always written (explicit presence, oneof member).
#[inline]
pub fn always_len<C: Scalar>(field: u32, v: &C::V) -> usize {
    key_len(field) + C::len(v)
}

/// Writes a scalar field unconditionally.
#[inline]
pub fn put_always<C: Scalar>(buf: &mut Vec<u8>, field: u32, v: &C::V) {
    put_key(buf, field, C::WIRE);
    C::put(buf, v);
}

/// Reads a scalar field after checking its wire type.
#[inline]
pub fn read_scalar<C: Scalar>(
    msg: &'static str,
    field: u32,
    wt: WireType,
    buf: &mut &[u8],
) -> Result<C::V, DecodeError> {
    expect_wire(msg, field, wt, C::WIRE)?;
    C::read(buf)
}

fn packed_body_len<C: Scalar>(v: &[C::V]) -> usize {
    v.iter().map(C::len).sum()
}

/// Size of a repeated scalar field (numbers packed, strings/bytes one record each).
pub fn repeated_len<C: Scalar>(field: u32, v: &[C::V]) -> usize {
    if v.is_empty() {
        0
    } else if C::WIRE == WireType::Len {
        v.iter().map(|x| key_len(field) + C::len(x)).sum()
    } else {
        len_field_len(field, packed_body_len::<C>(v))
    }
}

/// Writes a repeated scalar field.
pub fn put_repeated<C: Scalar>(buf: &mut Vec<u8>, field: u32, v: &[C::V]) {
    if v.is_empty() {
        return;
    }
    if C::WIRE == WireType::Len {
        for x in v {
            put_key(buf, field, WireType::Len);
            C::put(buf, x);
        }
    } else {
        put_key(buf, field, WireType::Len);
        put_varint(buf, packed_body_len::<C>(v) as u64);
        for x in v {
            C::put(buf, x);
        }
    }
}

/// Reads one record of a repeated scalar field (packed or not) into `out`.
pub fn read_repeated<C: Scalar>(
    msg: &'static str,
    field: u32,
    wt: WireType,
    buf: &mut &[u8],
    out: &mut Vec<C::V>,
) -> Result<(), DecodeError> {
    if wt == WireType::Len && C::WIRE != WireType::Len {
        let mut packed = read_len_bytes(buf, "a packed field")?;
        while !packed.is_empty() {
            out.push(C::read(&mut packed)?);
        }
        Ok(())
    } else {
        expect_wire(msg, field, wt, C::WIRE)?;
        out.push(C::read(buf)?);
        Ok(())
    }
}

/// Size of a repeated message field.
pub fn repeated_message_len<M: Message>(field: u32, v: &[M]) -> usize {
    v.iter()
        .map(|m| len_field_len(field, m.encoded_len()))
        .sum()
}

/// Writes a repeated message field.
pub fn put_repeated_message<M: Message>(buf: &mut Vec<u8>, field: u32, v: &[M]) {
    for m in v {
        super::put_message_field(buf, field, m);
    }
}

/// Reads one element of a repeated message field.
pub fn read_repeated_message<M: Message>(
    msg: &'static str,
    field: u32,
    wt: WireType,
    buf: &mut &[u8],
    depth: u32,
    out: &mut Vec<M>,
) -> Result<(), DecodeError> {
    expect_wire(msg, field, wt, WireType::Len)?;
    let mut m = M::default();
    merge_nested(&mut m, buf, depth)?;
    out.push(m);
    Ok(())
}

/// Merges a nested message field into `m`.
#[inline]
pub fn read_message<M: Message>(
    msg: &'static str,
    field: u32,
    wt: WireType,
    buf: &mut &[u8],
    depth: u32,
    m: &mut M,
) -> Result<(), DecodeError> {
    expect_wire(msg, field, wt, WireType::Len)?;
    merge_nested(m, buf, depth)
}

/// A map value: a scalar or a message.
pub trait MapValue: Default {
    /// Encoded size of the value field (key 2) of an entry.
    fn entry_len(&self) -> usize;
    /// Writes the value field (key 2) of an entry.
    fn put_entry(&self, buf: &mut Vec<u8>);
    /// Reads the value field (key 2) of an entry.
    fn read_entry(&mut self, wt: WireType, buf: &mut &[u8], depth: u32) -> Result<(), DecodeError>;
}

/// A map value that is a scalar of codec `C`.
pub struct ScalarValue<C: Scalar>(pub C::V);

impl<C: Scalar> Default for ScalarValue<C> {
    fn default() -> Self {
        ScalarValue(C::V::default())
    }
}

impl<C: Scalar> MapValue for ScalarValue<C> {
    fn entry_len(&self) -> usize {
        always_len::<C>(2, &self.0)
    }
    fn put_entry(&self, buf: &mut Vec<u8>) {
        put_always::<C>(buf, 2, &self.0)
    }
    fn read_entry(
        &mut self,
        wt: WireType,
        buf: &mut &[u8],
        _depth: u32,
    ) -> Result<(), DecodeError> {
        self.0 = read_scalar::<C>("map entry", 2, wt, buf)?;
        Ok(())
    }
}

impl<M: Message> MapValue for M {
    fn entry_len(&self) -> usize {
        len_field_len(2, self.encoded_len())
    }
    fn put_entry(&self, buf: &mut Vec<u8>) {
        super::put_message_field(buf, 2, self)
    }
    fn read_entry(&mut self, wt: WireType, buf: &mut &[u8], depth: u32) -> Result<(), DecodeError> {
        read_message("map entry", 2, wt, buf, depth, self)
    }
}

/// Size of a map field whose values are scalars; entries write key and value always.
pub fn map_len<K: Scalar, V: Scalar>(field: u32, m: &BTreeMap<K::V, V::V>) -> usize
where
    K::V: Ord,
{
    m.iter()
        .map(|(k, v)| len_field_len(field, always_len::<K>(1, k) + always_len::<V>(2, v)))
        .sum()
}

/// Writes a map field whose values are scalars, in key order.
pub fn put_map<K: Scalar, V: Scalar>(buf: &mut Vec<u8>, field: u32, m: &BTreeMap<K::V, V::V>)
where
    K::V: Ord,
{
    for (k, v) in m {
        put_key(buf, field, WireType::Len);
        put_varint(buf, (always_len::<K>(1, k) + always_len::<V>(2, v)) as u64);
        put_always::<K>(buf, 1, k);
        put_always::<V>(buf, 2, v);
    }
}

/// Size of a map field whose values are messages.
pub fn map_message_len<K: Scalar, M: Message>(field: u32, m: &BTreeMap<K::V, M>) -> usize
where
    K::V: Ord,
{
    m.iter()
        .map(|(k, v)| {
            len_field_len(
                field,
                always_len::<K>(1, k) + len_field_len(2, v.encoded_len()),
            )
        })
        .sum()
}

/// Writes a map field whose values are messages, in key order.
pub fn put_map_message<K: Scalar, M: Message>(buf: &mut Vec<u8>, field: u32, m: &BTreeMap<K::V, M>)
where
    K::V: Ord,
{
    for (k, v) in m {
        put_key(buf, field, WireType::Len);
        put_varint(
            buf,
            (always_len::<K>(1, k) + len_field_len(2, v.encoded_len())) as u64,
        );
        put_always::<K>(buf, 1, k);
        super::put_message_field(buf, 2, v);
    }
}

/// Reads one map entry into `m`; absent keys/values take their defaults, as protobuf says.
pub fn read_map_entry<K: Scalar, V: MapValue>(
    msg: &'static str,
    field: u32,
    wt: WireType,
    buf: &mut &[u8],
    depth: u32,
) -> Result<(K::V, V), DecodeError> {
    expect_wire(msg, field, wt, WireType::Len)?;
    if depth + 1 > super::RECURSION_LIMIT {
        return Err(DecodeError::RecursionLimit);
    }
    let mut entry = read_len_bytes(buf, "a map entry")?;
    let mut key = K::V::default();
    let mut value = V::default();
    while !entry.is_empty() {
        let (f, w) = super::read_key(&mut entry)?;
        match f {
            1 => key = read_scalar::<K>(msg, field, w, &mut entry)?,
            2 => value.read_entry(w, &mut entry, depth + 1)?,
            _ => super::skip_value(w, &mut entry)?,
        }
    }
    Ok((key, value))
}

/// A `google.protobuf.*Value` wrapper held as `Option<V>` (gogoproto's `wktpointer`).
pub fn wkt_len<C: Scalar>(field: u32, v: &Option<C::V>) -> usize {
    v.as_ref()
        .map_or(0, |x| len_field_len(field, single_len::<C>(1, x)))
}

/// Writes a wrapper field when present.
pub fn put_wkt<C: Scalar>(buf: &mut Vec<u8>, field: u32, v: &Option<C::V>) {
    if let Some(x) = v {
        put_key(buf, field, WireType::Len);
        put_varint(buf, single_len::<C>(1, x) as u64);
        put_single::<C>(buf, 1, x);
    }
}

/// Reads a wrapper field.
pub fn read_wkt<C: Scalar>(
    msg: &'static str,
    field: u32,
    wt: WireType,
    buf: &mut &[u8],
) -> Result<C::V, DecodeError> {
    expect_wire(msg, field, wt, WireType::Len)?;
    let mut inner = read_len_bytes(buf, "a wrapper value")?;
    let mut v = C::V::default();
    while !inner.is_empty() {
        let (f, w) = super::read_key(&mut inner)?;
        if f == 1 {
            v = read_scalar::<C>(msg, field, w, &mut inner)?;
        } else {
            super::skip_value(w, &mut inner)?;
        }
    }
    Ok(v)
}
