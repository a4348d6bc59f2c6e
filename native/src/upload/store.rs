//! [`MultipartUploader`] over any `object_store` store, with upstream's file-session layout:
//!
//! ```text
//! multi/<upload-id>/<session-id>/upload        marker: the upload exists (its time = Initiated)
//! multi/<upload-id>/<session-id>/<n>.part      part n (header, gzip member, padding)
//! multi/<upload-id>/complete.lock              held while one process completes the upload
//! <session-id>.tar                             the completed recording (parts joined in order)
//! ```
//!
//! On the local file system this is exactly the directory layout Teleport's `filesessions`
//! handler uses (it only looks at `*.part` files, so the marker does not disturb it).
//! Decisions: completing an upload with no parts writes no recording (as the S3 and GCS
//! handlers); a lock older than [`LOCK_STALE_MS`] is taken to be a crashed completer's and
//! taken over.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tapelog_core::codec::EncodedPart;
use tapelog_core::stream::MAX_PARTS;

use super::{MultipartUploader, StreamPart, StreamUpload, UploadError, check_id};

/// A completion lock older than this belongs to a process that died.
pub const LOCK_STALE_MS: i64 = 2 * 60 * 1000;

/// Multipart uploads kept as objects under a prefix of any store.
#[derive(Clone)]
pub struct StoreUploader {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url_base: String,
}

impl StoreUploader {
    /// Uploads under `prefix` of `store`; `url_base` names the place in recording URLs (e.g.
    /// `file:///var/lib/tapelog/records`).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url_base: &str) -> StoreUploader {
        StoreUploader {
            store,
            prefix: Path::from(prefix),
            url_base: url_base.trim_end_matches('/').to_string(),
        }
    }

    /// An in-memory store (tests, `memory://`).
    pub fn memory() -> StoreUploader {
        StoreUploader::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory://",
        )
    }

    /// The embedded default: a directory on local disk (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<StoreUploader, UploadError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            UploadError::Store(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(StoreUploader::new(
            Arc::new(fs),
            "",
            &format!("file://{}", dir.display()),
        ))
    }

    fn path(&self, rest: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rest.split('/') {
            p = p.clone().join(part);
        }
        p
    }

    fn upload_dir(&self, u: &StreamUpload) -> Path {
        self.path(&format!("multi/{}/{}", u.id, u.session_id))
    }

    fn part_path(&self, u: &StreamUpload, n: u32) -> Path {
        self.path(&format!("multi/{}/{}/{n}.part", u.id, u.session_id))
    }

    fn marker(&self, u: &StreamUpload) -> Path {
        self.path(&format!("multi/{}/{}/upload", u.id, u.session_id))
    }

    fn lock(&self, u: &StreamUpload) -> Path {
        self.path(&format!("multi/{}/complete.lock", u.id))
    }

    /// The completed recording's object.
    pub fn recording_path(&self, session_id: &str) -> Path {
        self.path(&format!("{session_id}.tar"))
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn check(u: &StreamUpload) -> Result<(), UploadError> {
        check_id("upload id", &u.id)?;
        check_id("session id", &u.session_id)
    }

    async fn take_lock(&self, u: &StreamUpload) -> Result<(), UploadError> {
        let lock = self.lock(u);
        let create = || {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            self.store
                .put_opts(&lock, PutPayload::from_static(b"lock"), opts)
        };
        match create().await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let meta = self.store.head(&lock).await?;
                let age = now_ms() - meta.last_modified.timestamp_millis();
                if age < LOCK_STALE_MS {
                    return Err(UploadError::Locked(u.id.clone()));
                }
                self.store.delete(&lock).await?;
                match create().await {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        Err(UploadError::Locked(u.id.clone()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Fails with [`UploadError::NotFound`] unless the upload's marker exists.
    async fn require_upload(&self, u: &StreamUpload) -> Result<(), UploadError> {
        match self.store.head(&self.marker(u)).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(UploadError::NotFound(u.id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_prefix(&self, prefix: &Path) -> Result<(), UploadError> {
        let objects: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        for o in objects {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    super::now_ms() as i64
}

fn part_number(name: &str) -> Option<u32> {
    let n = name.strip_suffix(".part")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|n| (1..=MAX_PARTS).contains(n))
}

impl MultipartUploader for StoreUploader {
    async fn create_upload(&self, session_id: &str) -> Result<StreamUpload, UploadError> {
        check_id("session id", session_id)?;
        let mut upload = StreamUpload {
            id: uuid::Uuid::new_v4().to_string(),
            session_id: session_id.to_string(),
            initiated_ms: 0,
        };
        self.store
            .put(
                &self.marker(&upload),
                PutPayload::from(session_id.as_bytes().to_vec()),
            )
            .await?;
        upload.initiated_ms = now_ms();
        Ok(upload)
    }

    async fn upload_part(
        &self,
        upload: &StreamUpload,
        number: u32,
        part: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        Self::check(upload)?;
        if !(1..=MAX_PARTS).contains(&number) {
            return Err(UploadError::InvalidPart(number));
        }
        self.require_upload(upload).await?;
        let r = self
            .store
            .put(
                &self.part_path(upload, number),
                PutPayload::from(part.to_vec()),
            )
            .await?;
        Ok(StreamPart {
            number,
            etag: r.e_tag.unwrap_or_default(),
            last_modified_ms: now_ms(),
        })
    }

    async fn reserve_part(&self, upload: &StreamUpload, number: u32) -> Result<(), UploadError> {
        Self::check(upload)?;
        if !(1..=MAX_PARTS).contains(&number) {
            return Err(UploadError::InvalidPart(number));
        }
        Ok(())
    }

    async fn list_parts(&self, upload: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        Self::check(upload)?;
        let dir = self.upload_dir(upload);
        let objects: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        if objects.is_empty() {
            return Err(UploadError::NotFound(upload.id.clone()));
        }
        let mut parts: Vec<StreamPart> = objects
            .iter()
            .filter_map(|o| {
                Some(StreamPart {
                    number: part_number(o.location.filename()?)?,
                    etag: o.e_tag.clone().unwrap_or_default(),
                    last_modified_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect();
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        let multi = self.path("multi");
        let objects: Vec<_> = self.store.list(Some(&multi)).try_collect().await?;
        let mut uploads = Vec::new();
        for o in objects {
            // multi/<upload-id>/<session-id>/upload
            let parts: Vec<_> = o.location.parts().collect();
            let n = parts.len();
            if n < 4 || parts[n - 1].as_ref() != "upload" {
                continue;
            }
            let (id, sid) = (parts[n - 3].as_ref(), parts[n - 2].as_ref());
            if check_id("upload id", id).is_err() || check_id("session id", sid).is_err() {
                continue;
            }
            uploads.push(StreamUpload {
                id: id.to_string(),
                session_id: sid.to_string(),
                initiated_ms: o.last_modified.timestamp_millis(),
            });
        }
        uploads.sort_by(|a, b| (a.initiated_ms, &a.id).cmp(&(b.initiated_ms, &b.id)));
        Ok(uploads)
    }

    async fn complete_upload(
        &self,
        upload: &StreamUpload,
        parts: &[StreamPart],
    ) -> Result<(), UploadError> {
        Self::check(upload)?;
        self.require_upload(upload).await?;
        self.take_lock(upload).await?;
        let result = async {
            let mut numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
            numbers.sort_unstable();
            numbers.dedup();
            if !numbers.is_empty() {
                let mut out = self
                    .store
                    .put_multipart(&self.recording_path(&upload.session_id))
                    .await?;
                for n in numbers {
                    let bytes = match self.store.get(&self.part_path(upload, n)).await {
                        Ok(r) => r.bytes().await?,
                        Err(e) => {
                            let _ = out.abort().await;
                            return Err(e.into());
                        }
                    };
                    if let Err(e) = out.put_part(PutPayload::from(bytes)).await {
                        let _ = out.abort().await;
                        return Err(e.into());
                    }
                }
                out.complete().await?;
            }
            Ok::<(), UploadError>(())
        }
        .await;
        match result {
            Ok(()) => {
                // The marker goes first: from here on the upload is no longer listed.
                self.store.delete(&self.marker(upload)).await?;
                self.delete_prefix(&self.path(&format!("multi/{}", upload.id)))
                    .await
            }
            Err(e) => {
                let _ = self.store.delete(&self.lock(upload)).await;
                Err(e)
            }
        }
    }

    async fn abort_upload(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        Self::check(upload)?;
        self.delete_prefix(&self.path(&format!("multi/{}", upload.id)))
            .await
    }

    fn recording_url(&self, session_id: &str) -> String {
        format!("{}/{session_id}", self.url_base)
    }
}
