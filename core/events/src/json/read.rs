use base64::Engine as _;
use serde_json::Value;
use thiserror::Error;

use super::write::ObjectWriter;
use crate::proto::{Duration, JsonStruct, Timestamp, Traits};

/// A JSON value that does not fit the event schema.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonError {
    /// Not valid JSON at all.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// A field has a value of the wrong kind.
    #[error("field {field:?}: expected {expected}, found {found}")]
    WrongType {
        /// JSON key.
        field: String,
        /// What the schema needs.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// An event without the `event` type field.
    #[error("event has no \"event\" (type) field")]
    MissingType,
}

impl JsonError {
    /// A wrong-type error for `field`.
    pub fn wrong(field: &str, expected: &'static str, found: &Value) -> Self {
        let mut shown = found.to_string();
        if shown.len() > 40 {
            let mut cut = 40;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        JsonError::WrongType {
            field: field.to_owned(),
            expected,
            found: shown,
        }
    }
}

/// Builds a value from its JSON form.
pub trait FromJson: Sized {
    /// Reads `v`; `field` names the JSON key for errors.
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError>;
}

/// A message whose fields are JSON members (flattened where Go embeds structs).
pub trait JsonFields: Default {
    /// Writes every member, in Go's order and with Go's omission rules.
    fn write_json_fields(&self, w: &mut ObjectWriter<'_>);
    /// Sets the field named exactly `key`; `Ok(false)` when no field has that name.
    fn set_json_field(&mut self, key: &str, v: &Value) -> Result<bool, JsonError>;
    /// Every JSON member name this message reads.
    fn json_field_names() -> &'static [&'static str];

    /// As [`JsonFields::set_json_field`], from the member's JSON text (the direct reader,
    /// `direct.rs`): declines wherever `set_json_field` would fail (and by default, always).
    fn set_json_field_direct(
        &mut self,
        key: &str,
        v: super::direct::Raw<'_>,
    ) -> Result<bool, super::direct::Decline> {
        let _ = (key, v);
        Err(super::direct::Decline)
    }

    /// Reads an object: exact names first, then case-insensitively; unknown keys are ignored.
    fn merge_json_object(&mut self, obj: &serde_json::Map<String, Value>) -> Result<(), JsonError> {
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            if !self.set_json_field(k, v)?
                && let Some(name) = Self::json_field_names()
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(k))
            {
                self.set_json_field(name, v)?;
            }
        }
        Ok(())
    }
}

/// Reads a whole message from a JSON object.
pub fn from_json_value<T: JsonFields>(v: &Value, field: &str) -> Result<T, JsonError> {
    match v {
        Value::Object(obj) => {
            let mut m = T::default();
            m.merge_json_object(obj)?;
            Ok(m)
        }
        other => Err(JsonError::wrong(field, "an object", other)),
    }
}

macro_rules! int_from_json {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
                let n = match v {
                    Value::Number(n) => n,
                    other => return Err(JsonError::wrong(field, stringify!($t), other)),
                };
                n.as_i64()
                    .and_then(|i| <$t>::try_from(i).ok())
                    .or_else(|| n.as_u64().and_then(|u| <$t>::try_from(u).ok()))
                    .ok_or_else(|| JsonError::wrong(field, stringify!($t), v))
            }
        }
    )*};
}
int_from_json!(i32, i64, u32, u64);

impl FromJson for bool {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        v.as_bool()
            .ok_or_else(|| JsonError::wrong(field, "a bool", v))
    }
}

impl FromJson for f64 {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        v.as_f64()
            .ok_or_else(|| JsonError::wrong(field, "a number", v))
    }
}

impl FromJson for f32 {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        v.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| JsonError::wrong(field, "a number", v))
    }
}

impl FromJson for String {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| JsonError::wrong(field, "a string", v))
    }
}

impl FromJson for Timestamp {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        v.as_str()
            .and_then(Timestamp::parse_rfc3339)
            .ok_or_else(|| JsonError::wrong(field, "an RFC 3339 time", v))
    }
}

impl FromJson for Duration {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        i64::from_json(v, field).map(Duration)
    }
}

/// Bytes in JSON: standard base64, as Go writes `[]byte`.
pub fn bytes_from_json(v: &Value, field: &str) -> Result<Vec<u8>, JsonError> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or_else(|| JsonError::wrong(field, "base64 bytes", v))
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        match v {
            Value::Array(a) => a.iter().map(|x| T::from_json(x, field)).collect(),
            Value::Null => Ok(Vec::new()),
            other => Err(JsonError::wrong(field, "an array", other)),
        }
    }
}

impl<T: FromJson> FromJson for std::collections::BTreeMap<String, T> {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        match v {
            Value::Object(o) => o
                .iter()
                .map(|(k, x)| Ok((k.clone(), T::from_json(x, field)?)))
                .collect(),
            Value::Null => Ok(Default::default()),
            other => Err(JsonError::wrong(field, "an object", other)),
        }
    }
}

impl FromJson for JsonStruct {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        match v {
            Value::Object(o) => Ok(JsonStruct(o.clone())),
            other => Err(JsonError::wrong(field, "an object", other)),
        }
    }
}

impl FromJson for Traits {
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        std::collections::BTreeMap::<String, Vec<String>>::from_json(v, field).map(Traits)
    }
}

/// A list of base64 strings.
pub fn base64_list_from_json(v: &Value, field: &str) -> Result<Vec<Vec<u8>>, JsonError> {
    match v {
        Value::Array(a) => a.iter().map(|x| bytes_from_json(x, field)).collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(JsonError::wrong(field, "an array", other)),
    }
}

/// A list of messages.
pub fn messages_from_json<T: JsonFields>(v: &Value, field: &str) -> Result<Vec<T>, JsonError> {
    match v {
        Value::Array(a) => a.iter().map(|x| from_json_value(x, field)).collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(JsonError::wrong(field, "an array", other)),
    }
}

/// A string-keyed map of messages.
pub fn message_map_from_json<T: JsonFields>(
    v: &Value,
    field: &str,
) -> Result<std::collections::BTreeMap<String, T>, JsonError> {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| Ok((k.clone(), from_json_value(x, field)?)))
            .collect(),
        Value::Null => Ok(Default::default()),
        other => Err(JsonError::wrong(field, "an object", other)),
    }
}

/// A string-keyed map of base64 strings.
pub fn base64_map_from_json(
    v: &Value,
    field: &str,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, JsonError> {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| Ok((k.clone(), bytes_from_json(x, field)?)))
            .collect(),
        Value::Null => Ok(Default::default()),
        other => Err(JsonError::wrong(field, "an object", other)),
    }
}
