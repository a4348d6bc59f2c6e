//! The bulk export mode's rules (teleport-event-handler's "v2" exporter), without I/O: which
//! UTC dates are read, when the exporter moves to the next date, how chunk names become file
//! names, and how many chunks are read at once.
//!
//! A Teleport cluster with the export API gives, per UTC date, a list of chunks
//! (`GetEventExportChunks`), each read as a stream of events with a resumable cursor
//! (`ExportUnstructuredEvents`). The exporter keeps, per date, the chunks read to the end
//! (`completed-chunks`) and a cursor per chunk in progress (`<chunk>.chunk`), under
//! `cursor_v2/<YYYY-MM-DD>/` of its state directory ([`date_dir`]).
//!
//! [`Dates`] is the walk over dates: the current date advances to the next one once a full
//! pass over it found no new chunk and nothing in progress, and only while it is before
//! today (UTC). The [`BACKLOG`] dates before the current one stay polled: an event that
//! reaches the cluster late lands in a chunk of its own date, which a later pass still finds.
//! Upstream drops a backlog date at its first idle pass; here it stays polled until it is
//! more than [`BACKLOG`] dates behind, so an event up to two days late is still exported.

use crate::audit::files::{DAY_SECONDS, day_of};
use crate::proto::Timestamp;

/// How many dates before the current one are still polled.
pub const BACKLOG: i64 = 2;

/// The directory (under the state directory) of the export cursors.
pub const CURSOR_DIR: &str = "cursor_v2";

/// The file of a date directory listing the chunks read to the end, one a line.
pub const COMPLETED_CHUNKS: &str = "completed-chunks";

/// The extension of a chunk's cursor file.
pub const CHUNK_EXT: &str = ".chunk";

/// Chunks read at once: upstream's `max(concurrency / 4, 3)`.
pub fn chunk_parallelism(concurrency: usize) -> usize {
    (concurrency / 4).max(3)
}

/// A UTC date as `YYYY-MM-DD` (days since 1970-01-01).
pub fn format_date(day: i64) -> String {
    let midnight = Timestamp {
        seconds: day.saturating_mul(DAY_SECONDS),
        nanos: 0,
    };
    midnight
        .to_rfc3339()
        .get(..10)
        .unwrap_or("0001-01-01")
        .to_string()
}

/// A `YYYY-MM-DD` name as days since 1970-01-01, `None` for anything else.
pub fn parse_date(s: &str) -> Option<i64> {
    if s.len() != 10 {
        return None;
    }
    let t = Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z"))?;
    (format_date(day_of(t)) == s).then(|| day_of(t))
}

/// The midnight (UTC) that starts `day`: what a request for that date carries.
pub fn date_start(day: i64) -> Timestamp {
    Timestamp {
        seconds: day.saturating_mul(DAY_SECONDS),
        nanos: 0,
    }
}

/// The date upstream probes the export API with: two days after `now`'s (a date with no
/// events, so the probe reads next to nothing).
pub fn probe_day(now: Timestamp) -> i64 {
    day_of(now) + 2
}

/// The state directory of a date, relative to the state directory: `cursor_v2/<date>`.
pub fn date_dir(day: i64) -> String {
    format!("{CURSOR_DIR}/{}", format_date(day))
}

/// The cursor file of a chunk. A chunk name made of letters, digits, `-`, `_` and `.` (not
/// starting with `.`) is used as it is, as upstream does; any other byte is written `%XX`, so
/// a name from the server can never leave the date directory; the empty name is `%.chunk`.
pub fn chunk_file(chunk: &str) -> String {
    if chunk.is_empty() {
        return format!("%{CHUNK_EXT}");
    }
    let mut out = String::with_capacity(chunk.len() + CHUNK_EXT.len());
    for (i, b) in chunk.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(CHUNK_EXT);
    out
}

/// The chunk a cursor file name stands for (the inverse of [`chunk_file`]).
pub fn chunk_of_file(name: &str) -> Option<String> {
    let stem = name.strip_suffix(CHUNK_EXT)?;
    if stem == "%" {
        return Some(String::new());
    }
    let b = stem.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The completed-chunks file's chunks (blank lines ignored).
pub fn parse_completed(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The walk over dates: the current one and the backlog before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dates {
    /// The first date to export (the start time's).
    first: i64,
    /// The date being exported.
    current: i64,
}

impl Dates {
    /// Starts at the start time's date, or at the latest date with stored state when that is
    /// later (a restart).
    pub fn new(start: Timestamp, latest_stored: Option<i64>) -> Dates {
        let first = day_of(start);
        Dates {
            first,
            current: latest_stored.map_or(first, |d| d.max(first)),
        }
    }

    /// The date being exported.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The dates to poll in this pass, oldest first: the backlog (never before the first
    /// date), then the current date.
    pub fn to_poll(&self) -> Vec<i64> {
        ((self.current - BACKLOG).max(self.first)..=self.current).collect()
    }

    /// Whether `day` has fallen out of the backlog (its stored state can go).
    pub fn is_past(&self, day: i64) -> bool {
        day < self.current - BACKLOG
    }

    /// After a pass: `current_idle` says whether the current date had no new chunk and
    /// nothing in progress. Moves to the next date when it is idle and before `today`;
    /// returns whether it moved.
    pub fn after_pass(&mut self, current_idle: bool, today: i64) -> bool {
        if current_idle && self.current < today {
            self.current += 1;
            true
        } else {
            false
        }
    }

    /// Whether everything is read: the current date is today (or later) and idle.
    pub fn caught_up(&self, current_idle: bool, today: i64) -> bool {
        current_idle && self.current >= today
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dates_format_and_parse() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_737), "2024-01-15");
        assert_eq!(parse_date("2024-01-15"), Some(19_737));
        assert_eq!(parse_date("2024-1-15"), None);
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("completed"), None);
        assert_eq!(date_dir(19_737), "cursor_v2/2024-01-15");
        assert_eq!(date_start(19_737).to_rfc3339(), "2024-01-15T00:00:00Z");
        assert_eq!(probe_day(date_start(19_737)), 19_739);
    }

    #[test]
    fn chunk_files_are_safe_and_reversible() {
        for name in ["chunk-0", "a1.b_c", "../x", "a/b", ".hidden", "é", "%", ""] {
            let f = chunk_file(name);
            assert!(!f.contains('/') && !f.starts_with('.'), "{f}");
            assert_eq!(chunk_of_file(&f).as_deref(), Some(name), "{f}");
        }
        assert_eq!(chunk_file("chunk-3"), "chunk-3.chunk");
        assert_eq!(chunk_of_file("completed-chunks"), None);
        assert_eq!(chunk_of_file("%zz.chunk"), None);
        assert_eq!(
            parse_completed("a\n\nb\r\n"),
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn the_walk_moves_on_idle_past_dates_and_keeps_a_backlog() {
        let start = date_start(100);
        let mut d = Dates::new(start, None);
        assert_eq!(d.to_poll(), vec![100]);
        assert!(!d.after_pass(false, 103), "busy: stays");
        assert!(d.after_pass(true, 103));
        assert_eq!(d.to_poll(), vec![100, 101]);
        assert!(d.after_pass(true, 103));
        assert!(d.after_pass(true, 103));
        assert_eq!(d.current(), 103);
        assert_eq!(d.to_poll(), vec![101, 102, 103]);
        assert!(d.is_past(100) && !d.is_past(101));
        assert!(!d.after_pass(true, 103), "today is never left");
        assert!(d.caught_up(true, 103) && !d.caught_up(false, 103));
        // A restart resumes at the latest stored date, never before the start.
        assert_eq!(Dates::new(start, Some(102)).current(), 102);
        assert_eq!(Dates::new(start, Some(90)).current(), 100);
        assert_eq!(chunk_parallelism(5), 3);
        assert_eq!(chunk_parallelism(40), 10);
    }
}
