//! The session writer's rules (sans-IO): what Teleport's `SessionWriter` and `Preparer`
//! (`lib/events/session_writer.go`, `preparer.go`) decide, with time passed in.
//!
//! - [`Preparer`]: fills in a session event before it is recorded (upstream's
//!   `checkAndSetEventFields`, session id, server id and namespace, the event index) and gives
//!   `print` events their chunk index, byte offset and delay; [`Preparer::print_events`] turns
//!   terminal bytes into `print` events that each fit a recording record.
//! - [`Intake`]: the caller side of the writer: accepted / lost / slow-write counts and the
//!   backoff that makes a writer drop events instead of blocking its caller when the stream
//!   is stuck.
//! - [`ReplayBuffer`]: the events a stream has not yet confirmed as durable, to be sent
//!   again on a resumed stream, and [`RecoveryPolicy`], how often and how patiently a failed
//!   stream is reopened.
//! - [`tee_emits`]: which recorded events a tee stream also sends to the audit log.
//!
//! The tokio writer (`tapelog::session`) owns the waiting, the channel and the stream; every
//! decision above is taken here, with `now` as an argument.

mod intake;
mod preparer;
mod replay;
mod tee;

pub use intake::{
    Admission, BACKOFF_DURATION_MS, BACKOFF_TIMEOUT_MS, Intake, IntakeConfig, IntakeError,
    SLOW_WRITE_WARN_RATIO, WriterStats,
};
pub use preparer::{DEFAULT_NAMESPACE, Preparer, PreparerConfig, PreparerConfigError};
pub use replay::{RecoveryPolicy, Reopen, ReplayBuffer};
pub use tee::{TEE_SKIPPED_TYPES, tee_emits};

#[cfg(test)]
mod tests;
