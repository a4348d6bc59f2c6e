//! Fluentd Forward protocol messages (the receiver's side of `tapelog forward`'s
//! `forward://` output): bytes fed in random chunks give the same messages and the same
//! first error as the bytes pushed at once, and nothing panics or allocates past the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_core::fluentd::forward_protocol::{AckDecoder, MessageDecoder};

fn drain(d: &mut MessageDecoder, out: &mut Vec<String>) -> bool {
    loop {
        match d.poll() {
            Ok(Some(m)) => out.push(format!("{m:?}")),
            Ok(None) => return true,
            Err(e) => {
                out.push(format!("error: {e}"));
                return false;
            }
        }
    }
}

fuzz_target!(|input: (Vec<u16>, &[u8])| {
    let (cuts, data) = input;
    let limit = 1 << 20;
    let mut whole = Vec::new();
    let mut d = MessageDecoder::new(limit);
    if d.push(data).is_ok() {
        drain(&mut d, &mut whole);
    }
    let mut split = Vec::new();
    let mut d = MessageDecoder::new(limit);
    let mut rest = data;
    let mut cuts = cuts.into_iter();
    while !rest.is_empty() {
        let n = (cuts.next().unwrap_or(u16::MAX) as usize % 4096 + 1).min(rest.len());
        if d.push(&rest[..n]).is_err() || !drain(&mut d, &mut split) {
            break;
        }
        rest = &rest[n..];
    }
    assert_eq!(whole, split);

    let mut acks = AckDecoder::new(4096);
    for piece in data.chunks(7) {
        if acks.push(piece).is_err() {
            break;
        }
        while let Ok(Some(_)) = acks.poll() {}
    }
});
