//! Which session events a tee stream also sends to the audit log (upstream's `TeeStream`):
//! every recorded event except the ones that would flood the global log with terminal detail.

use crate::event::event_type;

/// Event types a tee stream records but does not emit: terminal output (`print`), window
/// resizes (`resize`), file access inside the session (`session.disk`), and events without a
/// type. Upstream's `TeeStream.EmitAuditEvent` skips exactly these.
pub const TEE_SKIPPED_TYPES: [&str; 4] = [
    event_type::RESIZE,
    event_type::SESSION_DISK,
    event_type::SESSION_PRINT,
    "",
];

/// Whether a tee stream passes an event of `event_type` on to its emitter.
pub fn tee_emits(event_type: &str) -> bool {
    !TEE_SKIPPED_TYPES.contains(&event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_detail_stays_in_the_recording() {
        for t in ["print", "resize", "session.disk", ""] {
            assert!(!tee_emits(t), "{t:?} must not be emitted");
        }
    }

    #[test]
    fn session_events_go_to_the_audit_log() {
        for t in [
            "session.start",
            "session.end",
            "session.join",
            "session.leave",
            "session.data",
            "session.command",
            "session.network",
            "desktop.recording",
            "app.session.request",
        ] {
            assert!(tee_emits(t), "{t:?} must be emitted");
        }
    }
}
