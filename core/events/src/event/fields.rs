//! `EventFields`: the dynamic map view of an event that Teleport's audit log and search use.

use serde_json::{Map, Value};

use super::{AuditEvent, EventError};
use crate::json::JsonError;
use crate::proto::Timestamp;

/// An event as a JSON object (Teleport's `events.EventFields`), with typed getters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFields(pub Map<String, Value>);

impl EventFields {
    /// The fields of an event, as Teleport's JSON prints them.
    pub fn from_event(e: &AuditEvent) -> EventFields {
        match serde_json::from_str(&e.to_json()) {
            Ok(Value::Object(m)) => EventFields(m),
            _ => EventFields::default(),
        }
    }

    /// Parses one JSON object.
    pub fn parse(text: &str) -> Result<EventFields, JsonError> {
        match serde_json::from_str(text) {
            Ok(Value::Object(m)) => Ok(EventFields(m)),
            Ok(other) => Err(JsonError::wrong("(event)", "an object", &other)),
            Err(e) => Err(JsonError::Syntax(e.to_string())),
        }
    }

    /// The typed event these fields describe (`FromEventFields`).
    pub fn to_event(&self) -> Result<AuditEvent, EventError> {
        AuditEvent::from_json_value(&Value::Object(self.0.clone()), None)
    }

    /// A string field, "" when absent or not a string.
    pub fn get_string(&self, key: &str) -> &str {
        self.0.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// A list of strings; non-string items are skipped.
    pub fn get_strings(&self, key: &str) -> Vec<String> {
        match self.0.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// An integer field (JSON numbers, truncated as Go's `int(float64)` does), 0 when absent.
    pub fn get_int(&self, key: &str) -> i64 {
        match self.0.get(key) {
            Some(Value::Number(n)) => n
                .as_i64()
                .unwrap_or_else(|| n.as_f64().map_or(0, |f| f as i64)),
            _ => 0,
        }
    }

    /// A time field (RFC 3339), Go's zero time when absent or malformed.
    pub fn get_time(&self, key: &str) -> Timestamp {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .and_then(Timestamp::parse_rfc3339)
            .unwrap_or_default()
    }

    /// `event`.
    pub fn get_type(&self) -> &str {
        self.get_string("event")
    }

    /// `uid`.
    pub fn get_id(&self) -> &str {
        self.get_string("uid")
    }

    /// `code`.
    pub fn get_code(&self) -> &str {
        self.get_string("code")
    }

    /// `time`.
    pub fn get_timestamp(&self) -> Timestamp {
        self.get_time("time")
    }

    /// `ei`.
    pub fn get_index(&self) -> i64 {
        self.get_int("ei")
    }

    /// `sid`.
    pub fn get_session_id(&self) -> &str {
        self.get_string("sid")
    }

    /// Teleport's JSON for these fields (sorted keys, Go formatting).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        crate::json::write_json_value(&mut out, &Value::Object(self.0.clone()));
        out
    }
}
