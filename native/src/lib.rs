//! # tapelog
//!
//! The native side of tapelog: it drives `tapelog-core` with real files and (as the project
//! grows) tokio, object stores, the daemon and the Fluentd exporter. The `tapelog` binary is a
//! thin command line over this library.
//!
//! - [`recording`]: read any recording file (ProtoStream V1/V2, legacy tar) as a stream of
//!   events; write clean recordings.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod recording;
