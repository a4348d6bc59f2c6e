//! [`Decoder`] (streaming: push chunks, pull events) and [`decode_recording`] (one call).

use js_sys::{Array, Object};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{Polled, RecordingReader};
use tapelog_core::playback::SessionSummary;
use wasm_bindgen::prelude::*;

use crate::convert::{
    error_to_js, event_to_object, events_to_array, set, stats_to_object, summary_to_object,
};

/// Streaming decoder: `push` chunks of any size as they arrive, `finish` at the end of the
/// input, pull events with `next`/`nextBatch` until they return nothing (then push more, or
/// the recording ended: see `ended`). Memory: the unread input plus 64 KiB-ish of state.
#[wasm_bindgen]
pub struct Decoder {
    reader: RecordingReader,
    summary: SessionSummary,
    ended: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// What one pull gave.
pub(crate) enum Pull {
    Event(AuditEvent),
    /// Nothing now (more input needed, or the end).
    Nothing,
}

/// Pulls the next event from `reader`, updating `ended`.
pub(crate) fn pull(reader: &mut RecordingReader, ended: &mut bool) -> Result<Pull, JsValue> {
    match reader.poll() {
        Ok(Polled::Event(e)) => Ok(Pull::Event(e)),
        Ok(Polled::NeedInput) => Ok(Pull::Nothing),
        Ok(Polled::End) => {
            *ended = true;
            Ok(Pull::Nothing)
        }
        Err(e) => Err(error_to_js(&e)),
    }
}

#[wasm_bindgen]
impl Decoder {
    /// A decoder that has seen no bytes.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Decoder {
        Decoder {
            reader: RecordingReader::new(),
            summary: SessionSummary::new(),
            ended: false,
        }
    }

    /// Adds a chunk of the recording (copied; the caller may reuse its buffer).
    pub fn push(&mut self, chunk: &[u8]) {
        self.reader.push(chunk);
    }

    /// Marks the end of the input: a recording cut short now gives its error.
    pub fn finish(&mut self) {
        self.reader.finish();
    }

    /// The next event as an object, or `undefined` when more input is needed or the
    /// recording ended. Throws a `RecordingError` at damage (and again on every later call).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<JsValue, JsValue> {
        match pull(&mut self.reader, &mut self.ended)? {
            Pull::Event(e) => {
                self.summary.add(&e);
                Ok(event_to_object(&e))
            }
            Pull::Nothing => Ok(JsValue::UNDEFINED),
        }
    }

    /// Up to `max` events. An empty array means: push more input, or the end (`ended`). When
    /// damage is met after some events, those are returned and the next call throws.
    #[wasm_bindgen(js_name = nextBatch)]
    pub fn next_batch(&mut self, max: u32) -> Result<Array, JsValue> {
        let mut events = Vec::new();
        while events.len() < max as usize {
            match pull(&mut self.reader, &mut self.ended) {
                Ok(Pull::Event(e)) => {
                    self.summary.add(&e);
                    events.push(e);
                }
                Ok(Pull::Nothing) => break,
                Err(e) if events.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(events_to_array(&events))
    }

    /// Whether the recording ended cleanly (every event has been pulled).
    #[wasm_bindgen(getter)]
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Counters: `{total, skipped, outOfOrder, parts, danglingBytes, offset}` (upstream's
    /// `ProtoReaderStats` plus the bytes consumed).
    pub fn stats(&self) -> JsValue {
        stats_to_object(self.reader.stats(), self.reader.offset())
    }

    /// The summary of the events pulled so far (see `SessionSummary` in the core).
    pub fn summary(&self) -> JsValue {
        summary_to_object(&self.summary)
    }
}

/// Decodes a whole recording: `{events, stats, summary, error}`. `error` is `null`, or the
/// `RecordingError` that stopped decoding, in which case `events` holds everything before
/// the damage.
#[wasm_bindgen(js_name = decodeRecording)]
pub fn decode_recording(bytes: &[u8]) -> JsValue {
    let mut d = Decoder::new();
    d.push(bytes);
    d.finish();
    let mut events = Vec::new();
    let mut error = JsValue::NULL;
    loop {
        match pull(&mut d.reader, &mut d.ended) {
            Ok(Pull::Event(e)) => {
                d.summary.add(&e);
                events.push(e);
            }
            Ok(Pull::Nothing) => break,
            Err(e) => {
                error = e;
                break;
            }
        }
    }
    let out: JsValue = Object::new().into();
    set(&out, "events", events_to_array(&events));
    set(&out, "stats", d.stats());
    set(&out, "summary", d.summary());
    set(&out, "error", error);
    out
}
