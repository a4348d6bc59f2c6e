//! `google.protobuf.Struct` ↔ JSON for events of every kind.

use serde_json::Value;
use tapelog_core::AuditEvent;
use tapelog_core::event::EVENT_KINDS;
use tapelog_core::random::Rng;
use tapelog_teleport::structjson::{struct_from_json, struct_to_json};

/// What a trip through a `Struct` (numbers as f64) must give.
fn through_f64(v: &Value) -> Value {
    match v {
        Value::Number(n)
            if n.as_i64().is_some_and(|i| i.unsigned_abs() > 1 << 53)
                || n.as_u64().is_some_and(|u| u > 1 << 53) =>
        {
            serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                .map_or(Value::Null, Value::Number)
        }
        Value::Array(a) => Value::Array(a.iter().map(through_f64).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), through_f64(v))).collect())
        }
        other => other.clone(),
    }
}

#[test]
fn every_event_kind_round_trips() {
    let mut r = Rng::new(16);
    let mut exact = 0;
    for &(field, name) in EVENT_KINDS {
        for _ in 0..3 {
            let e = AuditEvent::random_of(field, &mut r).expect("known kind");
            let json: Value = serde_json::from_str(&e.to_json()).expect("event JSON");
            let Value::Object(obj) = &json else {
                panic!("{name}: not an object");
            };
            let back = Value::Object(struct_to_json(&struct_from_json(obj)));
            assert_eq!(back, through_f64(&json), "{name}");
            if back == json {
                exact += 1;
                // What tapelog parses from the Struct's JSON is what it parses from the
                // event's own JSON.
                // (Random events need not parse: then both fail alike.)
                let via_struct =
                    AuditEvent::from_json(&back.to_string()).map_err(|e| e.to_string());
                let direct = AuditEvent::from_json(&e.to_json()).map_err(|e| e.to_string());
                assert_eq!(via_struct, direct, "{name}");
            }
        }
    }
    assert!(
        exact > EVENT_KINDS.len(),
        "most events have no huge numbers ({exact})"
    );
}

#[test]
fn scalars() {
    let v = serde_json::json!({"a": 1, "b": -2.5, "c": null, "d": [true, "x", {"e": 9007199254740993u64}]});
    let Value::Object(o) = &v else { unreachable!() };
    let back = Value::Object(struct_to_json(&struct_from_json(o)));
    assert_eq!(back["a"], serde_json::json!(1));
    assert_eq!(back["b"], serde_json::json!(-2.5));
    assert_eq!(back["c"], Value::Null);
    assert_eq!(back["d"][2]["e"], serde_json::json!(9007199254740992i64));
}
