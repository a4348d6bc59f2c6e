//! Random values of every schema type, for property tests and fuzz seeds (feature `random`).
//! A small deterministic generator: the same seed gives the same events everywhere.

use std::collections::BTreeMap;

use crate::proto::{Duration, JsonStruct, Timestamp, Traits};

/// Nesting depth beyond which messages stay empty.
pub const MAX_DEPTH: u32 = 4;

/// xorshift64* generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    /// A small enum value.
    pub fn small_i32(&mut self) -> i32 {
        if self.coin() { 0 } else { self.below(6) as i32 }
    }
}

/// A type with random values.
pub trait Random {
    /// A random value; `depth` bounds nesting.
    fn random(r: &mut Rng, depth: u32) -> Self;
}

macro_rules! random_int {
    ($($t:ty),*) => {$(
        impl Random for $t {
            fn random(r: &mut Rng, _depth: u32) -> Self {
                match r.below(4) {
                    0 => 0,
                    1 => r.below(300) as $t,
                    2 => <$t>::MAX,
                    _ => r.next_u64() as $t,
                }
            }
        }
    )*};
}
random_int!(i32, i64, u32, u64);

impl Random for bool {
    fn random(r: &mut Rng, _depth: u32) -> Self {
        r.coin()
    }
}

impl Random for f64 {
    fn random(r: &mut Rng, _depth: u32) -> Self {
        match r.below(3) {
            0 => 0.0,
            1 => r.below(1000) as f64 / 8.0,
            _ => (r.next_u64() >> 11) as f64 * 1e-3 - 1e12,
        }
    }
}

impl Random for f32 {
    fn random(r: &mut Rng, _depth: u32) -> Self {
        if r.coin() {
            0.0
        } else {
            r.below(1000) as f32 / 4.0
        }
    }
}

const PIECES: &[&str] = &[
    "",
    "root",
    "a\"b",
    "back\\slash",
    "<tag>&amp;",
    "line\nbreak",
    "tab\t",
    "é✓",
    "\u{1}",
    "session.start",
    " ",
    "日本語",
];

impl Random for String {
    fn random(r: &mut Rng, _depth: u32) -> Self {
        let n = r.below(4);
        (0..n)
            .map(|_| PIECES[r.below(PIECES.len() as u64) as usize])
            .collect()
    }
}

impl Random for Vec<u8> {
    fn random(r: &mut Rng, _depth: u32) -> Self {
        let n = r.below(40) as usize;
        (0..n).map(|_| r.next_u64() as u8).collect()
    }
}

impl Random for Timestamp {
    fn random(r: &mut Rng, _depth: u32) -> Self {
        match r.below(4) {
            0 => Timestamp::ZERO,
            1 => Timestamp::from_unix_millis(1_600_000_000_000 + r.below(1 << 40) as i64),
            _ => Timestamp {
                seconds: r.below(253_402_300_799) as i64,
                nanos: r.below(1_000_000_000) as i32,
            },
        }
    }
}

impl Random for Duration {
    fn random(r: &mut Rng, _depth: u32) -> Self {
        Duration(if r.coin() { 0 } else { r.below(1 << 50) as i64 })
    }
}

impl Random for JsonStruct {
    fn random(r: &mut Rng, depth: u32) -> Self {
        let mut m = serde_json::Map::new();
        for _ in 0..r.below(3) {
            let v = match r.below(5) {
                0 => serde_json::Value::Null,
                1 => serde_json::Value::Bool(r.coin()),
                2 => serde_json::Number::from_f64(f64::random(r, depth))
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                3 => serde_json::Value::String(String::random(r, depth)),
                _ => serde_json::Value::Array(vec![serde_json::Value::String(String::random(
                    r, depth,
                ))]),
            };
            m.insert(String::random(r, depth), v);
        }
        JsonStruct(m)
    }
}

impl Random for Traits {
    fn random(r: &mut Rng, depth: u32) -> Self {
        Traits(map(r, depth))
    }
}

impl<T: Random> Random for Box<T> {
    fn random(r: &mut Rng, depth: u32) -> Self {
        Box::new(T::random(r, depth))
    }
}

impl<T: Random> Random for Vec<T> {
    fn random(r: &mut Rng, depth: u32) -> Self {
        vec(r, depth)
    }
}

/// A short random list.
pub fn vec<T: Random>(r: &mut Rng, depth: u32) -> Vec<T> {
    let n = if depth > MAX_DEPTH { 0 } else { r.below(3) };
    (0..n).map(|_| T::random(r, depth + 1)).collect()
}

/// A small random string-keyed map.
pub fn map<T: Random>(r: &mut Rng, depth: u32) -> BTreeMap<String, T> {
    let n = if depth > MAX_DEPTH { 0 } else { r.below(3) };
    (0..n)
        .map(|_| (String::random(r, depth), T::random(r, depth + 1)))
        .collect()
}

/// The largest protobuf field number.
pub const MAX_FIELD: u32 = (1 << 29) - 1;

/// Whether the schema's `OneOf` has a member with this field number.
pub fn is_known_oneof_field(field: u32) -> bool {
    crate::event::EVENT_KINDS.iter().any(|&(n, _)| n == field)
}

/// A `OneOf` field number the schema does not use: one of its reserved numbers, the first
/// after its last member, or any larger one up to [`MAX_FIELD`].
pub fn unknown_oneof_field(r: &mut Rng) -> u32 {
    let last = crate::event::EVENT_KINDS
        .iter()
        .map(|&(n, _)| n)
        .max()
        .unwrap_or(0);
    let reserved: Vec<u32> = (1..last).filter(|&n| !is_known_oneof_field(n)).collect();
    loop {
        let field = match r.below(5) {
            0 if !reserved.is_empty() => reserved[r.below(reserved.len() as u64) as usize],
            1 => last + 1,
            2 => MAX_FIELD,
            3 => last + 1 + r.below(1000) as u32,
            _ => last + 1 + r.below(u64::from(MAX_FIELD - last)) as u32,
        };
        if !is_known_oneof_field(field) {
            return field;
        }
    }
}

/// The body of an unknown `OneOf` member: which kind [`unknown_oneof_body`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownBody {
    /// No bytes.
    Empty,
    /// Random bytes (usually not protobuf).
    Junk,
    /// A `Metadata` (field 1, with the given index) and then valid fields of other numbers.
    MetadataFirst,
    /// A `Metadata` (field 1) and then random bytes.
    MetadataThenJunk,
    /// Valid protobuf without a field 1.
    NoMetadata,
    /// Field 1 as a length-delimited field whose bytes are not a `Metadata`.
    BadMetadata,
}

impl UnknownBody {
    /// Every kind.
    pub const ALL: [UnknownBody; 6] = [
        UnknownBody::Empty,
        UnknownBody::Junk,
        UnknownBody::MetadataFirst,
        UnknownBody::MetadataThenJunk,
        UnknownBody::NoMetadata,
        UnknownBody::BadMetadata,
    ];

    /// A random kind.
    pub fn random(r: &mut Rng) -> UnknownBody {
        UnknownBody::ALL[r.below(UnknownBody::ALL.len() as u64) as usize]
    }
}

fn junk(r: &mut Rng, max: u64) -> Vec<u8> {
    (0..r.below(max)).map(|_| r.next_u64() as u8).collect()
}

/// Valid protobuf fields other than 1: varints, strings, fixed values, nested messages.
fn other_fields(r: &mut Rng, out: &mut Vec<u8>) {
    use crate::proto::{WireType, put_key, put_len_field, put_varint};
    for _ in 0..r.below(4) {
        let field = 2 + r.below(40) as u32;
        match r.below(4) {
            0 => {
                put_key(out, field, WireType::Varint);
                put_varint(out, r.next_u64() >> r.below(64));
            }
            1 => put_len_field(out, field, String::random(r, 0).as_bytes()),
            2 => {
                put_key(out, field, WireType::Fixed64);
                out.extend_from_slice(&r.next_u64().to_le_bytes());
            }
            _ => {
                let mut inner = Vec::new();
                put_key(&mut inner, 1, WireType::Varint);
                put_varint(&mut inner, r.below(1 << 20));
                put_len_field(out, field, &inner);
            }
        }
    }
}

/// The body of an unknown member of kind `kind`; a `Metadata` in it gets `index` as its
/// event index.
pub fn unknown_oneof_body(r: &mut Rng, kind: UnknownBody, index: i64) -> Vec<u8> {
    use crate::proto::{put_len_field, put_message_field};
    let mut body = Vec::new();
    let metadata = |r: &mut Rng| {
        let mut m = crate::event::Metadata::random(r, 0);
        m.index = index;
        m
    };
    match kind {
        UnknownBody::Empty => {}
        UnknownBody::Junk => body = junk(r, 64),
        UnknownBody::MetadataFirst => {
            put_message_field(&mut body, 1, &metadata(r));
            other_fields(r, &mut body);
        }
        UnknownBody::MetadataThenJunk => {
            put_message_field(&mut body, 1, &metadata(r));
            body.extend_from_slice(&junk(r, 32));
        }
        UnknownBody::NoMetadata => other_fields(r, &mut body),
        UnknownBody::BadMetadata => {
            let mut bad = junk(r, 16);
            bad.insert(0, 0xff);
            put_len_field(&mut body, 1, &bad);
        }
    }
    body
}

/// A `OneOf` record whose only member is `field` (normally one the schema does not use, see
/// [`unknown_oneof_field`]) with `body`.
pub fn oneof_record(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 10);
    crate::proto::put_len_field(&mut out, field, body);
    out
}

/// A random `OneOf` record of an unknown member with a body of a random kind.
pub fn unknown_oneof(r: &mut Rng, index: i64) -> Vec<u8> {
    let field = unknown_oneof_field(r);
    let kind = UnknownBody::random(r);
    oneof_record(field, &unknown_oneof_body(r, kind, index))
}

/// `n` random `OneOf` records of a session, in index order: events of random known kinds
/// (under 60,000 bytes each) and, about one in `unknown_every`, an unknown member
/// ([`unknown_oneof`]; never when `unknown_every` is 0).
pub fn random_records(r: &mut Rng, n: usize, unknown_every: u64) -> Vec<Vec<u8>> {
    let kinds = crate::event::EVENT_KINDS;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let index = out.len() as i64;
        if unknown_every > 0 && r.below(unknown_every) == 0 {
            out.push(unknown_oneof(r, index));
            continue;
        }
        let (field, _) = kinds[r.below(kinds.len() as u64) as usize];
        if let Some(mut e) = crate::event::AuditEvent::random_of(field, r) {
            if e.oneof_len() > 60_000 {
                continue;
            }
            e.set_index(index);
            out.push(e.to_oneof_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AuditEvent;

    #[test]
    fn unknown_fields_are_never_schema_members() {
        let mut r = Rng::new(3);
        let mut seen_reserved = false;
        let mut seen_max = false;
        for _ in 0..2000 {
            let f = unknown_oneof_field(&mut r);
            assert!(
                !is_known_oneof_field(f) && (1..=MAX_FIELD).contains(&f),
                "{f}"
            );
            seen_reserved |= (185..=187).contains(&f);
            seen_max |= f == MAX_FIELD;
        }
        assert!(seen_reserved && seen_max);
        assert!(is_known_oneof_field(1) && !is_known_oneof_field(186));
    }

    #[test]
    fn unknown_members_with_a_metadata_keep_their_bytes_and_index() {
        let mut r = Rng::new(9);
        for i in 0..50 {
            let field = unknown_oneof_field(&mut r);
            let body = unknown_oneof_body(&mut r, UnknownBody::MetadataFirst, i);
            let record = oneof_record(field, &body);
            let e = AuditEvent::decode_oneof(&record).unwrap();
            assert_eq!(e.oneof_field(), field);
            assert_eq!(e.index(), i);
            assert_eq!(e.to_oneof_bytes(), record);
        }
    }

    #[test]
    fn every_body_kind_is_made() {
        let mut r = Rng::new(1);
        for kind in UnknownBody::ALL {
            let body = unknown_oneof_body(&mut r, kind, 4);
            match kind {
                UnknownBody::Empty => assert!(body.is_empty()),
                UnknownBody::MetadataFirst | UnknownBody::MetadataThenJunk => {
                    assert_eq!(body[0], 1 << 3 | 2)
                }
                UnknownBody::BadMetadata => assert_eq!(&body[..1], &[1 << 3 | 2]),
                UnknownBody::NoMetadata => assert!(body.first() != Some(&(1 << 3 | 2))),
                UnknownBody::Junk => {}
            }
        }
        let records = random_records(&mut r, 200, 4);
        assert_eq!(records.len(), 200);
        let unknown = records
            .iter()
            .filter(|rec| {
                let mut b = rec.as_slice();
                crate::proto::read_key(&mut b).is_ok_and(|(f, _)| !is_known_oneof_field(f))
            })
            .count();
        assert!(unknown > 20 && unknown < 100, "{unknown}");
    }
}
