//! The bulk export mode against a Teleport cluster with the export API, as
//! teleport-event-handler's v2 exporter: per UTC date, the chunks of
//! `GetEventExportChunks`, each read with `ExportUnstructuredEvents` from its stored cursor.
//!
//! **Choice.** [`choose`]: with export state stored (`cursor_v2/`) the export goes on; else
//! the cluster is probed (the chunks of the date two days ahead) and `Unimplemented` means
//! the polling mode of `super::read_audit`. A state dir of the polling mode starts the export
//! at its `window_time` date, as upstream does.
//!
//! **Dates.** `core::forward::export::Dates`: the current date moves on once a pass finds
//! nothing new there and it is before today; the two dates before it stay polled (late
//! events). Between passes the loop waits `--timeout` (upstream: 16 s).
//!
//! **Chunks.** `max(--concurrency / 4, 3)` chunks are read at once, each its own lane: a
//! request at a time with everything read meanwhile (up to a request's limits), and after
//! each accepted request the chunk's cursor is stored (`<chunk>.chunk`). A chunk read to the
//! end goes into `completed-chunks` and its cursor file goes. A crash resends at most the
//! request in flight of each chunk. Events of different chunks come in no particular order,
//! as upstream's. `--types` and `--skip-event-types` are applied here (upstream applies only
//! the latter in this mode); `session.upload` registers its session before the cursor after
//! it is stored; failed logins count for auto-lock.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use tapelog_core::audit::files::day_of;
use tapelog_core::forward::export::{Dates, chunk_parallelism, format_date};
use tapelog_core::forward::state as core_state;
use tapelog_core::forward::{Backoff, Position, TypeFilter};
use tokio::sync::{Semaphore, mpsc};

use super::{
    Ctx, Dest, MAX_POST_BYTES, MAX_POST_EVENTS, deliver, log, now, retry_after, spawn_session,
};
use crate::ForwardError;
use crate::source::Source;

/// Whether to run the export mode: a cluster with export state, or one that answers the
/// probe. Transient failures of the probe are waited out.
pub(super) async fn choose(ctx: &Ctx) -> Result<bool, ForwardError> {
    if !matches!(ctx.source, Source::Teleport(_)) {
        return Ok(false);
    }
    if !ctx.state.export_dates()?.is_empty() {
        return Ok(true);
    }
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Backoff::default();
    loop {
        match ctx.source.probe_export(now()).await {
            Ok(true) => {
                log::info("the cluster has the export API: bulk export per UTC date");
                return Ok(true);
            }
            Ok(false) => {
                log::info(
                    "the cluster has no export API (Unimplemented): polling GetUnstructuredEvents",
                );
                return Ok(false);
            }
            Err(e) if e.is_transient() => {
                if retry_after("probing the export API", &e, &mut backoff, &mut shutdown).await {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What the chunk tasks share.
struct Shared {
    /// Completed chunks per date, as stored.
    completed: Mutex<HashMap<i64, BTreeSet<String>>>,
    /// Chunks read at once.
    slots: Semaphore,
    /// Sessions to export, from `session.upload` events.
    sessions: mpsc::UnboundedSender<String>,
    /// `--types` and `--skip-event-types`.
    filter: TypeFilter,
}

type ChunkResult = (i64, String, Result<(), ForwardError>);

/// The export loop: passes over the dates to poll, chunk tasks started for new chunks,
/// sessions spawned as their uploads are read; until caught up with
/// `--exit-on-last-event`, a shutdown, or a failure that retrying can't mend.
pub(super) async fn export_loop(
    ctx: &Arc<Ctx>,
    position: &Position,
    sessions: &mut tokio::task::JoinSet<()>,
) -> Result<(), ForwardError> {
    let opts = &ctx.opts;
    let start = core_state::parse_stored_time(core_state::WINDOW_TIME, &position.window_time)?;
    let mut dates = Dates::new(start, ctx.state.export_dates()?.last().copied());
    let (sid_tx, mut sid_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        completed: Mutex::new(HashMap::new()),
        slots: Semaphore::new(chunk_parallelism(opts.concurrency)),
        sessions: sid_tx,
        filter: TypeFilter::new(&opts.types, &opts.skip_event_types),
    });
    let mut shutdown = ctx.shutdown.clone();
    let mut chunks: tokio::task::JoinSet<ChunkResult> = tokio::task::JoinSet::new();
    let mut in_progress: HashSet<(i64, String)> = HashSet::new();
    let mut backoff = Backoff::default();
    let mut caught_up_logged = false;
    log::debug(&format!("exporting from {}", format_date(dates.current())));
    'pass: loop {
        if *shutdown.borrow() {
            break;
        }
        while let Some(done) = chunks.try_join_next() {
            finished(done, &mut in_progress)?;
        }
        while let Ok(sid) = sid_rx.try_recv() {
            spawn_session(ctx, sessions, sid);
        }
        for day in ctx.state.export_dates()? {
            if dates.is_past(day) && !in_progress.iter().any(|(d, _)| *d == day) {
                ctx.state.remove_export_date(day)?;
                if let Ok(mut c) = shared.completed.lock() {
                    c.remove(&day);
                }
            }
        }
        let today = day_of(now());
        let mut current_idle = true;
        let mut all_idle = true;
        for day in dates.to_poll() {
            let list = match ctx.source.export_chunks(day).await {
                Ok(l) => l,
                Err(e) if e.is_transient() => {
                    retry_after(
                        &format!("listing the chunks of {}", format_date(day)),
                        &e,
                        &mut backoff,
                        &mut shutdown,
                    )
                    .await;
                    continue 'pass;
                }
                Err(e) => return Err(e),
            };
            let stored = ctx.state.export_date(day)?;
            let completed = match shared.completed.lock() {
                Ok(mut c) => c.entry(day).or_insert(stored.completed).clone(),
                Err(_) => {
                    return Err(ForwardError::Source {
                        message: "the export's chunk list lock is poisoned".into(),
                        transient: false,
                    });
                }
            };
            let mut new = 0usize;
            for chunk in list {
                let key = (day, chunk);
                if completed.contains(&key.1) || in_progress.contains(&key) {
                    continue;
                }
                new += 1;
                let cursor = stored.cursors.get(&key.1).cloned().unwrap_or_default();
                let (ctx, shared) = (ctx.clone(), shared.clone());
                let chunk = key.1.clone();
                in_progress.insert(key);
                chunks.spawn(async move {
                    let r = export_chunk(&ctx, &shared, day, &chunk, cursor).await;
                    (day, chunk, r)
                });
            }
            if new > 0 || in_progress.iter().any(|(d, _)| *d == day) {
                all_idle = false;
                if day == dates.current() {
                    current_idle = false;
                }
            }
        }
        backoff.reset();
        if dates.after_pass(current_idle, today) {
            log::debug(&format!(
                "date {} done; next {}",
                format_date(dates.current() - 1),
                format_date(dates.current())
            ));
            continue;
        }
        if all_idle && chunks.is_empty() && dates.caught_up(current_idle, today) {
            if !caught_up_logged {
                log::debug("no new chunks");
                caught_up_logged = true;
            }
            if opts.exit_on_last_event {
                break;
            }
        } else {
            caught_up_logged = false;
        }
        // Wait for the next pass; meanwhile sessions start and chunk tasks end.
        let pause = tokio::time::sleep(opts.timeout);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                Some(done) = chunks.join_next(), if !chunks.is_empty() => {
                    finished(done, &mut in_progress)?;
                    if chunks.is_empty() {
                        // The last chunk ended: look again now (an exit may be due).
                        break;
                    }
                }
                Some(sid) = sid_rx.recv() => spawn_session(ctx, sessions, sid),
                Ok(()) = shutdown.changed() => break,
            }
        }
    }
    while let Some(done) = chunks.join_next().await {
        finished(done, &mut in_progress)?;
    }
    while let Ok(sid) = sid_rx.try_recv() {
        spawn_session(ctx, sessions, sid);
    }
    Ok(())
}

/// A chunk task's end: a failure that retrying can't mend stops the export.
fn finished(
    done: Result<ChunkResult, tokio::task::JoinError>,
    in_progress: &mut HashSet<(i64, String)>,
) -> Result<(), ForwardError> {
    let (day, chunk, r) = done.map_err(|e| ForwardError::Source {
        message: format!("an export chunk task stopped: {e}"),
        transient: false,
    })?;
    in_progress.remove(&(day, chunk));
    r
}

/// Reads one chunk from `cursor` to its end and delivers its events; stores the cursor after
/// each accepted request, and the chunk as completed at the end.
async fn export_chunk(
    ctx: &Ctx,
    shared: &Shared,
    day: i64,
    chunk: &str,
    mut cursor: String,
) -> Result<(), ForwardError> {
    let Ok(_slot) = shared.slots.acquire().await else {
        return Ok(());
    };
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Backoff::default();
    let date = format_date(day);
    'attempt: loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut stream = match ctx.source.export_events(day, chunk, &cursor).await {
            Ok(s) => s,
            Err(ForwardError::NotFound(why)) => {
                log::warn(&format!(
                    "chunk {chunk} of {date}: {why}; the cluster no longer has it, so it counts as read"
                ));
                break 'attempt;
            }
            Err(e) if e.is_transient() => {
                retry_after(
                    &format!("chunk {chunk} of {date}"),
                    &e,
                    &mut backoff,
                    &mut shutdown,
                )
                .await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut batch: Vec<String> = Vec::new();
        let mut bytes = 0usize;
        let mut batch_cursor = cursor.clone();
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
                Some(Ok(it)) => {
                    backoff.reset();
                    ctx.check_logins(std::slice::from_ref(&it.event)).await;
                    if let Some(sid) = ctx.register_upload(&it.event)? {
                        let _ = shared.sessions.send(sid);
                    }
                    if shared.filter.allows(&it.event.event_type) {
                        bytes += it.event.json.len() + 1;
                        batch.push(it.event.json);
                    }
                    batch_cursor = it.cursor;
                }
                Some(Err(e)) => {
                    if !e.is_transient() {
                        return Err(e);
                    }
                    // What was read and not sent is read again from the stored cursor.
                    retry_after(
                        &format!("chunk {chunk} of {date}"),
                        &e,
                        &mut backoff,
                        &mut shutdown,
                    )
                    .await;
                    continue 'attempt;
                }
                None => {}
            }
            let full = batch.len() >= MAX_POST_EVENTS || bytes >= MAX_POST_BYTES;
            if !end
                && !full
                && let Some(item) = stream.next().now_or_never()
            {
                ready = Some(item);
                continue;
            }
            if !batch.is_empty() {
                log::debug(&format!(
                    "sending {} event(s) of chunk {chunk} of {date}",
                    batch.len()
                ));
                if deliver(ctx, &Dest::Audit, &batch).await.is_err() {
                    return Ok(());
                }
                batch.clear();
                bytes = 0;
            }
            if batch_cursor != cursor {
                ctx.state.save_chunk_cursor(day, chunk, &batch_cursor)?;
                cursor = batch_cursor.clone();
            }
            if end {
                break 'attempt;
            }
        }
    }
    let mut completed = shared.completed.lock().map_err(|_| ForwardError::Source {
        message: "the export's chunk list lock is poisoned".into(),
        transient: false,
    })?;
    let set = completed.entry(day).or_default();
    set.insert(chunk.to_string());
    ctx.state.save_completed(day, set, chunk)?;
    log::debug(&format!("chunk {chunk} of {date}: read to the end"));
    Ok(())
}
