//! [`RecordingReader`]: a recording of any supported format, pushed in chunks, pulled as events.
//!
//! The format is decided by the first bytes ([`detect_format`]): ProtoStream (V1, V2) streams
//! through [`ProtoReader`] as the chunks arrive; a legacy tar archive (small, and needing its
//! index) is gathered whole and read at [`finish`](RecordingReader::finish); a header of
//! another version (3 to 65535) is an [`ErrorKind::UnsupportedVersion`] error; anything else
//! is an [`ErrorKind::UnknownFormat`] error at byte 0. This is the rule the browser decoder uses;
//! it says the same as the native `EventStream` (same decision, same messages).

use std::collections::VecDeque;

use super::deflate::Backend;
use super::detect::{Format, detect_format};
use super::error::{CodecError, ErrorKind};
use super::legacy;
use super::reader::{Polled, PolledFields, ProtoReader, ReaderStats, ResumePoint};
use crate::event::AuditEvent;

/// Bytes that always decide the format (a tar header is 512 bytes; ProtoStream needs 8).
const HEAD: usize = 512;

/// Message for input that is neither ProtoStream nor a tar archive.
pub const NOT_A_RECORDING: &str =
    "it starts with neither a ProtoStream header (version 1 or 2) nor a tar header";
/// Message for empty input.
pub const EMPTY_INPUT: &str = "the file is empty";

enum Inner {
    /// Not decided yet: the bytes seen so far (fewer than [`HEAD`], unless finished).
    Undecided(Vec<u8>),
    Proto(Box<ProtoReader>),
    /// A legacy tar archive being gathered, then its events.
    Tar(Vec<u8>),
    TarEvents(VecDeque<AuditEvent>),
}

/// Streaming reader of a recording in any supported format.
pub struct RecordingReader {
    inner: Inner,
    finished: bool,
    format: Option<Format>,
    /// Bytes pushed in total.
    pushed: u64,
    /// Events of a legacy archive returned so far (its `total` in [`stats`](Self::stats)).
    tar_events: u64,
    failed: Option<CodecError>,
}

impl Default for RecordingReader {
    fn default() -> Self {
        RecordingReader::new()
    }
}

impl RecordingReader {
    /// A reader that has seen no bytes.
    pub fn new() -> RecordingReader {
        RecordingReader {
            inner: Inner::Undecided(Vec::new()),
            finished: false,
            format: None,
            pushed: 0,
            tar_events: 0,
            failed: None,
        }
    }

    /// A ProtoStream reader that starts at `point` (a part boundary given by
    /// [`resume_point`](Self::resume_point)): push the recording's bytes from `point.offset`
    /// on. The events, duplicates and errors from there on are those of a reader that read
    /// the recording from its start.
    pub fn resume(point: ResumePoint) -> RecordingReader {
        RecordingReader {
            inner: Inner::Proto(Box::new(ProtoReader::resume(Backend::default(), point))),
            finished: false,
            format: None,
            pushed: point.offset,
            tar_events: 0,
            failed: None,
        }
    }

    /// Where reading can restart to read again the part of the last event returned (see
    /// [`ProtoReader::resume_point`]); `None` for legacy tar recordings (read whole) and before
    /// the format is known.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        match &self.inner {
            Inner::Proto(r) => Some(r.resume_point()),
            _ => None,
        }
    }

    /// The format, once the first bytes decided it.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Adds input bytes (a chunk of any size).
    pub fn push(&mut self, data: &[u8]) {
        self.pushed += data.len() as u64;
        match &mut self.inner {
            Inner::Undecided(head) => {
                head.extend_from_slice(data);
                self.decide();
            }
            Inner::Proto(r) => r.push(data),
            Inner::Tar(all) => all.extend_from_slice(data),
            Inner::TarEvents(_) => {}
        }
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.finished = true;
        self.decide();
        match &mut self.inner {
            Inner::Proto(r) => r.finish(),
            Inner::Tar(all) => {
                let all = std::mem::take(all);
                match legacy::read_tar_recording(&all) {
                    Ok(events) => self.inner = Inner::TarEvents(events.into()),
                    Err(kind) => self.fail(kind),
                }
            }
            Inner::Undecided(_) | Inner::TarEvents(_) => {}
        }
    }

    fn fail(&mut self, kind: ErrorKind) {
        self.failed = Some(CodecError::at(0, 0, kind));
    }

    /// Decides the format when the head is long enough (or the input ended).
    fn decide(&mut self) {
        let Inner::Undecided(head) = &mut self.inner else {
            return;
        };
        let format = detect_format(head);
        // A ProtoStream header of another version goes to the part reader, which names it.
        let other_version = format == Format::Unknown
            && head.len() >= 8
            && head[..6] == [0; 6]
            && u16::from_be_bytes([head[6], head[7]]) >= 3;
        let proto = other_version || matches!(format, Format::ProtoV1 | Format::ProtoV2);
        if !proto && head.len() < HEAD && !self.finished {
            return;
        }
        let head = std::mem::take(head);
        self.format = Some(format);
        if proto {
            let mut r = Box::new(ProtoReader::default());
            r.push(&head);
            self.inner = Inner::Proto(r);
        } else if format == Format::LegacyTar {
            self.inner = Inner::Tar(head);
        } else {
            let msg = if head.is_empty() {
                EMPTY_INPUT
            } else {
                NOT_A_RECORDING
            };
            self.inner = Inner::TarEvents(VecDeque::new());
            self.fail(ErrorKind::UnknownFormat(msg.into()));
        }
    }

    /// The next event, or what the reader needs. After an error, every call returns it again.
    pub fn poll(&mut self) -> Result<Polled, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match &mut self.inner {
            Inner::Proto(r) => r.poll(),
            Inner::Undecided(_) | Inner::Tar(_) => Ok(if self.finished {
                Polled::End
            } else {
                Polled::NeedInput
            }),
            Inner::TarEvents(q) => Ok(match q.pop_front() {
                Some(e) => {
                    self.tar_events += 1;
                    Polled::Event(e)
                }
                None => Polled::End,
            }),
        }
    }

    /// Like [`poll`](Self::poll), with plain print records read in place
    /// ([`ProtoReader::poll_fields`]); a legacy archive's events come typed.
    pub fn poll_fields(&mut self) -> Result<PolledFields<'_>, CodecError> {
        if self.failed.is_some() || !matches!(self.inner, Inner::Proto(_)) {
            return Ok(match self.poll()? {
                Polled::Event(e) => PolledFields::Event(e),
                Polled::NeedInput => PolledFields::NeedInput,
                Polled::End => PolledFields::End,
            });
        }
        match &mut self.inner {
            Inner::Proto(r) => r.poll_fields(),
            // Not reached: checked above.
            _ => Ok(PolledFields::End),
        }
    }

    /// Counters so far. A legacy archive has no parts or indexes to check: its `total` is the
    /// events returned so far, and the other counters stay zero.
    pub fn stats(&self) -> ReaderStats {
        match &self.inner {
            Inner::Proto(r) => r.stats(),
            _ => ReaderStats {
                total: self.tar_events,
                ..ReaderStats::default()
            },
        }
    }

    /// Bytes of input consumed so far (for ProtoStream: up to the last event read).
    pub fn offset(&self) -> u64 {
        match &self.inner {
            Inner::Proto(r) => r.offset(),
            Inner::Undecided(_) => 0,
            Inner::Tar(_) | Inner::TarEvents(_) => self.pushed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::{Expect, all, same_kind};

    fn read_chunked(bytes: &[u8], chunk: usize) -> (Vec<AuditEvent>, Option<CodecError>) {
        let mut r = RecordingReader::new();
        let mut events = Vec::new();
        let mut chunks = bytes.chunks(chunk.max(1));
        loop {
            match r.poll() {
                Ok(Polled::Event(e)) => events.push(e),
                Ok(Polled::NeedInput) => match chunks.next() {
                    Some(c) => r.push(c),
                    None => r.finish(),
                },
                Ok(Polled::End) => return (events, None),
                Err(e) => return (events, Some(e)),
            }
        }
    }

    /// What `poll_fields` gives, as comparable values: a print view as
    /// (index, time, delay, data, type, cluster), a typed event as itself.
    type FieldsItem = Result<(i64, crate::Timestamp, i64, Vec<u8>, String, String), AuditEvent>;

    fn read_fields(
        bytes: &[u8],
        chunk: usize,
    ) -> (Vec<FieldsItem>, Option<CodecError>, ReaderStats) {
        let mut r = RecordingReader::new();
        let mut items = Vec::new();
        let mut chunks = bytes.chunks(chunk.max(1));
        loop {
            let point_before = r.resume_point();
            match r.poll_fields() {
                Ok(PolledFields::Print { view: v, point }) => {
                    items.push(Ok((
                        v.index,
                        v.time,
                        v.delay_ms,
                        v.data.to_vec(),
                        v.event_type.to_string(),
                        v.cluster.to_string(),
                    )));
                    assert!(point_before.is_none_or(|b| b.offset <= point.offset));
                    assert_eq!(
                        Some(point),
                        r.resume_point(),
                        "the print's point is the reader's"
                    );
                }
                Ok(PolledFields::Event(e)) => items.push(Err(e)),
                Ok(PolledFields::NeedInput) => match chunks.next() {
                    Some(c) => r.push(c),
                    None => r.finish(),
                },
                Ok(PolledFields::End) => return (items, None, r.stats()),
                Err(e) => return (items, Some(e), r.stats()),
            }
        }
    }

    /// `poll_fields` keeps the events `poll` keeps, with the same fields, counters and error,
    /// on every vector; a writer's prints take the in-place path.
    #[test]
    fn poll_fields_equals_poll_on_every_vector() {
        let mut in_place = 0;
        for v in all() {
            for chunk in [7usize, 4096, usize::MAX] {
                let (want, want_err) = read_chunked(&v.bytes, chunk.min(v.bytes.len().max(1)));
                let mut typed = RecordingReader::new();
                typed.push(&v.bytes);
                typed.finish();
                while let Ok(Polled::Event(_)) = typed.poll() {}
                let (got, err, stats) = read_fields(&v.bytes, chunk.min(v.bytes.len().max(1)));
                assert_eq!(err, want_err, "{} chunk {chunk}: error", v.name);
                assert_eq!(stats, typed.stats(), "{} chunk {chunk}: stats", v.name);
                assert_eq!(got.len(), want.len(), "{} chunk {chunk}: events", v.name);
                for (g, w) in got.iter().zip(&want) {
                    match (g, w) {
                        (Err(e), w) => assert_eq!(e, w, "{}", v.name),
                        (
                            Ok((index, time, delay, data, kind, cluster)),
                            AuditEvent::SessionPrint(p),
                        ) => {
                            in_place += 1;
                            assert_eq!(*index, p.metadata.index, "{}", v.name);
                            assert_eq!(*time, p.metadata.time, "{}", v.name);
                            assert_eq!(*delay, p.delay_milliseconds, "{}", v.name);
                            assert_eq!(data, &p.data, "{}", v.name);
                            assert_eq!(kind, &p.metadata.type_, "{}", v.name);
                            assert_eq!(cluster, &p.metadata.cluster_name, "{}", v.name);
                        }
                        (Ok(_), w) => panic!("{}: a view for a non-print {w:?}", v.name),
                    }
                }
            }
        }
        assert!(in_place > 100, "only {in_place} prints read in place");
    }

    #[test]
    fn every_vector_reads_as_expected_in_any_chunking() {
        for v in all() {
            for chunk in [1usize, 7, 4096, usize::MAX] {
                if chunk == 1 && v.bytes.len() > 100_000 {
                    continue;
                }
                let (events, err) = read_chunked(&v.bytes, chunk.min(v.bytes.len().max(1)));
                match &v.expect {
                    Expect::Events { events: want, .. } => {
                        assert_eq!(err, None, "{} chunk {chunk}", v.name);
                        assert_eq!(&events, want, "{} chunk {chunk}", v.name);
                    }
                    Expect::Error {
                        before,
                        kind,
                        offset,
                    } => {
                        let e = err.unwrap_or_else(|| panic!("{}: no error", v.name));
                        assert!(same_kind(&e.kind, kind), "{}: {e}", v.name);
                        assert_eq!(e.offset, *offset, "{}", v.name);
                        assert_eq!(events.len(), *before, "{}", v.name);
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_and_empty_inputs_are_named() {
        let (_, e) = read_chunked(b"hello, this is not a recording", 5);
        let e = e.unwrap();
        assert_eq!(e.kind, ErrorKind::UnknownFormat(NOT_A_RECORDING.into()));
        assert_eq!(e.offset, 0);
        let (_, e) = read_chunked(b"", 5);
        assert_eq!(
            e.unwrap().kind,
            ErrorKind::UnknownFormat(EMPTY_INPUT.into())
        );
    }

    #[test]
    fn resuming_at_any_part_boundary_gives_the_same_events_and_errors() {
        for v in all() {
            // Read once, noting each part boundary with the number of events before it.
            let mut r = RecordingReader::new();
            r.push(&v.bytes);
            r.finish();
            let mut events = Vec::new();
            let mut points = Vec::new();
            let error = loop {
                match r.poll() {
                    Ok(Polled::Event(e)) => {
                        if let Some(p) = r.resume_point()
                            && points.last().is_none_or(|(q, _)| *q != p)
                        {
                            points.push((p, events.len()));
                        }
                        events.push(e);
                    }
                    Ok(_) => break None,
                    Err(e) => break Some(e),
                }
            };
            for (p, before) in points {
                for chunk in [7usize, 4096, usize::MAX] {
                    let mut r = RecordingReader::resume(p);
                    let rest = &v.bytes[p.offset as usize..];
                    let mut chunks = rest.chunks(chunk.min(rest.len().max(1)));
                    let mut got = Vec::new();
                    let err = loop {
                        match r.poll() {
                            Ok(Polled::Event(e)) => got.push(e),
                            Ok(Polled::NeedInput) => match chunks.next() {
                                Some(c) => r.push(c),
                                None => r.finish(),
                            },
                            Ok(Polled::End) => break None,
                            Err(e) => break Some(e),
                        }
                    };
                    assert_eq!(got, events[before..], "{} from {p:?}", v.name);
                    assert_eq!(err, error, "{} from {p:?} chunk {chunk}", v.name);
                }
            }
        }
    }

    #[test]
    fn damaged_deflate_data_is_reported_at_one_offset_in_any_chunking() {
        let mut bytes = all()
            .into_iter()
            .find(|v| v.name == "many-padded-parts")
            .map(|v| v.bytes)
            .unwrap();
        // Overwrite bytes inside the fourth part's deflate data (as the web fixture does).
        let word = |b: &[u8], o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
        let mut at = 0;
        for _ in 0..3 {
            at += 24 + word(&bytes, at + 8) as usize + word(&bytes, at + 16) as usize;
        }
        for b in &mut bytes[at + 24 + 40..at + 24 + 80] {
            *b = 0xA5;
        }
        let (before, whole) = read_chunked(&bytes, bytes.len());
        let whole = whole.unwrap();
        assert_eq!(whole.kind, ErrorKind::BadDeflate);
        for chunk in [1usize, 2, 7, 100, 4096] {
            let (events, e) = read_chunked(&bytes, chunk);
            assert_eq!(e.as_ref(), Some(&whole), "chunk {chunk}");
            assert_eq!(events.len(), before.len(), "chunk {chunk}");
        }
    }

    #[test]
    fn protostream_is_decided_after_eight_bytes() {
        let v = crate::codec::writer::encode_recording(
            &crate::vectors::sample_session(3),
            crate::codec::WriterConfig::default(),
        )
        .unwrap();
        let mut r = RecordingReader::new();
        r.push(&v[..8]);
        assert_eq!(r.format(), Some(Format::ProtoV1));
    }
}
