//! [`RemoteStreamer`]: the session writer's [`AuditStreamer`] over the stream endpoints of
//! `tapelog serve`, so that [`SessionWriter`](tapelog_session::SessionWriter) records through
//! a server exactly as it records into a local store.
//!
//! A [`RemoteStream`] encodes each event on the caller's side (core `encode_record`: trimmed
//! or refused as Teleport does, framed as in a recording part) into a batch, and POSTs the
//! batch to `/v1/streams/{upload}/records` when it reaches [`RemoteStreamConfig::batch_bytes`]
//! (the caller waits: back-pressure) or [`RemoteStreamConfig::batch_delay`] after its first
//! event (a background task), and before complete and close. One POST is in flight at a time,
//! so the server gets the records in order. Every answer is a stream status; it goes into the
//! `watch` channel the writer reads to drop confirmed events from its replay buffer.
//!
//! Failures are sorted the way the writer reacts ([`StreamFailure`]):
//! - the server unreachable, a dropped connection, 5xx, 429, and 404 on an open stream (the
//!   server restarted and does not know it), and every replica failing
//!   ([`ClientError::AllServersFailed`]): `Transient`: the writer resumes the upload, which
//!   opens it on the (new) server, and replays what the status did not confirm. With
//!   several replicas the resume starts at the server the stream was open on and goes on to
//!   the next one once that one is unreachable (not while it answers 503: shutting down, it
//!   still uploads what the stream holds); the next opens the upload from the storage they
//!   share. A
//!   failed batch also closes the status channel so that an idle writer notices;
//! - 401/403, 409 (being completed elsewhere), an invalid id, TLS failures, and 404 on
//!   resume (the upload is gone): `Unrecoverable`;
//! - an event that can't be encoded within 64 KiB: `Refused` (from `record`, at once).
//!   Should the server still refuse a batch as a bad or too large body (400/413), the batch
//!   is sent again one record at a time and the records refused alone are dropped and
//!   counted ([`RemoteStreamer::refused_records`]): one bad record never takes its
//!   neighbours with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tapelog_core::AuditEvent;
use tapelog_core::codec::writer::{RECORD_HEADER_SIZE, encode_record};
use tapelog_core::stream::StreamStatus;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{Client, ClientError};
use tapelog_api::{ErrorCode, StreamStatusBody};
use tapelog_audit::clock::SharedClock;
use tapelog_session::{AuditStreamer, SessionStream, StreamFailure};

/// How a [`RemoteStream`] batches records.
#[derive(Debug, Clone, Copy)]
pub struct RemoteStreamConfig {
    /// A batch this large is sent at once (default 64 KiB).
    pub batch_bytes: usize,
    /// A batch is sent at most this long after its first record (default 50 ms).
    pub batch_delay: Duration,
}

impl Default for RemoteStreamConfig {
    fn default() -> RemoteStreamConfig {
        RemoteStreamConfig {
            batch_bytes: 64 << 10,
            batch_delay: Duration::from_millis(50),
        }
    }
}

/// Opens recording streams on a server (see the module documentation).
pub struct RemoteStreamer {
    client: Client,
    config: RemoteStreamConfig,
    refused: Arc<AtomicU64>,
    /// The server (index in the client's list) each upload's stream was last open on, until
    /// it is completed: a resume starts there (see `Client::resume_stream_at`).
    holders: Holders,
    /// Stamps the streams' statuses (the system clock unless [`RemoteStreamer::with_clock`]).
    clock: SharedClock,
}

impl RemoteStreamer {
    /// Streams through `client` with `config`.
    pub fn new(client: Client, config: RemoteStreamConfig) -> RemoteStreamer {
        RemoteStreamer {
            client,
            config,
            refused: Arc::new(AtomicU64::new(0)),
            holders: Holders::default(),
            clock: tapelog_audit::clock::system(),
        }
    }

    /// The same streamer stamping its streams' statuses with `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> RemoteStreamer {
        self.clock = clock;
        self
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Records the server refused one by one (400/413) and that were dropped, over every
    /// stream this streamer opened.
    pub fn refused_records(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn open(&self, status: StreamStatusBody, server: usize) -> Box<dyn SessionStream> {
        self.holders.set(&status.upload_id, server);
        Box::new(RemoteStream::start(
            self.client.clone(),
            status,
            self.config,
            self.refused.clone(),
            self.holders.clone(),
            self.clock.clone(),
        ))
    }
}

impl AuditStreamer for RemoteStreamer {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            let (status, server) = self
                .client
                .create_stream_at(session_id)
                .await
                .map_err(|e| classify(e, Call::Open))?;
            Ok(self.open(status, server))
        })
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            let holder = self.holders.get(upload_id);
            let (status, server) = self
                .client
                .resume_stream_at(upload_id, session_id, holder)
                .await
                .map_err(|e| classify(e, Call::Open))?;
            Ok(self.open(status, server))
        })
    }
}

/// Upload id → the index of the server its stream was last open on.
#[derive(Clone, Default)]
struct Holders(Arc<Mutex<HashMap<String, usize>>>);

impl Holders {
    fn set(&self, upload_id: &str, server: usize) {
        lock(&self.0).insert(upload_id.to_string(), server);
    }

    fn get(&self, upload_id: &str) -> Option<usize> {
        lock(&self.0).get(upload_id).copied()
    }

    fn forget(&self, upload_id: &str) {
        lock(&self.0).remove(upload_id);
    }
}

/// Which kind of call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Create or resume: a 404 means the upload is gone.
    Open,
    /// A call on an open stream: a 404 means this server does not have it open (restarted).
    OnStream,
}

/// Sorts a client error for the session writer (see the module documentation).
fn classify(e: ClientError, call: Call) -> StreamFailure {
    let transient = match &e {
        ClientError::Connect { .. }
        | ClientError::Timeout { .. }
        | ClientError::Transport { .. }
        | ClientError::BadAnswer { .. }
        | ClientError::AllServersFailed { .. } => true,
        ClientError::Api { status, code, .. } => match (status, code) {
            (_, Some(ErrorCode::InvalidId)) => false,
            (404, _) => call == Call::OnStream,
            (401 | 403 | 409, _) => false,
            (400 | 413 | 415, _) => false,
            _ => true,
        },
        ClientError::Tls { .. }
        | ClientError::InvalidUrl { .. }
        | ClientError::CredentialsFile { .. }
        | ClientError::Credentials(_)
        | ClientError::InvalidId { .. }
        | ClientError::Stopped { .. }
        | ClientError::Unsupported(_) => false,
    };
    if transient {
        StreamFailure::transient(e)
    } else {
        StreamFailure::unrecoverable(e)
    }
}

/// Whether the server refused the body's content (not the caller, not the stream).
fn is_refusal(e: &ClientError) -> bool {
    matches!(e.code(), Some(ErrorCode::BadRequest | ErrorCode::TooLarge))
        || matches!(
            e,
            ClientError::Api {
                status: 400 | 413,
                code: None,
                ..
            }
        )
}

/// One recording stream on the server (see the module documentation).
pub struct RemoteStream {
    shared: Arc<Shared>,
    statuses: watch::Receiver<StreamStatus>,
    flusher: JoinHandle<()>,
}

struct Batch {
    /// Framed records not sent yet.
    bytes: Vec<u8>,
    /// Set when a send failed: every later call fails the same way.
    failed: Option<StreamFailure>,
}

struct Shared {
    client: Client,
    upload_id: String,
    config: RemoteStreamConfig,
    batch: Mutex<Batch>,
    /// Held while a batch is being sent: one request at a time, in order.
    sending: tokio::sync::Mutex<()>,
    /// Dropped when the stream fails, which closes the channel (the writer then recovers).
    status: Mutex<Option<watch::Sender<StreamStatus>>>,
    /// A record was added to an empty batch.
    queued: Notify,
    refused: Arc<AtomicU64>,
    holders: Holders,
    clock: SharedClock,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_status(body: &StreamStatusBody, clock: &SharedClock) -> StreamStatus {
    StreamStatus {
        upload_id: body.upload_id.clone(),
        last_event_index: body.last_event_index,
        last_upload_time_ms: clock.unix_ms(),
    }
}

impl RemoteStream {
    fn start(
        client: Client,
        status: StreamStatusBody,
        config: RemoteStreamConfig,
        refused: Arc<AtomicU64>,
        holders: Holders,
        clock: SharedClock,
    ) -> RemoteStream {
        let (tx, rx) = watch::channel(to_status(&status, &clock));
        let shared = Arc::new(Shared {
            client,
            upload_id: status.upload_id,
            config,
            batch: Mutex::new(Batch {
                bytes: Vec::new(),
                failed: None,
            }),
            sending: tokio::sync::Mutex::new(()),
            status: Mutex::new(Some(tx)),
            queued: Notify::new(),
            refused,
            holders,
            clock,
        });
        let flusher = tokio::spawn(flush_after_delay(shared.clone()));
        RemoteStream {
            shared,
            statuses: rx,
            flusher,
        }
    }

    /// The upload this stream writes.
    pub fn upload_id(&self) -> &str {
        &self.shared.upload_id
    }
}

impl Drop for RemoteStream {
    fn drop(&mut self) {
        self.flusher.abort();
    }
}

/// The background sender: a batch goes out `batch_delay` after its first record.
/// (Aborted when its stream is dropped.)
async fn flush_after_delay(shared: Arc<Shared>) {
    loop {
        shared.queued.notified().await;
        tokio::time::sleep(shared.config.batch_delay).await;
        if shared.flush().await.is_err() {
            return;
        }
    }
}

impl Shared {
    fn failed(&self) -> Option<StreamFailure> {
        lock(&self.batch).failed.clone()
    }

    fn fail(&self, f: StreamFailure) {
        lock(&self.batch).failed.get_or_insert(f);
        lock(&self.status).take();
    }

    fn publish(&self, body: &StreamStatusBody) {
        if let Some(tx) = lock(&self.status).as_ref() {
            tx.send_replace(to_status(body, &self.clock));
        }
    }

    /// Encodes `event` into the batch; `Ok(true)` when the batch is full.
    fn add(&self, event: &AuditEvent) -> Result<bool, StreamFailure> {
        let mut b = lock(&self.batch);
        if let Some(f) = &b.failed {
            return Err(f.clone());
        }
        let at = b.bytes.len();
        b.bytes.extend_from_slice(&[0; RECORD_HEADER_SIZE]);
        match encode_record(event, &mut b.bytes) {
            Ok(len) => {
                let len = len as u32;
                b.bytes[at..at + RECORD_HEADER_SIZE].copy_from_slice(&len.to_be_bytes());
            }
            Err(e) => {
                b.bytes.truncate(at);
                return Err(StreamFailure::refused(e));
            }
        }
        if at == 0 {
            self.queued.notify_one();
        }
        Ok(b.bytes.len() >= self.config.batch_bytes)
    }

    /// Sends what is batched (waiting for a send in flight first).
    async fn flush(&self) -> Result<(), StreamFailure> {
        let _sending = self.sending.lock().await;
        self.flush_locked().await
    }

    async fn flush_locked(&self) -> Result<(), StreamFailure> {
        let bytes = {
            let mut b = lock(&self.batch);
            if let Some(f) = &b.failed {
                return Err(f.clone());
            }
            std::mem::take(&mut b.bytes)
        };
        if bytes.is_empty() {
            return Ok(());
        }
        match self.send_batch(Bytes::from(bytes)).await {
            Ok(()) => Ok(()),
            Err(f) => {
                self.fail(f.clone());
                Err(f)
            }
        }
    }

    async fn send_batch(&self, records: Bytes) -> Result<(), StreamFailure> {
        match self
            .client
            .write_records(&self.upload_id, records.clone())
            .await
        {
            Ok(status) => {
                self.publish(&status);
                Ok(())
            }
            Err(e) if is_refusal(&e) => self.send_one_by_one(records).await,
            Err(e) => Err(classify(e, Call::OnStream)),
        }
    }

    /// A batch the server refused as a whole: each record alone, dropping those refused.
    async fn send_one_by_one(&self, records: Bytes) -> Result<(), StreamFailure> {
        let singles = split_records(&records);
        if singles.len() <= 1 {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        for one in singles {
            match self.client.write_records(&self.upload_id, one).await {
                Ok(status) => self.publish(&status),
                Err(e) if is_refusal(&e) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(classify(e, Call::OnStream)),
            }
        }
        Ok(())
    }

    /// Sends the rest, then completes or closes the upload.
    async fn finish(&self, complete: bool) -> Result<(), StreamFailure> {
        let _sending = self.sending.lock().await;
        self.flush_locked().await?;
        let result = if complete {
            self.client
                .complete_stream(&self.upload_id)
                .await
                .map(|_| self.holders.forget(&self.upload_id))
        } else {
            self.client
                .close_stream(&self.upload_id)
                .await
                .map(|s| self.publish(&s))
        };
        let result = result.map_err(|e| classify(e, Call::OnStream));
        if let Err(f) = &result {
            self.fail(f.clone());
        }
        result
    }
}

/// The framed records of a batch, one `Bytes` each (a short tail is kept as it is: the
/// server names what is wrong with it).
fn split_records(records: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let end = match records.get(at..at + RECORD_HEADER_SIZE) {
            Some(h) => {
                let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                (at + RECORD_HEADER_SIZE + len).min(records.len())
            }
            None => records.len(),
        };
        out.push(records.slice(at..end));
        at = end;
    }
    out
}

impl SessionStream for RemoteStream {
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>> {
        Box::pin(async move {
            if self.shared.add(event)? {
                self.shared.flush().await?;
            }
            Ok(())
        })
    }

    fn statuses(&self) -> watch::Receiver<StreamStatus> {
        let mut rx = self.statuses.clone();
        // The first value is the create/resume answer: it counts as received.
        if self.shared.failed().is_none() {
            rx.mark_changed();
        }
        rx
    }

    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        Box::pin(async move { self.shared.finish(true).await })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        Box::pin(async move { self.shared.finish(false).await })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn records_split_on_their_framing() {
        let mut b = Vec::new();
        for body in [&b"abc"[..], b"", b"de"] {
            b.extend_from_slice(&(body.len() as u32).to_be_bytes());
            b.extend_from_slice(body);
        }
        b.extend_from_slice(&[0, 0]);
        let parts = split_records(&Bytes::from(b));
        let lens: Vec<usize> = parts.iter().map(Bytes::len).collect();
        assert_eq!(lens, [7, 4, 6, 2]);
    }

    #[test]
    fn failures_sorted_for_the_writer() {
        let api = |status, code| ClientError::Api {
            method: "POST".into(),
            url: "u".into(),
            status,
            code,
            message: "m".into(),
        };
        let transient = |f: StreamFailure| matches!(f, StreamFailure::Transient(_));
        let connect = ClientError::Connect {
            url: "u".into(),
            reason: "refused".into(),
        };
        assert!(transient(classify(connect, Call::OnStream)));
        assert!(transient(classify(
            api(404, Some(ErrorCode::NotFound)),
            Call::OnStream
        )));
        assert!(!transient(classify(
            api(404, Some(ErrorCode::NotFound)),
            Call::Open
        )));
        assert!(!transient(classify(
            api(401, Some(ErrorCode::Unauthenticated)),
            Call::OnStream
        )));
        assert!(!transient(classify(
            api(403, Some(ErrorCode::Forbidden)),
            Call::Open
        )));
        assert!(transient(classify(
            api(503, Some(ErrorCode::Unavailable)),
            Call::OnStream
        )));
        assert!(!transient(classify(
            api(400, Some(ErrorCode::InvalidId)),
            Call::OnStream
        )));
        assert!(is_refusal(&api(413, Some(ErrorCode::TooLarge))));
        assert!(!is_refusal(&api(400, Some(ErrorCode::InvalidId))));
    }
}
