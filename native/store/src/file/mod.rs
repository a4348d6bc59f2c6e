//! Recordings on disk: read any supported format as a stream of events, write clean V1 files.

mod read;

pub use read::{EventStream, ReadError, open_path, open_reader};
