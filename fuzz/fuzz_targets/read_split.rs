//! The reader fed in random chunks gives exactly what it gives on the whole input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_core::codec::{Polled, ProtoReader, read_all};

fuzz_target!(|input: (Vec<u16>, &[u8])| {
    let (cuts, data) = input;
    let whole = read_all(data);
    let mut r = ProtoReader::default();
    let mut events = Vec::new();
    let mut rest = data;
    let mut cuts = cuts.into_iter();
    let error = loop {
        match r.poll() {
            Ok(Polled::Event(e)) => events.push(e),
            Ok(Polled::End) => break None,
            Ok(Polled::NeedInput) => {
                if rest.is_empty() {
                    r.finish();
                } else {
                    let n = (cuts.next().unwrap_or(u16::MAX) as usize % 4096 + 1).min(rest.len());
                    r.push(&rest[..n]);
                    rest = &rest[n..];
                }
            }
            Err(e) => break Some(e),
        }
    };
    assert_eq!(events, whole.events);
    // The kind (and everything decoded before) must agree. (`BadDeflate` carries no back-end
    // wording, which differed with the split.)
    assert_eq!(error.map(|e| e.kind), whole.error.map(|e| e.kind));
});
