//! Turning events into the formats people, players and tools read, shared by the command line
//! and the browser so that both give the same bytes and the same timing.
//!
//! - [`export_event`] / [`TextFormat`]: Teleport's JSON lines and the raw terminal output.
//! - [`asciicast`]: asciicast v2 (asciinema), streaming ([`AsciicastWriter`]).
//! - [`frames`]: a recording as frames on one timeline ([`Framer`]: output and resizes).
//! - [`timing`]: idle gaps capped ([`IdleCap`]) and a player's clock ([`PlayClock`]: speed,
//!   pause, seek).
//! - [`size`]: [`TerminalSize`], upstream's `COLS:ROWS`.
//! - [`utf8`]: [`Utf8Decoder`], incremental UTF-8 with U+FFFD for invalid bytes.

pub mod asciicast;
pub mod frames;
pub mod size;
pub mod timing;
pub mod utf8;

pub use asciicast::{AsciicastWriter, MAX_HEADER_WAIT, to_asciicast};
pub use frames::{Frame, FrameKind, Framer};
pub use size::{SizeError, TerminalSize};
pub use timing::{IdleCap, PlayClock, SEEK_STEP_MS};
pub use utf8::Utf8Decoder;

use crate::event::AuditEvent;

/// A line-oriented export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// One event per line, exactly Teleport's JSON (`tsh play --format=json`).
    JsonLines,
    /// The terminal output: print data in order, nothing else.
    Terminal,
}

/// Appends the export of one event to `out`.
pub fn export_event(format: TextFormat, event: &AuditEvent, out: &mut Vec<u8>) {
    match format {
        TextFormat::JsonLines => {
            let mut s = String::with_capacity(256);
            crate::json::ToJson::write_json(event, &mut s);
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        }
        TextFormat::Terminal => {
            if let Some(d) = event.print_data() {
                out.extend_from_slice(d);
            }
        }
    }
}

/// All events as JSON lines.
pub fn to_json_lines(events: &[AuditEvent]) -> String {
    let mut out = Vec::new();
    for e in events {
        export_event(TextFormat::JsonLines, e, &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}
