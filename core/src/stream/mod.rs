//! The recording stream state machine (sans-IO): Teleport's `ProtoStream` as a value that takes
//! events, time and uploader results as arguments and hands back [`Action`]s.
//!
//! - Events go into the current part ([`PartBuilder`]); a part whose compressed size reaches the
//!   minimum upload size is cut and queued for upload.
//! - Up to [`StreamConfig::max_concurrent_uploads`] parts are uploading at once.
//! - After [`StreamConfig::inactivity_flush_ms`] without events a non-empty part is cut (padded).
//! - After [`StreamConfig::release_after_ms`] without events the compressor is dropped and its
//!   output flushed, so an idle stream holds only compressed bytes (the part stays ONE gzip
//!   member: the next event starts a new raw-deflate run under the same gzip header, the way
//!   pigz writes).
//! - [`Stream::complete`] uploads the last part unpadded and asks for the upload to be completed;
//!   [`Stream::close`] uploads what it has (padded) and leaves the upload resumable.
//! - [`Stream::resume`] continues an upload after its completed parts, numbering new parts at
//!   least two above the last one (a writer that is still dying may flush one more part);
//!   [`Stream::resume_planned`] first leaves out parts stored after a hole ([`ResumePlan`]).
//! - Part numbers never exceed [`MAX_PARTS`]: the part size grows as numbers are used up and,
//!   near the end, inactivity flushes stop, so a long session never runs out.
//! - Status updates ([`StreamStatus`]) name the highest event index whose part, and every part
//!   before it, is uploaded: nothing up to that index can be lost.
//!
//! The driver (native/src/stream) runs the timers and the uploads; tests drive it by hand.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use thiserror::Error;

use crate::codec::writer::{EncodedPart, PartBuilder, WriterConfig};
use crate::event::{AuditEvent, EventError};

mod resume;
pub use resume::{PartContent, PartSpan, ResumePlan};

/// Highest part number an upload may use (S3's limit, kept by every uploader).
pub const MAX_PARTS: u32 = 10_000;

/// Upstream's `InactivityFlushPeriod`.
pub const INACTIVITY_FLUSH_MS: u64 = 5 * 60 * 1000;

/// How the stream cuts and uploads parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Part encoding: minimum upload size (parts are cut at it and padded to it), gzip level,
    /// deflate back end.
    pub writer: WriterConfig,
    /// Parts uploading at the same time (at least 1).
    pub max_concurrent_uploads: usize,
    /// A non-empty part is cut and uploaded (padded) after this long without events.
    pub inactivity_flush_ms: u64,
    /// The compressor is dropped after this long without events (memory of an idle stream).
    pub release_after_ms: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            writer: WriterConfig::default(),
            max_concurrent_uploads: 2,
            inactivity_flush_ms: INACTIVITY_FLUSH_MS,
            release_after_ms: 10_000,
        }
    }
}

/// A part the store already holds (from `ListParts` when resuming, or reported by the driver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: u32,
    /// The store's tag for the part (S3 ETag; empty where the store has none).
    pub etag: String,
}

/// What the stream reports to whoever waits on it (upstream's `StreamStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// The multipart upload.
    pub upload_id: String,
    /// Highest event index that is durably uploaded (with everything before it); -1 if none.
    pub last_event_index: i64,
    /// When that was known, in milliseconds since the Unix epoch.
    pub last_upload_time_ms: u64,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Upload this part; report with [`Stream::part_uploaded`] or [`Stream::part_failed`].
    /// Retries must send the same bytes.
    UploadPart {
        /// Part number.
        number: u32,
        /// Header, gzip member and the number of padding zeros.
        part: Arc<EncodedPart>,
    },
    /// Complete the upload with these parts (sorted by number); report with
    /// [`Stream::upload_completed`] or [`Stream::complete_failed`].
    CompleteUpload {
        /// Every part of the upload, old and new.
        parts: Vec<CompletedPart>,
    },
    /// Tell waiters how far the recording is safe.
    Status(StreamStatus),
    /// [`Stream::close`] is done: every part is uploaded and the upload is left open.
    Closed,
    /// The upload is complete.
    Completed,
}

/// Why the stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamError {
    /// The event cannot be recorded (too large even after trimming).
    #[error(transparent)]
    Event(#[from] EventError),
    /// The stream was completed or closed; it takes no more events.
    #[error("the stream is {0}; it takes no more events")]
    Ended(&'static str),
    /// A part upload failed for good (the driver gave up retrying).
    #[error("uploading part {number} failed: {message}")]
    UploadFailed {
        /// Part number.
        number: u32,
        /// What the store said.
        message: String,
    },
    /// Completing the upload failed; the upload stays resumable.
    #[error("completing the upload failed: {0}")]
    CompleteFailed(String),
    /// An uploader result for a part this stream is not uploading.
    #[error("the driver reported part {0}, which is not uploading")]
    UnknownPart(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    Closing,
    Completing,
    /// `CompleteUpload` was handed out; waiting for its result.
    AwaitingComplete,
    Closed,
    Completed,
    Failed,
}

struct Queued {
    number: u32,
    part: Arc<EncodedPart>,
}

/// One recording being uploaded. See the module documentation.
pub struct Stream {
    upload_id: String,
    config: StreamConfig,
    phase: Phase,
    current: PartBuilder,
    /// Number the next cut part gets.
    next_number: u32,
    queued: VecDeque<Queued>,
    in_flight: BTreeMap<u32, Arc<EncodedPart>>,
    /// Parts this stream uploaded, with the highest event index each holds.
    done: BTreeMap<u32, (CompletedPart, i64)>,
    /// Parts from before a resume.
    previous: Vec<CompletedPart>,
    /// Highest index reported durable so far.
    durable_index: i64,
    /// After a resume: events at or below this index are already in the kept parts, and a
    /// replaying writer's copies of them are dropped instead of stored again. Besides saving
    /// bytes, this keeps a resume after a failed completion valid on S3, where the unpadded
    /// last part may not be followed by another (every part but the last ≥ 5 MiB).
    replay_floor: Option<i64>,
    /// Events dropped by `replay_floor`.
    replayed: u64,
    last_event_ms: u64,
    actions: Vec<Action>,
    failure: Option<StreamError>,
}

impl Stream {
    /// A new upload. Emits the first status (index -1), as upstream does.
    pub fn new(upload_id: impl Into<String>, config: StreamConfig, now_ms: u64) -> Stream {
        Stream::start(upload_id.into(), config, Vec::new(), 1, -1, now_ms)
    }

    /// Continues `upload_id`, which already holds `completed` parts (any order). New parts are
    /// numbered from the highest completed number + 2.
    pub fn resume(
        upload_id: impl Into<String>,
        config: StreamConfig,
        mut completed: Vec<CompletedPart>,
        now_ms: u64,
    ) -> Stream {
        completed.sort_by_key(|p| p.number);
        completed.dedup_by_key(|p| p.number);
        let next_number = completed.last().map_or(1, |p| p.number.saturating_add(2));
        Stream::start(upload_id.into(), config, completed, next_number, -1, now_ms)
    }

    fn start(
        upload_id: String,
        mut config: StreamConfig,
        previous: Vec<CompletedPart>,
        next_number: u32,
        durable_index: i64,
        now_ms: u64,
    ) -> Stream {
        config.max_concurrent_uploads = config.max_concurrent_uploads.max(1);
        let mut s = Stream {
            current: PartBuilder::new(config.writer),
            upload_id,
            config,
            phase: Phase::Open,
            next_number,
            queued: VecDeque::new(),
            in_flight: BTreeMap::new(),
            done: BTreeMap::new(),
            previous,
            durable_index,
            replay_floor: None,
            replayed: 0,
            last_event_ms: now_ms,
            actions: Vec::new(),
            failure: None,
        };
        s.current.set_target_bytes(s.target_bytes());
        s.actions.push(Action::Status(StreamStatus {
            upload_id: s.upload_id.clone(),
            last_event_index: durable_index,
            last_upload_time_ms: now_ms,
        }));
        s
    }

    /// The upload this stream writes.
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Records one event (trimmed as upstream if over 64 KiB).
    pub fn record(&mut self, event: &AuditEvent, now_ms: u64) -> Result<(), StreamError> {
        self.check_open()?;
        if self.is_replay(event.index()) {
            return Ok(());
        }
        self.current.add(event)?;
        self.added(now_ms);
        Ok(())
    }

    /// Records an already encoded `OneOf` record (copying a recording without decoding it).
    pub fn record_raw(&mut self, oneof: &[u8], index: i64, now_ms: u64) -> Result<(), StreamError> {
        self.check_open()?;
        if self.is_replay(index) {
            return Ok(());
        }
        self.current.add_record(oneof, index)?;
        self.added(now_ms);
        Ok(())
    }

    /// Whether an event with `index` is a replayed copy of one the kept parts of a resumed
    /// upload hold (counted, then dropped).
    fn is_replay(&mut self, index: i64) -> bool {
        let replay = self.replay_floor.is_some_and(|floor| index <= floor);
        if replay {
            self.replayed += 1;
        }
        replay
    }

    /// Events a replaying writer sent again after a resume and that were dropped because the
    /// kept parts already hold them.
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// After an event went into the current part: cut it if full, start uploads.
    fn added(&mut self, now_ms: u64) {
        self.last_event_ms = now_ms;
        if self.current.should_upload() && self.may_cut() {
            self.cut(false);
        }
        self.start_uploads();
    }

    /// Whether the stream wants more events now. False while a cut part waits for an upload
    /// slot: the driver should wait for uploads to finish first (back-pressure, as upstream's
    /// blocking channel). Events recorded anyway are kept.
    pub fn wants_events(&self) -> bool {
        self.phase == Phase::Open && self.queued.is_empty()
    }

    /// Lets time pass: inactivity flush and compressor release.
    pub fn tick(&mut self, now_ms: u64) {
        if self.phase != Phase::Open {
            return;
        }
        let idle = now_ms.saturating_sub(self.last_event_ms);
        if idle >= self.config.inactivity_flush_ms
            && !self.current.is_empty()
            && self.may_cut()
            && self.inactivity_flush_allowed()
        {
            self.cut(false);
            self.start_uploads();
        } else if idle >= self.config.release_after_ms {
            self.current.release();
        }
    }

    /// When [`tick`](Self::tick) next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.phase != Phase::Open || self.current.is_empty() {
            return None;
        }
        let release = self.last_event_ms + self.config.release_after_ms;
        let flush = self.last_event_ms + self.config.inactivity_flush_ms;
        let mut deadlines = Vec::with_capacity(2);
        if self.current.has_compressor() {
            deadlines.push(release);
        }
        if self.inactivity_flush_allowed() {
            deadlines.push(flush);
        }
        deadlines.into_iter().min()
    }

    /// Uploads the last part unpadded and then completes the upload. Safe to call twice.
    pub fn complete(&mut self) {
        if self.phase != Phase::Open && self.phase != Phase::Closing {
            return;
        }
        if !self.current.is_empty() {
            self.cut(true);
        }
        self.phase = Phase::Completing;
        self.start_uploads();
        self.maybe_finish();
    }

    /// Uploads what was recorded (padded) and leaves the upload open to be resumed. Safe to
    /// call twice.
    pub fn close(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        if !self.current.is_empty() {
            self.cut(false);
        }
        self.phase = Phase::Closing;
        self.start_uploads();
        self.maybe_finish();
    }

    /// The driver uploaded part `number`.
    pub fn part_uploaded(
        &mut self,
        number: u32,
        etag: impl Into<String>,
        now_ms: u64,
    ) -> Result<(), StreamError> {
        let Some(part) = self.in_flight.remove(&number) else {
            return Err(StreamError::UnknownPart(number));
        };
        self.done.insert(
            number,
            (
                CompletedPart {
                    number,
                    etag: etag.into(),
                },
                part.last_index,
            ),
        );
        self.report_durable(now_ms);
        self.start_uploads();
        self.maybe_finish();
        Ok(())
    }

    /// The driver gave up on part `number`: the stream fails (the upload stays resumable with
    /// the parts that made it).
    pub fn part_failed(&mut self, number: u32, message: impl Into<String>) {
        if self.in_flight.remove(&number).is_none() {
            return;
        }
        self.fail(StreamError::UploadFailed {
            number,
            message: message.into(),
        });
    }

    /// The upload was completed.
    pub fn upload_completed(&mut self) {
        if self.phase == Phase::AwaitingComplete {
            self.phase = Phase::Completed;
            self.actions.push(Action::Completed);
        }
    }

    /// Completing the upload failed.
    pub fn complete_failed(&mut self, message: impl Into<String>) {
        if self.phase == Phase::AwaitingComplete {
            self.fail(StreamError::CompleteFailed(message.into()));
        }
    }

    /// All pending actions, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Whether the stream has reached an end (completed, closed or failed).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Completed | Phase::Closed | Phase::Failed)
    }

    /// Why the stream failed, if it did.
    pub fn failure(&self) -> Option<&StreamError> {
        self.failure.as_ref()
    }

    /// The status as of now.
    pub fn status(&self, now_ms: u64) -> StreamStatus {
        StreamStatus {
            upload_id: self.upload_id.clone(),
            last_event_index: self.durable_index,
            last_upload_time_ms: now_ms,
        }
    }

    /// Parts waiting for an upload slot or uploading.
    pub fn parts_pending(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }

    /// Memory held by the stream: the current part (compressed bytes, pending records and the
    /// compressor when active) plus the parts not yet uploaded.
    pub fn memory_bytes(&self) -> usize {
        self.current.memory_bytes()
            + self.queued.iter().map(|q| q.part.data.len()).sum::<usize>()
            + self.in_flight.values().map(|p| p.data.len()).sum::<usize>()
    }

    fn check_open(&self) -> Result<(), StreamError> {
        match self.phase {
            Phase::Open => Ok(()),
            Phase::Failed => Err(self.failure.clone().unwrap_or(StreamError::Ended("failed"))),
            Phase::Closing | Phase::Closed => Err(StreamError::Ended("closed")),
            _ => Err(StreamError::Ended("completed")),
        }
    }

    /// Whether another part may be cut before `complete` (the last number is kept for it).
    fn may_cut(&self) -> bool {
        self.next_number < MAX_PARTS
    }

    /// Part size for the next part: doubles for every 2,000 part numbers used, so an upload
    /// holds at least 2000 × min × (1+2+4+8+16) bytes (310 GiB at 5 MiB) before its numbers
    /// run out.
    fn target_bytes(&self) -> usize {
        let shift = (self.next_number / 2000).min(4);
        self.config.writer.min_upload_bytes << shift
    }

    /// Inactivity flushes spend part numbers; the last thousand are kept for data.
    fn inactivity_flush_allowed(&self) -> bool {
        self.next_number < MAX_PARTS - 1000
    }

    fn cut(&mut self, last: bool) {
        let full = std::mem::replace(&mut self.current, PartBuilder::new(self.config.writer));
        let part = Arc::new(full.finish(last));
        let number = self.next_number;
        self.next_number = self.next_number.saturating_add(1);
        self.current.set_target_bytes(self.target_bytes());
        self.queued.push_back(Queued { number, part });
    }

    fn start_uploads(&mut self) {
        while self.in_flight.len() < self.config.max_concurrent_uploads {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            self.in_flight.insert(q.number, q.part.clone());
            self.actions.push(Action::UploadPart {
                number: q.number,
                part: q.part,
            });
        }
    }

    /// Status for the highest index whose part and all earlier parts are uploaded.
    fn report_durable(&mut self, now_ms: u64) {
        let first_pending = self
            .queued
            .iter()
            .map(|q| q.number)
            .chain(self.in_flight.keys().copied())
            .min();
        let durable = self
            .done
            .iter()
            .filter(|(n, _)| first_pending.is_none_or(|p| **n < p))
            .map(|(_, (_, idx))| *idx)
            .max()
            .unwrap_or(-1);
        if durable > self.durable_index {
            self.durable_index = durable;
            self.actions.push(Action::Status(StreamStatus {
                upload_id: self.upload_id.clone(),
                last_event_index: durable,
                last_upload_time_ms: now_ms,
            }));
        }
    }

    fn maybe_finish(&mut self) {
        if !self.queued.is_empty() || !self.in_flight.is_empty() {
            return;
        }
        match self.phase {
            Phase::Closing => {
                self.phase = Phase::Closed;
                self.actions.push(Action::Closed);
            }
            Phase::Completing => {
                self.phase = Phase::AwaitingComplete;
                let mut parts = self.previous.clone();
                parts.extend(self.done.values().map(|(p, _)| p.clone()));
                parts.sort_by_key(|p| p.number);
                self.actions.push(Action::CompleteUpload { parts });
            }
            _ => {}
        }
    }

    fn fail(&mut self, e: StreamError) {
        self.phase = Phase::Failed;
        self.queued.clear();
        self.failure = Some(e);
    }
}

#[cfg(test)]
mod tests;
