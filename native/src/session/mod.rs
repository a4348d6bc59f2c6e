//! The session writer: terminal bytes and session events into a recording stream, as
//! upstream's `SessionWriter`, driving the core's rules (`tapelog_core::session`: preparer,
//! intake and backoff, replay buffer).
//!
//! - [`SessionWriter`] (`writer.rs`): the background task, recovery of failed streams,
//!   backoff, stats, complete and close.
//! - `io.rs`: its [`std::io::Write`] and [`tokio::io::AsyncWrite`] front ends.
//! - [`AuditStreamer`] / [`SessionStream`] (`streamer.rs`): what it writes through, with
//!   [`UploaderStreamer`] over [`crate::stream::RecordingStream`] and any uploader.
//!
//! See `docs/session-writer.md`.

mod io;
mod streamer;
mod writer;

pub use streamer::{
    AuditStreamer, SessionStream, SharedError, StreamFailure, UploaderStreamer, classify,
};
pub use writer::{
    Clock, FINISH_TIMEOUT, QUEUE_CAPACITY, SessionWriter, SessionWriterConfig, StopCause,
    UidSource, WriterError,
};
