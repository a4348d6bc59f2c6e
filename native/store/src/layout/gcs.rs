//! Teleport's GCS layout (feature `gcp`): a recording upload is a set of plain objects, kept
//! exactly as Teleport's `gcssessions` handler keeps them, so that one bucket serves both
//! tools. With `P` the prefix (Teleport's `path` option; may be empty):
//!
//! ```text
//! P/uploads/<upload-id>/<sid>.upload      marker (body: the session id), created only if absent
//! P/parts/<upload-id>/<n>.part            part n (header, gzip member, padding), overwritable
//! P/merges/<upload-id>/<sha256>.merge     an intermediate compose of 32 sources
//! P/<sid>.tar                             the completed recording
//! ```
//!
//! Upload ids are random UUIDs (v4). `<sha256>` is the hex SHA-256 of the merged sources'
//! object names, concatenated.
//!
//! Completion is GCS's `compose` (JSON API), which joins at most 32 source objects server
//! side: while more than 32 sources remain, the first 32 are composed into a merge object that
//! takes their place at the front; the rest is composed into `P/<sid>.tar`. No recording byte
//! passes through tapelog. A recording that exists already means an earlier completion got
//! that far: only the cleanup is left. An upload with no parts writes no recording (as
//! Teleport). The cleanup deletes the upload's parts and merges, then its marker (last, so
//! that a completer stopped halfway still finds and finishes the upload), 32 deletes at a
//! time, NotFound ignored. Aborting is that cleanup.
//!
//! Decisions where Teleport's handler differs: uploads are listed oldest first, parts are
//! listed and composed in numeric order (Teleport keeps GCS's lexicographic order, which puts
//! `10.part` before `9.part`), names that don't parse (ids that are not UUIDs, part numbers
//! outside 1..=10000) are skipped, and listing the parts of an upload that has neither parts
//! nor a marker is [`UploadError::NotFound`]. Parts are written without looking up the marker
//! first (as Teleport; one request per part).
//!
//! Every object call goes through object_store's [`GoogleCloudStorage`] (its XML API client);
//! compose, which object_store lacks, is one `reqwest` call ([`GcsCompose`]) signed with the
//! same credential provider, so one set of settings serves both. Parts can be read back, so a
//! resume scans them ([`MultipartUploader::part_content`]'s default).
#![cfg(feature = "gcp")]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::Digest as _;
use tapelog_audit::clock::SharedClock;
use tapelog_core::codec::EncodedPart;
use tapelog_core::stream::MAX_PARTS;

use crate::{MultipartUploader, StreamPart, StreamUpload, UploadError, check_id};

/// GCS composes at most this many source objects in one call.
pub const MAX_COMPOSE_SOURCES: usize = 32;
/// Deletes in flight during a cleanup (as Teleport).
const DELETE_CONCURRENCY: usize = 32;
/// At most this much of a failed compose's response body is read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// At most this many characters of the service's message go into an error.
const MAX_ERROR_MESSAGE: usize = 512;
/// GCS's public endpoint (object_store's default base URL).
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// GCS's `compose` call (JSON API), which object_store does not make:
/// `POST {endpoint}/storage/v1/b/{bucket}/o/{destination}/compose`, with a bearer token from
/// object_store's credential provider.
#[derive(Clone)]
pub struct GcsCompose {
    endpoint: String,
    bucket: String,
    credentials: Option<GcpCredentialProvider>,
    http: reqwest::Client,
}

impl fmt::Debug for GcsCompose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsCompose")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("signed", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a path segment).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first `max` characters of `s` (with `…` when cut).
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn compose_error(message: String) -> UploadError {
    UploadError::Service {
        service: "GCS",
        call: "compose",
        message,
    }
}

impl GcsCompose {
    /// Composes in `bucket` at `endpoint` (a base URL such as [`DEFAULT_ENDPOINT`] or a test
    /// server's), signing with `credentials` (`None`: unsigned requests), over `http`.
    pub fn new(
        endpoint: &str,
        bucket: &str,
        credentials: Option<GcpCredentialProvider>,
        http: reqwest::Client,
    ) -> GcsCompose {
        GcsCompose {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            credentials,
            http,
        }
    }

    /// The same with a client of its own (10 s to connect, 5 min per call).
    pub fn with_default_client(
        endpoint: &str,
        bucket: &str,
        credentials: Option<GcpCredentialProvider>,
    ) -> Result<GcsCompose, UploadError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| compose_error(format!("building the HTTP client: {e}")))?;
        Ok(GcsCompose::new(endpoint, bucket, credentials, http))
    }

    /// The endpoint composes go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Writes the concatenation of `sources` (1 to [`MAX_COMPOSE_SOURCES`] object names, in
    /// order) as `destination`. A missing source (HTTP 404) is
    /// [`UploadError::NotFound`] naming `destination`; any other failure is
    /// [`UploadError::Service`] with the status and the service's message.
    pub async fn compose(&self, sources: &[&str], destination: &str) -> Result<(), UploadError> {
        if sources.is_empty() || sources.len() > MAX_COMPOSE_SOURCES {
            return Err(compose_error(format!(
                "{} sources (GCS composes 1 to {MAX_COMPOSE_SOURCES})",
                sources.len()
            )));
        }
        let url = format!(
            "{}/storage/v1/b/{}/o/{}/compose",
            self.endpoint,
            encode_segment(&self.bucket),
            encode_segment(destination)
        );
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|s| serde_json::json!({ "name": s })).collect::<Vec<_>>(),
            "destination": { "contentType": "application/octet-stream" },
        });
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(c) = &self.credentials {
            let token = c.get_credential().await?;
            // An empty token is object_store's "no OAuth" (a service account with
            // `disable_oauth`): nothing to send.
            if !token.bearer.is_empty() {
                req = req.bearer_auth(&token.bearer);
            }
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| compose_error(format!("{destination}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(UploadError::NotFound(destination.to_string()));
        }
        let mut raw = Vec::new();
        while raw.len() < MAX_ERROR_BODY {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_ERROR_BODY - raw.len();
                    raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&raw);
        // GCS's JSON errors: {"error": {"code": 503, "message": "..."}}.
        let message = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.trim().to_string());
        Err(compose_error(format!(
            "{destination}: HTTP {status}: {}",
            truncate(&message, MAX_ERROR_MESSAGE)
        )))
    }
}

/// Teleport's GCS uploads (see the module documentation).
#[derive(Clone)]
pub struct GcsLayout {
    store: Arc<dyn ObjectStore>,
    compose: GcsCompose,
    prefix: Path,
    url_base: String,
    clock: SharedClock,
}

impl fmt::Debug for GcsLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsLayout")
            .field("compose", &self.compose)
            .field("prefix", &self.prefix)
            .field("url_base", &self.url_base)
            .finish_non_exhaustive()
    }
}

/// The `gcs_base_url` of a service account (a file or the key's JSON), which object_store
/// takes as the endpoint when none is set. Files over 1 MiB are not service accounts.
fn service_account_base_url(b: &GoogleCloudStorageBuilder) -> Option<String> {
    use std::io::Read as _;
    let json = match (
        b.get_config_value(&GoogleConfigKey::ServiceAccount),
        b.get_config_value(&GoogleConfigKey::ServiceAccountKey),
    ) {
        (Some(path), None) => {
            let mut text = Vec::new();
            std::fs::File::open(path)
                .ok()?
                .take(1 << 20)
                .read_to_end(&mut text)
                .ok()?;
            text
        }
        (None, Some(key)) => key.into_bytes(),
        _ => return None,
    };
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    v.get("gcs_base_url")?.as_str().map(str::to_string)
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn part_number(name: &str) -> Option<u32> {
    let n = name.strip_suffix(".part")?;
    if n.is_empty() || n.len() > 5 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    super::parse_part(n)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl GcsLayout {
    /// Uploads under `prefix` (slash-separated; may be empty) of the bucket `store` reaches
    /// (object_store's [`GoogleCloudStorage`](object_store::gcp::GoogleCloudStorage), or any
    /// store for tests), composing through `compose`; `url_base` names the place in
    /// recording URLs (e.g. `gs://bucket/prefix`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        compose: GcsCompose,
        prefix: &str,
        url_base: &str,
    ) -> GcsLayout {
        GcsLayout {
            store,
            compose,
            prefix: Path::from(prefix),
            url_base: url_base.trim_end_matches('/').to_string(),
            clock: tapelog_audit::clock::system(),
        }
    }

    /// Builds the store from `builder` (bucket, endpoint, credentials set as for any
    /// object_store GCS client) and composes with the same bucket, endpoint (the builder's
    /// base URL, else the service account's `gcs_base_url`, else [`DEFAULT_ENDPOINT`]) and
    /// credential provider (none when the builder skips signatures).
    pub fn from_builder(
        builder: GoogleCloudStorageBuilder,
        prefix: &str,
        url_base: &str,
    ) -> Result<GcsLayout, object_store::Error> {
        let endpoint = builder
            .get_config_value(&GoogleConfigKey::BaseUrl)
            .or_else(|| service_account_base_url(&builder))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let unsigned = builder
            .get_config_value(&GoogleConfigKey::SkipSignature)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let named = builder.get_config_value(&GoogleConfigKey::Bucket);
        let gcs = builder.build()?;
        let bucket = named.unwrap_or_else(|| gcs_bucket(&gcs));
        let credentials = (!unsigned).then(|| Arc::clone(gcs.credentials()));
        let compose =
            GcsCompose::with_default_client(&endpoint, &bucket, credentials).map_err(|e| {
                object_store::Error::Generic {
                    store: "GCS",
                    source: Box::new(e),
                }
            })?;
        Ok(GcsLayout::new(Arc::new(gcs), compose, prefix, url_base))
    }

    /// The same reading wall time from `clock` (the system's by default).
    pub fn with_clock(mut self, clock: SharedClock) -> GcsLayout {
        self.clock = clock;
        self
    }

    /// The bucket through object_store (where recordings are read back).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The compose client.
    pub fn composer(&self) -> &GcsCompose {
        &self.compose
    }

    fn path(&self, rest: &[&str]) -> Path {
        let mut p = self.prefix.clone();
        for part in rest {
            p = p.join(*part);
        }
        p
    }

    /// The recording of `session_id`: `P/<sid>.tar` (Teleport's `recordingPath`).
    pub fn recording_path(&self, session_id: &str) -> Path {
        self.path(&[&format!("{session_id}.tar")])
    }

    /// The marker of an upload: `P/uploads/<id>/<sid>.upload`.
    pub fn marker_path(&self, upload: &StreamUpload) -> Path {
        self.path(&[
            "uploads",
            &upload.id,
            &format!("{}.upload", upload.session_id),
        ])
    }

    /// Part `number` of an upload: `P/parts/<id>/<n>.part`.
    pub fn part_path(&self, upload: &StreamUpload, number: u32) -> Path {
        self.path(&["parts", &upload.id, &format!("{number}.part")])
    }

    /// The merge object of `sources`: `P/merges/<id>/<sha256 of the names>.merge`.
    fn merge_path(&self, upload: &StreamUpload, sources: &[String]) -> Path {
        let mut h = sha2::Sha256::new();
        for s in sources {
            h.update(s.as_bytes());
        }
        self.path(&[
            "merges",
            &upload.id,
            &format!("{}.merge", hex(&h.finalize())),
        ])
    }

    fn check(u: &StreamUpload) -> Result<(), UploadError> {
        check_id("upload id", &u.id)?;
        check_id("session id", &u.session_id)
    }

    async fn exists(&self, path: &Path) -> Result<bool, UploadError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under `dir`, [`DELETE_CONCURRENCY`] at a time, as listed.
    async fn delete_under(&self, dir: &Path) -> Result<(), UploadError> {
        let store = Arc::clone(&self.store);
        self.store
            .list(Some(dir))
            .map_err(UploadError::from)
            .map_ok(move |meta| {
                let store = Arc::clone(&store);
                async move {
                    match store.delete(&meta.location).await {
                        Ok(()) => Ok(()),
                        Err(e) if is_not_found(&e) => Ok(()),
                        Err(e) => Err(UploadError::from(e)),
                    }
                }
            })
            .try_buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Teleport's cleanup: the parts, the merges, then the marker.
    async fn cleanup(&self, u: &StreamUpload) -> Result<(), UploadError> {
        self.delete_under(&self.path(&["parts", &u.id])).await?;
        self.delete_under(&self.path(&["merges", &u.id])).await?;
        self.delete_under(&self.path(&["uploads", &u.id])).await
    }

    /// Composes `sources` into `dest`; a missing source means the upload is gone.
    async fn compose_into(
        &self,
        u: &StreamUpload,
        sources: &[String],
        dest: &Path,
    ) -> Result<(), UploadError> {
        let names: Vec<&str> = sources.iter().map(String::as_str).collect();
        match self.compose.compose(&names, dest.as_ref()).await {
            Err(UploadError::NotFound(_)) => Err(UploadError::NotFound(u.id.clone())),
            r => r,
        }
    }
}

/// The bucket of an object_store GCS client (it shows it as `GoogleCloudStorage(<bucket>)`).
fn gcs_bucket(gcs: &object_store::gcp::GoogleCloudStorage) -> String {
    let shown = gcs.to_string();
    shown
        .strip_prefix("GoogleCloudStorage(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(&shown)
        .to_string()
}

impl MultipartUploader for GcsLayout {
    async fn create_upload(&self, session_id: &str) -> Result<StreamUpload, UploadError> {
        check_id("session id", session_id)?;
        let mut upload = StreamUpload {
            id: uuid::Uuid::new_v4().to_string(),
            session_id: session_id.to_string(),
            initiated_ms: 0,
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.store
            .put_opts(
                &self.marker_path(&upload),
                PutPayload::from(session_id.as_bytes().to_vec()),
                opts,
            )
            .await?;
        upload.initiated_ms = self.clock.unix_ms() as i64;
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
        let path = self.part_path(upload, number);
        super::put_part(
            self.store.as_ref(),
            &path,
            number,
            part,
            self.clock.unix_ms() as i64,
        )
        .await
    }

    async fn reserve_part(&self, upload: &StreamUpload, number: u32) -> Result<(), UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
        Ok(())
    }

    async fn list_parts(&self, upload: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        Self::check(upload)?;
        let dir = self.path(&["parts", &upload.id]);
        let objects: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut parts: Vec<StreamPart> = objects
            .iter()
            .filter(|o| {
                o.location
                    .prefix_match(&dir)
                    .is_some_and(|r| r.count() == 1)
            })
            .filter_map(|o| {
                Some(StreamPart {
                    number: part_number(o.location.filename()?)?,
                    etag: o.e_tag.clone().unwrap_or_default(),
                    last_modified_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect();
        if parts.is_empty() && !self.exists(&self.marker_path(upload)).await? {
            return Err(UploadError::NotFound(upload.id.clone()));
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        let dir = self.path(&["uploads"]);
        let objects: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut uploads = Vec::new();
        for o in objects {
            // uploads/<upload-id>/<sid>.upload
            let Some(rest) = o.location.prefix_match(&dir) else {
                continue;
            };
            let rest: Vec<_> = rest.collect();
            let [id, name] = rest.as_slice() else {
                continue;
            };
            let Some(sid) = name.as_ref().strip_suffix(".upload") else {
                continue;
            };
            if check_id("upload id", id.as_ref()).is_err() || check_id("session id", sid).is_err() {
                continue;
            }
            uploads.push(StreamUpload {
                id: id.as_ref().to_string(),
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
        let recording = self.recording_path(&upload.session_id);
        if self.exists(&recording).await? {
            return self.cleanup(upload).await;
        }
        if !self.exists(&self.marker_path(upload)).await? {
            return Err(UploadError::NotFound(upload.id.clone()));
        }
        let mut numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        if let Some(&n) = numbers.iter().find(|n| !(1..=MAX_PARTS).contains(*n)) {
            return Err(UploadError::InvalidPart(n));
        }
        if numbers.is_empty() {
            return self.cleanup(upload).await;
        }
        let mut sources: Vec<String> = numbers
            .iter()
            .map(|&n| self.part_path(upload, n).to_string())
            .collect();
        while sources.len() > MAX_COMPOSE_SOURCES {
            let rest = sources.split_off(MAX_COMPOSE_SOURCES);
            let merge = self.merge_path(upload, &sources);
            self.compose_into(upload, &sources, &merge).await?;
            sources = std::iter::once(merge.to_string()).chain(rest).collect();
        }
        self.compose_into(upload, &sources, &recording).await?;
        self.cleanup(upload).await
    }

    async fn abort_upload(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        Self::check(upload)?;
        self.cleanup(upload).await
    }

    fn recording_url(&self, session_id: &str) -> String {
        format!("{}/{session_id}", self.url_base)
    }

    async fn read_part(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<Option<bytes::Bytes>, UploadError> {
        Self::check(upload)?;
        match self.store.get(&self.part_path(upload, number)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SID: &str = "9b6ec731-80f7-4751-9154-4214ecdc812a";
    const ID: &str = "0f4c1d8e-2a3b-4c5d-8e9f-0a1b2c3d4e5f";

    fn layout(prefix: &str) -> GcsLayout {
        let compose = GcsCompose::new(
            "http://127.0.0.1:9/",
            "b",
            None,
            reqwest::Client::builder().build().unwrap(),
        );
        GcsLayout::new(
            Arc::new(object_store::memory::InMemory::new()),
            compose,
            prefix,
            "gs://b/p/",
        )
    }

    fn upload() -> StreamUpload {
        StreamUpload {
            id: ID.into(),
            session_id: SID.into(),
            initiated_ms: 0,
        }
    }

    #[test]
    fn names_are_teleports() {
        let l = layout("a/b");
        let u = upload();
        assert_eq!(
            l.marker_path(&u).as_ref(),
            format!("a/b/uploads/{ID}/{SID}.upload")
        );
        assert_eq!(
            l.part_path(&u, 10).as_ref(),
            format!("a/b/parts/{ID}/10.part")
        );
        assert_eq!(l.recording_path(SID).as_ref(), format!("a/b/{SID}.tar"));
        let m = l.merge_path(&u, &["x".into(), "y".into()]);
        let h = hex(&sha2::Sha256::digest(b"xy"));
        assert_eq!(h.len(), 64);
        assert_eq!(m.as_ref(), format!("a/b/merges/{ID}/{h}.merge"));
        let root = layout("");
        assert_eq!(root.recording_path(SID).as_ref(), format!("{SID}.tar"));
        assert_eq!(root.recording_url(SID), format!("gs://b/p/{SID}"));
    }

    #[test]
    fn part_numbers_parse_strictly() {
        assert_eq!(part_number("10.part"), Some(10));
        assert_eq!(part_number("10000.part"), Some(10000));
        for bad in [
            "0.part",
            "10001.part",
            "+1.part",
            "1.parts",
            ".part",
            "99999999999.part",
        ] {
            assert_eq!(part_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a/b c.tar"), "a%2Fb%20c.tar");
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 2), "hi");
    }

    #[tokio::test]
    async fn too_many_sources_are_refused_before_any_call() {
        let l = layout("");
        let many: Vec<&str> = vec!["x"; 33];
        let e = l.compose.compose(&many, "d").await.unwrap_err();
        assert!(matches!(
            e,
            UploadError::Service {
                service: "GCS",
                call: "compose",
                ..
            }
        ));
    }
}
