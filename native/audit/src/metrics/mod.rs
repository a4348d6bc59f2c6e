//! Process-wide counters and gauges in the Prometheus text format. Emitters, streams and the
//! daemon count here; [`render`] writes every counter for a `/metrics` endpoint.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

/// Events trimmed to fit the audit log's line limit (upstream's `MetricStoredTrimmedEvents`,
/// `teleport_audit_stored_trimmed_events`).
pub static AUDIT_STORED_TRIMMED_EVENTS: Counter = Counter::new(
    "teleport_audit_stored_trimmed_events",
    "Number of events that were trimmed before being stored.",
);

/// Events a search trimmed because one alone was over the page cap (upstream's
/// `MetricQueriedTrimmedEvents`, `teleport_audit_queried_trimmed_events`).
pub static AUDIT_QUERIED_TRIMMED_EVENTS: Counter = Counter::new(
    "teleport_audit_queried_trimmed_events",
    "Number of events that were trimmed before being returned from a query.",
);

/// Audit events a checking emitter passed on and its destination accepted.
pub static AUDIT_EMITTED_EVENTS: Counter = Counter::new(
    "audit_emitted_events",
    "Number of audit events emitted (accepted by their destination).",
);

/// Audit events an async emitter dropped because its buffer was full (also counted in
/// `audit_failed_emit_events`, as upstream).
pub static AUDIT_DROPPED_EVENTS: Counter = Counter::new(
    "audit_dropped_events",
    "Number of audit events dropped because the emitter's buffer was full.",
);

/// Recording parts stored.
pub static STREAM_PARTS_UPLOADED: Counter = Counter::new(
    "stream_parts_uploaded",
    "Number of recording parts uploaded.",
);

/// Part uploads that failed and were tried again.
pub static STREAM_PART_RETRIES: Counter = Counter::new(
    "stream_part_retries",
    "Number of recording part uploads retried after a failure.",
);

/// Bytes of recording parts stored (headers and padding included).
pub static STREAM_UPLOADED_BYTES: Counter = Counter::new(
    "stream_uploaded_bytes",
    "Bytes of recording parts uploaded.",
);

/// Recording streams open in this process.
pub static STREAMS_OPEN: Gauge = Gauge::new("streams_open", "Number of recording streams open.");

/// Every counter of this process.
pub fn counters() -> [&'static Counter; 8] {
    [
        &AUDIT_EMITTED_EVENTS,
        &AUDIT_FAILED_EMIT_EVENTS,
        &AUDIT_DROPPED_EVENTS,
        &AUDIT_STORED_TRIMMED_EVENTS,
        &AUDIT_QUERIED_TRIMMED_EVENTS,
        &STREAM_PARTS_UPLOADED,
        &STREAM_PART_RETRIES,
        &STREAM_UPLOADED_BYTES,
    ]
}

/// Every gauge of this process.
pub fn gauges() -> [&'static Gauge; 1] {
    [&STREAMS_OPEN]
}

/// A value that goes up and down.
#[derive(Debug)]
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    value: AtomicI64,
}

impl Gauge {
    /// A gauge at zero.
    pub const fn new(name: &'static str, help: &'static str) -> Gauge {
        Gauge {
            name,
            help,
            value: AtomicI64::new(0),
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one away.
    pub fn dec(&self) {
        self.value.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Counts one open thing on a [`Gauge`] for as long as it lives.
#[derive(Debug)]
pub struct GaugeGuard(&'static Gauge);

impl GaugeGuard {
    /// Adds one to `gauge` until the guard is dropped.
    pub fn new(gauge: &'static Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// All counters and gauges in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::new();
    for c in counters() {
        let _ = writeln!(out, "# HELP {} {}", c.name, c.help);
        let _ = writeln!(out, "# TYPE {} counter", c.name);
        let _ = writeln!(out, "{} {}", c.name, c.get());
    }
    for g in gauges() {
        let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
        let _ = writeln!(out, "# TYPE {} gauge", g.name);
        let _ = writeln!(out, "{} {}", g.name, g.get());
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
            .find(|l| l.starts_with("teleport_audit_stored_trimmed_events "))
            .unwrap_or_default();
        let n: u64 = line.rsplit(' ').next().unwrap_or("").parse().unwrap_or(0);
        assert!(n >= before + 2, "{text}");
    }
}
