//! Playback: a session's events and terminal bytes, read from where they are stored.
//!
//! - [`SessionReader`] decodes a completed recording as it arrives from any store
//!   ([`RecordingSource`]), chunk by chunk: no temporary files, memory bounded by one part's
//!   working set whatever the recording's size (legacy tar recordings, small by nature, are
//!   read whole, capped at [`legacy::MAX_LEGACY_BYTES`]).
//! - [`Playback::stream_session_events`] is upstream's `StreamSessionEvents(sid, index)`.
//! - [`Playback::get_session_events`] and [`Playback::get_session_chunk`] are the legacy
//!   API (`GetSessionEvents`, `GetSessionChunk`): for sessions kept in the pre-4.4 per-server
//!   layout (`<log>/<server>/sessions/<ns>/<sid>.index`, merged across every server
//!   directory, as upstream's `readSessionIndex`) and, for every other session, over the
//!   recording itself in the view upstream's `WriteForSSHPlayback` wrote
//!   ([`tapelog_core::playback`]), computed while streaming instead of through playback files.

mod legacy_dir;
mod parallel;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use tapelog_core::codec::{
    CodecError, ErrorKind, Format, Polled, ProtoReader, detect_format, legacy,
};
use tapelog_core::playback::{ChunkWindow, PlaybackView};
use tapelog_core::{AuditEvent, EventFields};
use thiserror::Error;

use crate::{StoreUploader, UploadError};

pub use legacy_dir::LegacySession;

/// A byte stream of a completed recording.
pub type RecordingBytes = BoxStream<'static, Result<Bytes, UploadError>>;

/// Where completed recordings can be read back from, in chunks.
pub trait RecordingSource: Send + Sync + 'static {
    /// The recording of `session_id` as a stream of chunks ([`UploadError::NotFound`] when
    /// there is none).
    fn open_recording(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<RecordingBytes, UploadError>> + Send;
}

impl<T: RecordingSource> RecordingSource for Arc<T> {
    fn open_recording(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<RecordingBytes, UploadError>> + Send {
        (**self).open_recording(session_id)
    }
}

impl RecordingSource for StoreUploader {
    async fn open_recording(&self, session_id: &str) -> Result<RecordingBytes, UploadError> {
        crate::check_id("session id", session_id)?;
        let path = self.recording_path(session_id);
        let got = match self.store().get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(UploadError::NotFound(format!("recording of {session_id}")));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(got.into_stream().map_err(UploadError::from).boxed())
    }
}

/// Part of a stored recording: the answer to an HTTP `Range` request.
pub struct RecordingRange {
    /// The bytes of `[start, end)`.
    pub bytes: RecordingBytes,
    /// The first byte's offset.
    pub start: u64,
    /// One past the last byte's offset.
    pub end: u64,
    /// The whole recording's size.
    pub size: u64,
}

impl StoreUploader {
    /// The recording of `session_id` from byte `start` up to `end` (exclusive; `None` or past
    /// the size: to the end). `Ok(Err(size))` when `start` is not before the end of the
    /// recording (nothing to send: HTTP 416).
    pub async fn open_recording_range(
        &self,
        session_id: &str,
        start: u64,
        end: Option<u64>,
    ) -> Result<Result<RecordingRange, u64>, UploadError> {
        crate::check_id("session id", session_id)?;
        let path = self.recording_path(session_id);
        let not_found = || UploadError::NotFound(format!("recording of {session_id}"));
        let size = match self.store().head(&path).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let end = end.map_or(size, |e| e.min(size));
        if start >= end {
            return Ok(Err(size));
        }
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(start..end)),
            ..Default::default()
        };
        let got = match self.store().get_opts(&path, options).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        Ok(Ok(RecordingRange {
            bytes: got.into_stream().map_err(UploadError::from).boxed(),
            start,
            end,
            size,
        }))
    }
}

/// Why a session could not be played back.
#[derive(Debug, Error)]
pub enum PlaybackError {
    /// No recording and no legacy session files for this session.
    #[error("session {session} not found: no recording and no legacy session index")]
    NotFound {
        /// The session id.
        session: String,
    },
    /// The session id is not a UUID (it names files: nothing else is accepted).
    #[error("invalid session id {0:?}: expected a UUID")]
    InvalidId(String),
    /// The store failed while the recording was read.
    #[error("reading the recording of session {session}: {source}")]
    Read {
        /// The session id.
        session: String,
        /// The store's error.
        #[source]
        source: UploadError,
    },
    /// The recording is damaged; every event before the damage was delivered.
    #[error("session {session}: {source}")]
    Decode {
        /// The session id.
        session: String,
        /// What was wrong, and where.
        #[source]
        source: CodecError,
    },
    /// A decoding thread of the parallel mode failed (it panicked).
    #[error("session {session}: decoding thread failed: {message}")]
    Worker {
        /// The session id.
        session: String,
        /// What the runtime said.
        message: String,
    },
    /// A legacy session file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Decodes a recording from its byte stream, one event at a time: on the calling task
/// (one job, the default), or with [`with_decode_jobs`](Self::with_decode_jobs) above one,
/// a ProtoStream recording's parts on that many blocking threads, merged in order (the
/// same events, counters and errors; see `parallel.rs`).
pub struct SessionReader {
    session: String,
    chunks: RecordingBytes,
    reader: ProtoReader,
    legacy: Option<std::vec::IntoIter<AuditEvent>>,
    jobs: usize,
    parallel: Option<Box<parallel::ParallelDecode>>,
    started: bool,
    finished: bool,
    done: bool,
}

impl SessionReader {
    /// A reader of `chunks`, the recording of `session` (named in errors).
    pub fn new(session: &str, chunks: RecordingBytes) -> SessionReader {
        SessionReader {
            session: session.to_string(),
            chunks,
            reader: ProtoReader::default(),
            legacy: None,
            jobs: 1,
            parallel: None,
            started: false,
            finished: false,
            done: false,
        }
    }

    /// Decodes a ProtoStream recording's parts on `jobs` blocking threads (1: on the calling
    /// task, part after part). At most `2 × jobs` parts are held at once. Set it before the
    /// first event; legacy recordings are always read whole on the calling task.
    pub fn with_decode_jobs(mut self, jobs: usize) -> SessionReader {
        self.jobs = jobs.max(1);
        self
    }

    /// Opens the recording of `session` in `source`.
    pub async fn open<S: RecordingSource>(
        source: &S,
        session: &str,
    ) -> Result<SessionReader, PlaybackError> {
        match source.open_recording(session).await {
            Ok(chunks) => Ok(SessionReader::new(session, chunks)),
            Err(UploadError::NotFound(_)) => Err(PlaybackError::NotFound {
                session: session.to_string(),
            }),
            Err(UploadError::InvalidId { .. }) => Err(PlaybackError::InvalidId(session.into())),
            Err(source) => Err(PlaybackError::Read {
                session: session.to_string(),
                source,
            }),
        }
    }

    /// Counters of the ProtoStream reader so far (total, skipped duplicates, out of order;
    /// in the parallel mode, of the parts merged so far).
    pub fn stats(&self) -> tapelog_core::codec::ReaderStats {
        match &self.parallel {
            Some(p) => p.stats(),
            None => self.reader.stats(),
        }
    }

    /// Bytes the decoder holds right now (input not yet decoded and decoded data not yet
    /// handed out): what reading costs in memory, whatever the recording's size. In the
    /// parallel mode, the compressed bytes of the parts held (their decoded events are not
    /// counted).
    pub fn buffered_bytes(&self) -> usize {
        match &self.parallel {
            Some(p) => p.buffered_bytes(),
            None => self.reader.buffered_bytes(),
        }
    }

    fn decode_err(&self, kind: ErrorKind) -> PlaybackError {
        PlaybackError::Decode {
            session: self.session.clone(),
            source: CodecError::at(0, 0, kind),
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, PlaybackError> {
        match self.chunks.next().await {
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(source)) => Err(PlaybackError::Read {
                session: self.session.clone(),
                source,
            }),
            None => Ok(None),
        }
    }

    /// Reads the first bytes and picks the format.
    async fn start(&mut self) -> Result<(), PlaybackError> {
        self.started = true;
        let mut head = Vec::new();
        while head.len() < 512 {
            match self.next_chunk().await? {
                Some(b) => head.extend_from_slice(&b),
                None => {
                    self.finished = true;
                    break;
                }
            }
        }
        match detect_format(&head) {
            Format::ProtoV1 | Format::ProtoV2 if self.jobs > 1 => {
                self.parallel = Some(Box::new(parallel::ParallelDecode::new(
                    self.jobs,
                    head,
                    self.finished,
                )));
                Ok(())
            }
            Format::ProtoV1 | Format::ProtoV2 => {
                self.reader.push(&head);
                if self.finished {
                    self.reader.finish();
                }
                Ok(())
            }
            Format::LegacyTar => {
                let mut all = head;
                while let Some(b) = self.next_chunk().await? {
                    if all.len() as u64 + b.len() as u64 > legacy::MAX_LEGACY_BYTES {
                        return Err(self.decode_err(ErrorKind::Legacy(format!(
                            "legacy recording larger than {} bytes",
                            legacy::MAX_LEGACY_BYTES
                        ))));
                    }
                    all.extend_from_slice(&b);
                }
                let events = legacy::read_tar_recording(&all).map_err(|k| self.decode_err(k))?;
                self.legacy = Some(events.into_iter());
                Ok(())
            }
            Format::Unknown => Err(
                self.decode_err(ErrorKind::UnknownFormat(if head.is_empty() {
                    "the recording is empty".into()
                } else {
                    "it starts with neither a ProtoStream header nor a tar header".into()
                })),
            ),
        }
    }

    /// The next event, `None` at the end. After an error the reader is done.
    pub async fn next_event(&mut self) -> Option<Result<AuditEvent, PlaybackError>> {
        if self.done {
            return None;
        }
        let r = self.step().await;
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }

    async fn step(&mut self) -> Option<Result<AuditEvent, PlaybackError>> {
        if !self.started
            && let Err(e) = self.start().await
        {
            return Some(Err(e));
        }
        if let Some(events) = &mut self.legacy {
            return events.next().map(Ok);
        }
        if let Some(p) = &mut self.parallel {
            return p.next(&mut self.chunks, &self.session).await;
        }
        loop {
            match self.reader.poll() {
                Ok(Polled::Event(e)) => return Some(Ok(e)),
                Ok(Polled::End) => return None,
                Ok(Polled::NeedInput) if self.finished => return None,
                Ok(Polled::NeedInput) => match self.next_chunk().await {
                    Ok(Some(b)) => self.reader.push(&b),
                    Ok(None) => {
                        self.reader.finish();
                        self.finished = true;
                    }
                    Err(e) => return Some(Err(e)),
                },
                Err(source) => {
                    return Some(Err(PlaybackError::Decode {
                        session: self.session.clone(),
                        source,
                    }));
                }
            }
        }
    }

    /// The events as a stream.
    pub fn into_stream(self) -> impl Stream<Item = Result<AuditEvent, PlaybackError>> + Send {
        futures::stream::unfold(self, |mut r| async move {
            let item = r.next_event().await?;
            Some((item, r))
        })
    }
}

/// Playback of sessions kept in a recordings store and, for old sessions, in the legacy
/// per-server layout of a log directory.
pub struct Playback<S> {
    recordings: S,
    log_dir: Option<PathBuf>,
    decode_jobs: usize,
}

impl<S: RecordingSource> Playback<S> {
    /// Playback of recordings in `recordings`; `log_dir` (upstream's `<data_dir>/log`), when
    /// given, is searched for legacy sessions.
    pub fn new(recordings: S, log_dir: Option<&Path>) -> Playback<S> {
        Playback {
            recordings,
            log_dir: log_dir.map(Path::to_path_buf),
            decode_jobs: 1,
        }
    }

    /// Recordings are decoded on `jobs` threads ([`SessionReader::with_decode_jobs`]);
    /// 1, the default: part after part on the calling task.
    pub fn with_decode_jobs(mut self, jobs: usize) -> Playback<S> {
        self.decode_jobs = jobs.max(1);
        self
    }

    async fn open(&self, session: &str) -> Result<SessionReader, PlaybackError> {
        Ok(SessionReader::open(&self.recordings, session)
            .await?
            .with_decode_jobs(self.decode_jobs))
    }

    fn check(session: &str) -> Result<(), PlaybackError> {
        crate::check_id("session id", session)
            .map_err(|_| PlaybackError::InvalidId(session.to_string()))
    }

    fn legacy(&self, session: &str) -> Result<Option<LegacySession>, PlaybackError> {
        match &self.log_dir {
            Some(dir) => LegacySession::find(dir, session),
            None => Ok(None),
        }
    }

    /// The session's events with index ≥ `start_index`, in recording order, streamed as
    /// the recording is read (upstream's `StreamSessionEvents`). A damaged recording yields
    /// every event before the damage, then the error.
    pub async fn stream_session_events(
        &self,
        session: &str,
        start_index: i64,
    ) -> Result<BoxStream<'static, Result<AuditEvent, PlaybackError>>, PlaybackError> {
        Self::check(session)?;
        let events = match self.open(session).await {
            Ok(r) => r.into_stream().boxed(),
            Err(PlaybackError::NotFound { .. }) => match self.legacy(session)? {
                Some(l) => futures::stream::iter(l.events(true)?.into_iter().map(Ok)).boxed(),
                None => {
                    return Err(PlaybackError::NotFound {
                        session: session.into(),
                    });
                }
            },
            Err(e) => return Err(e),
        };
        Ok(events
            .try_filter(move |e| futures::future::ready(e.index() >= start_index))
            .boxed())
    }

    /// Upstream's `GetSessionEvents(sid, after)`: the session's events in the legacy
    /// playback view from position `after` on (the first `after` are skipped), each with its
    /// position in the `id` cursor field. Print events carry no data: fetch the bytes with
    /// [`get_session_chunk`](Self::get_session_chunk).
    pub async fn get_session_events(
        &self,
        session: &str,
        after: usize,
    ) -> Result<Vec<EventFields>, PlaybackError> {
        Self::check(session)?;
        if let Some(l) = self.legacy(session)? {
            return Ok(l
                .events(false)?
                .iter()
                .enumerate()
                .skip(after)
                .map(|(n, e)| {
                    tapelog_core::playback::with_cursor(EventFields::from_event(e), n as i64)
                })
                .collect());
        }
        let mut reader = self.open(session).await?;
        let mut view = PlaybackView::new();
        let mut out = Vec::new();
        while let Some(e) = reader.next_event().await {
            let e = e?;
            let position = view.kept();
            if let Some(fields) = view.convert(&e)
                && position >= after as i64
            {
                out.push(fields);
            }
        }
        Ok(out)
    }

    /// Upstream's `GetSessionChunk(sid, offset, max)`: up to `max` bytes (capped at 5 MiB)
    /// of the session's terminal output from byte `offset`; empty past the end.
    pub async fn get_session_chunk(
        &self,
        session: &str,
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>, PlaybackError> {
        Self::check(session)?;
        let mut window = ChunkWindow::new(offset, max);
        if let Some(l) = self.legacy(session)? {
            l.read_chunks(&mut window)?;
            return Ok(window.into_bytes());
        }
        let mut reader = self.open(session).await?;
        while !window.is_full() {
            match reader.next_event().await {
                Some(Ok(AuditEvent::SessionPrint(p))) => {
                    window.feed(u64::try_from(p.offset).unwrap_or(0), &p.data)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(window.into_bytes())
    }
}
