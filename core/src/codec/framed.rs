//! Framed records outside a part: the body of a `tapelog serve` records request.
//!
//! A framed record is what a part's gzip payload holds: a 4-byte big-endian length, then a
//! protobuf `events.OneOf` of at most [`MAX_EVENT_SIZE`] bytes. [`frame_record`] writes one;
//! [`FramedRecords`] walks a buffer of them and gives each record's event index (read from
//! the bytes, without decoding the event) and its `OneOf` bytes.

use thiserror::Error;

use super::writer::{RECORD_HEADER_SIZE, encode_record};
use crate::event::{AuditEvent, EventError, MAX_EVENT_SIZE};

/// What is wrong with a buffer of framed records.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The buffer ends inside a record's length or body.
    #[error("record {record} at byte {offset}: truncated ({have} of {need} bytes)")]
    Truncated {
        /// The record's position (0-based).
        record: usize,
        /// Its byte offset in the buffer.
        offset: usize,
        /// Bytes there.
        have: usize,
        /// Bytes its frame needs.
        need: usize,
    },
    /// A record longer than the 64 KiB message limit.
    #[error("record {record} at byte {offset}: {size} bytes, over the maximum of {max} bytes")]
    TooLarge {
        /// The record's position (0-based).
        record: usize,
        /// Its byte offset in the buffer.
        offset: usize,
        /// Its length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A record whose event index can't be read.
    #[error("record {record} at byte {offset}: {source}")]
    Event {
        /// The record's position (0-based).
        record: usize,
        /// Its byte offset in the buffer.
        offset: usize,
        /// What was wrong.
        source: EventError,
    },
}

/// One framed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramedRecord<'a> {
    /// The event index (`Metadata.Index`).
    pub index: i64,
    /// The `OneOf` bytes.
    pub oneof: &'a [u8],
}

/// Appends `event` as a framed record (trimmed as [`encode_record`] trims); returns the
/// bytes appended. Nothing is appended when the event does not fit.
pub fn frame_record(event: &AuditEvent, out: &mut Vec<u8>) -> Result<usize, EventError> {
    let at = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_SIZE]);
    match encode_record(event, out) {
        Ok(len) => {
            out[at..at + RECORD_HEADER_SIZE].copy_from_slice(&(len as u32).to_be_bytes());
            Ok(RECORD_HEADER_SIZE + len)
        }
        Err(e) => {
            out.truncate(at);
            Err(e)
        }
    }
}

/// The event index of a `OneOf` record, read from its bytes without decoding the event:
/// every member's field 1 is its `Metadata`, whose field 1 is the index.
pub fn record_index(oneof: &[u8]) -> Result<i64, EventError> {
    super::reader::scan_index(oneof)
}

/// The records of a buffer, in order; stops after the first error.
pub struct FramedRecords<'a> {
    buf: &'a [u8],
    pos: usize,
    record: usize,
    failed: bool,
}

impl<'a> FramedRecords<'a> {
    /// The records of `buf`.
    pub fn new(buf: &'a [u8]) -> FramedRecords<'a> {
        FramedRecords {
            buf,
            pos: 0,
            record: 0,
            failed: false,
        }
    }

    fn next_record(&mut self) -> Result<FramedRecord<'a>, FrameError> {
        let (record, offset) = (self.record, self.pos);
        let rest = &self.buf[offset..];
        let Some(header) = rest.first_chunk::<RECORD_HEADER_SIZE>() else {
            return Err(FrameError::Truncated {
                record,
                offset,
                have: rest.len(),
                need: RECORD_HEADER_SIZE,
            });
        };
        let size = u32::from_be_bytes(*header) as usize;
        if size > MAX_EVENT_SIZE {
            return Err(FrameError::TooLarge {
                record,
                offset,
                size,
                max: MAX_EVENT_SIZE,
            });
        }
        let Some(oneof) = rest.get(RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + size) else {
            return Err(FrameError::Truncated {
                record,
                offset,
                have: rest.len(),
                need: RECORD_HEADER_SIZE + size,
            });
        };
        let index = record_index(oneof).map_err(|source| FrameError::Event {
            record,
            offset,
            source,
        })?;
        self.pos += RECORD_HEADER_SIZE + size;
        self.record += 1;
        Ok(FramedRecord { index, oneof })
    }
}

impl<'a> Iterator for FramedRecords<'a> {
    type Item = Result<FramedRecord<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.next_record();
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_indexes() {
        let events = crate::vectors::sample_session(3);
        let mut buf = Vec::new();
        for e in &events {
            assert!(frame_record(e, &mut buf).is_ok());
        }
        let got: Vec<FramedRecord<'_>> = FramedRecords::new(&buf).filter_map(Result::ok).collect();
        assert_eq!(got.len(), events.len());
        for (r, e) in got.iter().zip(&events) {
            assert_eq!(r.index, e.index());
            assert_eq!(AuditEvent::decode_oneof(r.oneof).ok().as_ref(), Some(e));
        }
    }

    #[test]
    fn bad_frames_are_named() {
        let events = crate::vectors::sample_session(1);
        let mut buf = Vec::new();
        assert!(frame_record(&events[0], &mut buf).is_ok());
        let whole = buf.len();
        buf.extend_from_slice(&[0, 0]);
        let errs: Vec<_> = FramedRecords::new(&buf).collect();
        assert!(matches!(
            errs.last(),
            Some(Err(FrameError::Truncated { record: 1, offset, have: 2, need: 4 })) if *offset == whole
        ));
        let big = (MAX_EVENT_SIZE as u32 + 1).to_be_bytes();
        let mut r = FramedRecords::new(&big);
        assert!(matches!(r.next(), Some(Err(FrameError::TooLarge { .. }))));
        assert!(r.next().is_none());
        let short = [0, 0, 0, 9, 1];
        assert!(matches!(
            FramedRecords::new(&short).next(),
            Some(Err(FrameError::Truncated { need: 13, .. }))
        ));
        // A record that is not protobuf: its index can't be read.
        let junk = [0, 0, 0, 2, 0xff, 0xff];
        assert!(matches!(
            FramedRecords::new(&junk).next(),
            Some(Err(FrameError::Event { record: 0, .. }))
        ));
    }
}
