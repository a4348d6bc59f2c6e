//! # tapelog-core
//!
//! The sans-IO core of tapelog: Teleport's audit event model, the ProtoStreamV1 recording
//! codec and (later) the stream state machines. It performs no I/O, spawns nothing, reads no
//! clock and builds for `wasm32-unknown-unknown`: bytes and time come in as arguments, bytes
//! and actions go out. The tokio (`tapelog`) and browser (`tapelog-wasm`) crates drive it.
//!
//! - [`event`]: every Teleport event type, [`event::AuditEvent`], JSON, `EventFields`
//!   (re-exported from `tapelog-events`, the crate of the generated event model, with
//!   [`proto`], [`json`] and, with feature `random`, `random`).
//! - [`codec`]: recording parts (reader, writer, format detection, legacy tar).
//! - [`stream`]: the recording stream state machine; [`complete`]: the upload completer's rules.
//! - [`fluentd`]: Fluentd's Forward protocol (MessagePack messages and acks) for `tapelog forward`.
//! - [`sample`]: the sample session `tapelog sample` writes; `vectors` (feature `testkit`):
//!   the test vectors built from it, for tests, benches and fuzz seeds.
//! - [`proto`], [`json`]: the wire and JSON primitives under them.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod codec;
pub mod complete;
pub mod export;
pub mod fluentd;
pub mod forward;
pub mod playback;
pub mod sample;
pub mod session;
pub mod stream;
#[cfg(feature = "testkit")]
pub mod vectors;

#[cfg(feature = "random")]
pub use tapelog_events::random;
pub use tapelog_events::{event, json, proto};

pub use event::{AuditEvent, EventError, EventFields};
pub use proto::Timestamp;
