//! The native baseline of the browser benchmark (`web-demo/bench.sh`): decodes a recording
//! file to typed events with the core's `RecordingReader`, fed 1 MiB chunks from memory, as
//! `tapelog export` reads. Prints `native_decode_mb_s=N` (best of 3 runs).
//!
//! `cargo bench -p tapelog-wasm --bench native_decode -- FILE`
use std::time::Instant;

use tapelog_core::codec::{Polled, RecordingReader};

fn decode(bytes: &[u8]) -> Result<u64, String> {
    let mut r = RecordingReader::new();
    let mut events = 0u64;
    let mut chunks = bytes.chunks(1 << 20);
    loop {
        match r.poll().map_err(|e| e.to_string())? {
            Polled::Event(_) => events += 1,
            Polled::NeedInput => match chunks.next() {
                Some(c) => r.push(c),
                None => r.finish(),
            },
            Polled::End => return Ok(events),
        }
    }
}

fn main() -> Result<(), String> {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        return Err("usage: native_decode FILE".into());
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut best = f64::MAX;
    let mut events = 0;
    for _ in 0..3 {
        let t = Instant::now();
        events = decode(&bytes)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mb = bytes.len() as f64 / 1e6;
    println!("native_decode_events={events}");
    println!("native_decode_seconds={best:.3}");
    println!("native_decode_mb_s={:.1}", mb / best);
    Ok(())
}
