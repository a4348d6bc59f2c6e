use base64::Engine as _;
use serde_json::Value;

use crate::proto::{Duration, JsonStruct, Timestamp, Traits};

/// A value that prints itself as Teleport's JSON.
pub trait ToJson {
    /// Appends the JSON text.
    fn write_json(&self, out: &mut String);
}

/// Appends a JSON string: `"` and `\` escaped, `\n` `\r` `\t` by name, other bytes below 0x20
/// as `\u00xx`; everything else (HTML characters, U+2028, non-ASCII) verbatim.
pub fn write_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a float the way Go's `encoding/json` prints a float64: shortest round-trip digits,
/// plain notation for 1e-6 <= |x| < 1e21, otherwise `1e+21` / `1e-07` style.
pub fn write_go_float(out: &mut String, f: f64) {
    use std::fmt::Write as _;
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push_str(mantissa);
        out.push('e');
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Appends a JSON value with Go's formatting (sorted keys, Go floats, Go string escaping).
pub fn write_json_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(itoa(i).as_str());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                write_go_float(out, n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => write_json_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_value(out, item);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, k);
                out.push(':');
                write_json_value(out, &m[k]);
            }
            out.push('}');
        }
    }
}

/// Appends a JSON value as Go's `encoding/json.Marshal` prints an `interface{}` that
/// json-iterator decoded (upstream's `data` of an `unknown` event): objects with sorted keys,
/// no spaces, every number as a float64 (so integers beyond 2^53 round as in Go; exponents as
/// `1e+21` and `1e-7`), and the
/// standard library's string escaping (`<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes;
/// `\b` `\f` `\n` `\r` `\t` by name).
pub fn write_go_marshal_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            write_go_float(out, n.as_f64().unwrap_or(0.0));
            // encoding/json (unlike json-iterator) writes one exponent digit: 1e-7, not 1e-07.
            let b = out.as_bytes();
            let n = b.len();
            if n >= 4 && &b[n - 4..n - 1] == b"e-0" {
                out.remove(n - 2);
            }
        }
        Value::String(s) => write_go_marshal_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_marshal_value(out, item);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_marshal_string(out, k);
                out.push(':');
                write_go_marshal_value(out, &m[k]);
            }
            out.push('}');
        }
    }
}

/// A string as Go's `encoding/json` escapes it with HTML escaping on (its default).
fn write_go_marshal_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn itoa(i: i64) -> String {
    i.to_string()
}

/// Writes the members of one JSON object; inserts the commas.
pub struct ObjectWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    /// Starts an object (`{`).
    pub fn begin(out: &'a mut String) -> Self {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    /// Ends the object (`}`).
    pub fn end(self) {
        self.out.push('}');
    }

    /// Writes `"key":` and returns the buffer for the value. Keys come from the schema and need
    /// no escaping.
    #[inline]
    pub fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// A string member.
    #[inline]
    pub fn str(&mut self, key: &str, v: &str) {
        write_json_string(self.key(key), v);
    }

    /// An integer member.
    #[inline]
    pub fn int<T: std::fmt::Display>(&mut self, key: &str, v: T) {
        use std::fmt::Write as _;
        let out = self.key(key);
        let _ = write!(out, "{v}");
    }

    /// A bool member.
    #[inline]
    pub fn bool(&mut self, key: &str, v: bool) {
        self.key(key).push_str(if v { "true" } else { "false" });
    }

    /// A float member (Go formatting).
    #[inline]
    pub fn float(&mut self, key: &str, v: f64) {
        write_go_float(self.key(key), v);
    }

    /// A `null` member.
    #[inline]
    pub fn null(&mut self, key: &str) {
        self.key(key).push_str("null");
    }

    /// A time member (RFC 3339).
    #[inline]
    pub fn time(&mut self, key: &str, t: &Timestamp) {
        let out = self.key(key);
        out.push('"');
        t.write_rfc3339(out);
        out.push('"');
    }

    /// A bytes member (standard base64, as Go prints `[]byte`).
    #[inline]
    pub fn bytes(&mut self, key: &str, b: &[u8]) {
        let out = self.key(key);
        out.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(b, out);
        out.push('"');
    }

    /// A member whose value is any [`ToJson`].
    #[inline]
    pub fn value<T: ToJson + ?Sized>(&mut self, key: &str, v: &T) {
        v.write_json(self.key(key));
    }

    /// A list of strings (`null` when empty, as Go prints a nil slice).
    pub fn strs(&mut self, key: &str, v: &[String]) {
        let out = self.key(key);
        write_str_list(out, v);
    }
}

fn write_str_list(out: &mut String, v: &[String]) {
    if v.is_empty() {
        out.push_str("null");
        return;
    }
    out.push('[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, s);
    }
    out.push(']');
}

impl ToJson for str {
    fn write_json(&self, out: &mut String) {
        write_json_string(out, self)
    }
}

impl ToJson for String {
    fn write_json(&self, out: &mut String) {
        write_json_string(out, self)
    }
}

impl ToJson for Timestamp {
    fn write_json(&self, out: &mut String) {
        out.push('"');
        self.write_rfc3339(out);
        out.push('"');
    }
}

impl ToJson for Duration {
    fn write_json(&self, out: &mut String) {
        out.push_str(&self.0.to_string());
    }
}

impl ToJson for JsonStruct {
    fn write_json(&self, out: &mut String) {
        write_json_value(out, &Value::Object(self.0.clone()))
    }
}

impl ToJson for Traits {
    fn write_json(&self, out: &mut String) {
        if self.0.is_empty() {
            out.push_str("null");
            return;
        }
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, k);
            out.push(':');
            write_str_list(out, v);
        }
        out.push('}');
    }
}

impl ToJson for Value {
    fn write_json(&self, out: &mut String) {
        write_json_value(out, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut o = String::new();
        write_json_string(&mut o, v);
        o
    }

    #[test]
    fn escapes_like_json_iterator_without_html_escaping() {
        assert_eq!(s("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s("<&>"), r#""<&>""#);
        assert_eq!(s("\n\r\t\u{1}\u{1f}"), r#""\n\r\t\u0001\u001f""#);
        assert_eq!(s("é\u{2028}"), "\"é\u{2028}\"");
    }

    #[test]
    fn floats_like_go() {
        let f = |v: f64| {
            let mut o = String::new();
            write_go_float(&mut o, v);
            o
        };
        assert_eq!(f(1.0), "1");
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(-0.25), "-0.25");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1e20), "100000000000000000000");
        assert_eq!(f(1e-7), "1e-07");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(123456789.125), "123456789.125");
    }
}

/// A slice printed as a JSON array.
pub struct List<'a, T>(pub &'a [T]);

impl<T: ToJson> ToJson for List<'_, T> {
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            x.write_json(out);
        }
        out.push(']');
    }
}

/// A list of byte strings printed as base64 strings.
pub struct Base64List<'a>(pub &'a [Vec<u8>]);

impl ToJson for Base64List<'_> {
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(x, out);
            out.push('"');
        }
        out.push(']');
    }
}

/// A string-keyed map printed as a JSON object with sorted keys.
pub struct StrMap<'a, V>(pub &'a std::collections::BTreeMap<String, V>);

impl<V: ToJson> ToJson for StrMap<'_, V> {
    fn write_json(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, k);
            out.push(':');
            v.write_json(out);
        }
        out.push('}');
    }
}

impl ToJson for Vec<u8> {
    fn write_json(&self, out: &mut String) {
        out.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(self, out);
        out.push('"');
    }
}

macro_rules! display_to_json {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn write_json(&self, out: &mut String) {
                use std::fmt::Write as _;
                let _ = write!(out, "{}", self);
            }
        }
    )*};
}
display_to_json!(i32, i64, u32, u64, bool);

impl ToJson for f64 {
    fn write_json(&self, out: &mut String) {
        write_go_float(out, *self)
    }
}

impl ToJson for f32 {
    fn write_json(&self, out: &mut String) {
        write_go_float(out, f64::from(*self))
    }
}

impl<T: ToJson + ?Sized> ToJson for Box<T> {
    fn write_json(&self, out: &mut String) {
        (**self).write_json(out)
    }
}
