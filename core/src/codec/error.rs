//! Codec errors: every one says what was wrong and at which byte of the input.

use thiserror::Error;

use crate::event::EventError;

/// What was wrong with a recording.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// The input ended inside a part header.
    #[error("truncated part header: the input ends {have} bytes into a {need}-byte header")]
    TruncatedHeader {
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A format version other than 1 or 2.
    #[error("unsupported format version {0} (tapelog reads versions 1 and 2)")]
    UnsupportedVersion(u64),
    /// A V2 part with the encrypted flag: tapelog has no key to decrypt it.
    #[error(
        "encrypted recording (format version 2 with the encrypted flag): decrypt it with Teleport first"
    )]
    EncryptedRecording,
    /// A part size beyond any real part.
    #[error("part size {0} is larger than the 5 GiB maximum: corrupt header")]
    PartTooLarge(u64),
    /// A padding size beyond any real part.
    #[error("padding size {0} is larger than the 5 GiB maximum: corrupt header")]
    PaddingTooLarge(u64),
    /// The input ended inside a part's payload.
    #[error("truncated part: the input ends {missing} bytes before the end of the payload")]
    TruncatedPart {
        /// Payload bytes missing.
        missing: u64,
    },
    /// The input ended inside a part's padding.
    #[error("data truncated, expected to read {expected} bytes of padding, but got {got}")]
    TruncatedPadding {
        /// Padding size from the header.
        expected: u64,
        /// Padding bytes present.
        got: u64,
    },
    /// The payload is not gzip.
    #[error("invalid gzip header: {0}")]
    BadGzipHeader(&'static str),
    /// The deflate data is corrupt. The error's offset is the last byte decompression read
    /// (where it noticed the damage; the damaged bytes are at or before it). (The deflate back ends' own wording is left
    /// out: it differs between back ends and with where the input was split.)
    #[error(
        "corrupt compressed data: the part's gzip stream cannot be decompressed here (the bytes are damaged)"
    )]
    BadDeflate,
    /// The gzip trailer does not match the data.
    #[error("gzip checksum mismatch (crc32 {expected:08x} in trailer, {actual:08x} computed)")]
    ChecksumMismatch {
        /// CRC in the trailer.
        expected: u32,
        /// CRC of the data.
        actual: u32,
    },
    /// The gzip trailer's length does not match the data.
    #[error("gzip length mismatch ({expected} in trailer, {actual} decompressed)")]
    LengthMismatch {
        /// Length in the trailer.
        expected: u32,
        /// Length decompressed (mod 2^32).
        actual: u32,
    },
    /// The payload ended inside the gzip member.
    #[error("gzip member is cut short: the part's payload ends before the gzip stream does")]
    TruncatedGzip,
    /// A record header announces 0 bytes.
    #[error("unexpected message size 0")]
    ZeroMessageSize,
    /// A record header announces more than 64 KiB.
    #[error("message size {0} exceeds the maximum of 65536 bytes")]
    MessageTooLarge(u32),
    /// The decompressed payload ends inside a record.
    #[error("record is cut short: {missing} of its bytes are missing at the end of the part")]
    TruncatedRecord {
        /// Bytes missing.
        missing: usize,
    },
    /// A record is not a valid event.
    #[error("invalid event record: {0}")]
    Event(EventError),
    /// Not a recording at all.
    #[error("not a recording: {0}")]
    UnknownFormat(String),
    /// A legacy tar recording could not be read.
    #[error("legacy recording: {0}")]
    Legacy(String),
}

/// A recording that could not be read, with the position of the damage.
///
/// For damage in the compressed bytes (headers, gzip, deflate, trailers) `offset` is the byte
/// of the input where it was found. Records live inside the part's compressed data, where no
/// input byte can be named the same way however the input is chunked, so for a bad record
/// `offset` is the start of its part and `record` says where in the part's decompressed data
/// the record starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at byte {offset} (part {part}{}): {kind}", RecordNote(*.record))]
pub struct CodecError {
    /// Offset in the input where the bad data starts (for a bad record: its part's header).
    pub offset: u64,
    /// Zero-based part number.
    pub part: u64,
    /// For a bad record: the offset of its length prefix in the part's decompressed data.
    pub record: Option<u64>,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl CodecError {
    /// An error at input byte `offset` of part `part` (not inside a record).
    pub fn at(offset: u64, part: u64, kind: ErrorKind) -> CodecError {
        CodecError {
            offset,
            part,
            record: None,
            kind,
        }
    }
}

/// `", record at byte N of its decompressed data"` when there is a record position.
struct RecordNote(Option<u64>);

impl std::fmt::Display for RecordNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(at) => write!(f, ", record at byte {at} of the part's decompressed data"),
            None => Ok(()),
        }
    }
}
