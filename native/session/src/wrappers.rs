//! Streamers that wrap other streamers, after upstream's `lib/events` ones: a hook on every
//! event ([`CallbackStreamer`]), a `session.upload` event when a recording is completed
//! ([`ReportingStreamer`]), session events copied to an emitter ([`TeeStreamer`]), and one
//! value that both streams and emits ([`StreamerAndEmitter`], the [`StreamEmitter`] trait).
//!
//! Each wrapper's streams pass [`SessionStream::statuses`] and [`SessionStream::done`] through
//! from the stream they wrap, so a [`SessionWriter`](super::SessionWriter) works over them as
//! over the stream itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tapelog_core::AuditEvent;
use tapelog_core::complete::session_upload_event;
use tapelog_core::session::tee_emits;
use tapelog_core::stream::StreamStatus;
use tokio::sync::{mpsc, watch};

use super::streamer::{AuditStreamer, SessionStream, StreamFailure, UploaderStreamer};
use tapelog_audit::emit::{Clock, EmitError, Emitter, IdSource, new_uuid, system_clock};
use tapelog_store::MultipartUploader;
use tapelog_store::complete::EventOutcome;

/// The hook a [`CallbackStreamer`] calls with the session id and each event before it is
/// recorded; an error refuses the event (it is not recorded and the error is the record's).
pub type RecordHook = Arc<dyn Fn(&str, &AuditEvent) -> Result<(), StreamFailure> + Send + Sync>;
/// The hook a [`CallbackStreamer`] calls with the session id before a stream is created.
pub type CreateHook = Arc<dyn Fn(&str) -> Result<(), StreamFailure> + Send + Sync>;
/// The hook a [`CallbackStreamer`] calls with the session and upload ids before a stream is
/// resumed.
pub type ResumeHook = Arc<dyn Fn(&str, &str) -> Result<(), StreamFailure> + Send + Sync>;

/// Upstream's `CallbackStreamer`: streams of the wrapped streamer, with hooks in front of
/// their calls. Used in tests to inject failures and as a filter: a record hook that returns
/// [`StreamFailure::Refused`] keeps an event out of the recording while the session goes on
/// (the session writer counts it as refused); [`StreamFailure::Unrecoverable`] stops the
/// writer; [`StreamFailure::Transient`] makes it replace the stream.
pub struct CallbackStreamer<S> {
    inner: S,
    on_record: Option<RecordHook>,
    on_create: Option<CreateHook>,
    on_resume: Option<ResumeHook>,
}

impl<S: AuditStreamer> CallbackStreamer<S> {
    /// Streams of `inner`, with no hook yet.
    pub fn new(inner: S) -> CallbackStreamer<S> {
        CallbackStreamer {
            inner,
            on_record: None,
            on_create: None,
            on_resume: None,
        }
    }

    /// Calls `hook(session_id, event)` before each event is recorded, on every stream.
    pub fn on_record(
        mut self,
        hook: impl Fn(&str, &AuditEvent) -> Result<(), StreamFailure> + Send + Sync + 'static,
    ) -> CallbackStreamer<S> {
        self.on_record = Some(Arc::new(hook));
        self
    }

    /// Calls `hook(session_id)` before a stream is created; an error is `create`'s.
    pub fn on_create(
        mut self,
        hook: impl Fn(&str) -> Result<(), StreamFailure> + Send + Sync + 'static,
    ) -> CallbackStreamer<S> {
        self.on_create = Some(Arc::new(hook));
        self
    }

    /// Calls `hook(session_id, upload_id)` before a stream is resumed; an error is `resume`'s.
    pub fn on_resume(
        mut self,
        hook: impl Fn(&str, &str) -> Result<(), StreamFailure> + Send + Sync + 'static,
    ) -> CallbackStreamer<S> {
        self.on_resume = Some(Arc::new(hook));
        self
    }

    /// The wrapped streamer.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn wrap(&self, session_id: &str, stream: Box<dyn SessionStream>) -> Box<dyn SessionStream> {
        Box::new(CallbackStream {
            inner: stream,
            session_id: session_id.to_string(),
            hook: self.on_record.clone(),
        })
    }
}

impl<S: AuditStreamer> AuditStreamer for CallbackStreamer<S> {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            if let Some(hook) = &self.on_create {
                hook(session_id)?;
            }
            let stream = self.inner.create(session_id).await?;
            Ok(self.wrap(session_id, stream))
        })
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            if let Some(hook) = &self.on_resume {
                hook(session_id, upload_id)?;
            }
            let stream = self.inner.resume(session_id, upload_id).await?;
            Ok(self.wrap(session_id, stream))
        })
    }
}

/// Upstream's `CallbackStream`: a stream whose events pass a hook first.
pub struct CallbackStream {
    inner: Box<dyn SessionStream>,
    session_id: String,
    hook: Option<RecordHook>,
}

impl CallbackStream {
    /// `inner` (a stream of `session_id`) behind `hook`.
    pub fn new(
        inner: Box<dyn SessionStream>,
        session_id: &str,
        hook: impl Fn(&str, &AuditEvent) -> Result<(), StreamFailure> + Send + Sync + 'static,
    ) -> CallbackStream {
        CallbackStream {
            inner,
            session_id: session_id.to_string(),
            hook: Some(Arc::new(hook)),
        }
    }
}

impl SessionStream for CallbackStream {
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>> {
        Box::pin(async move {
            if let Some(hook) = &self.hook {
                hook(&self.session_id, event)?;
            }
            self.inner.record(event).await
        })
    }

    fn statuses(&self) -> watch::Receiver<StreamStatus> {
        self.inner.statuses()
    }

    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.complete()
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.close()
    }

    fn done(&self) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.done()
    }
}

/// Where the recording of a session can be found once completed (the `url` of its
/// `session.upload` event).
pub type RecordingUrl = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What a [`ReportingStreamer`] reports for each stream it saw complete (upstream's
/// `UploadEvent`).
#[derive(Debug)]
pub struct UploadReport {
    /// The session.
    pub session_id: String,
    /// The upload, as the stream's last status named it.
    pub upload_id: String,
    /// How completing the stream went.
    pub result: Result<(), StreamFailure>,
    /// The `session.upload` event: its id when the emitter took it, the emitter's error when
    /// not; `None` when completing failed (no event is emitted for a recording that is not
    /// there).
    pub upload_event: Option<EventOutcome>,
}

/// What every stream of a [`ReportingStreamer`] gets a copy of (shared parts behind `Arc`s).
struct Reporting<E> {
    emitter: Arc<E>,
    cluster_name: Arc<str>,
    url: RecordingUrl,
    clock: Clock,
    ids: IdSource,
    reports: Option<mpsc::Sender<UploadReport>>,
}

impl<E> Clone for Reporting<E> {
    fn clone(&self) -> Self {
        Reporting {
            emitter: self.emitter.clone(),
            cluster_name: self.cluster_name.clone(),
            url: self.url.clone(),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            reports: self.reports.clone(),
        }
    }
}

/// Upstream's `ReportingStreamer`: when one of its streams completes, it emits the
/// `session.upload` event of that session through an emitter (the same event the upload
/// completer emits: `tapelog_core::complete::session_upload_event`), and, if asked, reports
/// the outcome on a channel ([`with_reports`](Self::with_reports)).
///
/// Completing returns the stream's own result: an emitter that fails does not make a
/// completed recording look failed (the session writer would try to recover it); the failure
/// is in the report.
pub struct ReportingStreamer<S, E> {
    inner: S,
    settings: Reporting<E>,
}

impl<S: AuditStreamer, E: Emitter> ReportingStreamer<S, E> {
    /// Streams of `inner`; completions announced through `emitter` with `cluster_name`, and
    /// `url(session_id)` as the recording's address.
    pub fn new(
        inner: S,
        emitter: E,
        cluster_name: &str,
        url: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> ReportingStreamer<S, E> {
        ReportingStreamer {
            inner,
            settings: Reporting {
                emitter: Arc::new(emitter),
                cluster_name: cluster_name.into(),
                url: Arc::new(url),
                clock: Arc::new(system_clock),
                ids: Arc::new(new_uuid),
                reports: None,
            },
        }
    }

    /// The same with another clock for the event's time (tests).
    pub fn with_clock(mut self, clock: Clock) -> ReportingStreamer<S, E> {
        self.settings.clock = clock;
        self
    }

    /// The same with another source of event ids (tests).
    pub fn with_ids(mut self, ids: IdSource) -> ReportingStreamer<S, E> {
        self.settings.ids = ids;
        self
    }

    /// Also sends an [`UploadReport`] to `reports` after each complete. As upstream, a full
    /// channel loses the report rather than holding up the stream.
    pub fn with_reports(mut self, reports: mpsc::Sender<UploadReport>) -> ReportingStreamer<S, E> {
        self.settings.reports = Some(reports);
        self
    }

    /// The wrapped streamer.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The emitter.
    pub fn emitter(&self) -> &E {
        &self.settings.emitter
    }

    fn wrap(&self, session_id: &str, stream: Box<dyn SessionStream>) -> Box<dyn SessionStream> {
        Box::new(ReportingStream {
            inner: stream,
            session_id: session_id.to_string(),
            settings: self.settings.clone(),
        })
    }
}

impl<U: MultipartUploader, E: Emitter> ReportingStreamer<UploaderStreamer<U>, E> {
    /// Streams of `inner`, with the uploader's own recording URLs
    /// ([`MultipartUploader::recording_url`]).
    pub fn over_uploader(
        inner: UploaderStreamer<U>,
        emitter: E,
        cluster_name: &str,
    ) -> ReportingStreamer<UploaderStreamer<U>, E> {
        let uploader = inner.uploader().clone();
        ReportingStreamer::new(inner, emitter, cluster_name, move |sid| {
            uploader.recording_url(sid)
        })
    }
}

impl<S: AuditStreamer, E: Emitter> AuditStreamer for ReportingStreamer<S, E> {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            let stream = self.inner.create(session_id).await?;
            Ok(self.wrap(session_id, stream))
        })
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            let stream = self.inner.resume(session_id, upload_id).await?;
            Ok(self.wrap(session_id, stream))
        })
    }
}

/// Upstream's `ReportingStream`: a stream that announces its completion.
pub struct ReportingStream<E> {
    inner: Box<dyn SessionStream>,
    session_id: String,
    settings: Reporting<E>,
}

impl<E: Emitter> SessionStream for ReportingStream<E> {
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>> {
        self.inner.record(event)
    }

    fn statuses(&self) -> watch::Receiver<StreamStatus> {
        self.inner.statuses()
    }

    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        let ReportingStream {
            inner,
            session_id,
            settings: shared,
        } = *self;
        let upload_id = inner.statuses().borrow().upload_id.clone();
        Box::pin(async move {
            let result = inner.complete().await;
            let upload_event = match &result {
                Ok(()) => {
                    let uid = (shared.ids)();
                    let event = session_upload_event(
                        (shared.clock)().round_to_millis(),
                        &uid,
                        &shared.cluster_name,
                        &session_id,
                        &(shared.url)(&session_id),
                    );
                    Some(match shared.emitter.emit(event).await {
                        Ok(()) => EventOutcome::Emitted(uid),
                        Err(e) => EventOutcome::Failed(e),
                    })
                }
                Err(_) => None,
            };
            if let Some(reports) = &shared.reports {
                let _ = reports.try_send(UploadReport {
                    session_id,
                    upload_id,
                    result: result.clone(),
                    upload_event,
                });
            }
            result
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.close()
    }

    fn done(&self) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.done()
    }
}

/// What a tee has done with the events it was given (see [`TeeStreamer::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeeStats {
    /// Events the emitter took.
    pub emitted: u64,
    /// Events recorded but not emitted ([`tapelog_core::session::TEE_SKIPPED_TYPES`]).
    pub skipped: u64,
    /// Events the emitter refused or failed on.
    pub failed: u64,
    /// The last emitter error, as text.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct TeeCounters {
    emitted: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl TeeCounters {
    fn failed(&self, e: &EmitError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
}

/// Upstream's `TeeStreamer`: every event goes into the recording, and every event that is not
/// terminal detail (`print`, `resize`, `session.disk`, no type: the core's
/// [`tee_emits`]) also goes to an emitter (the audit log). It is an [`Emitter`] too: events
/// emitted on it go to the same emitter.
///
/// The event is emitted whatever the recording said, as upstream. Unlike upstream, an emitter
/// failure does not fail the record: the event is in the recording, and a record error would
/// make the session writer replace a healthy stream; failures are counted in
/// [`stats`](Self::stats) instead.
pub struct TeeStreamer<S, E> {
    inner: S,
    emitter: Arc<E>,
    counters: Arc<TeeCounters>,
}

impl<S: AuditStreamer, E: Emitter> TeeStreamer<S, E> {
    /// Streams of `inner`, with session events copied to `emitter`.
    pub fn new(inner: S, emitter: E) -> TeeStreamer<S, E> {
        TeeStreamer {
            inner,
            emitter: Arc::new(emitter),
            counters: Arc::default(),
        }
    }

    /// The wrapped streamer.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The emitter.
    pub fn emitter(&self) -> &E {
        &self.emitter
    }

    /// What every stream of this streamer did with its events so far.
    pub fn stats(&self) -> TeeStats {
        let c = &self.counters;
        TeeStats {
            emitted: c.emitted.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn wrap(&self, stream: Box<dyn SessionStream>) -> Box<dyn SessionStream> {
        Box::new(TeeStream {
            inner: stream,
            emitter: self.emitter.clone(),
            counters: self.counters.clone(),
        })
    }
}

impl<S: AuditStreamer, E: Emitter> AuditStreamer for TeeStreamer<S, E> {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move { Ok(self.wrap(self.inner.create(session_id).await?)) })
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move { Ok(self.wrap(self.inner.resume(session_id, upload_id).await?)) })
    }
}

impl<S: AuditStreamer, E: Emitter> Emitter for TeeStreamer<S, E> {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.emitter.emit(event).await
    }
}

/// Upstream's `TeeStream`: see [`TeeStreamer`].
pub struct TeeStream<E> {
    inner: Box<dyn SessionStream>,
    emitter: Arc<E>,
    counters: Arc<TeeCounters>,
}

impl<E: Emitter> TeeStream<E> {
    /// `inner`, with session events copied to `emitter` (a stream made outside a
    /// [`TeeStreamer`]; its counts are its own).
    pub fn new(inner: Box<dyn SessionStream>, emitter: Arc<E>) -> TeeStream<E> {
        TeeStream {
            inner,
            emitter,
            counters: Arc::default(),
        }
    }
}

impl<E: Emitter> SessionStream for TeeStream<E> {
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>> {
        Box::pin(async move {
            let recorded = self.inner.record(event).await;
            if tee_emits(event.event_type()) {
                match self.emitter.emit(event.clone()).await {
                    Ok(()) => {
                        self.counters.emitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => self.counters.failed(&e),
                }
            } else {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
            recorded
        })
    }

    fn statuses(&self) -> watch::Receiver<StreamStatus> {
        self.inner.statuses()
    }

    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.complete()
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.close()
    }

    fn done(&self) -> BoxFuture<'static, Result<(), StreamFailure>> {
        self.inner.done()
    }
}

/// Something that both opens session streams and emits audit events (upstream's
/// `StreamEmitter`): what a session needs, recordings and the audit log, in one value. Every
/// type that is both an [`AuditStreamer`] and an [`Emitter`] is one.
pub trait StreamEmitter: AuditStreamer + Emitter {}

impl<T: AuditStreamer + Emitter> StreamEmitter for T {}

/// Upstream's `StreamerAndEmitter`: a streamer and an emitter put together into one
/// [`StreamEmitter`]; streams come from `streamer`, events go to `emitter`.
pub struct StreamerAndEmitter<S, E> {
    /// Opens the streams.
    pub streamer: S,
    /// Takes the events.
    pub emitter: E,
}

impl<S: AuditStreamer, E: Emitter> StreamerAndEmitter<S, E> {
    /// `streamer` and `emitter` as one value.
    pub fn new(streamer: S, emitter: E) -> StreamerAndEmitter<S, E> {
        StreamerAndEmitter { streamer, emitter }
    }
}

impl<S: AuditStreamer, E: Emitter> AuditStreamer for StreamerAndEmitter<S, E> {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        self.streamer.create(session_id)
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        self.streamer.resume(session_id, upload_id)
    }
}

impl<S: AuditStreamer, E: Emitter> Emitter for StreamerAndEmitter<S, E> {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.emitter.emit(event).await
    }
}
