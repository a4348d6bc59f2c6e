//! `google.protobuf.Struct` ↔ `serde_json::Value`, for the unstructured audit-log calls,
//! whose payload is an event's JSON as a `Struct`.
//!
//! A `Struct` cannot hold every JSON value exactly: numbers are `f64` (an integer above 2^53
//! loses precision, as in upstream's `structpb` conversion) and the top level must be an
//! object.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as PbValue};
use serde_json::{Map, Number, Value};

/// A JSON object as a `Struct`.
pub fn struct_from_json(obj: &Map<String, Value>) -> Struct {
    Struct {
        fields: obj
            .iter()
            .map(|(k, v)| (k.clone(), value_from_json(v)))
            .collect(),
    }
}

/// A JSON value as a protobuf `Value`.
pub fn value_from_json(v: &Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(value_from_json).collect(),
        }),
        Value::Object(o) => Kind::StructValue(struct_from_json(o)),
    };
    PbValue { kind: Some(kind) }
}

/// A `Struct` as a JSON object.
pub fn struct_to_json(s: &Struct) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

/// A protobuf `Value` as JSON. Whole numbers within ±2^53 become JSON integers (as Go's
/// `encoding/json` prints them); a non-finite number (which JSON cannot hold) becomes null.
pub fn value_to_json(v: &PbValue) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
    }
}

const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

fn number_to_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= EXACT {
        return Value::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}
