//! Where `tapelog forward` sends events: the interface every output implements.
//!
//! Two outputs exist, chosen by the scheme of `--fluentd-url`: Fluentd's `in_http`
//! (`https://`, `http://`: one POST per batch, the body a JSON array, success is exactly
//! HTTP 200) and Fluentd's Forward protocol (`forward://`, `forward+tls://`: MessagePack
//! entries, at-least-once through `ack`). The exporter's pipeline only sees this trait.

use futures::future::BoxFuture;

/// Which stream of events a batch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// The audit log: `--fluentd-url` (in_http takes the tag from its path).
    Audit,
    /// One session's events: `--fluentd-session-url` + `.<sid>.log`.
    Session(&'a str),
}

/// Why a batch was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying unchanged: no connection, a timeout, a TLS failure, a 5xx or 429, a
    /// missing or wrong `ack`.
    #[error("{0}")]
    Transient(String),
    /// Refused for good: sending the same batch again fails again (in_http's 400 for invalid
    /// JSON or an unparseable `time`, 413 for a body over its limit). The pipeline splits the
    /// batch to find the event at fault and dead-letters it.
    #[error("{0}")]
    Rejected(String),
}

/// A destination for exported events.
pub trait Output: Send + Sync + 'static {
    /// Sends `events` (each one event's JSON object, Teleport's field names, no newline) as
    /// one batch, in order. `Ok` only when the receiver accepted all of them.
    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        events: &'a [String],
    ) -> BoxFuture<'a, Result<(), SendError>>;

    /// Where [`Destination`] goes, for messages (`https://host:8888/test.log`, or the
    /// Forward tag); never holds a secret.
    fn describe(&self, to: Destination<'_>) -> String;
}
