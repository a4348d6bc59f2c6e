//! The exporter loop.
//!
//! **Audit events.** Pages of `--batch` events are read in order from the search window
//! `[window_time, window_time + --window-size]` (the current window ends now). A page's
//! events that pass the type filters form one POST batch (cut further only if its body
//! would pass 8 MiB). Several batches are in flight at once — up to
//! `--fluentd-max-connections` (default 2 × `--concurrency`) — while the reader goes on to
//! the next pages. Each batch gets a sequence number and the position the source reaches
//! once it is accepted (`cursor` = the key of its page, `id` = the checkpoint of its last
//! event; or the next page's key). The stored position advances only over a contiguous
//! prefix of accepted batches ([`CommitTracker`]) and is written after each advance, so a
//! crash resends at most the batches in flight, and never skips one.
//!
//! **Failures.** A transient failure (connection, timeout, 5xx) is retried forever with
//! decorrelated-jitter backoff (1 s base, 10 s cap): nothing is skipped. A rejection (400,
//! 413) is bisected to the event at fault, which is appended to `dead-letter.jsonl` with the
//! reason; the rest of the batch still goes out and the stream moves on.
//!
//! **Sessions.** A `session.upload` event registers its `sid` (`session<sid>` = 0) before its
//! batch is sent; `--concurrency` sessions are exported at once, each in batches to
//! `<session url>.<sid>.log`, skipping `--skip-session-types`, storing the next index after
//! each accepted batch and removing the file at the end. Registered sessions resume at their
//! stored index on start.
//!
//! **Polling and exit.** When the current window has no new event the loop sleeps
//! `--timeout` and reads again; with `--exit-on-last-event` it instead waits for the
//! batches in flight and the sessions, then returns. SIGTERM/SIGINT (the `shutdown`
//! channel) stop reading, give the batches in flight up to 5 s, store the position and
//! return.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tapelog_core::Timestamp;
use tapelog_core::forward::state::{self as core_state, Position, format_seconds};
use tapelog_core::forward::{
    Backoff, Bisector, CommitTracker, TypeFilter, Verdict, split_by_bytes,
};
use tokio::sync::{Semaphore, mpsc, watch};

use super::log;
use super::options::ForwardOptions;
use super::output::{Destination, Output, SendError};
use super::source::{Source, SourceEvent};
use super::state::{StateDir, addr_dir_name, data_dir_name};
use super::{ForwardError, open_output};
use crate::audit::{Order, SearchQuery};

/// The largest request body the exporter builds (in_http refuses more than 32 MB).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// How long batches in flight get to finish after a shutdown signal.
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
}

/// Counters shared by the tasks.
#[derive(Default)]
struct Counters {
    events: std::sync::atomic::AtomicU64,
    session_events: std::sync::atomic::AtomicU64,
    dead_letters: std::sync::atomic::AtomicU64,
    sessions: std::sync::atomic::AtomicU64,
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
    shutdown: watch::Receiver<bool>,
}

fn now() -> Timestamp {
    crate::emit::system_clock()
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
    if position.cursor.is_empty() && position.id.is_empty() {
        if let Some(c) = &opts.cursor {
            position.cursor = c.clone();
        }
    }
    let source = Source::open(&opts)?;
    log::info(&format!(
        "exporting from {} to {} (start time {start_time}, state {})",
        opts.data_dir
            .as_ref()
            .map_or_else(|| opts.teleport_addr.clone(), |d| d.display().to_string()),
        output.describe(Destination::Audit),
        state.path().display()
    ));
    let ctx = Arc::new(Ctx {
        session_filter: TypeFilter::skipping(&opts.skip_session_types),
        session_slots: Semaphore::new(opts.concurrency.max(1)),
        opts,
        source,
        output,
        state,
        counters: Counters::default(),
        active_sessions: Mutex::new(HashSet::new()),
        shutdown,
    });
    let mut sessions = tokio::task::JoinSet::new();
    for (sid, _) in ctx.state.sessions()? {
        spawn_session(&ctx, &mut sessions, sid);
    }
    let result = audit_loop(&ctx, position, &mut sessions).await;
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
    };
    log::info(&format!(
        "stopped: {} audit event(s), {} session event(s) of {} session(s) sent, {} dead letter(s)",
        summary.events, summary.session_events, summary.sessions, summary.dead_letters
    ));
    Ok(summary)
}

/// A batch ready to go: its events and the position once it is accepted.
struct Batch {
    events: Vec<String>,
    after: Position,
}

/// Cuts a page's new events (from `start`) into batches with their positions.
fn batches(
    page: &[SourceEvent],
    start: usize,
    cursor: &str,
    next_key: &str,
    window_time: &str,
    filter: &TypeFilter,
) -> Vec<Batch> {
    let kept: Vec<usize> = (start..page.len())
        .filter(|&i| filter.allows(&page[i].event_type))
        .collect();
    let texts: Vec<String> = kept.iter().map(|&i| page[i].json.clone()).collect();
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
    let ranges = split_by_bytes(&texts, MAX_BODY_BYTES);
    if ranges.is_empty() {
        return vec![Batch {
            events: Vec::new(),
            after: position_after(page.len() - 1),
        }];
    }
    let n = ranges.len();
    ranges
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            // The last batch also covers filtered events after its last kept one.
            let last = if k + 1 == n {
                page.len() - 1
            } else {
                kept[r.end - 1]
            };
            Batch {
                events: texts[r].to_vec(),
                after: position_after(last),
            }
        })
        .collect()
}

async fn audit_loop(
    ctx: &Arc<Ctx>,
    mut committed: Position,
    sessions: &mut tokio::task::JoinSet<()>,
) -> Result<(), ForwardError> {
    let opts = &ctx.opts;
    let filter = TypeFilter::new(&opts.types, &opts.skip_event_types);
    let window = opts.window_size;
    let max_in_flight = opts.fluentd_max_connections.max(1);
    let mut read = committed.clone();
    let mut tracker: CommitTracker<Position> = CommitTracker::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Backoff::default();
    let mut caught_up_logged = false;

    let commit = |tracker: &mut CommitTracker<Position>,
                  committed: &mut Position,
                  seqs: &mut Vec<u64>|
     -> Result<(), ForwardError> {
        let mut newest = None;
        for s in seqs.drain(..) {
            if let Some(p) = tracker.accept(s) {
                newest = Some(p);
            }
        }
        if let Some(p) = newest {
            ctx.state.save_position(committed, &p)?;
            *committed = p;
        }
        Ok(())
    };

    loop {
        let mut seqs = Vec::new();
        while let Ok(s) = done_rx.try_recv() {
            seqs.push(s);
        }
        commit(&mut tracker, &mut committed, &mut seqs)?;
        if *shutdown.borrow() {
            break;
        }
        if tracker.in_flight() >= max_in_flight {
            tokio::select! {
                Some(s) = done_rx.recv() => {
                    seqs.push(s);
                    commit(&mut tracker, &mut committed, &mut seqs)?;
                }
                Ok(()) = shutdown.changed() => {}
            }
            continue;
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
        let page = match ctx.source.page(&query).await {
            Ok(p) => {
                backoff.reset();
                p
            }
            Err(e) if e.is_transient() => {
                let wait = backoff.next_wait(unit_random());
                log::warn(&format!("{e}; retrying in {:.1}s", wait.as_secs_f64()));
                sleep_or_shutdown(wait, &mut shutdown).await;
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
        if start >= page.events.len() {
            // Nothing new in this page.
            let mut moved = None;
            if !page.next_key.is_empty() && page.next_key != read.cursor {
                moved = Some(Position {
                    window_time: read.window_time.clone(),
                    cursor: page.next_key.clone(),
                    id: String::new(),
                });
            } else if !current {
                moved = Some(Position {
                    window_time: format_seconds(window_end),
                    cursor: String::new(),
                    id: String::new(),
                });
                log::debug(&format!(
                    "window done; next window from {}",
                    format_seconds(window_end)
                ));
            }
            if let Some(p) = moved {
                read = p.clone();
                let seq = tracker.issue(p);
                let _ = done_tx.send(seq);
                continue;
            }
            // Caught up.
            if !caught_up_logged {
                log::debug("no new events");
                caught_up_logged = true;
            }
            if opts.exit_on_last_event {
                if tracker.is_idle() {
                    break;
                }
                tokio::select! {
                    Some(s) = done_rx.recv() => {
                        seqs.push(s);
                        commit(&mut tracker, &mut committed, &mut seqs)?;
                    }
                    Ok(()) = shutdown.changed() => {}
                }
                continue;
            }
            let sleep = tokio::time::sleep(opts.timeout);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    Some(s) = done_rx.recv() => {
                        seqs.push(s);
                        commit(&mut tracker, &mut committed, &mut seqs)?;
                    }
                    Ok(()) = shutdown.changed() => break,
                }
            }
            continue;
        }
        caught_up_logged = false;

        // Sessions first: registered before the upload event can be committed.
        for e in &page.events[start..] {
            if e.event_type == "session.upload" && !e.session_id.is_empty() {
                if ctx.state.session_index(&e.session_id)?.is_none() {
                    ctx.state.save_session(&e.session_id, 0)?;
                }
                spawn_session(ctx, sessions, e.session_id.clone());
            }
        }
        for batch in batches(
            &page.events,
            start,
            &read.cursor,
            &page.next_key,
            &read.window_time,
            &filter,
        ) {
            read = batch.after.clone();
            let seq = tracker.issue(batch.after);
            if batch.events.is_empty() {
                let _ = done_tx.send(seq);
                continue;
            }
            log::debug(&format!("sending {} event(s)", batch.events.len()));
            let ctx = ctx.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                if deliver(&ctx, &Dest::Audit, &batch.events).await.is_ok() {
                    let _ = done.send(seq);
                }
            });
        }
    }
    // Shutting down (or done): give the batches in flight a moment, store what was accepted.
    if !tracker.is_idle() {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while !tracker.is_idle() {
                let Some(s) = done_rx.recv().await else { break };
                let mut seqs = vec![s];
                if commit(&mut tracker, &mut committed, &mut seqs).is_err() {
                    break;
                }
            }
        })
        .await;
    }
    Ok(())
}

fn spawn_session(ctx: &Arc<Ctx>, set: &mut tokio::task::JoinSet<()>, sid: String) {
    match ctx.active_sessions.lock() {
        Ok(mut active) => {
            if !active.insert(sid.clone()) {
                return;
            }
        }
        Err(_) => return,
    }
    let ctx = ctx.clone();
    set.spawn(async move {
        let Ok(_slot) = ctx.session_slots.acquire().await else {
            return;
        };
        if let Err(e) = export_session(&ctx, &sid).await {
            log::warn(&format!(
                "session {sid}: {e}; it stays registered and is retried on the next start"
            ));
        }
        if let Ok(mut active) = ctx.active_sessions.lock() {
            active.remove(&sid);
        }
    });
}

/// Exports one session from its stored index to the end, then forgets it.
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
                let wait = backoff.next_wait(unit_random());
                log::warn(&format!(
                    "session {sid}: {e}; retrying in {:.1}s",
                    wait.as_secs_f64()
                ));
                sleep_or_shutdown(wait, &mut shutdown).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        log::debug(&format!("session {sid}: exporting from index {index}"));
        let mut batch: Vec<String> = Vec::new();
        let mut next_index = index;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                Ok(()) = shutdown.changed() => return Ok(()),
            };
            let end = item.is_none();
            match item {
                Some(Ok(event)) => {
                    next_index = u64::try_from(event.index().saturating_add(1))
                        .unwrap_or(0)
                        .max(next_index);
                    if ctx.session_filter.allows(event.event_type()) {
                        batch.push(event.to_json());
                    }
                }
                Some(Err(e)) => {
                    if !e.is_transient() {
                        return Err(e);
                    }
                    let wait = backoff.next_wait(unit_random());
                    log::warn(&format!(
                        "session {sid}: {e}; retrying in {:.1}s",
                        wait.as_secs_f64()
                    ));
                    sleep_or_shutdown(wait, &mut shutdown).await;
                    continue 'attempt;
                }
                None => {}
            }
            if batch.len() >= ctx.opts.batch || (end && !batch.is_empty()) {
                if deliver(ctx, &dest, &batch).await.is_err() {
                    return Ok(());
                }
                batch.clear();
                ctx.state.save_session(sid, next_index)?;
            }
            if end {
                ctx.state.remove_session(sid)?;
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

    #[test]
    fn batches_cover_the_page_and_carry_positions() {
        let page: Vec<SourceEvent> = (0..5)
            .map(|i| ev(i, if i == 4 { "skip" } else { "x" }))
            .collect();
        let f = TypeFilter::new(Vec::<String>::new(), ["skip"]);
        let b = batches(&page, 1, "k1", "", "w", &f);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].events.len(), 3);
        assert_eq!(b[0].after.cursor, "k1");
        assert_eq!(
            b[0].after.id, "id4",
            "the skipped last event is covered too"
        );
        let b = batches(&page, 0, "k1", "k2", "w", &f);
        assert_eq!(b[0].after.cursor, "k2");
        assert_eq!(b[0].after.id, "");
        let only_skipped = vec![ev(0, "skip")];
        let b = batches(&only_skipped, 0, "k", "", "w", &f);
        assert!(b[0].events.is_empty());
        assert_eq!(b[0].after.id, "id0");
    }
}
