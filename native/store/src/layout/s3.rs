//! Teleport's S3 layout: a recording upload is a native S3 multipart upload of
//! `[prefix/]<sid>.tar`, exactly as Teleport's `s3sessions` handler makes it, so that one
//! bucket serves both tools (Teleport lists, resumes and completes tapelog's uploads, and
//! tapelog Teleport's).
//!
//! | operation | S3 call |
//! |---|---|
//! | create | `CreateMultipartUpload` (SSE `aws:kms` unless turned off, canned ACL if set); the upload id is S3's `UploadId` |
//! | upload part n | `UploadPart` with part number n (sparse numbers are fine, at most 10,000) and `Content-MD5` |
//! | list parts | `ListParts`, every page |
//! | list uploads | `ListMultipartUploads` with the prefix, every page |
//! | complete | `CompleteMultipartUpload` with the parts' ETags in number order; zero parts: `AbortMultipartUpload` |
//!
//! S3 assembles the recording: no recording byte passes through tapelog when completing.
//!
//! **Spans beside the parts.** A part of an unfinished multipart upload can't be read back, and
//! a resume needs the event indexes each stored part holds ([`PartContent`]). So before each
//! `UploadPart`, tapelog writes a small object with the part's span (from the writer's own
//! count, no decoding): `[prefix/]tapelog-spans/<sid>/<h>/<n>.span`, where `<h>` is the first
//! 32 hex digits of SHA-256 of the upload id (upload ids are long and opaque). A span written
//! for a part whose upload then failed is harmless: only listed parts are looked up. An upload
//! another tool started has no spans: its parts read as [`PartContent::Unread`], so a resume
//! keeps them as listed and replays everything. The names stay out of `<sid>.tar*`, where
//! Teleport looks for a recording's versions. The spans are deleted after completing or
//! aborting.
//!
//! The multipart calls use `aws-sdk-s3` (object_store can neither list uploads and parts nor
//! send sparse part numbers); the spans, and reading recordings back, use the same bucket
//! through `object_store`, whose credential chain also signs the SDK's requests
//! ([`CredentialBridge`]), so one set of settings serves both.

use std::fmt;
use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectCannedAcl, ServerSideEncryption,
};
use base64::Engine as _;
use futures::TryStreamExt;
use md5::Digest as _;
use object_store::aws::{AmazonS3, AwsCredentialProvider};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tapelog_audit::clock::SharedClock;
use tapelog_core::codec::EncodedPart;
use tapelog_core::stream::PartContent;

use crate::{MultipartUploader, StreamPart, StreamUpload, UploadError, check_id, check_upload_id};

/// Server-side encryption of new uploads (Teleport's `disablesse` and `sse_kms_key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sse {
    /// `aws:kms` with the bucket's or account's default key (Teleport's default).
    #[default]
    Kms,
    /// `aws:kms` with this key.
    KmsKey(String),
    /// None asked for (`disablesse=true`): the bucket's default applies.
    Off,
}

/// How to reach the bucket and what to ask of new uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// Key prefix (no leading or trailing `/`; empty: none).
    pub prefix: String,
    /// Region (signing, and AWS's endpoint when `endpoint` is `None`).
    pub region: String,
    /// A custom endpoint (`http(s)://host[:port]`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); Teleport uses it with a custom endpoint
    /// unless `use_s3_virtual_style_addressing` is set.
    pub path_style: bool,
    /// AWS's FIPS endpoints.
    pub fips: bool,
    /// Server-side encryption of new uploads.
    pub sse: Sse,
    /// A canned ACL for new uploads (`private`, `bucket-owner-full-control`...).
    pub acl: Option<String>,
}

/// The canned ACLs Teleport accepts for `acl`.
pub const ALLOWED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "aws-exec-read",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// Lends object_store's AWS credential chain (static keys, web identity, IMDS, ECS...) to the
/// SDK, so both clients sign with the same credentials.
pub struct CredentialBridge(AwsCredentialProvider);

impl fmt::Debug for CredentialBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialBridge")
    }
}

impl ProvideCredentials for CredentialBridge {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let c = self
                .0
                .get_credential()
                .await
                .map_err(CredentialsError::provider_error)?;
            Ok(Credentials::new(
                c.key_id.clone(),
                c.secret_key.clone(),
                c.token.clone(),
                None,
                "object_store",
            ))
        })
    }
}

/// Native S3 multipart uploads in Teleport's layout (see the module documentation).
#[derive(Clone)]
pub struct S3Layout {
    client: Client,
    store: Arc<dyn ObjectStore>,
    settings: S3Settings,
    url_base: String,
    clock: SharedClock,
}

impl fmt::Debug for S3Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Layout")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The error of an SDK call: S3's code and message, or the transport's.
fn sdk_error<E, R>(call: &'static str, e: SdkError<E, R>) -> UploadError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    if let Some(code) = e.code() {
        let message = e.message().unwrap_or("").to_string();
        return UploadError::Service {
            service: "S3",
            call,
            message: format!("{code}: {message}"),
        };
    }
    UploadError::Service {
        service: "S3",
        call,
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// Whether S3 said the upload does not exist.
fn no_such_upload<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("NoSuchUpload")
}

impl S3Layout {
    /// Uploads to `settings.bucket` through `s3` (object_store's client of the same bucket,
    /// which also lends its credentials). `url_base` names the place in recording URLs.
    pub fn new(s3: AmazonS3, settings: S3Settings, url_base: &str) -> S3Layout {
        let bridge = CredentialBridge(Arc::clone(s3.credentials()));
        let mut conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(bridge)
            .force_path_style(settings.path_style)
            .use_fips(settings.fips)
            // Content-MD5 is sent as Teleport sends it; no extra checksum headers, which some
            // S3-compatible servers refuse.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &settings.endpoint {
            conf = conf.endpoint_url(e);
        }
        S3Layout {
            client: Client::from_conf(conf.build()),
            store: Arc::new(s3),
            settings,
            url_base: url_base.trim_end_matches('/').to_string(),
            clock: tapelog_audit::clock::system(),
        }
    }

    /// The same reading wall time from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> S3Layout {
        self.clock = clock;
        self
    }

    /// The bucket through object_store (where recordings are read back).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The settings this layout was opened with.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// The key of `sid`'s recording: Teleport's `path(sid)`.
    pub fn recording_key(&self, session_id: &str) -> String {
        if self.settings.prefix.is_empty() {
            format!("{session_id}.tar")
        } else {
            format!("{}/{session_id}.tar", self.settings.prefix)
        }
    }

    /// The recording's object path.
    pub fn recording_path(&self, session_id: &str) -> Path {
        Path::from(self.recording_key(session_id))
    }

    fn spans_dir(&self, u: &StreamUpload) -> Path {
        let h = hex32(&sha2::Sha256::digest(u.id.as_bytes()));
        let rest = format!("tapelog-spans/{}/{h}", u.session_id);
        if self.settings.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.settings.prefix))
        }
    }

    fn span_path(&self, u: &StreamUpload, n: u32) -> Path {
        self.spans_dir(u).join(format!("{n}.span"))
    }

    fn check(u: &StreamUpload) -> Result<(), UploadError> {
        check_upload_id(&u.id)?;
        check_id("session id", &u.session_id)
    }

    /// The session id of a listed key, if it is `[prefix/]<uuid>.tar` exactly.
    fn session_of(&self, key: &str) -> Option<String> {
        let name = if self.settings.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&self.settings.prefix)?.strip_prefix('/')?
        };
        let sid = name.strip_suffix(".tar")?;
        check_id("session id", sid).ok()?;
        Some(sid.to_string())
    }

    async fn delete_spans(&self, u: &StreamUpload) -> Result<(), UploadError> {
        let dir = self.spans_dir(u);
        let objects: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        for o in objects {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn abort(&self, u: &StreamUpload) -> Result<(), UploadError> {
        let r = self
            .client
            .abort_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(self.recording_key(&u.session_id))
            .upload_id(&u.id)
            .send()
            .await;
        match r {
            Ok(_) => {}
            Err(e) if no_such_upload(&e) => return Err(UploadError::NotFound(u.id.clone())),
            Err(e) => return Err(sdk_error("AbortMultipartUpload", e)),
        }
        self.delete_spans(u).await
    }
}

fn hex32(digest: &[u8]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn millis(t: Option<&aws_sdk_s3::primitives::DateTime>) -> i64 {
    t.and_then(|t| t.to_millis().ok()).unwrap_or(0)
}

/// Pages of a listing are followed while the marker moves, at most this many.
const MAX_PAGES: usize = 100_000;

impl MultipartUploader for S3Layout {
    async fn create_upload(&self, session_id: &str) -> Result<StreamUpload, UploadError> {
        check_id("session id", session_id)?;
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(self.recording_key(session_id));
        match &self.settings.sse {
            Sse::Kms => req = req.server_side_encryption(ServerSideEncryption::AwsKms),
            Sse::KmsKey(key) => {
                req = req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(key)
            }
            Sse::Off => {}
        }
        if let Some(acl) = &self.settings.acl {
            req = req.acl(ObjectCannedAcl::from(acl.as_str()));
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error("CreateMultipartUpload", e))?;
        let id = out.upload_id().unwrap_or_default().to_string();
        check_upload_id(&id).map_err(|_| UploadError::Service {
            service: "S3",
            call: "CreateMultipartUpload",
            message: format!("the server gave an unusable upload id {id:?}"),
        })?;
        Ok(StreamUpload {
            id,
            session_id: session_id.to_string(),
            initiated_ms: self.clock.unix_ms() as i64,
        })
    }

    async fn upload_part(
        &self,
        upload: &StreamUpload,
        number: u32,
        part: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
        // The span first: a listed part always has its span (see the module documentation).
        if let Some(text) = PartContent::of_part(part).to_span_text() {
            self.store
                .put(&self.span_path(upload, number), PutPayload::from(text))
                .await?;
        }
        let body = part.to_vec();
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let r = self
            .client
            .upload_part()
            .bucket(&self.settings.bucket)
            .key(self.recording_key(&upload.session_id))
            .upload_id(&upload.id)
            .part_number(number as i32)
            .content_md5(md5)
            .body(ByteStream::from(body))
            .send()
            .await;
        match r {
            Ok(out) => Ok(StreamPart {
                number,
                etag: out.e_tag().unwrap_or_default().to_string(),
                last_modified_ms: self.clock.unix_ms() as i64,
            }),
            Err(e) if no_such_upload(&e) => Err(UploadError::NotFound(upload.id.clone())),
            Err(e) => Err(sdk_error("UploadPart", e)),
        }
    }

    async fn reserve_part(&self, upload: &StreamUpload, number: u32) -> Result<(), UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
        Ok(())
    }

    async fn list_parts(&self, upload: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        Self::check(upload)?;
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let r = self
                .client
                .list_parts()
                .bucket(&self.settings.bucket)
                .key(self.recording_key(&upload.session_id))
                .upload_id(&upload.id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let out = match r {
                Ok(out) => out,
                Err(e) if no_such_upload(&e) => {
                    return Err(UploadError::NotFound(upload.id.clone()));
                }
                Err(e) => return Err(sdk_error("ListParts", e)),
            };
            for p in out.parts() {
                let Some(n) = p.part_number().and_then(|n| u32::try_from(n).ok()) else {
                    continue;
                };
                parts.push(StreamPart {
                    number: n,
                    etag: p.e_tag().unwrap_or_default().to_string(),
                    last_modified_ms: millis(p.last_modified()),
                });
            }
            let next = out.next_part_number_marker().map(str::to_string);
            if !out.is_truncated().unwrap_or(false) || next.is_none() || next == marker {
                break;
            }
            marker = next;
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        let prefix = (!self.settings.prefix.is_empty()).then(|| self.settings.prefix.clone());
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.settings.bucket)
                .set_prefix(prefix.clone())
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| sdk_error("ListMultipartUploads", e))?;
            for u in out.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let Some(session_id) = self.session_of(key) else {
                    continue;
                };
                if check_upload_id(id).is_err() {
                    continue;
                }
                uploads.push(StreamUpload {
                    id: id.to_string(),
                    session_id,
                    initiated_ms: millis(u.initiated()),
                });
            }
            let next = (
                out.next_key_marker().map(str::to_string),
                out.next_upload_id_marker().map(str::to_string),
            );
            if !out.is_truncated().unwrap_or(false)
                || next.0.is_none()
                || (next.0 == key_marker && next.1 == id_marker)
            {
                break;
            }
            (key_marker, id_marker) = next;
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
        let parts = super::sorted_parts(parts)?;
        if parts.is_empty() {
            // As upstream: an upload with no parts is aborted and leaves no recording.
            return self.abort(upload).await;
        }
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number as i32)
                            .e_tag(&p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let r = self
            .client
            .complete_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(self.recording_key(&upload.session_id))
            .upload_id(&upload.id)
            .multipart_upload(completed)
            .send()
            .await;
        match r {
            Ok(_) => {}
            Err(e) if no_such_upload(&e) => return Err(UploadError::NotFound(upload.id.clone())),
            Err(e) => return Err(sdk_error("CompleteMultipartUpload", e)),
        }
        self.delete_spans(upload).await
    }

    async fn abort_upload(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        Self::check(upload)?;
        match self.abort(upload).await {
            Ok(()) => Ok(()),
            // Aborting what is gone is done; its spans may still be there.
            Err(UploadError::NotFound(_)) => self.delete_spans(upload).await,
            Err(e) => Err(e),
        }
    }

    fn recording_url(&self, session_id: &str) -> String {
        format!("{}/{session_id}", self.url_base)
    }

    async fn part_content(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<PartContent, UploadError> {
        Self::check(upload)?;
        match self.store.get(&self.span_path(upload, number)).await {
            Ok(r) => {
                if r.meta.size > 64 {
                    return Ok(PartContent::Unread);
                }
                Ok(PartContent::from_span_text(&r.bytes().await?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(PartContent::Unread),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn span_names_hash_the_upload_id() {
        assert_eq!(hex32(&[0xab; 32]), "ab".repeat(16));
    }
}
