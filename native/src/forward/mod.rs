//! `tapelog forward`: the Fluentd exporter (upstream's `teleport-event-handler`).
//!
//! Reads audit events in order from a tapelog data directory or a `tapelog serve`, and the
//! session events of every uploaded session, and sends them to Fluentd.

pub mod configure;
pub mod fluent;
pub mod output;
