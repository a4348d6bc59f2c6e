//! Sidecar indexes on disk: loading and checking them against their log, building them from
//! the log, adding new tail lines, saving them crash-safely, and reading entries and lines.
//!
//! An index is a cache of its log and is never trusted blindly: the header, its size and a
//! fingerprint of the log bytes it covers are checked on load; every entry read has its
//! checksum checked; every line read back is compared with its entry. Any disagreement makes
//! the search rebuild the index from the log and start again.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tapelog_core::EventFields;
use tapelog_core::audit::index::{
    ENTRY_SIZE, HEADER_SIZE, Index, IndexEntry, IndexHeader, IndexedLine, crc, fingerprint_ranges,
    index_line,
};
use tapelog_core::audit::lines::{LineScanner, ScannedLine};

use super::AuditError;
use super::filelog::{Counters, Inner};

/// Lines longer than this are skipped as unparsable when indexing (bounds memory).
pub(crate) const MAX_READ_LINE: usize = 16 << 20;
/// Bytes read at a time when scanning a log.
const SCAN_CHUNK: usize = 1 << 20;

/// Why a search must stop: an index that does not match its log (rebuild it and start
/// again), or a real failure.
#[derive(Debug)]
pub(crate) enum Problem {
    /// The index of this file (`server/day file`) is broken or stale.
    Stale(String),
    /// Give up with this error.
    Fail(AuditError),
}

impl From<AuditError> for Problem {
    fn from(e: AuditError) -> Self {
        Problem::Fail(e)
    }
}

/// A day file to search: its id (`server/day file`) and paths.
#[derive(Debug, Clone)]
pub(crate) struct DayFile {
    pub(crate) id: String,
    pub(crate) log_path: PathBuf,
    pub(crate) index_path: PathBuf,
}

/// Where the entries of an index are read from.
enum Entries {
    /// Freshly built or extended: in memory.
    Memory(Vec<IndexEntry>),
    /// Checked on load: read on demand.
    File { file: File, count: u64 },
}

/// A loaded index and its log, ready to search.
pub(crate) struct DayIndex {
    pub(crate) id: String,
    log: File,
    log_path: PathBuf,
    covered: u64,
    entries: Entries,
}

impl DayIndex {
    /// Number of entries.
    pub(crate) fn len(&self) -> u64 {
        match &self.entries {
            Entries::Memory(v) => v.len() as u64,
            Entries::File { count, .. } => *count,
        }
    }

    /// Entry `i` (< `len()`).
    pub(crate) fn get(&self, i: u64) -> Result<IndexEntry, Problem> {
        match &self.entries {
            Entries::Memory(v) => v
                .get(i as usize)
                .copied()
                .ok_or_else(|| Problem::Stale(self.id.clone())),
            Entries::File { file, .. } => {
                let mut b = [0u8; ENTRY_SIZE];
                file.read_exact_at(&mut b, IndexHeader::entry_offset(i))
                    .map_err(|_| Problem::Stale(self.id.clone()))?;
                IndexEntry::decode(&b, i).map_err(|_| Problem::Stale(self.id.clone()))
            }
        }
    }

    /// Entries `start .. start + n` (clamped to `len()`), appended to `out` in index order.
    pub(crate) fn read(
        &self,
        start: u64,
        n: usize,
        out: &mut Vec<IndexEntry>,
    ) -> Result<(), Problem> {
        let end = (start + n as u64).min(self.len());
        if start >= end {
            return Ok(());
        }
        match &self.entries {
            Entries::Memory(v) => {
                out.extend_from_slice(&v[start as usize..end as usize]);
                Ok(())
            }
            Entries::File { file, .. } => {
                let count = (end - start) as usize;
                let mut buf = vec![0u8; count * ENTRY_SIZE];
                file.read_exact_at(&mut buf, IndexHeader::entry_offset(start))
                    .map_err(|_| Problem::Stale(self.id.clone()))?;
                for (k, chunk) in buf.chunks_exact(ENTRY_SIZE).enumerate() {
                    let mut a = [0u8; ENTRY_SIZE];
                    a.copy_from_slice(chunk);
                    let e = IndexEntry::decode(&a, start + k as u64)
                        .map_err(|_| Problem::Stale(self.id.clone()))?;
                    out.push(e);
                }
                Ok(())
            }
        }
    }

    /// The line of `entry`, parsed, checked against the entry.
    pub(crate) fn read_line(&self, entry: &IndexEntry) -> Result<(EventFields, String), Problem> {
        let stale = || Problem::Stale(self.id.clone());
        let len = entry.len as usize;
        if len > MAX_READ_LINE || entry.offset + len as u64 + 1 > self.covered {
            return Err(stale());
        }
        let mut buf = vec![0u8; len + 1];
        self.log
            .read_exact_at(&mut buf, entry.offset)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => stale(),
                _ => Problem::Fail(AuditError::io(&self.log_path)(e)),
            })?;
        if buf.pop() != Some(b'\n') {
            return Err(stale());
        }
        let json = String::from_utf8(buf).map_err(|_| stale())?;
        let fields = EventFields::parse(&json).map_err(|_| stale())?;
        if !entry.describes(&fields, json.len()) {
            return Err(stale());
        }
        Ok((fields, json))
    }
}

/// Opens the index of `day`, checking it, extending it with new complete lines of the log or
/// building it when it is missing, broken or stale (always when `rebuild`). `None` when the
/// log itself is gone.
pub(crate) fn load(
    inner: &Inner,
    day: &DayFile,
    rebuild: bool,
) -> Result<Option<DayIndex>, AuditError> {
    let log = match File::open(&day.log_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io(&day.log_path)(e)),
    };
    let log_len = log.metadata().map_err(AuditError::io(&day.log_path))?.len();
    if !rebuild && let Some(ix) = open_existing(inner, day, &log, log_len)? {
        return Ok(Some(ix));
    }
    let (entries, covered, unparsable) = scan(&log, &day.log_path, 0, log_len)?;
    let mut index = Index::default();
    index.extend(entries, covered, unparsable);
    Counters::add(&inner.counters.index_builds, 1);
    Counters::add(&inner.counters.unparsable_lines, unparsable);
    save(inner, &index, &log, &day.index_path);
    Ok(Some(DayIndex {
        id: day.id.clone(),
        log,
        log_path: day.log_path.clone(),
        covered: index.covered,
        entries: Entries::Memory(index.entries),
    }))
}

/// The saved index when it matches the log (extended with new lines if there are any).
fn open_existing(
    inner: &Inner,
    day: &DayFile,
    log: &File,
    log_len: u64,
) -> Result<Option<DayIndex>, AuditError> {
    let Ok(file) = File::open(&day.index_path) else {
        return Ok(None);
    };
    let Ok(meta) = file.metadata() else {
        return Ok(None);
    };
    let mut hb = [0u8; HEADER_SIZE];
    if file.read_exact_at(&mut hb, 0).is_err() {
        return Ok(None);
    }
    let Ok(header) = IndexHeader::decode(&hb, meta.len()) else {
        return Ok(None);
    };
    if header.covered > log_len
        || fingerprints(log, &day.log_path, header.covered)? != (header.head_crc, header.tail_crc)
    {
        return Ok(None);
    }
    if header.covered < log_len {
        let (new, covered, unparsable) = scan(log, &day.log_path, header.covered, log_len)?;
        if covered > header.covered {
            let Some(mut index) = read_whole(&file).filter(|i| i.covered == header.covered) else {
                return Ok(None);
            };
            index.extend(new, covered, unparsable);
            Counters::add(&inner.counters.index_updates, 1);
            Counters::add(&inner.counters.unparsable_lines, unparsable);
            save(inner, &index, log, &day.index_path);
            let log = log.try_clone().map_err(AuditError::io(&day.log_path))?;
            return Ok(Some(DayIndex {
                id: day.id.clone(),
                log,
                log_path: day.log_path.clone(),
                covered: index.covered,
                entries: Entries::Memory(index.entries),
            }));
        }
    }
    let log = log.try_clone().map_err(AuditError::io(&day.log_path))?;
    Ok(Some(DayIndex {
        id: day.id.clone(),
        log,
        log_path: day.log_path.clone(),
        covered: header.covered,
        entries: Entries::File {
            file,
            count: header.entries,
        },
    }))
}

/// The whole index of an open index file, every entry checked; `None` if it is damaged.
fn read_whole(file: &File) -> Option<Index> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file;
    let mut bytes = Vec::new();
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_to_end(&mut bytes).ok()?;
    Index::decode(&bytes).ok().map(|(_, index)| index)
}

/// The checksums of the head and tail ranges of the first `covered` bytes of the log.
fn fingerprints(log: &File, path: &Path, covered: u64) -> Result<(u32, u32), AuditError> {
    let ((h0, h1), (t0, t1)) = fingerprint_ranges(covered);
    let mut head = vec![0u8; (h1 - h0) as usize];
    let mut tail = vec![0u8; (t1 - t0) as usize];
    let read = log
        .read_exact_at(&mut head, h0)
        .and_then(|()| log.read_exact_at(&mut tail, t0));
    match read {
        Ok(()) => Ok((crc(&head), crc(&tail))),
        // The log shrank under us: it does not match.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok((!crc(&head), 0)),
        Err(e) => Err(AuditError::io(path)(e)),
    }
}

/// Index entries of the complete lines in `log[start..end]`: `(entries, covered, unparsable)`
/// where `covered` is the offset after the last complete line.
fn scan(
    log: &File,
    path: &Path,
    start: u64,
    end: u64,
) -> Result<(Vec<IndexEntry>, u64, u64), AuditError> {
    let mut scanner = LineScanner::new(start, MAX_READ_LINE);
    let mut entries = Vec::new();
    let mut unparsable = 0u64;
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut pos = start;
    while pos < end {
        let want = ((end - pos) as usize).min(SCAN_CHUNK);
        let n = log
            .read_at(&mut buf[..want], pos)
            .map_err(AuditError::io(path))?;
        if n == 0 {
            break;
        }
        scanner.feed(&buf[..n], |line| match line {
            ScannedLine::Line { offset, bytes } => match index_line(offset, bytes) {
                IndexedLine::Entry(e) => entries.push(e),
                IndexedLine::Unparsable => unparsable += 1,
                IndexedLine::Blank => {}
            },
            ScannedLine::TooLong { .. } => unparsable += 1,
        });
        pos += n as u64;
    }
    Ok((entries, scanner.covered(), unparsable))
}

/// Saves an index crash-safely (temporary file, `fdatasync`, rename over). A failure is
/// counted, not returned: the search goes on with the index in memory.
fn save(inner: &Inner, index: &Index, log: &File, path: &Path) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let result = (|| -> std::io::Result<()> {
        let (head, tail) = match fingerprints(log, path, index.covered) {
            Ok(f) => f,
            Err(AuditError::Io { source, .. }) => return Err(source),
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!(
            "idx.tmp.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&index.encode(head, tail))?;
            f.sync_data()
        });
        let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    })();
    if result.is_err() {
        Counters::add(&inner.counters.index_save_errors, 1);
    }
}
