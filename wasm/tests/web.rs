//! tapelog-wasm in headless Chromium (wasm-bindgen-test): every test vector of
//! `tapelog_core::vectors` (the native tests' source of truth) through the JS API, whole and
//! in chunks; errors as JS `Error`s with the native message and offset; the player's frames;
//! the exports equal the core's bytes; the player's clock agrees with the core's.
//!
//! Run: `cargo test --target wasm32-unknown-unknown -p tapelog-wasm` with
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner` (scripts/test.sh).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use js_sys::{Array, Float64Array, Reflect, Uint8Array, Uint16Array, Uint32Array};
use tapelog_core::AuditEvent;
use tapelog_core::codec::read_all;
use tapelog_core::export::{to_asciicast as core_asciicast, to_json_lines as core_json_lines};
use tapelog_core::vectors::{self, Expect};
use tapelog_wasm::{
    Decoder, Exporter, PlayClock, PlayerDecoder, decode_recording, to_asciicast, to_json_lines,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).unwrap()
}

fn num(v: &JsValue, key: &str) -> f64 {
    get(v, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number"))
}

fn string(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_default()
}

/// The JS events agree with the core's events: type, index, code, id, session id, print data,
/// and every field of Teleport's JSON (compared through a JSON round trip of the object).
fn assert_same_events(name: &str, js: &Array, want: &[AuditEvent]) {
    assert_eq!(js.length() as usize, want.len(), "{name}: event count");
    for (i, e) in want.iter().enumerate() {
        let o = js.get(i as u32);
        assert_eq!(string(&o, "event"), e.event_type(), "{name} #{i} event");
        assert_eq!(num(&o, "ei") as i64, e.index(), "{name} #{i} ei");
        assert_eq!(string(&o, "code"), e.code(), "{name} #{i} code");
        assert_eq!(string(&o, "uid"), e.id(), "{name} #{i} uid");
        let want_json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        let mut got_json: serde_json::Value =
            serde_json::from_str(&js_sys::JSON::stringify(&o).unwrap().as_string().unwrap())
                .unwrap();
        if let Some(d) = e.print_data() {
            let data: Uint8Array = get(&o, "data").dyn_into().unwrap();
            assert_eq!(data.to_vec(), d, "{name} #{i} data");
            got_json.as_object_mut().unwrap().remove("data");
        }
        assert_eq!(got_json, want_json, "{name} #{i} JSON");
    }
}

fn assert_error(name: &str, err: &JsValue, kind_offset: Option<u64>, native: &str) {
    assert!(
        err.is_instance_of::<js_sys::Error>(),
        "{name}: not an Error"
    );
    let e: &js_sys::Error = err.unchecked_ref();
    assert_eq!(String::from(e.message()), native, "{name}: message");
    assert_eq!(String::from(e.name()), "RecordingError", "{name}: name");
    if let Some(offset) = kind_offset {
        assert_eq!(num(err, "offset") as u64, offset, "{name}: offset");
    }
}

/// The native message of a vector's error (the core's reader, in this same build).
fn native_error(bytes: &[u8]) -> String {
    match read_all(bytes).error {
        Some(e) => e.to_string(),
        None => panic!("the native reader finds no error"),
    }
}

#[wasm_bindgen_test]
fn decode_recording_gives_every_vector_its_expected_result() {
    for v in vectors::all() {
        let out = decode_recording(&v.bytes);
        let events: Array = get(&out, "events").dyn_into().unwrap();
        let error = get(&out, "error");
        match &v.expect {
            Expect::Events {
                events: want,
                stats,
            } => {
                assert!(error.is_null(), "{}: unexpected error {error:?}", v.name);
                assert_same_events(v.name, &events, want);
                let s = get(&out, "stats");
                let got = (
                    num(&s, "total") as u64,
                    num(&s, "skipped") as u64,
                    num(&s, "outOfOrder") as u64,
                );
                assert_eq!(got, *stats, "{}: stats", v.name);
            }
            Expect::Error { before, offset, .. } => {
                assert_eq!(
                    events.length() as usize,
                    *before,
                    "{}: events before",
                    v.name
                );
                assert_error(v.name, &error, Some(*offset), &native_error(&v.bytes));
            }
        }
    }
}

/// Pulls every event of `bytes` through a streaming `Decoder` fed `chunk`-byte pieces.
fn stream(bytes: &[u8], chunk: usize, batch: u32) -> (Vec<JsValue>, Option<JsValue>) {
    let mut d = Decoder::new();
    let mut chunks = bytes.chunks(chunk);
    let mut events = Vec::new();
    loop {
        match d.next_batch(batch) {
            Ok(b) if b.length() > 0 => events.extend(b.iter()),
            Ok(_) if d.ended() => return (events, None),
            Ok(_) => match chunks.next() {
                Some(c) => d.push(c),
                None => d.finish(),
            },
            Err(e) => return (events, Some(e)),
        }
    }
}

#[wasm_bindgen_test]
fn streaming_decoder_agrees_in_any_chunking() {
    for v in vectors::all() {
        for (chunk, batch) in [(1usize, 1u32), (7, 3), (4096, 100), (1 << 20, 10_000)] {
            if chunk == 1 && v.bytes.len() > 50_000 {
                continue;
            }
            let (events, err) = stream(&v.bytes, chunk, batch);
            let events: Array = events.into_iter().collect();
            let name = format!("{} chunk {chunk}", v.name);
            match &v.expect {
                Expect::Events { events: want, .. } => {
                    assert!(err.is_none(), "{name}: {err:?}");
                    assert_same_events(&name, &events, want);
                }
                Expect::Error { before, offset, .. } => {
                    assert_eq!(events.length() as usize, *before, "{name}");
                    let err = err.unwrap_or_else(|| panic!("{name}: no error"));
                    assert_error(&name, &err, Some(*offset), &native_error(&v.bytes));
                }
            }
        }
    }
}

#[wasm_bindgen_test]
fn encrypted_recordings_give_a_clear_error() {
    let v = vectors::all()
        .into_iter()
        .find(|v| v.name == "v2-encrypted")
        .unwrap();
    let mut d = Decoder::new();
    d.push(&v.bytes);
    let err = d.next().unwrap_err();
    assert_eq!(string(&err, "kind"), "EncryptedRecording");
    let msg: String = err.unchecked_ref::<js_sys::Error>().message().into();
    assert!(msg.contains("encrypted recording"), "{msg}");
    // Every later call gives the error again.
    assert!(d.next().is_err());
}

/// The gzip CRC-32 is computed here by zlib-rs (`codec::crc`), natively by crc32fast: a part
/// whose trailer was damaged is refused, and the value computed in the browser is the one
/// crc32fast put in the trailer (`raw_part` writes it with crc32fast itself, not with the
/// writer, which shares the reader's CRC).
#[wasm_bindgen_test]
fn checksum_damage_is_named_with_the_computed_crc() {
    let mut payload = Vec::new();
    for e in vectors::sample_session(5) {
        let r = e.to_oneof_bytes();
        payload.extend_from_slice(&(r.len() as u32).to_be_bytes());
        payload.extend_from_slice(&r);
    }
    let mut bytes = vectors::raw_part(&payload, 1);
    let n = bytes.len();
    let written = u32::from_le_bytes([bytes[n - 8], bytes[n - 7], bytes[n - 6], bytes[n - 5]]);
    bytes[n - 6] ^= 0xff;
    let out = decode_recording(&bytes);
    let err = get(&out, "error");
    assert_eq!(string(&err, "kind"), "ChecksumMismatch");
    let msg: String = err.unchecked_ref::<js_sys::Error>().message().into();
    assert!(msg.contains(&format!("{written:08x} computed")), "{msg}");
    assert_eq!(msg, native_error(&bytes));
}

#[wasm_bindgen_test]
fn not_a_recording_is_named() {
    let out = decode_recording(b"PK\x03\x04 this is a zip file, not a recording");
    let err = get(&out, "error");
    assert_eq!(string(&err, "kind"), "UnknownFormat");
    assert_eq!(
        err.unchecked_ref::<js_sys::Error>().message(),
        "at byte 0 (part 0): not a recording: it starts with neither a ProtoStream header (version 1 or 2) nor a tar header"
    );
}

#[wasm_bindgen_test]
fn player_frames_carry_the_output_and_its_timing() {
    let events = vectors::sample_session(30);
    let bytes = tapelog_core::codec::encode_recording(
        &events,
        tapelog_core::codec::WriterConfig::default(),
    )
    .unwrap();
    let mut p = PlayerDecoder::new(50.0);
    let mut output = Vec::new();
    let (mut times, mut idle, mut sizes, mut others) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for c in bytes.chunks(333) {
        p.push(c);
        loop {
            let b = p.poll(4).unwrap();
            if num(&b, "pulled") == 0.0 {
                break;
            }
            others += get(&b, "events").unchecked_into::<Array>().length();
            let f = get(&b, "frames");
            let data: Uint8Array = get(&f, "data").unchecked_into();
            let end: Uint32Array = get(&f, "end").unchecked_into();
            let cols: Uint16Array = get(&f, "cols").unchecked_into();
            let rows: Uint16Array = get(&f, "rows").unchecked_into();
            assert_eq!(end.length(), cols.length());
            let data = data.to_vec();
            let mut start = 0;
            for (i, e) in end.to_vec().into_iter().enumerate() {
                output.extend_from_slice(&data[start..e as usize]);
                start = e as usize;
                if cols.get_index(i as u32) > 0 {
                    sizes.push((cols.get_index(i as u32), rows.get_index(i as u32)));
                }
            }
            times.extend(get(&f, "time").unchecked_into::<Float64Array>().to_vec());
            idle.extend(get(&f, "idle").unchecked_into::<Float64Array>().to_vec());
        }
    }
    p.finish();
    assert_eq!(num(&p.poll(10).unwrap(), "pulled"), 0.0);
    assert!(p.ended());
    assert_eq!(output, vectors::sample_output(30));
    assert_eq!(sizes, vec![(168, 44)]);
    assert_eq!(others, 3, "start, resize, end are listed as objects");
    // The core's timeline: the resize at 70 ms, print i at 100 + 7 i ms.
    assert_eq!(times[0], 70.0);
    assert_eq!(
        times[1..],
        (0..30).map(|i| 100.0 + 7.0 * i as f64).collect::<Vec<_>>()[..]
    );
    // Idle cap 50 ms: the first gap (70 ms) shortens to 50, the rest (≤ 30 ms) stay.
    assert_eq!(idle[0], 50.0);
    assert_eq!(idle[1], 80.0);
    let size = p.initial_size();
    assert_eq!((num(&size, "cols"), num(&size, "rows")), (80.0, 25.0));
    let summary = p.summary();
    assert_eq!(string(&summary, "user"), "joe");
    assert_eq!(string(&summary, "server"), "localhost");
    assert_eq!(num(&summary, "duration_ms"), 310.0);
}

#[wasm_bindgen_test]
fn player_batch_before_damage_then_error() {
    let v = vectors::all()
        .into_iter()
        .find(|v| v.name == "short-padding")
        .unwrap();
    let mut p = PlayerDecoder::new(0.0);
    p.push(&v.bytes);
    p.finish();
    let b = p.poll(100_000).unwrap();
    let Expect::Error { before, .. } = v.expect else {
        panic!()
    };
    assert_eq!(num(&b, "pulled") as usize, before);
    let err = p.poll(10).unwrap_err();
    assert_eq!(string(&err, "kind"), "TruncatedPadding");
}

#[wasm_bindgen_test]
fn exports_equal_the_core_bytes() {
    for v in vectors::all() {
        let Expect::Events { events, .. } = &v.expect else {
            let err = to_json_lines(&v.bytes).unwrap_err();
            assert_error(v.name, &err, None, &native_error(&v.bytes));
            continue;
        };
        assert_eq!(
            to_json_lines(&v.bytes).unwrap(),
            core_json_lines(events),
            "{}",
            v.name
        );
        let want = String::from_utf8(core_asciicast(events)).unwrap();
        assert_eq!(to_asciicast(&v.bytes).unwrap(), want, "{}", v.name);
        // Streaming, in small chunks.
        let mut x = Exporter::new("asciicast").unwrap();
        let mut out = Vec::new();
        for c in v.bytes.chunks(1000) {
            out.extend(x.push(c).unwrap());
        }
        out.extend(x.finish().unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            want,
            "{} streaming",
            v.name
        );
    }
    assert!(Exporter::new("pdf").is_err());
}

#[wasm_bindgen_test]
fn exporter_keeps_output_before_damage() {
    let v = vectors::all()
        .into_iter()
        .find(|v| v.name == "short-padding")
        .unwrap();
    let mut x = Exporter::new("text").unwrap();
    let mut out = x.push(&v.bytes).unwrap();
    out.extend(x.finish().unwrap_or_default());
    assert_eq!(out, vectors::sample_output(40));
    assert!(!x.error().is_null());
    assert!(x.finish().is_err());
}

/// The frames of a decoder as `(time, idle, index, cols, rows, output bytes)` per frame, and
/// the checkpoints it offered (taken after each batch that starts one).
#[allow(clippy::type_complexity)]
fn player_frames(
    p: &mut PlayerDecoder,
    input: &[u8],
    base: usize,
) -> (
    Vec<(f64, f64, f64, u16, u16, Vec<u8>)>,
    Vec<tapelog_wasm::Checkpoint>,
) {
    p.push(input);
    p.finish();
    let mut frames = Vec::new();
    let mut checkpoints = Vec::new();
    while let Ok(b) = p.poll(4096) {
        if num(&b, "pulled") == 0.0 {
            break;
        }
        if get(&b, "checkpoint").as_bool() == Some(true) {
            let cp = p.take_checkpoint().expect("a checkpoint");
            assert_eq!(
                cp.frame() as usize,
                base + frames.len(),
                "checkpoint frame number"
            );
            checkpoints.push(cp);
        }
        let f = get(&b, "frames");
        let time = Float64Array::from(get(&f, "time")).to_vec();
        let idle = Float64Array::from(get(&f, "idle")).to_vec();
        let index = Float64Array::from(get(&f, "index")).to_vec();
        let cols = Uint16Array::from(get(&f, "cols")).to_vec();
        let rows = Uint16Array::from(get(&f, "rows")).to_vec();
        let end = Uint32Array::from(get(&f, "end")).to_vec();
        let data = Uint8Array::from(get(&f, "data")).to_vec();
        let mut a = 0usize;
        for i in 0..time.len() {
            let e = end[i] as usize;
            frames.push((
                time[i],
                idle[i],
                index[i],
                cols[i],
                rows[i],
                data[a..e].to_vec(),
            ));
            a = e;
        }
    }
    (frames, checkpoints)
}

#[wasm_bindgen_test]
fn player_resumed_at_a_checkpoint_gives_the_same_frames() {
    let mut checked = 0;
    for v in vectors::all() {
        if !matches!(v.expect, Expect::Events { .. }) {
            continue;
        }
        let mut p = PlayerDecoder::new(50.0);
        let (all, checkpoints) = player_frames(&mut p, &v.bytes, 0);
        for cp in &checkpoints {
            let mut r = PlayerDecoder::resume(cp);
            let (rest, _) = player_frames(
                &mut r,
                &v.bytes[cp.offset() as usize..],
                cp.frame() as usize,
            );
            assert_eq!(
                rest,
                all[cp.frame() as usize..],
                "{} from part {}",
                v.name,
                cp.part()
            );
            checked += 1;
        }
    }
    assert!(checked > 3, "only {checked} checkpoints");
}

/// The page's clock is the core's `PlayClock` (as `tapelog play` runs it), with milliseconds
/// in and out: the same positions through pause, speed changes and jumps.
#[wasm_bindgen_test]
fn play_clock_is_the_core_clock_in_milliseconds() {
    use std::time::Duration;
    use tapelog_core::export::PlayClock as Core;
    let d = |ms: f64| Duration::from_secs_f64(ms / 1000.0);
    let mut js = PlayClock::new(2.0, 1000.0);
    let mut core = Core::new(2.0, d(1000.0));
    core.toggle_pause(d(1000.0));
    assert!(js.paused());
    assert_eq!(js.position(5000.0), 0.0, "paused at 0 when made");
    js.play(1500.0);
    core.toggle_pause(d(1500.0));
    for now in [1500.0, 1750.5, 4000.0] {
        assert_eq!(js.position(now), core.position(d(now)), "at {now}");
    }
    assert_eq!(
        js.position(2500.0),
        2000.0,
        "2 ms of timeline per ms at speed 2"
    );
    js.set_speed(0.5, 2500.0);
    core.set_speed(0.5, d(2500.0));
    assert_eq!(js.speed(), 0.5);
    assert_eq!(js.position(4500.0), 3000.0);
    js.pause(4500.0);
    js.pause(4600.0); // pausing twice changes nothing
    core.toggle_pause(d(4500.0));
    assert!(js.paused());
    assert_eq!(js.position(9000.0), 3000.0);
    assert_eq!(js.position(9000.0), core.position(d(9000.0)));
    // A jump keeps whole milliseconds, never below 0, and works paused or not.
    js.jump(1234.9, 9000.0);
    assert_eq!(js.position(9999.0), 1234.0);
    js.jump(-50.0, 9000.0);
    assert_eq!(js.position(9000.0), 0.0);
    js.play(10_000.0);
    js.play(10_100.0); // playing twice changes nothing
    js.jump(500.0, 11_000.0);
    assert_eq!(js.position(13_000.0), 1500.0);
    // Bad input does not panic: speeds fall back to 1, times before 0 count as 0.
    js.set_speed(f64::NAN, 13_000.0);
    assert_eq!(js.speed(), 1.0);
    assert_eq!(PlayClock::new(-1.0, f64::NAN).speed(), 1.0);
    let mut odd = PlayClock::new(1.0, -5.0);
    odd.play(f64::INFINITY);
    assert_eq!(odd.position(f64::INFINITY), 0.0);
}
