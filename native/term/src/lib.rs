//! # tapelog-term: commands recorded on pseudo-terminals
//!
//! - [`pty`]: pseudo-terminals, window sizes, raw mode.
//! - [`record`]: a command recorded on a PTY (`tapelog record`), through the session writer.
//!
//! Depends on `tapelog-core`, `tapelog-audit` (emitters), `tapelog-session` and `rustix`
//! (terminals, processes); its only `unsafe` code is in `sys` (what rustix cannot do safely).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod pty;
pub mod record;
mod sys;
