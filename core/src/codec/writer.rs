//! Writing recording parts: `[24-byte V1 header][one gzip member of records][zero padding]`.
//!
//! A part holds ONE gzip member (upstream's reader stops after the first member of a part).
//! To keep an idle open stream small, [`PartBuilder::release`] ends the current deflate run
//! with a sync flush and drops the compressor; the next event starts a new compressor whose
//! output continues the same deflate stream (pigz's technique). The gzip CRC and length are
//! kept running, so the member stays valid.

use super::deflate::{Backend, Deflater, Flush};
use super::header::{PartHeader, V1_HEADER_SIZE};
use crate::event::{AuditEvent, EventError, MAX_EVENT_SIZE};

/// The minimum size of a non-last part (S3's minimum upload part), 5 MiB.
pub const MIN_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// Size of the record header (u32 big-endian message length).
pub const RECORD_HEADER_SIZE: usize = 4;
/// Gzip header as Go's `gzip.NewWriterLevel(w, gzip.BestSpeed)` writes it (no name, mtime 0,
/// XFL 4 = fastest, OS 255 = unknown).
pub const GZIP_HEADER_FAST: [u8; 10] = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x04, 0xff];
/// Uncompressed bytes gathered before a compression call.
const PENDING_BATCH: usize = 32 * 1024;

/// How parts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Non-last parts are padded up to this size; a part is due once its compressed size
    /// reaches it. 5 MiB by default.
    pub min_upload_bytes: usize,
    /// Deflate level, 1 (fastest) as Teleport.
    pub level: u32,
    /// Deflate implementation.
    pub backend: Backend,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            min_upload_bytes: MIN_UPLOAD_BYTES,
            level: 1,
            backend: Backend::default(),
        }
    }
}

/// A finished part: header and gzip member, then `padding` zero bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPart {
    /// Header and payload.
    pub data: Vec<u8>,
    /// Zero bytes that follow `data` (kept as a count so that padding costs no memory until
    /// it is written).
    pub padding: u64,
    /// Events in the part.
    pub events: usize,
    /// Index of the part's first event (-1 when empty).
    pub first_index: i64,
    /// Largest event index in the part (-1 when empty).
    pub last_index: i64,
}

impl EncodedPart {
    /// Total size on the wire.
    pub fn len(&self) -> u64 {
        self.data.len() as u64 + self.padding
    }

    /// Whether the part has no bytes (never true: a part has at least a header).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.padding == 0
    }

    /// The whole part, padding included.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len() as usize);
        v.extend_from_slice(&self.data);
        v.resize(self.len() as usize, 0);
        v
    }
}

/// Builds one part from events.
pub struct PartBuilder {
    config: WriterConfig,
    /// Compressed size at which [`should_upload`](Self::should_upload) says the part is full
    /// (`config.min_upload_bytes` unless [`set_target_bytes`](Self::set_target_bytes) grew it).
    target_bytes: usize,
    /// Reserved header, gzip header and deflate output so far.
    out: Vec<u8>,
    deflater: Option<Deflater>,
    pending: Vec<u8>,
    crc: super::crc::Crc,
    isize: u32,
    events: usize,
    first_index: i64,
    last_index: i64,
}

impl PartBuilder {
    /// An empty part.
    pub fn new(config: WriterConfig) -> PartBuilder {
        let mut out = vec![0; V1_HEADER_SIZE];
        out.extend_from_slice(&GZIP_HEADER_FAST);
        PartBuilder {
            config,
            target_bytes: config.min_upload_bytes,
            out,
            deflater: None,
            pending: Vec::new(),
            crc: super::crc::Crc::default(),
            isize: 0,
            events: 0,
            first_index: -1,
            last_index: -1,
        }
    }

    /// Adds an event, trimming it as Teleport does when it is over 64 KiB; an event that still
    /// does not fit is refused and nothing is written.
    pub fn add(&mut self, event: &AuditEvent) -> Result<(), EventError> {
        let at = self.pending.len();
        self.pending.extend_from_slice(&[0; RECORD_HEADER_SIZE]);
        match encode_record(event, &mut self.pending) {
            Ok(len) => {
                self.pending[at..at + RECORD_HEADER_SIZE]
                    .copy_from_slice(&(len as u32).to_be_bytes());
                self.note_event(event.index());
                Ok(())
            }
            Err(e) => {
                self.pending.truncate(at);
                Err(e)
            }
        }
    }

    /// Adds an already encoded `OneOf` record (at most 64 KiB) with its event index.
    pub fn add_record(&mut self, oneof: &[u8], index: i64) -> Result<(), EventError> {
        check_record(oneof)?;
        self.pending
            .extend_from_slice(&(oneof.len() as u32).to_be_bytes());
        self.pending.extend_from_slice(oneof);
        self.note_event(index);
        Ok(())
    }

    fn note_event(&mut self, index: i64) {
        if self.events == 0 {
            self.first_index = index;
        }
        self.events += 1;
        self.last_index = self.last_index.max(index);
        // Records are compressed in batches; small parts (tests, file stores) use small batches
        // so that their size is still seen in time.
        let batch = (self.config.min_upload_bytes / 4).clamp(1024, PENDING_BATCH);
        if self.pending.len() >= batch {
            self.compress_pending(Flush::None);
        }
    }

    fn compress_pending(&mut self, flush: Flush) {
        self.crc.update(&self.pending);
        self.isize = self.isize.wrapping_add(self.pending.len() as u32);
        let (level, backend) = (self.config.level, self.config.backend);
        let d = self
            .deflater
            .get_or_insert_with(|| Deflater::new(backend, level));
        d.compress(&self.pending, &mut self.out, flush);
        self.pending.clear();
    }

    /// Events added so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether no event was added.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Largest event index added (-1 when empty).
    pub fn last_index(&self) -> i64 {
        self.last_index
    }

    /// Bytes the part holds now (compressed output plus uncompressed records not yet
    /// compressed).
    pub fn buffered_bytes(&self) -> usize {
        self.out.len() + self.pending.len()
    }

    /// Memory held, counting capacity (what an idle stream costs).
    pub fn memory_bytes(&self) -> usize {
        self.out.capacity()
            + self.pending.capacity()
            + if self.deflater.is_some() {
                300 * 1024
            } else {
                0
            }
    }

    /// Whether the compressed part reached the minimum upload size (upstream's `shouldUpload`).
    pub fn should_upload(&self) -> bool {
        self.out.len() >= self.target_bytes
    }

    /// Whether working state is held: a compressor or records not yet compressed (both let go
    /// by [`release`](Self::release) until the next event).
    pub fn has_compressor(&self) -> bool {
        self.deflater.is_some() || !self.pending.is_empty()
    }

    /// Makes the part count as full only at `bytes` (never below the minimum upload size);
    /// padding still only fills up to the minimum. Streams use this to keep long recordings
    /// under the 10,000-part limit.
    pub fn set_target_bytes(&mut self, bytes: usize) {
        self.target_bytes = bytes.max(self.config.min_upload_bytes);
    }

    /// Ends the current deflate run and frees the compressor and spare buffers; call when the
    /// stream goes idle. Adding more events later continues the same gzip member.
    pub fn release(&mut self) {
        if !self.pending.is_empty() || self.deflater.is_some() {
            self.compress_pending(Flush::Sync);
        }
        self.deflater = None;
        self.pending = Vec::new();
        self.out.shrink_to_fit();
    }

    /// Completes the part. A non-last part shorter than the minimum upload size is padded up
    /// to it; the last part of a recording is never padded.
    pub fn finish(mut self, last: bool) -> EncodedPart {
        self.compress_pending(Flush::Finish);
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out.extend_from_slice(&self.isize.to_le_bytes());
        let wrote = self.out.len();
        let padding = if !last && wrote < self.config.min_upload_bytes {
            self.config.min_upload_bytes - wrote
        } else {
            0
        };
        let header = PartHeader::v1((wrote - V1_HEADER_SIZE) as u64, padding as u64).to_bytes();
        self.out[..V1_HEADER_SIZE].copy_from_slice(&header);
        EncodedPart {
            data: self.out,
            padding: padding as u64,
            events: self.events,
            first_index: self.first_index,
            last_index: self.last_index,
        }
    }
}

/// Appends `event`'s `OneOf` record body (no length prefix) to `out`, trimmed as Teleport
/// trims an event over 64 KiB; an event that still does not fit is refused and nothing is
/// appended. Returns the body's length. Drivers use this to encode on the caller's thread and
/// hand the stream ready records ([`PartBuilder::add_record`]).
pub fn encode_record(event: &AuditEvent, out: &mut Vec<u8>) -> Result<usize, EventError> {
    let fitted;
    let mut size = event.size();
    let event = if size > MAX_EVENT_SIZE {
        fitted = event.clone().fit_to_size(MAX_EVENT_SIZE)?;
        size = fitted.size();
        &fitted
    } else {
        event
    };
    let len = event.oneof_len_for_size(size);
    if len > MAX_EVENT_SIZE {
        return Err(EventError::TooLarge {
            event_type: event.event_type().to_string(),
            size: len,
            max: MAX_EVENT_SIZE,
        });
    }
    out.reserve(len);
    event.encode_oneof_sized(out, size);
    Ok(len)
}

/// Raw deflate of each part's record bytes, fed in the batches the part builder uses, with
/// no framing, CRC or record encoding: the baseline the benchmarks measure encoding against.
/// Returns the compressed size.
pub fn raw_deflate_baseline(parts: &[Vec<u8>], backend: Backend, level: u32) -> usize {
    let mut total = 0;
    for part in parts {
        let mut d = Deflater::new(backend, level);
        let mut out = Vec::with_capacity(part.len() / 3);
        for chunk in part.chunks(PENDING_BATCH) {
            d.compress(chunk, &mut out, Flush::None);
        }
        d.compress(&[], &mut out, Flush::Finish);
        total += out.len();
    }
    total
}

/// Refuses an encoded `OneOf` record over the 64 KiB message limit.
pub fn check_record(oneof: &[u8]) -> Result<(), EventError> {
    if oneof.len() > MAX_EVENT_SIZE {
        return Err(EventError::TooLarge {
            event_type: "(record)".into(),
            size: oneof.len(),
            max: MAX_EVENT_SIZE,
        });
    }
    Ok(())
}

/// Writes a whole recording: events in, parts out.
pub struct RecordingWriter {
    config: WriterConfig,
    current: PartBuilder,
    parts: Vec<EncodedPart>,
}

impl RecordingWriter {
    /// A writer.
    pub fn new(config: WriterConfig) -> RecordingWriter {
        RecordingWriter {
            config,
            current: PartBuilder::new(config),
            parts: Vec::new(),
        }
    }

    /// Adds an event; a part that reached the minimum upload size is completed.
    pub fn add(&mut self, event: &AuditEvent) -> Result<(), EventError> {
        self.current.add(event)?;
        self.cut_if_due();
        Ok(())
    }

    /// Adds an encoded record.
    pub fn add_record(&mut self, oneof: &[u8], index: i64) -> Result<(), EventError> {
        self.current.add_record(oneof, index)?;
        self.cut_if_due();
        Ok(())
    }

    fn cut_if_due(&mut self) {
        if self.current.should_upload() {
            let full = std::mem::replace(&mut self.current, PartBuilder::new(self.config));
            self.parts.push(full.finish(false));
        }
    }

    /// Completed parts not yet taken.
    pub fn take_parts(&mut self) -> Vec<EncodedPart> {
        std::mem::take(&mut self.parts)
    }

    /// Ends the recording: the current part (if it has events) becomes the last, unpadded one.
    pub fn finish(mut self) -> Vec<EncodedPart> {
        if !self.current.is_empty() {
            self.parts.push(self.current.finish(true));
        }
        self.parts
    }
}

/// Encodes events into one recording (all parts concatenated).
pub fn encode_recording(
    events: &[AuditEvent],
    config: WriterConfig,
) -> Result<Vec<u8>, EventError> {
    let mut w = RecordingWriter::new(config);
    let mut out = Vec::new();
    for e in events {
        w.add(e)?;
        for p in w.take_parts() {
            out.extend_from_slice(&p.to_vec());
        }
    }
    for p in w.finish() {
        out.extend_from_slice(&p.to_vec());
    }
    Ok(out)
}
