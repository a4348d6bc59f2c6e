//! [`SessionWriter`]: upstream's `SessionWriter` as a tokio driver of the core's session rules
//! (`tapelog_core::session`).
//!
//! Callers (async tasks or plain threads) prepare events under one lock and put them in a
//! bounded queue; a background task records them into the current stream and keeps each one
//! in a [`ReplayBuffer`] until a stream status confirms it. When the stream fails, the task
//! closes it, resumes the same upload (or creates one if no status ever came), waits for the
//! first status and sends again what it does not hold. Callers never wait longer than the
//! backoff timeout: a full queue past it puts the writer into backoff, and events are then
//! lost (and counted) instead of blocking the session.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tapelog_audit::clock::SharedClock;
use tokio::time::Instant;

use futures::future::BoxFuture;
use tapelog_core::AuditEvent;
use tapelog_core::event::{FieldsError, is_uncoded};
use tapelog_core::session::{
    Admission, Intake, IntakeConfig, IntakeError, Preparer, PreparerConfig, PreparerConfigError,
    RecoveryPolicy, Reopen, ReplayBuffer, WriterStats,
};
use tapelog_core::stream::StreamStatus;
use thiserror::Error;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::streamer::{AuditStreamer, SessionStream, StreamFailure};

/// Where event times come from (wall clock by default; tests pass a fixed one).
pub use tapelog_audit::emit::Clock;
/// Where event ids (`uid`) come from (random UUIDs by default).
pub use tapelog_audit::emit::IdSource as UidSource;

/// Events the queue holds by default between the callers and the writer's task.
pub const QUEUE_CAPACITY: usize = 256;
/// Default bound on [`SessionWriter::complete`] / [`SessionWriter::close`] (upstream
/// completes with a 30 s context).
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`SessionWriter`] works.
pub struct SessionWriterConfig {
    /// The session and what goes into its events.
    pub preparer: PreparerConfig,
    /// Opens the streams (first, resumed and new ones).
    pub streamer: Arc<dyn AuditStreamer>,
    /// Backoff timeout and duration (upstream: 5 s and 30 s).
    pub intake: IntakeConfig,
    /// Attempts and waits when a stream has to be replaced (upstream: 10, 1 s steps to 30 s).
    pub recovery: RecoveryPolicy,
    /// Events queued for the task before callers wait (at least 1).
    pub queue_capacity: usize,
    /// Longest wait of `complete` and `close`.
    pub finish_timeout: Duration,
    /// Event times; `time`'s wall time when `None`.
    pub clock: Option<Clock>,
    /// Event ids; random UUIDs when `None`.
    pub uid: Option<UidSource>,
    /// The intake's monotonic time (waits for room, backoff) and the default event times;
    /// the system clock by default.
    pub time: SharedClock,
}

impl SessionWriterConfig {
    /// Upstream's defaults for `preparer` over `streamer`.
    pub fn new(preparer: PreparerConfig, streamer: Arc<dyn AuditStreamer>) -> SessionWriterConfig {
        SessionWriterConfig {
            preparer,
            streamer,
            intake: IntakeConfig::default(),
            recovery: RecoveryPolicy::default(),
            queue_capacity: QUEUE_CAPACITY,
            finish_timeout: FINISH_TIMEOUT,
            clock: None,
            uid: None,
            time: tapelog_audit::clock::system(),
        }
    }
}

/// Why the writer stopped recording.
#[derive(Debug, Clone, Error)]
pub enum StopCause {
    /// The stream said the upload cannot continue.
    #[error("{0}")]
    Unrecoverable(StreamFailure),
    /// Every attempt to replace a failed stream failed.
    #[error("recovering the stream failed after {attempts} attempts; last error: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: StreamFailure,
    },
    /// `complete` or `close` ran out of time; the task was cancelled.
    #[error("finishing the stream did not end within {0:?}")]
    FinishTimedOut(Duration),
    /// The writer's task panicked or was cancelled.
    #[error("the writer's task ended unexpectedly")]
    TaskEnded,
}

/// What went wrong with a session writer call. Every variant names the session.
#[derive(Debug, Clone, Error)]
pub enum WriterError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] PreparerConfigError),
    /// The first stream could not be opened.
    #[error("session {session_id}: opening the recording stream failed: {cause}")]
    Open {
        /// The session.
        session_id: String,
        /// What the streamer said.
        cause: StreamFailure,
    },
    /// The event is refused by upstream's field checks (no type, no code, ...).
    #[error("session {session_id}: {event_type:?} event refused: {cause}")]
    Event {
        /// The session.
        session_id: String,
        /// The event's type.
        event_type: String,
        /// What is wrong with it.
        cause: FieldsError,
    },
    /// A caller-indexed event has a bad index.
    #[error("session {session_id}: {event_type:?} event refused: {cause}")]
    Index {
        /// The session.
        session_id: String,
        /// The event's type.
        event_type: String,
        /// What is wrong with it.
        cause: IntakeError,
    },
    /// The writer stopped for good; nothing more is recorded. What was recorded before is in
    /// the upload (resumable, or completed later by the upload completer).
    #[error("session {session_id}: the session writer stopped and records nothing more: {cause}")]
    Stopped {
        /// The session.
        session_id: String,
        /// Why.
        cause: StopCause,
    },
    /// `complete` or `close` was called; the writer takes no more events.
    #[error("session {session_id}: the session writer was {how}; it takes no more events")]
    Finished {
        /// The session.
        session_id: String,
        /// "completed" or "closed".
        how: &'static str,
    },
    /// `complete` or `close` took longer than the configured bound.
    #[error(
        "session {session_id}: {how} the recording did not finish within {timeout:?}; the upload is left resumable"
    )]
    Timeout {
        /// The session.
        session_id: String,
        /// "completing" or "closing".
        how: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// The last step of `complete` or `close` failed.
    #[error("session {session_id}: {how} the recording failed: {cause}")]
    Finish {
        /// The session.
        session_id: String,
        /// "completing" or "closing".
        how: &'static str,
        /// What the stream said.
        cause: StreamFailure,
    },
    /// The blocking front end was called on a current-thread tokio runtime.
    #[error(
        "session {session_id}: the blocking session writer calls (std::io::Write, *_blocking) were used on a current-thread tokio runtime, where waiting would stall the writer's own task; use the async methods or AsyncWrite there, or call from a plain thread"
    )]
    BlockingInRuntime {
        /// The session.
        session_id: String,
    },
}

/// Where a [`SessionWriter`] is in its life (see [`SessionWriter::status`]).
#[derive(Debug, Clone)]
pub enum WriterState {
    /// It takes events.
    Open,
    /// `complete` (`complete: true`) or `close` was called; the task is finishing the stream.
    Finishing {
        /// Whether the upload is being completed (else closed, left resumable).
        complete: bool,
    },
    /// It has ended: `Ok` when the stream was completed or closed, the error when the writer
    /// stopped for good or finishing failed. The same value [`SessionWriter::done`] gives.
    Done(Result<(), WriterError>),
}

impl WriterState {
    /// Whether the writer still takes events.
    pub fn is_open(&self) -> bool {
        matches!(self, WriterState::Open)
    }
}

/// A writer's status, read without writing (upstream's `SessionWriter.Status()` and
/// `Stats()` together).
#[derive(Debug, Clone)]
pub struct WriterStatus {
    /// Open, finishing or done.
    pub state: WriterState,
    /// The counters so far.
    pub stats: WriterStats,
    /// The last status the current stream sent: its upload and the highest event index it
    /// holds durably. `None` before the first one.
    pub stream: Option<StreamStatus>,
}

/// Replacement-stream failures of the writer itself.
#[derive(Debug, Error)]
enum RecoveryError {
    #[error("the stream ended on its own")]
    StreamEnded,
    #[error("the new stream sent no status within {0:?}")]
    NoStatus(Duration),
}

/// Why the writer takes no more events.
#[derive(Debug, Clone)]
enum Ended {
    /// `complete`/`close` called (the task is finishing) or done.
    Finished(&'static str),
    /// Stopped for good.
    Stopped(StopCause),
}

/// The callers' side, under one lock: preparation and hand-over happen together, so the queue
/// holds events in index order.
struct Front {
    preparer: Preparer,
    intake: Intake,
    queue: VecDeque<AuditEvent>,
    ended: Option<Ended>,
    /// The last status of the current stream.
    stream: Option<StreamStatus>,
}

/// An accepted event on its way into the queue.
struct Pending {
    event: AuditEvent,
    /// The caller prepared it (its index is its own).
    prepared: bool,
}

enum Offer {
    Queued,
    Full(Pending),
}

pub(super) struct Shared {
    session_id: String,
    front: Mutex<Front>,
    /// The task took an event (room in the queue), or the writer ended: for threads.
    room_cv: Condvar,
    /// The same, for tasks.
    room: Notify,
    /// An event was queued.
    queued: Notify,
    capacity: usize,
    clock: Clock,
    uid: Option<UidSource>,
    /// The intake's monotonic time.
    time: SharedClock,
    /// Origin of the intake's monotonic milliseconds.
    epoch: Instant,
    backoff_timeout: Duration,
    /// How the writer ended, once it has (the done signal).
    done: watch::Sender<Option<Result<(), WriterError>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Front> {
        // A panic under the lock leaves counters that are still meaningful.
        self.front.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        (self.time.now_mono() - self.epoch).as_millis() as u64
    }

    fn ended_error(&self, ended: &Ended) -> WriterError {
        match ended {
            Ended::Finished(how) => WriterError::Finished {
                session_id: self.session_id.clone(),
                how,
            },
            Ended::Stopped(cause) => WriterError::Stopped {
                session_id: self.session_id.clone(),
                cause: cause.clone(),
            },
        }
    }

    fn check_open(&self) -> Result<(), WriterError> {
        match &self.lock().ended {
            Some(e) => Err(self.ended_error(e)),
            None => Ok(()),
        }
    }

    /// Checks an event and accepts it; `None`: lost to the backoff.
    fn begin(
        &self,
        f: &mut Front,
        mut event: AuditEvent,
        prepared: bool,
    ) -> Result<Option<Pending>, WriterError> {
        if let Some(e) = &f.ended {
            return Err(self.ended_error(e));
        }
        let uid = match &self.uid {
            Some(u) if event.id().is_empty() && !is_uncoded(event.event_type()) => u(),
            None if event.id().is_empty() && !is_uncoded(event.event_type()) => {
                tapelog_audit::emit::new_uuid()
            }
            _ => String::new(),
        };
        f.preparer
            .check(&mut event, (self.clock)(), &uid)
            .map_err(|cause| WriterError::Event {
                session_id: self.session_id.clone(),
                event_type: event.event_type().to_string(),
                cause,
            })?;
        let index = prepared.then(|| event.index());
        match f.intake.admit(index, self.now_ms()) {
            Err(cause) => Err(WriterError::Index {
                session_id: self.session_id.clone(),
                event_type: event.event_type().to_string(),
                cause,
            }),
            Ok(Admission::Lose) => Ok(None),
            Ok(Admission::Proceed) => Ok(Some(Pending { event, prepared })),
        }
    }

    /// Queues the event if there is room (preparing it now, so that indexes follow the
    /// queue's order).
    fn offer(&self, f: &mut Front, p: Pending) -> Result<Offer, WriterError> {
        if let Some(e) = &f.ended {
            f.intake.lost(1);
            return Err(self.ended_error(e));
        }
        if f.queue.len() >= self.capacity {
            return Ok(Offer::Full(p));
        }
        let event = if p.prepared {
            p.event
        } else {
            let event_type = p.event.event_type().to_string();
            match f.preparer.prepare(p.event, (self.clock)(), "") {
                Ok(e) => e,
                Err(cause) => {
                    // `begin` checked it already; kept for completeness.
                    f.intake.lost(1);
                    return Err(WriterError::Event {
                        session_id: self.session_id.clone(),
                        event_type,
                        cause,
                    });
                }
            }
        };
        f.queue.push_back(event);
        self.queued.notify_one();
        Ok(Offer::Queued)
    }

    /// Hands `events` over, waiting for room until `deadline` (then backing off).
    async fn submit(
        &self,
        events: Vec<AuditEvent>,
        prepared: bool,
        deadline: Instant,
    ) -> Result<(), WriterError> {
        for event in events {
            let mut pending = {
                let mut f = self.lock();
                let Some(p) = self.begin(&mut f, event, prepared)? else {
                    continue;
                };
                match self.offer(&mut f, p)? {
                    Offer::Queued => continue,
                    Offer::Full(p) => {
                        f.intake.slow_write();
                        p
                    }
                }
            };
            loop {
                let room = self.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                {
                    let mut f = self.lock();
                    match self.offer(&mut f, pending)? {
                        Offer::Queued => break,
                        Offer::Full(p) => pending = p,
                    }
                }
                let wait = tokio::time::timeout_at(deadline, room);
                if wait.await.is_err() {
                    self.lock().intake.timed_out(self.now_ms());
                    break;
                }
            }
        }
        Ok(())
    }

    /// [`submit`](Self::submit) for a thread outside the runtime.
    fn submit_blocking(
        &self,
        events: Vec<AuditEvent>,
        prepared: bool,
        deadline: Instant,
    ) -> Result<(), WriterError> {
        let mut f = self.lock();
        for event in events {
            let Some(p) = self.begin(&mut f, event, prepared)? else {
                continue;
            };
            let mut pending = match self.offer(&mut f, p)? {
                Offer::Queued => continue,
                Offer::Full(p) => p,
            };
            f.intake.slow_write();
            loop {
                let left = deadline.saturating_duration_since(self.time.now_mono());
                if left.is_zero() {
                    f.intake.timed_out(self.now_ms());
                    break;
                }
                f = match self.room_cv.wait_timeout(f, left) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
                match self.offer(&mut f, pending)? {
                    Offer::Queued => break,
                    Offer::Full(p) => pending = p,
                }
            }
        }
        Ok(())
    }

    fn deadline(&self) -> Instant {
        self.time.now_mono() + self.backoff_timeout
    }

    fn prints(&self, data: &[u8]) -> Vec<AuditEvent> {
        let now = (self.clock)();
        self.lock().preparer.print_events(data, now)
    }

    pub(super) async fn write(&self, data: &[u8]) -> Result<usize, WriterError> {
        let deadline = self.deadline();
        self.check_open()?;
        self.submit(self.prints(data), false, deadline).await?;
        Ok(data.len())
    }

    pub(super) fn write_blocking(&self, data: &[u8]) -> Result<usize, WriterError> {
        self.blocking(|| {
            let deadline = self.deadline();
            self.check_open()?;
            self.submit_blocking(self.prints(data), false, deadline)?;
            Ok(data.len())
        })
    }

    /// Runs a blocking call where blocking is safe: outside any runtime, or on a multi-thread
    /// runtime through `block_in_place`. Refused on a current-thread runtime, whose only
    /// thread also runs the writer's task.
    fn blocking<R>(&self, call: impl FnOnce() -> Result<R, WriterError>) -> Result<R, WriterError> {
        match tokio::runtime::Handle::try_current() {
            Err(_) => call(),
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
                Err(WriterError::BlockingInRuntime {
                    session_id: self.session_id.clone(),
                })
            }
            Ok(_) => tokio::task::block_in_place(call),
        }
    }

    /// Takes the next queued event (room for the callers).
    fn pop(&self) -> Option<AuditEvent> {
        let event = self.lock().queue.pop_front();
        if event.is_some() {
            self.room.notify_waiters();
            self.room_cv.notify_all();
        }
        event
    }

    /// The writer ends: what is still queued is lost; waiting callers are woken; the done
    /// signal says how (unless an outcome was published already).
    fn end(&self, how: Ended) {
        let outcome = match &how {
            Ended::Finished(_) => Ok(()),
            Ended::Stopped(_) => Err(self.ended_error(&how)),
        };
        {
            let mut f = self.lock();
            if !matches!(f.ended, Some(Ended::Stopped(_))) {
                f.ended = Some(how);
            }
            let n = f.queue.len() as u64;
            f.queue.clear();
            f.intake.lost(n);
        }
        self.publish(outcome);
        self.room.notify_waiters();
        self.room_cv.notify_all();
    }

    /// Sets the done signal, once: the first outcome stays.
    fn publish(&self, outcome: Result<(), WriterError>) {
        self.done.send_if_modified(|d| {
            if d.is_some() {
                return false;
            }
            *d = Some(outcome);
            true
        });
    }

    fn set_stream_status(&self, status: &StreamStatus) {
        self.lock().stream = Some(status.clone());
    }
}

enum Cmd {
    Finish {
        complete: bool,
        reply: oneshot::Sender<Result<(), WriterError>>,
    },
}

/// Writes one session's events into a recording stream, surviving stream failures. See the
/// module documentation.
///
/// Async callers use [`record_event`](Self::record_event) / [`write`](Self::write) or the
/// [`tokio::io::AsyncWrite`] impl; threads use the `*_blocking` methods or the
/// [`std::io::Write`] impl, which wait at most the backoff timeout (never forever) and must
/// not run on a current-thread tokio runtime (refused with
/// [`WriterError::BlockingInRuntime`]; on a multi-thread runtime they run in
/// `block_in_place`). Dropping the writer without [`complete`](Self::complete) or
/// [`close`](Self::close) cancels its task: the upload keeps the parts already stored.
pub struct SessionWriter {
    pub(super) shared: Arc<Shared>,
    cmds: mpsc::Sender<Cmd>,
    task: Mutex<Option<JoinHandle<()>>>,
    finish_timeout: Duration,
    /// The write an `AsyncWrite` caller is waiting for.
    pub(super) pending_write: Mutex<Option<BoxFuture<'static, std::io::Result<usize>>>>,
}

impl SessionWriter {
    /// Opens the first stream (an error here is [`WriterError::Open`]) and starts the
    /// writer's task.
    pub async fn new(config: SessionWriterConfig) -> Result<SessionWriter, WriterError> {
        let preparer = Preparer::new(config.preparer)?;
        let session_id = preparer.config().session_id.clone();
        let stream =
            config
                .streamer
                .create(&session_id)
                .await
                .map_err(|cause| WriterError::Open {
                    session_id: session_id.clone(),
                    cause,
                })?;
        let clock = config
            .clock
            .unwrap_or_else(|| tapelog_audit::emit::wall_clock_of(config.time.clone()));
        let shared = Arc::new(Shared {
            session_id,
            front: Mutex::new(Front {
                preparer,
                intake: Intake::new(config.intake),
                queue: VecDeque::new(),
                ended: None,
                stream: None,
            }),
            room_cv: Condvar::new(),
            room: Notify::new(),
            queued: Notify::new(),
            capacity: config.queue_capacity.max(1),
            clock,
            uid: config.uid,
            epoch: config.time.now_mono(),
            time: config.time,
            backoff_timeout: Duration::from_millis(config.intake.backoff_timeout_ms),
            done: watch::channel(None).0,
        });
        let (cmds, rx) = mpsc::channel(1);
        let task = Task {
            shared: shared.clone(),
            streamer: config.streamer,
            status: stream.statuses(),
            stream: Some(stream),
            buffer: ReplayBuffer::new(),
            recovery: config.recovery,
        };
        let handle = tokio::spawn(task.run(rx));
        Ok(SessionWriter {
            shared,
            cmds,
            task: Mutex::new(Some(handle)),
            finish_timeout: config.finish_timeout,
            pending_write: Mutex::new(None),
        })
    }

    /// The session being written.
    pub fn session_id(&self) -> &str {
        &self.shared.session_id
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        self.shared.lock().intake.stats()
    }

    /// Where the writer is (open, finishing, done and how), its counters and the stream's last
    /// status, without writing anything (upstream's `Status()` / `Stats()`).
    pub fn status(&self) -> WriterStatus {
        let done = self.shared.done.borrow().clone();
        let f = self.shared.lock();
        let state = match (done, &f.ended) {
            (Some(outcome), _) => WriterState::Done(outcome),
            (None, None) => WriterState::Open,
            (None, Some(e @ Ended::Stopped(_))) => {
                WriterState::Done(Err(self.shared.ended_error(e)))
            }
            (None, Some(Ended::Finished(how))) => WriterState::Finishing {
                complete: *how == "completed",
            },
        };
        WriterStatus {
            state,
            stats: f.intake.stats(),
            stream: f.stream.clone(),
        }
    }

    /// Resolves once the writer has ended (upstream's `SessionWriter.Done()`): `Ok` after a
    /// successful [`complete`](Self::complete) or [`close`](Self::close), else the error that
    /// ended it: [`WriterError::Stopped`] when the stream failed for good (unrecoverable, or
    /// every recovery attempt failed) or the task died, [`WriterError::Finish`] /
    /// [`WriterError::Timeout`] when finishing failed. A caller learns of a failure here
    /// without writing again. The future does not borrow the writer and may outlive it.
    pub fn done(&self) -> impl Future<Output = Result<(), WriterError>> + Send + 'static {
        let mut done = self.shared.done.subscribe();
        let session_id = self.shared.session_id.clone();
        async move {
            let outcome = match done.wait_for(Option::is_some).await {
                Ok(d) => d.clone(),
                Err(_) => None,
            };
            outcome.unwrap_or(Err(WriterError::Stopped {
                session_id,
                cause: StopCause::TaskEnded,
            }))
        }
    }

    /// Prepares `event` now (index, session fields, print fields; see
    /// [`Preparer::prepare`]) without recording it, for callers that also emit it elsewhere;
    /// record it with [`record_prepared`](Self::record_prepared). Events prepared this way and
    /// by [`record_event`](Self::record_event) share one index sequence; record them in the
    /// order they were prepared.
    pub fn prepare(&self, event: AuditEvent) -> Result<AuditEvent, WriterError> {
        let mut f = self.shared.lock();
        if let Some(e) = &f.ended {
            return Err(self.shared.ended_error(e));
        }
        let uid = match &self.shared.uid {
            Some(u) => u(),
            None => tapelog_audit::emit::new_uuid(),
        };
        let event_type = event.event_type().to_string();
        f.preparer
            .prepare(event, (self.shared.clock)(), &uid)
            .map_err(|cause| WriterError::Event {
                session_id: self.shared.session_id.clone(),
                event_type,
                cause,
            })
    }

    /// Prepares and records one event. Returns once the event is queued, lost to the backoff
    /// (counted in [`stats`](Self::stats)), or refused; at most the backoff timeout.
    pub async fn record_event(&self, event: AuditEvent) -> Result<(), WriterError> {
        let deadline = self.shared.deadline();
        self.shared.submit(vec![event], false, deadline).await
    }

    /// Records an event prepared by the caller (its index is checked as upstream: 0 only for
    /// the first event).
    pub async fn record_prepared(&self, event: AuditEvent) -> Result<(), WriterError> {
        let deadline = self.shared.deadline();
        self.shared.submit(vec![event], true, deadline).await
    }

    /// Terminal bytes as `print` events (copied; see [`Preparer::print_events`]). Returns
    /// `data.len()`, also when the events are lost to the backoff.
    pub async fn write(&self, data: &[u8]) -> Result<usize, WriterError> {
        self.shared.write(data).await
    }

    /// [`record_event`](Self::record_event) for a thread (see the type's documentation).
    pub fn record_event_blocking(&self, event: AuditEvent) -> Result<(), WriterError> {
        self.shared.blocking(|| {
            let deadline = self.shared.deadline();
            self.shared.submit_blocking(vec![event], false, deadline)
        })
    }

    /// [`record_prepared`](Self::record_prepared) for a thread.
    pub fn record_prepared_blocking(&self, event: AuditEvent) -> Result<(), WriterError> {
        self.shared.blocking(|| {
            let deadline = self.shared.deadline();
            self.shared.submit_blocking(vec![event], true, deadline)
        })
    }

    /// [`write`](Self::write) for a thread.
    pub fn write_blocking(&self, data: &[u8]) -> Result<usize, WriterError> {
        self.shared.write_blocking(data)
    }

    /// Records what is queued, then completes the upload. Waits at most the finish timeout.
    /// Returns the counters; [`WriterStats::warnings`] says what upstream would log.
    pub async fn complete(&self) -> Result<WriterStats, WriterError> {
        self.finish(true).await
    }

    /// Records what is queued, uploads it and leaves the upload resumable.
    pub async fn close(&self) -> Result<WriterStats, WriterError> {
        self.finish(false).await
    }

    async fn finish(&self, complete: bool) -> Result<WriterStats, WriterError> {
        let (how, doing) = if complete {
            ("completed", "completing")
        } else {
            ("closed", "closing")
        };
        {
            let mut f = self.shared.lock();
            if let Some(e) = &f.ended {
                return Err(self.shared.ended_error(e));
            }
            f.ended = Some(Ended::Finished(how));
        }
        let (reply, answer) = oneshot::channel();
        let gone = || {
            let f = self.shared.lock();
            match &f.ended {
                Some(e @ Ended::Stopped(_)) => self.shared.ended_error(e),
                _ => self
                    .shared
                    .ended_error(&Ended::Stopped(StopCause::TaskEnded)),
            }
        };
        if self
            .cmds
            .send(Cmd::Finish { complete, reply })
            .await
            .is_err()
        {
            return Err(gone());
        }
        match tokio::time::timeout(self.finish_timeout, answer).await {
            Ok(Ok(Ok(()))) => Ok(self.stats()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(gone()),
            Err(_) => {
                let e = WriterError::Timeout {
                    session_id: self.shared.session_id.clone(),
                    how: doing,
                    timeout: self.finish_timeout,
                };
                self.shared.publish(Err(e.clone()));
                self.shared.end(Ended::Stopped(StopCause::FinishTimedOut(
                    self.finish_timeout,
                )));
                self.abort();
                Err(e)
            }
        }
    }

    fn abort(&self) {
        if let Some(t) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Marks the writer ended if the task stops without saying why (panic, cancellation).
struct EndGuard {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.end(Ended::Stopped(StopCause::TaskEnded));
        }
    }
}

/// How the task's loop ended.
enum Exit {
    Finish {
        complete: bool,
        reply: oneshot::Sender<Result<(), WriterError>>,
    },
    Dropped,
}

/// The writer's background task.
struct Task {
    shared: Arc<Shared>,
    streamer: Arc<dyn AuditStreamer>,
    /// `None` only while being replaced.
    stream: Option<Box<dyn SessionStream>>,
    status: watch::Receiver<StreamStatus>,
    buffer: ReplayBuffer,
    recovery: RecoveryPolicy,
}

impl Task {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let mut guard = EndGuard {
            shared: self.shared.clone(),
            armed: true,
        };
        let exit = self.main(&mut cmds).await;
        match exit {
            Ok(Exit::Finish { complete, reply }) => {
                let how = if complete { "completed" } else { "closed" };
                let r = self.finish(complete).await;
                self.shared.publish(r.clone());
                match &r {
                    Ok(()) | Err(WriterError::Finish { .. }) => {
                        self.shared.end(Ended::Finished(how))
                    }
                    Err(WriterError::Stopped { cause, .. }) => {
                        self.shared.end(Ended::Stopped(cause.clone()))
                    }
                    Err(_) => self.shared.end(Ended::Finished(how)),
                }
                let _ = reply.send(r);
            }
            Ok(Exit::Dropped) => {
                if let Some(s) = self.stream.take()
                    && let Err(cause) = s.close().await
                {
                    self.shared.publish(Err(WriterError::Finish {
                        session_id: self.shared.session_id.clone(),
                        how: "closing",
                        cause,
                    }));
                }
                self.shared.end(Ended::Finished("closed"));
            }
            Err(cause) => self.shared.end(Ended::Stopped(cause)),
        }
        guard.armed = false;
    }

    async fn main(&mut self, cmds: &mut mpsc::Receiver<Cmd>) -> Result<Exit, StopCause> {
        loop {
            // Statuses first, so that the buffer does not grow behind them.
            if self.status.has_changed().unwrap_or(false) {
                self.apply_status();
            }
            if let Some(event) = self.shared.pop() {
                self.send(event).await?;
                continue;
            }
            tokio::select! {
                biased;
                changed = self.status.changed() => match changed {
                    Ok(()) => self.apply_status(),
                    Err(_) => {
                        self.recover(StreamFailure::transient(RecoveryError::StreamEnded))
                            .await?
                    }
                },
                cmd = cmds.recv() => {
                    let Some(Cmd::Finish { complete, reply }) = cmd else {
                        return Ok(Exit::Dropped);
                    };
                    // Events queued before the call belong to the recording.
                    while let Some(event) = self.shared.pop() {
                        self.send(event).await?;
                    }
                    return Ok(Exit::Finish { complete, reply });
                }
                () = self.shared.queued.notified() => {}
            }
        }
    }

    fn apply_status(&mut self) {
        let s = self.status.borrow_and_update().clone();
        self.buffer.on_status(&s.upload_id, s.last_event_index);
        self.shared.set_stream_status(&s);
    }

    /// Records one event, replacing the stream if it fails.
    async fn send(&mut self, event: AuditEvent) -> Result<(), StopCause> {
        self.buffer.push(event);
        let result = match (&self.stream, self.buffer.last()) {
            (Some(stream), Some(event)) => stream.record(event).await,
            _ => Err(StreamFailure::transient(RecoveryError::StreamEnded)),
        };
        match result {
            Ok(()) => Ok(()),
            Err(StreamFailure::Refused(_)) => {
                self.buffer.discard_last();
                self.shared.lock().intake.refused();
                Ok(())
            }
            Err(f @ StreamFailure::Unrecoverable(_)) => Err(StopCause::Unrecoverable(f)),
            Err(f) => self.recover(f).await,
        }
    }

    /// Upstream's `recoverStream`: close the old stream, open a replacement (resume the
    /// upload of the last status, or create one when no status ever came), wait for its first
    /// status, replay what it does not hold.
    async fn recover(&mut self, mut last: StreamFailure) -> Result<(), StopCause> {
        let close_bound = Duration::from_millis(self.recovery.max_ms);
        if let Some(old) = self.stream.take() {
            let _ = tokio::time::timeout(close_bound, old.close()).await;
        }
        let attempts = self.recovery.attempts();
        let sid = self.shared.session_id.clone();
        for attempt in 1..=attempts {
            let wait = Duration::from_millis(self.recovery.wait_ms(attempt));
            let opened = match self.buffer.reopen() {
                Reopen::Create => self.streamer.create(&sid).await,
                Reopen::Resume(id) => {
                    let id = id.to_string();
                    self.streamer.resume(&sid, &id).await
                }
            };
            match opened {
                Ok(stream) => {
                    let mut status = stream.statuses();
                    match tokio::time::timeout(wait, status.changed()).await {
                        Ok(Ok(())) => {
                            let s = status.borrow_and_update().clone();
                            self.buffer.on_status(&s.upload_id, s.last_event_index);
                            self.shared.set_stream_status(&s);
                            match replay(stream.as_ref(), &self.buffer).await {
                                Ok((sent, refused)) => {
                                    let mut f = self.shared.lock();
                                    f.intake.recovered(sent);
                                    for _ in 0..refused {
                                        f.intake.refused();
                                    }
                                    drop(f);
                                    self.stream = Some(stream);
                                    self.status = status;
                                    return Ok(());
                                }
                                Err(f @ StreamFailure::Unrecoverable(_)) => {
                                    return Err(StopCause::Unrecoverable(f));
                                }
                                Err(f) => {
                                    last = f;
                                    let _ = tokio::time::timeout(close_bound, stream.close()).await;
                                }
                            }
                        }
                        Ok(Err(_)) => last = StreamFailure::transient(RecoveryError::StreamEnded),
                        Err(_) => {
                            // As upstream: the wait for the status was this attempt's pause.
                            let _ = tokio::time::timeout(close_bound, stream.close()).await;
                            last = StreamFailure::transient(RecoveryError::NoStatus(wait));
                            continue;
                        }
                    }
                }
                Err(f @ StreamFailure::Unrecoverable(_)) => {
                    return Err(StopCause::Unrecoverable(f));
                }
                Err(f) => last = f,
            }
            if attempt < attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(StopCause::Exhausted { attempts, last })
    }

    /// Completes or closes the stream; a stream that failed meanwhile is replaced once first.
    async fn finish(&mut self, complete: bool) -> Result<(), WriterError> {
        let doing = if complete { "completing" } else { "closing" };
        let session_id = self.shared.session_id.clone();
        let stopped = |cause| WriterError::Stopped {
            session_id: session_id.clone(),
            cause,
        };
        if self.status.has_changed().is_err() {
            self.recover(StreamFailure::transient(RecoveryError::StreamEnded))
                .await
                .map_err(stopped)?;
        }
        let mut retried = false;
        loop {
            let Some(stream) = self.stream.take() else {
                return Err(stopped(StopCause::TaskEnded));
            };
            let r = if complete {
                stream.complete().await
            } else {
                stream.close().await
            };
            match r {
                Ok(()) => return Ok(()),
                Err(f @ StreamFailure::Transient(_)) if !retried => {
                    retried = true;
                    self.recover(f).await.map_err(stopped)?;
                }
                Err(cause) => {
                    return Err(WriterError::Finish {
                        session_id: self.shared.session_id.clone(),
                        how: doing,
                        cause,
                    });
                }
            }
        }
    }
}

/// Sends the buffer again; (sent, refused).
async fn replay(
    stream: &dyn SessionStream,
    buffer: &ReplayBuffer,
) -> Result<(u64, u64), StreamFailure> {
    let (mut sent, mut refused) = (0, 0);
    for event in buffer.to_replay() {
        match stream.record(event).await {
            Ok(()) => sent += 1,
            Err(StreamFailure::Refused(_)) => refused += 1,
            Err(f) => return Err(f),
        }
    }
    Ok((sent, refused))
}
