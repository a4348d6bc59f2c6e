//! The terminal output of a record without its typed decode.
//!
//! Exporting a recording as text keeps only the `Data` of its `SessionPrint` events, which are
//! nearly all of its records. Building each one as an [`AuditEvent`](crate::AuditEvent) (its
//! metadata strings and a copy of its data) costs more than inflating it; [`scan_print`] reads
//! the record in place instead and finds the data's bytes.
//!
//! It answers only for records in the plain shape writers produce: a `OneOf` whose last
//! member is field 7 (`SessionPrint`) holding each of its known fields at most once, in field
//! order, with their declared wire types, a `Metadata` in the same shape and a valid `Time`. Anything
//! else (a repeated field, an unknown one, a timestamp Go refuses, a truncated varint) gives
//! `None`, and the caller takes the typed decode, which is the reference: whenever this scan
//! answers, the typed decode gives the same print (or, for [`Scanned::Other`], a non-print
//! event). The property tests below hold the two to that.

use std::ops::Range;

use super::reader::{key_at, skip_at, varint_at};
use crate::proto::Timestamp;

/// The `OneOf` member number of `events.SessionPrint`.
const PRINT_MEMBER: u64 = 7;

/// What [`scan_print`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// A print event: its `Metadata.Index` and where its `Data` is in the record.
    Print {
        /// The event index.
        index: i64,
        /// The data's bytes within the record.
        data: Range<usize>,
    },
    /// The record's member is not a print (its index is read separately).
    Other,
}

/// What a player needs of a plain print record, read in place by [`scan_print_fields`]:
/// equal to the typed event's fields whenever the scan answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintFields {
    /// `Metadata.Index`.
    pub index: i64,
    /// `Metadata.Time` (a time Go accepts).
    pub time: Timestamp,
    /// `DelayMilliseconds`.
    pub delay_ms: i64,
    /// `Data` within the record.
    pub data: Range<usize>,
    /// `Metadata.Type` within the record (valid UTF-8).
    pub event_type: Range<usize>,
    /// `Metadata.ClusterName` within the record (valid UTF-8).
    pub cluster: Range<usize>,
}

/// A plain print record's fields, borrowed from the record: what the typed print's
/// accessors give (`index()`, `time()`, `event_type()`, `cluster_name()`, the delay, the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrintView<'a> {
    /// `Metadata.Index`.
    pub index: i64,
    /// `Metadata.Time`.
    pub time: Timestamp,
    /// `DelayMilliseconds`.
    pub delay_ms: i64,
    /// `Data`.
    pub data: &'a [u8],
    /// `Metadata.Type`.
    pub event_type: &'a str,
    /// `Metadata.ClusterName`.
    pub cluster: &'a str,
}

impl PrintFields {
    /// The fields with their bytes, from the record they were scanned in.
    pub fn view<'a>(&self, record: &'a [u8]) -> PrintView<'a> {
        let text = |r: &Range<usize>| record.get(r.clone()).and_then(as_text).unwrap_or("");
        PrintView {
            index: self.index,
            time: self.time,
            delay_ms: self.delay_ms,
            data: record.get(self.data.clone()).unwrap_or(&[]),
            event_type: text(&self.event_type),
            cluster: text(&self.cluster),
        }
    }
}

/// What [`scan_print_fields`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannedFields {
    /// A print event.
    Print(PrintFields),
    /// The record's member is not a print.
    Other,
}

/// Reads a `OneOf` record in place: `None` when it is not in the plain shape (take the typed
/// decode then).
#[inline]
pub fn scan_print(record: &[u8]) -> Option<Scanned> {
    // Text wants only the data: the type and cluster need not be valid UTF-8 (the typed
    // decode keeps such a print, with the same data).
    Some(match scan(record, false)? {
        ScannedFields::Print(p) => Scanned::Print {
            index: p.index,
            data: p.data,
        },
        ScannedFields::Other => Scanned::Other,
    })
}

/// [`scan_print`] with the print's time, delay, type and cluster too. `None` also when the
/// type or the cluster is not valid UTF-8 (the typed decode replaces such bytes).
#[inline]
pub fn scan_print_fields(record: &[u8]) -> Option<ScannedFields> {
    scan(record, true)
}

/// [`scan_print_fields`]; `check_text`: also ask the type and the cluster to be UTF-8.
#[inline(always)]
fn scan(record: &[u8], check_text: bool) -> Option<ScannedFields> {
    // The member that counts is the last length-delimited field.
    let mut member: Option<(u64, usize, usize)> = None;
    let mut pos = 0;
    while pos < record.len() {
        let key = key_at(record, &mut pos)?;
        if key & 7 != 2 {
            skip_at(record, &mut pos, key & 7)?;
            continue;
        }
        let len = usize::try_from(varint_at(record, &mut pos)?).ok()?;
        let end = pos.checked_add(len).filter(|&e| e <= record.len())?;
        member = Some((key >> 3, pos, end));
        pos = end;
    }
    let (field, start, end) = member?;
    if field != PRINT_MEMBER {
        return Some(ScannedFields::Other);
    }
    let mut p = print_body(&record[start..end])?;
    for r in [&mut p.data, &mut p.event_type, &mut p.cluster] {
        *r = (start + r.start)..(start + r.end);
    }
    if check_text {
        for r in [&p.event_type, &p.cluster] {
            as_text(&record[r.clone()])?;
        }
    }
    Some(ScannedFields::Print(p))
}

/// The bytes as text when they are UTF-8. A print's type is nearly always `print`, which is
/// compared instead of validated: the scan and the view each check the type and the
/// cluster, and the validation's call was 2–5 % of a player's decode.
#[inline(always)]
fn as_text(b: &[u8]) -> Option<&str> {
    if b == b"print" {
        return Some("print");
    }
    std::str::from_utf8(b).ok()
}

/// A length-delimited value at `pos`: its range, `pos` moved past it.
#[inline(always)]
fn delimited(body: &[u8], pos: &mut usize) -> Option<Range<usize>> {
    let len = usize::try_from(varint_at(body, pos)?).ok()?;
    let end = pos.checked_add(len).filter(|&e| e <= body.len())?;
    let r = *pos..end;
    *pos = end;
    Some(r)
}

/// A `SessionPrint` body: its fields, ranges within `body`.
#[inline(always)]
fn print_body(body: &[u8]) -> Option<PrintFields> {
    // Fields 1 to 6, each once and in order (as writers put them; any other order takes the
    // typed decode).
    let mut last = 0;
    let mut p = PrintFields {
        index: 0,
        time: Timestamp::default(),
        delay_ms: 0,
        data: 0..0,
        event_type: 0..0,
        cluster: 0..0,
    };
    let mut pos = 0;
    while pos < body.len() {
        let key = key_at(body, &mut pos)?;
        if key >> 3 <= last {
            return None;
        }
        last = key >> 3;
        match key {
            0x0a => {
                let r = delimited(body, &mut pos)?;
                metadata(&body[r.clone()], r.start, &mut p)?;
            }
            0x1a => p.data = delimited(body, &mut pos)?,
            0x28 => p.delay_ms = varint_at(body, &mut pos)? as i64,
            0x10 | 0x20 | 0x30 => {
                varint_at(body, &mut pos)?;
            }
            _ => return None,
        }
    }
    Some(p)
}

/// An `events.Metadata` body at `base` within the print body: its index, time, type and
/// cluster into `p`.
#[inline(always)]
fn metadata(body: &[u8], base: usize, p: &mut PrintFields) -> Option<()> {
    // Fields 1 to 6, each once and in order.
    let mut last = 0;
    let mut pos = 0;
    while pos < body.len() {
        let key = key_at(body, &mut pos)?;
        if key >> 3 <= last {
            return None;
        }
        last = key >> 3;
        match key {
            0x08 => p.index = varint_at(body, &mut pos)? as i64,
            // Strings: Go does not check UTF-8 and neither does the typed decode.
            0x1a | 0x22 => skip_at(body, &mut pos, 2)?,
            0x12 => {
                let r = delimited(body, &mut pos)?;
                p.event_type = (base + r.start)..(base + r.end);
            }
            0x32 => {
                let r = delimited(body, &mut pos)?;
                p.cluster = (base + r.start)..(base + r.end);
            }
            0x2a => {
                let r = delimited(body, &mut pos)?;
                p.time = timestamp(&body[r])?;
            }
            _ => return None,
        }
    }
    Some(())
}

/// A `google.protobuf.Timestamp` the typed decode accepts (Go's range).
#[inline(always)]
fn timestamp(body: &[u8]) -> Option<Timestamp> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut seen = 0u8;
    let mut pos = 0;
    while pos < body.len() {
        let key = key_at(body, &mut pos)?;
        match key {
            0x08 if seen & 1 == 0 => seconds = varint_at(body, &mut pos)? as i64,
            0x10 if seen & 2 == 0 => nanos = varint_at(body, &mut pos)? as i32,
            _ => return None,
        }
        seen |= (key >> 3) as u8;
    }
    let t = Timestamp { seconds, nanos };
    t.is_valid().then_some(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::AuditEvent;
    use proptest::prelude::*;

    fn records() -> Vec<Vec<u8>> {
        crate::vectors::sample_session(3)
            .iter()
            .map(|e| e.to_oneof_bytes())
            .collect()
    }

    /// The typed decode's view of a record: `Some(Some((index, data)))` for a print,
    /// `Some(None)` for another event, `None` for an error.
    fn typed(record: &[u8]) -> Option<Option<(i64, Vec<u8>)>> {
        let e = AuditEvent::decode_oneof(record).ok()?;
        Some(e.print_data().map(|d| (e.index(), d.to_vec())))
    }

    fn agrees(record: &[u8]) -> Result<(), TestCaseError> {
        match scan_print(record) {
            None => {}
            Some(Scanned::Other) => prop_assert_eq!(typed(record), Some(None)),
            Some(Scanned::Print { index, data }) => {
                prop_assert_eq!(typed(record), Some(Some((index, record[data].to_vec()))))
            }
        }
        // The player's view: every field as the typed print has it.
        match scan_print_fields(record) {
            None => {}
            Some(ScannedFields::Other) => prop_assert_eq!(typed(record), Some(None)),
            Some(ScannedFields::Print(f)) => {
                let v = f.view(record);
                let e = AuditEvent::decode_oneof(record);
                prop_assert!(e.is_ok(), "the typed decode refused a scanned print");
                let Ok(AuditEvent::SessionPrint(p)) = e else {
                    return Err(TestCaseError::fail(
                        "scanned a print the typed decode does not give",
                    ));
                };
                prop_assert_eq!(v.index, p.metadata.index);
                prop_assert_eq!(v.time, p.metadata.time);
                prop_assert_eq!(v.delay_ms, p.delay_milliseconds);
                prop_assert_eq!(v.data, &p.data[..]);
                prop_assert_eq!(v.event_type, p.metadata.type_.as_str());
                prop_assert_eq!(v.cluster, p.metadata.cluster_name.as_str());
            }
        }
        Ok(())
    }

    #[test]
    fn plain_records_take_the_fast_path() {
        let mut prints = 0;
        for r in records() {
            match scan_print(&r) {
                Some(Scanned::Print { .. }) => prints += 1,
                Some(Scanned::Other) => {}
                None => panic!("a writer's record left the fast path: {r:?}"),
            }
            agrees(&r).unwrap();
        }
        let want = records()
            .iter()
            .filter(|r| matches!(typed(r), Some(Some(_))))
            .count();
        assert!(want > 0);
        assert_eq!(prints, want, "every print takes the fast path");
    }

    #[test]
    fn unusual_shapes_go_to_the_typed_decode() {
        let p = records()
            .into_iter()
            .find(|r| matches!(scan_print(r), Some(Scanned::Print { .. })))
            .unwrap();
        // A second `Data` (protobuf's last-wins) and an unknown field: both typed.
        let mut twice = p.clone();
        let mut extra = vec![0x1a, 1, b'x'];
        // Re-wrap the member with the extra field appended.
        let (_, body) = crate::event::last_member(&p).unwrap().unwrap();
        let mut body = body.to_vec();
        body.append(&mut extra);
        twice.clear();
        twice.push(0x3a);
        crate::proto::put_varint(&mut twice, body.len() as u64);
        twice.extend_from_slice(&body);
        assert_eq!(scan_print(&twice), None);
        assert_eq!(typed(&twice).unwrap().unwrap().1, b"x");
        // A time outside Go's range: the typed decode keeps the event raw (no print).
        let bad = AuditEvent::decode_oneof(&p).unwrap();
        let mut bad = bad;
        bad.set_time(Timestamp {
            seconds: i64::MAX / 2,
            nanos: 0,
        });
        let b = bad.to_oneof_bytes();
        assert_eq!(scan_print(&b), None);
        assert_eq!(typed(&b), Some(None));
        // A type that is not UTF-8: text still takes the scan (the typed decode keeps the
        // print and its data), the player's view does not.
        let at = p.windows(5).position(|w| w == b"print").unwrap();
        let mut latin = p.clone();
        latin[at] = 0xff;
        assert!(matches!(scan_print(&latin), Some(Scanned::Print { .. })));
        assert_eq!(scan_print_fields(&latin), None);
        agrees(&latin).unwrap();
    }

    proptest! {
        /// Whenever the scan answers, the typed decode says the same: on mutated records
        /// and on arbitrary bytes.
        #[test]
        fn scan_agrees_with_typed_decode(
            which in 0usize..64,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let rs = records();
            let mut r = rs[which % rs.len()].clone();
            for (at, b) in edits {
                if !r.is_empty() {
                    let n = r.len();
                    r[at % n] = b;
                }
            }
            agrees(&r)?;
            agrees(&noise)?;
        }
    }
}
