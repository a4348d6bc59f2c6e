//! The upload completer: finds uploads abandoned by a crashed writer and completes them,
//! emits `session.upload` for each completed recording, then reads the recording back and
//! emits the `session.end` its writer never wrote (upstream's `UploadCompleter`,
//! `lib/events/complete.go`).
//!
//! The decisions (grace period, which uploads to look at, the events) are the core's
//! ([`tapelog_core::complete`]); this module lists, completes, reads and emits. Differences
//! from upstream, on purpose: a pass goes on with the next upload when one fails (upstream
//! stops the pass), and the session end is checked at once after completing (upstream waits
//! two minutes for S3's metadata to settle; our stores are consistent on completion).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tapelog_core::codec::CodecError;
use tapelog_core::complete::{
    self as rules, DEFAULT_CHECK_PERIOD_MS, DEFAULT_GRACE_MS, PartsCheck, Rules, SessionEndRecovery,
};
use tapelog_core::proto::Timestamp;
use thiserror::Error;

use crate::playback::{PlaybackError, SessionReader};
use crate::{MultipartUploader, StreamUpload, UploadError};
use tapelog_audit::clock::SharedClock;
use tapelog_audit::emit::{EmitError, Emitter};

/// Whether a session is still being recorded (upstream's session trackers).
pub trait SessionTracker: Send + Sync + 'static {
    /// `Ok(true)` if the session is live; an error makes the completer leave the upload alone
    /// this time, as upstream.
    fn is_live(&self, session_id: &str) -> impl Future<Output = Result<bool, TrackerError>> + Send;
}

impl<T: SessionTracker> SessionTracker for Arc<T> {
    fn is_live(&self, session_id: &str) -> impl Future<Output = Result<bool, TrackerError>> + Send {
        (**self).is_live(session_id)
    }
}

/// A session tracker that could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("session tracker: {0}")]
pub struct TrackerError(pub String);

/// A tracker that knows of no live session: every upload outside the grace period is taken
/// to be abandoned (the default when nothing tracks sessions).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSessionTracker;

impl SessionTracker for NoSessionTracker {
    async fn is_live(&self, _session_id: &str) -> Result<bool, TrackerError> {
        Ok(false)
    }
}

pub use crate::playback::{RecordingBytes, RecordingSource};

/// Settings of the completer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleterConfig {
    /// Cluster name written into emitted events.
    pub cluster_name: String,
    /// Uploads initiated, and parts written, less than this long ago are left alone (24 h by
    /// default, as upstream; zero: none).
    pub grace: Duration,
    /// Time between passes of [`UploadCompleter::run`] (5 min by default), jittered as
    /// upstream: the first pass after half to all of it, then 6/7 to all of it.
    pub check_period: Duration,
}

impl CompleterConfig {
    /// Defaults for `cluster_name`.
    pub fn new(cluster_name: &str) -> CompleterConfig {
        CompleterConfig {
            cluster_name: cluster_name.to_string(),
            grace: Duration::from_millis(DEFAULT_GRACE_MS as u64),
            check_period: Duration::from_millis(DEFAULT_CHECK_PERIOD_MS),
        }
    }
}

/// Why a pass or an upload failed.
#[derive(Debug, Error)]
pub enum CompleteError {
    /// Listing the uploads failed: the pass did nothing.
    #[error("listing uploads: {0}")]
    ListUploads(#[source] UploadError),
    /// Listing an upload's parts failed.
    #[error("listing parts of upload {upload}: {source}")]
    ListParts {
        /// Upload id.
        upload: String,
        /// The store's error.
        #[source]
        source: UploadError,
    },
    /// Completing an upload failed.
    #[error("completing upload {upload} of session {session}: {source}")]
    Complete {
        /// Upload id.
        upload: String,
        /// Session id.
        session: String,
        /// The store's error.
        #[source]
        source: UploadError,
    },
    /// The completed recording could not be read back.
    #[error("reading the recording of session {session}: {source}")]
    ReadRecording {
        /// Session id.
        session: String,
        /// The store's error.
        #[source]
        source: UploadError,
    },
    /// The completed recording is damaged.
    #[error("decoding the recording of session {session}: {source}")]
    Decode {
        /// Session id.
        session: String,
        /// Where and what.
        #[source]
        source: CodecError,
    },
}

/// Why an upload was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Initiated within the grace period (this and every newer upload are not looked at).
    RecentUpload,
    /// The session is live.
    Live,
    /// The session tracker failed.
    Tracker(TrackerError),
    /// A part was written within the grace period.
    RecentPart {
        /// When the newest part was written (ms since the Unix epoch).
        newest_ms: i64,
    },
    /// The upload disappeared meanwhile (completed or aborted by someone else).
    Gone,
    /// Another process is completing it right now.
    Locked,
}

/// What happened to an event the completer emits.
#[derive(Debug)]
pub enum EventOutcome {
    /// Emitted (the event's id).
    Emitted(String),
    /// The emitter refused it.
    Failed(EmitError),
}

impl EventOutcome {
    /// Whether it was emitted.
    pub fn is_emitted(&self) -> bool {
        matches!(self, EventOutcome::Emitted(_))
    }
}

/// The outcome of the session end check of a completed recording.
#[derive(Debug)]
pub enum SessionEndOutcome {
    /// The recording has a `session.end` / `windows.desktop.session.end`.
    Present,
    /// No end, and nothing to build one from (no events or no start event).
    NoStart,
    /// An end event was synthesised and handed to the emitter.
    Synthesised {
        /// Its type (`session.end` or `windows.desktop.session.end`).
        event_type: String,
        /// Whether the emitter took it.
        outcome: EventOutcome,
    },
    /// The recording could not be read.
    Failed(CompleteError),
}

/// An upload the pass completed.
#[derive(Debug)]
pub struct Completed {
    /// The upload.
    pub upload: StreamUpload,
    /// Parts joined (0: the upload was only cleaned up and no event emitted).
    pub parts: usize,
    /// The recording's URL ("" when there were no parts).
    pub url: String,
    /// The `session.upload` event (None when there were no parts).
    pub upload_event: Option<EventOutcome>,
    /// The session end check (None when there were no parts).
    pub session_end: Option<SessionEndOutcome>,
}

/// An upload the pass left alone.
#[derive(Debug)]
pub struct Skipped {
    /// The upload.
    pub upload: StreamUpload,
    /// Why.
    pub reason: SkipReason,
}

/// An upload the pass failed on (it is tried again next pass).
#[derive(Debug)]
pub struct Failed {
    /// The upload.
    pub upload: StreamUpload,
    /// What went wrong.
    pub error: CompleteError,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct CompleterReport {
    /// Completed uploads, in listing order.
    pub completed: Vec<Completed>,
    /// Uploads left alone.
    pub skipped: Vec<Skipped>,
    /// Uploads that failed.
    pub failed: Vec<Failed>,
}

impl CompleterReport {
    /// Whether the pass found nothing to do.
    pub fn is_empty(&self) -> bool {
        self.completed.is_empty() && self.skipped.is_empty() && self.failed.is_empty()
    }
}

/// Completes abandoned uploads of `U`, emitting events to `E`; `T` says which sessions are
/// live.
pub struct UploadCompleter<U, E, T = NoSessionTracker> {
    uploader: Arc<U>,
    emitter: E,
    tracker: T,
    config: CompleterConfig,
    /// The wall clock of [`run`](Self::run)'s passes (the system's unless [`with_clock`](Self::with_clock)).
    clock: SharedClock,
}

fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl<U, E> UploadCompleter<U, E, NoSessionTracker>
where
    U: MultipartUploader + RecordingSource,
    E: Emitter,
{
    /// A completer with no session tracker ([`NoSessionTracker`]).
    pub fn new(
        uploader: Arc<U>,
        emitter: E,
        config: CompleterConfig,
    ) -> UploadCompleter<U, E, NoSessionTracker> {
        UploadCompleter {
            uploader,
            emitter,
            tracker: NoSessionTracker,
            config,
            clock: tapelog_audit::clock::system(),
        }
    }
}

impl<U, E, T> UploadCompleter<U, E, T>
where
    U: MultipartUploader + RecordingSource,
    E: Emitter,
    T: SessionTracker,
{
    /// The same completer asking `tracker` which sessions are live.
    pub fn with_tracker<T2: SessionTracker>(self, tracker: T2) -> UploadCompleter<U, E, T2> {
        UploadCompleter {
            uploader: self.uploader,
            emitter: self.emitter,
            tracker,
            config: self.config,
            clock: self.clock,
        }
    }

    /// The same completer taking the time of its periodic passes from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The settings.
    pub fn config(&self) -> &CompleterConfig {
        &self.config
    }

    /// The emitter.
    pub fn emitter(&self) -> &E {
        &self.emitter
    }

    fn rules(&self) -> Rules {
        Rules::new(i64::try_from(self.config.grace.as_millis()).unwrap_or(i64::MAX))
    }

    /// One pass at `now_ms` (ms since the Unix epoch): lists the uploads, completes the
    /// abandoned ones, emits their events. Fails only if the uploads cannot be listed; what
    /// happened to each upload is in the report.
    pub async fn run_once(&self, now_ms: u64) -> Result<CompleterReport, CompleteError> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let uploads = self
            .uploader
            .list_uploads()
            .await
            .map_err(CompleteError::ListUploads)?;
        let rules = self.rules();
        let examined = rules.select(now, &uploads, |u| u.initiated_ms).len();
        let mut report = CompleterReport::default();
        for upload in &uploads[..examined] {
            self.handle(&rules, now, upload, &mut report).await;
        }
        for upload in &uploads[examined..] {
            report.skipped.push(Skipped {
                upload: upload.clone(),
                reason: SkipReason::RecentUpload,
            });
        }
        Ok(report)
    }

    async fn handle(
        &self,
        rules: &Rules,
        now: i64,
        upload: &StreamUpload,
        report: &mut CompleterReport,
    ) {
        let skip = |report: &mut CompleterReport, reason| {
            report.skipped.push(Skipped {
                upload: upload.clone(),
                reason,
            })
        };
        let fail = |report: &mut CompleterReport, error| {
            report.failed.push(Failed {
                upload: upload.clone(),
                error,
            })
        };
        match self.tracker.is_live(&upload.session_id).await {
            Ok(false) => {}
            Ok(true) => return skip(report, SkipReason::Live),
            Err(e) => return skip(report, SkipReason::Tracker(e)),
        }
        let parts = match self.uploader.list_parts(upload).await {
            Ok(p) => p,
            Err(UploadError::NotFound(_)) => return skip(report, SkipReason::Gone),
            Err(source) => {
                let upload = upload.id.clone();
                return fail(report, CompleteError::ListParts { upload, source });
            }
        };
        let emit_event = match rules.check_parts(now, parts.iter().map(|p| p.last_modified_ms)) {
            PartsCheck::Recent { newest_ms } => {
                return skip(report, SkipReason::RecentPart { newest_ms });
            }
            PartsCheck::Complete { emit_event, .. } => emit_event,
        };
        match self.uploader.complete_upload(upload, &parts).await {
            Ok(()) => {}
            Err(UploadError::NotFound(_)) => return skip(report, SkipReason::Gone),
            Err(UploadError::Locked(_)) => return skip(report, SkipReason::Locked),
            Err(source) => {
                let error = CompleteError::Complete {
                    upload: upload.id.clone(),
                    session: upload.session_id.clone(),
                    source,
                };
                return fail(report, error);
            }
        }
        let mut done = Completed {
            upload: upload.clone(),
            parts: parts.len(),
            url: String::new(),
            upload_event: None,
            session_end: None,
        };
        if emit_event {
            done.url = self.uploader.recording_url(&upload.session_id);
            let uid = new_uid();
            let event = rules::session_upload_event(
                Timestamp::from_unix_millis(now),
                &uid,
                &self.config.cluster_name,
                &upload.session_id,
                &done.url,
            );
            done.upload_event = Some(match self.emitter.emit(event).await {
                Ok(()) => EventOutcome::Emitted(uid),
                Err(e) => EventOutcome::Failed(e),
            });
            done.session_end = Some(self.ensure_session_end(now, &upload.session_id).await);
        }
        report.completed.push(done);
    }

    /// Reads the recording of `session_id` and emits a synthesised end if it has none.
    async fn ensure_session_end(&self, now: i64, session_id: &str) -> SessionEndOutcome {
        let recovery = match self.scan(session_id).await {
            Ok(r) => r,
            Err(e) => return SessionEndOutcome::Failed(e),
        };
        if recovery.has_end() {
            return SessionEndOutcome::Present;
        }
        let uid = new_uid();
        let Some(mut event) = recovery.finish(Timestamp::from_unix_millis(now), &uid) else {
            return SessionEndOutcome::NoStart;
        };
        // The audit log's checking emitter fills an empty cluster name with its own.
        if event.cluster_name().is_empty()
            && let Some(m) = event.metadata_mut()
        {
            m.cluster_name = self.config.cluster_name.clone();
        }
        let event_type = event.event_type().to_string();
        let outcome = match self.emitter.emit(event).await {
            Ok(()) => EventOutcome::Emitted(uid),
            Err(e) => EventOutcome::Failed(e),
        };
        SessionEndOutcome::Synthesised {
            event_type,
            outcome,
        }
    }

    /// Streams the recording through the core reader into a [`SessionEndRecovery`]; memory
    /// stays bounded by the reader's buffers and one chunk of the store.
    async fn scan(&self, session_id: &str) -> Result<SessionEndRecovery, CompleteError> {
        let read_err = |source| CompleteError::ReadRecording {
            session: session_id.to_string(),
            source,
        };
        let chunks = self
            .uploader
            .open_recording(session_id)
            .await
            .map_err(read_err)?;
        let mut reader = SessionReader::new(session_id, chunks);
        let mut recovery = SessionEndRecovery::new();
        while let Some(event) = reader.next_event().await {
            match event {
                Ok(e) => {
                    recovery.feed(&e);
                    if recovery.has_end() {
                        break;
                    }
                }
                Err(PlaybackError::Read { source, .. }) => return Err(read_err(source)),
                Err(PlaybackError::Decode { source, .. }) => {
                    return Err(CompleteError::Decode {
                        session: session_id.to_string(),
                        source,
                    });
                }
                Err(other) => {
                    return Err(read_err(UploadError::NotFound(other.to_string())));
                }
            }
        }
        Ok(recovery)
    }

    /// Runs passes every check period (jittered) until `shutdown` resolves. A pass in
    /// progress is finished first.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        self.run_reporting(shutdown, |_| {}).await
    }

    /// As [`run`](Self::run), handing each pass's result to `on_pass` (to print or log it).
    pub async fn run_reporting(
        &self,
        shutdown: impl Future<Output = ()>,
        mut on_pass: impl FnMut(Result<CompleterReport, CompleteError>),
    ) {
        let period = u64::try_from(self.config.check_period.as_millis()).unwrap_or(u64::MAX);
        let mut delay = rules::half_jitter_ms(period, random_u64());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
            }
            on_pass(self.run_once(self.clock.unix_ms()).await);
            delay = rules::seventh_jitter_ms(period, random_u64()).max(1);
        }
    }
}
