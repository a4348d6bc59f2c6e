//! [`Hooked`]: an uploader that shows every call to a hook before passing it on, so that the
//! hook can fail it (fault injection in tests and chaos runs), record it, or count it.

use bytes::Bytes;
use tapelog_core::codec::EncodedPart;
use tapelog_core::stream::PartContent;

use super::{MultipartUploader, StreamPart, StreamUpload, UploadError};

/// A call on its way to the wrapped uploader.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// `create_upload(session_id)`.
    Create(&'a str),
    /// `upload_part(upload, number, part)`.
    UploadPart(&'a StreamUpload, u32, &'a EncodedPart),
    /// `reserve_part(upload, number)`.
    Reserve(&'a StreamUpload, u32),
    /// `list_parts(upload)`.
    ListParts(&'a StreamUpload),
    /// `list_uploads()`.
    ListUploads,
    /// `complete_upload(upload, parts)`.
    Complete(&'a StreamUpload, &'a [StreamPart]),
    /// `abort_upload(upload)`.
    Abort(&'a StreamUpload),
    /// `read_part(upload, number)` or `part_content(upload, number)`.
    ReadPart(&'a StreamUpload, u32),
}

/// Passes every call to `hook` first; an error from the hook is the call's result and the
/// wrapped uploader is not called.
pub struct Hooked<U, F> {
    inner: U,
    hook: F,
}

impl<U, F> Hooked<U, F>
where
    U: MultipartUploader,
    F: Fn(Call<'_>) -> Result<(), UploadError> + Send + Sync + 'static,
{
    /// Wraps `inner`.
    pub fn new(inner: U, hook: F) -> Hooked<U, F> {
        Hooked { inner, hook }
    }

    /// The wrapped uploader.
    pub fn inner(&self) -> &U {
        &self.inner
    }
}

impl<U, F> MultipartUploader for Hooked<U, F>
where
    U: MultipartUploader,
    F: Fn(Call<'_>) -> Result<(), UploadError> + Send + Sync + 'static,
{
    async fn create_upload(&self, session_id: &str) -> Result<StreamUpload, UploadError> {
        (self.hook)(Call::Create(session_id))?;
        self.inner.create_upload(session_id).await
    }
    async fn upload_part(
        &self,
        upload: &StreamUpload,
        number: u32,
        part: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        (self.hook)(Call::UploadPart(upload, number, part))?;
        self.inner.upload_part(upload, number, part).await
    }
    async fn reserve_part(&self, upload: &StreamUpload, number: u32) -> Result<(), UploadError> {
        (self.hook)(Call::Reserve(upload, number))?;
        self.inner.reserve_part(upload, number).await
    }
    async fn list_parts(&self, upload: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        (self.hook)(Call::ListParts(upload))?;
        self.inner.list_parts(upload).await
    }
    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        (self.hook)(Call::ListUploads)?;
        self.inner.list_uploads().await
    }
    async fn complete_upload(
        &self,
        upload: &StreamUpload,
        parts: &[StreamPart],
    ) -> Result<(), UploadError> {
        (self.hook)(Call::Complete(upload, parts))?;
        self.inner.complete_upload(upload, parts).await
    }
    async fn abort_upload(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        (self.hook)(Call::Abort(upload))?;
        self.inner.abort_upload(upload).await
    }
    fn recording_url(&self, session_id: &str) -> String {
        self.inner.recording_url(session_id)
    }
    async fn read_part(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<Option<Bytes>, UploadError> {
        (self.hook)(Call::ReadPart(upload, number))?;
        self.inner.read_part(upload, number).await
    }
    /// Shown to the hook as [`Call::ReadPart`]: it is the resume's look at a part.
    async fn part_content(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<PartContent, UploadError> {
        (self.hook)(Call::ReadPart(upload, number))?;
        self.inner.part_content(upload, number).await
    }
}
