//! The native baselines of the browser benchmark (`web-demo/bench.sh`), over a recording file
//! in memory fed in 1 MiB chunks, best of 3 runs each:
//!
//! - `native_decode_mb_s`: the core's `RecordingReader` to typed events (what `tapelog export`
//!   does for JSON);
//! - `native_player_mb_s`: [`tapelog_wasm::Batcher`], the page's own decode path (what
//!   `PlayerDecoder.poll(4096)` does, short of handing the batches to JavaScript).
//!
//! `cargo bench -p tapelog-wasm --bench native_decode -- FILE`
//!
//! `TAPELOG_BENCH_ONLY=player` runs the page's path alone, ten times (for a profiler:
//! `web-demo/tests/profile.mjs` gives the wasm side).
use std::time::Instant;

use tapelog_core::codec::{Polled, RecordingReader};
use tapelog_wasm::Batcher;

fn typed(bytes: &[u8]) -> Result<u64, String> {
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

fn player(bytes: &[u8]) -> Result<u64, String> {
    let mut b = Batcher::new(1000.0);
    let mut events = 0u64;
    let mut output = 0usize;
    let mut chunks = bytes.chunks(1 << 20);
    loop {
        let batch = b.poll(4096).map_err(|e| e.to_string())?;
        if batch.pulled > 0 {
            events += u64::from(batch.pulled);
            output += batch.frames.data.len();
            continue;
        }
        if b.ended() {
            std::hint::black_box(output);
            return Ok(events);
        }
        match chunks.next() {
            Some(c) => b.push(c),
            None => b.finish(),
        }
    }
}

fn best(bytes: &[u8], f: fn(&[u8]) -> Result<u64, String>) -> Result<(f64, u64), String> {
    let mut best = f64::MAX;
    let mut events = 0;
    for _ in 0..3 {
        let t = Instant::now();
        events = f(bytes)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, events))
}

fn main() -> Result<(), String> {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        return Err("usage: native_decode FILE".into());
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let mb = bytes.len() as f64 / 1e6;
    if std::env::var("TAPELOG_BENCH_ONLY").as_deref() == Ok("player") {
        let t = Instant::now();
        for _ in 0..10 {
            player(&bytes)?;
        }
        println!(
            "native_player_mb_s={:.1}",
            10.0 * mb / t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let (t, events) = best(&bytes, typed)?;
    println!("native_decode_events={events}");
    println!("native_decode_seconds={t:.3}");
    println!("native_decode_mb_s={:.1}", mb / t);
    let (p, player_events) = best(&bytes, player)?;
    if player_events != events {
        return Err(format!(
            "the player path took {player_events} events, the typed decode {events}"
        ));
    }
    println!("native_player_seconds={p:.3}");
    println!("native_player_mb_s={:.1}", mb / p);
    Ok(())
}
