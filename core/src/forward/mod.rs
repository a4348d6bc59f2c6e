//! The rules of `tapelog forward` (the Fluentd exporter), without I/O.
//!
//! - [`window`]: the in-flight window of batches and the committed position: batches get
//!   sequence numbers and the committed position only advances over a contiguous prefix of
//!   accepted batches, so a crash replays at most the in-flight window and never skips. The
//!   in_http exporter keeps one request in flight per source (order per source), which is
//!   the window of one; the tracker is the rule for an output that pipelines several
//!   batches of one source (acknowledged out of order).
//! - [`backoff`]: decorrelated-jitter backoff (randomness comes in as an argument).
//! - [`state`]: the exporter's stored state (start time, cursor, last id, window time,
//!   per-session index), the encoding of its files, and upstream's start-time guard.
//! - [`batch`]: request bodies (a JSON array of event objects) cut to a byte limit, and the
//!   bisection of a rejected batch down to the event at fault.
//! - [`filter`]: `--types`, `--skip-event-types`, `--skip-session-types`.
//!
//! The native crate (`tapelog::forward`) drives these with tokio, files and HTTP.

pub mod backoff;
pub mod batch;
pub mod filter;
pub mod state;
pub mod window;

pub use backoff::Backoff;
pub use batch::{Bisector, Verdict, body, split_by_bytes};
pub use filter::TypeFilter;
pub use state::{Position, StartTimeError, check_start_time};
pub use window::CommitTracker;
