//! # tapelog-events
//!
//! Teleport's audit event model, on its own so that the 4 MB of code generated from it is
//! compiled once and not again with every change to the codec or the stream machines.
//! `build.rs` generates the event types from `proto/events.proto` and the type/code tables
//! from `schema/*.tsv` (`build/codegen.rs`, `build/tables.rs`). Depends on thiserror,
//! serde_json and base64 only; sans-IO like `tapelog-core`, which re-exports every module here
//! under the same path (`tapelog_core::event`, …).
//!
//! - [`event`]: every Teleport event type, [`event::AuditEvent`], JSON, `EventFields`.
//! - [`proto`], [`json`]: the wire and JSON primitives under them.
//! - `random` (feature `random`): random values of every type, for property tests and fuzz seeds.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod event;
pub mod json;
pub mod proto;
#[cfg(feature = "random")]
pub mod random;

pub use event::{AuditEvent, EventError, EventFields};
pub use proto::Timestamp;
