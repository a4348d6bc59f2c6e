//! [`PlayerDecoder`]: a recording as a player consumes it — terminal output and resizes with
//! their times, in typed arrays (no object per print), and the other events as objects.
//! The timeline is the core's (`export::Framer`, `export::IdleCap`), the same as
//! `tapelog play` and the asciicast export.

use js_sys::{Array, Float64Array, Object, Uint8Array, Uint16Array, Uint32Array};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{RecordingReader, ResumePoint};
use tapelog_core::export::{FrameKind, Framer, IdleCap};
use tapelog_core::playback::SessionSummary;
use wasm_bindgen::prelude::*;

use crate::convert::{events_to_array, set, stats_to_object, summary_to_object};
use crate::decoder::{Pull, pull};

/// A batch ends once it holds this much terminal output (so that a player's cache of batches
/// has a bounded granule, whatever the events' sizes).
const MAX_BATCH_OUTPUT: usize = 1 << 20;

/// Streaming decoder for a player: `push`/`finish` as for `Decoder`, then `poll(maxEvents)`
/// returns a batch of at most `maxEvents` events that ends once it holds 1 MiB of output:
///
/// ```text
/// { events: [non-print events as objects],
///   frames: { time, idle, index: Float64Array,   // ms on the session / idle-capped timeline, event index
///             cols, rows: Uint16Array,           // a resize (0 for output)
///             end: Uint32Array,                  // output: end of its bytes in `data`
///             data: Uint8Array },                // the batch's terminal output
///   pulled: number,                              // events taken from the reader
///   checkpoint: boolean }                        // the batch starts a new part (see below)
/// ```
///
/// An empty batch (`pulled == 0`) means: push more input, or the end (`ended`). At damage the
/// batch holds what came before it and the next `poll` throws the `RecordingError`.
///
/// **Checkpoints** (ProtoStream only): a batch never spans two parts; when a batch starts with
/// the first event of a new part, `checkpoint` is true and `takeCheckpoint()` returns a
/// [`Checkpoint`]: where the recording can be read again from (`offset`, a part boundary)
/// with the timeline's state there. `PlayerDecoder.resume(checkpoint)` then decodes the bytes
/// from `checkpoint.offset` on and gives exactly the frames this decoder gave from that batch
/// on (a player seeks back by restoring its terminal as it was at the checkpoint and
/// re-reading from there, instead of keeping all the output).
#[wasm_bindgen]
pub struct PlayerDecoder {
    reader: RecordingReader,
    framer: Framer,
    idle: IdleCap,
    summary: SessionSummary,
    ended: bool,
    /// Frames produced so far (from the start of the recording, for a resumed decoder).
    frames: u64,
    /// The part of the last event taken (its resume point).
    part: Option<ResumePoint>,
    /// The first event of a new part, kept for the next batch (a batch ends before it).
    pending: Option<AuditEvent>,
    /// The checkpoint before `pending`.
    next_checkpoint: Option<Checkpoint>,
    /// The checkpoint at the start of the last batch, until taken.
    ready: Option<Checkpoint>,
}

/// A point where a [`PlayerDecoder`] can start again: a part boundary of the recording
/// (`offset`), the number of frames before it (`frame`) and the timeline's state there.
/// Made by `PlayerDecoder.takeCheckpoint()`, used by `PlayerDecoder.resume(checkpoint)`.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Checkpoint {
    point: ResumePoint,
    framer: Framer,
    idle: IdleCap,
    frames: u64,
}

#[wasm_bindgen]
impl Checkpoint {
    /// Byte offset of the part's header: feed the recording from here to the resumed decoder.
    #[wasm_bindgen(getter)]
    pub fn offset(&self) -> f64 {
        self.point.offset as f64
    }

    /// Zero-based part number.
    #[wasm_bindgen(getter)]
    pub fn part(&self) -> f64 {
        self.point.part as f64
    }

    /// Frames (output and resizes) before this point, counted from the recording's start.
    #[wasm_bindgen(getter)]
    pub fn frame(&self) -> f64 {
        self.frames as f64
    }
}

#[derive(Default)]
struct Frames {
    time: Vec<f64>,
    idle: Vec<f64>,
    index: Vec<f64>,
    cols: Vec<u16>,
    rows: Vec<u16>,
    end: Vec<u32>,
    data: Vec<u8>,
}

impl Frames {
    fn to_object(&self) -> JsValue {
        let o: JsValue = Object::new().into();
        set(&o, "time", Float64Array::from(&self.time[..]));
        set(&o, "idle", Float64Array::from(&self.idle[..]));
        set(&o, "index", Float64Array::from(&self.index[..]));
        set(&o, "cols", Uint16Array::from(&self.cols[..]));
        set(&o, "rows", Uint16Array::from(&self.rows[..]));
        set(&o, "end", Uint32Array::from(&self.end[..]));
        set(&o, "data", Uint8Array::from(&self.data[..]));
        o
    }
}

#[wasm_bindgen]
impl PlayerDecoder {
    /// A decoder whose idle-capped timeline shortens every gap to `maxIdleMs` (0 or less:
    /// the idle timeline equals the session timeline).
    #[wasm_bindgen(constructor)]
    pub fn new(max_idle_ms: f64) -> PlayerDecoder {
        let cap = (max_idle_ms.is_finite() && max_idle_ms > 0.0).then_some(max_idle_ms as i64);
        PlayerDecoder {
            reader: RecordingReader::new(),
            framer: Framer::new(),
            idle: IdleCap::new(cap),
            summary: SessionSummary::new(),
            ended: false,
            frames: 0,
            part: None,
            pending: None,
            next_checkpoint: None,
            ready: None,
        }
    }

    /// A decoder that continues from `checkpoint`: push the recording's bytes from
    /// `checkpoint.offset` on. Its frames are those the first decoder gave from the
    /// checkpoint's batch on; its summary covers only what it decodes.
    pub fn resume(checkpoint: &Checkpoint) -> PlayerDecoder {
        PlayerDecoder {
            reader: RecordingReader::resume(checkpoint.point),
            framer: checkpoint.framer.clone(),
            idle: checkpoint.idle.clone(),
            summary: SessionSummary::new(),
            ended: false,
            frames: checkpoint.frames,
            part: Some(checkpoint.point),
            pending: None,
            next_checkpoint: None,
            ready: None,
        }
    }

    /// The checkpoint at the start of the last batch (when its `checkpoint` was true), once;
    /// `undefined` otherwise.
    #[wasm_bindgen(js_name = takeCheckpoint)]
    pub fn take_checkpoint(&mut self) -> Option<Checkpoint> {
        self.ready.take()
    }

    /// Frames produced so far (counted from the recording's start).
    #[wasm_bindgen(getter)]
    pub fn frames(&self) -> f64 {
        self.frames as f64
    }

    /// Adds a chunk of the recording.
    pub fn push(&mut self, chunk: &[u8]) {
        self.reader.push(chunk);
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.reader.finish();
    }

    fn add(&mut self, e: &AuditEvent, frames: &mut Frames, others: &mut Vec<AuditEvent>) {
        self.summary.add(e);
        if let Some(f) = self.framer.frame(e) {
            frames.time.push(f.time_ms as f64);
            frames.idle.push(self.idle.map(f.time_ms) as f64);
            frames.index.push(e.index() as f64);
            match f.kind {
                FrameKind::Output(d) => {
                    frames.data.extend_from_slice(d);
                    frames.cols.push(0);
                    frames.rows.push(0);
                }
                FrameKind::Resize(s) => {
                    frames.cols.push(s.cols);
                    frames.rows.push(s.rows);
                }
            }
            frames.end.push(frames.data.len() as u32);
            self.frames += 1;
        }
        if e.print_data().is_none() {
            others.push(e.clone());
        }
    }

    /// Up to `maxEvents` events as a batch (see the type's documentation).
    pub fn poll(&mut self, max_events: u32) -> Result<JsValue, JsValue> {
        let mut frames = Frames::default();
        let mut others = Vec::new();
        let mut pulled = 0u32;
        let mut checkpoint = false;
        self.ready = None;
        if let Some(e) = self.pending.take() {
            self.ready = self.next_checkpoint.take();
            checkpoint = self.ready.is_some();
            pulled += 1;
            self.add(&e, &mut frames, &mut others);
        }
        while pulled < max_events && frames.data.len() < MAX_BATCH_OUTPUT {
            match pull(&mut self.reader, &mut self.ended) {
                Ok(Pull::Event(e)) => {
                    let point = self.reader.resume_point();
                    let new_part = self.part.is_some() && point != self.part;
                    self.part = point;
                    if let (true, Some(point)) = (new_part, point) {
                        let cp = Checkpoint {
                            point,
                            framer: self.framer.clone(),
                            idle: self.idle.clone(),
                            frames: self.frames,
                        };
                        if pulled > 0 {
                            // The batch ends here; the next one starts with this event.
                            self.next_checkpoint = Some(cp);
                            self.pending = Some(e);
                            break;
                        }
                        self.ready = Some(cp);
                        checkpoint = true;
                    }
                    pulled += 1;
                    self.add(&e, &mut frames, &mut others);
                }
                Ok(Pull::Nothing) => break,
                Err(e) if pulled == 0 => return Err(e),
                Err(_) => break,
            }
        }
        let o: JsValue = Object::new().into();
        let events: Array = events_to_array(&others);
        set(&o, "events", events);
        set(&o, "frames", frames.to_object());
        set(&o, "pulled", pulled);
        set(&o, "checkpoint", checkpoint);
        Ok(o)
    }

    /// The terminal size at the start (`session.start`), `{cols, rows}`, or `null` until known.
    #[wasm_bindgen(getter, js_name = initialSize)]
    pub fn initial_size(&self) -> JsValue {
        match self.framer.initial_size() {
            Some(s) => {
                let o: JsValue = Object::new().into();
                set(&o, "cols", s.cols);
                set(&o, "rows", s.rows);
                o
            }
            None => JsValue::NULL,
        }
    }

    /// Whether the recording ended cleanly.
    #[wasm_bindgen(getter)]
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reader counters, as `Decoder.stats()`.
    pub fn stats(&self) -> JsValue {
        stats_to_object(self.reader.stats(), self.reader.offset())
    }

    /// The session summary so far.
    pub fn summary(&self) -> JsValue {
        summary_to_object(&self.summary)
    }
}
