//! Playback rules (sans-IO): the legacy playback view of a recording (upstream's
//! `GetSessionEvents` / `GetSessionChunk` over what `WriteForSSHPlayback` writes) and the
//! byte window a session chunk request asks for. The native `tapelog::playback` feeds
//! events in; the browser can use the same rules. [`summary`]: a session's summary for a player.

pub mod summary;

pub use summary::SessionSummary;

use serde_json::Value;

use crate::event::{AuditEvent, EventFields, event_type};

/// Most bytes one session chunk request returns (upstream's `MaxChunkBytes`, 5 MiB); larger
/// requests are capped to it.
pub const MAX_CHUNK_BYTES: usize = 5 * 1024 * 1024;

/// The legacy cursor field added to each event of a `GetSessionEvents` answer
/// (`events.EventCursor`).
pub const EVENT_CURSOR: &str = "id";

/// Whether the legacy playback view leaves this event type out (upstream's
/// `WriteForSSHPlayback` drops enhanced-recording and desktop events: they never were part of
/// the SSH playback files).
pub fn dropped_from_playback(ty: &str) -> bool {
    matches!(
        ty,
        event_type::SESSION_COMMAND
            | event_type::SESSION_DISK
            | event_type::SESSION_NETWORK
            | event_type::DESKTOP_RECORDING
    )
}

/// Turns a recording's events into the legacy playback view: enhanced and desktop events
/// dropped, indexes renumbered from 0, print data left out (it is served by offset through
/// [`ChunkWindow`]), and each kept event numbered with its position (the `id` cursor).
#[derive(Debug, Default, Clone)]
pub struct PlaybackView {
    next: i64,
}

impl PlaybackView {
    /// A view starting at index 0.
    pub fn new() -> PlaybackView {
        PlaybackView::default()
    }

    /// How many events were kept so far.
    pub fn kept(&self) -> i64 {
        self.next
    }

    /// The event as the legacy API shows it, or `None` when the view leaves it out. The
    /// position is counted whether or not the caller keeps the result.
    pub fn convert(&mut self, event: &AuditEvent) -> Option<EventFields> {
        if dropped_from_playback(event.event_type()) {
            return None;
        }
        let n = self.next;
        self.next += 1;
        let mut fields = EventFields::from_event(event);
        fields.0.insert("ei".into(), Value::from(n));
        fields.0.insert(EVENT_CURSOR.into(), Value::from(n));
        Some(fields)
    }
}

/// Adds the legacy cursor to events already in playback order (legacy session files).
pub fn with_cursor(mut fields: EventFields, position: i64) -> EventFields {
    fields.0.insert(EVENT_CURSOR.into(), Value::from(position));
    fields
}

/// Collects the bytes `[offset, offset + max)` of a session's terminal output from print
/// events fed in order (each with its byte offset), holding no more than the window.
#[derive(Debug, Clone)]
pub struct ChunkWindow {
    start: u64,
    end: u64,
    out: Vec<u8>,
}

impl ChunkWindow {
    /// A window of `max` bytes from `offset`; `max` is capped at [`MAX_CHUNK_BYTES`].
    pub fn new(offset: u64, max: usize) -> ChunkWindow {
        let max = max.min(MAX_CHUNK_BYTES) as u64;
        ChunkWindow {
            start: offset,
            end: offset.saturating_add(max),
            out: Vec::new(),
        }
    }

    /// Feeds terminal bytes that start at byte `offset` of the session. Bytes before the
    /// window, or already collected, are skipped.
    pub fn feed(&mut self, offset: u64, data: &[u8]) {
        let have = self.start + self.out.len() as u64;
        let data_end = offset.saturating_add(data.len() as u64);
        if data_end <= have || offset >= self.end {
            return;
        }
        if offset > have {
            // A gap in the output (a damaged or partial recording): the window stops at it.
            self.end = have;
            return;
        }
        let from = (have - offset) as usize;
        let to = (data_end.min(self.end) - offset) as usize;
        self.out.extend_from_slice(&data[from..to]);
    }

    /// Whether the window is full (nothing more to read).
    pub fn is_full(&self) -> bool {
        self.start + self.out.len() as u64 >= self.end
    }

    /// Where the next wanted byte is.
    pub fn next_offset(&self) -> u64 {
        self.start + self.out.len() as u64
    }

    /// The bytes collected.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::{print, sample_session};

    #[test]
    fn view_renumbers_and_drops_enhanced_events() {
        let mut events = sample_session(3);
        let mut cmd: AuditEvent = crate::event::SessionCommand::default().into();
        if let Some(m) = cmd.metadata_mut() {
            m.type_ = event_type::SESSION_COMMAND.into();
            m.index = 2;
        }
        events.insert(2, cmd);
        for e in &mut events {
            let i = e.index();
            e.set_index(i + 10);
        }
        let mut view = PlaybackView::new();
        let got: Vec<EventFields> = events.iter().filter_map(|e| view.convert(e)).collect();
        assert_eq!(got.len(), events.len() - 1);
        for (n, f) in got.iter().enumerate() {
            assert_eq!(f.get_index(), n as i64);
            assert_eq!(f.get_int(EVENT_CURSOR), n as i64);
            assert_ne!(f.get_type(), event_type::SESSION_COMMAND);
            assert!(!f.0.contains_key("data"), "print data stays out: {f:?}");
        }
        assert_eq!(view.kept(), got.len() as i64);
    }

    #[test]
    fn chunk_window_takes_the_overlap() {
        let mut w = ChunkWindow::new(3, 5);
        w.feed(0, b"abcd");
        assert!(!w.is_full());
        w.feed(4, b"efgh");
        assert!(w.is_full());
        w.feed(8, b"ijk");
        assert_eq!(w.into_bytes(), b"defgh");

        // Capped at 5 MiB, and a gap ends the window.
        let mut w = ChunkWindow::new(0, usize::MAX);
        w.feed(0, b"ab");
        w.feed(5, b"zz");
        assert!(w.is_full());
        assert_eq!(w.into_bytes(), b"ab");

        // Past the end of the output: nothing.
        let end = crate::vectors::sample_output(2).len() as u64;
        let mut w = ChunkWindow::new(end, 10);
        for e in sample_session(2) {
            if let AuditEvent::SessionPrint(p) = &e {
                w.feed(p.offset as u64, &p.data);
            }
        }
        assert!(w.into_bytes().is_empty());
        let p = print(0, 0, 0, 0, b"hello");
        let mut w = ChunkWindow::new(1, 3);
        if let AuditEvent::SessionPrint(p) = &p {
            w.feed(p.offset as u64, &p.data);
        }
        assert_eq!(w.into_bytes(), b"ell");
    }
}
