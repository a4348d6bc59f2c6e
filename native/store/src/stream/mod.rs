//! The tokio driver of [`tapelog_core::stream::Stream`]: runs its timers, uploads its parts
//! (bounded, with retries that re-send the same bytes), completes the upload and publishes the
//! stream's status. All the decisions stay in the core machine.
//!
//! Memory of an idle stream: when the machine's idle deadline fires (its compressor and
//! uncompressed records are released), the driver drops its inbox buffers too, and asks for
//! the freed heap pages to go back to the system ([`heap`]); an idle stream then holds its
//! compressed part and small fixed state (~7 KiB of heap over `tapelog serve`).

use std::sync::Arc;
use std::time::Duration;
use tapelog_audit::clock::SharedClock;
use tapelog_audit::metrics::{GaugeGuard, Metrics};

use std::sync::Mutex;
use tapelog_core::AuditEvent;
use tapelog_core::stream::{
    Action, CompletedPart, PartSpan, ResumePlan, Stream, StreamConfig, StreamError, StreamStatus,
};
use thiserror::Error;

use tapelog_core::codec::{check_record, encode_record};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::{MultipartUploader, StreamPart, StreamUpload, UploadError};

/// How the driver retries part uploads (upstream: linear 1 s steps up to 30 s).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per part before the stream fails (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; grows by this much after each further failure.
    pub step: Duration,
    /// Longest wait between attempts.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1000,
            step: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// Stream and retry settings, and where the stream counts.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The machine's settings (part size, concurrency, inactivity, level).
    pub stream: StreamConfig,
    /// Part upload retries.
    pub retry: RetryPolicy,
    /// Where the stream counts (`streams_open`, `stream_parts_uploaded`, …): a server's, or
    /// by default a set of its own.
    pub metrics: Arc<Metrics>,
    /// The machine's times (wall milliseconds) and the timer's (monotonic); the system's by
    /// default.
    pub clock: SharedClock,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            stream: StreamConfig::default(),
            retry: RetryPolicy::default(),
            metrics: Metrics::shared(),
            clock: tapelog_audit::clock::system(),
        }
    }
}

/// Why a stream stopped.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The machine refused (event too large, stream ended, an upload failed for good).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The store refused (creating or resuming the upload).
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The driver task is gone (it panicked or was cancelled).
    #[error("the stream's task stopped")]
    Gone,
}

enum Cmd {
    Complete(oneshot::Sender<Result<(), StreamError>>),
    Close(oneshot::Sender<Result<(), StreamError>>),
}

/// How a stream ended, once it has: `Ok` when it completed or closed, the machine's error
/// when it failed. `None` while it runs.
type Ending = Option<Result<(), StreamError>>;

/// A recording being streamed to a store. Dropping it cancels the stream (the upload stays
/// resumable with the parts already stored).
pub struct RecordingStream {
    upload: StreamUpload,
    tx: mpsc::Sender<Cmd>,
    status: watch::Receiver<StreamStatus>,
    ended: watch::Receiver<Ending>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Bytes of encoded records the caller may queue before `record` waits for the task.
const INBOX_BYTES: usize = 256 * 1024;
/// Frame of a queued record: event index (i64 LE), length (u32 LE), `OneOf` bytes.
const FRAME_HEADER: usize = 12;

/// What the caller and the stream's task share. Records go through a byte buffer rather than
/// a channel of messages: the caller encodes straight into it and the task takes everything
/// queued in one swap, so a busy stream costs one lock per event and no allocation.
struct Shared {
    inbox: Mutex<Inbox>,
    /// The inbox went from empty to non-empty.
    queued: tokio::sync::Notify,
    /// The task took the inbox (room again), or ended.
    room: tokio::sync::Notify,
    /// Why the stream failed, once it has.
    failure: Mutex<Option<StreamError>>,
}

#[derive(Default)]
struct Inbox {
    frames: Vec<u8>,
    /// The task is gone: nothing more will be taken.
    closed: bool,
}

impl Shared {
    fn failure(&self) -> Option<StreamError> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn fail(&self, e: &StreamError) {
        if let Ok(mut f) = self.failure.lock()
            && f.is_none()
        {
            *f = Some(e.clone());
        }
    }

    /// Takes every queued frame, leaving `spare` (cleared) in its place.
    fn take(&self, spare: &mut Vec<u8>) -> bool {
        spare.clear();
        let took = match self.inbox.lock() {
            Ok(mut ib) if !ib.frames.is_empty() => {
                std::mem::swap(&mut ib.frames, spare);
                true
            }
            _ => false,
        };
        if took {
            self.room.notify_waiters();
        }
        took
    }

    /// Frees the inbox's buffer if nothing is queued (an idle stream keeps none).
    fn shrink(&self) {
        if let Ok(mut ib) = self.inbox.lock()
            && ib.frames.is_empty()
        {
            ib.frames = Vec::new();
        }
    }

    fn close(&self) {
        if let Ok(mut ib) = self.inbox.lock() {
            ib.closed = true;
        }
        self.room.notify_waiters();
    }
}

/// Feeds queued frames to the machine.
fn feed(machine: &mut Stream, frames: &[u8], shared: &Shared, now: u64) {
    let mut rest = frames;
    while rest.len() >= FRAME_HEADER {
        let mut index = [0u8; 8];
        index.copy_from_slice(&rest[..8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&rest[8..12]);
        let (index, len) = (i64::from_le_bytes(index), u32::from_le_bytes(len) as usize);
        let Some(oneof) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            break;
        };
        if let Err(e) = machine.record_raw(oneof, index, now) {
            // Only an ended or failed stream refuses a checked record.
            shared.fail(&e);
        }
        rest = &rest[FRAME_HEADER + len..];
    }
}

impl RecordingStream {
    /// Creates an upload for `session_id` and a stream writing to it.
    pub async fn create<U: MultipartUploader>(
        uploader: Arc<U>,
        session_id: &str,
        config: DriverConfig,
    ) -> Result<RecordingStream, DriverError> {
        let upload = uploader.create_upload(session_id).await?;
        let machine = Stream::new(upload.id.clone(), config.stream, config.clock.unix_ms());
        Ok(Self::spawn(uploader, upload, machine, config))
    }

    /// Continues `upload` after the parts the store holds for it. Each stored part is read
    /// back to find the event indexes it holds ([`ResumePlan`]): parts stored after a hole
    /// (a part that never arrived while a later one did) are left out, and the first status
    /// names the index up to which the kept parts hold every event, so the writer replays
    /// from the next one. Stores that can't give parts back are trusted as listed (status -1).
    pub async fn resume<U: MultipartUploader>(
        uploader: Arc<U>,
        upload: StreamUpload,
        config: DriverConfig,
    ) -> Result<RecordingStream, DriverError> {
        let plan = plan_resume(uploader.as_ref(), &upload, config.retry).await?;
        let machine = Stream::resume_planned(
            upload.id.clone(),
            config.stream,
            &plan,
            config.clock.unix_ms(),
        );
        Ok(Self::spawn(uploader, upload, machine, config))
    }

    fn spawn<U: MultipartUploader>(
        uploader: Arc<U>,
        upload: StreamUpload,
        machine: Stream,
        config: DriverConfig,
    ) -> RecordingStream {
        let (tx, rx) = mpsc::channel(4);
        let (status_tx, status) = watch::channel(machine.status(config.clock.unix_ms()));
        let (ended_tx, ended) = watch::channel(None);
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
            queued: tokio::sync::Notify::new(),
            room: tokio::sync::Notify::new(),
            failure: Mutex::new(None),
        });
        // Counted in `streams_open` until the task ends or is cancelled.
        let open = GaugeGuard::new(&config.metrics.streams_open);
        let task = tokio::spawn(run(
            uploader,
            upload.clone(),
            machine,
            config,
            rx,
            status_tx,
            ended_tx,
            shared.clone(),
            open,
        ));
        RecordingStream {
            upload,
            tx,
            status,
            ended,
            shared,
            task,
        }
    }

    /// The upload being written.
    pub fn upload(&self) -> &StreamUpload {
        &self.upload
    }

    /// Status updates: the highest event index that is durably stored.
    pub fn status(&self) -> watch::Receiver<StreamStatus> {
        self.status.clone()
    }

    /// Resolves once the stream has ended: `Ok` when it completed or closed, the failure when
    /// it failed (an upload that failed for good, a completion refused), [`DriverError::Gone`]
    /// when its task was cancelled (the handle dropped) or panicked. It resolves as soon as the
    /// machine is done, without waiting for part uploads still running in the background.
    /// The future does not borrow the stream: take it before [`complete`](Self::complete) or
    /// [`close`](Self::close) to learn of a failure without writing again (upstream's
    /// `Stream.Done()`).
    pub fn done(&self) -> impl Future<Output = Result<(), DriverError>> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            let outcome = match ended.wait_for(Option::is_some).await {
                Ok(v) => v.clone(),
                Err(_) => None,
            };
            match outcome {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(DriverError::Stream(e)),
                None => Err(DriverError::Gone),
            }
        }
    }

    /// Whether the stream has ended (see [`done`](Self::done)).
    pub fn is_done(&self) -> bool {
        self.ended.borrow().is_some() || self.ended.has_changed().is_err()
    }

    /// Records one event; waits while the stream's uploads are behind (back-pressure).
    ///
    /// The event is encoded (and trimmed if over 64 KiB) here, on the caller's task; an event
    /// that can't be recorded is refused at once. Upload failures show up on a later call and
    /// on [`complete`](Self::complete) / [`close`](Self::close).
    pub async fn record(&self, event: AuditEvent) -> Result<(), DriverError> {
        self.record_ref(&event).await
    }

    /// [`record`](Self::record) without taking the event.
    pub async fn record_ref(&self, event: &AuditEvent) -> Result<(), DriverError> {
        self.queue(event.index(), |out| {
            encode_record(event, out).map_err(StreamError::from)
        })
        .await
    }

    /// Records an encoded `OneOf` record (at most 64 KiB) with its event index.
    pub async fn record_raw(&self, oneof: &[u8], index: i64) -> Result<(), DriverError> {
        check_record(oneof).map_err(StreamError::from)?;
        self.queue(index, |out| {
            out.extend_from_slice(oneof);
            Ok(oneof.len())
        })
        .await
    }

    /// Appends one frame to the inbox (waiting while it is full), encoded by `encode`.
    async fn queue(
        &self,
        index: i64,
        encode: impl Fn(&mut Vec<u8>) -> Result<usize, StreamError>,
    ) -> Result<(), DriverError> {
        loop {
            if let Some(e) = self.shared.failure() {
                return Err(e.into());
            }
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let Ok(mut ib) = self.shared.inbox.lock() else {
                    return Err(DriverError::Gone);
                };
                if ib.closed {
                    drop(ib);
                    return Err(self.shared.failure().map_or(DriverError::Gone, Into::into));
                }
                if ib.frames.len() < INBOX_BYTES {
                    let was_empty = ib.frames.is_empty();
                    let at = ib.frames.len();
                    ib.frames.extend_from_slice(&index.to_le_bytes());
                    ib.frames.extend_from_slice(&[0; 4]);
                    match encode(&mut ib.frames) {
                        Ok(len) => {
                            ib.frames[at + 8..at + FRAME_HEADER]
                                .copy_from_slice(&(len as u32).to_le_bytes());
                        }
                        Err(e) => {
                            ib.frames.truncate(at);
                            return Err(e.into());
                        }
                    }
                    drop(ib);
                    if was_empty {
                        self.shared.queued.notify_one();
                    }
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Uploads the rest and completes the upload.
    pub async fn complete(self) -> Result<(), DriverError> {
        self.finish(Cmd::Complete).await
    }

    /// Uploads the rest and leaves the upload open (resumable).
    pub async fn close(self) -> Result<(), DriverError> {
        self.finish(Cmd::Close).await
    }

    async fn finish(
        mut self,
        cmd: fn(oneshot::Sender<Result<(), StreamError>>) -> Cmd,
    ) -> Result<(), DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(cmd(tx)).await.map_err(|_| DriverError::Gone)?;
        let r = rx.await.map_err(|_| DriverError::Gone)?;
        let _ = (&mut self.task).await;
        Ok(r?)
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Done {
    Part(u32, Result<StreamPart, UploadError>),
    Complete(Result<(), UploadError>),
}

async fn upload_with_retry<U: MultipartUploader>(
    uploader: Arc<U>,
    upload: StreamUpload,
    number: u32,
    part: Arc<tapelog_core::codec::EncodedPart>,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
) -> Result<StreamPart, UploadError> {
    // Every attempt sends the same part value: same header, payload and padding.
    let mut attempts = 0u64;
    let r = with_retry(retry, || {
        attempts += 1;
        uploader.upload_part(&upload, number, &part)
    })
    .await;
    metrics.stream_part_retries.add(attempts.saturating_sub(1));
    if r.is_ok() {
        metrics.stream_parts_uploaded.inc();
        metrics.stream_uploaded_bytes.add(part.len());
    }
    r
}

/// Runs `op` until it succeeds, fails for good (not found, bad id) or runs out of attempts,
/// waiting longer after each failure (linear steps up to the policy's maximum).
async fn with_retry<T, F, Fut>(retry: RetryPolicy, mut op: F) -> Result<T, UploadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, UploadError>>,
{
    let mut wait = retry.step;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e @ (UploadError::NotFound(_) | UploadError::InvalidId { .. })) => return Err(e),
            Err(e) if attempt >= retry.attempts.max(1) => return Err(e),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait + retry.step).min(retry.max);
                attempt += 1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run<U: MultipartUploader>(
    uploader: Arc<U>,
    upload: StreamUpload,
    mut machine: Stream,
    config: DriverConfig,
    mut rx: mpsc::Receiver<Cmd>,
    status: watch::Sender<StreamStatus>,
    ended: watch::Sender<Ending>,
    shared: Arc<Shared>,
    _open: GaugeGuard,
) {
    let clock = config.clock.clone();
    let mut batch = Vec::new();
    let mut work: JoinSet<Done> = JoinSet::new();
    // Which part each upload task carries, so that a task that panics fails its part.
    let mut part_tasks: std::collections::HashMap<tokio::task::Id, u32> =
        std::collections::HashMap::new();
    let mut finisher: Option<oneshot::Sender<Result<(), StreamError>>> = None;
    let mut inbox_open = true;
    // One timer for the task, moved when the machine's deadline comes earlier (a deadline that
    // moves later needs no move: the early wake-up ticks, finds nothing due, and re-arms).
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed: Option<u64> = None;
    loop {
        // Carry out what the machine asked for.
        for action in machine.take_actions() {
            match action {
                Action::UploadPart { number, part } => {
                    let (u, up) = (uploader.clone(), upload.clone());
                    let (retry, metrics) = (config.retry, config.metrics.clone());
                    let handle = work.spawn(async move {
                        let r = upload_with_retry(u, up, number, part, retry, metrics).await;
                        Done::Part(number, r)
                    });
                    part_tasks.insert(handle.id(), number);
                }
                Action::CompleteUpload { parts } => {
                    let (u, up) = (uploader.clone(), upload.clone());
                    work.spawn(async move {
                        let parts: Vec<StreamPart> = parts
                            .into_iter()
                            .map(|p| StreamPart {
                                number: p.number,
                                etag: p.etag,
                                last_modified_ms: 0,
                            })
                            .collect();
                        Done::Complete(u.complete_upload(&up, &parts).await)
                    });
                }
                Action::Status(s) => {
                    let _ = status.send(s);
                }
                Action::Closed | Action::Completed => {}
            }
        }
        if let Some(e) = machine.failure() {
            shared.fail(e);
        }
        if machine.is_done() {
            shared.close();
            let r = match machine.failure() {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            };
            ended.send_replace(Some(r.clone()));
            if let Some(f) = finisher.take() {
                let _ = f.send(r);
            }
            // Let uploads still running finish before the task ends.
            while work.join_next().await.is_some() {}
            return;
        }
        let deadline = machine.next_deadline();
        if let Some(d) = deadline
            && armed.is_none_or(|a| d < a)
        {
            let wait = Duration::from_millis(d.saturating_sub(clock.unix_ms()));
            timer.as_mut().reset(clock.now_mono() + wait);
            armed = Some(d);
        }
        let accept = inbox_open && finisher.is_none() && machine.wants_events();
        // Queued records first, without waiting: a busy caller keeps the inbox full.
        if accept && shared.take(&mut batch) {
            feed(&mut machine, &batch, &shared, clock.unix_ms());
            continue;
        }
        tokio::select! {
            () = shared.queued.notified(), if accept => {}
            cmd = rx.recv(), if inbox_open && finisher.is_none() => {
                // Records queued before the command belong before it.
                if shared.take(&mut batch) {
                    feed(&mut machine, &batch, &shared, clock.unix_ms());
                }
                match cmd {
                    Some(Cmd::Complete(reply)) => {
                        machine.complete();
                        finisher = Some(reply);
                    }
                    Some(Cmd::Close(reply)) => {
                        machine.close();
                        finisher = Some(reply);
                    }
                    None => {
                        // The handle is gone without complete or close: keep what was
                        // recorded.
                        inbox_open = false;
                        machine.close();
                    }
                }
            },
            Some(done) = work.join_next_with_id(), if !work.is_empty() => match done {
                Ok((id, Done::Part(n, Ok(p)))) => {
                    part_tasks.remove(&id);
                    let _ = machine.part_uploaded(n, p.etag, clock.unix_ms());
                }
                Ok((id, Done::Part(n, Err(e)))) => {
                    part_tasks.remove(&id);
                    machine.part_failed(n, e.to_string());
                }
                Ok((_, Done::Complete(Ok(())))) => machine.upload_completed(),
                Ok((_, Done::Complete(Err(e)))) => machine.complete_failed(e.to_string()),
                Err(join) => match part_tasks.remove(&join.id()) {
                    // A task that panicked: its part, or the complete, failed.
                    Some(n) => machine.part_failed(n, join.to_string()),
                    None => machine.complete_failed(join.to_string()),
                },
            },
            () = &mut timer, if armed.is_some() => {
                armed = None;
                let held = machine.memory_bytes() + batch.capacity();
                machine.tick(clock.unix_ms());
                // The machine's deadlines come only after a quiet spell: the buffers that
                // carried records in go too (they keep the size of the largest batch).
                batch = Vec::new();
                shared.shrink();
                if machine.memory_bytes() < held {
                    heap::give_back_soon();
                }
            }
        }
    }
}

/// Reads the stored parts of `upload` and decides what a resumed stream keeps.
/// Reads are retried as part uploads are (`retry`): one failed read must not cost the resume.
pub async fn plan_resume<U: MultipartUploader>(
    uploader: &U,
    upload: &StreamUpload,
    retry: RetryPolicy,
) -> Result<ResumePlan, DriverError> {
    let parts = uploader.list_parts(upload).await?;
    let mut spans = Vec::with_capacity(parts.len());
    for p in parts {
        let content = with_retry(retry, || uploader.part_content(upload, p.number)).await?;
        spans.push(PartSpan {
            part: CompletedPart {
                number: p.number,
                etag: p.etag,
            },
            content,
        });
    }
    Ok(ResumePlan::new(spans))
}

/// Returning freed heap pages to the system after streams went idle.
///
/// An idle stream gives up its uncompressed records, compressor and inbox buffers, but with
/// glibc's allocator the freed pages stay in the process: the small allocations that live on
/// (a stream's compressed part, made when it went idle) sit between them, so the heap's top
/// cannot shrink. With many streams that went quiet together, the resident size then stays
/// at the busy peak (measured over `tapelog serve`: 21 KiB per idle stream of which 7 KiB is
/// live). `malloc_trim` hands back every whole free page wherever it is. It walks the heap,
/// so it runs at most once per [`TRIM_DELAY`](heap::TRIM_DELAY), after it (streams that go
/// idle at about the same time share one), on a blocking thread. Other allocators and
/// systems: nothing to do.
mod heap {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Wait between a stream going idle and the trim (and so the longest time between two).
    pub(super) const TRIM_DELAY: Duration = Duration::from_secs(1);

    /// A trim is scheduled and has not started yet.
    static PENDING: AtomicBool = AtomicBool::new(false);

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }

    fn trim() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: glibc's `malloc_trim` takes a size and touches only the allocator's own
        // state, under its locks; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }

    /// Schedules a trim unless one is already waiting (needs a tokio runtime with timers,
    /// which the driver has).
    pub(super) fn give_back_soon() {
        if !cfg!(all(target_os = "linux", target_env = "gnu"))
            || PENDING.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tokio::spawn(async {
            tokio::time::sleep(TRIM_DELAY).await;
            PENDING.store(false, Ordering::Release);
            let _ = tokio::task::spawn_blocking(trim).await;
        });
    }
}
