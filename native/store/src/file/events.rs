//! A ProtoStream file's events decoded on several threads and handed out in order
//! ([`ParallelEvents`]), and the one constructor that picks it or the sequential
//! [`EventStream`] ([`open_path_jobs`]): what `tapelog play` and `tapelog upload` read.
//!
//! [`ParallelEvents`] runs [`read_parallel`](super::read_parallel)'s driver on a background
//! thread, with `tapelog_core::codec::parallel::decode_part_records` on the workers (each
//! event decoded there, which finds every error, and kept as its record's bytes), and passes
//! each merged part's records to the iterator over a rendezvous channel (capacity 0); the
//! iterator decodes an event from its record when it is taken. A part held costs its
//! compressed bytes, or once decoded its records' bytes (about its inflated size, a fraction
//! of its typed events), never both at once. At most `2 × jobs` parts are held (3 with one
//! job) — the driver's window of `2 × jobs − 1` (which lends one slot to the part waiting in
//! the channel) and the part being handed out — whatever the recording's size. Events, counters (once the iterator has
//! ended) and error are those of [`EventStream`] on the same bytes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use tapelog_core::AuditEvent;
use tapelog_core::codec::deflate::Backend;
use tapelog_core::codec::parallel::{Records, decode_part_records};
use tapelog_core::codec::{Format, ReaderStats};

use super::parallel::{Merged, read_parallel_parts};
use super::{EventStream, ParallelRead, ReadError, open_path};

/// What the background thread sends: a merged part's kept events, or the end of the read.
enum Msg {
    Part { records: Records, merged: Merged },
    End(ParallelRead),
}

/// Emptied record buffers handed back to the background thread (at most two kept).
type Spare = Arc<Mutex<Vec<Vec<u8>>>>;

/// The iterator was dropped: the background read stops.
struct Stopped;

/// The events of a ProtoStream file decoded on `jobs` threads, in the recording's order (see
/// the module documentation). Dropping it stops the read: the background thread ends once
/// the parts already handed to its workers are decoded.
pub struct ParallelEvents {
    path: PathBuf,
    rx: mpsc::Receiver<Msg>,
    current: Records,
    /// Record buffers of parts handed out, for the background thread to fill again.
    spare: Spare,
    stats: ReaderStats,
    offset: u64,
    done: bool,
}

impl ParallelEvents {
    /// Reads the file at `path` on `jobs` threads (at least one). Input that is not
    /// ProtoStream is read as one damaged piece: use [`open_path_jobs`], which sends it to
    /// [`EventStream`].
    pub fn open(path: &Path, jobs: usize) -> Result<ParallelEvents, ReadError> {
        let f = std::fs::File::open(path).map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ParallelEvents::from_reader(Box::new(f), path, jobs)
    }

    /// Reads `src` (a ProtoStream recording; `path` names it in errors) on `jobs` threads.
    pub fn from_reader(
        src: Box<dyn Read + Send>,
        path: &Path,
        jobs: usize,
    ) -> Result<ParallelEvents, ReadError> {
        let (tx, rx) = mpsc::sync_channel(0);
        let thread_path = path.to_path_buf();
        let spare: Spare = Arc::default();
        let thread_spare = spare.clone();
        let spawned = std::thread::Builder::new()
            .name("tapelog-decode".into())
            .spawn(move || {
                let mut src = src;
                let decode = |bytes: &[u8], offset, part, out: &mut Vec<u8>| {
                    decode_part_records(bytes, offset, part, Backend::default(), true, out)
                };
                // Two parts per worker in all: the one being handed out is the window's last.
                let window = 2 * jobs.max(1) - 1;
                let read = read_parallel_parts(
                    &mut *src,
                    &thread_path,
                    jobs,
                    window,
                    &decode,
                    |kept, buf, m| {
                        // The buffer goes with the records; one the iterator is done with
                        // takes its place in the driver's pool.
                        let spare = thread_spare.lock().ok().and_then(|mut v| v.pop());
                        let records =
                            Records::new(kept, std::mem::replace(buf, spare.unwrap_or_default()));
                        // The error carries nothing of use: the iterator is gone.
                        tx.send(Msg::Part { records, merged: m })
                            .map_err(|_| Stopped)
                    },
                );
                // Err: the iterator was dropped, nobody is left to tell.
                if let Ok(end) = read {
                    let _ = tx.send(Msg::End(end));
                }
            });
        if let Err(source) = spawned {
            return Err(ReadError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(ParallelEvents {
            path: path.to_path_buf(),
            rx,
            current: Records::default(),
            spare,
            stats: ReaderStats::default(),
            offset: 0,
            done: false,
        })
    }

    /// Counters of the parts handed out so far; once the iterator has ended, those of a
    /// sequential read of the same bytes.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// The offset one past the last part whose events are being handed out.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Iterator for ParallelEvents {
    type Item = Result<AuditEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.current.next() {
                return Some(e.map_err(|e| ReadError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(format!(
                        "an event decoded on a worker did not decode again: {e}"
                    )),
                }));
            }
            if self.done {
                return None;
            }
            match self.rx.recv() {
                Ok(Msg::Part { records, merged }) => {
                    let done = std::mem::replace(&mut self.current, records).into_buffer();
                    if let Ok(mut spare) = self.spare.lock()
                        && spare.len() < 2
                    {
                        spare.push(done);
                    }
                    self.stats = merged.stats;
                    self.offset = merged.end;
                }
                Ok(Msg::End(end)) => {
                    self.done = true;
                    self.stats = end.stats;
                    return end.error.map(Err);
                }
                Err(_) => {
                    // The background thread ended without a word: it panicked.
                    self.done = true;
                    return Some(Err(ReadError::Io {
                        path: self.path.clone(),
                        source: std::io::Error::other("the decoding thread stopped"),
                    }));
                }
            }
        }
    }
}

/// A recording's events, read one part after the other or on several threads.
pub enum Events {
    /// The sequential reader (one job, standard input, legacy tar, anything not ProtoStream).
    Sequential(EventStream),
    /// A ProtoStream file on several threads.
    Parallel(ParallelEvents),
}

impl Events {
    /// Counters of the read so far (exact once the iterator has ended).
    pub fn stats(&self) -> ReaderStats {
        match self {
            Events::Sequential(s) => s.stats(),
            Events::Parallel(p) => p.stats(),
        }
    }

    /// Bytes of the file read so far, for progress (the parallel reader counts whole parts).
    pub fn offset(&self) -> u64 {
        match self {
            Events::Sequential(s) => s.offset(),
            Events::Parallel(p) => p.offset(),
        }
    }
}

impl Iterator for Events {
    type Item = Result<AuditEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Events::Sequential(s) => s.next(),
            Events::Parallel(p) => p.next(),
        }
    }
}

/// Opens `path` (`-`: standard input) for reading with `jobs` threads: a ProtoStream file
/// with `jobs` > 1 takes [`ParallelEvents`]; one job, standard input and every other format
/// take [`EventStream`]. Input that is not a recording is refused here with the sequential
/// reader's message.
pub fn open_path_jobs(path: &Path, jobs: usize) -> Result<Events, ReadError> {
    let first = open_path(path)?;
    if jobs <= 1
        || path.as_os_str() == "-"
        || !matches!(first.format(), Format::ProtoV1 | Format::ProtoV2)
    {
        return Ok(Events::Sequential(first));
    }
    drop(first);
    ParallelEvents::open(path, jobs).map(Events::Parallel)
}

/// The default number of decode jobs for readers that follow the machine: the available
/// parallelism, capped at `cap` (1 when it cannot be known).
pub fn available_jobs(cap: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, cap.max(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tapelog_core::codec::parallel::{HEADER_PEEK, split};

    use super::*;
    use crate::file::open_reader;
    use crate::test_recordings::many_parts;

    /// A reader that counts the bytes it gave.
    struct Counting {
        inner: std::io::Cursor<Vec<u8>>,
        read: Arc<AtomicU64>,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
    }

    /// The memory bound: however slowly events are taken, the file is never read more than
    /// `2 × jobs` parts past the part being handed out.
    #[test]
    fn reads_at_most_two_parts_per_job_ahead() {
        let bytes = many_parts();
        let pieces = split(&bytes);
        assert!(pieces.len() > 30, "only {} parts", pieces.len());
        let largest = pieces.iter().map(|p| p.2.len() as u64).max().unwrap();
        let want: Vec<AuditEvent> = open_reader(
            Box::new(std::io::Cursor::new(bytes.clone())),
            Path::new("x"),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
        for jobs in [1, 2, 3] {
            let read = Arc::new(AtomicU64::new(0));
            let src = Counting {
                inner: std::io::Cursor::new(bytes.clone()),
                read: read.clone(),
            };
            let mut events =
                ParallelEvents::from_reader(Box::new(src), Path::new("x"), jobs).expect("started");
            let mut got = Vec::new();
            let mut most_ahead = 0;
            while let Some(e) = events.next() {
                got.push(e.unwrap());
                if got.len() % 50 == 0 {
                    // Give the background thread time to read as far as it may.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                let ahead = read.load(Ordering::SeqCst).saturating_sub(events.offset());
                most_ahead = most_ahead.max(ahead);
            }
            assert_eq!(got, want, "jobs {jobs}");
            let bound = 2 * jobs as u64 * largest + HEADER_PEEK as u64;
            assert!(
                most_ahead <= bound,
                "jobs {jobs}: read {most_ahead} bytes ahead, bound {bound}"
            );
            assert!(most_ahead > largest, "jobs {jobs}: never read ahead");
        }
    }

    /// Dropping the iterator part-way stops the background thread (its channel closes).
    #[test]
    fn a_dropped_reader_stops_reading() {
        let bytes = many_parts();
        let total = bytes.len() as u64;
        let read = Arc::new(AtomicU64::new(0));
        let src = Counting {
            inner: std::io::Cursor::new(bytes),
            read: read.clone(),
        };
        let mut events = ParallelEvents::from_reader(Box::new(src), Path::new("x"), 2).unwrap();
        assert!(events.next().unwrap().is_ok());
        drop(events);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(read.load(Ordering::SeqCst) < total / 2);
    }

    /// Every ProtoStream vector: the same events, counters and error as [`EventStream`].
    #[test]
    fn every_vector_reads_as_the_sequential_reader() {
        let mut n = 0;
        for v in tapelog_core::vectors::all() {
            if !matches!(
                tapelog_core::codec::detect_format(&v.bytes),
                Format::ProtoV1 | Format::ProtoV2
            ) {
                continue;
            }
            n += 1;
            let path = Path::new(v.name);
            let Ok(mut seq) = open_reader(Box::new(std::io::Cursor::new(v.bytes.clone())), path)
            else {
                continue;
            };
            let want: Vec<Result<String, String>> = seq
                .by_ref()
                .map(|r| r.map(|e| e.to_json()).map_err(|e| e.to_string()))
                .collect();
            for jobs in [1, 2, 5] {
                let src = Box::new(std::io::Cursor::new(v.bytes.clone()));
                let mut par = ParallelEvents::from_reader(src, path, jobs).unwrap();
                let got: Vec<Result<String, String>> = par
                    .by_ref()
                    .map(|r| r.map(|e| e.to_json()).map_err(|e| e.to_string()))
                    .collect();
                assert_eq!(got, want, "{} jobs {jobs}", v.name);
                assert_eq!(par.stats(), seq.stats(), "{} jobs {jobs}", v.name);
                assert!(par.next().is_none());
            }
        }
        assert!(n > 5, "only {n} ProtoStream vectors");
    }
}
