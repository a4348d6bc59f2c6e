//! The exporter loop.
//!
//! **Order.** Each source is one ordered lane: the audit log is one, and every session is
//! one. A lane has at most one request in flight, and the next request leaves only once the
//! previous one was accepted (or its rejected events dead-lettered), so the receiver gets the
//! events of a source in their order. Throughput comes from large requests instead of
//! parallel ones: while a request is in flight the reader goes on, and the next request
//! takes everything read meanwhile, up to [`MAX_POST_EVENTS`] events or [`MAX_POST_BYTES`]
//! bytes; sessions (`--concurrency` at once) are lanes of their own and run in parallel
//! with the audit lane.
//!
//! **Audit events.** A reader task reads pages of `--batch` events in order from the search
//! window `[window_time, window_time + --window-size]` (the current window ends now) and
//! hands each page's kept events, with the position the source reaches once they are
//! accepted (`cursor` = the key of the page, `id` = the checkpoint of its last event; or the
//! next page's key), to the sender through a bounded queue. The sender posts, and after each
//! accepted request writes the position of its last event before the next request leaves
//! (temporary file, rename: the page cache keeps it if the process dies), while the `fsync`s
//! that make it survive a power loss run beside it, coalesced (`PositionWriter`). Positions
//! are written one by one, in order, each only after its request was accepted: a crash of the
//! process resends at most the request in flight, a power loss also those accepted during the
//! last sync, and nothing is skipped. Decided so because the two `fsync`s take longer here
//! than a request to a fast receiver (docs/benchmarks.md). That is how a Teleport cluster is
//! read (`read_audit`). A data directory or a `tapelog serve` is read in arrival order instead
//! (`read_feed`): reads of `--batch` events, at least [`MAX_POST_EVENTS`] (each read lists
//! the log's files and scans from its key), from the audit log's feed (a data directory's
//! by the fast read, `FileLog::read_feed_events`), `cursor` = the feed key, so that an event
//! appended late with an old time is not passed over; docs/forward.md says why and how a time reader's state migrates.
//!
//! **Failures.** A transient failure (connection, timeout, 5xx) is retried forever with
//! decorrelated-jitter backoff (1 s base, 10 s cap): nothing is skipped. A rejection (400,
//! 413) is bisected to the event at fault, which is appended to `dead-letter.jsonl` with the
//! reason; the rest of the request still goes out, in order, and the lane moves on.
//!
//! **Sessions.** A `session.upload` event registers its `sid` (`session<sid>` = 0) before
//! anything after it can be committed; `--concurrency` sessions are exported at once, each
//! to `<session url>.<sid>.log`, skipping `--skip-session-types`, storing the next index
//! after each accepted request and, at the end, noting the session in `done_sessions` (the
//! last `DoneSessions::KEPT` finished sessions) before removing its file. Registered
//! sessions resume at their stored index on start; a `session.upload` read again after a
//! crash does not export a finished session a second time.
//!
//! **Polling and exit.** When the current window has no new event the reader sleeps
//! `--timeout` and reads again; with `--exit-on-last-event` it stops, and the run ends once
//! the sender has sent what was read and the sessions are done. SIGTERM/SIGINT (the
//! `shutdown` channel) stop reading, give the requests in flight up to 5 s, keep the stored
//! position and return.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tapelog_core::Timestamp;
use tapelog_core::audit::feed::is_feed_key;
use tapelog_core::forward::lock::{self, AutoLock};
use tapelog_core::forward::missing;
use tapelog_core::forward::state::{self as core_state, DoneSessions, Position, format_seconds};
use tapelog_core::forward::{Backoff, Bisector, TypeFilter, Verdict, split_by_bytes};
use tokio::sync::{Semaphore, mpsc, watch};

use super::log;
use super::options::ForwardOptions;
use super::output::{Destination, Output, SendError};
use super::source::{Source, SourceEvent};
use super::state::{StateDir, addr_dir_name, data_dir_name};
use super::{ForwardError, open_output};
use tapelog_audit::{Order, SearchQuery};

mod export;

/// The most events one request carries.
pub const MAX_POST_EVENTS: usize = 1000;

/// The largest request body built from several events (in_http refuses more than 32 MB); a
/// single event larger than this goes alone.
pub const MAX_POST_BYTES: usize = 1 << 20;

/// Events one read of the feed asks for: `--batch`, but at least a request's worth. A read
/// costs a listing of the log's files and a scan from its key whatever its size, and the
/// feed bounds a read by bytes anyway (1 MiB of JSON), so reading 20 at a time (upstream's
/// page size for a cluster's search) only multiplied that cost.
fn feed_limit(batch: usize) -> usize {
    batch.max(MAX_POST_EVENTS)
}

/// How long requests in flight get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Audit events accepted by the output (dead letters not counted).
    pub events: u64,
    /// Session events accepted by the output.
    pub session_events: u64,
    /// Events written to the dead-letter file.
    pub dead_letters: u64,
    /// Sessions exported to the end.
    pub sessions: u64,
    /// Where the audit lane's time went.
    pub timings: AuditTimings,
}

/// Where the audit lane's time went (wall time of each step, summed over the run): the
/// profile `benches/forward.rs` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditTimings {
    /// Requests sent (accepted ones; retries and halves of a rejected one included).
    pub requests: u64,
    /// Reader: reading pages from the source (the file log's feed: file reads, line scans,
    /// each line's JSON parsed for its fields).
    pub read: Duration,
    /// Reader: turning a page into chunks (filters, positions, registrations).
    pub prepare: Duration,
    /// Sender: waiting for the reader (nothing read yet when the lane was free).
    pub wait: Duration,
    /// Sender: sending requests until accepted (body, TLS, the receiver's work, the answer).
    pub send: Duration,
    /// Sender: storing positions: each accepted request's written by rename, and at the
    /// end the wait for the last sync (the `fsync`s run beside the sender).
    pub save: Duration,
    /// Syncs of the position (`fsync` of its files and the directory), coalesced: fewer
    /// than the requests when a sync spans several of them.
    pub syncs: u64,
}

/// Counters shared by the tasks.
#[derive(Default)]
struct Counters {
    events: std::sync::atomic::AtomicU64,
    session_events: std::sync::atomic::AtomicU64,
    dead_letters: std::sync::atomic::AtomicU64,
    sessions: std::sync::atomic::AtomicU64,
    audit_requests: std::sync::atomic::AtomicU64,
    read_ns: std::sync::atomic::AtomicU64,
    prepare_ns: std::sync::atomic::AtomicU64,
    wait_ns: std::sync::atomic::AtomicU64,
    send_ns: std::sync::atomic::AtomicU64,
    save_ns: std::sync::atomic::AtomicU64,
    position_syncs: std::sync::atomic::AtomicU64,
}

impl Counters {
    /// Adds the time since `since` to `to`.
    fn time(to: &std::sync::atomic::AtomicU64, since: std::time::Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        to.fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Ctx {
    opts: ForwardOptions,
    source: Source,
    output: Arc<dyn Output>,
    state: StateDir,
    counters: Counters,
    session_filter: TypeFilter,
    session_slots: Semaphore,
    active_sessions: Mutex<HashSet<String>>,
    /// The last finished sessions (oldest first), as in `done_sessions`.
    done_sessions: Mutex<DoneSessions>,
    shutdown: watch::Receiver<bool>,
    /// Auto-lock's counts (`--lock-enabled`, not in a dry run).
    auto_lock: Option<Mutex<AutoLock>>,
    /// The time of each registered session's `session.upload` (for the missing-recording
    /// rule; unknown for sessions registered before a restart).
    upload_times: Mutex<HashMap<String, Timestamp>>,
}

impl Ctx {
    /// Registers the session of a `session.upload` event (`session<sid>` = 0 unless it is
    /// registered or was finished recently); returns its id when it is to be exported.
    fn register_upload(&self, e: &SourceEvent) -> Result<Option<String>, ForwardError> {
        if e.event_type != "session.upload"
            || e.session_id.is_empty()
            || self.is_done(&e.session_id)
        {
            return Ok(None);
        }
        if self.state.session_index(&e.session_id)?.is_none() {
            self.state.save_session(&e.session_id, 0)?;
        }
        if let Ok(f) = tapelog_core::EventFields::parse(&e.json)
            && let Ok(mut times) = self.upload_times.lock()
        {
            // Go's zero time (no `time`) is unknown, not 2,000 years old.
            let t = f.get_time("time");
            if t.unix_nanos() > 0 {
                times.insert(e.session_id.clone(), t);
            }
        }
        Ok(Some(e.session_id.clone()))
    }

    /// Whether `sid` was exported to the end recently.
    fn is_done(&self, sid: &str) -> bool {
        let done = match self.done_sessions.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        done.contains(sid)
    }

    /// Notes `sid` as finished (the list is bounded) and then forgets its index: a crash
    /// between the two leaves the session registered at its last index, which resumes to an
    /// immediate end.
    fn finish_session(&self, sid: &str) -> Result<(), ForwardError> {
        {
            let mut done = match self.done_sessions.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if done.push(sid) {
                self.state.save_done_sessions(&done)?;
            }
        }
        self.state.remove_session(sid)
    }

    /// Auto-lock: counts a failed login among `events` and upserts the lock it calls for.
    /// A lock that cannot be sent is logged; the export goes on.
    async fn check_logins(&self, events: &[SourceEvent]) {
        let Some(auto_lock) = &self.auto_lock else {
            return;
        };
        for e in events {
            if e.event_type != "user.login" {
                continue;
            }
            let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(&e.json) else {
                continue;
            };
            let Some((user, login)) = lock::failed_login(&fields) else {
                continue;
            };
            let now_ms = u64::try_from(now().unix_nanos() / 1_000_000).unwrap_or(0);
            let request = match auto_lock.lock() {
                Ok(mut g) => g.failed_login(&user, &login, now_ms),
                Err(poisoned) => poisoned.into_inner().failed_login(&user, &login, now_ms),
            };
            if let Some(request) = request {
                match self.source.upsert_lock(&request).await {
                    Ok(()) => log::info(&format!(
                        "locked login {:?} of user {:?} ({}) after too many failed logins",
                        request.login, request.user, request.name
                    )),
                    Err(err) => log::warn(&format!("auto-lock of {}: {err}", request.name)),
                }
            }
        }
    }
}

fn now() -> Timestamp {
    tapelog_audit::emit::system_clock()
}

/// A uniform random number in [0, 1) for the backoff.
fn unit_random() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Sleeps `d`, or less if `shutdown` fires; returns whether it fired.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => *shutdown.borrow(),
        Ok(()) = shutdown.changed() => *shutdown.borrow(),
    }
}

/// Logs a transient failure (`what` says where; "" for nothing) and waits the backoff's next
/// wait, or less if `shutdown` fires; returns whether it fired.
async fn retry_after(
    what: &str,
    e: &ForwardError,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let wait = backoff.next_wait(unit_random());
    let at = if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    };
    log::warn(&format!("{at}{e}; retrying in {:.1}s", wait.as_secs_f64()));
    sleep_or_shutdown(wait, shutdown).await
}

/// The destination of a batch, owned so that a task can carry it.
#[derive(Clone)]
enum Dest {
    Audit,
    Session(String),
}

impl Dest {
    fn as_ref(&self) -> Destination<'_> {
        match self {
            Dest::Audit => Destination::Audit,
            Dest::Session(s) => Destination::Session(s),
        }
    }
}

/// Sends `events` until every one is accepted or dead-lettered. `Err(())` only when a
/// shutdown interrupted a retry wait (nothing is then known to be delivered).
async fn deliver(ctx: &Ctx, dest: &Dest, events: &[String]) -> Result<(), ()> {
    let mut shutdown = ctx.shutdown.clone();
    let mut bisect = Bisector::new(events.len());
    let mut backoff = Backoff::default();
    while let Some(range) = bisect.next() {
        if let Dest::Audit = dest {
            ctx.counters
                .audit_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match ctx.output.send(dest.as_ref(), &events[range.clone()]).await {
            Ok(()) => {
                backoff.reset();
                bisect.report(Verdict::Accepted);
                let n = range.len() as u64;
                let counter = match dest {
                    Dest::Audit => &ctx.counters.events,
                    Dest::Session(_) => &ctx.counters.session_events,
                };
                counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            Err(SendError::Rejected(reason)) => {
                if range.len() > 1 {
                    log::debug(&format!(
                        "{} rejected a batch of {}: {reason}; splitting it",
                        ctx.output.describe(dest.as_ref()),
                        range.len()
                    ));
                }
                let mut verdict = Some(Verdict::Rejected);
                loop {
                    // The report must happen once; the dead letter may need retries.
                    let bad = match verdict.take() {
                        Some(v) => bisect.report(v),
                        None => Some(range.start),
                    };
                    let Some(i) = bad else { break };
                    let where_to = ctx.output.describe(dest.as_ref());
                    match ctx
                        .state
                        .dead_letter(&now().to_rfc3339(), &where_to, &reason, &events[i])
                    {
                        Ok(()) => {
                            ctx.counters
                                .dead_letters
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            log::warn(&format!(
                                "{where_to} rejected an event for good ({reason}); written to {}",
                                ctx.state.path().join(super::state::DEAD_LETTERS).display()
                            ));
                            break;
                        }
                        Err(e) => {
                            log::warn(&format!("writing a dead letter failed: {e}; retrying"));
                            if sleep_or_shutdown(backoff.next_wait(unit_random()), &mut shutdown)
                                .await
                            {
                                return Err(());
                            }
                        }
                    }
                }
            }
            Err(SendError::Transient(reason)) => {
                let wait = backoff.next_wait(unit_random());
                log::warn(&format!(
                    "sending {} event(s) to {} failed: {reason}; retrying in {:.1}s",
                    range.len(),
                    ctx.output.describe(dest.as_ref()),
                    wait.as_secs_f64()
                ));
                if sleep_or_shutdown(wait, &mut shutdown).await {
                    return Err(());
                }
            }
        }
    }
    Ok(())
}

/// Runs the exporter with the output `opts` names, until the last event
/// (`--exit-on-last-event`) or `shutdown`.
pub async fn run(
    opts: ForwardOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Summary, ForwardError> {
    let output = open_output(&opts)?;
    run_with_output(opts, output, shutdown).await
}

/// [`run`] with a given output (tests, benchmarks, other outputs).
pub async fn run_with_output(
    opts: ForwardOptions,
    output: Arc<dyn Output>,
    shutdown: watch::Receiver<bool>,
) -> Result<Summary, ForwardError> {
    log::set_debug(opts.debug || log::debug_enabled());
    let name = match &opts.data_dir {
        Some(d) => data_dir_name(d),
        None => addr_dir_name(&opts.teleport_addr),
    };
    let state = StateDir::open(&opts.storage, &name, opts.dry_run)?;
    let storage_display = opts.storage.display().to_string();
    let stored_start = state.read_text(core_state::START_TIME)?;
    let (start_time, store) = tapelog_core::forward::check_start_time(
        stored_start.as_deref(),
        opts.start_time,
        now(),
        &storage_display,
    )?;
    if store {
        state.write(core_state::START_TIME, start_time.as_bytes())?;
    }
    let mut position = state.position()?;
    if position.window_time.is_empty() {
        position.window_time = start_time.clone();
    }
    if position.cursor.is_empty()
        && position.id.is_empty()
        && let Some(c) = &opts.cursor
    {
        position.cursor = c.clone();
    }
    let done_sessions = state.done_sessions()?;
    let source = Source::open(&opts)?;
    log::info(&format!(
        "exporting from {} to {} (start time {start_time}, state {})",
        opts.data_dir
            .as_ref()
            .map_or_else(|| opts.teleport_addr.clone(), |d| d.display().to_string()),
        output.describe(Destination::Audit),
        state.path().display()
    ));
    let auto_lock = (opts.lock_enabled && !opts.dry_run).then(|| {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Mutex::new(AutoLock::new(lock::LockConfig {
            attempts: opts.lock_failed_attempts_count,
            period_ms: ms(opts.lock_period),
            lock_for_ms: ms(opts.lock_for),
        }))
    });
    let ctx = Arc::new(Ctx {
        session_filter: TypeFilter::skipping(&opts.skip_session_types),
        session_slots: Semaphore::new(opts.concurrency.max(1)),
        opts,
        source,
        output,
        state,
        counters: Counters::default(),
        active_sessions: Mutex::new(HashSet::new()),
        done_sessions: Mutex::new(done_sessions),
        shutdown,
        auto_lock,
        upload_times: Mutex::new(HashMap::new()),
    });
    let mut sessions = tokio::task::JoinSet::new();
    for (sid, _) in ctx.state.sessions()? {
        if ctx.is_done(&sid) {
            // Finished just before a crash: only the file was left.
            ctx.state.remove_session(&sid)?;
            continue;
        }
        spawn_session(&ctx, &mut sessions, sid);
    }
    let retries = tokio::spawn(missing_loop(ctx.clone()));
    let result = match export::choose(&ctx).await {
        Ok(true) => export::export_loop(&ctx, &position, &mut sessions).await,
        Ok(false) => audit_loop(&ctx, position, &mut sessions).await,
        Err(e) => Err(e),
    };
    retries.abort();
    if result.is_err() {
        // The audit lane failed for good: stop the sessions too (they keep their index).
        sessions.abort_all();
    }
    // Sessions: wait for them unless shutting down (then give them the grace period).
    let mut shutdown = ctx.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
                while sessions.join_next().await.is_some() {}
            })
            .await;
            sessions.abort_all();
            break;
        }
        tokio::select! {
            next = sessions.join_next() => if next.is_none() { break },
            Ok(()) = shutdown.changed() => {}
        }
    }
    result?;
    let c = &ctx.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let summary = Summary {
        events: load(&c.events),
        session_events: load(&c.session_events),
        dead_letters: load(&c.dead_letters),
        sessions: load(&c.sessions),
        timings: AuditTimings {
            requests: load(&c.audit_requests),
            read: Duration::from_nanos(load(&c.read_ns)),
            prepare: Duration::from_nanos(load(&c.prepare_ns)),
            wait: Duration::from_nanos(load(&c.wait_ns)),
            send: Duration::from_nanos(load(&c.send_ns)),
            save: Duration::from_nanos(load(&c.save_ns)),
            syncs: load(&c.position_syncs),
        },
    };
    log::info(&format!(
        "stopped: {} audit event(s), {} session event(s) of {} session(s) sent, {} dead letter(s)",
        summary.events, summary.session_events, summary.sessions, summary.dead_letters
    ));
    Ok(summary)
}

/// Audit events read from a page (or part of one), on their way to the sender.
#[derive(Debug, Default)]
struct Chunk {
    /// The kept events' JSON texts, in order.
    events: Vec<String>,
    /// Their size in a request body.
    bytes: usize,
    /// The position once they (and everything before) are accepted.
    after: Position,
    /// Sessions registered by `session.upload` events in this chunk, to export.
    sessions: Vec<String>,
}

impl Chunk {
    fn new(events: Vec<String>, after: Position) -> Chunk {
        Chunk {
            bytes: events.iter().map(|e| e.len() + 1).sum(),
            events,
            after,
            sessions: Vec::new(),
        }
    }

    /// Appends a later chunk.
    fn merge(&mut self, later: Chunk) {
        self.events.extend(later.events);
        self.bytes += later.bytes;
        self.after = later.after;
        self.sessions.extend(later.sessions);
    }

    /// Whether `later` still fits in one request with this one.
    fn fits(&self, later: &Chunk) -> bool {
        self.events.is_empty()
            || later.events.is_empty()
            || (self.events.len() + later.events.len() <= MAX_POST_EVENTS
                && self.bytes + later.bytes <= MAX_POST_BYTES)
    }

    fn is_full(&self) -> bool {
        self.events.len() >= MAX_POST_EVENTS || self.bytes >= MAX_POST_BYTES
    }
}

/// Cuts a page's new events (from `start`) into chunks of at most a request each, with
/// their positions. Filtered events are covered by the chunk that follows them (or the last
/// one), so the position passes them too. The kept events' texts are moved out of `page`
/// (not copied).
fn batches(
    page: &mut [SourceEvent],
    start: usize,
    cursor: &str,
    next_key: &str,
    window_time: &str,
    filter: &TypeFilter,
) -> Vec<Chunk> {
    let kept: Vec<usize> = (start..page.len())
        .filter(|&i| filter.allows(&page[i].event_type))
        .collect();
    let texts: Vec<String> = kept
        .iter()
        .map(|&i| std::mem::take(&mut page[i].json))
        .collect();
    let position_after = |last: usize| {
        if last + 1 == page.len() && !next_key.is_empty() {
            Position {
                window_time: window_time.to_string(),
                cursor: next_key.to_string(),
                id: String::new(),
            }
        } else {
            Position {
                window_time: window_time.to_string(),
                cursor: cursor.to_string(),
                id: page[last].checkpoint.clone(),
            }
        }
    };
    let ranges: Vec<std::ops::Range<usize>> = split_by_bytes(&texts, MAX_POST_BYTES)
        .into_iter()
        .flat_map(|r| {
            (r.start..r.end)
                .step_by(MAX_POST_EVENTS)
                .map(move |s| s..(s + MAX_POST_EVENTS).min(r.end))
        })
        .collect();
    if ranges.is_empty() {
        return vec![Chunk::new(Vec::new(), position_after(page.len() - 1))];
    }
    let n = ranges.len();
    // The ranges are consecutive and cover every text: each chunk takes the next ones.
    let mut texts = texts.into_iter();
    ranges
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            // The last chunk also covers filtered events after its last kept one.
            let last = if k + 1 == n {
                page.len() - 1
            } else {
                kept[r.end - 1]
            };
            let events: Vec<String> = texts.by_ref().take(r.len()).collect();
            Chunk::new(events, position_after(last))
        })
        .collect()
}

/// Registers the sessions of the `session.upload` events among `events` (not finished yet)
/// before anything after them can be committed; returns their ids, to export.
fn register_uploads(ctx: &Ctx, events: &[SourceEvent]) -> Result<Vec<String>, ForwardError> {
    let mut sids = Vec::new();
    for e in events {
        sids.extend(ctx.register_upload(e)?);
    }
    Ok(sids)
}

/// Reads the audit log from `read` on and hands the pages to the sender, in order, until
/// caught up with `--exit-on-last-event`, a shutdown, or the sender going away.
async fn read_audit(
    ctx: Arc<Ctx>,
    mut read: Position,
    tx: mpsc::Sender<Chunk>,
) -> Result<(), ForwardError> {
    let opts = &ctx.opts;
    let filter = TypeFilter::new(&opts.types, &opts.skip_event_types);
    let window = opts.window_size;
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Backoff::default();
    let mut caught_up_logged = false;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let window_start =
            core_state::parse_stored_time(core_state::WINDOW_TIME, &read.window_time)?;
        let window_end = Timestamp::from_unix_nanos(
            window_start.unix_nanos() + i128::try_from(window.as_nanos()).unwrap_or(i128::MAX / 4),
        );
        let now_t = now();
        let current = window_end.unix_nanos() >= now_t.unix_nanos();
        let to = if current {
            now_t
        } else {
            Timestamp::from_unix_nanos(window_end.unix_nanos() - 1)
        };
        let query = SearchQuery {
            from: window_start,
            to,
            event_types: filter.allowed_types(),
            limit: opts.batch,
            order: Order::Ascending,
            start_key: read.cursor.clone(),
        };
        let mut page = match ctx.source.page(&query).await {
            Ok(p) => {
                backoff.reset();
                p
            }
            Err(e) if e.is_transient() => {
                retry_after("", &e, &mut backoff, &mut shutdown).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let start = if read.id.is_empty() {
            0
        } else {
            page.events
                .iter()
                .position(|e| e.checkpoint == read.id)
                .map_or(0, |i| i + 1)
        };
        let mut chunks = Vec::new();
        if start >= page.events.len() {
            // Nothing new in this page.
            if !page.next_key.is_empty() && page.next_key != read.cursor {
                chunks.push(Chunk::new(
                    Vec::new(),
                    Position {
                        window_time: read.window_time.clone(),
                        cursor: page.next_key.clone(),
                        id: String::new(),
                    },
                ));
            } else if !current {
                log::debug(&format!(
                    "window done; next window from {}",
                    format_seconds(window_end)
                ));
                chunks.push(Chunk::new(
                    Vec::new(),
                    Position {
                        window_time: format_seconds(window_end),
                        cursor: String::new(),
                        id: String::new(),
                    },
                ));
            } else {
                if !caught_up_logged {
                    log::debug("no new events");
                    caught_up_logged = true;
                }
                if opts.exit_on_last_event {
                    return Ok(());
                }
                sleep_or_shutdown(opts.timeout, &mut shutdown).await;
                continue;
            }
        } else {
            caught_up_logged = false;
            ctx.check_logins(&page.events[start..]).await;
            let sids = register_uploads(&ctx, &page.events[start..])?;
            chunks = batches(
                &mut page.events,
                start,
                &read.cursor,
                &page.next_key,
                &read.window_time,
                &filter,
            );
            if let Some(first) = chunks.first_mut() {
                first.sessions = sids;
            }
        }
        if !hand_over(chunks, &mut read, &tx, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// Where the feed reader starts, from the stored position: a feed key resumes as it is; any
/// other `cursor` (a time reader's page key, or none) starts the feed from the beginning,
/// and events older than the later of `start_time` and the stored `window_time` are skipped
/// until the feed first catches up (the old reader exported those, as far as it had got).
fn feed_start(stored: &Position, start_time: &str) -> Position {
    if is_feed_key(&stored.cursor) {
        return stored.clone();
    }
    let start = core_state::parse_stored_time(core_state::START_TIME, start_time).ok();
    let window = core_state::parse_stored_time(core_state::WINDOW_TIME, &stored.window_time).ok();
    let since = match (start, window) {
        (Some(s), Some(w)) => Some(if w > s { w } else { s }),
        (s, w) => s.or(w),
    };
    Position {
        window_time: since.map_or_else(|| start_time.to_string(), format_seconds),
        cursor: String::new(),
        id: String::new(),
    }
}

/// Cuts one feed read's events (`read` → `next_key`) into chunks of at most a request each.
/// A read has one key, after its last event: the chunks before the last one leave the
/// position where the read began (a crash resends from there).
fn feed_chunks(
    events: &mut [SourceEvent],
    read: &Position,
    next_key: &str,
    filter: &TypeFilter,
) -> Vec<Chunk> {
    let mut chunks = batches(events, 0, &read.cursor, next_key, &read.window_time, filter);
    let n = chunks.len();
    for c in &mut chunks[..n.saturating_sub(1)] {
        c.after = Position {
            window_time: read.window_time.clone(),
            cursor: read.cursor.clone(),
            id: String::new(),
        };
    }
    chunks
}

/// Reads the audit log's arrival-order feed (a data directory or a `tapelog serve`) from
/// `read` on and hands what it reads to the sender, in order, until caught up with
/// `--exit-on-last-event`, a shutdown, or the sender going away. The position's `cursor` is
/// the feed key, `id` stays empty, and `window_time` is the time before which events are
/// skipped: `start_time`, or while a time reader's position is being migrated the later
/// `window_time` it had reached (lowered to `start_time` once the feed catches up).
async fn read_feed(
    ctx: Arc<Ctx>,
    stored: Position,
    tx: mpsc::Sender<Chunk>,
) -> Result<(), ForwardError> {
    let opts = &ctx.opts;
    let filter = TypeFilter::new(&opts.types, &opts.skip_event_types);
    let allowed = filter.allowed_types();
    let start_time = ctx
        .state
        .read_text(core_state::START_TIME)?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| stored.window_time.clone());
    let start = core_state::parse_stored_time(core_state::START_TIME, &start_time)?;
    let mut read = feed_start(&stored, &start_time);
    if read != stored {
        log::info(&format!(
            "the stored position is not a feed key: reading the audit log from its beginning, skipping events before {}",
            read.window_time
        ));
    }
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Backoff::default();
    let mut caught_up_logged = false;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let since = core_state::parse_stored_time(core_state::WINDOW_TIME, &read.window_time)?;
        let began = std::time::Instant::now();
        let page = match ctx.source.feed(&read.cursor, feed_limit(opts.batch)).await {
            Ok(p) => {
                backoff.reset();
                Counters::time(&ctx.counters.read_ns, began);
                p
            }
            Err(e) if e.is_transient() => {
                retry_after("", &e, &mut backoff, &mut shutdown).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let began = std::time::Instant::now();
        let mut chunks = Vec::new();
        let caught_up = page.events.is_empty() && page.next_key == read.cursor;
        if caught_up {
            if since > start {
                // Everything there was when the migration began is read: from now on only
                // the start time holds events back.
                chunks.push(Chunk::new(
                    Vec::new(),
                    Position {
                        window_time: start_time.clone(),
                        cursor: read.cursor.clone(),
                        id: String::new(),
                    },
                ));
            }
        } else {
            caught_up_logged = false;
            // What the time reader would have seen: in time, of an allowed type.
            let mut seen: Vec<SourceEvent> = page
                .events
                .into_iter()
                .filter(|(e, t)| {
                    *t >= since && (allowed.is_empty() || allowed.contains(&e.event_type))
                })
                .map(|(e, _)| e)
                .collect();
            if seen.is_empty() {
                chunks.push(Chunk::new(
                    Vec::new(),
                    Position {
                        window_time: read.window_time.clone(),
                        cursor: page.next_key.clone(),
                        id: String::new(),
                    },
                ));
            } else {
                ctx.check_logins(&seen).await;
                let sids = register_uploads(&ctx, &seen)?;
                chunks = feed_chunks(&mut seen, &read, &page.next_key, &filter);
                if let Some(first) = chunks.first_mut() {
                    first.sessions = sids;
                }
            }
        }
        Counters::time(&ctx.counters.prepare_ns, began);
        if !hand_over(chunks, &mut read, &tx, &mut shutdown).await {
            return Ok(());
        }
        if caught_up {
            if !caught_up_logged {
                log::debug("no new events");
                caught_up_logged = true;
            }
            if opts.exit_on_last_event {
                return Ok(());
            }
            sleep_or_shutdown(opts.timeout, &mut shutdown).await;
        }
    }
}

/// Queues a reader's chunks for the sender, advancing `read` past each; `false` when the
/// sender is gone or a shutdown was asked for (the reader then stops).
async fn hand_over(
    chunks: Vec<Chunk>,
    read: &mut Position,
    tx: &mpsc::Sender<Chunk>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    for chunk in chunks {
        *read = chunk.after.clone();
        tokio::select! {
            sent = tx.send(chunk) => if sent.is_err() { return false },
            Ok(()) = shutdown.changed() => return false,
        }
    }
    true
}

/// Resolves once a shutdown was asked for and the grace period has passed.
async fn shutdown_grace(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

/// The audit lane: a reader task fills a bounded queue; this loop sends one request at a
/// time, each with everything read meanwhile (up to a request's limits), and stores the
/// position after each accepted request.
async fn audit_loop(
    ctx: &Arc<Ctx>,
    committed: Position,
    sessions: &mut tokio::task::JoinSet<()>,
) -> Result<(), ForwardError> {
    // Room for about two full requests read ahead.
    let read_size = if ctx.source.reads_feed() {
        feed_limit(ctx.opts.batch)
    } else {
        ctx.opts.batch
    };
    let capacity = (2 * MAX_POST_EVENTS / read_size.max(1)).clamp(4, 1024);
    let (tx, mut rx) = mpsc::channel::<Chunk>(capacity);
    let reader = if ctx.source.reads_feed() {
        tokio::spawn(read_feed(ctx.clone(), committed.clone(), tx))
    } else {
        tokio::spawn(read_audit(ctx.clone(), committed.clone(), tx))
    };
    let sent = send_audit(ctx, committed, &mut rx, sessions).await;
    drop(rx);
    if sent.is_err() {
        reader.abort();
    }
    let read = reader.await.unwrap_or_else(|e| {
        if e.is_cancelled() {
            Ok(())
        } else {
            Err(ForwardError::Source {
                message: format!("the audit reader stopped: {e}"),
                transient: false,
            })
        }
    });
    sent?;
    read
}

/// The position store of the audit lane. After each accepted request its position is
/// written at once, by rename without fsync ([`StateDir::replace_position`]: about 0.1 ms),
/// before the next request leaves: from then on a SIGKILL or any other end of the process
/// resends nothing accepted before it (the page cache outlives the process). Making it
/// survive a power loss takes two fsyncs (file, directory; ~8 ms on the benchmark's disk,
/// longer than a request to a fast receiver), and those run beside the sender on the blocking
/// pool, coalesced: at most one sync in flight, and when it ends the files written meanwhile
/// (the newest position) are synced next. Positions are written in order and a sync makes
/// the newest one durable, so a stored position never goes backwards; a power loss resends
/// at most the requests accepted since the last sync began (those of one sync's time), never
/// skips one. Decided in place of one fsync'd write per request, which capped the lane at
/// one request per fsync (docs/forward.md, "State").
struct PositionWriter {
    state: StateDir,
    /// The last position written.
    committed: Position,
    sync: Arc<Mutex<SyncState>>,
    /// The sync loop running, if any (it ends when nothing is left to sync).
    syncing: Option<tokio::task::JoinHandle<()>>,
}

/// What the sync loop shares with the writer.
#[derive(Default)]
struct SyncState {
    /// Position files written and not yet synced.
    dirty: std::collections::BTreeSet<&'static str>,
    /// Whether the loop runs (it takes `dirty` until it finds it empty).
    running: bool,
    /// Syncs done.
    syncs: u64,
    /// A sync that failed: the lane fails with it.
    failed: Option<ForwardError>,
}

impl PositionWriter {
    fn new(state: StateDir, committed: Position) -> PositionWriter {
        PositionWriter {
            state,
            committed,
            sync: Arc::new(Mutex::new(SyncState::default())),
            syncing: None,
        }
    }

    fn lock(sync: &Mutex<SyncState>) -> std::sync::MutexGuard<'_, SyncState> {
        match sync.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Syncs the files written until none is left unsynced (one sync at a time).
    fn sync_loop(state: StateDir, sync: Arc<Mutex<SyncState>>) {
        loop {
            let names: Vec<&'static str> = {
                let mut g = Self::lock(&sync);
                if g.dirty.is_empty() || g.failed.is_some() {
                    g.running = false;
                    return;
                }
                std::mem::take(&mut g.dirty).into_iter().collect()
            };
            let done = state.sync_position(&names);
            let mut g = Self::lock(&sync);
            g.syncs += 1;
            if let Err(e) = done {
                g.failed = Some(e);
            }
        }
    }

    /// Stores `after` (the position once the request just accepted is): written now,
    /// synced by the loop. A failed earlier sync fails the lane here.
    fn store(&mut self, counters: &Counters, after: Position) -> Result<(), ForwardError> {
        if after == self.committed {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let written = self.state.replace_position(&self.committed, &after);
        Counters::time(&counters.save_ns, began);
        let written = written?;
        self.committed = after;
        let mut g = Self::lock(&self.sync);
        if let Some(e) = g.failed.take() {
            return Err(e);
        }
        g.dirty.extend(written);
        if !g.running && !g.dirty.is_empty() {
            g.running = true;
            let (state, sync) = (self.state.clone(), self.sync.clone());
            self.syncing = Some(tokio::task::spawn_blocking(move || {
                Self::sync_loop(state, sync)
            }));
        }
        Ok(())
    }

    /// Waits until every position written is synced; returns how many syncs ran, or the
    /// failure of one.
    async fn flush(&mut self, counters: &Counters) -> Result<u64, ForwardError> {
        if let Some(task) = self.syncing.take() {
            let began = std::time::Instant::now();
            let joined = task.await;
            Counters::time(&counters.save_ns, began);
            if let Err(e) = joined {
                return Err(ForwardError::State {
                    path: self.state.path().to_path_buf(),
                    source: std::io::Error::other(format!("the state syncer stopped: {e}")),
                });
            }
        }
        let mut g = Self::lock(&self.sync);
        match g.failed.take() {
            Some(e) => Err(e),
            None => Ok(g.syncs),
        }
    }
}

async fn send_audit(
    ctx: &Arc<Ctx>,
    committed: Position,
    rx: &mut mpsc::Receiver<Chunk>,
    sessions: &mut tokio::task::JoinSet<()>,
) -> Result<(), ForwardError> {
    let mut writer = PositionWriter::new(ctx.state.clone(), committed);
    let sent = send_audit_with(ctx, &mut writer, rx, sessions).await;
    // The last accepted request's position is synced before the lane ends.
    let stored = writer.flush(&ctx.counters).await;
    if let Ok(syncs) = &stored {
        ctx.counters
            .position_syncs
            .store(*syncs, std::sync::atomic::Ordering::Relaxed);
    }
    sent.and(stored.map(|_| ()))
}

async fn send_audit_with(
    ctx: &Arc<Ctx>,
    writer: &mut PositionWriter,
    rx: &mut mpsc::Receiver<Chunk>,
    sessions: &mut tokio::task::JoinSet<()>,
) -> Result<(), ForwardError> {
    let mut shutdown = ctx.shutdown.clone();
    let mut carry: Option<Chunk> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let mut post = match carry.take() {
            Some(c) => c,
            None => tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => c,
                    None => return Ok(()),
                },
                Ok(()) = shutdown.changed() => continue,
            },
        };
        Counters::time(&ctx.counters.wait_ns, began);
        // Everything read meanwhile, up to one request.
        while !post.is_full() {
            match rx.try_recv() {
                Ok(c) if post.fits(&c) => post.merge(c),
                Ok(c) => {
                    carry = Some(c);
                    break;
                }
                Err(_) => break,
            }
        }
        for sid in std::mem::take(&mut post.sessions) {
            spawn_session(ctx, sessions, sid);
        }
        if !post.events.is_empty() {
            log::debug(&format!("sending {} audit event(s)", post.events.len()));
            let began = std::time::Instant::now();
            let delivered = tokio::select! {
                r = deliver(ctx, &Dest::Audit, &post.events) => r.is_ok(),
                () = shutdown_grace(ctx.shutdown.clone()) => false,
            };
            Counters::time(&ctx.counters.send_ns, began);
            if !delivered {
                return Ok(());
            }
        }
        writer.store(&ctx.counters, post.after)?;
    }
}

fn spawn_session(ctx: &Arc<Ctx>, set: &mut tokio::task::JoinSet<()>, sid: String) {
    if let Some(task) = session_task(ctx, sid) {
        set.spawn(task);
    }
}

/// The export of one session as a task (`None` when it is running already): waits for a
/// `--concurrency` slot, exports, and on `NotFound` applies the missing-recording rule.
fn session_task(
    ctx: &Arc<Ctx>,
    sid: String,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    match ctx.active_sessions.lock() {
        Ok(mut active) => {
            if !active.insert(sid.clone()) {
                return None;
            }
        }
        Err(_) => return None,
    }
    let ctx = ctx.clone();
    Some(async move {
        if let Ok(_slot) = ctx.session_slots.acquire().await {
            match export_session(&ctx, &sid).await {
                Ok(()) => {
                    if let Err(e) = ctx.state.remove_missing(&sid) {
                        log::warn(&format!("session {sid}: {e}"));
                    }
                }
                Err(ForwardError::NotFound(why)) => {
                    if let Err(e) = recording_missing(&ctx, &sid, &why) {
                        log::warn(&format!("session {sid}: {e}"));
                    }
                }
                Err(e) => log::warn(&format!(
                    "session {sid}: {e}; it stays registered and is retried on the next start"
                )),
            }
        }
        if let Ok(mut active) = ctx.active_sessions.lock() {
            active.remove(&sid);
        }
    })
}

/// The session's recording is not there (yet): note it for the background retries, or give
/// the session up (upstream's rule, `core::forward::missing`).
fn recording_missing(ctx: &Ctx, sid: &str, why: &str) -> Result<(), ForwardError> {
    let previous = ctx.state.missing_recording(sid)?;
    let index = ctx.state.session_index(sid)?.unwrap_or(0);
    let uploaded = ctx
        .upload_times
        .lock()
        .ok()
        .and_then(|t| t.get(sid).copied());
    match missing::on_not_found(previous.as_ref(), uploaded, index, now()) {
        missing::Outcome::Retry(m) => {
            log::warn(&format!(
                "session {sid}: {why}; retrying in the background (attempt {} failed)",
                m.attempt
            ));
            ctx.state.save_missing(sid, &m)?;
            ctx.state.remove_session(sid)
        }
        missing::Outcome::Drop(reason) => {
            log::warn(&format!("session {sid}: {why}; given up: {reason}"));
            ctx.state.remove_session(sid)?;
            ctx.state.remove_missing(sid)
        }
    }
}

/// The background retries of missing recordings: after the first wait, then after every
/// second one, up to [`missing::RETRY_BATCH`] sessions a round (each registered again at its
/// stored index, so a crash mid-retry resumes it as a normal session).
async fn missing_loop(ctx: Arc<Ctx>) {
    let (first, every) = ctx.opts.missing_retry;
    let mut shutdown = ctx.shutdown.clone();
    if sleep_or_shutdown(first, &mut shutdown).await {
        return;
    }
    loop {
        let missing = match ctx.state.missing_recordings() {
            Ok(m) => m,
            Err(e) => {
                log::warn(&format!("missing recordings: {e}"));
                Vec::new()
            }
        };
        let mut round = tokio::task::JoinSet::new();
        for (sid, m) in missing.into_iter().take(missing::RETRY_BATCH) {
            if let Err(e) = ctx.state.save_session(&sid, m.index) {
                log::warn(&format!("session {sid}: {e}"));
                continue;
            }
            log::debug(&format!(
                "session {sid}: trying the missing recording again"
            ));
            if let Some(task) = session_task(&ctx, sid) {
                round.spawn(task);
            }
        }
        while round.join_next().await.is_some() {}
        if sleep_or_shutdown(every, &mut shutdown).await {
            return;
        }
    }
}

/// Exports one session from its stored index to the end, then forgets it. Requests go one
/// at a time, each with the events ready (up to a request's limits), so the session's
/// events arrive in order.
async fn export_session(ctx: &Ctx, sid: &str) -> Result<(), ForwardError> {
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Backoff::default();
    let dest = Dest::Session(sid.to_string());
    'attempt: loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let index = ctx.state.session_index(sid)?.unwrap_or(0);
        let mut stream = match ctx.source.session_events(sid, index).await {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                retry_after(&format!("session {sid}"), &e, &mut backoff, &mut shutdown).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        log::debug(&format!("session {sid}: exporting from index {index}"));
        let mut batch: Vec<String> = Vec::new();
        let mut bytes = 0usize;
        let mut next_index = index;
        let mut ready = None;
        loop {
            let item = match ready.take() {
                Some(item) => item,
                None => tokio::select! {
                    item = stream.next() => item,
                    Ok(()) = shutdown.changed() => return Ok(()),
                },
            };
            let end = item.is_none();
            match item {
                Some(Ok(event)) => {
                    backoff.reset();
                    next_index = u64::try_from(event.index().saturating_add(1))
                        .unwrap_or(0)
                        .max(next_index);
                    if ctx.session_filter.allows(event.event_type()) {
                        let json = event.to_json();
                        bytes += json.len() + 1;
                        batch.push(json);
                    }
                }
                Some(Err(e)) => {
                    if !e.is_transient() {
                        return Err(e);
                    }
                    retry_after(&format!("session {sid}"), &e, &mut backoff, &mut shutdown).await;
                    continue 'attempt;
                }
                None => {}
            }
            let full = batch.len() >= MAX_POST_EVENTS || bytes >= MAX_POST_BYTES;
            if !end && !full {
                // Take what is ready without waiting; send when nothing more is.
                if let Some(item) = stream.next().now_or_never() {
                    ready = Some(item);
                    continue;
                }
            }
            if !batch.is_empty() {
                if deliver(ctx, &dest, &batch).await.is_err() {
                    return Ok(());
                }
                batch.clear();
                bytes = 0;
                ctx.state.save_session(sid, next_index)?;
            }
            if end {
                ctx.finish_session(sid)?;
                ctx.counters
                    .sessions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                log::debug(&format!("session {sid}: done"));
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ev(i: usize, t: &str) -> SourceEvent {
        SourceEvent {
            json: format!("{{\"i\":{i}}}"),
            event_type: t.into(),
            checkpoint: format!("id{i}"),
            session_id: String::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn positions_are_written_at_once_and_synced_coalesced_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path(), "x_1", false).unwrap();
        let counters = Counters::default();
        let mut w = PositionWriter::new(state.clone(), Position::default());
        let at = |i: usize| Position {
            window_time: "2024-01-01T00:00:00Z".into(),
            cursor: format!("f1:k{i:04}"),
            id: String::new(),
        };
        let mut last_seen = String::new();
        for i in 0..300 {
            w.store(&counters, at(i)).unwrap();
            // Written before the next request: a restart now reads it.
            let now = state.position().unwrap();
            assert_eq!(now, at(i));
            assert!(now.cursor > last_seen, "never backwards");
            last_seen = now.cursor;
            // The same position again writes nothing.
            w.store(&counters, at(i)).unwrap();
        }
        let syncs = w.flush(&counters).await.unwrap();
        assert!((1..=300).contains(&syncs), "{syncs} syncs");
        assert_eq!(state.position().unwrap(), at(299));
        assert!(PositionWriter::lock(&w.sync).dirty.is_empty());
        assert!(!state.path().join(".cursor.next").exists());
        // A later store starts the loop again.
        w.store(&counters, at(300)).unwrap();
        assert_eq!(w.flush(&counters).await.unwrap(), syncs + 1);
    }

    #[tokio::test]
    async fn a_failed_sync_fails_the_next_store_and_the_flush() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path(), "x_1", false).unwrap();
        let counters = Counters::default();
        let mut w = PositionWriter::new(state.clone(), Position::default());
        // The directory is gone when the sync runs: its fsync fails.
        std::fs::remove_dir_all(state.path()).unwrap();
        {
            let mut g = PositionWriter::lock(&w.sync);
            g.dirty.insert(core_state::CURSOR);
            g.running = true;
        }
        PositionWriter::sync_loop(state.clone(), w.sync.clone());
        std::fs::create_dir_all(state.path()).unwrap();
        let p = Position {
            cursor: "f1:x".into(),
            ..Position::default()
        };
        match w.store(&counters, p.clone()) {
            Err(ForwardError::State { path, .. }) => assert_eq!(path, state.path()),
            other => panic!("{other:?}"),
        }
        // Taken once: the lane has failed with it; a flush after a later failure reports it.
        std::fs::remove_dir_all(state.path()).unwrap();
        {
            let mut g = PositionWriter::lock(&w.sync);
            g.dirty.insert(core_state::CURSOR);
            g.running = true;
        }
        PositionWriter::sync_loop(state.clone(), w.sync.clone());
        assert!(matches!(
            w.flush(&counters).await,
            Err(ForwardError::State { .. })
        ));
    }

    #[test]
    fn batches_cover_the_page_and_carry_positions() {
        let page: Vec<SourceEvent> = (0..5)
            .map(|i| ev(i, if i == 4 { "skip" } else { "x" }))
            .collect();
        let f = TypeFilter::new(Vec::<String>::new(), ["skip"]);
        let b = batches(&mut page.clone(), 1, "k1", "", "w", &f);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].events.len(), 3);
        assert_eq!(b[0].after.cursor, "k1");
        assert_eq!(
            b[0].after.id, "id4",
            "the skipped last event is covered too"
        );
        let b = batches(&mut page.clone(), 0, "k1", "k2", "w", &f);
        assert_eq!(b[0].after.cursor, "k2");
        assert_eq!(b[0].after.id, "");
        let only_skipped = vec![ev(0, "skip")];
        let b = batches(&mut only_skipped.clone(), 0, "k", "", "w", &f);
        assert!(b[0].events.is_empty());
        assert_eq!(b[0].after.id, "id0");
    }

    #[test]
    fn feed_reads_are_cut_to_requests_with_one_key_at_the_end() {
        let read = Position {
            window_time: "2024-05-01T00:00:00Z".into(),
            cursor: "f1:AQ".into(),
            id: String::new(),
        };
        let events: Vec<SourceEvent> = (0..2500)
            .map(|i| ev(i, if i == 2499 { "skip" } else { "x" }))
            .collect();
        let f = TypeFilter::new(Vec::<String>::new(), ["skip"]);
        let c = feed_chunks(&mut events.clone(), &read, "f1:next", &f);
        let sizes: Vec<usize> = c.iter().map(|c| c.events.len()).collect();
        assert_eq!(sizes, [1000, 1000, 499]);
        assert_eq!(
            c[0].after, read,
            "before the last chunk: where the read began"
        );
        assert_eq!(c[1].after, read);
        assert_eq!(c[2].after.cursor, "f1:next");
        assert_eq!(c[2].after.id, "");
        assert_eq!(c[2].after.window_time, read.window_time);
        // Only skipped events: one empty chunk that moves the key.
        let c = feed_chunks(&mut [ev(0, "skip")], &read, "f1:next", &f);
        assert_eq!(c.len(), 1);
        assert!(c[0].events.is_empty());
        assert_eq!(c[0].after.cursor, "f1:next");
    }

    #[test]
    fn a_time_readers_position_starts_the_feed_over_from_its_window() {
        let feed = Position {
            window_time: "2024-05-01T00:00:00Z".into(),
            cursor: "f1:AA".into(),
            id: "stale".into(),
        };
        assert_eq!(
            feed_start(&feed, "2024-05-01T00:00:00Z"),
            feed,
            "a feed key resumes"
        );
        let old = Position {
            window_time: "2024-05-03T00:00:00Z".into(),
            cursor: "tl1.abc".into(),
            id: "ev-1".into(),
        };
        let p = feed_start(&old, "2024-05-01T00:00:00Z");
        assert_eq!(p.cursor, "", "from the beginning");
        assert_eq!(p.id, "");
        assert_eq!(
            p.window_time, "2024-05-03T00:00:00Z",
            "skipping what it had passed"
        );
        // A window before the start time (never, but): the start time wins.
        let early = Position {
            window_time: "2024-04-01T00:00:00Z".into(),
            cursor: String::new(),
            id: String::new(),
        };
        assert_eq!(
            feed_start(&early, "2024-05-01T00:00:00Z").window_time,
            "2024-05-01T00:00:00Z"
        );
        // Fresh: the window is the start time.
        let fresh = Position {
            window_time: "2024-05-01T00:00:00Z".into(),
            ..Position::default()
        };
        assert_eq!(feed_start(&fresh, "2024-05-01T00:00:00Z"), fresh);
    }

    #[test]
    fn large_pages_are_cut_to_requests_and_chunks_merge_up_to_a_request() {
        let page: Vec<SourceEvent> = (0..2500).map(|i| ev(i, "x")).collect();
        let b = batches(&mut page.clone(), 0, "k", "", "w", &TypeFilter::default());
        let sizes: Vec<usize> = b.iter().map(|c| c.events.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(b[0].after.id, "id999");
        assert_eq!(b[2].after.id, "id2499");
        let mut post = Chunk::new(vec!["{}".into(); 600], Position::default());
        let later = Chunk::new(vec!["{}".into(); 500], Position::default());
        assert!(!post.fits(&later));
        let small = Chunk::new(vec!["{}".into(); 400], Position::default());
        assert!(post.fits(&small));
        post.merge(small);
        assert!(post.is_full());
        assert!(post.fits(&Chunk::new(Vec::new(), Position::default())));
    }
}
