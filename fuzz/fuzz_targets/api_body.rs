//! The bodies of `tapelog serve`'s write requests, decoded as the server decodes them.
//!
//! The first byte chooses the request, the rest is its body:
//! - 0: `POST /v1/events` as `application/json` (an event or an array of events);
//! - 1: `POST /v1/events` as JSON lines;
//! - 2: `POST /v1/streams` (and `…/resume`): a `StreamRequest`;
//! - 3: `POST /v1/streams/{id}/records`: framed records.
//!
//! Nothing panics, and what is accepted re-encodes and decodes equal: events printed as
//! JSON lines and as a JSON array read back to the same JSON; a stream request serializes
//! and reads back equal; framed records framed again give the body's bytes, and a record
//! that decodes as an event has the index the server read from its bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_api::{NDJSON_CONTENT_TYPE, StreamRequest};
use tapelog_core::AuditEvent;
use tapelog_server::{decode_events, decode_json, decode_records};

fn events(media: &str, body: &[u8]) {
    let Ok(events) = decode_events(media, body) else {
        return;
    };
    let json: Vec<String> = events.iter().map(AuditEvent::to_json).collect();
    let lines: String = json.iter().map(|j| format!("{j}\n")).collect();
    let array = format!("[{}]", json.join(","));
    for (media, body) in [(NDJSON_CONTENT_TYPE, lines), ("application/json", array)] {
        let again = decode_events(media, body.as_bytes()).expect("printed events decode");
        let again: Vec<String> = again.iter().map(AuditEvent::to_json).collect();
        assert_eq!(again, json, "{media}");
    }
}

fn records(body: &[u8]) {
    let Ok(records) = decode_records(body) else {
        return;
    };
    let mut framed = Vec::with_capacity(body.len());
    for r in &records {
        framed.extend_from_slice(&(r.oneof.len() as u32).to_be_bytes());
        framed.extend_from_slice(r.oneof);
        if let Ok(e) = AuditEvent::decode_oneof(r.oneof) {
            if !matches!(e, AuditEvent::Unrecognized(_)) {
                assert_eq!(e.index(), r.index, "{e:?}");
            }
        }
    }
    assert_eq!(framed, body);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode & 3 {
        0 => events("application/json", body),
        1 => events(NDJSON_CONTENT_TYPE, body),
        2 => {
            if let Ok(req) = decode_json::<StreamRequest>(body) {
                let bytes = serde_json::to_vec(&req).expect("a request serializes");
                assert_eq!(decode_json::<StreamRequest>(&bytes), Ok(req));
            }
        }
        _ => records(body),
    }
});
