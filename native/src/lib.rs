//! # tapelog
//!
//! The native side of tapelog: it drives `tapelog-core` with real files and (as the project
//! grows) tokio, object stores, the daemon and the Fluentd exporter. The `tapelog` binary is a
//! thin command line over this library.
//!
//! - [`recording`]: read any recording file (ProtoStream V1/V2, legacy tar) as a stream of
//!   events; write clean recordings.
//! - [`upload`]: multipart uploads of recordings (upstream's `MultipartUploader`) over
//!   `object_store`, with upstream's file layout.
//! - [`stream`]: the tokio driver of the core stream machine (timers, bounded uploads with
//!   retries, completion, status).
//! - [`audit`]: the file audit log (day files, symlink, sidecar indexes, search with resumable
//!   pages), the search limiter, and `AuditLogger` (emit, search, close) with the discard and
//!   writer logs.
//! - [`session`]: the session writer (terminal bytes and session events into a stream, with
//!   backoff and recovery of failed streams, status and done signal), and the streamers over
//!   streamers (callback, reporting, tee, discard, streamer-and-emitter).
//! - [`client`]: the client of `tapelog serve` (every endpoint of docs/api.md), and the
//!   session streamer and emitter that work through it.
//! - [`server`]: `tapelog serve`, the HTTP API (docs/api.md); [`tls`]: its rustls
//!   configuration, client-certificate identities and certificate generation.
//! - [`pty`]: pseudo-terminals, window sizes, raw mode; [`record`]: a command recorded on a PTY
//!   (`tapelog record`).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod audit;
pub mod client;
pub mod complete;
pub mod emit;
pub mod forward;
pub mod metrics;
pub mod playback;
pub mod pty;
pub mod record;
pub mod recording;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
pub mod upload;
