//! [`SessionReader`](super::SessionReader)'s parallel mode: a ProtoStream recording arriving
//! as async chunks, cut into parts at their headers (`part_extent`), each part inflated and
//! decoded on tokio's blocking threads (`decode_part_records`: every event decoded there, so
//! every error found there, and kept as its record's bytes), the results merged in part order
//! (`PartMerger`), so events, counters and errors are those of the sequential reader. An
//! event is built from its record again when it is taken (`Records`).
//!
//! Bounds: at most `2 × jobs` parts are held (received and not yet merged) and at most
//! `jobs` of them are decoded at once; a part is held whole, its compressed bytes and then
//! its records' bytes (about its inflated size, a fraction of its typed events), plus the
//! part whose events are being taken. A header that cannot be read (damage, encryption, the end of the
//! input) makes what is buffered the last piece: its decode reports the error at that
//! header, as the sequential reader does, and nothing after it is read. When the store fails
//! part-way, the bytes received so far are decoded without being marked finished (the
//! complete records in them are delivered, as the sequential reader delivers them), then the
//! store's error follows.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::StreamExt;
use tapelog_core::AuditEvent;
use tapelog_core::codec::ReaderStats;
use tapelog_core::codec::deflate::Backend;
use tapelog_core::codec::parallel::{
    DecodedPart, Extent, HEADER_PEEK, PartMerger, Records, decode_part_records, part_extent,
};
use tokio::task::JoinHandle;

use super::{PlaybackError, RecordingBytes};

/// Parts held per job (received, being decoded, or waiting to be merged).
pub(crate) const WINDOW_PER_JOB: usize = 2;

/// One part's bytes, where it starts, and whether the input may go on after them.
struct Piece {
    bytes: Vec<u8>,
    offset: u64,
    part: u64,
    /// The input ends with these bytes (a truncation there is an error); false when the
    /// store failed after them.
    finished: bool,
}

enum Slot {
    Waiting(Piece),
    Running {
        task: JoinHandle<Decoded>,
        bytes: usize,
    },
}

impl Slot {
    fn bytes(&self) -> usize {
        match self {
            Slot::Waiting(p) => p.bytes.len(),
            Slot::Running { bytes, .. } => *bytes,
        }
    }
}

/// The state of a parallel read (see the module documentation).
pub(crate) struct ParallelDecode {
    jobs: usize,
    /// Bytes received and not yet cut into a piece.
    buf: Vec<u8>,
    /// Offset and number of the next piece.
    offset: u64,
    part: u64,
    /// No more bytes will be read.
    input_done: bool,
    /// The store's error, reported after the events of the bytes before it.
    read_error: Option<PlaybackError>,
    window: VecDeque<Slot>,
    merger: PartMerger,
    current: Records,
    /// The error that ends the recording, reported after `current`.
    failed: Option<PlaybackError>,
}

impl ParallelDecode {
    /// A read on `jobs` threads that starts with `head`, the first bytes of the recording
    /// (`ended`: they are all of it).
    pub(crate) fn new(jobs: usize, head: Vec<u8>, ended: bool) -> ParallelDecode {
        ParallelDecode {
            jobs: jobs.max(1),
            buf: head,
            offset: 0,
            part: 0,
            input_done: ended,
            read_error: None,
            window: VecDeque::new(),
            merger: PartMerger::new(),
            current: Records::default(),
            failed: None,
        }
    }

    /// Counters of the parts merged so far.
    pub(crate) fn stats(&self) -> ReaderStats {
        self.merger.stats()
    }

    /// Compressed bytes held: received and not yet decoded (decoded events not counted).
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buf.len() + self.window.iter().map(Slot::bytes).sum::<usize>()
    }

    /// Parts held right now (at most `2 × jobs`).
    #[cfg(test)]
    pub(crate) fn parts_held(&self) -> usize {
        self.window.len()
    }

    /// Whether pieces are left to cut (bytes buffered, or input to come).
    fn more_pieces(&self) -> bool {
        !(self.input_done && self.buf.is_empty())
    }

    /// Cuts the next piece from the buffer, reading chunks as needed; `None` at the end.
    async fn next_piece(&mut self, chunks: &mut RecordingBytes, session: &str) -> Option<Piece> {
        loop {
            if self.input_done && self.buf.is_empty() {
                return None;
            }
            if self.buf.len() >= HEADER_PEEK || self.input_done {
                // (length, whether the piece is a whole part)
                let cut = match part_extent(&self.buf[..self.buf.len().min(HEADER_PEEK)]) {
                    // `len` is at most the buffer's length here: it fits in usize.
                    Extent::Part(len) if (self.buf.len() as u64) >= len => {
                        Some((len as usize, true))
                    }
                    Extent::Part(_) if self.input_done => Some((self.buf.len(), false)),
                    Extent::Part(_) => None,
                    Extent::Rest => {
                        // The decode fails at this header: nothing after it is needed.
                        self.input_done = true;
                        Some((self.buf.len(), false))
                    }
                };
                if let Some((len, whole)) = cut {
                    let rest = self.buf.split_off(len);
                    let bytes = std::mem::replace(&mut self.buf, rest);
                    let piece = Piece {
                        offset: self.offset,
                        part: self.part,
                        finished: whole || self.read_error.is_none(),
                        bytes,
                    };
                    self.offset += len as u64;
                    self.part += 1;
                    return Some(piece);
                }
            }
            match chunks.next().await {
                Some(Ok(b)) => self.push(b),
                Some(Err(source)) => {
                    self.read_error = Some(PlaybackError::Read {
                        session: session.to_string(),
                        source,
                    });
                    self.input_done = true;
                }
                None => self.input_done = true,
            }
        }
    }

    fn push(&mut self, b: Bytes) {
        self.buf.extend_from_slice(&b);
    }

    /// Starts decodes of waiting pieces, in order, while fewer than `jobs` are running.
    fn start_waiting(&mut self) {
        let mut running = self
            .window
            .iter()
            .filter(|s| matches!(s, Slot::Running { task, .. } if !task.is_finished()))
            .count();
        for slot in self.window.iter_mut() {
            if running >= self.jobs {
                break;
            }
            if let Slot::Waiting(piece) = slot {
                let piece = std::mem::replace(
                    piece,
                    Piece {
                        bytes: Vec::new(),
                        offset: 0,
                        part: 0,
                        finished: true,
                    },
                );
                let bytes = piece.bytes.len();
                let task = tokio::task::spawn_blocking(move || decode(piece));
                *slot = Slot::Running { task, bytes };
                running += 1;
            }
        }
    }

    /// The next event, `None` at the end; after an error, `None`.
    pub(crate) async fn next(
        &mut self,
        chunks: &mut RecordingBytes,
        session: &str,
    ) -> Option<Result<AuditEvent, PlaybackError>> {
        loop {
            if let Some(e) = self.current.next() {
                return Some(e.map_err(|e| PlaybackError::Worker {
                    session: session.to_string(),
                    message: format!("an event decoded on a worker did not decode again: {e}"),
                }));
            }
            if let Some(e) = self.failed.take() {
                self.window.clear();
                return Some(Err(e));
            }
            // Read ahead while the window has room, until the oldest part is decoded.
            while self.window.len() < self.jobs * WINDOW_PER_JOB && self.more_pieces() {
                if let Some(Slot::Running { task, .. }) = self.window.front()
                    && task.is_finished()
                {
                    break;
                }
                match self.next_piece(chunks, session).await {
                    Some(p) => self.window.push_back(Slot::Waiting(p)),
                    None => break,
                }
                self.start_waiting();
            }
            if self.window.is_empty() && self.more_pieces() {
                match self.next_piece(chunks, session).await {
                    Some(p) => self.window.push_back(Slot::Waiting(p)),
                    None => continue,
                }
            }
            self.start_waiting();
            let Some(front) = self.window.pop_front() else {
                return self.read_error.take().map(Err);
            };
            let decoded = match front {
                Slot::Running { task, .. } => task.await,
                Slot::Waiting(p) => tokio::task::spawn_blocking(move || decode(p)).await,
            };
            self.start_waiting();
            let (decoded, out) = match decoded {
                Ok(d) => d,
                Err(e) => {
                    self.window.clear();
                    self.input_done = true;
                    self.failed = Some(PlaybackError::Worker {
                        session: session.to_string(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let (kept, error) = self.merger.merge(decoded);
            self.current = Records::new(kept, out);
            if let Some(source) = error {
                self.input_done = true;
                self.read_error = None;
                self.failed = Some(PlaybackError::Decode {
                    session: session.to_string(),
                    source,
                });
            }
        }
    }
}

/// A decoded piece: its items and the buffer of records they point into.
type Decoded = (DecodedPart<std::ops::Range<usize>>, Vec<u8>);

/// Decodes one piece on a blocking thread: a finished piece as `decode_part` does, a piece
/// cut short by a store error up to its last complete record.
fn decode(p: Piece) -> Decoded {
    let mut out = Vec::new();
    let d = decode_part_records(
        &p.bytes,
        p.offset,
        p.part,
        Backend::default(),
        p.finished,
        &mut out,
    );
    (d, out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures::stream;
    use tapelog_core::codec::parallel::split;

    use super::super::SessionReader;
    use super::*;
    use crate::UploadError;
    use crate::test_recordings::many_parts;

    /// `bytes` as a stream of chunks of varied sizes; with `fail_at`, the store fails once
    /// that many bytes were sent.
    fn chunked(bytes: &[u8], fail_at: Option<usize>) -> RecordingBytes {
        let mut out: Vec<Result<Bytes, UploadError>> = Vec::new();
        let end = fail_at.unwrap_or(bytes.len()).min(bytes.len());
        let (mut at, mut k) = (0, 0usize);
        while at < end {
            let n = [1, 7, 500, 4096, 70_000, 13][k % 6].min(end - at);
            out.push(Ok(Bytes::copy_from_slice(&bytes[at..at + n])));
            at += n;
            k += 1;
        }
        if fail_at.is_some() {
            out.push(Err(UploadError::NotFound("the rest".into())));
        }
        stream::iter(out).boxed()
    }

    /// Events as JSON and the error's text, the counters, and the most parts held.
    async fn read(
        bytes: &[u8],
        fail_at: Option<usize>,
        jobs: usize,
    ) -> (Vec<Result<String, String>>, ReaderStats, usize) {
        let mut r = SessionReader::new("s", chunked(bytes, fail_at)).with_decode_jobs(jobs);
        let mut out = Vec::new();
        let mut most = 0;
        while let Some(e) = r.next_event().await {
            out.push(e.map(|e| e.to_json()).map_err(|e| e.to_string()));
            most = most.max(r.parallel.as_ref().map_or(0, |p| p.parts_held()));
        }
        assert!(r.next_event().await.is_none());
        (out, r.stats(), most)
    }

    async fn same_whatever_the_jobs(name: &str, bytes: &[u8], fail_at: Option<usize>) {
        let (want, stats, _) = read(bytes, fail_at, 1).await;
        for jobs in [2, 5] {
            let (got, got_stats, most) = read(bytes, fail_at, jobs).await;
            assert_eq!(got.len(), want.len(), "{name} jobs {jobs}");
            assert!(got == want, "{name} jobs {jobs}: events differ");
            assert_eq!(got_stats, stats, "{name} jobs {jobs}");
            assert!(
                most <= jobs * WINDOW_PER_JOB,
                "{name} jobs {jobs}: {most} parts held"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_vector_reads_the_same_with_any_number_of_jobs() {
        for v in tapelog_core::vectors::all() {
            same_whatever_the_jobs(v.name, &v.bytes, None).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replays_damage_and_store_failures_read_the_same() {
        let clean = many_parts();
        let parts: Vec<&[u8]> = split(&clean).into_iter().map(|(_, _, b)| b).collect();
        assert!(parts.len() > 20, "only {} parts", parts.len());
        let start = |k: usize| parts[..k].iter().map(|p| p.len()).sum::<usize>();
        let mut replayed: Vec<&[u8]> = parts[..9].to_vec();
        replayed.extend_from_slice(&parts[3..6]);
        replayed.extend_from_slice(&parts[9..]);
        let replayed = replayed.concat();
        let mut gap = parts.clone();
        gap.remove(7);
        let gap = gap.concat();
        let mut deflate = clean.clone();
        deflate[start(11) + 24 + 20] ^= 0x5a;
        let mut header = clean.clone();
        header[start(13) + 7] = 9;
        let cut = clean[..start(15) + parts[15].len() / 3].to_vec();
        for (name, bytes) in [
            ("clean", &clean),
            ("replayed", &replayed),
            ("gap", &gap),
            ("deflate", &deflate),
            ("header", &header),
            ("cut", &cut),
        ] {
            same_whatever_the_jobs(name, bytes, None).await;
        }
        // The store fails inside part 9, at its boundary, and inside the first header.
        for at in [start(9) + parts[9].len() / 2, start(12), 10] {
            same_whatever_the_jobs(&format!("store fails at {at}"), &clean, Some(at)).await;
        }
        let (events, _, _) = read(&clean, Some(start(9) + 100), 2).await;
        let last = events.last().unwrap().as_ref().unwrap_err();
        assert!(last.contains("the rest"), "{last}");
    }
}
