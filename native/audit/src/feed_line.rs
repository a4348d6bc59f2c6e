//! The feed's fast line parse: the four fields an exporter reads of a stored line (`event`,
//! `uid`, `sid`, `time`), taken without building the line's map.
//!
//! Search parses a line into `EventFields` (a `serde_json` map: every key and value
//! allocated); the feed's readers need only these four fields of each line, so that parse
//! was most of a feed read's time. Here the line goes through `serde_json`'s own parser,
//! with a visitor of our own instead of a derived struct, so that which lines are events
//! and what the fields say stay exactly those of `EventFields::parse` and its getters:
//!
//! - a derived struct refuses a repeated key and a non-string value in a field; the map
//!   keeps the last value of a repeated key, and a getter reads a non-string as "";
//! - a derived struct skips unknown fields with `IgnoredAny`, which checks their syntax only
//!   (it takes `1e400` and a lone surrogate escape `"\ud800"`, which the map's parse
//!   refuses). Here every other value is walked with `deserialize_any` (numbers converted,
//!   strings unescaped into the parser's scratch buffer, the same nesting limit), which
//!   refuses exactly what the map's parse refuses, and keeps nothing.
//!
//! Strings without escapes are borrowed from the line; nothing is allocated for a line
//! whose four fields have no escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tapelog_core::Timestamp;

/// The fields of one stored line that the feed's readers use; each as the `EventFields`
/// getter gives it ("" when absent or not a string; Go's zero time when `time` is absent
/// or not an RFC 3339 string).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LineFields<'a> {
    /// `event`.
    pub event: Cow<'a, str>,
    /// `uid`.
    pub uid: Cow<'a, str>,
    /// `sid`.
    pub sid: Cow<'a, str>,
    /// `time`.
    pub time: Timestamp,
}

/// Parses one stored line: `Err` exactly when `EventFields::parse` fails on it (not JSON,
/// not an object).
pub(crate) fn parse_line(json: &str) -> Result<LineFields<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let raw = de.deserialize_any(ObjectVisitor)?;
    de.end()?;
    fn string(v: Option<Cow<'_, str>>) -> Cow<'_, str> {
        v.unwrap_or(Cow::Borrowed(""))
    }
    Ok(LineFields {
        time: raw
            .time
            .as_deref()
            .and_then(Timestamp::parse_rfc3339)
            .unwrap_or_default(),
        event: string(raw.event),
        uid: string(raw.uid),
        sid: string(raw.sid),
    })
}

/// The four fields as read: `None` when absent or not a string.
#[derive(Default)]
struct Raw<'a> {
    event: Option<Cow<'a, str>>,
    uid: Option<Cow<'a, str>>,
    sid: Option<Cow<'a, str>>,
    time: Option<Cow<'a, str>>,
}

/// A key of the line's object: one of the four, or another.
enum Key {
    Event,
    Uid,
    Sid,
    Time,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "event" => Key::Event,
            "uid" => Key::Uid,
            "sid" => Key::Sid,
            "time" => Key::Time,
            _ => Key::Other,
        })
    }
}

/// The line: an object, else the map's parse would fail too.
struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let mut raw = Raw::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            // A repeated key: the last value counts, as in the map.
            let slot = match key {
                Key::Event => &mut raw.event,
                Key::Uid => &mut raw.uid,
                Key::Sid => &mut raw.sid,
                Key::Time => &mut raw.time,
                Key::Other => {
                    map.next_value_seed(Walk)?;
                    continue;
                }
            };
            *slot = map.next_value_seed(StringOrWalk)?;
        }
        Ok(raw)
    }
}

/// A value of one of the four fields: the string, or `None` for any other value (walked).
struct StringOrWalk;

impl<'de> DeserializeSeed<'de> for StringOrWalk {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(StringOrWalk)
    }
}

impl<'de> Visitor<'de> for StringOrWalk {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Walk.visit_seq(seq).map(|()| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Walk.visit_map(map).map(|()| None)
    }
}

/// Any JSON value, parsed as the map's parse would (and refused where it refuses), kept
/// nowhere.
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Walk)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Walk)?.is_some() {
            map.next_value_seed(Walk)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tapelog_core::EventFields;

    /// The fast parse and the map's parse agree on `line`: both fail, or both give the same
    /// four fields.
    fn agree(line: &str) {
        let fast = parse_line(line);
        let full = EventFields::parse(line);
        match (&fast, &full) {
            (Err(_), Err(_)) => {}
            (Ok(f), Ok(m)) => {
                assert_eq!(f.event, m.get_type(), "event of {line:?}");
                assert_eq!(f.uid, m.get_id(), "uid of {line:?}");
                assert_eq!(f.sid, m.get_session_id(), "sid of {line:?}");
                assert_eq!(f.time, m.get_timestamp(), "time of {line:?}");
            }
            _ => panic!(
                "{line:?}: fast {:?}, map {:?}",
                fast.map(|_| ()),
                full.map(|_| ())
            ),
        }
    }

    #[test]
    fn the_fast_parse_reads_lines_as_the_map_does() {
        let deep_ok = format!("{{\"a\":{}1{}}}", "[".repeat(126), "]".repeat(126));
        let deep_bad = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let lines = [
            r#"{"event":"user.login","uid":"u1","sid":"s1","time":"2024-01-15T10:00:00.123Z","x":1}"#,
            // Other field order, nested values, every kind of value.
            r#"{"a":{"b":[1,2.5,-3e2,true,false,null,{"c":"d"}]},"time":"2024-01-15T10:00:00Z","sid":"s","uid":"u","event":"e"}"#,
            // Escapes in the fields and their keys.
            r#"{"event":"a\"b\\c\u00e9\ud83d\ude00","\u0075id":"x\ny","sid":"\/","time":"2024-01-15T10:00:00\u005a"}"#,
            // Missing fields, an empty object.
            r#"{"event":"only"}"#,
            r#"{}"#,
            " { \"event\" : \"spaces\" } ",
            // Non-string fields: "" (and the zero time).
            r#"{"event":1,"uid":null,"sid":{"a":1},"time":12345}"#,
            r#"{"event":["x"],"uid":true,"sid":[],"time":{"t":"2024-01-15T10:00:00Z"}}"#,
            // A time that is not RFC 3339.
            r#"{"event":"e","time":"yesterday"}"#,
            r#"{"event":"e","time":"2024-13-45T99:00:00Z"}"#,
            // Repeated keys: the last counts, a non-string last one too.
            r#"{"uid":"first","uid":"second","event":"a","event":2}"#,
            // Keys that differ in case are other keys.
            r#"{"Event":"E","UID":"U","event":"e"}"#,
            // Not objects.
            "[1,2]",
            "\"text\"",
            "42",
            "null",
            "true",
            // Not JSON, or not only JSON.
            "not json",
            "{",
            r#"{"event":"a"} trailing"#,
            r#"{"event":"a"}{"event":"b"}"#,
            r#"{"event":"a",}"#,
            r#"{"event" "a"}"#,
            r#"{'event':'a'}"#,
            "{\"event\":\"tab\tinside\"}",
            r#"{"event":"a","x":01}"#,
            // What only a full parse of the other values refuses.
            r#"{"event":"a","x":1e400}"#,
            r#"{"event":"a","x":-1e400}"#,
            r#"{"event":"a","x":"\ud800"}"#,
            r#"{"event":"a","x":"\udc00x"}"#,
            r#"{"event":"a","x":{"\ud800":1}}"#,
            r#"{"event":"a","x":"\q"}"#,
            r#"{"event":"a","x":"\u12"}"#,
            // And in the fields themselves.
            r#"{"event":"\ud800","uid":"u"}"#,
            r#"{"uid":1e400}"#,
            // Big numbers that still fit a float.
            r#"{"event":"a","x":18446744073709551616,"y":-9223372036854775809,"z":1.7976931348623157e308}"#,
            &deep_ok,
            &deep_bad,
        ];
        for line in lines {
            agree(line);
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let f = parse_line(r#"{"event":"user.login","uid":"u\u0031","sid":"s"}"#).unwrap();
        assert!(matches!(f.event, Cow::Borrowed("user.login")));
        assert!(matches!(f.sid, Cow::Borrowed("s")));
        assert_eq!(f.uid, "u1");
    }

    /// A small deterministic generator (xorshift) of lines: pieces of JSON put together, then
    /// sometimes cut or given a stray byte; the two parses must agree on every one.
    #[test]
    fn the_fast_parse_agrees_on_generated_lines() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let keys = [
            "event",
            "uid",
            "sid",
            "time",
            "code",
            "ei",
            "\\u0073id",
            "tim\\u0065",
            "x",
            "",
        ];
        let values = [
            r#""user.login""#,
            r#""a\"b""#,
            r#""\u00e9t\u00e9""#,
            r#""2024-01-15T10:00:00Z""#,
            r#""2024-01-15T10:00:00.5+02:00""#,
            "1",
            "-0.5",
            "1e400",
            "true",
            "null",
            "[]",
            r#"[1,"x",{"k":null}]"#,
            r#"{"n":{"m":[]}}"#,
            r#""\ud800""#,
            r#""\ud83d\ude00""#,
            "\"\"",
        ];
        let strays = ["", ",", "}", "]", "\"", "\\", "{", " ", "x", "\u{e9}"];
        for _ in 0..20_000 {
            let mut line = String::from("{");
            for i in 0..next(6) {
                if i > 0 {
                    line.push(',');
                }
                line.push('"');
                line.push_str(keys[next(keys.len())]);
                line.push_str("\":");
                line.push_str(values[next(values.len())]);
            }
            line.push('}');
            match next(6) {
                0 => {
                    // Cut at a character boundary.
                    let mut at = next(line.len() + 1);
                    while !line.is_char_boundary(at) {
                        at -= 1;
                    }
                    line.truncate(at);
                }
                1 => {
                    let mut at = next(line.len() + 1);
                    while !line.is_char_boundary(at) {
                        at -= 1;
                    }
                    line.insert_str(at, strays[next(strays.len())]);
                }
                _ => {}
            }
            agree(&line);
        }
    }
}
