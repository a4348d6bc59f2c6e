//! The metrics of one server (or one log, one tool): a [`Metrics`] value owns a
//! `prometheus-client` registry and its counters and gauge. Whoever builds a server or a log
//! creates one and hands it (an `Arc`) to the file log, the emitters and the streams that
//! count; [`Metrics::render`] writes them for a `/metrics` endpoint. Two servers in one
//! process count apart.
//!
//! The names are upstream Teleport's, which Go's client exposes in the Prometheus text format
//! 0.0.4: a counter's sample has the counter's own name. `prometheus-client` writes
//! OpenMetrics, where a counter's sample gets a `_total` suffix and the exposition an `# EOF`
//! line; so counters here are [`Counter`]s, which encode their sample under their own name,
//! and [`Metrics::render`] leaves the `# EOF` out.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// A monotonically increasing counter whose sample carries its own name (no `_total`).
#[derive(Debug, Clone, Default)]
pub struct Counter(prometheus_client::metrics::counter::Counter<u64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The 0.0.4 sample line: `name value`, as Go's client writes a counter.
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A value that goes up and down.
pub type Gauge = prometheus_client::metrics::gauge::Gauge<i64, AtomicI64>;

/// Counts one open thing on a [`Gauge`] for as long as it lives.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Adds one to `gauge` until the guard is dropped.
    pub fn new(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The registry and every metric in it. Its fields are handles: counting through one counts
/// in the registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Audit events a checking emitter passed on and its destination accepted.
    pub audit_emitted_events: Counter,
    /// Audit events that could not be emitted: refused by the checks, dropped by a full
    /// [`AsyncEmitter`](crate::emit::AsyncEmitter) buffer, or failed in the emitter behind it
    /// (upstream's `audit_failed_emit_events`).
    pub audit_failed_emit_events: Counter,
    /// Audit events an async emitter dropped because its buffer was full (also counted in
    /// `audit_failed_emit_events`, as upstream).
    pub audit_dropped_events: Counter,
    /// Events trimmed to fit the audit log's line limit (upstream's
    /// `MetricStoredTrimmedEvents`, `teleport_audit_stored_trimmed_events`).
    pub audit_stored_trimmed_events: Counter,
    /// Events a search trimmed because one alone was over the page cap (upstream's
    /// `MetricQueriedTrimmedEvents`, `teleport_audit_queried_trimmed_events`).
    pub audit_queried_trimmed_events: Counter,
    /// Recording parts stored.
    pub stream_parts_uploaded: Counter,
    /// Part uploads that failed and were tried again.
    pub stream_part_retries: Counter,
    /// Bytes of recording parts stored (headers and padding included).
    pub stream_uploaded_bytes: Counter,
    /// Recording streams open.
    pub streams_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under its name and help text.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        // The registry appends a full stop to each help text.
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let audit_emitted_events = counter(
            "audit_emitted_events",
            "Number of audit events emitted (accepted by their destination)",
        );
        let audit_failed_emit_events = counter(
            "audit_failed_emit_events",
            "Number of times emitting an audit event failed",
        );
        let audit_dropped_events = counter(
            "audit_dropped_events",
            "Number of audit events dropped because the emitter's buffer was full",
        );
        let audit_stored_trimmed_events = counter(
            "teleport_audit_stored_trimmed_events",
            "Number of events that were trimmed before being stored",
        );
        let audit_queried_trimmed_events = counter(
            "teleport_audit_queried_trimmed_events",
            "Number of events that were trimmed before being returned from a query",
        );
        let stream_parts_uploaded = counter(
            "stream_parts_uploaded",
            "Number of recording parts uploaded",
        );
        let stream_part_retries = counter(
            "stream_part_retries",
            "Number of recording part uploads retried after a failure",
        );
        let stream_uploaded_bytes =
            counter("stream_uploaded_bytes", "Bytes of recording parts uploaded");
        let streams_open = Gauge::default();
        registry.register(
            "streams_open",
            "Number of recording streams open",
            streams_open.clone(),
        );
        Metrics {
            registry,
            audit_emitted_events,
            audit_failed_emit_events,
            audit_dropped_events,
            audit_stored_trimmed_events,
            audit_queried_trimmed_events,
            stream_parts_uploaded,
            stream_part_retries,
            stream_uploaded_bytes,
            streams_open,
        }
    }

    /// A new set in an `Arc`, to share.
    pub fn shared() -> Arc<Metrics> {
        Arc::new(Metrics::new())
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text_with_upstream_names() {
        let m = Metrics::new();
        m.audit_stored_trimmed_events.add(2);
        m.streams_open.inc();
        let text = m.render();
        assert!(text.starts_with(
            "# HELP audit_emitted_events Number of audit events emitted (accepted by their \
             destination).\n# TYPE audit_emitted_events counter\naudit_emitted_events 0\n"
        ));
        assert!(text.contains(
            "# HELP audit_failed_emit_events Number of times emitting an audit event failed.\n\
             # TYPE audit_failed_emit_events counter\naudit_failed_emit_events 0\n"
        ));
        assert!(
            text.contains("\nteleport_audit_stored_trimmed_events 2\n"),
            "{text}"
        );
        assert!(
            text.ends_with("# TYPE streams_open gauge\nstreams_open 1\n"),
            "{text}"
        );
        assert!(!text.contains("_total") && !text.contains("EOF"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 9);
    }

    #[test]
    fn two_sets_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.audit_emitted_events.inc();
        {
            let _open = GaugeGuard::new(&b.streams_open);
            assert_eq!(b.streams_open.get(), 1);
        }
        assert_eq!(a.audit_emitted_events.get(), 1);
        assert_eq!(b.audit_emitted_events.get(), 0);
        assert_eq!((a.streams_open.get(), b.streams_open.get()), (0, 0));
    }
}
