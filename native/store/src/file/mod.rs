//! Recordings on disk: read any supported format as a stream of events, write clean V1 files.

mod events;
mod parallel;
mod read;

pub use events::{Events, ParallelEvents, available_jobs, open_path_jobs};
pub use parallel::{ParallelRead, PartDecoder, read_parallel};

pub use read::{EventStream, ReadError, open_path, open_reader, read_prints};
