//! Teleport's upload layouts on each cloud store (issue 18): every store keeps uploads the
//! way Teleport's own handler for that service does, so that a bucket or an account can be
//! shared with Teleport. [`crate::StoreUploader`] picks the layout from the storage URL.
//!
//! - [`gcs`]: `uploads/<id>/<sid>.upload`, `parts/<id>/<n>.part`, compose.
//! - [`azure`]: `session` and `inprogress` containers, Put Block From URL.

pub mod azure;
pub mod gcs;
