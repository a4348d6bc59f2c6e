//! [`MultipartUploader`] over any `object_store` store, with upstream's file-session layout
//! (tapelog's layout on every store before issue 18; still the layout of local disk and
//! memory, and of uploads stored that way earlier on S3, GCS and Azure):
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
//! Every store keeps the same layout, parts included, as plain objects: no store's native
//! multipart state is used between calls, so any call works from any process or host and
//! parts smaller than S3's 5 MiB minimum are fine everywhere.
//!
//! Decisions: completing an upload with no parts writes no recording (as the S3 and GCS
//! handlers); a lock older than [`LOCK_STALE_MS`] is taken to be a crashed completer's and
//! taken over. Completion joins the parts with a server-side copy (one part) or a multipart
//! upload in chunks of at least [`MIN_JOIN_CHUNK`] (see `docs/storage.md`).

use std::collections::HashMap;
use std::sync::Arc;
use tapelog_audit::clock::SharedClock;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tapelog_core::codec::EncodedPart;

use crate::{MultipartUploader, StreamPart, StreamUpload, UploadError, check_id};

/// A completion lock older than this belongs to a process that died.
pub const LOCK_STALE_MS: i64 = 2 * 60 * 1000;

/// Multipart uploads kept as objects under a prefix of any store.
#[derive(Clone)]
pub struct ObjectsLayout {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url_base: String,
    /// Upload and part times, the age of a completion lock (wall time).
    clock: SharedClock,
}

impl ObjectsLayout {
    fn now_ms(&self) -> i64 {
        self.clock.unix_ms() as i64
    }

    /// The same reading wall time from `clock` (the system's by default).
    pub fn with_clock(mut self, clock: SharedClock) -> ObjectsLayout {
        self.clock = clock;
        self
    }

    /// Uploads under `prefix` of `store`; `url_base` names the place in recording URLs (e.g.
    /// `file:///var/lib/tapelog/records`).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url_base: &str) -> ObjectsLayout {
        ObjectsLayout {
            store,
            prefix: Path::from(prefix),
            url_base: if url_base.ends_with("://") {
                url_base.to_string()
            } else {
                url_base.trim_end_matches('/').to_string()
            },
            clock: tapelog_audit::clock::system(),
        }
    }

    /// An in-memory store (tests, `memory://`).
    pub fn memory() -> ObjectsLayout {
        ObjectsLayout::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory://",
        )
    }

    /// The embedded default: a directory on local disk (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<ObjectsLayout, UploadError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            UploadError::Store(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(ObjectsLayout::new(
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

    /// The completion lock's object of an upload (`multi/<upload>/complete.lock`).
    pub fn lock_path(&self, upload: &StreamUpload) -> Path {
        self.lock(upload)
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

    /// Takes the completion lock: a create-if-absent (`PutMode::Create`) of the lock object.
    /// That is atomic on the local disk (hard link), in memory, on Azure (`If-None-Match: *`,
    /// azurite included), GCS (`ifGenerationMatch=0`) and AWS S3 (`If-None-Match: *`).
    /// s3s-fs, the S3 test server, honours `If-None-Match: *` but checks and then writes,
    /// so completers racing within milliseconds can all take it. That is accepted rather
    /// than worked around with a weaker scheme: the lock only saves duplicated work, because
    /// every completer writes the same bytes from the same immutable parts, deletion is
    /// idempotent, and a completer that finds the parts gone fails with
    /// [`UploadError::NotFound`] (which upstream's completer skips).
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
                let meta = match self.store.head(&lock).await {
                    Ok(m) => m,
                    // Its holder let go between our create and this look: it was held a
                    // moment ago, so this attempt loses (the next one finds the upload
                    // completed, or takes the lock).
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(UploadError::Locked(u.id.clone()));
                    }
                    Err(e) => return Err(e.into()),
                };
                let age = self.now_ms() - meta.last_modified.timestamp_millis();
                if age < LOCK_STALE_MS {
                    return Err(UploadError::Locked(u.id.clone()));
                }
                match self.store.delete(&lock).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
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

    /// Whether `upload` is kept in this layout: its ids are UUIDs and its marker exists.
    pub async fn holds(&self, upload: &StreamUpload) -> Result<bool, UploadError> {
        if Self::check(upload).is_err() {
            return Ok(false);
        }
        match self.store.head(&self.marker(upload)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
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

    /// Writes parts `numbers` (sorted, at least one) of `upload`, in order, as the session's
    /// recording. One part is a server-side copy. More are streamed through a multipart
    /// upload whose chunks are all at least [`MIN_JOIN_CHUNK`] but the last (S3 refuses
    /// smaller ones with `EntityTooSmall`), and few enough for S3's 10,000-part limit.
    /// Memory stays bounded: [`FETCH_AHEAD`] parts being read, one chunk being filled and
    /// [`CHUNKS_IN_FLIGHT`] being sent.
    async fn join_parts(&self, upload: &StreamUpload, numbers: &[u32]) -> Result<(), UploadError> {
        let dest = self.recording_path(&upload.session_id);
        let listed: Vec<_> = self
            .store
            .list(Some(&self.upload_dir(upload)))
            .try_collect()
            .await?;
        let sizes: HashMap<u32, u64> = listed
            .iter()
            .filter_map(|o| Some((part_number(o.location.filename()?)?, o.size)))
            .collect();
        let mut total = 0u64;
        for n in numbers {
            let size = sizes
                .get(n)
                .ok_or_else(|| UploadError::NotFound(format!("{} part {n}", upload.id)))?;
            total = total.saturating_add(*size);
        }
        let gone = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => UploadError::NotFound(upload.id.clone()),
            e => UploadError::Store(e),
        };
        if let [n] = numbers {
            return self
                .store
                .copy(&self.part_path(upload, *n), &dest)
                .await
                .map_err(gone);
        }
        let chunk = join_chunk_size(total);
        let mut out =
            WriteMultipart::new_with_chunk_size(self.store.put_multipart(&dest).await?, chunk);
        let paths: Vec<Path> = numbers.iter().map(|&n| self.part_path(upload, n)).collect();
        let store = Arc::clone(&self.store);
        let mut reads = futures::stream::iter(paths)
            .map(move |path| {
                let store = Arc::clone(&store);
                async move { store.get(&path).await?.bytes().await }
            })
            .buffered(FETCH_AHEAD);
        while let Some(read) = reads.next().await {
            let sent = match read {
                Ok(bytes) => out
                    .wait_for_capacity(CHUNKS_IN_FLIGHT)
                    .await
                    .map(|()| bytes),
                Err(e) => Err(e),
            };
            match sent {
                Ok(bytes) => out.put(bytes),
                Err(e) => {
                    drop(reads);
                    let _ = out.abort().await;
                    return Err(gone(e));
                }
            }
        }
        out.finish().await?;
        Ok(())
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

/// The smallest chunk of a joined recording but its last: S3's minimum multipart part size.
pub const MIN_JOIN_CHUNK: usize = 5 * 1024 * 1024;
/// At most this many chunks in a joined recording (S3 allows 10,000 parts).
const MAX_JOIN_CHUNKS: u64 = 9_000;
/// Parts read ahead while joining.
const FETCH_AHEAD: usize = 4;
/// Chunks uploading at once while joining.
const CHUNKS_IN_FLIGHT: usize = 2;

/// The chunk size for joining `total` bytes: [`MIN_JOIN_CHUNK`], or more (in whole MiB) when
/// the recording would otherwise take more than `MAX_JOIN_CHUNKS` chunks.
fn join_chunk_size(total: u64) -> usize {
    const MIB: u64 = 1024 * 1024;
    let needed = total.div_ceil(MAX_JOIN_CHUNKS).div_ceil(MIB) * MIB;
    usize::try_from(needed).map_or(usize::MAX, |n| n.max(MIN_JOIN_CHUNK))
}

fn part_number(name: &str) -> Option<u32> {
    let n = name.strip_suffix(".part")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    super::parse_part(n)
}

impl MultipartUploader for ObjectsLayout {
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
        upload.initiated_ms = self.now_ms();
        Ok(upload)
    }

    async fn upload_part(
        &self,
        upload: &StreamUpload,
        number: u32,
        part: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
        self.require_upload(upload).await?;
        let path = self.part_path(upload, number);
        super::put_part(self.store.as_ref(), &path, number, part, self.now_ms()).await
    }

    async fn reserve_part(&self, upload: &StreamUpload, number: u32) -> Result<(), UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
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
        super::sort_oldest_first(&mut uploads);
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
            if numbers.is_empty() {
                return Ok(());
            }
            self.join_parts(upload, &numbers).await
        }
        .await;
        match result {
            Ok(()) => {
                // The marker goes first: from here on the upload is no longer listed.
                match self.store.delete(&self.marker(upload)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
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

    async fn read_part(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<Option<bytes::Bytes>, UploadError> {
        Self::check(upload)?;
        match self.store.get(&self.part_path(upload, number)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Err(UploadError::NotFound(format!(
                "{} part {number}",
                upload.id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    fn recording_url(&self, session_id: &str) -> String {
        if self.url_base.ends_with("://") {
            format!("{}{session_id}", self.url_base)
        } else {
            format!("{}/{session_id}", self.url_base)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn join_chunks_are_at_least_the_s3_minimum_and_fit_the_part_limit() {
        assert_eq!(join_chunk_size(0), MIN_JOIN_CHUNK);
        assert_eq!(join_chunk_size(1), MIN_JOIN_CHUNK);
        assert_eq!(join_chunk_size(40 << 30), MIN_JOIN_CHUNK);
        // 10,000 full 5 MiB parts plus their last message: 6 MiB chunks, 8,334 of them.
        let total = 10_000 * (5 << 20) + 10_000 * 65_536;
        let chunk = join_chunk_size(total) as u64;
        assert_eq!(chunk, 6 << 20);
        assert!(total.div_ceil(chunk) <= MAX_JOIN_CHUNKS);
        assert_eq!(join_chunk_size(u64::MAX) as u64 % (1 << 20), 0);
    }

    #[test]
    fn memory_recording_urls() {
        let s = ObjectsLayout::memory();
        assert_eq!(s.recording_url("x"), "memory://x");
        let s = ObjectsLayout::new(
            Arc::new(object_store::memory::InMemory::new()),
            "p",
            "s3://b/p/",
        );
        assert_eq!(s.recording_url("x"), "s3://b/p/x");
    }
}
