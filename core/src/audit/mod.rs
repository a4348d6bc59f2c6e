//! The file audit log's rules (upstream's `lib/events/filelog.go`), without any I/O.
//!
//! The native `FileLog` writes and searches day files; everything it decides lives here, so
//! that it is tested without a disk:
//!
//! - [`files`]: day file names (`2024-01-15.00:00:00.log`), the rotation period, which files a
//!   search reads and which directories are searched;
//! - [`lines`]: the line written for an event (Teleport's JSON, trimmed to the scanner limit
//!   or refused) and the splitting of a log into complete lines;
//! - [`index`]: the sidecar index of a day file: fixed-size entries in sort order, their
//!   encoding with checksums, merging new entries in, binary search;
//! - [`key`]: page keys (the sort position of the last returned event plus its checkpoint) and
//!   upstream's bare checkpoints; the total sort order of a search;
//! - [`page`]: page assembly (the limit and the 1 MiB cap);
//! - [`merge`]: the k-way merge of sorted sources (one per day file);
//! - [`condition`]: the predicate of session searches;
//! - [`feed`]: the arrival-order feed (`FileLog::read_feed`): its key (per server directory
//!   and day file, the byte offset read up to) and which file ranges to read next;
//! - [`limiter`]: the token bucket of upstream's `SearchEventsLimiter`.
//!
//! [`pg`] holds the rules of the PostgreSQL/CockroachDB audit log (upstream's `pgevents`).

pub mod condition;
pub mod feed;
pub mod files;
pub mod index;
pub mod key;
pub mod limiter;
pub mod lines;
pub mod merge;
pub mod page;
pub mod pg;

use thiserror::Error;

use crate::event::event_type;

/// The page size when the caller asks for 0 (upstream's `EventsIterationLimit`).
pub const EVENTS_ITERATION_LIMIT: usize = 500;
/// The largest page a caller may ask for (upstream's `EventsMaxIterationLimit`).
pub const EVENTS_MAX_ITERATION_LIMIT: usize = 10_000;
/// A page holds less than this many bytes of event JSON (upstream's `MaxEventBytesInResponse`).
pub const MAX_EVENT_BYTES_IN_RESPONSE: usize = 1024 * 1024;
/// The longest line upstream's reader accepts (`bufio.MaxScanTokenSize`); longer events are
/// trimmed on write.
pub const MAX_SCAN_TOKEN_SIZE: usize = 64 * 1024;
/// The event types a session search returns (upstream's `SessionRecordingEvents`).
pub const SESSION_RECORDING_EVENTS: [&str; 3] = [
    event_type::SESSION_END,
    event_type::WINDOWS_DESKTOP_SESSION_END,
    event_type::DATABASE_SESSION_END,
];

/// The order of search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Order {
    /// Oldest first.
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// A search request that can't be served.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// The limit is over [`EVENTS_MAX_ITERATION_LIMIT`].
    #[error("limit {limit} is over the maximum of {max} events per page")]
    LimitTooLarge {
        /// The limit asked for.
        limit: usize,
        /// The maximum.
        max: usize,
    },
}

/// The page size for a requested `limit`: 0 means [`EVENTS_ITERATION_LIMIT`]; more than
/// [`EVENTS_MAX_ITERATION_LIMIT`] is refused.
pub fn effective_limit(limit: usize) -> Result<usize, QueryError> {
    match limit {
        0 => Ok(EVENTS_ITERATION_LIMIT),
        l if l > EVENTS_MAX_ITERATION_LIMIT => Err(QueryError::LimitTooLarge {
            limit: l,
            max: EVENTS_MAX_ITERATION_LIMIT,
        }),
        l => Ok(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(effective_limit(0), Ok(500));
        assert_eq!(effective_limit(7), Ok(7));
        assert_eq!(effective_limit(10_000), Ok(10_000));
        assert_eq!(
            effective_limit(10_001),
            Err(QueryError::LimitTooLarge {
                limit: 10_001,
                max: 10_000
            })
        );
    }
}
