//! [`AsciicastWriter`]: a recording as an asciicast v2 file (asciinema's format: a JSON header
//! line, then one JSON array per event), written as the events stream in.
//!
//! - Header: `{"version": 2, "width": W, "height": H, "timestamp": T}`, plus `"title"` with
//!   the session id when one is known. The size is `session.start`'s, else the first
//!   `resize`'s, else 80×24; the timestamp is the Unix second of the first event.
//! - Output: `[t, "o", "text"]` for each `print`, `t` in seconds (millisecond precision) on
//!   the [`Framer`]'s timeline; resizes: `[t, "r", "COLSxROWS"]`.
//! - Text: print data is decoded as UTF-8 with [`Utf8Decoder`]: a character split across
//!   prints is written whole in the event of the print that completes it; invalid bytes are
//!   written as U+FFFD (asciicast holds text, not bytes), so for output that is not UTF-8,
//!   `asciinema cat` differs from `tapelog export --format text` exactly there. A print whose
//!   bytes only start a character gives no event.
//! - Streaming: until the size is known (the first event is normally `session.start`), event
//!   lines wait in memory, at most [`MAX_HEADER_WAIT`] bytes of them; past that, or at the
//!   end, the header says 80×24.

use crate::event::AuditEvent;

use super::frames::{FrameKind, Framer};
use super::size::TerminalSize;
use super::utf8::Utf8Decoder;

/// Most bytes of event lines held back while waiting for the terminal size.
pub const MAX_HEADER_WAIT: usize = 1 << 20;

/// Writes asciicast v2; see the module documentation.
#[derive(Debug, Default)]
pub struct AsciicastWriter {
    framer: Framer,
    utf8: Utf8Decoder,
    /// Event lines waiting for the header (`None` once it is written).
    waiting: Option<Vec<u8>>,
    /// Unix seconds of the first event.
    timestamp: Option<i64>,
    text: String,
}

impl AsciicastWriter {
    /// A writer before the first event.
    pub fn new() -> AsciicastWriter {
        AsciicastWriter {
            waiting: Some(Vec::new()),
            ..AsciicastWriter::default()
        }
    }

    /// Appends what `event` adds to the file to `out` (nothing, the header, event lines).
    pub fn push(&mut self, event: &AuditEvent, out: &mut Vec<u8>) {
        if self.timestamp.is_none() {
            self.timestamp = Some(event.time().unix_nanos().div_euclid(1_000_000_000) as i64);
        }
        let frame = self.framer.frame(event);
        let mut line = Vec::new();
        let mut first_resize = None;
        if let Some(frame) = frame {
            match frame.kind {
                FrameKind::Output(data) => {
                    self.text.clear();
                    self.utf8.decode(data, &mut self.text);
                    if !self.text.is_empty() {
                        write_event(&mut line, frame.time_ms, "o", &self.text);
                    }
                }
                FrameKind::Resize(size) => {
                    first_resize = Some(size);
                    write_event(&mut line, frame.time_ms, "r", &size.to_asciicast());
                }
            }
        }
        let Some(waiting) = &mut self.waiting else {
            out.extend_from_slice(&line);
            return;
        };
        waiting.extend_from_slice(&line);
        let size = self.framer.initial_size().or(first_resize);
        if size.is_some() || waiting.len() > MAX_HEADER_WAIT {
            self.write_header(size.unwrap_or(TerminalSize::DEFAULT), out);
        }
    }

    /// Ends the file: a pending header (80×24) and an incomplete character left at the end
    /// (as U+FFFD, at the last frame's time).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.text.clear();
        self.utf8.finish(&mut self.text);
        let mut line = Vec::new();
        if !self.text.is_empty() {
            write_event(&mut line, self.framer.last_ms(), "o", &self.text);
        }
        if let Some(waiting) = &mut self.waiting {
            waiting.extend_from_slice(&line);
            self.write_header(TerminalSize::DEFAULT, out);
        } else {
            out.extend_from_slice(&line);
        }
    }

    fn write_header(&mut self, size: TerminalSize, out: &mut Vec<u8>) {
        let mut header = format!(
            "{{\"version\": 2, \"width\": {}, \"height\": {}, \"timestamp\": {}",
            size.cols,
            size.rows,
            self.timestamp.unwrap_or(0)
        );
        if let Some(sid) = self.framer.session_id() {
            header.push_str(", \"title\": ");
            header.push_str(&json_string(&format!("session {sid}")));
        }
        header.push_str("}\n");
        out.extend_from_slice(header.as_bytes());
        if let Some(w) = self.waiting.take() {
            out.extend_from_slice(&w);
        }
    }
}

/// `[t, "code", "data"]` and a newline.
fn write_event(out: &mut Vec<u8>, time_ms: i64, code: &str, data: &str) {
    let t = time_ms.max(0);
    out.extend_from_slice(format!("[{}.{:03}, \"{code}\", ", t / 1000, t % 1000).as_bytes());
    out.extend_from_slice(json_string(data).as_bytes());
    out.extend_from_slice(b"]\n");
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A whole recording's events as an asciicast v2 file.
pub fn to_asciicast<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> Vec<u8> {
    let mut w = AsciicastWriter::new();
    let mut out = Vec::new();
    for e in events {
        w.push(e, &mut out);
    }
    w.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::event::{Metadata, Resize, SessionPrint, event_type};
    use crate::proto::Timestamp;
    use crate::vectors::{SESSION_ID, START_MILLIS, print, sample_output, sample_session};

    fn lines(bytes: &[u8]) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The "o" events' text, concatenated (what `asciinema cat` prints).
    fn output(v: &[Value]) -> String {
        v[1..]
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn sample_session_header_events_and_output() {
        let cast = to_asciicast(&sample_session(5));
        let v = lines(&cast);
        assert_eq!(v[0]["version"], 2);
        assert_eq!(
            (v[0]["width"].as_u64(), v[0]["height"].as_u64()),
            (Some(80), Some(25))
        );
        assert_eq!(v[0]["timestamp"].as_i64(), Some(START_MILLIS / 1000));
        assert_eq!(v[0]["title"], format!("session {SESSION_ID}"));
        assert_eq!(v[1], serde_json::json!([0.07, "r", "168x44"]));
        assert_eq!(v[2][0].as_f64(), Some(0.1));
        assert_eq!(v[2][1], "o");
        assert_eq!(v.len(), 2 + 5);
        assert_eq!(output(&v).as_bytes(), sample_output(5));
        // The exact bytes of one line.
        let text = String::from_utf8(cast).unwrap();
        assert!(text.contains("\n[0.107, \"o\", "), "{text}");
    }

    #[test]
    fn utf8_split_across_prints_is_carried() {
        let text = "héllo wörld — 日本語 😀\r\n";
        let bytes = text.as_bytes();
        let mut events = vec![];
        for (i, piece) in bytes.chunks(3).enumerate() {
            events.push(print(i as i64, i as i64, 0, i as i64 * 10, piece));
        }
        let v = lines(&to_asciicast(&events));
        assert_eq!(output(&v), text);
        for e in &v[1..] {
            assert!(!e[2].as_str().unwrap().contains('\u{fffd}'));
        }
        // No size anywhere: 80x24.
        assert_eq!(
            (v[0]["width"].as_u64(), v[0]["height"].as_u64()),
            (Some(80), Some(24))
        );
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let events = vec![
            print(0, 0, 0, 0, b"ok \xff "),
            print(1, 1, 5, 5, b"\xe2\x82"),
            print(2, 2, 7, 9, b"x"),
            print(3, 3, 8, 12, b"\xf0\x9f"),
        ];
        let v = lines(&to_asciicast(&events));
        assert_eq!(output(&v), "ok \u{fffd} \u{fffd}x\u{fffd}");
        // The cut character gave no event of its own; the last one comes at the end.
        let times: Vec<f64> = v[1..].iter().map(|e| e[0].as_f64().unwrap()).collect();
        assert_eq!(times, vec![0.0, 0.009, 0.012]);
    }

    #[test]
    fn size_from_the_first_resize_when_start_has_none() {
        let resize = |ms: i64, size: &str| -> AuditEvent {
            Resize {
                metadata: Metadata {
                    type_: event_type::RESIZE.into(),
                    time: Timestamp::from_unix_millis(START_MILLIS + ms),
                    ..Default::default()
                },
                terminal_size: size.into(),
                ..Default::default()
            }
            .into()
        };
        let mut p = print(1, 0, 0, 0, b"a");
        p.set_time(Timestamp::from_unix_millis(START_MILLIS));
        let events = vec![p, resize(250, "100:30"), resize(1250, "90:20")];
        let v = lines(&to_asciicast(&events));
        assert_eq!(
            (v[0]["width"].as_u64(), v[0]["height"].as_u64()),
            (Some(100), Some(30))
        );
        assert_eq!(v[1], serde_json::json!([0.0, "o", "a"]));
        assert_eq!(v[2], serde_json::json!([0.25, "r", "100x30"]));
        assert_eq!(v[3], serde_json::json!([1.25, "r", "90x20"]));
    }

    #[test]
    fn the_header_stops_waiting_after_the_bound() {
        let big = vec![b'z'; 64 * 1024];
        let mut w = AsciicastWriter::new();
        let mut out = Vec::new();
        let mut i = 0;
        while out.is_empty() {
            let e: AuditEvent = SessionPrint {
                metadata: Metadata {
                    index: i,
                    type_: event_type::SESSION_PRINT.into(),
                    ..Default::default()
                },
                data: big.clone(),
                ..Default::default()
            }
            .into();
            w.push(&e, &mut out);
            i += 1;
            assert!(i < 100, "the header never came");
        }
        assert!(out.len() > MAX_HEADER_WAIT);
        assert!(out.starts_with(b"{\"version\": 2, \"width\": 80, \"height\": 24"));
        let before = out.len();
        w.finish(&mut out);
        assert_eq!(out.len(), before);
    }

    #[test]
    fn json_escaping_of_control_characters() {
        let v = lines(&to_asciicast(&[print(0, 0, 0, 0, b"\x1b[1m\"q\"\\\t\x07")]));
        assert_eq!(output(&v), "\x1b[1m\"q\"\\\t\x07");
    }
}
