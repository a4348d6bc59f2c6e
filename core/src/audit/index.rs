//! The sidecar index of a day file: one fixed-size entry per event line, in sort order.
//!
//! A search positions itself in a day file by binary search over these entries and reads only
//! the lines it returns, so that resuming a search costs O(page + log n) instead of a scan of
//! everything before the page. The index is a cache: it is checked before use (magic, sizes,
//! checksums of the header and of every entry read, a fingerprint of the log bytes it covers)
//! and rebuilt from the log whenever anything disagrees.
//!
//! Layout (little-endian):
//!
//! ```text
//! header, 64 bytes:
//!   0  [u8; 8]  magic "TLAUDIX1"
//!   8  u32      entry size (48)
//!  12  u32      0
//!  16  u64      covered: bytes of the log indexed (always just after a '\n')
//!  24  u64      entries
//!  32  u64      unparsable lines skipped in the covered bytes
//!  40  u32      crc32 of log[0 .. min(4096, covered)]
//!  44  u32      crc32 of log[covered - min(4096, covered) .. covered]
//!  48  [u8; 8]  0
//!  56  u32      crc32 of header bytes 0..56
//!  60  u32      0
//! entries, 48 bytes each, sorted by (time, sid hash, ei, offset):
//!   0  i64 seconds   8 u32 nanos   12 u32 type hash   16 u64 sid hash
//!  24  i64 ei       32 u64 offset  40 u32 line length (without '\n')   44 u32 crc32 of 0..44
//! ```

use std::cmp::Ordering;

use thiserror::Error;

use crate::EventFields;
use crate::proto::Timestamp;

/// The first bytes of an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"TLAUDIX1";
/// Size of the header.
pub const HEADER_SIZE: usize = 64;
/// Size of one entry.
pub const ENTRY_SIZE: usize = 48;
/// How many log bytes each of the two fingerprints covers.
pub const FINGERPRINT_SPAN: u64 = 4096;

/// An index that can't be used (it is rebuilt).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IndexError {
    /// Not an index of this version.
    #[error("not a tapelog index (bad magic or entry size)")]
    Format,
    /// The header's checksum does not match.
    #[error("index header checksum mismatch")]
    HeaderChecksum,
    /// An entry's checksum does not match.
    #[error("index entry {at} checksum mismatch")]
    EntryChecksum {
        /// The entry's position.
        at: u64,
    },
    /// The file is shorter or longer than its header says.
    #[error("index is {actual} bytes, its header says {expected}")]
    Length {
        /// Length from the header.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// Entries out of order.
    #[error("index entries {at} and {} are out of order", at + 1)]
    Unsorted {
        /// The first of the two.
        at: u64,
    },
    /// The log does not match the index (shorter, or other bytes).
    #[error("the log file no longer matches its index")]
    Stale,
}

/// 32-bit FNV-1a (event type hashes: a prefilter, always confirmed on the parsed line).
pub fn type_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// 64-bit FNV-1a of a session id: the second key of the sort order (events at the same time
/// of one session sort by `ei`; sessions at the same time in an arbitrary, fixed order).
pub fn sid_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// CRC-32 (IEEE) of `bytes`.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// One event line of a day file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    /// Event time, seconds since the Unix epoch.
    pub seconds: i64,
    /// Event time, nanoseconds within the second.
    pub nanos: u32,
    /// [`type_hash`] of the event type.
    pub type_hash: u32,
    /// [`sid_hash`] of the session id (of "" for events without one).
    pub sid_hash: u64,
    /// The event index (`ei`).
    pub index: i64,
    /// Byte offset of the line in the log.
    pub offset: u64,
    /// Line length without the `\n`.
    pub len: u32,
}

impl IndexEntry {
    /// The entry of a parsed line.
    pub fn from_fields(fields: &EventFields, offset: u64, len: u32) -> IndexEntry {
        let t = fields.get_timestamp();
        IndexEntry {
            seconds: t.seconds,
            nanos: t.nanos.clamp(0, 999_999_999) as u32,
            type_hash: type_hash(fields.get_type()),
            sid_hash: sid_hash(fields.get_session_id()),
            index: fields.get_index(),
            offset,
            len,
        }
    }

    /// Whether `fields` (the line read back at this entry's offset) is the event this entry
    /// describes: a cheap check that the index is not stale.
    pub fn describes(&self, fields: &EventFields, len: usize) -> bool {
        let other = IndexEntry::from_fields(fields, self.offset, self.len);
        other == *self && len == self.len as usize
    }

    /// The event time.
    pub fn time(&self) -> Timestamp {
        Timestamp {
            seconds: self.seconds,
            nanos: self.nanos as i32,
        }
    }

    /// The order of entries within one file: time, session hash, `ei`, offset.
    pub fn cmp_in_file(&self, other: &IndexEntry) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }

    /// `(seconds, nanos, sid hash, ei, offset)`.
    pub fn sort_key(&self) -> (i64, u32, u64, i64, u64) {
        (
            self.seconds,
            self.nanos,
            self.sid_hash,
            self.index,
            self.offset,
        )
    }

    /// The entry's 48 bytes.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.seconds.to_le_bytes());
        b[8..12].copy_from_slice(&self.nanos.to_le_bytes());
        b[12..16].copy_from_slice(&self.type_hash.to_le_bytes());
        b[16..24].copy_from_slice(&self.sid_hash.to_le_bytes());
        b[24..32].copy_from_slice(&self.index.to_le_bytes());
        b[32..40].copy_from_slice(&self.offset.to_le_bytes());
        b[40..44].copy_from_slice(&self.len.to_le_bytes());
        let c = crc(&b[..44]);
        b[44..48].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Reads entry number `at` from its 48 bytes, checking its checksum.
    pub fn decode(b: &[u8; ENTRY_SIZE], at: u64) -> Result<IndexEntry, IndexError> {
        if crc(&b[..44]) != le_u32(b, 44) {
            return Err(IndexError::EntryChecksum { at });
        }
        Ok(IndexEntry {
            seconds: le_u64(b, 0) as i64,
            nanos: le_u32(b, 8),
            type_hash: le_u32(b, 12),
            sid_hash: le_u64(b, 16),
            index: le_u64(b, 24) as i64,
            offset: le_u64(b, 32),
            len: le_u32(b, 40),
        })
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The header of an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexHeader {
    /// Bytes of the log indexed (just after a `\n`, or 0).
    pub covered: u64,
    /// Number of entries.
    pub entries: u64,
    /// Unparsable lines skipped in the covered bytes.
    pub unparsable: u64,
    /// crc32 of the first [`FINGERPRINT_SPAN`] covered bytes.
    pub head_crc: u32,
    /// crc32 of the last [`FINGERPRINT_SPAN`] covered bytes.
    pub tail_crc: u32,
}

/// The two log byte ranges whose checksums an index of `covered` bytes records:
/// `(head, tail)` as `(start, end)` offsets.
pub fn fingerprint_ranges(covered: u64) -> ((u64, u64), (u64, u64)) {
    let span = covered.min(FINGERPRINT_SPAN);
    ((0, span), (covered - span, covered))
}

impl IndexHeader {
    /// The header's 64 bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&INDEX_MAGIC);
        b[8..12].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.covered.to_le_bytes());
        b[24..32].copy_from_slice(&self.entries.to_le_bytes());
        b[32..40].copy_from_slice(&self.unparsable.to_le_bytes());
        b[40..44].copy_from_slice(&self.head_crc.to_le_bytes());
        b[44..48].copy_from_slice(&self.tail_crc.to_le_bytes());
        let c = crc(&b[..56]);
        b[56..60].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Reads a header, checking its magic, entry size and checksum, and that an index file
    /// of `file_len` bytes holds exactly its entries.
    pub fn decode(b: &[u8], file_len: u64) -> Result<IndexHeader, IndexError> {
        if b.len() < HEADER_SIZE || b[0..8] != INDEX_MAGIC || le_u32(b, 8) != ENTRY_SIZE as u32 {
            return Err(IndexError::Format);
        }
        if crc(&b[..56]) != le_u32(b, 56) {
            return Err(IndexError::HeaderChecksum);
        }
        let h = IndexHeader {
            covered: le_u64(b, 16),
            entries: le_u64(b, 24),
            unparsable: le_u64(b, 32),
            head_crc: le_u32(b, 40),
            tail_crc: le_u32(b, 44),
        };
        let expected = h
            .entries
            .checked_mul(ENTRY_SIZE as u64)
            .and_then(|n| n.checked_add(HEADER_SIZE as u64))
            .unwrap_or(u64::MAX);
        if expected != file_len {
            return Err(IndexError::Length {
                expected,
                actual: file_len,
            });
        }
        Ok(h)
    }

    /// Byte offset of entry `i` in the index file.
    pub fn entry_offset(i: u64) -> u64 {
        HEADER_SIZE as u64 + i * ENTRY_SIZE as u64
    }
}

/// A whole index in memory: the header fields and the sorted entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Bytes of the log covered.
    pub covered: u64,
    /// Unparsable lines skipped.
    pub unparsable: u64,
    /// The entries, sorted by [`IndexEntry::cmp_in_file`].
    pub entries: Vec<IndexEntry>,
}

impl Index {
    /// Adds entries of lines after `covered` (in any order) and moves `covered` to
    /// `new_covered`. Runs in O(n + k log k).
    pub fn extend(&mut self, mut new: Vec<IndexEntry>, new_covered: u64, unparsable: u64) {
        new.sort_unstable_by(IndexEntry::cmp_in_file);
        self.entries = merge_sorted(std::mem::take(&mut self.entries), new);
        self.covered = new_covered;
        self.unparsable += unparsable;
    }

    /// The index file's bytes; the fingerprints are the checksums of the log's head and tail
    /// ranges ([`fingerprint_ranges`]).
    pub fn encode(&self, head_crc: u32, tail_crc: u32) -> Vec<u8> {
        let header = IndexHeader {
            covered: self.covered,
            entries: self.entries.len() as u64,
            unparsable: self.unparsable,
            head_crc,
            tail_crc,
        };
        let mut out = Vec::with_capacity(HEADER_SIZE + self.entries.len() * ENTRY_SIZE);
        out.extend_from_slice(&header.encode());
        for e in &self.entries {
            out.extend_from_slice(&e.encode());
        }
        out
    }

    /// Reads a whole index file (header checked against `bytes.len()`, every entry's checksum
    /// and the order checked).
    pub fn decode(bytes: &[u8]) -> Result<(IndexHeader, Index), IndexError> {
        let header = IndexHeader::decode(bytes, bytes.len() as u64)?;
        let mut entries = Vec::with_capacity((bytes.len() - HEADER_SIZE) / ENTRY_SIZE);
        for (i, chunk) in bytes[HEADER_SIZE..].chunks_exact(ENTRY_SIZE).enumerate() {
            let mut a = [0u8; ENTRY_SIZE];
            a.copy_from_slice(chunk);
            let e = IndexEntry::decode(&a, i as u64)?;
            if let Some(prev) = entries.last()
                && IndexEntry::cmp_in_file(prev, &e) != Ordering::Less
            {
                return Err(IndexError::Unsorted { at: i as u64 - 1 });
            }
            entries.push(e);
        }
        Ok((
            header,
            Index {
                covered: header.covered,
                unparsable: header.unparsable,
                entries,
            },
        ))
    }
}

/// What one complete line of a day file (without its `\n`) gives the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexedLine {
    /// An empty line: skipped, not counted.
    Blank,
    /// An event line and its entry.
    Entry(IndexEntry),
    /// A line that is not an event (not UTF-8, not a JSON object, or over 4 GiB): skipped
    /// and counted as unparsable.
    Unparsable,
}

/// The index's view of the line at `offset` (the rule of index building: the line is parsed
/// as [`EventFields`], and its entry is what a search checks the line read back against).
pub fn index_line(offset: u64, line: &[u8]) -> IndexedLine {
    if line.is_empty() {
        return IndexedLine::Blank;
    }
    let Ok(len) = u32::try_from(line.len()) else {
        return IndexedLine::Unparsable;
    };
    match std::str::from_utf8(line)
        .ok()
        .and_then(|s| EventFields::parse(s).ok())
    {
        Some(f) => IndexedLine::Entry(IndexEntry::from_fields(&f, offset, len)),
        None => IndexedLine::Unparsable,
    }
}

/// Merges two sorted lists of entries into one.
pub fn merge_sorted(a: Vec<IndexEntry>, b: Vec<IndexEntry>) -> Vec<IndexEntry> {
    if b.is_empty() {
        return a;
    }
    if a.last()
        .is_none_or(|l| l.cmp_in_file(&b[0]) == Ordering::Less)
    {
        let mut a = a;
        a.extend(b);
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (i.peek(), j.peek()) {
            (Some(x), Some(y)) => x.cmp_in_file(y) != Ordering::Greater,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { i.next() } else { j.next() };
        out.extend(next);
    }
    out
}

/// The first position in `0..n` for which `is_before` is false, given that it is true for a
/// prefix and false after (binary search over entries that are read on demand).
pub fn partition_point<E>(
    n: u64,
    mut is_before: impl FnMut(u64) -> Result<bool, E>,
) -> Result<u64, E> {
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if is_before(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seconds: i64, sid: &str, index: i64, offset: u64) -> IndexEntry {
        IndexEntry {
            seconds,
            nanos: 5,
            type_hash: type_hash("session.start"),
            sid_hash: sid_hash(sid),
            index,
            offset,
            len: 10,
        }
    }

    #[test]
    fn lines_become_entries_or_are_counted() {
        let line =
            br#"{"event":"session.start","time":"2024-01-15T10:00:00.5Z","sid":"s1","ei":3}"#;
        let IndexedLine::Entry(e) = index_line(77, line) else {
            panic!("an event line gives an entry");
        };
        assert_eq!(e.offset, 77);
        assert_eq!(e.len as usize, line.len());
        assert_eq!((e.seconds, e.nanos), (1_705_312_800, 500_000_000));
        assert_eq!(e.sid_hash, sid_hash("s1"));
        assert_eq!(e.type_hash, type_hash("session.start"));
        assert_eq!(e.index, 3);
        let fields = EventFields::parse(std::str::from_utf8(line).unwrap()).unwrap();
        assert!(e.describes(&fields, line.len()));
        assert_eq!(index_line(0, b""), IndexedLine::Blank);
        assert_eq!(index_line(0, b"[1]"), IndexedLine::Unparsable);
        assert_eq!(index_line(0, b"{\"a\":\xff}"), IndexedLine::Unparsable);
    }

    #[test]
    fn hashes_are_fnv1a() {
        assert_eq!(type_hash(""), 0x811c_9dc5);
        assert_eq!(type_hash("a"), 0xe40c_292c);
        assert_eq!(sid_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(sid_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn entry_round_trip_and_checksum() {
        let e = entry(1_700_000_000, "s", 7, 1234);
        let mut b = e.encode();
        assert_eq!(IndexEntry::decode(&b, 0), Ok(e));
        b[30] ^= 1;
        assert_eq!(
            IndexEntry::decode(&b, 3),
            Err(IndexError::EntryChecksum { at: 3 })
        );
    }

    #[test]
    fn from_fields_and_describes() {
        let f = EventFields::parse(
            r#"{"event":"print","time":"2024-01-15T10:00:00.5Z","sid":"abc","ei":3}"#,
        )
        .unwrap();
        let e = IndexEntry::from_fields(&f, 100, 70);
        assert_eq!(e.time().to_rfc3339(), "2024-01-15T10:00:00.5Z");
        assert_eq!(e.index, 3);
        assert_eq!(e.sid_hash, sid_hash("abc"));
        assert_eq!(e.type_hash, type_hash("print"));
        assert!(e.describes(&f, 70));
        assert!(!e.describes(&f, 71));
        let other = EventFields::parse(
            r#"{"event":"print","time":"2024-01-15T10:00:00.5Z","sid":"abc","ei":4}"#,
        )
        .unwrap();
        assert!(!e.describes(&other, 70));
    }

    #[test]
    fn index_round_trip_and_damage() {
        let mut idx = Index::default();
        idx.extend(
            vec![
                entry(3, "a", 0, 40),
                entry(1, "a", 0, 0),
                entry(2, "b", 0, 20),
            ],
            60,
            1,
        );
        assert_eq!(
            idx.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
            [0, 20, 40]
        );
        let bytes = idx.encode(11, 22);
        assert_eq!(bytes.len(), HEADER_SIZE + 3 * ENTRY_SIZE);
        let (h, back) = Index::decode(&bytes).unwrap();
        assert_eq!(back, idx);
        assert_eq!((h.covered, h.entries, h.unparsable), (60, 3, 1));
        assert_eq!((h.head_crc, h.tail_crc), (11, 22));

        let mut bad = bytes.clone();
        bad[17] ^= 1;
        assert_eq!(Index::decode(&bad), Err(IndexError::HeaderChecksum));
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(Index::decode(&bad), Err(IndexError::Format));
        let bad = &bytes[..bytes.len() - 1];
        assert!(matches!(Index::decode(bad), Err(IndexError::Length { .. })));
        let mut bad = bytes.clone();
        bad[HEADER_SIZE + ENTRY_SIZE + 3] ^= 0x40;
        assert_eq!(
            Index::decode(&bad),
            Err(IndexError::EntryChecksum { at: 1 })
        );
        // Two entries swapped (each with a valid checksum) are caught by the order check.
        let mut bad = bytes.clone();
        let (a, b) = (HEADER_SIZE, HEADER_SIZE + ENTRY_SIZE);
        let first: Vec<u8> = bad[a..b].to_vec();
        bad.copy_within(b..b + ENTRY_SIZE, a);
        bad[b..b + ENTRY_SIZE].copy_from_slice(&first);
        assert_eq!(Index::decode(&bad), Err(IndexError::Unsorted { at: 0 }));
    }

    #[test]
    fn merge_keeps_order() {
        let a = vec![entry(1, "a", 0, 0), entry(5, "a", 1, 10)];
        let b = vec![entry(3, "a", 0, 20), entry(7, "a", 0, 30)];
        let m = merge_sorted(a.clone(), b.clone());
        assert_eq!(
            m.iter().map(|e| e.seconds).collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        // The common case: new lines are all later; appended as they are.
        let c = vec![entry(9, "a", 0, 40)];
        assert_eq!(merge_sorted(m.clone(), c.clone()).len(), 5);
        assert_eq!(merge_sorted(Vec::new(), c.clone()), c);
        assert_eq!(merge_sorted(c.clone(), Vec::new()), c);
    }

    #[test]
    fn partition_point_finds_the_boundary() {
        let v = [1, 3, 3, 5, 8];
        for x in 0..10 {
            let p = partition_point::<()>(v.len() as u64, |i| Ok(v[i as usize] < x)).unwrap();
            assert_eq!(p as usize, v.partition_point(|&y| y < x), "{x}");
        }
        assert_eq!(partition_point::<()>(0, |_| Ok(true)), Ok(0));
        assert_eq!(partition_point(5, |_| Err("io")), Err("io"));
    }

    #[test]
    fn fingerprints() {
        assert_eq!(fingerprint_ranges(0), ((0, 0), (0, 0)));
        assert_eq!(fingerprint_ranges(100), ((0, 100), (0, 100)));
        assert_eq!(fingerprint_ranges(10_000), ((0, 4096), (5904, 10_000)));
    }
}
