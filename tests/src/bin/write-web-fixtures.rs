//! Writes the recordings the web player's browser tests load (from `tapelog_core::vectors`),
//! and `manifest.json`: what the page must show for each (computed here with the core, so the
//! browser tests and the native reader share one source of truth).
//!
//! `write-web-fixtures DIR` writes the test recordings; `write-web-fixtures DIR --big MB`
//! also writes `big.tlog`, a recording of about MB megabytes for the benchmark.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{CodecError, Polled, RecordingReader, RecordingWriter, WriterConfig};
use tapelog_core::export::{FrameKind, Framer};
use tapelog_core::vectors::{self, print};

/// The text of the last terminal line printed by frames up to `until_ms` (inclusive), and of
/// the first line printed after it.
fn lines_at(events: &[AuditEvent], until_ms: Option<i64>) -> (String, Option<String>) {
    let mut f = Framer::new();
    let mut last = String::new();
    let mut next = None;
    for e in events {
        if let Some(frame) = f.frame(e)
            && let FrameKind::Output(d) = frame.kind
        {
            let text = String::from_utf8_lossy(d).trim_end().to_string();
            if text.is_empty() {
                continue;
            }
            match until_ms {
                Some(t) if frame.time_ms > t => {
                    next = Some(text);
                    break;
                }
                _ => last = text,
            }
        }
    }
    (last, next)
}

/// Reads any recording as the browser does (`RecordingReader`): the events before any damage,
/// and the error.
fn read(bytes: &[u8]) -> (Vec<AuditEvent>, Option<CodecError>) {
    let mut r = RecordingReader::new();
    r.push(bytes);
    r.finish();
    let mut events = Vec::new();
    loop {
        match r.poll() {
            Ok(Polled::Event(e)) => events.push(e),
            Ok(Polled::End | Polled::NeedInput) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

fn vector(name: &str) -> Vec<u8> {
    match vectors::all().into_iter().find(|v| v.name == name) {
        Some(v) => v.bytes,
        None => panic!("no vector {name}"),
    }
}

/// `bytes` with part `n`'s gzip data overwritten (damage in the middle of a recording).
fn damage_part(mut bytes: Vec<u8>, n: usize) -> Vec<u8> {
    let mut at = 0usize;
    for _ in 0..n {
        let word = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[o..o + 8]);
            u64::from_be_bytes(w) as usize
        };
        at += 24 + word(at + 8) + word(at + 16);
    }
    for b in &mut bytes[at + 24 + 40..at + 24 + 80] {
        *b = 0xA5;
    }
    bytes
}

fn entry(dir: &Path, file: &str, bytes: &[u8], seek_s: Option<f64>) -> std::io::Result<Value> {
    std::fs::write(dir.join(file), bytes)?;
    let (events, error) = read(bytes);
    let (end_line, _) = lines_at(&events, None);
    let mut v = json!({
        "file": file,
        "size": bytes.len(),
        "events": events.len(),
        "end_line": end_line,
        "error": error.as_ref().map(|e| e.to_string()),
        "error_offset": error.as_ref().map(|e| e.offset),
    });
    if let Some(s) = seek_s {
        let (line, next) = lines_at(&events, Some((s * 1000.0) as i64));
        v["seek"] = json!({ "t": s, "line": line, "next": next });
    }
    Ok(v)
}

/// A recording of about `mb` megabytes: a session start, then prints of 120 bytes of
/// pseudo-random text lines (compressing about 2:1, like busy terminal output), 2 ms apart,
/// in 5 MiB padded parts, then a session end.
fn big(path: &Path, mb: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let session = vectors::sample_session(0);
    let mut w = RecordingWriter::new(WriterConfig::default());
    let mut written = 0u64;
    let mut add = |w: &mut RecordingWriter, e: &AuditEvent, written: &mut u64| {
        if let Err(err) = w.add(e) {
            panic!("{err}");
        }
        for p in w.take_parts() {
            *written += p.len();
            f.write_all(&p.to_vec())?;
        }
        Ok::<(), std::io::Error>(())
    };
    add(&mut w, &session[0], &mut written)?;
    let mut r = 0x2545_F491_4F6C_DD1Du64;
    let (mut i, mut offset) = (1i64, 0i64);
    while written < mb * 1024 * 1024 {
        let mut data = format!("{i:>9} ").into_bytes();
        while data.len() < 118 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            data.push(b"abcdefghijklmnopqrstuvwxyz0123456789 ./-_"[(r % 41) as usize]);
        }
        data.extend_from_slice(b"\r\n");
        add(&mut w, &print(i, i - 1, offset, i * 2, &data), &mut written)?;
        offset += data.len() as i64;
        i += 1;
    }
    let mut end = session[1].clone();
    end.set_index(i);
    add(&mut w, &end, &mut written)?;
    for p in w.finish() {
        f.write_all(&p.to_vec())?;
    }
    f.flush()
}

/// The sample session with a 10 s idle gap before its sixth print.
fn idle_gap() -> Vec<u8> {
    let mut events = vectors::sample_session(10);
    for e in &mut events {
        if let AuditEvent::SessionPrint(p) = e
            && p.chunk_index >= 5
        {
            p.delay_milliseconds += 10_000;
        }
    }
    match tapelog_core::codec::encode_recording(&events, WriterConfig::default()) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map_or("target/web-fixtures", String::as_str));
    std::fs::create_dir_all(&dir)?;
    let many = vector("many-padded-parts");
    let fixtures = vec![
        entry(&dir, "multi-part.tlog", &many, Some(7.0))?,
        entry(&dir, "padded.tlog", &vector("padding-inside-gzip"), None)?,
        entry(
            &dir,
            "replayed.tlog",
            &vector("resumed-duplicates"),
            Some(0.2),
        )?,
        entry(
            &dir,
            "unknown-event.tlog",
            &vector("unknown-oneof-member"),
            None,
        )?,
        entry(&dir, "damaged.tlog", &damage_part(many, 3), None)?,
        entry(&dir, "encrypted.tlog", &vector("v2-encrypted"), None)?,
        entry(&dir, "legacy.tar", &vector("legacy-tar"), None)?,
        entry(&dir, "idle-gap.tlog", &idle_gap(), None)?,
    ];
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&json!({ "fixtures": fixtures }))?,
    )?;
    if let Some(i) = args.iter().position(|a| a == "--big") {
        let mb = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(100);
        big(&dir.join("big.tlog"), mb)?;
    }
    Ok(())
}
