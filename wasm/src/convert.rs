//! Conversions between core values and JavaScript values: events as objects (Teleport's JSON,
//! parsed by the engine, plus print data as a `Uint8Array`), counters, summaries, errors.

use js_sys::{Array, Error, JSON, Object, Reflect, Uint8Array};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{CodecError, ReaderStats};
use tapelog_core::json::ToJson;
use tapelog_core::playback::SessionSummary;
use wasm_bindgen::JsValue;

/// Sets `obj[key] = value` (a plain object: cannot fail).
pub(crate) fn set(obj: &JsValue, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// Parses JSON text made by the core (always valid); `undefined` if the engine refuses it.
fn parse(text: &str) -> JsValue {
    JSON::parse(text).unwrap_or(JsValue::UNDEFINED)
}

/// Events as an array of plain objects. All events are written as one JSON array and parsed
/// in one call (much faster than one parse per event); print data is then attached.
pub(crate) fn events_to_array(events: &[AuditEvent]) -> Array {
    let mut text = String::with_capacity(events.len() * 256 + 2);
    text.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        e.write_json(&mut text);
    }
    text.push(']');
    let array: Array = parse(&text).into();
    for (i, e) in events.iter().enumerate() {
        if let Some(data) = e.print_data() {
            set(&array.get(i as u32), "data", Uint8Array::from(data));
        }
    }
    array
}

/// One event as a plain object.
pub(crate) fn event_to_object(e: &AuditEvent) -> JsValue {
    events_to_array(std::slice::from_ref(e)).get(0)
}

/// Reader counters: `{total, skipped, outOfOrder, parts, danglingBytes, offset}`.
pub(crate) fn stats_to_object(s: ReaderStats, offset: u64) -> JsValue {
    let o: JsValue = Object::new().into();
    set(&o, "total", s.total as f64);
    set(&o, "skipped", s.skipped as f64);
    set(&o, "outOfOrder", s.out_of_order as f64);
    set(&o, "parts", s.parts as f64);
    set(&o, "danglingBytes", s.dangling_bytes as f64);
    set(&o, "offset", offset as f64);
    o
}

/// The session summary (`SessionSummary::to_json_value`) as an object.
pub(crate) fn summary_to_object(s: &SessionSummary) -> JsValue {
    parse(&s.to_json_value().to_string())
}

/// The variant name of an error kind (`EncryptedRecording`, `TruncatedPart`, …).
fn kind_name(e: &CodecError) -> String {
    let debug = format!("{:?}", e.kind);
    debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A codec error as a JS `Error`: the native message, plus `offset`, `part`, `kind` and, for
/// a bad record, `record` (its offset in the part's decompressed data).
pub(crate) fn error_to_js(e: &CodecError) -> JsValue {
    let err = Error::new(&e.to_string());
    err.set_name("RecordingError");
    let v: JsValue = err.into();
    set(&v, "offset", e.offset as f64);
    set(&v, "part", e.part as f64);
    set(&v, "kind", kind_name(e));
    if let Some(at) = e.record {
        set(&v, "record", at as f64);
    }
    v
}

/// A plain `Error` for misuse of the API (not a recording problem).
pub(crate) fn usage_error(message: &str) -> JsValue {
    Error::new(message).into()
}
