//! [`Framer`]: a recording's events as what a player shows, on one session timeline.

use crate::codec::PrintView;
use crate::event::AuditEvent;
use crate::proto::Timestamp;

use super::size::TerminalSize;

/// What a player does at one moment of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind<'a> {
    /// Terminal output (a `print` event's data).
    Output(&'a [u8]),
    /// The terminal takes a new size (a `resize` event).
    Resize(TerminalSize),
}

/// One frame: what happens, and when, in milliseconds from the session start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Milliseconds from the start of the session; never below the previous frame's.
    pub time_ms: i64,
    /// What happens.
    pub kind: FrameKind<'a>,
}

/// Turns a recording's events, in order, into [`Frame`]s.
///
/// The timeline is upstream's player's: a `print` is at its own delay (`ms`, counted by the
/// session writer from the first print); any other event is at its time minus the time of
/// the first event of the recording (normally `session.start`). Times never go back: a frame
/// earlier than the previous one is moved to it. `resize` events with a size that does not
/// parse are left out, as are all other event types; the session's first size is in
/// [`Framer::initial_size`] once `session.start` has been seen.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    start: Option<Timestamp>,
    last_ms: i64,
    initial: Option<TerminalSize>,
    session_id: Option<String>,
}

impl Framer {
    /// A framer before the first event.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// The time of the first event (the session start), once seen.
    pub fn start(&self) -> Option<Timestamp> {
        self.start
    }

    /// The size `session.start` names, if it was seen and names one.
    pub fn initial_size(&self) -> Option<TerminalSize> {
        self.initial
    }

    /// The session id of the first event that has one.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Time of the last frame given, in milliseconds from the session start.
    pub fn last_ms(&self) -> i64 {
        self.last_ms
    }

    /// The frame of `event`, if it shows anything.
    pub fn frame<'a>(&mut self, event: &'a AuditEvent) -> Option<Frame<'a>> {
        let start = *self.start.get_or_insert(event.time());
        if self.session_id.is_none() && !event.session_id().is_empty() {
            self.session_id = Some(event.session_id().to_string());
        }
        let (time_ms, kind) = match event {
            AuditEvent::SessionPrint(p) => (p.delay_milliseconds, FrameKind::Output(&p.data)),
            AuditEvent::Resize(r) => {
                let size = TerminalSize::parse(&r.terminal_size).ok()?;
                (millis_between(start, event.time()), FrameKind::Resize(size))
            }
            AuditEvent::SessionStart(s) => {
                if self.initial.is_none() {
                    self.initial = TerminalSize::parse(&s.terminal_size).ok();
                }
                return None;
            }
            _ => return None,
        };
        self.last_ms = self.last_ms.max(time_ms);
        Some(Frame {
            time_ms: self.last_ms,
            kind,
        })
    }

    /// The frame of a print read in place: the same as [`frame`](Self::frame) of the typed
    /// print.
    pub fn frame_print<'a>(&mut self, p: &PrintView<'a>) -> Frame<'a> {
        self.start.get_or_insert(p.time);
        self.last_ms = self.last_ms.max(p.delay_ms);
        Frame {
            time_ms: self.last_ms,
            kind: FrameKind::Output(p.data),
        }
    }
}

/// Whole milliseconds from `a` to `b` (0 when `b` is earlier).
fn millis_between(a: Timestamp, b: Timestamp) -> i64 {
    let ms = (b.unix_nanos() - a.unix_nanos()) / 1_000_000;
    ms.clamp(0, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::sample_session;

    #[test]
    fn sample_session_frames() {
        let events = sample_session(3);
        let mut f = Framer::new();
        let frames: Vec<Frame<'_>> = events.iter().filter_map(|e| f.frame(e)).collect();
        assert_eq!(f.initial_size(), TerminalSize::new(80, 25));
        assert_eq!(f.session_id(), Some(crate::vectors::SESSION_ID));
        assert_eq!(frames.len(), 4);
        assert_eq!(
            frames[0],
            Frame {
                time_ms: 70,
                kind: FrameKind::Resize(TerminalSize {
                    cols: 168,
                    rows: 44
                })
            }
        );
        assert_eq!(frames[1].time_ms, 100);
        assert_eq!(frames[1].kind, FrameKind::Output(&crate::vectors::line(0)));
        assert_eq!((frames[2].time_ms, frames[3].time_ms), (107, 114));
    }

    #[test]
    fn time_never_goes_back_and_bad_sizes_are_skipped() {
        let mut events = sample_session(2);
        // A print whose delay is earlier than the resize before it.
        if let AuditEvent::SessionPrint(p) = &mut events[2] {
            p.delay_milliseconds = 10;
        }
        let mut bad = events[1].clone();
        if let AuditEvent::Resize(r) = &mut bad {
            r.terminal_size = "wide".into();
        }
        events.insert(2, bad);
        let mut f = Framer::new();
        let times: Vec<i64> = events
            .iter()
            .filter_map(|e| f.frame(e))
            .map(|fr| fr.time_ms)
            .collect();
        assert_eq!(times, vec![70, 70, 107]);
    }
}
