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
