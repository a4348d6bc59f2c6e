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
