//! Teleport JSON → event: never panics; a parsed event prints JSON that parses to the same event.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_core::AuditEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(e) = AuditEvent::from_json(text) {
        let json = e.to_json();
        let again = AuditEvent::from_json(&json).expect("printed JSON parses");
        assert_eq!(again.to_json(), json);
    }
});
