//! The arrival-order feed: [`FileLog::read_feed`] reads every server directory's day files
//! from the byte offsets of a feed key (the core's `audit::feed`), taking complete lines only.
//!
//! Lines are handled as search handles them: blank lines are skipped; a line that is not an
//! event (not UTF-8, not a JSON object) or longer than search's line limit (16 MiB) is
//! skipped and counted as unparsable; an event that alone is 1 MiB or more of JSON is
//! trimmed for the response (or returned whole when it can't be) and returned alone.
//!
//! Two reads share that path: [`FileLog::read_feed`] gives each event's whole map of fields
//! (`EventFields`, as search does); [`FileLog::read_feed_events`] only the four fields an
//! exporter uses, by the fast parse of `feed_line`, which takes and refuses the same lines.
//! Either copies only the lines it takes.

use std::fs::File;
use std::os::unix::fs::FileExt;

use tapelog_core::audit::MAX_EVENT_BYTES_IN_RESPONSE;
use tapelog_core::audit::effective_limit;
use tapelog_core::audit::feed::{FeedFile, FeedKey, FeedRead, plan};
use tapelog_core::audit::lines::{LineScanner, ScannedLine};
use tapelog_core::audit::page::{Admit, PageBuilder};
use tapelog_core::{EventFields, Timestamp};

use super::feed_line::{LineFields, parse_line};
use super::filelog::{Counters, FileLog, Inner};
use super::index::MAX_READ_LINE;
use super::search::{server_files, trimmed_for_response};
use super::{AuditError, StoredEvent};

/// Bytes read at first from a file range (doubling up to [`MAX_CHUNK`]): a small page reads
/// little more than its lines.
const FIRST_CHUNK: usize = 64 * 1024;
const MAX_CHUNK: usize = 1 << 20;
/// Bytes one read goes through at most (more only to finish the first line it takes).
pub(crate) const READ_BUDGET: u64 = 8 << 20;

/// One read of the feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedPage {
    /// The events, in the order read (as [`crate::SearchPage`] holds them).
    pub events: Vec<StoredEvent>,
    /// The key after them: pass it to the next read. Never empty; the key passed in (in its
    /// encoded form) when nothing new was there.
    pub next_key: String,
}

/// One event of a [`FeedEvents`] read: the line and the four fields an exporter uses, each
/// as the `EventFields` getter of [`StoredEvent::fields`] gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedEvent {
    /// The line as stored (Teleport's JSON, no newline), or trimmed as [`FeedPage`]'s is.
    pub json: String,
    /// `event` ("" when absent or not a string).
    pub event_type: String,
    /// `uid` ("" when absent or not a string).
    pub uid: String,
    /// `sid` ("" when absent or not a string).
    pub session_id: String,
    /// `time` (Go's zero time when absent or not RFC 3339).
    pub time: Timestamp,
    /// The file it is in (`server/day file`), shared by the events of a read from that file.
    pub file: std::sync::Arc<str>,
    /// The line's byte offset in that file.
    pub offset: u64,
}

impl FeedEvent {
    fn of_stored(e: StoredEvent) -> FeedEvent {
        FeedEvent {
            event_type: e.fields.get_type().to_string(),
            uid: e.fields.get_id().to_string(),
            session_id: e.fields.get_session_id().to_string(),
            time: e.fields.get_timestamp(),
            json: e.json,
            file: e.file.into(),
            offset: e.offset,
        }
    }
}

/// One read of the feed with only the fields an exporter uses
/// ([`FileLog::read_feed_events`]): the same events and key as [`FeedPage`]'s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedEvents {
    /// The events, in the order read.
    pub events: Vec<FeedEvent>,
    /// The key after them (as [`FeedPage::next_key`]).
    pub next_key: String,
}

/// What a read makes of the lines it takes: a [`StoredEvent`] (the whole map of fields) or
/// a [`FeedEvent`] (four fields, the fast parse of `feed_line`).
trait Take: Sized {
    /// What the line's parse keeps, borrowed from the line where it can.
    type Fields<'a>;

    /// The line's fields; `None` when it is not an event (not JSON, not an object).
    fn parse(json: &str) -> Option<Self::Fields<'_>>;

    /// The event of a line taken; `trim`: the page takes it alone and it is 1 MiB or more
    /// of JSON (trimmed for the response, as search does).
    fn make(
        fields: Self::Fields<'_>,
        json: &str,
        file: &std::sync::Arc<str>,
        offset: u64,
        trim: bool,
        inner: &Inner,
    ) -> Result<Self, AuditError>;
}

impl Take for StoredEvent {
    type Fields<'a> = EventFields;

    fn parse(json: &str) -> Option<EventFields> {
        EventFields::parse(json).ok()
    }

    fn make(
        fields: EventFields,
        json: &str,
        file: &std::sync::Arc<str>,
        offset: u64,
        trim: bool,
        inner: &Inner,
    ) -> Result<Self, AuditError> {
        let stored = StoredEvent {
            fields,
            json: json.to_string(),
            file: file.to_string(),
            offset,
        };
        if trim {
            return trimmed_for_response(stored, &inner.config.metrics);
        }
        Ok(stored)
    }
}

impl Take for FeedEvent {
    type Fields<'a> = LineFields<'a>;

    fn parse(json: &str) -> Option<LineFields<'_>> {
        parse_line(json).ok()
    }

    fn make(
        fields: LineFields<'_>,
        json: &str,
        file: &std::sync::Arc<str>,
        offset: u64,
        trim: bool,
        inner: &Inner,
    ) -> Result<Self, AuditError> {
        if trim {
            // Rare (an event of 1 MiB or more): the trimmed line's fields, as search's.
            let fields = EventFields::parse(json).map_err(|e| AuditError::Decode {
                file: file.to_string(),
                offset,
                source: e.into(),
            })?;
            let stored = StoredEvent::make(fields, json, file, offset, true, inner)?;
            return Ok(FeedEvent::of_stored(stored));
        }
        Ok(FeedEvent {
            json: json.to_string(),
            event_type: fields.event.into_owned(),
            uid: fields.uid.into_owned(),
            session_id: fields.sid.into_owned(),
            time: fields.time,
            file: file.clone(),
            offset,
        })
    }
}

/// The server directories' day files with their lengths, as the feed lists them.
fn list(inner: &Inner) -> Result<Vec<FeedFile>, AuditError> {
    let mut out = Vec::new();
    for (server, name, f) in server_files(&inner.log_root)? {
        if !tapelog_core::audit::feed::is_feed_file(&name) {
            continue;
        }
        let size = match f.metadata() {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(AuditError::io(f.path())(e)),
        };
        out.push(FeedFile { server, name, size });
    }
    Ok(out)
}

/// A complete line of a range, as the scanner hands it over.
enum Line<'a> {
    Blank,
    Unparsable,
    Event(&'a [u8]),
}

/// Where a read stands.
struct Reader<'a, E> {
    inner: &'a Inner,
    key: FeedKey,
    builder: PageBuilder,
    events: Vec<E>,
    /// The end of the last line passed in the range being read: the key moves there once
    /// the range is done (one key update per range, not per line).
    passed: Option<u64>,
    scanned: u64,
    /// Whether some line was taken (so the budget may stop the read).
    progressed: bool,
    done: bool,
}

impl<E: Take> Reader<'_, E> {
    /// Reads one range of a file, stopping when the page is full or the budget spent.
    fn read_range(&mut self, r: &FeedRead) -> Result<(), AuditError> {
        let path = self.inner.log_root.join(&r.server).join(&r.name);
        let file = match File::open(&path) {
            Ok(f) => f,
            // Removed since it was listed: the next read's listing drops it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(AuditError::io(&path)(e)),
        };
        // One name for every event of the range (a shared string, not one per event).
        let id: std::sync::Arc<str> = r.file_id().into();
        self.passed = None;
        let done = self.scan_range(&file, &path, r, &id);
        if let Some(end) = self.passed.take() {
            self.key.set(&r.server, &r.name, end);
        }
        done
    }

    /// [`read_range`](Self::read_range)'s loop over the opened file.
    fn scan_range(
        &mut self,
        file: &File,
        path: &std::path::Path,
        r: &FeedRead,
        id: &std::sync::Arc<str>,
    ) -> Result<(), AuditError> {
        let mut scanner = LineScanner::new(r.from, MAX_READ_LINE);
        let mut pos = r.from;
        let mut chunk = FIRST_CHUNK;
        let mut buf = Vec::new();
        while pos < r.to && !self.done {
            if self.progressed && self.scanned >= READ_BUDGET {
                self.done = true;
                break;
            }
            let want = usize::try_from(r.to - pos).unwrap_or(usize::MAX).min(chunk);
            buf.resize(want, 0);
            let n = file
                .read_at(&mut buf[..want], pos)
                .map_err(AuditError::io(path))?;
            if n == 0 {
                // Shorter than listed (truncated meanwhile): the next listing sees it.
                break;
            }
            pos += n as u64;
            self.scanned += n as u64;
            chunk = (chunk * 2).min(MAX_CHUNK);
            // Lines are taken as the scanner finds them, borrowed from the chunk: only the
            // lines taken are copied. After the page is full (or an error) the rest of the
            // chunk's lines are passed over, and the read ends.
            let mut failed = None;
            scanner.feed(&buf[..n], |l| {
                if self.done {
                    return;
                }
                let (offset, end, line) = match l {
                    ScannedLine::Line { offset, bytes } => {
                        let end = offset + bytes.len() as u64 + 1;
                        let line = if bytes.is_empty() {
                            Line::Blank
                        } else {
                            Line::Event(bytes)
                        };
                        (offset, end, line)
                    }
                    ScannedLine::TooLong { offset, len } => {
                        (offset, offset + len + 1, Line::Unparsable)
                    }
                };
                match self.take(id, offset, end, line) {
                    Ok(true) => {}
                    Ok(false) => self.done = true,
                    Err(e) => {
                        failed = Some(e);
                        self.done = true;
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Takes one line: `false` when the page is full before it (the key stays before it).
    fn take(
        &mut self,
        id: &std::sync::Arc<str>,
        offset: u64,
        end: u64,
        line: Line<'_>,
    ) -> Result<bool, AuditError> {
        let parsed = match line {
            Line::Blank => None,
            Line::Unparsable => {
                Counters::add(&self.inner.counters.unparsable_lines, 1);
                None
            }
            Line::Event(bytes) => {
                let fields = std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|json| E::parse(json).map(|f| (f, json)));
                if fields.is_none() {
                    Counters::add(&self.inner.counters.unparsable_lines, 1);
                }
                fields
            }
        };
        let Some((fields, json)) = parsed else {
            self.passed = Some(end);
            self.progressed = true;
            return Ok(true);
        };
        let admit = self.builder.offer(json.len());
        if admit == Admit::Full {
            return Ok(false);
        }
        let trim = admit == Admit::TakeAlone && json.len() >= MAX_EVENT_BYTES_IN_RESPONSE;
        let event = E::make(fields, json, id, offset, trim, self.inner)?;
        self.events.push(event);
        self.passed = Some(end);
        self.progressed = true;
        Ok(!self.builder.is_full())
    }
}

impl FileLog {
    /// Reads the audit log in arrival order after `key` ("" for the beginning; else the
    /// `next_key` of the previous read): at most `limit` events (0 means 500, at most
    /// 10,000) and less than 1 MiB of JSON (one larger event alone), going through at most
    /// about 8 MiB of file. Every server directory of the log root is read, day files in
    /// name order; see `tapelog_core::audit::feed`. Blocking. A key that can't be read is
    /// [`AuditError::FeedKey`].
    pub fn read_feed(&self, key: &str, limit: usize) -> Result<FeedPage, AuditError> {
        let (events, next_key) = self.read_feed_as::<StoredEvent>(key, limit)?;
        Ok(FeedPage { events, next_key })
    }

    /// [`read_feed`](Self::read_feed) keeping only the fields an exporter uses of each
    /// event (`event`, `uid`, `sid`, `time`): the same events, key, skipped lines and
    /// errors, without building each line's map of fields (several times faster).
    pub fn read_feed_events(&self, key: &str, limit: usize) -> Result<FeedEvents, AuditError> {
        let (events, next_key) = self.read_feed_as::<FeedEvent>(key, limit)?;
        Ok(FeedEvents { events, next_key })
    }

    fn read_feed_as<E: Take>(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<(Vec<E>, String), AuditError> {
        let limit = effective_limit(limit)?;
        let start = FeedKey::parse(key)?;
        let inner = &*self.inner;
        let listing = list(inner)?;
        let (next, reads) = plan(&start, &listing);
        let mut reader = Reader::<E> {
            inner,
            key: next,
            builder: PageBuilder::new(limit),
            events: Vec::new(),
            passed: None,
            scanned: 0,
            progressed: false,
            done: false,
        };
        for r in &reads {
            if reader.done {
                break;
            }
            reader.read_range(r)?;
        }
        Ok((reader.events, reader.key.encode()))
    }

    /// [`read_feed`](Self::read_feed) on tokio's blocking pool.
    pub async fn feed(&self, key: String, limit: usize) -> Result<FeedPage, AuditError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.read_feed(&key, limit))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }

    /// [`read_feed_events`](Self::read_feed_events) on tokio's blocking pool.
    pub async fn feed_events(&self, key: String, limit: usize) -> Result<FeedEvents, AuditError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.read_feed_events(&key, limit))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::FileLogConfig;
    use std::io::Write;
    use std::path::Path;
    use tapelog_core::audit::feed::is_feed_key;
    use tapelog_core::{AuditEvent, Timestamp};

    /// 2024-01-15T00:00:00Z.
    const DAY0_MS: i64 = 1_705_276_800_000;
    const DAY_MS: i64 = 86_400_000;

    fn ev(uid: &str, ms: i64) -> AuditEvent {
        AuditEvent::from_json(&format!(
            r#"{{"event":"user.login","code":"T1000I","uid":"{uid}","time":"{}","user":"joe","success":true}}"#,
            Timestamp::from_unix_millis(ms).to_rfc3339()
        ))
        .unwrap()
    }

    fn open(dir: &Path, server: &str) -> FileLog {
        FileLog::open(FileLogConfig::new(dir, server)).unwrap()
    }

    fn uids(page: &FeedPage) -> Vec<String> {
        page.events
            .iter()
            .map(|e| e.fields.get_id().to_string())
            .collect()
    }

    /// Reads the feed from `key` until a read brings nothing new; returns the uids and the
    /// last key.
    fn drain(log: &FileLog, mut key: String, limit: usize) -> (Vec<String>, String) {
        let mut all = Vec::new();
        for _ in 0..10_000 {
            let page = log.read_feed(&key, limit).unwrap();
            assert!(is_feed_key(&page.next_key), "{}", page.next_key);
            if page.events.is_empty() && page.next_key == key {
                return (all, key);
            }
            all.extend(uids(&page));
            key = page.next_key;
        }
        panic!("the feed never caught up");
    }

    #[test]
    fn appends_between_reads_come_in_arrival_order_whatever_their_time() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path(), "auth");
        for i in 0..5 {
            log.append(&ev(&format!("a{i}"), DAY0_MS + DAY_MS + i))
                .unwrap();
        }
        let (got, key) = drain(&log, String::new(), 2);
        assert_eq!(got, ["a0", "a1", "a2", "a3", "a4"]);
        // A late event, a day older than everything read, and a new one.
        log.append(&ev("late", DAY0_MS + 5)).unwrap();
        log.append(&ev("new", DAY0_MS + DAY_MS + 10)).unwrap();
        let (got, key) = drain(&log, key, 10);
        // Files in name order: the late one's (older) day file first.
        assert_eq!(got, ["late", "new"]);
        // The same key again: nothing.
        let page = log.read_feed(&key, 10).unwrap();
        assert!(page.events.is_empty());
        assert_eq!(page.next_key, key);
        // Events read back as stored, with their place.
        let first = log.read_feed("", 1).unwrap();
        assert_eq!(first.events[0].file, "auth/2024-01-15.00:00:00.log");
        assert_eq!(first.events[0].offset, 0);
        assert_eq!(
            first.events[0].to_event().unwrap().event_type(),
            "user.login"
        );
    }

    #[test]
    fn several_server_dirs_and_day_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let a = open(tmp.path(), "auth-a");
        let b = open(tmp.path(), "auth-b");
        a.append(&ev("a-day0", DAY0_MS)).unwrap();
        b.append(&ev("b-day0", DAY0_MS + 1)).unwrap();
        a.append(&ev("a-day1", DAY0_MS + DAY_MS)).unwrap();
        b.append(&ev("b-day2", DAY0_MS + 2 * DAY_MS)).unwrap();
        // Not audit files: recordings, indexes, other names.
        std::fs::create_dir_all(tmp.path().join("log/records")).unwrap();
        std::fs::write(
            tmp.path().join("log/records/2024-01-15.00:00:00.log"),
            "{\"event\":\"x\"}\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("log/auth-a/notes.log"),
            "{\"event\":\"x\"}\n",
        )
        .unwrap();
        let (got, key) = drain(&a, String::new(), 0);
        assert_eq!(got, ["a-day0", "a-day1", "b-day0", "b-day2"]);
        // Rotation: a new day file of each server is picked up from its start.
        a.append(&ev("a-day3", DAY0_MS + 3 * DAY_MS)).unwrap();
        b.append(&ev("b-day3", DAY0_MS + 3 * DAY_MS)).unwrap();
        let (got, _) = drain(&b, key, 1);
        assert_eq!(got, ["a-day3", "b-day3"]);
    }

    #[test]
    fn partial_lines_wait_and_bad_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path(), "auth");
        log.append(&ev("one", DAY0_MS)).unwrap();
        let path = tmp.path().join("log/auth/2024-01-15.00:00:00.log");
        let two = ev("two", DAY0_MS + 1).to_json();
        let (head, tail) = two.split_at(20);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"not json\n\n").unwrap();
        f.write_all(head.as_bytes()).unwrap();
        let (got, key) = drain(&log, String::new(), 10);
        assert_eq!(got, ["one"], "the half-written line is not taken");
        f.write_all(tail.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
        let (got, _) = drain(&log, key, 10);
        assert_eq!(got, ["two"]);
        assert_eq!(log.stats().unparsable_lines, 1);
    }

    #[test]
    fn the_page_cap_and_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path(), "auth");
        for i in 0..30 {
            log.append(&ev(&format!("e{i:02}"), DAY0_MS + i)).unwrap();
        }
        let page = log.read_feed("", 7).unwrap();
        assert_eq!(page.events.len(), 7);
        let next = log.read_feed(&page.next_key, 100).unwrap();
        assert_eq!(uids(&next)[0], "e07");
        assert_eq!(next.events.len(), 23);
        assert!(matches!(
            log.read_feed("", 10_001),
            Err(AuditError::Query(_))
        ));
        // Events of 100 KB: a page stops before 1 MiB.
        let tmp = tempfile::tempdir().unwrap();
        let big = FileLog::open(FileLogConfig {
            max_line_size: 200_000,
            ..FileLogConfig::new(tmp.path(), "auth")
        })
        .unwrap();
        let pad = "x".repeat(100_000);
        for i in 0..15 {
            let e = AuditEvent::from_json(&format!(
                r#"{{"event":"exec","code":"T3002I","uid":"big{i}","time":"{}","command":"{pad}"}}"#,
                Timestamp::from_unix_millis(DAY0_MS + i).to_rfc3339()
            ))
            .unwrap();
            big.append(&e).unwrap();
        }
        let page = big.read_feed("", 100).unwrap();
        let bytes: usize = page.events.iter().map(|e| e.json.len()).sum();
        assert!(bytes < MAX_EVENT_BYTES_IN_RESPONSE, "{bytes}");
        assert_eq!(page.events.len(), 10);
        let (rest, _) = drain(&big, page.next_key, 100);
        assert_eq!(rest.len(), 5);
    }

    #[test]
    fn a_key_of_a_removed_file_and_a_truncated_one() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path(), "auth");
        log.append(&ev("d0", DAY0_MS)).unwrap();
        log.append(&ev("d1", DAY0_MS + DAY_MS)).unwrap();
        let (_, key) = drain(&log, String::new(), 10);
        let day0 = tmp.path().join("log/auth/2024-01-15.00:00:00.log");
        std::fs::remove_file(&day0).unwrap();
        // The removed file is dropped from the key; the rest goes on.
        log.append(&ev("d1b", DAY0_MS + DAY_MS + 1)).unwrap();
        let page = log.read_feed(&key, 10).unwrap();
        assert_eq!(uids(&page), ["d1b"]);
        let k = FeedKey::parse(&page.next_key).unwrap();
        assert_eq!(k.offset("auth", "2024-01-15.00:00:00.log"), 0);
        assert!(k.offset("auth", "2024-01-16.00:00:00.log") > 0);
        // A file shorter than the key's offset (replaced) is read again from its start.
        let day1 = tmp.path().join("log/auth/2024-01-16.00:00:00.log");
        log.close_files().unwrap();
        std::fs::write(
            &day1,
            format!("{}\n", ev("again", DAY0_MS + DAY_MS).to_json()),
        )
        .unwrap();
        let page = log.read_feed(&page.next_key, 10).unwrap();
        assert_eq!(uids(&page), ["again"]);
    }

    /// Both reads of the feed give the same events (the fast one's fields as the map's
    /// getters give them), keys and skipped lines, page after page, over varied lines: odd
    /// field order, escapes, missing and non-string fields, lines that are not events.
    #[test]
    fn the_fast_read_gives_what_the_full_read_gives() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path(), "auth");
        log.append(&ev("first", DAY0_MS)).unwrap();
        let big_pad = "y".repeat(1 << 20);
        let lines = [
            r#"{"time":"2024-01-15T00:00:01Z","sid":"s-1","uid":"u-1","event":"session.start","x":[1,{"a":null}]}"#.to_string(),
            r#"{"event":"a\"b\u00e9","\u0075id":"u\n2","sid":"\/s","time":"2024-01-15T00:00:02.5+01:00"}"#.to_string(),
            r#"{"event":"no.uid"}"#.to_string(),
            r#"{"event":7,"uid":null,"sid":{"a":1},"time":"not a time"}"#.to_string(),
            r#"{"uid":"dup-1","uid":"dup-2","event":"e"}"#.to_string(),
            "[1,2]".to_string(),
            "not json".to_string(),
            r#"{"event":"a","x":1e400}"#.to_string(),
            r#"{"event":"a","x":"\ud800"}"#.to_string(),
            r#"{"event":"trailing"} x"#.to_string(),
            String::new(),
            "   ".to_string(),
            // An event of more than 1 MiB: trimmed for the response, alone in its page.
            format!(
                r#"{{"event":"exec","code":"T3002I","uid":"big","time":"2024-01-15T00:00:03Z","command":"{big_pad}"}}"#
            ),
            r#"{"event":"last","uid":"u-last"}"#.to_string(),
        ];
        let path = tmp.path().join("log/auth/2024-01-15.00:00:00.log");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[0xff, 0xfe, b'\n']).unwrap();
        for l in &lines {
            f.write_all(l.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
        }
        drop(f);
        for limit in [1, 2, 3, 500] {
            let (mut full_key, mut fast_key) = (String::new(), String::new());
            let mut pages = 0;
            loop {
                let before = log.stats().unparsable_lines;
                let full = log.read_feed(&full_key, limit).unwrap();
                let between = log.stats().unparsable_lines;
                let fast = log.read_feed_events(&fast_key, limit).unwrap();
                let after = log.stats().unparsable_lines;
                assert_eq!(between - before, after - between, "lines skipped");
                assert_eq!(fast.next_key, full.next_key);
                let want: Vec<FeedEvent> =
                    full.events.into_iter().map(FeedEvent::of_stored).collect();
                assert_eq!(fast.events, want);
                if want.is_empty() && full.next_key == full_key {
                    break;
                }
                full_key = full.next_key;
                fast_key = fast.next_key;
                pages += 1;
                assert!(pages < 100);
            }
        }
        let all = log.read_feed_events("", 500).unwrap();
        let uids: Vec<&str> = all.events.iter().map(|e| e.uid.as_str()).collect();
        assert_eq!(uids, ["first", "u-1", "u\n2", "", "", "dup-2"]);
        assert_eq!(all.events[2].session_id, "/s");
        assert_eq!(all.events[2].event_type, "a\"b\u{e9}");
        assert_eq!(all.events[3].event_type, "no.uid");
        assert_eq!(all.events[4].time, Timestamp::default());
        let rest = log.read_feed_events(&all.next_key, 500).unwrap();
        assert_eq!(rest.events.len(), 1, "the big one alone");
        assert_eq!(rest.events[0].uid, "big");
        assert!(rest.events[0].json.len() < MAX_EVENT_BYTES_IN_RESPONSE);
    }

    #[test]
    fn a_bad_key_is_a_typed_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path(), "auth");
        log.append(&ev("x", DAY0_MS)).unwrap();
        for bad in ["tl1.eyJ0IjoxfQ", "f1:!!", "f1:AQ"] {
            match log.read_feed(bad, 10) {
                Err(e @ AuditError::FeedKey(_)) => {
                    assert!(e.is_permanent());
                    assert!(e.to_string().contains(bad), "{e}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        // An empty log: the beginning's key, nothing in it.
        let empty = open(&tmp.path().join("none"), "auth");
        let page = empty.read_feed("", 10).unwrap();
        assert!(page.events.is_empty());
        assert_eq!(page.next_key, "f1:AA");
    }
}
