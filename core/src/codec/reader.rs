//! Reading recordings incrementally: push bytes (chunks of any size), pull events.
//!
//! Rules (upstream `ProtoReader`, made total): parts follow each other; a part is a header,
//! `part_size` bytes of gzip, `padding_size` zero bytes. `part_size == 0` parts carry no
//! events. After the gzip member, bytes left inside `part_size` are either another gzip
//! member (read as a continuation) or dangling data from an old writer bug (skipped, counted).
//! Events whose index is not above the last one are duplicates (skipped, counted); a gap is
//! counted as out of order. Nothing here panics or allocates more than 64 KiB plus the chunk
//! being processed, whatever the input says.

use super::deflate::{Backend, Inflater};
use super::error::{CodecError, ErrorKind};
use super::header::{PROTO_STREAM_V2, PartHeader, V1_HEADER_SIZE, V2_HEADER_SIZE};
use super::print::PrintView;
use crate::event::{AuditEvent, EventError, MAX_EVENT_SIZE};

/// Counters of a read (upstream's `ProtoReaderStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Every event decoded, duplicates included (`total-events`).
    pub total: u64,
    /// Duplicates dropped (`skipped-events`).
    pub skipped: u64,
    /// Events whose index was not the previous one plus one (`out-of-order-events`).
    pub out_of_order: u64,
    /// Parts read.
    pub parts: u64,
    /// Bytes inside payloads after the gzip data that were skipped.
    pub dangling_bytes: u64,
}

/// Where reading can restart: the start of a part, with the duplicate rule's state there.
///
/// Parts are self-contained (each is a header and its own gzip members), so a reader made with
/// [`ProtoReader::resume`] and fed the input from [`offset`](Self::offset) on returns exactly
/// the events the first reader returned from that part on, with the same indexes, duplicates
/// skipped the same way and errors at the same offsets (its counters start at zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResumePoint {
    /// Absolute offset of the part's header in the recording.
    pub offset: u64,
    /// Zero-based number of the part.
    pub part: u64,
    /// Index of the last event kept before this part (-1: none yet).
    pub last_index: i64,
}

/// What [`ProtoReader::poll`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// The next event.
    Event(AuditEvent),
    /// Push more bytes (or call [`ProtoReader::finish`] at the end of the input).
    NeedInput,
    /// The recording ended cleanly.
    End,
}

/// What [`ProtoReader::poll_record`] produced: a record without its typed decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolledRecord<'a> {
    /// The next record (after the duplicate rules): its event index and its `OneOf` bytes,
    /// valid until the next call. Decode it with [`AuditEvent::decode_oneof`] when needed.
    Record {
        /// The event index (`Metadata.Index`).
        index: i64,
        /// The `OneOf` message bytes.
        oneof: &'a [u8],
    },
    /// Push more bytes (or call [`ProtoReader::finish`] at the end of the input).
    NeedInput,
    /// The recording ended cleanly.
    End,
}

/// What [`ProtoReader::poll_print`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolledPrint<'a> {
    /// The next kept event is a print: its index and its data, valid until the next call.
    Print {
        /// The event index (`Metadata.Index`).
        index: i64,
        /// The output bytes (`SessionPrint.Data`).
        data: &'a [u8],
    },
    /// The next kept event is not a print (nothing to write).
    Other {
        /// The event index.
        index: i64,
    },
    /// Push more bytes (or call [`ProtoReader::finish`] at the end of the input).
    NeedInput,
    /// The recording ended cleanly.
    End,
}

/// What [`ProtoReader::poll_fields`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum PolledFields<'a> {
    /// The next kept event is a plain print, read in place (valid until the next call).
    Print {
        /// Its fields.
        view: PrintView<'a>,
        /// What [`ProtoReader::resume_point`] gives after this call (the view borrows the
        /// reader, so it comes along).
        point: ResumePoint,
    },
    /// The next kept event, typed (anything but a plain print).
    Event(AuditEvent),
    /// Push more bytes (or call [`ProtoReader::finish`] at the end of the input).
    NeedInput,
    /// The recording ended cleanly.
    End,
}

/// The state machine's answer when it has no record to give.
enum Need {
    Input,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Payload,
    Drain,
    Padding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gz {
    /// Reading the 10 fixed header bytes; `n` seen.
    Fixed(u8),
    ExtraLen(u8, u16),
    Extra(u16),
    Name,
    Comment,
    HeaderCrc(u8),
    Body,
    Trailer(u8),
    /// The member ended; what follows decides (another member or dangling bytes).
    Ended,
}

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// Capacity of the decompressed-data buffer: one largest record plus room to inflate into.
/// Measured (docs/benchmarks.md): 192 KiB of room beat 64 KiB by ~4% and 448 KiB by ~2%.
const DEC_CAPACITY: usize = MAX_EVENT_SIZE + 4 + 192 * 1024;

/// Streaming recording reader.
pub struct ProtoReader {
    input: Vec<u8>,
    in_pos: usize,
    /// Absolute offset of `input[in_pos]`.
    offset: u64,
    finished: bool,
    state: State,
    header: Option<PartHeader>,
    part_start: u64,
    part_index: u64,
    payload_left: u64,
    padding_left: u64,
    gz: Gz,
    gz_flags: u8,
    trailer: [u8; 8],
    crc: super::crc::Crc,
    isize: u32,
    inflater: Inflater,
    /// Decompressed bytes: `dec[dec_pos..dec_end]` is pending. Allocated (and zeroed) once, on
    /// first use, then reused without clearing.
    dec: Vec<u8>,
    dec_pos: usize,
    dec_end: usize,
    /// Offset of `dec[0]` in the current part's decompressed data.
    dec_origin: u64,
    last_index: i64,
    stats: ReaderStats,
    failed: Option<CodecError>,
    /// The start of the part being read (the last header parsed).
    resume: ResumePoint,
    /// Keep every event (no duplicate rule): the per-part decode of [`super::parallel`],
    /// whose merge step applies the rule across parts instead.
    keep_all: bool,
    /// The index of the last event [`poll`](Self::poll) returned.
    polled_index: i64,
    /// A print's data decoded the slow way by [`poll_print`](Self::poll_print).
    scratch: Vec<u8>,
}

impl Default for ProtoReader {
    fn default() -> Self {
        ProtoReader::new(Backend::default())
    }
}

impl ProtoReader {
    /// A reader using `backend` for inflate.
    pub fn new(backend: Backend) -> ProtoReader {
        ProtoReader::with_inflater(Inflater::new(backend))
    }

    fn with_inflater(inflater: Inflater) -> ProtoReader {
        ProtoReader {
            input: Vec::new(),
            in_pos: 0,
            offset: 0,
            finished: false,
            state: State::Header,
            header: None,
            part_start: 0,
            part_index: 0,
            payload_left: 0,
            padding_left: 0,
            gz: Gz::Fixed(0),
            gz_flags: 0,
            trailer: [0; 8],
            crc: super::crc::Crc::default(),
            isize: 0,
            inflater,
            dec: Vec::new(),
            dec_pos: 0,
            dec_end: 0,
            dec_origin: 0,
            last_index: -1,
            stats: ReaderStats::default(),
            failed: None,
            resume: ResumePoint {
                offset: 0,
                part: 0,
                last_index: -1,
            },
            keep_all: false,
            polled_index: 0,
            scratch: Vec::new(),
        }
    }

    /// A reader of the one part (or the damaged rest of a recording) that starts at `offset`,
    /// the `part`-th (zero-based), which returns every event it decodes, duplicates included:
    /// the duplicate and order rules are left to the caller ([`super::parallel::PartMerger`]).
    /// Errors name the same offsets as a reader of the whole recording.
    pub fn for_part(backend: Backend, offset: u64, part: u64) -> ProtoReader {
        ProtoReader::new(backend).into_part(offset, part)
    }

    /// [`for_part`](Self::for_part), keeping this reader's buffers and inflater (reset): a
    /// worker decoding part after part allocates them once.
    pub(crate) fn into_part(self, offset: u64, part: u64) -> ProtoReader {
        let ProtoReader {
            mut input,
            dec,
            mut scratch,
            mut inflater,
            ..
        } = self;
        input.clear();
        scratch.clear();
        inflater.reset();
        let mut r = ProtoReader::with_inflater(inflater);
        r.input = input;
        r.dec = dec;
        r.scratch = scratch;
        r.start_at(ResumePoint {
            offset,
            part,
            last_index: -1,
        });
        r.keep_all = true;
        r
    }

    fn start_at(&mut self, point: ResumePoint) {
        self.offset = point.offset;
        self.part_start = point.offset;
        self.part_index = point.part;
        self.last_index = point.last_index;
        self.resume = point;
    }

    /// The index (as the duplicate rule reads it) of the last event [`poll`](Self::poll)
    /// returned.
    pub fn polled_index(&self) -> i64 {
        self.polled_index
    }

    /// A reader that starts at `point` (see [`ResumePoint`]): push the recording's bytes from
    /// `point.offset` on.
    pub fn resume(backend: Backend, point: ResumePoint) -> ProtoReader {
        let mut r = ProtoReader::new(backend);
        r.start_at(point);
        r
    }

    /// Where reading can restart to read again the part of the last event returned (and what
    /// follows): the last part header parsed. Before any header, the start of the input.
    pub fn resume_point(&self) -> ResumePoint {
        self.resume
    }

    /// Adds input bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.in_pos > 0
            && (self.in_pos >= self.input.len() / 2 || self.input.len() - self.in_pos < 4096)
        {
            self.input.drain(..self.in_pos);
            self.in_pos = 0;
        }
        self.input.extend_from_slice(data);
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Starts reading another source with the same duplicate detection (upstream's `Reset`).
    pub fn reset_input(&mut self) {
        self.input.clear();
        self.in_pos = 0;
        self.finished = false;
        self.state = State::Header;
        self.dec = Vec::new();
        self.dec_pos = 0;
        self.dec_end = 0;
        self.dec_origin = 0;
        self.failed = None;
    }

    /// Counters so far.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// Bytes of input consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Buffered memory (input not yet processed and decompressed data).
    pub fn buffered_bytes(&self) -> usize {
        self.input.capacity() + self.dec.capacity()
    }

    fn avail(&self) -> &[u8] {
        &self.input[self.in_pos..]
    }

    fn consume(&mut self, n: usize) {
        self.in_pos += n;
        self.offset += n as u64;
    }

    fn err(&mut self, offset: u64, kind: ErrorKind) -> CodecError {
        let e = CodecError {
            offset,
            part: self.part_index,
            record: None,
            kind,
        };
        self.failed = Some(e.clone());
        e
    }

    /// An error in the record whose length prefix is at `dec[at]`: the part's offset and the
    /// record's place in the part's decompressed data.
    fn record_err(&mut self, at: usize, kind: ErrorKind) -> CodecError {
        let e = CodecError {
            offset: self.part_start,
            part: self.part_index,
            record: Some(self.dec_origin + at as u64),
            kind,
        };
        self.failed = Some(e.clone());
        e
    }

    /// The next event, or what the reader needs. After an error, every call returns it again.
    pub fn poll(&mut self) -> Result<Polled, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some((at, len)) = self.next_record()? {
                if let Some(event) = self.typed_record(at, len)? {
                    return Ok(Polled::Event(event));
                }
                continue;
            }
            match self.step()? {
                None => {}
                Some(Need::Input) => return Ok(Polled::NeedInput),
                Some(Need::End) => return Ok(Polled::End),
            }
        }
    }

    /// Like [`poll`](Self::poll) without the typed decode: the next record's index and bytes.
    /// Only the framing and the event's `Metadata.Index` are read (the fast path for copying,
    /// filtering or seeking); the other fields are checked when the record is decoded.
    pub fn poll_record(&mut self) -> Result<PolledRecord<'_>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some((at, len)) = self.next_record()? {
                let index = match scan_index(&self.dec[at..at + len]) {
                    Ok(i) => i,
                    Err(e) => return Err(self.record_err(at - 4, ErrorKind::Event(e))),
                };
                if self.dedup(index) {
                    return Ok(PolledRecord::Record {
                        index,
                        oneof: &self.dec[at..at + len],
                    });
                }
                continue;
            }
            match self.step()? {
                None => {}
                Some(Need::Input) => return Ok(PolledRecord::NeedInput),
                Some(Need::End) => return Ok(PolledRecord::End),
            }
        }
    }

    /// Like [`poll`](Self::poll) — the same typed decode, so the same kept events, counters
    /// and errors — but the event is dropped and its record given: the index and the
    /// `OneOf` bytes, from which [`AuditEvent::decode_oneof`] builds the same event again.
    /// For readers that hold events as bytes and decode them later (the parallel readers
    /// keep whole parts: a part's records take a fraction of its typed events' memory).
    pub fn poll_checked(&mut self) -> Result<PolledRecord<'_>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some((at, len)) = self.next_record()? {
                if self.typed_record(at, len)?.is_some() {
                    return Ok(PolledRecord::Record {
                        index: self.polled_index,
                        oneof: &self.dec[at..at + len],
                    });
                }
                continue;
            }
            match self.step()? {
                None => {}
                Some(Need::Input) => return Ok(PolledRecord::NeedInput),
                Some(Need::End) => return Ok(PolledRecord::End),
            }
        }
    }

    /// Like [`poll`](Self::poll) for the terminal output alone: the next kept event's index
    /// and, for a print event, its data, without building the typed event when the record is
    /// a plain `SessionPrint` ([`super::print::scan_print`]); anything else takes the typed
    /// decode. Events kept, counters and errors are those of `poll`, and `data` is what
    /// [`AuditEvent::print_data`] of the polled event gives.
    pub fn poll_print(&mut self) -> Result<PolledPrint<'_>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some((at, len)) = self.next_record()? {
                let record = &self.dec[at..at + len];
                let (index, data) = match super::print::scan_print(record) {
                    Some(super::print::Scanned::Print { index, data }) => {
                        (index, Some((at + data.start)..(at + data.end)))
                    }
                    // Not a print: only the index counts, read as `poll_record` reads it
                    // (the same index and the same errors as the typed decode's).
                    Some(super::print::Scanned::Other) => match scan_index(record) {
                        Ok(i) => (i, None),
                        Err(e) => return Err(self.record_err(at - 4, ErrorKind::Event(e))),
                    },
                    None => {
                        let Some(event) = self.typed_record(at, len)? else {
                            continue;
                        };
                        self.scratch.clear();
                        return Ok(match event.print_data() {
                            Some(d) => {
                                self.scratch.extend_from_slice(d);
                                PolledPrint::Print {
                                    index: self.polled_index,
                                    data: &self.scratch,
                                }
                            }
                            None => PolledPrint::Other {
                                index: self.polled_index,
                            },
                        });
                    }
                };
                if !self.dedup(index) {
                    continue;
                }
                self.polled_index = index;
                return Ok(match data {
                    Some(r) => PolledPrint::Print {
                        index,
                        data: &self.dec[r],
                    },
                    None => PolledPrint::Other { index },
                });
            }
            match self.step()? {
                None => {}
                Some(Need::Input) => return Ok(PolledPrint::NeedInput),
                Some(Need::End) => return Ok(PolledPrint::End),
            }
        }
    }

    /// Like [`poll`](Self::poll) for a player: a plain print record comes as its
    /// [`PrintView`] (read in place, [`super::print::scan_print_fields`]), anything else as
    /// the typed event. Events kept, counters and errors are those of `poll`, and a view's
    /// fields are the typed print's.
    pub fn poll_fields(&mut self) -> Result<PolledFields<'_>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some((at, len)) = self.next_record()? {
                match super::print::scan_print_fields(&self.dec[at..at + len]) {
                    Some(super::print::ScannedFields::Print(p)) => {
                        if !self.dedup(p.index) {
                            continue;
                        }
                        self.polled_index = p.index;
                        let point = self.resume_point();
                        return Ok(PolledFields::Print {
                            view: p.view(&self.dec[at..at + len]),
                            point,
                        });
                    }
                    _ => match self.typed_record(at, len)? {
                        Some(event) => return Ok(PolledFields::Event(event)),
                        None => continue,
                    },
                }
            }
            match self.step()? {
                None => {}
                Some(Need::Input) => return Ok(PolledFields::NeedInput),
                Some(Need::End) => return Ok(PolledFields::End),
            }
        }
    }

    /// The typed decode of the record at `dec[at..at + len]` with the duplicate rule:
    /// `Some` when it is kept (`polled_index` set). Decoded before the duplicate check, as
    /// upstream does: a malformed duplicate is still an error.
    fn typed_record(&mut self, at: usize, len: usize) -> Result<Option<AuditEvent>, CodecError> {
        let record = &self.dec[at..at + len];
        let event = match AuditEvent::decode_oneof(record) {
            Ok(e) => e,
            Err(e) => return Err(self.record_err(at - 4, ErrorKind::Event(e))),
        };
        // A raw event's index is read as `poll_record` reads it, so that every way of
        // reading keeps the same records whatever a raw body holds.
        let index = match &event {
            AuditEvent::Unrecognized(_) => scan_index(record).unwrap_or(0),
            e => e.index(),
        };
        if !self.dedup(index) {
            return Ok(None);
        }
        self.polled_index = index;
        Ok(Some(event))
    }

    /// One step of the part state machine: `None` when it made progress.
    fn step(&mut self) -> Result<Option<Need>, CodecError> {
        match self.state {
            State::Header => {
                let avail = self.avail().len();
                if avail < V1_HEADER_SIZE {
                    if !self.finished {
                        return Ok(Some(Need::Input));
                    }
                    if avail == 0 {
                        return Ok(Some(Need::End));
                    }
                    return Err(self.err(
                        self.offset,
                        ErrorKind::TruncatedHeader {
                            have: avail,
                            need: V1_HEADER_SIZE,
                        },
                    ));
                }
                let mut first = [0u8; 24];
                first.copy_from_slice(&self.avail()[..24]);
                let mut h = match PartHeader::parse_v1_prefix(&first) {
                    Ok(h) => h,
                    Err(kind) => return Err(self.err(self.offset, kind)),
                };
                if h.version == PROTO_STREAM_V2 {
                    if avail < V2_HEADER_SIZE {
                        if !self.finished {
                            return Ok(Some(Need::Input));
                        }
                        return Err(self.err(
                            self.offset,
                            ErrorKind::TruncatedHeader {
                                have: avail,
                                need: V2_HEADER_SIZE,
                            },
                        ));
                    }
                    let mut flags = [0u8; 8];
                    flags.copy_from_slice(&self.avail()[24..32]);
                    h.parse_flags(&flags);
                    if h.encrypted() {
                        return Err(self.err(self.offset, ErrorKind::EncryptedRecording));
                    }
                }
                self.part_start = self.offset;
                self.resume = ResumePoint {
                    offset: self.offset,
                    part: self.part_index,
                    last_index: self.last_index,
                };
                self.consume(h.len());
                self.header = Some(h);
                self.payload_left = h.part_size;
                self.padding_left = h.padding_size;
                self.stats.parts += 1;
                self.gz = Gz::Fixed(0);
                self.state = if h.part_size == 0 {
                    State::Padding
                } else {
                    State::Payload
                };
            }
            State::Payload => {
                if !self.step_payload()? {
                    if self.payload_left == 0 {
                        self.end_of_payload()?;
                        return Ok(None);
                    }
                    if self.finished {
                        let missing = self.payload_left;
                        return Err(self.err(self.offset, ErrorKind::TruncatedPart { missing }));
                    }
                    return Ok(Some(Need::Input));
                }
            }
            State::Drain => {
                let n = (self.avail().len() as u64).min(self.payload_left) as usize;
                self.consume(n);
                self.payload_left -= n as u64;
                self.stats.dangling_bytes += n as u64;
                if self.payload_left == 0 {
                    self.end_of_payload()?;
                } else if self.finished {
                    let missing = self.payload_left;
                    return Err(self.err(self.offset, ErrorKind::TruncatedPart { missing }));
                } else {
                    return Ok(Some(Need::Input));
                }
            }
            State::Padding => {
                let n = (self.avail().len() as u64).min(self.padding_left) as usize;
                self.consume(n);
                self.padding_left -= n as u64;
                if self.padding_left == 0 {
                    self.state = State::Header;
                    self.part_index += 1;
                } else if self.finished {
                    let expected = self.header.map_or(0, |h| h.padding_size);
                    let got = expected - self.padding_left;
                    return Err(
                        self.err(self.offset, ErrorKind::TruncatedPadding { expected, got })
                    );
                } else {
                    return Ok(Some(Need::Input));
                }
            }
        }
        Ok(None)
    }

    /// The payload is used up: the gzip data must be complete and no record half read.
    fn end_of_payload(&mut self) -> Result<(), CodecError> {
        if !matches!(self.gz, Gz::Ended) {
            return Err(self.err(self.offset, ErrorKind::TruncatedGzip));
        }
        let left = self.dec_end - self.dec_pos;
        if left > 0 {
            let missing = if left >= 4 {
                let len = u32::from_be_bytes([
                    self.dec[self.dec_pos],
                    self.dec[self.dec_pos + 1],
                    self.dec[self.dec_pos + 2],
                    self.dec[self.dec_pos + 3],
                ]);
                4 + len as usize - left
            } else {
                4 - left
            };
            return Err(self.record_err(self.dec_pos, ErrorKind::TruncatedRecord { missing }));
        }
        self.dec_pos = 0;
        self.dec_end = 0;
        self.dec_origin = 0;
        self.state = State::Padding;
        Ok(())
    }

    /// Upstream's duplicate and order rules: whether the event with this index is kept.
    fn dedup(&mut self, idx: i64) -> bool {
        if self.keep_all {
            self.stats.total += 1;
            return true;
        }
        dedup_rule(&mut self.stats, &mut self.last_index, idx)
    }

    /// A complete record from the decompressed buffer, if there is one.
    fn next_record(&mut self) -> Result<Option<(usize, usize)>, CodecError> {
        let have = self.dec_end - self.dec_pos;
        if have < 4 {
            return Ok(None);
        }
        let p = self.dec_pos;
        let len = u32::from_be_bytes([
            self.dec[p],
            self.dec[p + 1],
            self.dec[p + 2],
            self.dec[p + 3],
        ]);
        if len == 0 {
            return Err(self.record_err(p, ErrorKind::ZeroMessageSize));
        }
        if len as usize > MAX_EVENT_SIZE {
            return Err(self.record_err(p, ErrorKind::MessageTooLarge(len)));
        }
        let len = len as usize;
        if have < 4 + len {
            return Ok(None);
        }
        // The bytes stay in place until the next inflate step (which recycles the buffer).
        self.dec_pos += 4 + len;
        Ok(Some((p + 4, len)))
    }

    /// Moves the payload forward; false when nothing could be done with the input at hand.
    fn step_payload(&mut self) -> Result<bool, CodecError> {
        let limit = (self.avail().len() as u64).min(self.payload_left) as usize;
        match self.gz {
            Gz::Ended => {
                // Another gzip member, or dangling bytes?
                if self.payload_left == 0 {
                    return Ok(false);
                }
                let need = self.payload_left.min(2) as usize;
                if limit < need {
                    return Ok(false);
                }
                if need == 2 && self.avail()[0] == 0x1f && self.avail()[1] == 0x8b {
                    self.gz = Gz::Fixed(0);
                } else {
                    self.state = State::Drain;
                }
                Ok(true)
            }
            Gz::Body => {
                if self.dec_pos == self.dec_end {
                    self.dec_origin += self.dec_end as u64;
                    self.dec_pos = 0;
                    self.dec_end = 0;
                }
                if self.dec_pos > 0 && self.dec_end + 128 * 1024 > DEC_CAPACITY {
                    self.dec_origin += self.dec_pos as u64;
                    self.dec.copy_within(self.dec_pos..self.dec_end, 0);
                    self.dec_end -= self.dec_pos;
                    self.dec_pos = 0;
                }
                let start = self.dec_end;
                let want = (start + 16 * 1024).max(DEC_CAPACITY);
                if self.dec.len() < want {
                    self.dec.resize(want, 0);
                }
                let input = &self.input[self.in_pos..self.in_pos + limit];
                let r = self.inflater.inflate(input, &mut self.dec[start..]);
                let p = match r {
                    Ok(p) => p,
                    // The last byte the back end read before it noticed the damage (the
                    // same byte whatever the chunking: it reads no further than it needs).
                    Err(e) => {
                        let at = (self.offset + e.consumed as u64).saturating_sub(1);
                        return Err(self.err(at, ErrorKind::BadDeflate));
                    }
                };
                self.dec_end = start + p.written;
                self.crc.update(&self.dec[start..self.dec_end]);
                self.isize = self.isize.wrapping_add(p.written as u32);
                self.consume(p.consumed);
                self.payload_left -= p.consumed as u64;
                if p.done {
                    self.gz = Gz::Trailer(0);
                }
                Ok(p.consumed > 0 || p.written > 0 || p.done)
            }
            Gz::Trailer(n) => {
                if limit == 0 {
                    return Ok(false);
                }
                let take = limit.min(8 - n as usize);
                self.trailer[n as usize..n as usize + take]
                    .copy_from_slice(&self.input[self.in_pos..self.in_pos + take]);
                self.consume(take);
                self.payload_left -= take as u64;
                let n = n + take as u8;
                if n < 8 {
                    self.gz = Gz::Trailer(n);
                    return Ok(true);
                }
                let expected = u32::from_le_bytes([
                    self.trailer[0],
                    self.trailer[1],
                    self.trailer[2],
                    self.trailer[3],
                ]);
                let size = u32::from_le_bytes([
                    self.trailer[4],
                    self.trailer[5],
                    self.trailer[6],
                    self.trailer[7],
                ]);
                let actual = std::mem::take(&mut self.crc).finalize();
                if expected != actual {
                    return Err(self.err(
                        self.offset - 8,
                        ErrorKind::ChecksumMismatch { expected, actual },
                    ));
                }
                if size != self.isize {
                    return Err(self.err(
                        self.offset - 4,
                        ErrorKind::LengthMismatch {
                            expected: size,
                            actual: self.isize,
                        },
                    ));
                }
                self.isize = 0;
                self.gz = Gz::Ended;
                Ok(true)
            }
            _ => {
                if limit == 0 {
                    return Ok(false);
                }
                self.step_gzip_header(limit)?;
                Ok(true)
            }
        }
    }

    /// Parses gzip header bytes; any field may be split across pushes.
    fn step_gzip_header(&mut self, limit: usize) -> Result<(), CodecError> {
        let mut used = 0;
        let bytes = &self.input[self.in_pos..self.in_pos + limit];
        let mut gz = self.gz;
        let mut flags = self.gz_flags;
        let mut error = None;
        while used < bytes.len() && error.is_none() {
            let b = bytes[used];
            match gz {
                Gz::Fixed(n) => {
                    match n {
                        0 if b != 0x1f => error = Some("bad magic number"),
                        1 if b != 0x8b => error = Some("bad magic number"),
                        2 if b != 8 => error = Some("compression method is not deflate"),
                        3 if b & 0xe0 != 0 => error = Some("reserved flag bits set"),
                        3 => flags = b,
                        _ => {}
                    }
                    used += 1;
                    gz = if n + 1 == 10 {
                        self.after(flags, FEXTRA - 1)
                    } else {
                        Gz::Fixed(n + 1)
                    };
                }
                Gz::ExtraLen(n, v) => {
                    used += 1;
                    let v = v | (u16::from(b) << (8 * n));
                    gz = if n == 1 {
                        if v == 0 {
                            self.after(flags, FEXTRA)
                        } else {
                            Gz::Extra(v)
                        }
                    } else {
                        Gz::ExtraLen(1, v)
                    };
                }
                Gz::Extra(left) => {
                    let take = (bytes.len() - used).min(left as usize);
                    used += take;
                    let left = left - take as u16;
                    gz = if left == 0 {
                        self.after(flags, FEXTRA)
                    } else {
                        Gz::Extra(left)
                    };
                }
                Gz::Name => {
                    used += 1;
                    if b == 0 {
                        gz = self.after(flags, FNAME);
                    }
                }
                Gz::Comment => {
                    used += 1;
                    if b == 0 {
                        gz = self.after(flags, FCOMMENT);
                    }
                }
                Gz::HeaderCrc(n) => {
                    used += 1;
                    gz = if n == 1 { Gz::Body } else { Gz::HeaderCrc(1) };
                }
                Gz::Body | Gz::Trailer(_) | Gz::Ended => break,
            }
        }
        if let Some(msg) = error {
            let at = self.offset + used as u64;
            return Err(self.err(at, ErrorKind::BadGzipHeader(msg)));
        }
        if gz == Gz::Body {
            // Every gzip member (each part's, and any later member in a part) starts a new
            // deflate stream.
            self.inflater.reset();
            self.crc = super::crc::Crc::default();
            self.isize = 0;
        }
        self.gz = gz;
        self.gz_flags = flags;
        self.consume(used);
        self.payload_left -= used as u64;
        Ok(())
    }

    /// The header stage after the optional field `done` (a flag bit; `FEXTRA - 1` = none yet).
    fn after(&self, flags: u8, done: u8) -> Gz {
        let next = [FEXTRA, FNAME, FCOMMENT, FHCRC];
        let order = |f: u8| next.iter().position(|&x| x == f).map_or(0, |p| p + 1);
        let start = if done == FEXTRA - 1 { 0 } else { order(done) };
        for &f in &next[start..] {
            if flags & f != 0 {
                return match f {
                    FEXTRA => Gz::ExtraLen(0, 0),
                    FNAME => Gz::Name,
                    FCOMMENT => Gz::Comment,
                    _ => Gz::HeaderCrc(0),
                };
            }
        }
        Gz::Body
    }
}

/// Upstream's duplicate and order rules for the event with index `idx`, given the index of the
/// last event kept: whether it is kept (counted in `stats`; `last_index` moves on if so).
pub(crate) fn dedup_rule(stats: &mut ReaderStats, last_index: &mut i64, idx: i64) -> bool {
    stats.total += 1;
    if idx <= *last_index {
        stats.skipped += 1;
        return false;
    }
    if *last_index > 0 && idx != *last_index + 1 {
        stats.out_of_order += 1;
    }
    *last_index = idx;
    true
}

/// Everything read from a complete recording in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadAll {
    /// Events in order (duplicates dropped).
    pub events: Vec<AuditEvent>,
    /// Counters.
    pub stats: ReaderStats,
    /// The error that stopped the read, if any; `events` holds everything before it.
    pub error: Option<CodecError>,
}

/// Reads a whole recording held in memory.
pub fn read_all(bytes: &[u8]) -> ReadAll {
    let mut r = ProtoReader::default();
    r.push(bytes);
    r.finish();
    let mut events = Vec::new();
    loop {
        match r.poll() {
            Ok(Polled::Event(e)) => events.push(e),
            Ok(Polled::End | Polled::NeedInput) => {
                return ReadAll {
                    events,
                    stats: r.stats(),
                    error: None,
                };
            }
            Err(e) => {
                return ReadAll {
                    events,
                    stats: r.stats(),
                    error: Some(e),
                };
            }
        }
    }
}

impl From<EventError> for ErrorKind {
    fn from(e: EventError) -> Self {
        ErrorKind::Event(e)
    }
}

/// `Metadata.Index` of a `OneOf` record without decoding the event: every member's field 1 is
/// its `Metadata`, whose field 1 is the index.
///
/// The rules match [`AuditEvent::decode_oneof`]: the member that counts is the record's last
/// length-delimited field; within it the last `Index` of the last `Metadata` wins (a protobuf
/// merge). A member body that is not protobuf (an unknown member may hold anything) has index
/// 0, as the raw event it decodes to has no metadata. Errors only when the record itself is not
/// protobuf or holds no member.
pub(crate) fn scan_index(oneof: &[u8]) -> Result<i64, crate::event::EventError> {
    match scan_index_fast(oneof) {
        Some(i) => Ok(i),
        // Anything unusual (or broken) takes the exact path, which also names the error.
        None => scan_index_exact(oneof),
    }
}

/// A varint at `*pos`, or `None` when truncated or over-long.
#[inline(always)]
pub(super) fn varint_at(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let b0 = *buf.get(*pos)?;
    if b0 < 0x80 {
        *pos += 1;
        return Some(u64::from(b0));
    }
    let mut v = u64::from(b0 & 0x7f);
    for i in 1..10 {
        let b = *buf.get(*pos + i)?;
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos += i + 1;
            return Some(v);
        }
    }
    None
}

/// Skips the value of wire type `wt` at `*pos`; `None` if it does not fit or `wt` is invalid.
#[inline(always)]
pub(super) fn skip_at(buf: &[u8], pos: &mut usize, wt: u64) -> Option<()> {
    match wt {
        0 => varint_at(buf, pos).map(|_| ()),
        1 | 5 => {
            let n = if wt == 1 { 8 } else { 4 };
            (*pos + n <= buf.len()).then(|| *pos += n)
        }
        2 => {
            let len = varint_at(buf, pos)?;
            let end = pos.checked_add(usize::try_from(len).ok()?)?;
            (end <= buf.len()).then(|| *pos = end)
        }
        _ => None,
    }
}

/// A key at `*pos` with a valid field number.
#[inline(always)]
pub(super) fn key_at(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let key = varint_at(buf, pos)?;
    (key >> 3 != 0 && key >> 3 <= 0x1FFF_FFFF).then_some(key)
}

/// [`scan_index_exact`] without error reporting, for the common case: same answer whenever it
/// answers; `None` sends anything unusual to the exact path.
#[inline]
fn scan_index_fast(buf: &[u8]) -> Option<i64> {
    let mut index = None;
    let mut pos = 0;
    while pos < buf.len() {
        let key = key_at(buf, &mut pos)?;
        if key & 7 != 2 {
            skip_at(buf, &mut pos, key & 7)?;
            continue;
        }
        let len = usize::try_from(varint_at(buf, &mut pos)?).ok()?;
        let end = pos.checked_add(len).filter(|&e| e <= buf.len())?;
        index = Some(member_index_fast(&buf[pos..end])?);
        pos = end;
    }
    index
}

/// The index in one member's body, `None` when the body is not plain protobuf.
#[inline(always)]
fn member_index_fast(member: &[u8]) -> Option<i64> {
    let mut index = 0i64;
    let mut pos = 0;
    while pos < member.len() {
        let key = key_at(member, &mut pos)?;
        if key != (1 << 3 | 2) {
            skip_at(member, &mut pos, key & 7)?;
            continue;
        }
        let mlen = usize::try_from(varint_at(member, &mut pos)?).ok()?;
        let mend = pos.checked_add(mlen).filter(|&e| e <= member.len())?;
        let meta = &member[..mend];
        while pos < mend {
            let key = key_at(meta, &mut pos)?;
            if key == 1 << 3 {
                index = varint_at(meta, &mut pos)? as i64;
            } else {
                skip_at(meta, &mut pos, key & 7)?;
            }
        }
    }
    Some(index)
}

fn scan_index_exact(oneof: &[u8]) -> Result<i64, crate::event::EventError> {
    let (_, body) =
        crate::event::last_member(oneof)?.ok_or(crate::event::EventError::EmptyOneOf)?;
    Ok(member_index_exact(body).unwrap_or(0))
}

/// The index in one member's body (as [`member_index_fast`], with the proto module's readers).
fn member_index_exact(mut member: &[u8]) -> Result<i64, crate::proto::DecodeError> {
    use crate::proto::{WireType, read_key, read_len_bytes, read_varint, skip_value};
    let mut index = 0i64;
    while !member.is_empty() {
        let (field, wt) = read_key(&mut member)?;
        if field == 1 && wt == WireType::Len {
            let mut meta = read_len_bytes(&mut member, "events.Metadata")?;
            while !meta.is_empty() {
                let (f, wt) = read_key(&mut meta)?;
                if f == 1 && wt == WireType::Varint {
                    index = read_varint(&mut meta)? as i64;
                } else {
                    skip_value(wt, &mut meta)?;
                }
            }
        } else {
            skip_value(wt, &mut member)?;
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::{scan_index_exact, scan_index_fast};
    use proptest::prelude::*;

    fn sample_records() -> Vec<Vec<u8>> {
        crate::vectors::sample_session(3)
            .iter()
            .map(|e| {
                let mut b = Vec::new();
                e.encode_oneof(&mut b);
                b
            })
            .collect()
    }

    #[test]
    fn fast_index_scan_reads_real_records() {
        for (i, r) in sample_records().iter().enumerate() {
            let exact = scan_index_exact(r).unwrap();
            assert_eq!(scan_index_fast(r), Some(exact), "record {i}");
        }
    }

    proptest! {
        /// Whenever the fast scan answers, it agrees with the exact one (which it falls back
        /// to otherwise): on mutated real records and on arbitrary bytes.
        #[test]
        fn fast_index_scan_agrees_with_exact(
            which in 0usize..64,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let records = sample_records();
            let mut r = records[which % records.len()].clone();
            for (at, b) in edits {
                let n = r.len();
                r[at % n] = b;
            }
            for input in [&r[..], &noise[..]] {
                if let Some(i) = scan_index_fast(input) {
                    prop_assert_eq!(scan_index_exact(input).ok(), Some(i));
                }
            }
        }
    }
}
