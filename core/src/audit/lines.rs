//! Lines of a day file: the line written for an event, and the splitting of file bytes into
//! complete lines.
//!
//! A line is one event as Teleport's JSON (`AuditEvent::to_json`, upstream's `FastMarshal`)
//! followed by `\n`. Readers only ever take complete lines: bytes after the last `\n` are a
//! write in progress (or a torn write after a crash) and are left for later.

use thiserror::Error;

use super::MAX_SCAN_TOKEN_SIZE;
use crate::AuditEvent;

/// Why an event can't be written to the audit log. All are permanent: the same event fails
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    /// The event has no type.
    #[error("the event has no type (`event`)")]
    MissingType,
    /// The event has no time.
    #[error("the {event_type} event has no time (`time`)")]
    MissingTime {
        /// Its type.
        event_type: String,
    },
    /// The event's JSON is over the limit even after `TrimToMaxSize`.
    #[error(
        "the {event_type} event is {size} bytes of JSON after trimming, over the maximum of {max} bytes"
    )]
    TooLarge {
        /// Its type.
        event_type: String,
        /// Its JSON size after trimming.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// The JSON of one event, ready to be written (without the newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedLine {
    /// Teleport's JSON for the event.
    pub json: String,
    /// Whether the event had to be trimmed to fit.
    pub trimmed: bool,
}

/// Upstream's line rule with the default limit ([`MAX_SCAN_TOKEN_SIZE`]); see
/// [`prepare_line_with_max`].
pub fn prepare_line(event: &AuditEvent) -> Result<PreparedLine, LineError> {
    prepare_line_with_max(event, MAX_SCAN_TOKEN_SIZE)
}

/// The line for `event`: refuses an event without a type or a time; JSON over `max` bytes is
/// trimmed (`TrimToMaxSize(max)`) and marshalled again; still over `max` → refused.
pub fn prepare_line_with_max(event: &AuditEvent, max: usize) -> Result<PreparedLine, LineError> {
    let event_type = event.event_type();
    if event_type.is_empty() {
        return Err(LineError::MissingType);
    }
    if event.time().is_zero() {
        return Err(LineError::MissingTime {
            event_type: event_type.to_string(),
        });
    }
    let json = event.to_json();
    if json.len() <= max {
        return Ok(PreparedLine {
            json,
            trimmed: false,
        });
    }
    let json = event.trim_to_max_size(max).to_json();
    if json.len() > max {
        return Err(LineError::TooLarge {
            event_type: event_type.to_string(),
            size: json.len(),
            max,
        });
    }
    Ok(PreparedLine {
        json,
        trimmed: true,
    })
}

/// One complete line found by a [`LineScanner`].
#[derive(Debug, PartialEq, Eq)]
pub enum ScannedLine<'a> {
    /// A line (without its `\n`) and its byte offset in the file.
    Line {
        /// Offset of the line's first byte.
        offset: u64,
        /// The line's bytes.
        bytes: &'a [u8],
    },
    /// A line longer than the scanner's maximum: its bytes were not kept.
    TooLong {
        /// Offset of the line's first byte.
        offset: u64,
        /// Its length without the `\n`.
        len: u64,
    },
}

/// Splits file bytes, fed in chunks in order, into complete lines. Memory is bounded by the
/// maximum line length: a longer line is reported as [`ScannedLine::TooLong`] without being
/// kept.
#[derive(Debug)]
pub struct LineScanner {
    /// File offset of the next byte to be fed.
    pos: u64,
    /// File offset where the current (incomplete) line starts.
    line_start: u64,
    /// The incomplete line's bytes (when it spans chunks).
    partial: Vec<u8>,
    /// Whether the current line is over the maximum (its bytes are dropped).
    oversize: bool,
    max_line: usize,
}

impl LineScanner {
    /// A scanner of bytes that start at file offset `start`, keeping lines up to `max_line`
    /// bytes.
    pub fn new(start: u64, max_line: usize) -> LineScanner {
        LineScanner {
            pos: start,
            line_start: start,
            partial: Vec::new(),
            oversize: false,
            max_line,
        }
    }

    /// Offset just after the last complete line: every byte before it has been reported.
    pub fn covered(&self) -> u64 {
        self.line_start
    }

    /// Feeds the next chunk; `on_line` is called for each line it completes, in order.
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(ScannedLine<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    let piece = &rest[..nl];
                    let len = self.pending_len() + nl as u64;
                    if self.oversize || len > self.max_line as u64 {
                        on_line(ScannedLine::TooLong {
                            offset: self.line_start,
                            len,
                        });
                    } else if self.partial.is_empty() {
                        on_line(ScannedLine::Line {
                            offset: self.line_start,
                            bytes: piece,
                        });
                    } else {
                        self.partial.extend_from_slice(piece);
                        on_line(ScannedLine::Line {
                            offset: self.line_start,
                            bytes: &self.partial,
                        });
                    }
                    self.pos += nl as u64 + 1;
                    self.line_start = self.pos;
                    self.partial.clear();
                    self.oversize = false;
                    rest = &rest[nl + 1..];
                }
                None => {
                    let len = self.pending_len() + rest.len() as u64;
                    if self.oversize || len > self.max_line as u64 {
                        self.oversize = true;
                        self.partial = Vec::new();
                    } else {
                        self.partial.extend_from_slice(rest);
                    }
                    self.pos += rest.len() as u64;
                    rest = &[];
                }
            }
        }
    }

    fn pending_len(&self) -> u64 {
        self.pos - self.line_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{SessionJoin, event_code, event_type};
    use crate::proto::Timestamp;
    use crate::vectors::sample_session;

    fn scan(chunks: &[&[u8]], start: u64, max: usize) -> (Vec<(u64, String)>, u64) {
        let mut s = LineScanner::new(start, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| match l {
                ScannedLine::Line { offset, bytes } => {
                    out.push((offset, String::from_utf8_lossy(bytes).into_owned()))
                }
                ScannedLine::TooLong { offset, len } => out.push((offset, format!("<{len}>"))),
            });
        }
        (out, s.covered())
    }

    #[test]
    fn scanner_takes_complete_lines_only() {
        let (lines, covered) = scan(&[b"ab\ncd", b"e\n\nfg"], 10, 100);
        assert_eq!(
            lines,
            vec![(10, "ab".into()), (13, "cde".into()), (17, "".into())]
        );
        assert_eq!(covered, 18);
        let (lines, covered) = scan(&[b"a", b"b", b"c"], 0, 100);
        assert!(lines.is_empty());
        assert_eq!(covered, 0);
    }

    #[test]
    fn scanner_drops_long_lines_without_keeping_them() {
        let (lines, covered) = scan(&[b"12345", b"678\nok\n", b"123456\n"], 0, 5);
        assert_eq!(
            lines,
            vec![(0, "<8>".into()), (9, "ok".into()), (12, "<6>".into())]
        );
        assert_eq!(covered, 19);
    }

    #[test]
    fn line_is_the_event_json() {
        let e = sample_session(1).remove(0);
        let l = prepare_line(&e).unwrap();
        assert_eq!(l.json, e.to_json());
        assert!(!l.trimmed);
    }

    #[test]
    fn line_needs_type_and_time() {
        let mut e: AuditEvent = SessionJoin::default().into();
        assert_eq!(prepare_line(&e), Err(LineError::MissingType));
        if let Some(m) = e.metadata_mut() {
            m.type_ = event_type::SESSION_JOIN.into();
            m.code = event_code::SESSION_JOIN.into();
        }
        assert_eq!(
            prepare_line(&e),
            Err(LineError::MissingTime {
                event_type: "session.join".into()
            })
        );
        e.set_time(Timestamp::from_unix_millis(1));
        assert!(prepare_line(&e).is_ok());
    }

    #[test]
    fn big_lines_are_trimmed_or_refused() {
        let big = "x".repeat(100_000);
        let exec = AuditEvent::from_json(&format!(
            r#"{{"event":"exec","code":"T3002I","time":"2024-01-15T10:00:00Z","command":"{big}"}}"#
        ))
        .unwrap();
        let l = prepare_line(&exec).unwrap();
        assert!(l.trimmed);
        assert!(l.json.len() <= MAX_SCAN_TOKEN_SIZE, "{}", l.json.len());
        assert!(l.json.contains("\"command\":\"xxx"));

        // session.join is never trimmed (upstream returns it unchanged).
        let join = AuditEvent::from_json(&format!(
            r#"{{"event":"session.join","code":"T2001I","time":"2024-01-15T10:00:00Z","user":"{big}"}}"#
        ))
        .unwrap();
        match prepare_line(&join) {
            Err(LineError::TooLarge {
                event_type, max, ..
            }) => {
                assert_eq!(event_type, "session.join");
                assert_eq!(max, MAX_SCAN_TOKEN_SIZE);
            }
            other => panic!("{other:?}"),
        }
    }
}
