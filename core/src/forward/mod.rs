//! The rules of `tapelog forward` (the Fluentd exporter), without I/O.
//!
//! - [`backoff`]: decorrelated-jitter backoff (randomness comes in as an argument).
//! - [`state`]: the exporter's stored state (start time, cursor, last id, window time,
//!   per-session index), the encoding of its files, and upstream's start-time guard.
//! - [`batch`]: request bodies (a JSON array of event objects) cut to a byte limit, and the
//!   bisection of a rejected batch down to the event at fault.
//! - [`filter`]: `--types`, `--skip-event-types`, `--skip-session-types`.
//! - [`lock`]: auto-lock (`--lock-*`): failed logins per login, the lock to upsert.
//! - [`export`]: the bulk export mode (dates, backlog, chunk cursor files).
//! - [`missing`]: missing recordings: upstream's retry and give-up rules and state file.
//!
//! The native crate (`tapelog-forward`) drives these with tokio, files and HTTP.

pub mod backoff;
pub mod batch;
pub mod export;
pub mod filter;
pub mod lock;
pub mod missing;
pub mod state;

pub use backoff::Backoff;
pub use batch::{Bisector, Verdict, body, split_by_bytes};
pub use filter::TypeFilter;
/// Where a session's events go: upstream's `--fluentd-session-url` + `.<sid>.log` (in_http
/// takes the path as the tag, so `session.<sid>.log` matches `<match session.*.log>`); the
/// Forward output applies the same rule to its tag.
pub fn session_target(base: &str, session_id: &str) -> String {
    format!("{base}.{session_id}.log")
}

pub use state::{Position, StartTimeError, check_start_time};
