//! # tapelog-store: recordings in stores
//!
//! Multipart uploads of recordings: the uploader interface (upstream's `MultipartUploader`)
//! and [`StoreUploader`], which keeps uploads in the store's [`layout`]: Teleport's per-store
//! layouts (S3 multipart, GCS compose, Azure blocks), or tapelog's own `objects` layout
//! (Teleport's `filesessions` on local disk), which still serves older uploads on S3 and GCS.
//!
//! - [`stream`]: the tokio driver of the core's stream machine (timers, bounded uploads with
//!   retries, completion, status).
//! - [`complete`]: the upload completer (abandoned uploads, session trackers).
//! - [`playback`]: recordings of completed sessions, read back from a store.
//! - [`file`]: reading recording files (ProtoStream V1/V2, legacy tar) as events.
//!
//! Cloud back ends are crate features: `s3`, `azure`, `gcp` (none by default); a storage
//! URL whose back end this build lacks is refused with [`StorageError::NoBackend`].
//!
//! Depends on `tapelog-core` and `tapelog-audit` (emitters, metrics).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod complete;
pub mod file;
pub mod playback;
pub mod stream;

mod hooked;
pub mod layout;
mod store;
#[cfg(test)]
mod test_recordings;
pub mod url;

use std::future::Future;

use tapelog_core::codec::EncodedPart;
use tapelog_core::stream::PartContent;
use thiserror::Error;

pub use hooked::{Call, Hooked};
pub use store::StoreUploader;
pub use url::{StorageError, StorageOptions, open_storage};

/// A multipart upload of one session's recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamUpload {
    /// Upload id (a UUID).
    pub id: String,
    /// Session id (a UUID).
    pub session_id: String,
    /// When the upload was created, milliseconds since the Unix epoch (0 if unknown).
    pub initiated_ms: i64,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPart {
    /// 1-based part number.
    pub number: u32,
    /// The store's tag for the part (may be empty).
    pub etag: String,
    /// When it was written, milliseconds since the Unix epoch (0 if unknown).
    pub last_modified_ms: i64,
}

/// What can go wrong talking to a store.
#[derive(Debug, Error)]
pub enum UploadError {
    /// A session or upload id that is not a UUID, or an upload id that is neither a UUID nor
    /// a store's id ([`check_upload_id`]); this also stops path tricks such as `..`.
    #[error("invalid {what} {value:?}: expected a UUID{}", if *what == "upload id" { " or a store's upload id (1 to 1024 of A-Z a-z 0-9 . _ ~ -)" } else { "" })]
    InvalidId {
        /// "session id" or "upload id".
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// A part number outside 1..=10000.
    #[error("invalid part number {0}: parts are numbered 1 to 10000")]
    InvalidPart(u32),
    /// The upload does not exist (completed, aborted or never created).
    #[error("upload {0} not found")]
    NotFound(String),
    /// Another process is completing the upload right now.
    #[error("upload {0} is being completed by another process")]
    Locked(String),
    /// The store failed.
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    /// A call object_store does not make (S3 multipart listing, GCS compose, Azure Put Block
    /// From URL) failed.
    #[error("{service} {call}: {message}")]
    Service {
        /// "S3", "GCS" or "Azure".
        service: &'static str,
        /// The service's name of the call (`CompleteMultipartUpload`...).
        call: &'static str,
        /// What the service (or the transport) said.
        message: String,
    },
}

/// The system clock's wall milliseconds since the Unix epoch (0 if the clock is before it),
/// for callers that have no [`Clock`](tapelog_audit::clock::Clock) of their own.
pub fn now_ms() -> u64 {
    use tapelog_audit::clock::Clock as _;
    tapelog_audit::clock::SystemClock.unix_ms()
}

/// Checks an upload id: a canonical UUID (tapelog's and Teleport's own ids on disk, GCS and
/// Azure), or the id an object store gave (an S3 `UploadId`): 1 to 1024 characters of
/// `A-Z a-z 0-9 . _ ~ -`, not `.` or `..`, so that it is safe in URL paths and object names.
pub fn check_upload_id(value: &str) -> Result<(), UploadError> {
    let token = (1..=1024).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        && value != "."
        && value != "..";
    if token {
        Ok(())
    } else {
        Err(UploadError::InvalidId {
            what: "upload id",
            value: value.to_string(),
        })
    }
}

/// Checks that `value` is a UUID in canonical form.
pub fn check_id(what: &'static str, value: &str) -> Result<(), UploadError> {
    match uuid::Uuid::try_parse(value) {
        Ok(u) if u.hyphenated().to_string() == value.to_ascii_lowercase() => Ok(()),
        _ => Err(UploadError::InvalidId {
            what,
            value: value.to_string(),
        }),
    }
}

/// Upstream's `MultipartUploader`: everything a stream and the upload completer need from a
/// store. Every call works from any process (state lives in the store).
pub trait MultipartUploader: Send + Sync + 'static {
    /// Starts an upload for `session_id`.
    fn create_upload(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<StreamUpload, UploadError>> + Send;
    /// Stores part `number` (header, payload and padding).
    fn upload_part(
        &self,
        upload: &StreamUpload,
        number: u32,
        part: &EncodedPart,
    ) -> impl Future<Output = Result<StreamPart, UploadError>> + Send;
    /// Upstream's disk-space check before a part is written; a no-op for most stores.
    fn reserve_part(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> impl Future<Output = Result<(), UploadError>> + Send;
    /// The parts of an upload, sorted by number.
    fn list_parts(
        &self,
        upload: &StreamUpload,
    ) -> impl Future<Output = Result<Vec<StreamPart>, UploadError>> + Send;
    /// Uploads not yet completed, oldest first.
    fn list_uploads(&self) -> impl Future<Output = Result<Vec<StreamUpload>, UploadError>> + Send;
    /// Joins `parts` (in number order; gaps allowed) into the session's recording.
    fn complete_upload(
        &self,
        upload: &StreamUpload,
        parts: &[StreamPart],
    ) -> impl Future<Output = Result<(), UploadError>> + Send;
    /// Drops an upload and its parts.
    fn abort_upload(
        &self,
        upload: &StreamUpload,
    ) -> impl Future<Output = Result<(), UploadError>> + Send;
    /// Where the completed recording of `session_id` is (upstream's `GetUploadMetadata`).
    fn recording_url(&self, session_id: &str) -> String;
    /// The stored bytes of part `number`, where the store can give them back; `None` where it
    /// can't (resuming then trusts the listed parts as they are, see
    /// [`tapelog_core::stream::ResumePlan`]).
    fn read_part(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> impl Future<Output = Result<Option<bytes::Bytes>, UploadError>> + Send {
        let _ = (upload, number);
        async { Ok(None) }
    }
    /// The event indexes stored part `number` holds, for a resume
    /// ([`tapelog_core::stream::ResumePlan`]). By default the part is read back
    /// ([`read_part`](Self::read_part)) and scanned; a store whose parts can't be read back
    /// (S3 multipart) answers from what it wrote beside the part, or
    /// [`PartContent::Unread`] when it knows nothing (an upload another tool started).
    fn part_content(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> impl Future<Output = Result<PartContent, UploadError>> + Send {
        async move {
            Ok(match self.read_part(upload, number).await? {
                Some(bytes) => PartContent::scan(&bytes),
                None => PartContent::Unread,
            })
        }
    }
}
