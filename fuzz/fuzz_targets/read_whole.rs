//! The recording reader on arbitrary bytes: never panics, and every event it returns
//! re-encodes and decodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_core::AuditEvent;
use tapelog_core::codec::read_all;

fuzz_target!(|data: &[u8]| {
    let r = read_all(data);
    for e in &r.events {
        let bytes = e.to_oneof_bytes();
        let back = AuditEvent::decode_oneof(&bytes).expect("re-encoded event decodes");
        assert_eq!(back.to_oneof_bytes(), bytes);
        let _ = e.to_json();
    }
    let _ = tapelog_core::codec::legacy::read_tar_recording(data);
});
