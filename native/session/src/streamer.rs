//! What the session writer writes through: [`AuditStreamer`] (upstream's `Streamer`: create or
//! resume a stream for a session) and [`SessionStream`] (one stream: record, status, complete,
//! close), with their implementation over [`RecordingStream`] and any [`MultipartUploader`]
//! ([`UploaderStreamer`]). Tests put their own streams behind the same traits to inject
//! failures.

use std::sync::Arc;

use futures::future::BoxFuture;
use tapelog_core::AuditEvent;
use tapelog_core::stream::{StreamError, StreamStatus};
use thiserror::Error;
use tokio::sync::watch;

use tapelog_store::stream::{DriverConfig, DriverError, RecordingStream};
use tapelog_store::{MultipartUploader, StreamUpload, UploadError};

/// An error kept behind an `Arc` so that failures can be cloned into every later call.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// Why a stream call failed, sorted the way the writer reacts to it.
#[derive(Debug, Clone, Error)]
pub enum StreamFailure {
    /// The event can never be recorded (upstream's `BadParameter`: too large even after
    /// trimming, ...): the writer drops it and goes on.
    #[error("event refused: {0}")]
    Refused(SharedError),
    /// The upload cannot continue (it is gone, being completed elsewhere, or its id is
    /// invalid): the writer stops.
    #[error("the upload cannot continue: {0}")]
    Unrecoverable(SharedError),
    /// Anything else (the store failed, the stream's task died): the writer replaces the
    /// stream and replays what was not confirmed.
    #[error("{0}")]
    Transient(SharedError),
}

impl StreamFailure {
    /// A [`Refused`](Self::Refused) failure.
    pub fn refused(e: impl std::error::Error + Send + Sync + 'static) -> StreamFailure {
        StreamFailure::Refused(Arc::new(e))
    }
    /// An [`Unrecoverable`](Self::Unrecoverable) failure.
    pub fn unrecoverable(e: impl std::error::Error + Send + Sync + 'static) -> StreamFailure {
        StreamFailure::Unrecoverable(Arc::new(e))
    }
    /// A [`Transient`](Self::Transient) failure.
    pub fn transient(e: impl std::error::Error + Send + Sync + 'static) -> StreamFailure {
        StreamFailure::Transient(Arc::new(e))
    }
    /// The underlying error.
    pub fn error(&self) -> &SharedError {
        match self {
            StreamFailure::Refused(e)
            | StreamFailure::Unrecoverable(e)
            | StreamFailure::Transient(e) => e,
        }
    }
}

/// Sorts a driver error: events the machine refuses are permanent; an upload that is gone,
/// locked by a completer or has a bad id can't be continued; the rest is worth a retry.
pub fn classify(e: DriverError) -> StreamFailure {
    match &e {
        DriverError::Stream(StreamError::Event(_)) => StreamFailure::refused(e),
        DriverError::Upload(
            UploadError::InvalidId { .. }
            | UploadError::InvalidPart(_)
            | UploadError::NotFound(_)
            | UploadError::Locked(_),
        ) => StreamFailure::unrecoverable(e),
        _ => StreamFailure::transient(e),
    }
}

/// One recording stream, as the session writer uses it.
pub trait SessionStream: Send + Sync + 'static {
    /// Records one event (may wait: back-pressure).
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>>;
    /// Status updates. Every value marked as changed is a status (the first one names the
    /// upload and, on a resumed stream, what it already holds); a closed channel means the
    /// stream ended on its own (failed).
    fn statuses(&self) -> watch::Receiver<StreamStatus>;
    /// Uploads the rest and completes the upload.
    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>>;
    /// Uploads the rest and leaves the upload resumable.
    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>>;

    /// Resolves once the stream has ended (upstream's `Stream.Done()`): `Ok` when it completed
    /// or closed, the failure when it failed. The future does not borrow the stream, so it can
    /// be taken before [`complete`](Self::complete) or [`close`](Self::close) consume it.
    ///
    /// The default knows only when [`statuses`](Self::statuses) closes, not why, and answers
    /// `Ok` then; streams that know how they ended ([`RecordingStream`], the wrappers of
    /// `wrappers.rs`) say so.
    fn done(&self) -> BoxFuture<'static, Result<(), StreamFailure>> {
        let mut statuses = self.statuses();
        Box::pin(async move {
            while statuses.changed().await.is_ok() {}
            Ok(())
        })
    }
}

/// Opens streams for sessions (upstream's `Streamer`).
pub trait AuditStreamer: Send + Sync + 'static {
    /// A stream on a new upload for `session_id`.
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>>;
    /// A stream continuing `upload_id` of `session_id`.
    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>>;
}

/// A shared streamer (`Arc<dyn AuditStreamer>` included) is a streamer, so that the wrappers
/// can be stacked on the one a [`SessionWriterConfig`](super::SessionWriterConfig) holds.
impl<T: AuditStreamer + ?Sized> AuditStreamer for Arc<T> {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        (**self).create(session_id)
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        (**self).resume(session_id, upload_id)
    }
}

impl SessionStream for RecordingStream {
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>> {
        Box::pin(async move { self.record_ref(event).await.map_err(classify) })
    }

    fn statuses(&self) -> watch::Receiver<StreamStatus> {
        // The value there is the stream's status as of now (its first one at least): it
        // counts as received.
        let mut rx = self.status();
        rx.mark_changed();
        rx
    }

    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        Box::pin(async move { RecordingStream::complete(*self).await.map_err(classify) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        Box::pin(async move { RecordingStream::close(*self).await.map_err(classify) })
    }

    fn done(&self) -> BoxFuture<'static, Result<(), StreamFailure>> {
        let done = RecordingStream::done(self);
        Box::pin(async move { done.await.map_err(classify) })
    }
}

/// [`AuditStreamer`] over a [`MultipartUploader`]: every stream is a [`RecordingStream`].
pub struct UploaderStreamer<U> {
    uploader: Arc<U>,
    config: DriverConfig,
}

impl<U: MultipartUploader> UploaderStreamer<U> {
    /// Streams to `uploader` with `config`.
    pub fn new(uploader: Arc<U>, config: DriverConfig) -> UploaderStreamer<U> {
        UploaderStreamer { uploader, config }
    }

    /// The uploader.
    pub fn uploader(&self) -> &Arc<U> {
        &self.uploader
    }
}

impl<U: MultipartUploader> AuditStreamer for UploaderStreamer<U> {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            let s = RecordingStream::create(self.uploader.clone(), session_id, self.config.clone())
                .await
                .map_err(classify)?;
            Ok(Box::new(s) as Box<dyn SessionStream>)
        })
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            let upload = StreamUpload {
                id: upload_id.to_string(),
                session_id: session_id.to_string(),
                initiated_ms: 0,
            };
            let s = RecordingStream::resume(self.uploader.clone(), upload, self.config.clone())
                .await
                .map_err(classify)?;
            Ok(Box::new(s) as Box<dyn SessionStream>)
        })
    }
}
