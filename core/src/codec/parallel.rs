//! Decoding a ProtoStream recording part by part, on as many threads as the caller likes.
//!
//! Every part is a header and its own gzip member(s), so parts can be inflated and decoded
//! independently. The work is cut in three steps, all without I/O:
//!
//! 1. [`part_extent`]: the length of the part that starts with the given header bytes, read
//!    from the header alone (no inflate). A header that cannot be read ends the splitting:
//!    the rest of the input is one last piece, whose decode reports the error.
//! 2. [`decode_part`]: one piece through [`ProtoReader::for_part`] (the reader itself, with
//!    every event kept), with the absolute offset and number of the part, so that its errors
//!    name the same bytes as a reader of the whole recording.
//! 3. [`PartMerger`]: the pieces' results in part order, with the reader's cross-part rules
//!    (upstream's duplicate and out-of-order rules, the counters) applied; it stops at the
//!    first error, after the events before it.
//!
//! Reading the same recording with [`ProtoReader`] from the start gives the same events, the
//! same counters and the same error.
//!
//! Each thread that decodes a piece keeps its reader for the next one (a thread-local spare:
//! under 1 MiB of buffers and the inflater, freed when the thread ends), so a worker does
//! not allocate and fault in fresh buffers for every part.

use super::deflate::Backend;
use super::error::CodecError;
use super::header::{PROTO_STREAM_V2, PartHeader, V1_HEADER_SIZE, V2_HEADER_SIZE};
use super::reader::{Polled, PolledPrint, PolledRecord, ProtoReader, ReaderStats, dedup_rule};
use crate::event::AuditEvent;

/// Header bytes [`part_extent`] wants (fewer only at the end of the input).
pub const HEADER_PEEK: usize = V2_HEADER_SIZE;

/// What the splitter makes of the bytes at a part boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// A part of this many bytes (header, payload and padding) starts here. The input may
    /// still end before it does: the piece is then the rest, and its decode says so.
    Part(u64),
    /// No readable header here (truncated, another version, encrypted): decode everything
    /// from here to the end as one piece, which reports the error.
    Rest,
}

/// The extent of the part whose header starts `head` (give [`HEADER_PEEK`] bytes, or all that
/// is left of the input when less).
pub fn part_extent(head: &[u8]) -> Extent {
    match readable_header(head) {
        // Both sizes are at most 5 GiB (checked by the parse): no overflow.
        Some(h) => Extent::Part(h.len() as u64 + h.part_size + h.padding_size),
        None => Extent::Rest,
    }
}

/// The header at the start of `head`, when it can be read and its part decoded (not
/// encrypted).
fn readable_header(head: &[u8]) -> Option<PartHeader> {
    let first = head.get(..V1_HEADER_SIZE)?;
    let mut b = [0u8; V1_HEADER_SIZE];
    b.copy_from_slice(first);
    let mut h = PartHeader::parse_v1_prefix(&b).ok()?;
    if h.version == PROTO_STREAM_V2 {
        let flags = head.get(V1_HEADER_SIZE..V2_HEADER_SIZE)?;
        let mut f = [0u8; 8];
        f.copy_from_slice(flags);
        h.parse_flags(&f);
        if h.encrypted() {
            return None;
        }
    }
    Some(h)
}

/// The decode of one piece: every event, duplicates included, with its index.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedPart<T> {
    /// `(index, what the caller made of the event)`, in the part's order.
    pub items: Vec<(i64, T)>,
    /// The piece's counters (`total`: every event decoded; `skipped` and `out_of_order` are
    /// the merger's to count).
    pub stats: ReaderStats,
    /// The error that ended the piece; `items` holds everything before it.
    pub error: Option<CodecError>,
}

/// Decodes one piece: `bytes` are the recording's from `offset` on, starting with the header
/// of the zero-based `part`-th part. `map` turns each event into what the caller keeps (the
/// event itself, or its rendered output: work done on this thread).
pub fn decode_part<T>(
    bytes: &[u8],
    offset: u64,
    part: u64,
    backend: Backend,
    mut map: impl FnMut(AuditEvent) -> T,
) -> DecodedPart<T> {
    let mut r = part_reader(backend, offset, part);
    let mut feed = Feed::new(bytes, true);
    let mut items = Vec::new();
    let error = loop {
        match r.poll() {
            Ok(Polled::Event(e)) => {
                let index = r.polled_index();
                items.push((index, map(e)));
            }
            Ok(Polled::NeedInput) if feed.more(&mut r) => {}
            Ok(Polled::End | Polled::NeedInput) => break None,
            Err(e) => break Some(e),
        }
    };
    done_with(r, backend, items, error)
}

/// The end of a piece's decode: its result, and the reader kept for this thread's next piece.
fn done_with<T>(
    r: ProtoReader,
    backend: Backend,
    items: Vec<(i64, T)>,
    error: Option<CodecError>,
) -> DecodedPart<T> {
    let d = DecodedPart {
        items,
        stats: r.stats(),
        error,
    };
    SPARE.set(Some((backend, r)));
    d
}

thread_local! {
    /// The last piece's reader on this thread: its buffers (a part's input slice, the
    /// inflate buffer) and inflater serve the next piece, which saves their allocation and
    /// first-touch page faults on every part.
    static SPARE: std::cell::Cell<Option<(Backend, ProtoReader)>> =
        const { std::cell::Cell::new(None) };
}

/// A reader for one piece ([`ProtoReader::for_part`]), from this thread's spare when there
/// is one.
fn part_reader(backend: Backend, offset: u64, part: u64) -> ProtoReader {
    match SPARE.take() {
        Some((b, r)) if b == backend => r.into_part(offset, part),
        _ => ProtoReader::for_part(backend, offset, part),
    }
}

/// A piece given to its reader [`FEED`] bytes at a time: the reader copies what it is given,
/// and a whole part would be held twice.
struct Feed<'a> {
    bytes: &'a [u8],
    fed: usize,
    /// The piece is the end of the input: once every slice is in, the reader is told so.
    finished: bool,
}

impl<'a> Feed<'a> {
    fn new(bytes: &'a [u8], finished: bool) -> Feed<'a> {
        Feed {
            bytes,
            fed: 0,
            finished,
        }
    }

    /// Gives the reader the next slice, or, once all are in, the end of a finished piece;
    /// false when there is nothing more to give.
    fn more(&mut self, r: &mut ProtoReader) -> bool {
        if self.fed < self.bytes.len() {
            let n = FEED.min(self.bytes.len() - self.fed);
            r.push(&self.bytes[self.fed..self.fed + n]);
            self.fed += n;
            return true;
        }
        if std::mem::take(&mut self.finished) {
            r.finish();
            return true;
        }
        false
    }
}

/// [`decode_part`] for the terminal output alone (`export --format text`): each print's data
/// is appended to `out` and the item is its place there (an empty range for other events),
/// through [`ProtoReader::poll_print`], which skips the typed decode of plain prints.
pub fn decode_part_text(
    bytes: &[u8],
    offset: u64,
    part: u64,
    backend: Backend,
    out: &mut Vec<u8>,
) -> DecodedPart<std::ops::Range<usize>> {
    let mut r = part_reader(backend, offset, part);
    let mut feed = Feed::new(bytes, true);
    out.reserve(inflated_hint(bytes));
    let mut items = Vec::new();
    let error = loop {
        let need = match r.poll_print() {
            Ok(PolledPrint::Print { index, data }) => {
                let start = out.len();
                out.extend_from_slice(data);
                items.push((index, start..out.len()));
                false
            }
            Ok(PolledPrint::Other { index }) => {
                items.push((index, out.len()..out.len()));
                false
            }
            Ok(PolledPrint::NeedInput) => true,
            Ok(PolledPrint::End) => break None,
            Err(e) => break Some(e),
        };
        if need && !feed.more(&mut r) {
            break None;
        }
    };
    done_with(r, backend, items, error)
}

/// [`decode_part`] keeping each event as its record: the `OneOf` bytes are appended to `out`
/// and the item is their place there. The events are decoded on this thread all the same
/// ([`ProtoReader::poll_checked`]), so items, counters and error are those of `decode_part`,
/// and [`Records`] gives the events back. `finished`: the piece is the end of the input (a
/// part cut short is an error); otherwise the piece stops at its last complete record, with
/// no error for the rest (the input failed there, and the caller reports that).
pub fn decode_part_records(
    bytes: &[u8],
    offset: u64,
    part: u64,
    backend: Backend,
    finished: bool,
    out: &mut Vec<u8>,
) -> DecodedPart<std::ops::Range<usize>> {
    let mut r = part_reader(backend, offset, part);
    let mut feed = Feed::new(bytes, finished);
    out.reserve(inflated_hint(bytes));
    let mut items = Vec::new();
    let error = loop {
        let need = match r.poll_checked() {
            Ok(PolledRecord::Record { index, oneof }) => {
                let start = out.len();
                out.extend_from_slice(oneof);
                items.push((index, start..out.len()));
                false
            }
            Ok(PolledRecord::NeedInput) => true,
            Ok(PolledRecord::End) => break None,
            Err(e) => break Some(e),
        };
        if need && !feed.more(&mut r) {
            break None;
        }
    };
    done_with(r, backend, items, error)
}

/// Bytes given to a part's reader at a time (see [`Feed`]).
const FEED: usize = 256 * 1024;

/// Most bytes [`inflated_hint`] will ask to reserve.
const MAX_HINT: usize = 64 * 1024 * 1024;

/// The size a piece inflates to, as its last gzip member's trailer says (`ISIZE`, the
/// member's size modulo 2^32; a part is usually one member), for reserving the output once
/// instead of growing it: at most 64 MiB and at most 1032 times the compressed bytes
/// (deflate's largest ratio), since it comes from the input. 0 when there is no trailer to
/// read (a header that does not parse, a cut piece).
fn inflated_hint(piece: &[u8]) -> usize {
    let Some(h) = readable_header(&piece[..piece.len().min(HEADER_PEEK)]) else {
        return 0;
    };
    let Ok(end) = usize::try_from(h.len() as u64 + h.part_size) else {
        return 0;
    };
    let Some(trailer) = end.checked_sub(4).and_then(|at| piece.get(at..end)) else {
        return 0;
    };
    let isize = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    isize.min(MAX_HINT).min(piece.len().saturating_mul(1032))
}

/// A merged part's kept events held as records (from [`decode_part_records`]): the events,
/// decoded one at a time as they are taken, so that a part costs its records' bytes and not
/// its typed events.
#[derive(Debug, Default)]
pub struct Records {
    bytes: Vec<u8>,
    places: std::vec::IntoIter<std::ops::Range<usize>>,
}

impl Records {
    /// The kept items of a merged part and the buffer they point into.
    pub fn new(places: Vec<std::ops::Range<usize>>, bytes: Vec<u8>) -> Records {
        Records {
            bytes,
            places: places.into_iter(),
        }
    }

    /// Events not yet taken.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Whether every event was taken.
    pub fn is_empty(&self) -> bool {
        self.places.len() == 0
    }

    /// The buffer, for the next part's records, once every event was taken.
    pub fn into_buffer(self) -> Vec<u8> {
        let mut b = self.bytes;
        b.clear();
        b
    }
}

impl Iterator for Records {
    /// An event, or why its record did not decode a second time (it did on the worker, from
    /// the same bytes: not expected).
    type Item = Result<AuditEvent, crate::EventError>;

    fn next(&mut self) -> Option<Self::Item> {
        let place = self.places.next()?;
        // Places come from `decode_part_records` on this buffer; one outside it (a caller's
        // mistake) reads as an empty record, an error.
        Some(AuditEvent::decode_oneof(
            self.bytes.get(place).unwrap_or_default(),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.places.size_hint()
    }
}

/// Applies the reader's cross-part rules to decoded pieces given in part order.
#[derive(Debug, Clone, Copy)]
pub struct PartMerger {
    last_index: i64,
    stats: ReaderStats,
    failed: bool,
}

impl Default for PartMerger {
    fn default() -> Self {
        PartMerger::new()
    }
}

impl PartMerger {
    /// A merger before the first part.
    pub fn new() -> PartMerger {
        PartMerger {
            last_index: -1,
            stats: ReaderStats::default(),
            failed: false,
        }
    }

    /// The next piece: the items kept (replays dropped), and the error that ends the
    /// recording, if the piece has one. After an error, further pieces give nothing.
    pub fn merge<T>(&mut self, part: DecodedPart<T>) -> (Vec<T>, Option<CodecError>) {
        if self.failed {
            return (Vec::new(), None);
        }
        let mut kept = Vec::with_capacity(part.items.len());
        for (index, item) in part.items {
            if dedup_rule(&mut self.stats, &mut self.last_index, index) {
                kept.push(item);
            }
        }
        self.stats.parts += part.stats.parts;
        self.stats.dangling_bytes += part.stats.dangling_bytes;
        if part.error.is_some() {
            self.failed = true;
        }
        (kept, part.error)
    }

    /// Counters of the pieces merged so far (those of a sequential read of the same bytes).
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }
}

/// Cuts a recording held in memory into pieces: `(offset, part number, bytes)`.
pub fn split(bytes: &[u8]) -> Vec<(u64, u64, &[u8])> {
    let mut pieces = Vec::new();
    let mut at = 0usize;
    let mut part = 0u64;
    while at < bytes.len() {
        let head = &bytes[at..bytes.len().min(at + HEADER_PEEK)];
        let end = match part_extent(head) {
            Extent::Part(len) => usize::try_from(len)
                .ok()
                .and_then(|l| at.checked_add(l))
                .map_or(bytes.len(), |e| e.min(bytes.len())),
            Extent::Rest => bytes.len(),
        };
        pieces.push((at as u64, part, &bytes[at..end]));
        at = end;
        part += 1;
    }
    pieces
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::read_all;
    use crate::vectors;

    /// Sequential read and split + per-part decode + merge agree on every vector.
    #[test]
    fn merge_equals_sequential_read_on_every_vector() {
        let mut proto = 0;
        for v in vectors::all() {
            if !matches!(
                crate::codec::detect_format(&v.bytes),
                crate::codec::Format::ProtoV1 | crate::codec::Format::ProtoV2
            ) {
                continue;
            }
            proto += 1;
            let want = read_all(&v.bytes);
            let mut m = PartMerger::new();
            let mut events = Vec::new();
            let mut error = None;
            for (offset, part, piece) in split(&v.bytes) {
                let d = decode_part(piece, offset, part, Backend::default(), |e| e);
                let (kept, err) = m.merge(d);
                events.extend(kept);
                if err.is_some() {
                    error = err;
                    break;
                }
            }
            assert_eq!(events, want.events, "{}: events", v.name);
            assert_eq!(error, want.error, "{}: error", v.name);
            assert_eq!(m.stats(), want.stats, "{}: stats", v.name);
            // Held as records, decoded when taken: the same.
            let mut m = PartMerger::new();
            let mut events = Vec::new();
            let mut error = None;
            for (offset, part, piece) in split(&v.bytes) {
                let mut out = Vec::new();
                let d =
                    decode_part_records(piece, offset, part, Backend::default(), true, &mut out);
                let (kept, err) = m.merge(d);
                events.extend(Records::new(kept, out).map(Result::unwrap));
                if err.is_some() {
                    error = err;
                    break;
                }
            }
            assert_eq!(events, want.events, "{}: records", v.name);
            assert_eq!(error, want.error, "{}: records' error", v.name);
            assert_eq!(m.stats(), want.stats, "{}: records' stats", v.name);
        }
        assert!(proto > 5, "only {proto} ProtoStream vectors");
    }

    /// The text path (print scan) gives the bytes of the typed path, the same counters and
    /// the same error, on every vector, and on each cut in pieces and merged.
    #[test]
    fn text_path_equals_typed_export_on_every_vector() {
        use crate::export::{TextFormat, export_event};
        for v in vectors::all() {
            if !matches!(
                crate::codec::detect_format(&v.bytes),
                crate::codec::Format::ProtoV1 | crate::codec::Format::ProtoV2
            ) {
                continue;
            }
            let want = read_all(&v.bytes);
            let mut want_text = Vec::new();
            for e in &want.events {
                export_event(TextFormat::Terminal, e, &mut want_text);
            }
            // Sequential, through poll_print.
            let mut r = ProtoReader::new(Backend::default());
            r.push(&v.bytes);
            r.finish();
            let mut text = Vec::new();
            let error = loop {
                match r.poll_print() {
                    Ok(PolledPrint::Print { data, .. }) => text.extend_from_slice(data),
                    Ok(PolledPrint::Other { .. }) => {}
                    Ok(_) => break None,
                    Err(e) => break Some(e),
                }
            };
            assert_eq!(text, want_text, "{}: text", v.name);
            assert_eq!(error, want.error, "{}: error", v.name);
            assert_eq!(r.stats(), want.stats, "{}: stats", v.name);
            // In pieces.
            let mut m = PartMerger::new();
            let mut text = Vec::new();
            let mut error = None;
            for (offset, part, piece) in split(&v.bytes) {
                let mut out = Vec::new();
                let d = decode_part_text(piece, offset, part, Backend::default(), &mut out);
                let (kept, err) = m.merge(d);
                for range in kept {
                    text.extend_from_slice(&out[range]);
                }
                if err.is_some() {
                    error = err;
                    break;
                }
            }
            assert_eq!(text, want_text, "{}: text in pieces", v.name);
            assert_eq!(error, want.error, "{}: error in pieces", v.name);
            assert_eq!(m.stats(), want.stats, "{}: stats in pieces", v.name);
        }
    }

    /// Where a piece ends: an empty or cut piece that is the end of the input reports what a
    /// reader given the same bytes reports; one that is not reports no error and keeps the
    /// records before the cut.
    #[test]
    fn a_piece_ends_as_its_input_does() {
        let events = crate::sample::sample_session(300);
        let bytes =
            crate::codec::encode_recording(&events, crate::codec::WriterConfig::default()).unwrap();
        let (offset, part, first) = split(&bytes)[0];
        let whole = |piece: &[u8]| {
            let mut r = ProtoReader::for_part(Backend::default(), offset, part);
            r.push(piece);
            r.finish();
            let mut n = 0;
            let error = loop {
                match r.poll_checked() {
                    Ok(PolledRecord::Record { .. }) => n += 1,
                    Ok(_) => break None,
                    Err(e) => break Some(e),
                }
            };
            (n, error)
        };
        for piece in [&first[..0], &first[..first.len() / 2], first] {
            let mut out = Vec::new();
            let d = decode_part_records(piece, offset, part, Backend::default(), true, &mut out);
            assert_eq!(
                (d.items.len(), d.error),
                whole(piece),
                "{} bytes",
                piece.len()
            );
            let d = decode_part_records(piece, offset, part, Backend::default(), false, &mut out);
            assert_eq!(d.error, None, "{} bytes, not finished", piece.len());
            assert_eq!(
                d.items.len(),
                whole(piece).0,
                "{} bytes, not finished",
                piece.len()
            );
        }
        assert!(
            whole(&first[..first.len() / 2]).1.is_some(),
            "a cut part is an error"
        );
        assert!(whole(&first[..0]).1.is_none() && whole(first).1.is_none());
    }

    /// The reserve hint is the part's inflated size, and a forged trailer cannot make it
    /// large: at most 1032 times the piece and 64 MiB.
    #[test]
    fn inflated_hint_reads_the_trailer_within_bounds() {
        let events = crate::sample::sample_session(3000);
        let config = crate::codec::WriterConfig {
            min_upload_bytes: 8 * 1024,
            ..crate::codec::WriterConfig::default()
        };
        let bytes = crate::codec::encode_recording(&events, config).unwrap();
        let pieces = split(&bytes);
        assert!(pieces.len() > 2);
        for (offset, part, piece) in &pieces {
            let mut out = Vec::new();
            let d = decode_part_records(piece, *offset, *part, Backend::default(), true, &mut out);
            assert!(d.error.is_none());
            let hint = inflated_hint(piece);
            // The records are the inflated bytes less their 4-byte length prefixes.
            assert_eq!(hint, out.len() + 4 * d.items.len(), "part {part}");
        }
        let (_, _, first) = pieces[0];
        let mut forged = first.to_vec();
        let h = readable_header(first).unwrap();
        let end = h.len() + h.part_size as usize;
        forged[end - 4..end].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(inflated_hint(&forged), MAX_HINT.min(forged.len() * 1032));
        assert_eq!(inflated_hint(&forged[..10]), 0);
    }

    #[test]
    fn extent_reads_sizes_and_refuses_bad_headers() {
        let h = PartHeader::v1(100, 28).to_bytes();
        assert_eq!(part_extent(&h), Extent::Part(24 + 100 + 28));
        assert_eq!(part_extent(&h[..23]), Extent::Rest);
        let mut bad = h.clone();
        bad[7] = 9;
        assert_eq!(part_extent(&bad), Extent::Rest);
        let v2 = PartHeader {
            version: 2,
            part_size: 10,
            padding_size: 0,
            flags: 0,
        };
        assert_eq!(part_extent(&v2.to_bytes()), Extent::Part(42));
        assert_eq!(part_extent(&v2.to_bytes()[..30]), Extent::Rest);
        let enc = PartHeader { flags: 1, ..v2 };
        assert_eq!(part_extent(&enc.to_bytes()), Extent::Rest);
    }
}
