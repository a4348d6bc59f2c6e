//! Teleport's upload layouts on each cloud store (issue 18): every store keeps uploads the
//! way Teleport's own handler for that service does, so that a bucket or an account can be
//! shared with Teleport. [`crate::StoreUploader`] picks the layout from the storage URL.
//!
//! - [`objects`]: tapelog's own layout, parts as plain objects (local disk, memory, and
//!   uploads stored earlier on the cloud stores).
//! - [`s3`]: native multipart uploads of `<prefix>/<sid>.tar` (feature `s3`).
//! - [`gcs`]: `uploads/<id>/<sid>.upload`, `parts/<id>/<n>.part`, compose.
//! - [`azure`]: `session` and `inprogress` containers, Put Block From URL.

pub mod azure;
pub mod gcs;
pub mod objects;
#[cfg(feature = "s3")]
pub mod s3;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tapelog_core::codec::EncodedPart;
use tapelog_core::stream::MAX_PARTS;

use crate::{StreamPart, StreamUpload, UploadError};

/// Refuses a part number outside 1..=10000 (every layout's rule, as S3's).
pub(crate) fn check_part(number: u32) -> Result<(), UploadError> {
    if (1..=MAX_PARTS).contains(&number) {
        Ok(())
    } else {
        Err(UploadError::InvalidPart(number))
    }
}

/// A part number read from an object name (`<n>` or `<n>.part`), if it is one in 1..=10000.
pub(crate) fn parse_part(n: &str) -> Option<u32> {
    n.parse().ok().filter(|n| (1..=MAX_PARTS).contains(n))
}

/// Stores part `number` as the object `path` (the layouts whose parts are plain objects).
pub(crate) async fn put_part(
    store: &dyn ObjectStore,
    path: &Path,
    number: u32,
    part: &EncodedPart,
    now_ms: i64,
) -> Result<StreamPart, UploadError> {
    let r = store.put(path, PutPayload::from(part.to_vec())).await?;
    Ok(StreamPart {
        number,
        etag: r.e_tag.unwrap_or_default(),
        last_modified_ms: now_ms,
    })
}

/// Uploads oldest first (then by id): the order `list_uploads` promises.
pub(crate) fn sort_oldest_first(uploads: &mut [StreamUpload]) {
    uploads.sort_by(|a, b| (a.initiated_ms, &a.id).cmp(&(b.initiated_ms, &b.id)));
}

/// The parts given to `complete_upload`, in number order, each number once and in 1..=10000.
#[cfg_attr(not(any(feature = "s3", feature = "azure")), allow(dead_code))]
pub(crate) fn sorted_parts(parts: &[StreamPart]) -> Result<Vec<StreamPart>, UploadError> {
    let mut parts = parts.to_vec();
    parts.sort_by_key(|p| p.number);
    parts.dedup_by_key(|p| p.number);
    for p in &parts {
        check_part(p.number)?;
    }
    Ok(parts)
}
