//! `FileLog`: writing day files (locking, durability, the `events.log` symlink) and the entry
//! points of search.

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tapelog_core::AuditEvent;
use tapelog_core::audit::files::{
    self, RotationPeriod, SYMLINK_FILENAME, day_of, is_search_dir, log_file_name,
    parse_log_file_name,
};
use tapelog_core::audit::lines::{LineError, PreparedLine, prepare_line_with_max};
use tapelog_core::audit::{MAX_SCAN_TOKEN_SIZE, SESSION_RECORDING_EVENTS};

use super::search::{Filter, search};
use super::{AuditError, AuditLog, SearchPage, SearchQuery, SessionQuery};
use crate::emit::{EmitError, Emitter};
use crate::metrics::Metrics;

/// When an appended event counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the `write(2)` of its line: safe from a crash of the process, not of the machine
    /// (what upstream does). The default.
    #[default]
    Write,
    /// After `fdatasync(2)` of the file: safe from a power loss, at the disk's sync cost.
    Fsync,
}

/// Settings of a [`FileLog`].
#[derive(Debug, Clone)]
pub struct FileLogConfig {
    /// The data directory; the log root is `<data_dir>/log`.
    pub data_dir: PathBuf,
    /// This server's id: its files go to `<data_dir>/log/<server_id>/`.
    pub server_id: String,
    /// How far around a searched range files are read (a multiple of 24 h).
    pub rotation_period: RotationPeriod,
    /// When an event counts as stored.
    pub durability: Durability,
    /// Events whose JSON is longer are trimmed, then refused (upstream's `MaxScanTokenSize`).
    pub max_line_size: usize,
    /// Where trimmed events are counted (`teleport_audit_stored_trimmed_events`,
    /// `teleport_audit_queried_trimmed_events`); a set of its own unless the caller shares one.
    pub metrics: Arc<Metrics>,
}

impl FileLogConfig {
    /// Defaults (24 h rotation, [`Durability::Write`], 64 KiB lines) for `data_dir` and
    /// `server_id`.
    pub fn new(data_dir: impl Into<PathBuf>, server_id: &str) -> FileLogConfig {
        FileLogConfig {
            data_dir: data_dir.into(),
            server_id: server_id.to_string(),
            rotation_period: RotationPeriod::default(),
            durability: Durability::Write,
            max_line_size: MAX_SCAN_TOKEN_SIZE,
            metrics: Metrics::shared(),
        }
    }
}

/// This host's name (`uname`'s node name, what `gethostname` returns), or `local` when it has
/// none usable as a directory name.
pub fn default_server_id() -> String {
    let uname = rustix::system::uname();
    match uname.nodename().to_str() {
        Ok(name) if valid_server_id(name) => name.to_string(),
        _ => "local".to_string(),
    }
}

fn valid_server_id(id: &str) -> bool {
    is_search_dir(id) && !id.contains('/') && id != ".."
}

/// Counters of a [`FileLog`] (this process only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileLogStats {
    /// Events written.
    pub written: u64,
    /// Events trimmed to fit (upstream's `MetricStoredTrimmedEvents`).
    pub trimmed: u64,
    /// Events refused.
    pub refused: u64,
    /// Indexes built from scratch (missing, broken or stale).
    pub index_builds: u64,
    /// Indexes extended with new lines.
    pub index_updates: u64,
    /// Indexes that could not be saved (the search used them from memory).
    pub index_save_errors: u64,
    /// Unparsable lines skipped while indexing (torn writes, garbage).
    pub unparsable_lines: u64,
    /// Searches restarted because an index turned out not to match its log.
    pub search_restarts: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    written: AtomicU64,
    trimmed: AtomicU64,
    refused: AtomicU64,
    pub(crate) index_builds: AtomicU64,
    pub(crate) index_updates: AtomicU64,
    pub(crate) index_save_errors: AtomicU64,
    pub(crate) unparsable_lines: AtomicU64,
    pub(crate) search_restarts: AtomicU64,
    /// `fdatasync` calls made for appends (the tests check one per batch).
    syncs: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Day files open for appending (a few, for imports that go back and forth between days).
struct Writer {
    open: Vec<(i64, File)>,
    /// The newest day the symlink was pointed at by this process.
    symlink_day: Option<i64>,
}

const MAX_OPEN_FILES: usize = 4;

/// The most a batch's buffer is sized ahead for (it grows past that as lines come).
const MAX_RESERVE: usize = 1 << 20;

/// Events and their audit-log lines, prepared once: a caller that checks events before
/// storing them (the server's `POST /v1/events`, which refuses a batch with an event too
/// large before anything is stored) hands the lines on, so that the file log does not
/// encode each event a second time ([`FileLog::append_prepared`], `MultiLog::emit_prepared`).
#[derive(Debug, Clone, Default)]
pub struct PreparedEvents {
    events: Vec<AuditEvent>,
    lines: Vec<PreparedLine>,
    max_line: usize,
}

impl PreparedEvents {
    /// An empty batch whose lines are prepared with the limit `max_line` (a file log's
    /// [`FileLogConfig::max_line_size`]), room for `capacity` events.
    pub fn new(max_line: usize, capacity: usize) -> PreparedEvents {
        PreparedEvents {
            events: Vec::with_capacity(capacity),
            lines: Vec::with_capacity(capacity),
            max_line,
        }
    }

    /// Prepares the line of `event` and adds both; a refused event is not added.
    pub fn push(&mut self, event: AuditEvent) -> Result<(), LineError> {
        let line = prepare_line_with_max(&event, self.max_line)?;
        self.events.push(event);
        self.lines.push(line);
        Ok(())
    }

    /// The events, in order.
    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events, without their lines.
    pub fn into_events(self) -> Vec<AuditEvent> {
        self.events
    }
}

/// The lines of consecutive events of one day in a batch: one `write(2)`.
struct Run {
    day: i64,
    /// Position in the batch of its first event.
    first: usize,
    events: u64,
    trimmed: u64,
    bytes: Vec<u8>,
}

pub(crate) struct Inner {
    pub(crate) config: FileLogConfig,
    pub(crate) log_root: PathBuf,
    pub(crate) dir: PathBuf,
    writer: Mutex<Writer>,
    pub(crate) counters: Counters,
}

/// Upstream's `FileLog`: an audit log of JSON lines in day files, searchable with resumable
/// pages. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FileLog {
    pub(crate) inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FileLog {
    /// Opens the log of `config.server_id` under `config.data_dir/log`. Nothing is created
    /// until the first event is written (a log opened only to search leaves no trace).
    pub fn open(config: FileLogConfig) -> Result<FileLog, AuditError> {
        if !valid_server_id(&config.server_id) {
            return Err(AuditError::Config(format!(
                "server id {:?} can't be a directory name of the log (empty, hidden, one of {:?}, or with a '/')",
                config.server_id,
                files::EXCLUDED_DIRS
            )));
        }
        let log_root = config.data_dir.join("log");
        let dir = log_root.join(&config.server_id);
        Ok(FileLog {
            inner: Arc::new(Inner {
                config,
                log_root,
                dir,
                writer: Mutex::new(Writer {
                    open: Vec::new(),
                    symlink_day: None,
                }),
                counters: Counters::default(),
            }),
        })
    }

    /// The log root (`<data dir>/log`): every server directory in it is searched.
    pub fn log_root(&self) -> &Path {
        &self.inner.log_root
    }

    /// This server's directory (`<data dir>/log/<server id>`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The settings.
    pub fn config(&self) -> &FileLogConfig {
        &self.inner.config
    }

    /// The counters so far.
    pub fn stats(&self) -> FileLogStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FileLogStats {
            written: get(&c.written),
            trimmed: get(&c.trimmed),
            refused: get(&c.refused),
            index_builds: get(&c.index_builds),
            index_updates: get(&c.index_updates),
            index_save_errors: get(&c.index_save_errors),
            unparsable_lines: get(&c.unparsable_lines),
            search_restarts: get(&c.search_restarts),
        }
    }

    /// Appends one event (blocking): to the file of the event's UTC day, as one line of
    /// Teleport's JSON, under an exclusive `flock` of the file. An event without a type or
    /// time, or too big even after trimming, is refused ([`AuditError::Event`]) and nothing
    /// is written.
    pub fn append(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let c = &self.inner.counters;
        let line = match prepare_line_with_max(event, self.inner.config.max_line_size) {
            Ok(l) => l,
            Err(e) => {
                Counters::add(&c.refused, 1);
                return Err(e.into());
            }
        };
        let mut bytes = line.json.into_bytes();
        bytes.push(b'\n');
        let day = day_of(event.time());
        let mut w = lock(&self.inner.writer);
        let slot = self.file_for(&mut w, day)?;
        let path = self.inner.dir.join(log_file_name(day));
        let file = &w.open[slot].1;
        write_line(file, &bytes, self.inner.config.durability).map_err(AuditError::io(path))?;
        drop(w);
        if self.inner.config.durability == Durability::Fsync {
            Counters::add(&c.syncs, 1);
        }
        Counters::add(&c.written, 1);
        if line.trimmed {
            Counters::add(&c.trimmed, 1);
            self.inner.config.metrics.audit_stored_trimmed_events.inc();
        }
        Ok(())
    }

    /// Appends `events` in order (blocking), as [`append`](Self::append) does one, but with
    /// the file work done once per batch: every line is prepared first (an event refused
    /// fails the whole batch and nothing of it is written), then, under the mutex held once,
    /// the lines of consecutive events of the same UTC day go to their file in one `write(2)`
    /// under one `flock`, and with [`Durability::Fsync`] the file is synced once after them,
    /// before this returns. The files of the batch's days are opened before anything is
    /// written. Should a `write` itself fail (disk full), the runs of lines before it are
    /// stored, whole; the caller acknowledges none of the batch.
    pub fn append_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        self.append_batch_at(events).map_err(|(_, e)| e)
    }

    /// [`append_batch`](Self::append_batch), with the position of the event the error is
    /// about (the refused one, or the first of the run whose write failed).
    pub(crate) fn append_batch_at(&self, events: &[AuditEvent]) -> Result<(), (usize, AuditError)> {
        let max = self.inner.config.max_line_size;
        let mut lines = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let line = prepare_line_with_max(event, max).map_err(|e| {
                Counters::add(&self.inner.counters.refused, 1);
                (i, AuditError::from(e))
            })?;
            lines.push(line);
        }
        self.write_lines_at(events, &lines)
    }

    /// [`append_batch`](Self::append_batch) of events whose lines were prepared already
    /// ([`PreparedEvents`], by a caller that checks events before storing them): the lines
    /// are used as they are when they were prepared with this log's line limit, else each
    /// event is prepared again here.
    pub fn append_prepared(&self, batch: &PreparedEvents) -> Result<(), AuditError> {
        self.append_prepared_at(batch).map_err(|(_, e)| e)
    }

    fn append_prepared_at(&self, batch: &PreparedEvents) -> Result<(), (usize, AuditError)> {
        if batch.max_line != self.inner.config.max_line_size {
            return self.append_batch_at(&batch.events);
        }
        self.write_lines_at(&batch.events, &batch.lines)
    }

    /// Writes `lines` (those of `events`, in order): runs of consecutive days, one `write`
    /// each, under the mutex held once.
    fn write_lines_at(
        &self,
        events: &[AuditEvent],
        lines: &[PreparedLine],
    ) -> Result<(), (usize, AuditError)> {
        let c = &self.inner.counters;
        let mut runs: Vec<Run> = Vec::new();
        for (i, (event, line)) in events.iter().zip(lines).enumerate() {
            let day = day_of(event.time());
            if runs.last().is_none_or(|r| r.day != day) {
                let rest = events.len() - i;
                let guess = (line.json.len() + 1).saturating_mul(rest);
                runs.push(Run {
                    day,
                    first: i,
                    events: 0,
                    trimmed: 0,
                    bytes: Vec::with_capacity(guess.min(MAX_RESERVE)),
                });
            }
            if let Some(r) = runs.last_mut() {
                r.bytes.extend_from_slice(line.json.as_bytes());
                r.bytes.push(b'\n');
                r.events += 1;
                r.trimmed += u64::from(line.trimmed);
            }
        }
        let mut w = lock(&self.inner.writer);
        // Open the files first, so that one that can't be opened fails the batch before any
        // line is written (as many as stay open at once; more days than that are rare).
        let mut days: Vec<i64> = Vec::new();
        for r in &runs {
            if !days.contains(&r.day) && days.len() < MAX_OPEN_FILES {
                days.push(r.day);
                self.file_for(&mut w, r.day).map_err(|e| (r.first, e))?;
            }
        }
        let durability = self.inner.config.durability;
        for r in &runs {
            let slot = self.file_for(&mut w, r.day).map_err(|e| (r.first, e))?;
            let file = &w.open[slot].1;
            if let Err(source) = write_line(file, &r.bytes, durability) {
                let path = self.inner.dir.join(log_file_name(r.day));
                return Err((r.first, AuditError::Io { path, source }));
            }
            if durability == Durability::Fsync {
                Counters::add(&c.syncs, 1);
            }
            Counters::add(&c.written, r.events);
            if r.trimmed > 0 {
                Counters::add(&c.trimmed, r.trimmed);
                self.inner
                    .config
                    .metrics
                    .audit_stored_trimmed_events
                    .add(r.trimmed);
            }
        }
        Ok(())
    }

    /// The slot of the open file of `day`, opening it (and moving the symlink) if needed.
    fn file_for(&self, w: &mut Writer, day: i64) -> Result<usize, AuditError> {
        if let Some(i) = w.open.iter().position(|(d, _)| *d == day) {
            return Ok(i);
        }
        let name = log_file_name(day);
        let path = self.inner.dir.join(&name);
        std::fs::create_dir_all(&self.inner.dir).map_err(AuditError::io(&self.inner.dir))?;
        // Read as well: the torn-line check reads the last byte.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)
            .map_err(AuditError::io(&path))?;
        end_torn_line(&file).map_err(AuditError::io(&path))?;
        if w.symlink_day.is_none_or(|s| day > s) {
            self.point_symlink(&name, day)
                .map_err(AuditError::io(self.inner.log_root.join(SYMLINK_FILENAME)))?;
            w.symlink_day = Some(day);
        }
        if w.open.len() >= MAX_OPEN_FILES {
            w.open.remove(0);
        }
        w.open.push((day, file));
        Ok(w.open.len() - 1)
    }

    /// Points `events.log` at this server's file of `day`, unless it already points at a
    /// newer day (of any server). The link is replaced atomically (a new link renamed over).
    fn point_symlink(&self, name: &str, day: i64) -> std::io::Result<()> {
        let link = self.inner.log_root.join(SYMLINK_FILENAME);
        // Other processes may move the link at the same time: the look and the move happen
        // under a lock on the log root, so that an older day never wins a race.
        let root = File::open(&self.inner.log_root)?;
        let _guard = FlockGuard::lock(&root)?;
        if let Ok(current) = std::fs::read_link(&link) {
            let newer = current
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_log_file_name)
                .is_some_and(|t| day_of(t) > day);
            if newer {
                return Ok(());
            }
        }
        let target = Path::new(&self.inner.config.server_id).join(name);
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = self.inner.log_root.join(format!(
            ".{SYMLINK_FILENAME}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)?;
        std::fs::rename(&tmp, &link).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// [`AuditLog::search_events`], blocking.
    pub fn search_events_blocking(&self, q: &SearchQuery) -> Result<SearchPage, AuditError> {
        let filter = Filter::types(q.event_types.clone());
        search(
            &self.inner,
            q.from,
            q.to,
            &filter,
            q.limit,
            q.order,
            &q.start_key,
        )
    }

    /// [`AuditLog::search_session_events`], blocking.
    pub fn search_session_events_blocking(
        &self,
        q: &SessionQuery,
    ) -> Result<SearchPage, AuditError> {
        let mut filter = Filter::types(SESSION_RECORDING_EVENTS.map(String::from).to_vec());
        filter.condition = q.condition.clone();
        filter.session_id = (!q.session_id.is_empty()).then(|| q.session_id.clone());
        search(
            &self.inner,
            q.from,
            q.to,
            &filter,
            q.limit,
            q.order,
            &q.start_key,
        )
    }

    /// Syncs the day files this value has open for appending to disk and lets them go
    /// (upstream's `FileLog.Close`). The log stays usable: a later append opens its file
    /// again (clones share the open files, so closing one closes them for all). Every file is
    /// synced even when one fails; the first failure is returned.
    pub fn close_files(&self) -> Result<(), AuditError> {
        let open = std::mem::take(&mut lock(&self.inner.writer).open);
        let mut first = None;
        for (day, file) in open {
            if let Err(source) = file.sync_data()
                && first.is_none()
            {
                first = Some(AuditError::Io {
                    path: self.inner.dir.join(log_file_name(day)),
                    source,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(FileLog) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || f(log))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }
}

/// Holds an exclusive `flock` on a file until dropped.
struct FlockGuard<'a>(&'a File);

impl<'a> FlockGuard<'a> {
    fn lock(file: &'a File) -> std::io::Result<FlockGuard<'a>> {
        loop {
            match flock(file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(FlockGuard(file)),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        // Unlocking an open descriptor can't fail in a way we could handle.
        let _ = flock(self.0, FlockOperation::Unlock);
    }
}

/// Writes one whole line under the file lock (one `write` call unless the system cuts it
/// short, and then the rest before anyone else may write), then syncs if asked.
fn write_line(file: &File, line: &[u8], durability: Durability) -> std::io::Result<()> {
    let _guard = FlockGuard::lock(file)?;
    let mut f = file;
    f.write_all(line)?;
    if durability == Durability::Fsync {
        file.sync_data()?;
    }
    Ok(())
}

/// After a crash in the middle of a write, a file may end without a newline: end that torn
/// line so that the next event starts a line of its own (the torn piece is skipped by readers
/// as an unparsable line).
fn end_torn_line(file: &File) -> std::io::Result<()> {
    let _guard = FlockGuard::lock(file)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] != b'\n' {
        let mut f = file;
        f.write_all(b"\n")?;
    }
    Ok(())
}

fn emit_error(event: &AuditEvent, e: AuditError) -> EmitError {
    match e {
        AuditError::Event(_) => EmitError::invalid(event, e.to_string()),
        AuditError::Io { path, source } => EmitError::Io {
            event_type: event.event_type().to_string(),
            source: std::io::Error::new(source.kind(), format!("{}: {source}", path.display())),
        },
        other => EmitError::Closed(other.to_string()),
    }
}

impl Emitter for FileLog {
    /// Appends the event. With [`Durability::Write`] the append runs on the calling task (a
    /// lock and a `write`, microseconds); with [`Durability::Fsync`] it runs on tokio's
    /// blocking pool.
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        if self.inner.config.durability == Durability::Write {
            return self.append(&event).map_err(|e| emit_error(&event, e));
        }
        let log = self.clone();
        tokio::task::spawn_blocking(move || {
            let r = log.append(&event);
            r.map_err(|e| emit_error(&event, e))
        })
        .await
        .map_err(|e| EmitError::Closed(format!("audit log task failed: {e}")))?
    }

    /// [`FileLog::append_batch`]: one `write(2)` (and with [`Durability::Fsync`] one sync,
    /// on tokio's blocking pool) for the whole batch; an event refused fails the batch with
    /// nothing of it written.
    async fn emit_batch(&self, events: Vec<AuditEvent>) -> Result<(), EmitError> {
        if events.is_empty() {
            return Ok(());
        }
        let fail = |events: &[AuditEvent], (i, e): (usize, AuditError)| match events.get(i) {
            Some(event) => emit_error(event, e),
            None => EmitError::Closed(e.to_string()),
        };
        if self.inner.config.durability == Durability::Write {
            return self.append_batch_at(&events).map_err(|f| fail(&events, f));
        }
        let log = self.clone();
        tokio::task::spawn_blocking(move || {
            log.append_batch_at(&events).map_err(|f| fail(&events, f))
        })
        .await
        .map_err(|e| EmitError::Closed(format!("audit log task failed: {e}")))?
    }
}

impl FileLog {
    /// [`Emitter::emit_batch`] of prepared events ([`FileLog::append_prepared`]): on the
    /// calling task with [`Durability::Write`], on tokio's blocking pool with
    /// [`Durability::Fsync`].
    pub async fn emit_prepared(&self, batch: Arc<PreparedEvents>) -> Result<(), EmitError> {
        if batch.is_empty() {
            return Ok(());
        }
        let fail = |events: &[AuditEvent], (i, e): (usize, AuditError)| match events.get(i) {
            Some(event) => emit_error(event, e),
            None => EmitError::Closed(e.to_string()),
        };
        if self.inner.config.durability == Durability::Write {
            return self
                .append_prepared_at(&batch)
                .map_err(|f| fail(&batch.events, f));
        }
        let log = self.clone();
        tokio::task::spawn_blocking(move || {
            log.append_prepared_at(&batch)
                .map_err(|f| fail(&batch.events, f))
        })
        .await
        .map_err(|e| EmitError::Closed(format!("audit log task failed: {e}")))?
    }
}

impl AuditLog for FileLog {
    /// Runs the search on tokio's blocking pool.
    async fn search_events(&self, query: SearchQuery) -> Result<SearchPage, AuditError> {
        self.blocking(move |log| log.search_events_blocking(&query))
            .await
    }

    /// Runs the search on tokio's blocking pool.
    async fn search_session_events(&self, query: SessionQuery) -> Result<SearchPage, AuditError> {
        self.blocking(move |log| log.search_session_events_blocking(&query))
            .await
    }
}

#[cfg(test)]
mod batch_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tapelog_core::Timestamp;

    /// A login event on 2024-01-(15 + `day`) of user `user`.
    fn event(day: i64, user: &str) -> AuditEvent {
        AuditEvent::from_json(&format!(
            r#"{{"ei":0,"event":"user.login","uid":"u-{user}","code":"T1000I","time":"2024-01-{:02}T10:00:00Z","user":"{user}","method":"local","success":true}}"#,
            15 + day
        ))
        .unwrap()
    }

    fn log(dir: &Path, durability: Durability) -> FileLog {
        let mut c = FileLogConfig::new(dir, "node");
        c.durability = durability;
        FileLog::open(c).unwrap()
    }

    fn lines(log: &FileLog, day: i64) -> Vec<String> {
        let path = log
            .dir()
            .join(log_file_name(day_of(event(day, "x").time())));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn json(events: &[AuditEvent]) -> Vec<String> {
        events.iter().map(AuditEvent::to_json).collect()
    }

    #[test]
    fn a_batch_is_every_line_in_order_one_sync_per_file() {
        let dir = tempfile::tempdir().unwrap();
        for durability in [Durability::Write, Durability::Fsync] {
            let sub = dir.path().join(format!("{durability:?}"));
            let log = log(&sub, durability);
            let first: Vec<_> = (0..3).map(|i| event(0, &format!("a{i}"))).collect();
            let second: Vec<_> = (0..50).map(|i| event(0, &format!("b{i}"))).collect();
            log.append_batch(&first).unwrap();
            log.append_batch(&second).unwrap();
            log.append_batch(&[]).unwrap();
            let mut want = json(&first);
            want.extend(json(&second));
            assert_eq!(lines(&log, 0), want);
            assert_eq!(log.stats().written, 53);
            let syncs = log.inner.counters.syncs.load(Ordering::Relaxed);
            let want_syncs = if durability == Durability::Fsync {
                2
            } else {
                0
            };
            assert_eq!(syncs, want_syncs, "{durability:?}");
        }
    }

    #[test]
    fn a_batch_over_several_days_goes_to_each_days_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), Durability::Fsync);
        let batch = vec![
            event(0, "a"),
            event(0, "b"),
            event(1, "c"),
            event(0, "d"),
            event(1, "e"),
        ];
        log.append_batch(&batch).unwrap();
        assert_eq!(
            lines(&log, 0),
            json(&[batch[0].clone(), batch[1].clone(), batch[3].clone()])
        );
        assert_eq!(lines(&log, 1), json(&[batch[2].clone(), batch[4].clone()]));
        // One sync per run of lines (4 runs).
        assert_eq!(log.inner.counters.syncs.load(Ordering::Relaxed), 4);
        // The newest day is the one `events.log` points at.
        let link = std::fs::read_link(log.log_root().join(SYMLINK_FILENAME)).unwrap();
        assert!(
            link.ends_with(log_file_name(day_of(batch[2].time()))),
            "{link:?}"
        );
    }

    #[test]
    fn a_refused_event_fails_the_batch_with_nothing_of_it_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = FileLogConfig::new(dir.path(), "node");
        c.max_line_size = 400;
        let log = FileLog::open(c).unwrap();
        let acknowledged = vec![event(0, "a"), event(0, "b")];
        log.append_batch(&acknowledged).unwrap();
        let big = event(0, &"x".repeat(1000));
        let mut untimed = event(0, "untimed");
        untimed.set_time(Timestamp::ZERO);
        for bad in [untimed, big] {
            let batch = vec![event(0, "c"), bad, event(0, "d")];
            let (i, e) = log.append_batch_at(&batch).unwrap_err();
            assert_eq!(i, 1);
            assert!(matches!(e, AuditError::Event(_)), "{e}");
        }
        assert_eq!(lines(&log, 0), json(&acknowledged));
        let s = log.stats();
        assert_eq!((s.written, s.refused), (2, 2));
    }

    #[test]
    fn a_failed_write_mid_batch_stores_the_runs_before_and_reports_the_first_lost() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), Durability::Write);
        let acknowledged = vec![event(0, "a")];
        log.append_batch(&acknowledged).unwrap();
        // The next day's file is a full disk.
        std::os::unix::fs::symlink(
            "/dev/full",
            log.dir().join(log_file_name(day_of(event(1, "x").time()))),
        )
        .unwrap();
        let batch = vec![event(0, "b"), event(0, "c"), event(1, "d"), event(0, "e")];
        let (i, e) = log.append_batch_at(&batch).unwrap_err();
        assert_eq!(i, 2, "the first event not written: {e}");
        assert!(matches!(e, AuditError::Io { .. }), "{e}");
        // What was acknowledged is there, and the run before the failure whole; nothing after.
        assert_eq!(
            lines(&log, 0),
            json(&[acknowledged[0].clone(), batch[0].clone(), batch[1].clone()])
        );
        assert_eq!(log.stats().written, 3);
    }

    #[test]
    fn a_day_file_that_cannot_be_opened_fails_the_batch_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), Durability::Write);
        log.append_batch(&[event(0, "a")]).unwrap();
        // A directory where the next day's file would be.
        std::fs::create_dir(log.dir().join(log_file_name(day_of(event(1, "x").time())))).unwrap();
        let batch = vec![event(0, "b"), event(1, "c")];
        let (i, e) = log.append_batch_at(&batch).unwrap_err();
        assert_eq!(i, 1);
        assert!(matches!(e, AuditError::Io { .. }), "{e}");
        assert_eq!(lines(&log, 0), json(&[event(0, "a")]));
        assert_eq!(log.stats().written, 1);
    }
}
