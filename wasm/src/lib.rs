//! # tapelog-wasm
//!
//! tapelog's recording decoder for the browser (wasm-bindgen). It only converts types: every
//! rule of the format, of the player's timeline, of the summary and of the exports lives in
//! `tapelog-core`, so the browser and the command line decode, time and export the same way.
//!
//! JavaScript API (names as JS sees them):
//! - [`Decoder`]: push `Uint8Array` chunks of any size, pull events (`next`, `nextBatch`),
//!   `stats()`, `summary()`. Events are plain objects with Teleport's JSON field names;
//!   a `print` event also has `data`, its bytes as a `Uint8Array` (Teleport's JSON leaves
//!   them out).
//! - [`decodeRecording`](decode_recording)`(bytes)`: `{events, stats, summary, error}` in one
//!   call.
//! - [`PlayerDecoder`]: the same stream as a player needs it: terminal output and resizes with
//!   their times (session timeline and idle-capped timeline) in typed arrays, the other events
//!   as objects, the summary; [`Checkpoint`]s at part boundaries, from which a player can
//!   decode again (`PlayerDecoder.resume`) to seek back without keeping all the output.
//! - [`PlayClock`]: the player's clock (speed, pause, seek) of `tapelog play`, with the time
//!   passed in as milliseconds (`performance.now()`); the player's idle-capped timeline is
//!   already in [`PlayerDecoder`]'s frames.
//! - [`Exporter`], [`toJsonLines`](to_json_lines), [`toAsciicast`](to_asciicast): the
//!   command line's exports, streaming or in one call.
//! - [`warmUpRecording`](warm_up_recording)`()`: a small recording to decode once when a
//!   worker starts, so that the first real batch does not pay for compiling the decoder.
//!
//! Errors are JS `Error`s (`name` `"RecordingError"`) whose message is the native one
//! (`at byte N (part P): …`) with `offset`, `part` and `kind` properties; an encrypted
//! recording has kind `"EncryptedRecording"`. Nothing here panics on any input (the core is
//! total and fuzzed, and this crate has no `unwrap` on data).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod clock;
mod convert;
mod decoder;
mod export;
mod player;
#[cfg(feature = "serde-bench")]
mod serde_bench;
mod warm_up;

pub use clock::PlayClock;
pub use decoder::{Decoder, decode_recording};
pub use export::{Exporter, to_asciicast, to_json_lines};
pub use player::{Batch, Batcher, Checkpoint, Frames, PlayerDecoder};
#[cfg(feature = "serde-bench")]
pub use serde_bench::SerdeBench;
pub use warm_up::warm_up_recording;
