//! The search engine: candidate day files of every server directory, their indexes, a k-way
//! merge in the total order, the page rules, and page keys.
//!
//! A search positions every candidate file's cursor by binary search (on the range bound and,
//! when resuming, on the key's position), merges the cursors, reads only the lines it returns
//! (and, with filters the index can't decide, the lines it tests), and stops at the limit or
//! the 1 MiB cap. Resuming costs O(page + files × log n). An index found not to match its log
//! is rebuilt and the search starts again.

use crate::metrics::Metrics;
use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};
use std::path::Path;

use sha2::{Digest, Sha256};
use tapelog_core::audit::condition::Condition;
use tapelog_core::audit::files::{
    INDEX_DIR, index_file_name, is_candidate, is_search_dir, parse_log_file_name,
};
use tapelog_core::audit::index::{IndexEntry, partition_point, type_hash};
use tapelog_core::audit::key::{PageKey, Position, StartKey, checkpoint_with, cmp_entry};
use tapelog_core::audit::merge::Merge;
use tapelog_core::audit::page::{Admit, PageBuilder, trim_for_response};
use tapelog_core::audit::{MAX_EVENT_BYTES_IN_RESPONSE, Order, effective_limit};
use tapelog_core::{EventFields, Timestamp};

use super::filelog::{Counters, Inner};
use super::index::{DayFile, DayIndex, Problem, load};
use super::{AuditError, SearchPage, StoredEvent};

/// How many times a search starts again after finding a stale index.
const MAX_ATTEMPTS: usize = 4;
/// Entries read at a time from an index file (first batch; doubles up to the maximum).
const FIRST_BATCH: usize = 64;
const MAX_BATCH: usize = 4096;

/// What events a search returns, beyond the time range.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Event types (empty: all).
    types: Vec<String>,
    type_hashes: Vec<u32>,
    /// Only events whose fields satisfy this.
    pub(crate) condition: Option<Condition>,
    /// Only events of this session.
    pub(crate) session_id: Option<String>,
}

impl Filter {
    /// Events of these types (all when empty).
    pub(crate) fn types(types: Vec<String>) -> Filter {
        let type_hashes = types.iter().map(|t| type_hash(t)).collect();
        Filter {
            types,
            type_hashes,
            condition: None,
            session_id: None,
        }
    }

    /// What the index can decide (the type, by hash).
    fn entry_may_match(&self, e: &IndexEntry) -> bool {
        self.type_hashes.is_empty() || self.type_hashes.contains(&e.type_hash)
    }

    /// The exact test on the parsed line.
    fn fields_match(&self, f: &EventFields) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == f.get_type()))
            && self
                .session_id
                .as_ref()
                .is_none_or(|s| s == f.get_session_id())
            && self.condition.as_ref().is_none_or(|c| c.matches(f))
    }
}

/// Upstream's checkpoint of an event (`uid`, or hex SHA-256 of its JSON).
pub(crate) fn checkpoint(fields: &EventFields) -> String {
    checkpoint_with(fields, |b| Sha256::digest(b).into())
}

/// Every file of every server directory under `root` (skipping what is not a search
/// directory, and files or directories that vanish meanwhile), as (server, file name, entry),
/// in directory order.
pub(crate) fn server_files(
    root: &Path,
) -> Result<Vec<(String, String, std::fs::DirEntry)>, AuditError> {
    let dirs = match std::fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io(root)(e)),
    };
    let mut out = Vec::new();
    for d in dirs {
        let d = d.map_err(AuditError::io(root))?;
        let Some(server) = d.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_search_dir(&server) || !d.path().is_dir() {
            continue;
        }
        let dir = d.path();
        let files = match std::fs::read_dir(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(AuditError::io(&dir)(e)),
        };
        for f in files {
            let f = f.map_err(AuditError::io(&dir))?;
            let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            out.push((server.clone(), name, f));
        }
    }
    Ok(out)
}

/// The day files of every server directory that may hold events of `[from, to]`, sorted by
/// id (`server/day file`).
fn candidates(inner: &Inner, from: Timestamp, to: Timestamp) -> Result<Vec<DayFile>, AuditError> {
    let mut out = Vec::new();
    for (server, name, _) in server_files(&inner.log_root)? {
        let Some(t) = parse_log_file_name(&name) else {
            continue;
        };
        if is_candidate(t, from, to, inner.config.rotation_period) {
            out.push(day_file(&inner.log_root, &server, &name));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn day_file(root: &Path, server: &str, name: &str) -> DayFile {
    let dir = root.join(server);
    DayFile {
        id: format!("{server}/{name}"),
        log_path: dir.join(name),
        index_path: dir.join(INDEX_DIR).join(index_file_name(name)),
    }
}

/// The day file a key names, if the name is one of an audit file.
fn day_file_of_id(root: &Path, id: &str) -> Option<DayFile> {
    let (server, name) = id.split_once('/')?;
    (is_search_dir(server) && !name.contains('/') && parse_log_file_name(name).is_some())
        .then(|| day_file(root, server, name))
}

/// The merge key: the total order with the file as its ordinal among the sorted candidates.
type HeapKey = (i64, u32, u64, i64, usize, u64);

fn heap_key(e: &IndexEntry, ordinal: usize) -> HeapKey {
    (e.seconds, e.nanos, e.sid_hash, e.index, ordinal, e.offset)
}

/// A cursor over one day file's entries in search order.
struct Cursor {
    index: DayIndex,
    ordinal: usize,
    /// Ascending: next entry to read. Descending: one past the next entry to read.
    pos: u64,
    batch: usize,
    buf: VecDeque<IndexEntry>,
    /// The last entry taken from the index (for the order check).
    last: Option<IndexEntry>,
    /// The entry this cursor has in the merge.
    head: Option<IndexEntry>,
    done: bool,
}

impl Cursor {
    fn fill(&mut self, order: Order) -> Result<(), Problem> {
        let mut v = Vec::with_capacity(self.batch);
        match order {
            Order::Ascending => {
                self.index.read(self.pos, self.batch, &mut v)?;
                self.pos += v.len() as u64;
                self.buf.extend(v);
            }
            Order::Descending => {
                let start = self.pos.saturating_sub(self.batch as u64);
                self.index
                    .read(start, (self.pos - start) as usize, &mut v)?;
                self.pos = start;
                self.buf.extend(v.into_iter().rev());
            }
        }
        self.batch = (self.batch * 2).min(MAX_BATCH);
        Ok(())
    }

    /// The next entry in range that the filter may accept.
    fn next(
        &mut self,
        order: Order,
        from: Timestamp,
        to: Timestamp,
        filter: &Filter,
    ) -> Result<Option<IndexEntry>, Problem> {
        while !self.done {
            if self.buf.is_empty() {
                self.fill(order)?;
            }
            let Some(e) = self.buf.pop_front() else {
                self.done = true;
                break;
            };
            let expected = match order {
                Order::Ascending => Ordering::Less,
                Order::Descending => Ordering::Greater,
            };
            if self.last.is_some_and(|l| l.cmp_in_file(&e) != expected) {
                return Err(Problem::Stale(self.index.id.clone()));
            }
            self.last = Some(e);
            let t = e.time();
            let past = match order {
                Order::Ascending => t > to,
                Order::Descending => t < from,
            };
            if past {
                self.done = true;
                break;
            }
            if filter.entry_may_match(&e) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

/// An event found by a run.
struct Found {
    source: usize,
    entry: IndexEntry,
    fields: EventFields,
    json: String,
}

/// One pass over the candidates from a position.
/// What one search attempt reads: the log, its candidate files, the filter, the range and
/// the order.
#[derive(Clone, Copy)]
struct Scope<'a> {
    inner: &'a Inner,
    files: &'a [DayFile],
    filter: &'a Filter,
    from: Timestamp,
    to: Timestamp,
    order: Order,
}

struct Run<'a> {
    cursors: Vec<Cursor>,
    merge: Merge<HeapKey>,
    filter: &'a Filter,
    from: Timestamp,
    to: Timestamp,
    order: Order,
}

impl<'a> Run<'a> {
    fn open(
        scope: Scope<'a>,
        after: Option<&PageKey>,
        rebuild: &mut HashSet<String>,
    ) -> Result<Run<'a>, Problem> {
        let Scope {
            inner,
            files,
            filter,
            from,
            to,
            order,
        } = scope;
        let mut run = Run {
            cursors: Vec::with_capacity(files.len()),
            merge: Merge::new(order),
            filter,
            from,
            to,
            order,
        };
        for (ordinal, day) in files.iter().enumerate() {
            let Some(index) = load(inner, day, rebuild.remove(&day.id))? else {
                continue;
            };
            let n = index.len();
            let id = day.id.as_str();
            let pos = match order {
                Order::Ascending => partition_point(n, |i| {
                    let e = index.get(i)?;
                    Ok::<_, Problem>(
                        e.time() < from
                            || after.is_some_and(|k| {
                                cmp_entry(&e, id, &k.position) != Ordering::Greater
                            }),
                    )
                })?,
                Order::Descending => partition_point(n, |i| {
                    let e = index.get(i)?;
                    Ok::<_, Problem>(
                        !(e.time() > to
                            || after
                                .is_some_and(|k| cmp_entry(&e, id, &k.position) != Ordering::Less)),
                    )
                })?,
            };
            let mut c = Cursor {
                index,
                ordinal,
                pos,
                batch: FIRST_BATCH,
                buf: VecDeque::new(),
                last: None,
                head: None,
                done: false,
            };
            c.head = c.next(order, from, to, filter)?;
            if let Some(e) = &c.head {
                run.merge.push(run.cursors.len(), heap_key(e, c.ordinal));
            }
            run.cursors.push(c);
        }
        Ok(run)
    }

    /// The next entry in order (index-level filters only).
    fn next_entry(&mut self) -> Result<Option<(usize, IndexEntry)>, Problem> {
        let Some((source, _)) = self.merge.pop() else {
            return Ok(None);
        };
        let c = &mut self.cursors[source];
        let Some(entry) = c.head.take() else {
            return Err(Problem::Stale(c.index.id.clone()));
        };
        c.head = c.next(self.order, self.from, self.to, self.filter)?;
        if let Some(next) = &c.head {
            self.merge.push(source, heap_key(next, c.ordinal));
        }
        Ok(Some((source, entry)))
    }

    /// The next event that passes every filter.
    fn next_event(&mut self) -> Result<Option<Found>, Problem> {
        while let Some((source, entry)) = self.next_entry()? {
            let (fields, json) = self.cursors[source].index.read_line(&entry)?;
            if self.filter.fields_match(&fields) {
                return Ok(Some(Found {
                    source,
                    entry,
                    fields,
                    json,
                }));
            }
        }
        Ok(None)
    }

    /// Whether no entry is left in any cursor.
    fn is_exhausted(&self) -> bool {
        self.merge.is_empty()
    }

    fn key_of(&self, f: &Found) -> PageKey {
        PageKey {
            position: Position::of(&f.entry, &self.cursors[f.source].index.id),
            checkpoint: checkpoint(&f.fields),
        }
    }

    fn stored(&self, f: Found) -> StoredEvent {
        StoredEvent {
            fields: f.fields,
            json: f.json,
            file: self.cursors[f.source].index.id.clone(),
            offset: f.entry.offset,
        }
    }
}

/// An event that alone is over the page cap, trimmed to fit as upstream does (counted in
/// `teleport_audit_queried_trimmed_events`). Where trimming can't make it fit, upstream fails
/// the search; tapelog returns it whole and alone in its page (core `audit::page`), so that a
/// search always moves forward.
pub(crate) fn trimmed_for_response(
    stored: StoredEvent,
    metrics: &Metrics,
) -> Result<StoredEvent, AuditError> {
    let Ok(json) = trim_for_response(&stored.json, MAX_EVENT_BYTES_IN_RESPONSE) else {
        return Ok(stored);
    };
    let fields = EventFields::parse(&json).map_err(|e| AuditError::Decode {
        file: stored.file.clone(),
        offset: stored.offset,
        source: e.into(),
    })?;
    metrics.audit_queried_trimmed_events.inc();
    Ok(StoredEvent {
        fields,
        json,
        ..stored
    })
}

fn no_longer(key: &str, reason: String) -> Problem {
    Problem::Fail(AuditError::KeyNoLongerMatches {
        key: key.chars().take(100).collect(),
        reason,
    })
}

/// Checks that the event a key names is still where it says.
fn verify_key(
    inner: &Inner,
    text: &str,
    key: &PageKey,
    rebuild: &mut HashSet<String>,
) -> Result<(), Problem> {
    let id = key.position.file.as_str();
    let Some(day) = day_file_of_id(&inner.log_root, id) else {
        return Err(no_longer(text, format!("{id:?} is not an audit file name")));
    };
    let Some(index) = load(inner, &day, rebuild.remove(id))? else {
        return Err(no_longer(text, format!("{id} is gone")));
    };
    let pos = &key.position;
    let i = partition_point(index.len(), |i| {
        Ok::<_, Problem>(cmp_entry(&index.get(i)?, id, pos) == Ordering::Less)
    })?;
    let at = if i < index.len() {
        Some(index.get(i)?)
    } else {
        None
    };
    let Some(entry) = at.filter(|e| cmp_entry(e, id, pos) == Ordering::Equal) else {
        return Err(no_longer(
            text,
            format!("no such event at byte {} of {id}", pos.offset),
        ));
    };
    let (fields, _) = index.read_line(&entry)?;
    if checkpoint(&fields) != key.checkpoint {
        return Err(no_longer(
            text,
            format!("the event at byte {} of {id} is another one", pos.offset),
        ));
    }
    Ok(())
}

/// Finds the event with an upstream checkpoint by a scan of the range in order.
fn resolve_checkpoint(
    scope: Scope<'_>,
    wanted: &str,
    rebuild: &mut HashSet<String>,
) -> Result<PageKey, Problem> {
    let mut run = Run::open(scope, None, rebuild)?;
    while let Some(found) = run.next_event()? {
        if checkpoint(&found.fields) == wanted {
            return Ok(run.key_of(&found));
        }
    }
    Err(no_longer(
        wanted,
        "no event of the searched range has this id or hash".into(),
    ))
}

/// One page of a search.
pub(crate) fn search(
    inner: &Inner,
    from: Timestamp,
    to: Timestamp,
    filter: &Filter,
    limit: usize,
    order: Order,
    start_key: &str,
) -> Result<SearchPage, AuditError> {
    let limit = effective_limit(limit)?;
    let start = StartKey::parse(start_key)?;
    if from > to {
        return Ok(SearchPage::default());
    }
    let mut rebuild = HashSet::new();
    let mut last_stale = String::new();
    for _ in 0..MAX_ATTEMPTS {
        let files = candidates(inner, from, to)?;
        let scope = Scope {
            inner,
            files: &files,
            filter,
            from,
            to,
            order,
        };
        let attempt = (|| {
            let after = match &start {
                StartKey::Beginning => None,
                StartKey::After(k) => {
                    verify_key(inner, start_key, k, &mut rebuild)?;
                    Some(k.clone())
                }
                StartKey::Checkpoint(c) => Some(resolve_checkpoint(scope, c, &mut rebuild)?),
            };
            page(scope, limit, after.as_ref(), &mut rebuild)
        })();
        match attempt {
            Ok(p) => return Ok(p),
            Err(Problem::Fail(e)) => return Err(e),
            Err(Problem::Stale(id)) => {
                Counters::add(&inner.counters.search_restarts, 1);
                rebuild.insert(id.clone());
                last_stale = id;
            }
        }
    }
    Err(AuditError::Io {
        path: inner.log_root.join(&last_stale),
        source: std::io::Error::other(
            "the file keeps changing under its index while being searched",
        ),
    })
}

fn page(
    scope: Scope<'_>,
    limit: usize,
    after: Option<&PageKey>,
    rebuild: &mut HashSet<String>,
) -> Result<SearchPage, Problem> {
    let mut run = Run::open(scope, after, rebuild)?;
    let mut builder = PageBuilder::new(limit);
    let mut events = Vec::new();
    let mut last: Option<PageKey> = None;
    let mut more = false;
    while let Some(found) = run.next_event()? {
        match builder.offer(found.json.len()) {
            Admit::Full => {
                more = true;
                break;
            }
            Admit::TakeAlone => {
                last = Some(run.key_of(&found));
                let mut stored = run.stored(found);
                if stored.json.len() >= MAX_EVENT_BYTES_IN_RESPONSE {
                    stored = trimmed_for_response(stored, &scope.inner.config.metrics)?;
                }
                events.push(stored);
                more = true;
                break;
            }
            Admit::Take => {
                last = Some(run.key_of(&found));
                events.push(run.stored(found));
                if builder.is_full() {
                    more = !run.is_exhausted();
                    break;
                }
            }
        }
    }
    let next_key = match (more, last) {
        (true, Some(k)) => k.encode(),
        _ => String::new(),
    };
    Ok(SearchPage { events, next_key })
}
