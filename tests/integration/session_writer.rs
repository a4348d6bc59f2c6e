//! Session writer tests, after upstream's `TestSessionWriter`: a whole session read back
//! exactly; recovery when the first status is lost (new upload) and in the middle (resumed
//! upload); backoff bounds on every call when the stream hangs; event defaults; unrecoverable
//! errors ending the writer; print splitting above 64 KiB; the two byte front ends giving the
//! same recording; the blocking-call guard; permanent refusals.
//!
//! Streams are real `RecordingStream`s over `StoreUploader` (in memory or on disk); faults
//! come from a stream wrapper (`FaultyStreamer`) or from `Hooked` uploaders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use tapelog_core::codec::{WriterConfig, read_all};
use tapelog_core::event::{MAX_EVENT_SIZE, Metadata, SessionStart, event_code, event_type};
use tapelog_core::session::{IntakeConfig, PreparerConfig, RecoveryPolicy};
use tapelog_core::stream::{StreamConfig, StreamStatus};
use tapelog_core::{AuditEvent, Timestamp, vectors};
use tapelog_session::{
    AuditStreamer, SessionStream, SessionWriter, SessionWriterConfig, StopCause, StreamFailure,
    UploaderStreamer, WriterError,
};
use tapelog_store::stream::{DriverConfig, RetryPolicy};
use tapelog_store::{Call, Hooked, MultipartUploader, StoreUploader, UploadError};
use tokio::sync::watch;

const SID: &str = vectors::SESSION_ID;
const SERVER: &str = "ade010d6-4e75-4ed8-9f92-886a4f49eb26";
const CLUSTER: &str = "tapelog.example";

fn driver(min: usize) -> DriverConfig {
    DriverConfig {
        stream: StreamConfig {
            writer: WriterConfig {
                min_upload_bytes: min,
                ..WriterConfig::default()
            },
            max_concurrent_uploads: 2,
            inactivity_flush_ms: 60_000,
            release_after_ms: 30_000,
        },
        retry: RetryPolicy {
            attempts: 3,
            step: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
        ..DriverConfig::default()
    }
}

fn config(streamer: Arc<dyn AuditStreamer>) -> SessionWriterConfig {
    let mut c = SessionWriterConfig::new(
        PreparerConfig {
            server_id: SERVER.into(),
            ..PreparerConfig::new(SID, CLUSTER)
        },
        streamer,
    );
    c.recovery = RecoveryPolicy {
        attempts: 5,
        step_ms: 50,
        max_ms: 500,
    };
    c
}

async fn recording(store: &StoreUploader) -> Vec<u8> {
    let path = store.recording_path(SID);
    let got = store.store().get(&path).await.unwrap();
    got.bytes().await.unwrap().to_vec()
}

/// Reads a recording and checks it is clean (no duplicates, nothing out of order).
fn decode(bytes: &[u8]) -> Vec<AuditEvent> {
    let got = read_all(bytes);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.skipped, 0, "duplicates in the recording");
    assert_eq!(got.stats.out_of_order, 0, "holes in the recording");
    got.events
}

fn assert_same(got: &[AuditEvent], want: &[AuditEvent]) {
    assert_eq!(got.len(), want.len(), "event count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "event {i}");
    }
}

/// What the first stream of a [`FaultyStreamer`] does wrong.
#[derive(Default, Clone, Copy)]
struct Faults {
    /// Record call `n` fails (transient) and the stream dies.
    fail_at: Option<usize>,
    /// Record call `n` never returns.
    hang_at: Option<usize>,
    /// Record call `n` fails as unrecoverable.
    unrecoverable_at: Option<usize>,
    /// Record call `n` is refused for good (the stream goes on).
    refuse_at: Option<usize>,
    /// Its statuses never reach the writer.
    hide_status: bool,
}

/// Opens real streams; the first one gets `faults`.
struct FaultyStreamer {
    inner: UploaderStreamer<StoreUploader>,
    faults: Faults,
    creates: AtomicUsize,
    resumes: AtomicUsize,
}

impl FaultyStreamer {
    fn new(store: &StoreUploader, min: usize, faults: Faults) -> Arc<FaultyStreamer> {
        Arc::new(FaultyStreamer {
            inner: UploaderStreamer::new(Arc::new(store.clone()), driver(min)),
            faults,
            creates: AtomicUsize::new(0),
            resumes: AtomicUsize::new(0),
        })
    }
}

impl AuditStreamer for FaultyStreamer {
    fn create<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        Box::pin(async move {
            let n = self.creates.fetch_add(1, Ordering::SeqCst);
            let inner = self.inner.create(session_id).await?;
            if n > 0 {
                return Ok(inner);
            }
            let (tx, hidden) = watch::channel(StreamStatus {
                upload_id: String::new(),
                last_event_index: -1,
                last_upload_time_ms: 0,
            });
            Ok(Box::new(FaultyStream {
                inner,
                faults: self.faults,
                calls: AtomicUsize::new(0),
                dead: AtomicBool::new(false),
                hidden: (tx, hidden),
            }) as Box<dyn SessionStream>)
        })
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn SessionStream>, StreamFailure>> {
        self.resumes.fetch_add(1, Ordering::SeqCst);
        self.inner.resume(session_id, upload_id)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

struct FaultyStream {
    inner: Box<dyn SessionStream>,
    faults: Faults,
    calls: AtomicUsize,
    dead: AtomicBool,
    hidden: (watch::Sender<StreamStatus>, watch::Receiver<StreamStatus>),
}

impl SessionStream for FaultyStream {
    fn record<'a>(&'a self, event: &'a AuditEvent) -> BoxFuture<'a, Result<(), StreamFailure>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let f = self.faults;
            if self.dead.load(Ordering::SeqCst) || f.fail_at == Some(n) {
                self.dead.store(true, Ordering::SeqCst);
                return Err(StreamFailure::transient(Injected));
            }
            if f.hang_at == Some(n) {
                futures::future::pending::<()>().await;
            }
            if f.unrecoverable_at == Some(n) {
                return Err(StreamFailure::unrecoverable(Injected));
            }
            if f.refuse_at == Some(n) {
                return Err(StreamFailure::refused(Injected));
            }
            self.inner.record(event).await
        })
    }

    fn statuses(&self) -> watch::Receiver<StreamStatus> {
        if self.faults.hide_status {
            self.hidden.1.clone()
        } else {
            self.inner.statuses()
        }
    }

    fn complete(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        if self.dead.load(Ordering::SeqCst) {
            // A dead stream: its task is cancelled, nothing more is stored.
            return Box::pin(async { Err(StreamFailure::transient(Injected)) });
        }
        self.inner.complete()
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), StreamFailure>> {
        if self.dead.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StreamFailure::transient(Injected)) });
        }
        self.inner.close()
    }
}

/// 1. A whole session (1000 events) to local disk, read back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_recorded_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreUploader::local(dir.path()).unwrap();
    let streamer = Arc::new(UploaderStreamer::new(Arc::new(store.clone()), driver(4096)));
    let w = SessionWriter::new(config(streamer)).await.unwrap();
    // The sample session is already what the preparer makes of it.
    let events = vectors::sample_session(997);
    assert_eq!(events.len(), 1000);
    for e in &events {
        w.record_event(e.clone()).await.unwrap();
    }
    let stats = w.complete().await.unwrap();
    assert_eq!((stats.accepted, stats.lost, stats.recoveries), (1000, 0, 0));
    assert!(stats.warnings(SID).iter().all(|m| !m.contains("lost")));
    assert_same(&decode(&recording(&store).await), &events);
    assert!(store.list_uploads().await.unwrap().is_empty());
    // The writer takes nothing more.
    let err = w.record_event(events[0].clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            WriterError::Finished {
                how: "completed",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(SID), "{err}");
}

/// 2. The first stream fails before any status reached the writer: the upload is unknown, so
/// the writer creates a new one and replays everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_status_lost_creates_a_new_upload_and_replays() {
    let store = StoreUploader::memory();
    let streamer = FaultyStreamer::new(
        &store,
        4096,
        Faults {
            fail_at: Some(10),
            hide_status: true,
            ..Faults::default()
        },
    );
    let w = SessionWriter::new(config(streamer.clone())).await.unwrap();
    let events = vectors::sample_session(200);
    for e in &events {
        w.record_event(e.clone()).await.unwrap();
    }
    let stats = w.complete().await.unwrap();
    assert_eq!(streamer.creates.load(Ordering::SeqCst), 2, "created again");
    assert_eq!(
        streamer.resumes.load(Ordering::SeqCst),
        0,
        "nothing to resume"
    );
    assert_eq!(stats.recoveries, 1);
    assert_eq!(
        stats.replayed, 11,
        "the 10 unconfirmed events and the failed one"
    );
    assert_eq!(stats.lost, 0);
    assert_same(&decode(&recording(&store).await), &events);
}

/// 3. The stream fails in the middle: the writer resumes the same upload and replays only
/// what the stored parts do not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_in_the_middle_resumes_and_replays_the_rest() {
    let store = StoreUploader::memory();
    let streamer = FaultyStreamer::new(
        &store,
        1024,
        Faults {
            fail_at: Some(500),
            ..Faults::default()
        },
    );
    let w = SessionWriter::new(config(streamer.clone())).await.unwrap();
    let events = vectors::noisy_session(1000);
    for (i, e) in events.iter().enumerate() {
        if i == 400 {
            // Let part uploads land and their statuses arrive.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        w.record_event(e.clone()).await.unwrap();
    }
    let stats = w.complete().await.unwrap();
    assert_eq!(streamer.creates.load(Ordering::SeqCst), 1);
    assert_eq!(
        streamer.resumes.load(Ordering::SeqCst),
        1,
        "same upload resumed"
    );
    assert_eq!(stats.recoveries, 1);
    assert!(
        stats.replayed > 0 && stats.replayed < 200,
        "only what no status confirmed is replayed: {stats:?}"
    );
    assert_same(&decode(&recording(&store).await), &events);
}

/// 4. A stream that hangs at event 599: every call returns within the backoff timeout plus a
/// margin, later events are lost and counted, nothing blocks for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_stream_bounds_every_call_and_loses_events() {
    const QUEUE: usize = 32;
    let timeout = Duration::from_secs(1);
    let bound = timeout + Duration::from_millis(500);
    let store = StoreUploader::memory();
    let streamer = FaultyStreamer::new(
        &store,
        4096,
        Faults {
            hang_at: Some(599),
            ..Faults::default()
        },
    );
    let mut c = config(streamer);
    c.intake = IntakeConfig {
        backoff_timeout_ms: timeout.as_millis() as u64,
        backoff_duration_ms: 30_000,
    };
    c.queue_capacity = QUEUE;
    c.finish_timeout = Duration::from_millis(300);
    let w = Arc::new(SessionWriter::new(c).await.unwrap());
    let events = vectors::sample_session(997);
    let mut slowest = Duration::ZERO;
    for e in &events {
        let t = Instant::now();
        w.record_event(e.clone()).await.unwrap();
        let took = t.elapsed();
        assert!(took <= bound, "record_event took {took:?}");
        slowest = slowest.max(took);
    }
    assert!(
        slowest >= timeout,
        "one call waited the timeout: {slowest:?}"
    );
    let s = w.stats();
    // 0..=599 reached the stream, the next QUEUE wait in the queue, the rest is lost (the
    // first of them after waiting the timeout, the others at once, in backoff).
    assert_eq!(s.accepted, 1000);
    assert!(s.slow_writes >= 1, "{s:?}");
    assert_eq!(s.lost, 1000 - 600 - QUEUE as u64, "{s:?}");
    // In backoff, writes (async and blocking) return at once, and count as lost.
    let t = Instant::now();
    assert_eq!(w.write(b"lost bytes").await.unwrap(), 10);
    let w2 = w.clone();
    let n = tokio::task::spawn_blocking(move || w2.write_blocking(b"more"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 4);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(w.stats().lost, s.lost + 2);
    let warnings = w.stats().warnings(SID);
    assert!(warnings[0].contains("lost"), "{warnings:?}");
    // Finishing is bounded too; afterwards every call says why the writer stopped.
    let t = Instant::now();
    let err = w.close().await.unwrap_err();
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());
    assert!(matches!(err, WriterError::Timeout { .. }), "{err}");
    let err = w.record_event(events[0].clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            WriterError::Stopped {
                cause: StopCause::FinishTimedOut(_),
                ..
            }
        ),
        "{err}"
    );
}

/// 5. Defaults set on events: session and server ids, namespace, cluster, uid, time rounded
/// to the millisecond, index; print fields (ci, offset, ms) exactly as upstream computes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_event_defaults() {
    let store = StoreUploader::memory();
    let streamer = Arc::new(UploaderStreamer::new(Arc::new(store.clone()), driver(4096)));
    let t0 = vectors::START_MILLIS as i128 * 1_000_000;
    let now_ns = Arc::new(AtomicI64::new(0));
    let uids = Arc::new(AtomicUsize::new(0));
    let mut c = config(streamer);
    let clock = now_ns.clone();
    c.clock = Some(Arc::new(move || {
        Timestamp::from_unix_nanos(t0 + clock.load(Ordering::SeqCst) as i128)
    }));
    let counter = uids.clone();
    c.uid = Some(Arc::new(move || {
        format!(
            "00000000-0000-4000-8000-{:012}",
            counter.fetch_add(1, Ordering::SeqCst)
        )
    }));
    let w = SessionWriter::new(c).await.unwrap();
    let start: AuditEvent = SessionStart {
        metadata: Metadata {
            type_: event_type::SESSION_START.into(),
            code: event_code::SESSION_START.into(),
            ..Default::default()
        },
        terminal_size: "80:25".into(),
        ..Default::default()
    }
    .into();
    now_ns.store(400_000, Ordering::SeqCst); // +0.4 ms: rounds down
    w.record_event(start).await.unwrap();
    // (clock in ns after t0, bytes) → (index, ci, offset, ms, time in ms after t0)
    let table: &[PrintRow] = &[
        (600_000, b"hello", (1, 0, 0, 0, 1)),
        (700_400_000, b"w", (2, 1, 5, 699, 700)),
        (1_500_500_000, b"xy", (3, 2, 6, 1500, 1501)),
        (1_200_000_000, b"z", (4, 3, 8, 1500, 1200)),
    ];
    for (ns, data, _) in table {
        now_ns.store(*ns, Ordering::SeqCst);
        assert_eq!(w.write(data).await.unwrap(), data.len());
    }
    // A caller-indexed event with index 0 after the first is refused (upstream's check).
    let mut bad = vectors::sample_session(0).remove(1);
    bad.set_index(0);
    let err = w.record_prepared(bad).await.unwrap_err();
    assert!(matches!(err, WriterError::Index { .. }), "{err}");
    assert!(
        err.to_string().contains("missing mandatory event index"),
        "{err}"
    );
    // Upstream's field checks.
    let mut no_code = vectors::sample_session(0).remove(1);
    no_code.metadata_mut().unwrap().code.clear();
    let err = w.record_event(no_code).await.unwrap_err();
    assert!(matches!(err, WriterError::Event { .. }), "{err}");
    w.complete().await.unwrap();

    let got = decode(&recording(&store).await);
    assert_eq!(got.len(), 1 + table.len());
    let s = &got[0];
    assert_eq!(s.index(), 0);
    assert_eq!(s.id(), "00000000-0000-4000-8000-000000000000");
    assert_eq!(s.time(), Timestamp::from_unix_millis(vectors::START_MILLIS));
    assert_eq!(s.cluster_name(), CLUSTER);
    assert_eq!(s.session_id(), SID);
    assert_eq!(s.server_id(), SERVER);
    assert_eq!(s.server_metadata().unwrap().server_namespace, "default");
    for (e, (_, data, (index, ci, offset, ms, at))) in got[1..].iter().zip(table) {
        let AuditEvent::SessionPrint(p) = e else {
            panic!("not a print: {e:?}")
        };
        assert_eq!(
            (
                p.metadata.index,
                p.chunk_index,
                p.offset,
                p.delay_milliseconds
            ),
            (*index, *ci, *offset, *ms),
            "print {data:?}"
        );
        assert_eq!(p.bytes, data.len() as i64);
        assert_eq!(p.data, *data);
        assert_eq!(
            p.metadata.time,
            Timestamp::from_unix_millis(vectors::START_MILLIS + at)
        );
        assert_eq!(p.metadata.id, "", "prints carry no uid");
        assert_eq!(p.metadata.cluster_name, CLUSTER);
    }
}

/// 6a. The store says the upload is gone: recovery can't resume it, the writer ends and every
/// later call returns the typed error at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecoverable_store_error_ends_the_writer() {
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let up = Hooked::new(StoreUploader::memory(), move |call: Call<'_>| match call {
        Call::UploadPart(u, ..) | Call::ListParts(u) | Call::ReadPart(u, _)
            if flag.load(Ordering::SeqCst) =>
        {
            Err(UploadError::NotFound(u.id.clone()))
        }
        _ => Ok(()),
    });
    let streamer = Arc::new(UploaderStreamer::new(Arc::new(up), driver(1024)));
    let w = SessionWriter::new(config(streamer)).await.unwrap();
    let events = vectors::noisy_session(20_000);
    let mut failed = None;
    for (i, e) in events.iter().enumerate() {
        if i == 10 {
            broken.store(true, Ordering::SeqCst);
        }
        let t = Instant::now();
        let r = w.record_event(e.clone()).await;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        if let Err(err) = r {
            failed = Some((i, err));
            break;
        }
    }
    let (i, err) = failed.expect("the writer never stopped");
    assert!(i > 10, "stopped at {i}");
    assert!(
        matches!(
            &err,
            WriterError::Stopped {
                cause: StopCause::Unrecoverable(StreamFailure::Unrecoverable(_)),
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(SID) && msg.contains("not found"), "{msg}");
    let t = Instant::now();
    let again = w.complete().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(200));
    assert!(matches!(again, WriterError::Stopped { .. }), "{again}");
    assert!(
        w.write_blocking(b"x")
            .is_err_and(|e| e.to_string().contains("stopped"))
    );
}

/// 6b. The stream itself reports an unrecoverable error (upstream: reserving a part
/// failed): no recovery is tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecoverable_stream_error_ends_the_writer_without_recovery() {
    let store = StoreUploader::memory();
    let streamer = FaultyStreamer::new(
        &store,
        4096,
        Faults {
            unrecoverable_at: Some(0),
            ..Faults::default()
        },
    );
    let w = SessionWriter::new(config(streamer.clone())).await.unwrap();
    let events = vectors::sample_session(10);
    w.record_event(events[0].clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let err = loop {
        match w.record_event(events[1].clone()).await {
            Err(e) => break e,
            Ok(()) => {
                assert!(Instant::now() < deadline, "the writer did not stop");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    assert!(err.to_string().contains("cannot continue"), "{err}");
    assert_eq!(streamer.creates.load(Ordering::SeqCst), 1, "no new stream");
    assert_eq!(streamer.resumes.load(Ordering::SeqCst), 0, "no resume");
}

/// 7. One write of 200 KiB: several prints, each record within 64 KiB, the data concatenates
/// back, offsets and chunk indexes continue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_write_is_split_into_fitting_prints() {
    let store = StoreUploader::memory();
    let streamer = Arc::new(UploaderStreamer::new(Arc::new(store.clone()), driver(4096)));
    let w = SessionWriter::new(config(streamer)).await.unwrap();
    w.write(b"$ ").await.unwrap();
    let data: Vec<u8> = (0..200 * 1024u32).map(|i| (i * 31 % 253) as u8).collect();
    assert_eq!(w.write(&data).await.unwrap(), data.len());
    w.complete().await.unwrap();
    let got = decode(&recording(&store).await);
    // "$ ", then 200 KiB in pieces of a little under 64 KiB: 4 of them.
    assert_eq!(got.len(), 1 + 4, "{}", got.len());
    let mut joined = Vec::new();
    let mut offset = 0;
    for (i, e) in got.iter().enumerate() {
        let AuditEvent::SessionPrint(p) = e else {
            panic!("not a print")
        };
        assert!(e.size() <= MAX_EVENT_SIZE, "event {i}: {}", e.size());
        assert!(
            e.oneof_len() <= MAX_EVENT_SIZE,
            "record {i}: {}",
            e.oneof_len()
        );
        assert_eq!((p.chunk_index, p.offset), (i as i64, offset));
        assert_eq!(p.bytes, p.data.len() as i64);
        offset += p.data.len() as i64;
        joined.extend_from_slice(&p.data);
    }
    assert_eq!(&joined[..2], b"$ ");
    assert_eq!(&joined[2..], &data[..]);
    // The pieces of one write share its time.
    assert!(got[1..].iter().all(|e| e.time() == got[1].time()));
}

fn chunks() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..300).map(vectors::line).collect();
    v.insert(150, vec![b'#'; 100 * 1024]);
    v
}

/// Decoded events with the clock-dependent fields cleared.
fn modulo_time(events: Vec<AuditEvent>) -> Vec<AuditEvent> {
    events
        .into_iter()
        .map(|mut e| {
            e.set_time(Timestamp::ZERO);
            if let AuditEvent::SessionPrint(p) = &mut e {
                p.delay_milliseconds = 0;
            }
            e
        })
        .collect()
}

/// 8. `std::io::Write` from a plain thread and `AsyncWrite` from a task give the same
/// recording (but for times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_and_async_front_ends_make_the_same_recording() {
    use std::io::Write as _;

    let (s1, s2) = (StoreUploader::memory(), StoreUploader::memory());
    let mk = |s: &StoreUploader| Arc::new(UploaderStreamer::new(Arc::new(s.clone()), driver(4096)));
    let w1 = Arc::new(SessionWriter::new(config(mk(&s1))).await.unwrap());
    let mut w2 = SessionWriter::new(config(mk(&s2))).await.unwrap();

    let tw = w1.clone();
    let thread = std::thread::spawn(move || {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "a plain thread"
        );
        let mut out: &SessionWriter = &tw;
        for c in chunks() {
            out.write_all(&c).unwrap();
        }
        out.flush().unwrap();
    });
    let task = tokio::spawn(async move {
        for c in chunks() {
            tokio::io::AsyncWriteExt::write_all(&mut w2, &c)
                .await
                .unwrap();
        }
        tokio::io::AsyncWriteExt::flush(&mut w2).await.unwrap();
        w2
    });
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    let w2 = task.await.unwrap();
    w1.complete().await.unwrap();
    w2.complete().await.unwrap();
    let a = modulo_time(decode(&recording(&s1).await));
    let b = modulo_time(decode(&recording(&s2).await));
    assert!(a.len() >= 302, "{}", a.len());
    assert_same(&a, &b);
    let bytes: Vec<u8> = a
        .iter()
        .flat_map(|e| e.print_data().unwrap().to_vec())
        .collect();
    assert_eq!(bytes, chunks().concat());
}

/// The blocking front end refuses to run on a current-thread runtime (it would stall the
/// writer's own task) instead of hanging.
#[tokio::test]
async fn blocking_calls_are_refused_on_a_current_thread_runtime() {
    use std::io::Write as _;
    let store = StoreUploader::memory();
    let streamer = Arc::new(UploaderStreamer::new(Arc::new(store.clone()), driver(4096)));
    let mut w = SessionWriter::new(config(streamer)).await.unwrap();
    let err = w.write_blocking(b"x").unwrap_err();
    assert!(
        matches!(err, WriterError::BlockingInRuntime { .. }),
        "{err}"
    );
    let io = w.write(b"y").await.map(|_| ());
    assert!(io.is_ok());
    let e = std::io::Write::write(&mut w, b"z").unwrap_err();
    assert!(e.to_string().contains("current-thread"), "{e}");
    let _ = w.flush();
    w.complete().await.unwrap();
    let got = decode(&recording(&store).await);
    assert_eq!(got.len(), 1, "only the async write was recorded");
}

/// A permanent refusal drops that event only (counted), the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_event_is_dropped_and_counted() {
    let store = StoreUploader::memory();
    let streamer = FaultyStreamer::new(
        &store,
        4096,
        Faults {
            refuse_at: Some(3),
            ..Faults::default()
        },
    );
    let w = SessionWriter::new(config(streamer)).await.unwrap();
    let events = vectors::sample_session(8);
    for e in &events {
        w.record_event(e.clone()).await.unwrap();
    }
    let stats = w.complete().await.unwrap();
    assert_eq!((stats.refused, stats.lost, stats.recoveries), (1, 1, 0));
    let got = read_all(&recording(&store).await);
    assert!(got.error.is_none());
    let mut want = events.clone();
    want.remove(3);
    assert_eq!(got.events, want);
    assert_eq!(
        got.stats.out_of_order, 1,
        "the hole left by the refused event"
    );
}

/// Many writers at once on one store, through threads and tasks concurrently on the same
/// writer: the order of one caller's events is kept and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_keep_indexes_in_order() {
    let store = StoreUploader::memory();
    let streamer = Arc::new(UploaderStreamer::new(Arc::new(store.clone()), driver(2048)));
    let mut c = config(streamer);
    c.queue_capacity = 4;
    let w = Arc::new(SessionWriter::new(c).await.unwrap());
    let seen = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let w = w.clone();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                w.write(format!("task {t} line {i}\r\n").as_bytes())
                    .await
                    .unwrap();
                *seen.lock().unwrap() += 1;
            }
        }));
    }
    let tw = w.clone();
    let thread = tokio::task::spawn_blocking(move || {
        for i in 0..200 {
            tw.write_blocking(format!("thread line {i}\r\n").as_bytes())
                .unwrap();
        }
    });
    for t in tasks {
        t.await.unwrap();
    }
    thread.await.unwrap();
    let stats = w.complete().await.unwrap();
    assert_eq!((stats.accepted, stats.lost), (1000, 0));
    let got = decode(&recording(&store).await);
    assert_eq!(got.len(), 1000);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.index(), i as i64);
    }
    let text = String::from_utf8(
        got.iter()
            .flat_map(|e| e.print_data().unwrap().to_vec())
            .collect(),
    )
    .unwrap();
    for t in 0..4 {
        let mine: Vec<&str> = text
            .split("\r\n")
            .filter(|l| l.starts_with(&format!("task {t} ")))
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("task {t} line {i}")).collect();
        assert_eq!(mine, want, "task {t}'s lines in order");
    }
    assert_eq!(*seen.lock().unwrap(), 800);
}

/// (input, bytes, expected (index, ci, offset, ms, time or bytes)) of a print table row.
type PrintRow = (i64, &'static [u8], (i64, i64, i64, i64, i64));
