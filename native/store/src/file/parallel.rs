//! The parallel read of a ProtoStream recording: the driver of `tapelog_core::codec::parallel`.
//!
//! The calling thread reads the file part by part (each part's length comes from its header)
//! and hands the parts to `jobs` worker threads, which inflate and decode them (and render
//! each event into the part's output buffer, or keep it); the calling thread merges the
//! results in part order and gives them to the sink. At most `2 × jobs` parts are read and not
//! yet merged at any time, and the output buffers are reused from part to part, so memory is
//! bounded by that window (the compressed parts and their rendered output), whatever the
//! recording's size.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

use tapelog_core::codec::ReaderStats;
use tapelog_core::codec::parallel::{DecodedPart, Extent, HEADER_PEEK, PartMerger, part_extent};

use super::ReadError;

/// Parts in flight per worker (being read, queued, decoded, or waiting to be merged).
const WINDOW_PER_JOB: usize = 2;

/// The end of a parallel read that the sink did not stop.
#[derive(Debug)]
pub struct ParallelRead {
    /// Counters (those of a sequential read of the same bytes, up to the error if any).
    pub stats: ReaderStats,
    /// The error that ended the read; every event before it went to the sink.
    pub error: Option<ReadError>,
}

/// One part's bytes and where it is.
struct Piece {
    offset: u64,
    part: u64,
    bytes: Vec<u8>,
}

/// Cuts the source into pieces as [`part_extent`] says.
struct Splitter<'a> {
    src: &'a mut dyn Read,
    path: &'a Path,
    /// Bytes read past the last piece (a peek longer than a small part).
    carry: Vec<u8>,
    offset: u64,
    part: u64,
    done: bool,
}

impl Splitter<'_> {
    fn io(&self, source: std::io::Error) -> ReadError {
        ReadError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Reads until `buf` holds `want` bytes or the source ends.
    fn fill(&mut self, buf: &mut Vec<u8>, want: u64) -> Result<(), ReadError> {
        let have = buf.len() as u64;
        if have >= want {
            return Ok(());
        }
        let mut lim = (&mut *self.src).take(want - have);
        loop {
            match lim.read_to_end(buf) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    fn next(&mut self) -> Result<Option<Piece>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let mut bytes = std::mem::take(&mut self.carry);
        self.fill(&mut bytes, HEADER_PEEK as u64)?;
        if bytes.is_empty() {
            self.done = true;
            return Ok(None);
        }
        match part_extent(&bytes[..bytes.len().min(HEADER_PEEK)]) {
            Extent::Part(len) => {
                if (bytes.len() as u64) > len {
                    // `len` is below HEADER_PEEK here, so it fits in usize.
                    self.carry = bytes.split_off(len as usize);
                }
                self.fill(&mut bytes, len)?;
                if (bytes.len() as u64) < len {
                    self.done = true;
                }
            }
            Extent::Rest => {
                self.fill(&mut bytes, u64::MAX)?;
                self.done = true;
            }
        }
        let piece = Piece {
            offset: self.offset,
            part: self.part,
            bytes,
        };
        self.offset += piece.bytes.len() as u64;
        self.part += 1;
        Ok(Some(piece))
    }
}

/// How a worker decodes one part: its bytes, absolute offset and number, and the output buffer
/// (empty, reused) its items may point into. `tapelog_core::codec::parallel::decode_part`
/// (typed events, mapped) and `decode_part_text` (print data only) have this shape.
pub type PartDecoder<'a, T> = dyn Fn(&[u8], u64, u64, &mut Vec<u8>) -> DecodedPart<T> + Sync + 'a;

/// Reads the ProtoStream recording `src` (`path` names it in errors) on `jobs` threads:
/// `decode` runs on the workers for every part (its items are every event, duplicates
/// included); `sink` runs on the calling thread once per part, in the recording's order, with
/// the part's kept items (the duplicate rules applied across parts) and its output buffer.
/// Events, counters and error are those of [`super::EventStream`] on the same bytes. A sink
/// error stops the read and is returned as is.
pub fn read_parallel<T: Send, E>(
    src: &mut dyn Read,
    path: &Path,
    jobs: usize,
    decode: &PartDecoder<'_, T>,
    mut sink: impl FnMut(Vec<T>, &[u8]) -> Result<(), E>,
) -> Result<ParallelRead, E> {
    let window = jobs.max(1) * WINDOW_PER_JOB;
    read_parallel_parts(src, path, jobs, window, decode, |kept, buf, _| {
        sink(kept, buf)
    })
}

/// Where a worker sends a part's result (and its output buffer back).
type Done<T> = mpsc::Receiver<(DecodedPart<T>, Vec<u8>)>;

/// Where the read stands after a part was merged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Merged {
    /// Counters of the parts merged so far.
    pub stats: ReaderStats,
    /// The offset one past the part's last byte.
    pub end: u64,
}

/// [`read_parallel`] with at most `window` parts read and not yet given to the sink (at
/// least `jobs + 1`, so that every worker has a part while the sink runs), the counters and
/// position after each part given to the sink, and the part's output buffer lent mutably (a
/// sink that keeps it takes it, leaving an empty one).
pub(crate) fn read_parallel_parts<T: Send, E>(
    src: &mut dyn Read,
    path: &Path,
    jobs: usize,
    window: usize,
    decode: &PartDecoder<'_, T>,
    mut sink: impl FnMut(Vec<T>, &mut Vec<u8>, Merged) -> Result<(), E>,
) -> Result<ParallelRead, E> {
    let jobs = jobs.max(1);
    let limit = window.max(jobs + 1);
    let mut splitter = Splitter {
        src,
        path,
        carry: Vec::new(),
        offset: 0,
        part: 0,
        done: false,
    };
    type Job<T> = (Piece, Vec<u8>, mpsc::SyncSender<(DecodedPart<T>, Vec<u8>)>);
    let (job_tx, job_rx) = mpsc::channel::<Job<T>>();
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|s| {
        // Owned here: dropped when the merge ends, which tells idle workers to stop.
        let job_tx = job_tx;
        for _ in 0..jobs {
            let job_rx = &job_rx;
            s.spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((piece, mut buf, done)) = job else {
                        return;
                    };
                    buf.clear();
                    let d = decode(&piece.bytes, piece.offset, piece.part, &mut buf);
                    drop(piece);
                    // The merger may have stopped (error or sink failure): nothing to do then.
                    let _ = done.send((d, buf));
                }
            });
        }
        let mut merger = PartMerger::new();
        // Each part's result, and the offset one past its last byte.
        let mut window: VecDeque<(Done<T>, u64)> = VecDeque::new();
        let mut read_error = None;
        // Output buffers given back after their part was merged, for the next parts.
        let mut pool: Vec<Vec<u8>> = Vec::new();
        loop {
            while read_error.is_none() && window.len() < limit {
                match splitter.next() {
                    Ok(Some(piece)) => {
                        let (tx, rx) = mpsc::sync_channel(1);
                        let buf = pool.pop().unwrap_or_default();
                        let end = piece.offset + piece.bytes.len() as u64;
                        if job_tx.send((piece, buf, tx)).is_err() {
                            break;
                        }
                        window.push_back((rx, end));
                    }
                    Ok(None) => break,
                    Err(e) => read_error = Some(e),
                }
            }
            let Some((rx, end)) = window.pop_front() else {
                // Everything read was merged: an I/O error comes after those events.
                return Ok(ParallelRead {
                    stats: merger.stats(),
                    error: read_error,
                });
            };
            let Ok((decoded, buf)) = rx.recv() else {
                // A worker died (a panic, re-raised when the scope ends).
                return Ok(ParallelRead {
                    stats: merger.stats(),
                    error: Some(ReadError::Io {
                        path: path.to_path_buf(),
                        source: std::io::Error::other("a decoding thread stopped"),
                    }),
                });
            };
            let (kept, error) = merger.merge(decoded);
            let merged = Merged {
                stats: merger.stats(),
                end,
            };
            let mut buf = buf;
            sink(kept, &mut buf, merged)?;
            pool.push(buf);
            if let Some(source) = error {
                return Ok(ParallelRead {
                    stats: merger.stats(),
                    error: Some(ReadError::Codec {
                        path: path.to_path_buf(),
                        source,
                    }),
                });
            }
        }
    })
}
