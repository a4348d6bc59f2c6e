//! The recording codec (sans-IO): Teleport's ProtoStream parts and the legacy tar format.
//!
//! - [`writer`]: events → parts (`[24-byte header][gzip member of records][zero padding]`).
//! - [`reader`]: bytes (pushed in chunks of any size) → events, with upstream's duplicate and
//!   order counters.
//! - [`framed`]: framed records outside a part (a records request body), their indexes.
//! - [`recording`]: any supported format, pushed in chunks ([`RecordingReader`]).
//! - [`detect`]: which format a file is (`DetectFormat`).
//! - [`legacy`]: pre-4.4 tar recordings (index + gzipped events + gzipped chunks).
//! - [`parallel`]: a recording cut at its part boundaries, parts decoded independently and
//!   merged in order with the reader's cross-part rules.
//! - [`deflate`]: the two deflate back ends.
//! - `crc` (private): the gzip members' CRC-32, crc32fast natively and zlib-rs' in wasm.

mod crc;
pub mod deflate;
pub mod detect;
mod error;
pub mod framed;
pub mod header;
pub mod legacy;
pub mod parallel;
pub mod print;
pub mod reader;
pub mod recording;
pub mod writer;

pub use deflate::Backend;
pub use detect::{Format, detect_format};
pub use error::{CodecError, ErrorKind};
pub use framed::{FrameError, FramedRecord, FramedRecords, frame_record, record_index};
pub use header::PartHeader;
pub use print::PrintView;
pub use reader::{
    Polled, PolledFields, PolledPrint, PolledRecord, ProtoReader, ReadAll, ReaderStats,
    ResumePoint, read_all,
};
pub use recording::RecordingReader;
pub use writer::{
    EncodedPart, MIN_UPLOAD_BYTES, PartBuilder, RecordingWriter, WriterConfig, check_record,
    encode_record, encode_recording,
};
