//! Process-wide counters in the Prometheus text format. Emitters, streams and (later) the
//! daemon count here; [`render`] writes every counter for a `/metrics` endpoint.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Counter {
    /// A counter starting at zero.
    pub const fn new(name: &'static str, help: &'static str) -> Counter {
        Counter {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Audit events that could not be emitted: refused by the checks, dropped by a full
/// [`AsyncEmitter`](crate::emit::AsyncEmitter) buffer, or failed in the emitter behind it
/// (upstream's `audit_failed_emit_events`).
pub static AUDIT_FAILED_EMIT_EVENTS: Counter = Counter::new(
    "audit_failed_emit_events",
    "Number of times emitting an audit event failed.",
);

/// Events trimmed to fit the audit log's line limit (upstream's `audit_stored_trimmed_events`).
pub static AUDIT_STORED_TRIMMED_EVENTS: Counter = Counter::new(
    "audit_stored_trimmed_events",
    "Number of events that were trimmed before being stored.",
);

/// Every counter of this process.
pub fn counters() -> [&'static Counter; 2] {
    [&AUDIT_FAILED_EMIT_EVENTS, &AUDIT_STORED_TRIMMED_EVENTS]
}

/// All counters in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::new();
    for c in counters() {
        let _ = writeln!(out, "# HELP {} {}", c.name, c.help);
        let _ = writeln!(out, "# TYPE {} counter", c.name);
        let _ = writeln!(out, "{} {}", c.name, c.get());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text() {
        let before = AUDIT_STORED_TRIMMED_EVENTS.get();
        AUDIT_STORED_TRIMMED_EVENTS.add(2);
        let text = render();
        assert!(text.contains("# TYPE audit_failed_emit_events counter\n"));
        let line = text
            .lines()
            .find(|l| l.starts_with("audit_stored_trimmed_events "))
            .unwrap_or_default();
        let n: u64 = line.rsplit(' ').next().unwrap_or("").parse().unwrap_or(0);
        assert!(n >= before + 2, "{text}");
    }
}
