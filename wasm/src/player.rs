//! [`PlayerDecoder`]: a recording as a player consumes it — terminal output and resizes with
//! their times, in typed arrays (no object per print), and the other events as objects.
//! The timeline is the core's (`export::Framer`, `export::IdleCap`), the same as
//! `tapelog play` and the asciicast export.

use js_sys::{Array, Float64Array, Object, Uint8Array, Uint16Array, Uint32Array};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{CodecError, PolledFields, PrintView, RecordingReader, ResumePoint};
use tapelog_core::export::{FrameKind, Framer, IdleCap};
use tapelog_core::playback::SessionSummary;
use tapelog_core::proto::Timestamp;
use wasm_bindgen::prelude::*;

use crate::convert::{error_to_js, events_to_array, set, stats_to_object, summary_to_object};

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
    batcher: Batcher,
}

/// The decoding side of [`PlayerDecoder`], without JavaScript: the same batches as plain
/// Rust values (the native baseline of the browser benchmark runs it, `benches/native_decode.rs`).
///
/// Plain print records are read in place (`RecordingReader::poll_fields`): their output goes
/// straight from the reader's buffer into the batch, with no typed event built.
pub struct Batcher {
    reader: RecordingReader,
    timeline: Timeline,
    ended: bool,
    /// The part of the last event taken (its resume point).
    part: Option<ResumePoint>,
    /// The first event of a new part, kept for the next batch (a batch ends before it).
    pending: Option<Pending>,
    /// The checkpoint before `pending`.
    next_checkpoint: Option<Checkpoint>,
    /// The checkpoint at the start of the last batch, until taken.
    ready: Option<Checkpoint>,
}

/// What the events taken so far made: the frames' timeline and the summary.
struct Timeline {
    framer: Framer,
    idle: IdleCap,
    summary: SessionSummary,
    /// Frames produced so far (from the start of the recording, for a resumed decoder).
    frames: u64,
}

impl Timeline {
    /// Takes one event into `batch`.
    fn add(&mut self, e: Pulled<'_>, batch: &mut Batch) {
        let (frame, index) = match &e {
            Pulled::Print(p) => {
                self.summary.add_print(p);
                (Some(self.framer.frame_print(p)), p.index)
            }
            Pulled::Event(e) => {
                self.summary.add(e);
                (self.framer.frame(e), e.index())
            }
        };
        if let Some(f) = frame {
            batch
                .frames
                .push(f.time_ms, self.idle.map(f.time_ms), index, f.kind);
            self.frames += 1;
        }
        if let Pulled::Event(e) = e
            && e.print_data().is_none()
        {
            batch.others.push(e);
        }
    }
}

/// An event kept from one batch to the next: typed, or a print's fields copied out of the
/// reader's buffer (once per part).
enum Pending {
    Event(AuditEvent),
    Print(OwnedPrint),
}

/// A [`PrintView`]'s fields, owned.
struct OwnedPrint {
    index: i64,
    time: Timestamp,
    delay_ms: i64,
    data: Vec<u8>,
    event_type: String,
    cluster: String,
}

impl OwnedPrint {
    fn of(p: &PrintView<'_>) -> OwnedPrint {
        OwnedPrint {
            index: p.index,
            time: p.time,
            delay_ms: p.delay_ms,
            data: p.data.to_vec(),
            event_type: p.event_type.to_string(),
            cluster: p.cluster.to_string(),
        }
    }

    fn view(&self) -> PrintView<'_> {
        PrintView {
            index: self.index,
            time: self.time,
            delay_ms: self.delay_ms,
            data: &self.data,
            event_type: &self.event_type,
            cluster: &self.cluster,
        }
    }
}

/// One event as the batcher takes it.
enum Pulled<'a> {
    Event(AuditEvent),
    Print(PrintView<'a>),
}

/// One batch of [`Batcher::poll`].
#[derive(Default)]
pub struct Batch {
    /// The frames (output and resizes) with their times.
    pub frames: Frames,
    /// The events other than prints.
    pub others: Vec<AuditEvent>,
    /// Events taken from the reader (0: push more input, or the end).
    pub pulled: u32,
    /// The batch starts a new part (its checkpoint is ready to take).
    pub checkpoint: bool,
}

/// A batch's frames, column by column (what `PlayerDecoder.poll` hands over as typed arrays).
#[derive(Default)]
pub struct Frames {
    /// Session time, ms.
    pub time: Vec<f64>,
    /// Idle-capped time, ms.
    pub idle: Vec<f64>,
    /// Event index.
    pub index: Vec<f64>,
    /// New width of a resize (0 for output).
    pub cols: Vec<u16>,
    /// New height of a resize (0 for output).
    pub rows: Vec<u16>,
    /// End of an output's bytes in `data`.
    pub end: Vec<u32>,
    /// The batch's terminal output.
    pub data: Vec<u8>,
}

impl Frames {
    fn push(&mut self, time_ms: i64, idle_ms: i64, index: i64, kind: FrameKind<'_>) {
        self.time.push(time_ms as f64);
        self.idle.push(idle_ms as f64);
        self.index.push(index as f64);
        match kind {
            FrameKind::Output(d) => {
                self.data.extend_from_slice(d);
                self.cols.push(0);
                self.rows.push(0);
            }
            FrameKind::Resize(s) => {
                self.cols.push(s.cols);
                self.rows.push(s.rows);
            }
        }
        self.end.push(self.data.len() as u32);
    }

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

impl Batcher {
    /// See [`PlayerDecoder::new`].
    pub fn new(max_idle_ms: f64) -> Batcher {
        let cap = (max_idle_ms.is_finite() && max_idle_ms > 0.0).then_some(max_idle_ms as i64);
        Batcher {
            reader: RecordingReader::new(),
            timeline: Timeline {
                framer: Framer::new(),
                idle: IdleCap::new(cap),
                summary: SessionSummary::new(),
                frames: 0,
            },
            ended: false,
            part: None,
            pending: None,
            next_checkpoint: None,
            ready: None,
        }
    }

    /// See [`PlayerDecoder::resume`].
    pub fn resume(checkpoint: &Checkpoint) -> Batcher {
        Batcher {
            reader: RecordingReader::resume(checkpoint.point),
            timeline: Timeline {
                framer: checkpoint.framer.clone(),
                idle: checkpoint.idle.clone(),
                summary: SessionSummary::new(),
                frames: checkpoint.frames,
            },
            part: Some(checkpoint.point),
            ..Batcher::new(0.0)
        }
    }

    /// Adds a chunk of the recording.
    pub fn push(&mut self, chunk: &[u8]) {
        self.reader.push(chunk);
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.reader.finish();
    }

    /// Whether the recording ended cleanly.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Frames produced so far (counted from the recording's start).
    pub fn frames(&self) -> u64 {
        self.timeline.frames
    }

    /// The session summary so far.
    pub fn summary(&self) -> &SessionSummary {
        &self.timeline.summary
    }

    /// The checkpoint at the start of the last batch, once.
    pub fn take_checkpoint(&mut self) -> Option<Checkpoint> {
        self.ready.take()
    }

    /// Up to `max_events` events as a batch (see [`PlayerDecoder`]). At damage: the batch
    /// before it, and the error on the next call (and every later one).
    pub fn poll(&mut self, max_events: u32) -> Result<Batch, CodecError> {
        let mut batch = Batch::default();
        self.ready = None;
        if let Some(p) = self.pending.take() {
            self.ready = self.next_checkpoint.take();
            batch.checkpoint = self.ready.is_some();
            batch.pulled += 1;
            match p {
                Pending::Event(e) => self.timeline.add(Pulled::Event(e), &mut batch),
                Pending::Print(o) => self.timeline.add(Pulled::Print(o.view()), &mut batch),
            }
        }
        while batch.pulled < max_events && batch.frames.data.len() < MAX_BATCH_OUTPUT {
            let (e, point) = match self.reader.poll_fields() {
                Ok(PolledFields::Print { view, point }) => (Pulled::Print(view), Some(point)),
                Ok(PolledFields::Event(e)) => (Pulled::Event(e), self.reader.resume_point()),
                Ok(PolledFields::NeedInput) => break,
                Ok(PolledFields::End) => {
                    self.ended = true;
                    break;
                }
                Err(e) if batch.pulled == 0 => return Err(e),
                Err(_) => break,
            };
            let new_part = self.part.is_some() && point != self.part;
            self.part = point;
            if let (true, Some(point)) = (new_part, point) {
                let cp = Checkpoint {
                    point,
                    framer: self.timeline.framer.clone(),
                    idle: self.timeline.idle.clone(),
                    frames: self.timeline.frames,
                };
                if batch.pulled > 0 {
                    // The batch ends here; the next one starts with this event.
                    self.next_checkpoint = Some(cp);
                    self.pending = Some(match e {
                        Pulled::Event(e) => Pending::Event(e),
                        Pulled::Print(v) => Pending::Print(OwnedPrint::of(&v)),
                    });
                    break;
                }
                self.ready = Some(cp);
                batch.checkpoint = true;
            }
            batch.pulled += 1;
            self.timeline.add(e, &mut batch);
        }
        Ok(batch)
    }
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

#[wasm_bindgen]
impl PlayerDecoder {
    /// A decoder whose idle-capped timeline shortens every gap to `maxIdleMs` (0 or less:
    /// the idle timeline equals the session timeline).
    #[wasm_bindgen(constructor)]
    pub fn new(max_idle_ms: f64) -> PlayerDecoder {
        PlayerDecoder {
            batcher: Batcher::new(max_idle_ms),
        }
    }

    /// A decoder that continues from `checkpoint`: push the recording's bytes from
    /// `checkpoint.offset` on. Its frames are those the first decoder gave from the
    /// checkpoint's batch on; its summary covers only what it decodes.
    pub fn resume(checkpoint: &Checkpoint) -> PlayerDecoder {
        PlayerDecoder {
            batcher: Batcher::resume(checkpoint),
        }
    }

    /// The checkpoint at the start of the last batch (when its `checkpoint` was true), once;
    /// `undefined` otherwise.
    #[wasm_bindgen(js_name = takeCheckpoint)]
    pub fn take_checkpoint(&mut self) -> Option<Checkpoint> {
        self.batcher.take_checkpoint()
    }

    /// Frames produced so far (counted from the recording's start).
    #[wasm_bindgen(getter)]
    pub fn frames(&self) -> f64 {
        self.batcher.timeline.frames as f64
    }

    /// Adds a chunk of the recording.
    pub fn push(&mut self, chunk: &[u8]) {
        self.batcher.push(chunk);
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.batcher.finish();
    }

    /// Up to `maxEvents` events as a batch (see the type's documentation).
    pub fn poll(&mut self, max_events: u32) -> Result<JsValue, JsValue> {
        let b = self.batcher.poll(max_events).map_err(|e| error_to_js(&e))?;
        let o: JsValue = Object::new().into();
        let events: Array = events_to_array(&b.others);
        set(&o, "events", events);
        set(&o, "frames", b.frames.to_object());
        set(&o, "pulled", b.pulled);
        set(&o, "checkpoint", b.checkpoint);
        Ok(o)
    }

    /// The terminal size at the start (`session.start`), `{cols, rows}`, or `null` until known.
    #[wasm_bindgen(getter, js_name = initialSize)]
    pub fn initial_size(&self) -> JsValue {
        match self.batcher.timeline.framer.initial_size() {
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
        self.batcher.ended
    }

    /// Reader counters, as `Decoder.stats()`.
    pub fn stats(&self) -> JsValue {
        stats_to_object(self.batcher.reader.stats(), self.batcher.reader.offset())
    }

    /// The session summary so far.
    pub fn summary(&self) -> JsValue {
        summary_to_object(&self.batcher.timeline.summary)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tapelog_core::codec::Polled;
    use tapelog_core::vectors;

    /// One frame as comparable values: (time, idle, index, cols, rows, output).
    type Row = (f64, f64, f64, u16, u16, Vec<u8>);

    fn rows(f: &Frames) -> Vec<Row> {
        let mut start = 0usize;
        (0..f.time.len())
            .map(|i| {
                let end = f.end[i] as usize;
                let r = (
                    f.time[i],
                    f.idle[i],
                    f.index[i],
                    f.cols[i],
                    f.rows[i],
                    f.data[start..end].to_vec(),
                );
                start = end;
                r
            })
            .collect()
    }

    /// What the batches must hold: the typed events through the core's framer, idle cap and
    /// summary (the way the decoder worked before prints were read in place).
    fn reference(bytes: &[u8]) -> (Vec<Row>, Vec<AuditEvent>, SessionSummary, bool) {
        let mut r = RecordingReader::new();
        r.push(bytes);
        r.finish();
        let (mut framer, mut idle) = (Framer::new(), IdleCap::new(Some(1000)));
        let mut summary = SessionSummary::new();
        let mut frames = Frames::default();
        let mut others = Vec::new();
        let failed = loop {
            match r.poll() {
                Ok(Polled::Event(e)) => {
                    summary.add(&e);
                    if let Some(f) = framer.frame(&e) {
                        frames.push(f.time_ms, idle.map(f.time_ms), e.index(), f.kind);
                    }
                    if e.print_data().is_none() {
                        others.push(e);
                    }
                }
                Ok(_) => break false,
                Err(_) => break true,
            }
        };
        (rows(&frames), others, summary, failed)
    }

    /// Batches of `max` events from input cut in `chunk`-byte pieces, with the checkpoints.
    fn batches(
        bytes: &[u8],
        chunk: usize,
        max: u32,
    ) -> (Vec<Row>, Vec<AuditEvent>, Batcher, bool, Vec<Checkpoint>) {
        let mut b = Batcher::new(1000.0);
        let (mut all, mut others, mut cps) = (Vec::new(), Vec::new(), Vec::new());
        let mut chunks = bytes.chunks(chunk);
        let failed = loop {
            match b.poll(max) {
                Ok(batch) if batch.pulled > 0 => {
                    assert!(batch.pulled <= max);
                    if batch.checkpoint {
                        cps.push(b.take_checkpoint().unwrap());
                    }
                    all.extend(rows(&batch.frames));
                    others.extend(batch.others);
                }
                Ok(_) if b.ended() => break false,
                Ok(_) => match chunks.next() {
                    Some(c) => b.push(c),
                    None => b.finish(),
                },
                Err(_) => break true,
            }
        };
        (all, others, b, failed, cps)
    }

    /// The batcher's frames, other events, summary and outcome are the typed path's on every
    /// vector, whatever the chunking and batch size; a decoder resumed at any checkpoint gives
    /// the frames from there on.
    #[test]
    fn batches_equal_the_typed_path_on_every_vector() {
        let mut checked = 0;
        for v in vectors::all() {
            let (want, want_others, want_summary, want_failed) = reference(&v.bytes);
            for (chunk, max) in [(v.bytes.len().max(1), 4096), (4096, 7), (977, 1)] {
                let (got, others, b, failed, cps) = batches(&v.bytes, chunk, max);
                assert_eq!(got, want, "{} chunk {chunk} max {max}: frames", v.name);
                assert_eq!(others, want_others, "{}: other events", v.name);
                assert_eq!(*b.summary(), want_summary, "{}: summary", v.name);
                assert_eq!(failed, want_failed, "{}: outcome", v.name);
                assert_eq!(b.frames() as usize, want.len(), "{}: frame count", v.name);
                for cp in cps {
                    let mut r = Batcher::resume(&cp);
                    r.push(&v.bytes[cp.point.offset as usize..]);
                    r.finish();
                    let mut tail = Vec::new();
                    while let Ok(batch) = r.poll(4096) {
                        if batch.pulled == 0 {
                            break;
                        }
                        tail.extend(rows(&batch.frames));
                    }
                    assert_eq!(tail, want[cp.frames as usize..], "{}: resumed", v.name);
                }
                checked += 1;
            }
        }
        assert!(checked > 10);
    }
}
