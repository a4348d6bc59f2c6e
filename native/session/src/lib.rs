//! # tapelog-session: the session writer and its streamers
//!
//! The session writer: terminal bytes and session events into a recording stream, as
//! upstream's `SessionWriter`, driving the core's rules (`tapelog_core::session`: preparer,
//! intake and backoff, replay buffer).
//!
//! - [`SessionWriter`] (`writer.rs`): the background task, recovery of failed streams,
//!   backoff, stats, status and the done signal, complete and close.
//! - `io.rs`: its [`std::io::Write`] and [`tokio::io::AsyncWrite`] front ends.
//! - [`AuditStreamer`] / [`SessionStream`] (`streamer.rs`): what it writes through, with
//!   [`UploaderStreamer`] over [`tapelog_store::stream::RecordingStream`] and any uploader.
//! - Streamers over other streamers, after upstream's (`wrappers.rs`): [`CallbackStreamer`]
//!   (a hook on every event), [`ReportingStreamer`] (`session.upload` after complete),
//!   [`TeeStreamer`] (session events also to an emitter), [`StreamerAndEmitter`] (one
//!   [`StreamEmitter`]); and [`DiscardStreamer`] (`discard.rs`: keeps nothing).
//!
//! See `docs/session-writer.md`.
//!
//! Depends on `tapelog-core`, `tapelog-audit` (emitters) and `tapelog-store` (the stream
//! driver, uploaders; no cloud features).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod discard;
mod io;
mod streamer;
mod wrappers;
mod writer;

pub use discard::{DiscardStream, DiscardStreamer};
pub use streamer::{
    AuditStreamer, SessionStream, SharedError, StreamFailure, UploaderStreamer, classify,
};
pub use wrappers::{
    CallbackStream, CallbackStreamer, CreateHook, RecordHook, RecordingUrl, ReportingStream,
    ReportingStreamer, ResumeHook, StreamEmitter, StreamerAndEmitter, TeeStats, TeeStream,
    TeeStreamer, UploadReport,
};
pub use writer::{
    Clock, FINISH_TIMEOUT, QUEUE_CAPACITY, SessionWriter, SessionWriterConfig, StopCause,
    UidSource, WriterError, WriterState, WriterStatus,
};
