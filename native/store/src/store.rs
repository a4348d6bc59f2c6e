//! [`StoreUploader`]: the uploader every part of tapelog uses, whatever the store. It keeps
//! each store's uploads in the layout Teleport's handler for that store uses
//! ([`crate::layout`]), and still serves uploads stored earlier in tapelog's own layout
//! ([`ObjectsLayout`]) on the cloud stores, so that nothing in flight is stranded by an
//! upgrade:
//!
//! - new uploads always go to the store's layout;
//! - [`list_uploads`](MultipartUploader::list_uploads) lists both, oldest first;
//! - every other call goes to the layout that holds the upload. On S3 that is told by the id:
//!   tapelog's own layout names uploads with canonical UUIDs, which S3 does not hand out as
//!   `UploadId`s; the other stores' uploads are UUIDs in both layouts, and the old layout's
//!   marker decides (looked up once per upload and remembered).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::path::Path;
use tapelog_audit::clock::SharedClock;
use tapelog_core::codec::EncodedPart;
use tapelog_core::stream::PartContent;

#[cfg(feature = "azure")]
use crate::layout::azure::AzureLayout;
#[cfg(feature = "gcp")]
use crate::layout::gcs::GcsLayout;
use crate::layout::objects::ObjectsLayout;
#[cfg(feature = "s3")]
use crate::layout::s3::S3Layout;
use crate::{MultipartUploader, StreamPart, StreamUpload, UploadError};

/// Uploads of recordings in a store, in that store's layout (see the module documentation).
#[derive(Clone)]
pub struct StoreUploader {
    layout: Layout,
    /// Uploads stored in tapelog's own layout before the store had one of its own (`None` when
    /// that is the store's layout anyway).
    legacy: Option<ObjectsLayout>,
    /// Which uploads the legacy layout holds, where the id can't tell.
    held: Arc<Mutex<HashMap<String, bool>>>,
}

#[derive(Clone)]
enum Layout {
    Objects(ObjectsLayout),
    #[cfg(feature = "s3")]
    S3(Box<S3Layout>),
    #[cfg(feature = "gcp")]
    Gcs(Box<GcsLayout>),
    #[cfg(feature = "azure")]
    Azure(Box<AzureLayout>),
}

/// Where one call goes.
enum Target<'a> {
    Objects(&'a ObjectsLayout),
    #[cfg(feature = "s3")]
    S3(&'a S3Layout),
    #[cfg(feature = "gcp")]
    Gcs(&'a GcsLayout),
    #[cfg(feature = "azure")]
    Azure(&'a AzureLayout),
}

/// Uploads remembered as legacy or not, at most (then the memory starts over).
const HELD_CACHE: usize = 4096;

macro_rules! dispatch {
    ($target:expr, $l:ident => $call:expr) => {
        match $target {
            Target::Objects($l) => $call,
            #[cfg(feature = "s3")]
            Target::S3($l) => $call,
            #[cfg(feature = "gcp")]
            Target::Gcs($l) => $call,
            #[cfg(feature = "azure")]
            Target::Azure($l) => $call,
        }
    };
}

impl StoreUploader {
    fn from_layout(layout: Layout, legacy: Option<ObjectsLayout>) -> StoreUploader {
        StoreUploader {
            layout,
            legacy,
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Uploads under `prefix` of `store` in tapelog's own layout ([`ObjectsLayout`]);
    /// `url_base` names the place in recording URLs (e.g. `file:///var/lib/tapelog/records`).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url_base: &str) -> StoreUploader {
        Self::from_layout(
            Layout::Objects(ObjectsLayout::new(store, prefix, url_base)),
            None,
        )
    }

    /// An in-memory store (tests, `memory://`).
    pub fn memory() -> StoreUploader {
        Self::from_layout(Layout::Objects(ObjectsLayout::memory()), None)
    }

    /// The embedded default: a directory on local disk (created if missing), in Teleport's
    /// `filesessions` layout.
    pub fn local(dir: &std::path::Path) -> Result<StoreUploader, UploadError> {
        Ok(Self::from_layout(
            Layout::Objects(ObjectsLayout::local(dir)?),
            None,
        ))
    }

    /// Native S3 multipart uploads; `legacy` serves uploads stored earlier in tapelog's own
    /// layout under the same prefix.
    #[cfg(feature = "s3")]
    pub fn s3(layout: S3Layout, legacy: ObjectsLayout) -> StoreUploader {
        Self::from_layout(Layout::S3(Box::new(layout)), Some(legacy))
    }

    /// Teleport's GCS layout (compose); `legacy` serves uploads stored earlier in tapelog's
    /// own layout under the same prefix.
    #[cfg(feature = "gcp")]
    pub fn gcs(layout: GcsLayout, legacy: ObjectsLayout) -> StoreUploader {
        Self::from_layout(Layout::Gcs(Box::new(layout)), Some(legacy))
    }

    /// Teleport's Azure layout (two containers, Put Block From URL). No legacy layout:
    /// tapelog's own Azure layout stays on `az://` URLs, which name one container.
    #[cfg(feature = "azure")]
    pub fn azure(layout: AzureLayout) -> StoreUploader {
        Self::from_layout(Layout::Azure(Box::new(layout)), None)
    }

    /// The same reading wall time from `clock` (the system's by default).
    pub fn with_clock(mut self, clock: SharedClock) -> StoreUploader {
        self.layout = match self.layout {
            Layout::Objects(o) => Layout::Objects(o.with_clock(clock.clone())),
            #[cfg(feature = "s3")]
            Layout::S3(s) => Layout::S3(Box::new(s.with_clock(clock.clone()))),
            #[cfg(feature = "gcp")]
            Layout::Gcs(g) => Layout::Gcs(Box::new(g.with_clock(clock.clone()))),
            #[cfg(feature = "azure")]
            Layout::Azure(a) => Layout::Azure(Box::new(a.with_clock(clock.clone()))),
        };
        self.legacy = self.legacy.map(|l| l.with_clock(clock));
        self
    }

    /// The name of the store's layout: `objects` (tapelog's own: local disk, memory, `az://`),
    /// `s3-multipart`, `gcs-compose` or `azure-blocks`.
    pub fn layout_name(&self) -> &'static str {
        match &self.layout {
            Layout::Objects(_) => "objects",
            #[cfg(feature = "s3")]
            Layout::S3(_) => "s3-multipart",
            #[cfg(feature = "gcp")]
            Layout::Gcs(_) => "gcs-compose",
            #[cfg(feature = "azure")]
            Layout::Azure(_) => "azure-blocks",
        }
    }

    /// Teleport's Azure layout, when that is the store's (its completion counters).
    #[cfg(feature = "azure")]
    pub fn azure_layout(&self) -> Option<&AzureLayout> {
        match &self.layout {
            Layout::Azure(a) => Some(a),
            _ => None,
        }
    }

    /// The store where completed recordings are.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        match &self.layout {
            Layout::Objects(o) => o.store(),
            #[cfg(feature = "s3")]
            Layout::S3(s) => s.store(),
            #[cfg(feature = "gcp")]
            Layout::Gcs(g) => g.store(),
            #[cfg(feature = "azure")]
            Layout::Azure(a) => a.store(),
        }
    }

    /// The completed recording's object in [`store`](Self::store).
    pub fn recording_path(&self, session_id: &str) -> Path {
        match &self.layout {
            Layout::Objects(o) => o.recording_path(session_id),
            #[cfg(feature = "s3")]
            Layout::S3(s) => s.recording_path(session_id),
            #[cfg(feature = "gcp")]
            Layout::Gcs(g) => g.recording_path(session_id),
            #[cfg(feature = "azure")]
            Layout::Azure(a) => a.recording_path(session_id),
        }
    }

    /// The completion lock's object of an upload in tapelog's own layout
    /// (`multi/<upload>/complete.lock`).
    #[cfg_attr(
        not(any(feature = "s3", feature = "gcp", feature = "azure")),
        allow(unreachable_patterns)
    )]
    pub fn lock_path(&self, upload: &StreamUpload) -> Path {
        match (&self.layout, &self.legacy) {
            (Layout::Objects(o), _) => o.lock_path(upload),
            (_, Some(l)) => l.lock_path(upload),
            #[cfg(feature = "s3")]
            (Layout::S3(s), None) => s.recording_path(&upload.session_id),
            #[cfg(feature = "gcp")]
            (Layout::Gcs(g), None) => g.recording_path(&upload.session_id),
            #[cfg(feature = "azure")]
            (Layout::Azure(a), None) => a.recording_path(&upload.session_id),
        }
    }

    /// tapelog's own layout beside the store's (uploads stored before it had one).
    pub fn legacy(&self) -> Option<&ObjectsLayout> {
        self.legacy.as_ref()
    }

    fn native(&self) -> Target<'_> {
        match &self.layout {
            Layout::Objects(o) => Target::Objects(o),
            #[cfg(feature = "s3")]
            Layout::S3(s) => Target::S3(s),
            #[cfg(feature = "gcp")]
            Layout::Gcs(g) => Target::Gcs(g),
            #[cfg(feature = "azure")]
            Layout::Azure(a) => Target::Azure(a),
        }
    }

    /// The layout that holds `upload`.
    async fn target(&self, upload: &StreamUpload) -> Result<Target<'_>, UploadError> {
        let Some(legacy) = &self.legacy else {
            return Ok(self.native());
        };
        #[cfg(feature = "s3")]
        if let Layout::S3(_) = &self.layout {
            return Ok(if crate::check_id("upload id", &upload.id).is_ok() {
                Target::Objects(legacy)
            } else {
                self.native()
            });
        }
        let known = self
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(&upload.id).copied());
        let held = match known {
            Some(h) => h,
            None => {
                let h = legacy.holds(upload).await?;
                if let Ok(mut cache) = self.held.lock() {
                    if cache.len() >= HELD_CACHE {
                        cache.clear();
                    }
                    cache.insert(upload.id.clone(), h);
                }
                h
            }
        };
        Ok(if held {
            Target::Objects(legacy)
        } else {
            self.native()
        })
    }
}

impl MultipartUploader for StoreUploader {
    async fn create_upload(&self, session_id: &str) -> Result<StreamUpload, UploadError> {
        dispatch!(self.native(), l => l.create_upload(session_id).await)
    }

    async fn upload_part(
        &self,
        upload: &StreamUpload,
        number: u32,
        part: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        dispatch!(self.target(upload).await?, l => l.upload_part(upload, number, part).await)
    }

    async fn reserve_part(&self, upload: &StreamUpload, number: u32) -> Result<(), UploadError> {
        dispatch!(self.target(upload).await?, l => l.reserve_part(upload, number).await)
    }

    async fn list_parts(&self, upload: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        dispatch!(self.target(upload).await?, l => l.list_parts(upload).await)
    }

    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        let mut uploads = dispatch!(self.native(), l => l.list_uploads().await)?;
        if let Some(legacy) = &self.legacy {
            uploads.extend(legacy.list_uploads().await?);
            crate::layout::sort_oldest_first(&mut uploads);
        }
        Ok(uploads)
    }

    async fn complete_upload(
        &self,
        upload: &StreamUpload,
        parts: &[StreamPart],
    ) -> Result<(), UploadError> {
        dispatch!(self.target(upload).await?, l => l.complete_upload(upload, parts).await)
    }

    async fn abort_upload(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        dispatch!(self.target(upload).await?, l => l.abort_upload(upload).await)
    }

    fn recording_url(&self, session_id: &str) -> String {
        dispatch!(self.native(), l => l.recording_url(session_id))
    }

    async fn read_part(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<Option<bytes::Bytes>, UploadError> {
        dispatch!(self.target(upload).await?, l => l.read_part(upload, number).await)
    }

    async fn part_content(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<PartContent, UploadError> {
        dispatch!(self.target(upload).await?, l => l.part_content(upload, number).await)
    }
}
