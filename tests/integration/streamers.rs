//! The streamer wrappers (callback, reporting, tee, discard, streamer-and-emitter), the done
//! signals of `RecordingStream` and `SessionWriter`, and the writer's status, on real
//! `RecordingStream`s over in-memory stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStoreExt;
use tapelog_audit::emit::{CallbackEmitter, EmitError, Emitter, MemoryEmitter};
use tapelog_core::codec::{WriterConfig, read_all};
use tapelog_core::complete::SESSION_UPLOAD_INDEX;
use tapelog_core::event::{event_code, event_type};
use tapelog_core::session::{PreparerConfig, RecoveryPolicy, tee_emits};
use tapelog_core::stream::StreamConfig;
use tapelog_core::{AuditEvent, Timestamp, vectors};
use tapelog_session::{
    AuditStreamer, CallbackStreamer, DiscardStream, DiscardStreamer, ReportingStreamer,
    SessionStream, SessionWriter, SessionWriterConfig, StopCause, StreamEmitter, StreamFailure,
    StreamerAndEmitter, TeeStreamer, UploaderStreamer, WriterError, WriterState,
};
use tapelog_store::complete::EventOutcome;
use tapelog_store::stream::{DriverConfig, DriverError, RecordingStream, RetryPolicy};
use tapelog_store::{Call, Hooked, StoreUploader, UploadError};

const SID: &str = vectors::SESSION_ID;
const SERVER: &str = "ade010d6-4e75-4ed8-9f92-886a4f49eb26";
const CLUSTER: &str = "tapelog.example";
/// Longest wait for anything in these tests.
const BOUND: Duration = Duration::from_secs(10);

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
        attempts: 3,
        step_ms: 20,
        max_ms: 100,
    };
    c
}

fn memory_streamer(store: &StoreUploader) -> UploaderStreamer<StoreUploader> {
    UploaderStreamer::new(Arc::new(store.clone()), driver(4096))
}

async fn recording(store: &StoreUploader) -> Vec<AuditEvent> {
    let path = store.recording_path(SID);
    let got = store.store().get(&path).await.unwrap();
    let bytes = got.bytes().await.unwrap();
    let read = read_all(&bytes);
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.stats.skipped, 0, "duplicates in the recording");
    read.events
}

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f).await.expect("timed out")
}

#[derive(Debug, thiserror::Error)]
#[error("refused by the test hook")]
struct Hooked403;

/// The callback's hook refuses one event type: that event is not in the recording, the rest
/// is, the writer counts it as refused, and the hook saw the session id on every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_an_event_and_it_is_not_recorded() {
    let store = StoreUploader::memory();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let streamer =
        CallbackStreamer::new(memory_streamer(&store)).on_record(move |sid, event: &AuditEvent| {
            seen2.lock().unwrap().push(sid.to_string());
            if event.event_type() == event_type::RESIZE {
                return Err(StreamFailure::refused(Hooked403));
            }
            Ok(())
        });
    let w = SessionWriter::new(config(Arc::new(streamer)))
        .await
        .unwrap();
    let events = vectors::sample_session(20);
    for e in &events {
        w.record_event(e.clone()).await.unwrap();
    }
    let stats = w.complete().await.unwrap();
    assert_eq!(stats.refused, 1, "{stats:?}");
    let got = recording(&store).await;
    let want: Vec<AuditEvent> = events
        .iter()
        .filter(|e| e.event_type() != event_type::RESIZE)
        .cloned()
        .collect();
    assert_eq!(got.len(), events.len() - 1);
    assert_eq!(got, want);
    assert!(got.iter().all(|e| e.event_type() != event_type::RESIZE));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), events.len());
    assert!(seen.iter().all(|s| s == SID));
}

/// The create hook's error is the streamer's: the writer can't open its first stream.
#[tokio::test]
async fn callback_create_hook_fails_the_open() {
    let store = StoreUploader::memory();
    let streamer = CallbackStreamer::new(memory_streamer(&store))
        .on_create(|_| Err(StreamFailure::unrecoverable(Hooked403)));
    let err = SessionWriter::new(config(Arc::new(streamer)))
        .await
        .err()
        .expect("the open must fail");
    assert!(matches!(err, WriterError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains("refused by the test hook"),
        "{err}"
    );
}

/// After complete, the reporting streamer emits exactly one `session.upload` for the session,
/// with the store's URL, the given time and id, and reports it; close emits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_emits_one_session_upload_after_complete() {
    let store = StoreUploader::memory();
    let emitter = Arc::new(MemoryEmitter::new());
    let (tx, mut reports) = tokio::sync::mpsc::channel(4);
    let at = Timestamp::from_unix_millis(1_700_000_000_123);
    let streamer =
        ReportingStreamer::over_uploader(memory_streamer(&store), emitter.clone(), CLUSTER)
            .with_clock(Arc::new(move || at))
            .with_ids(Arc::new(|| "upload-event-id".to_string()))
            .with_reports(tx);
    let streamer = Arc::new(streamer);
    let w = SessionWriter::new(config(streamer.clone())).await.unwrap();
    for e in vectors::sample_session(30) {
        w.record_event(e).await.unwrap();
    }
    assert!(emitter.is_empty(), "nothing before complete");
    w.complete().await.unwrap();

    let got = emitter.events();
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!(e.event_type(), event_type::SESSION_UPLOAD);
    assert_eq!(e.code(), event_code::SESSION_UPLOAD);
    assert_eq!(e.session_id(), SID);
    assert_eq!(e.id(), "upload-event-id");
    assert_eq!(e.index(), SESSION_UPLOAD_INDEX);
    assert_eq!(e.time(), at);
    assert_eq!(e.cluster_name(), CLUSTER);
    let AuditEvent::SessionUpload(upload) = e else {
        panic!("not a SessionUpload: {e:?}");
    };
    assert_eq!(
        upload.session_url,
        tapelog_store::MultipartUploader::recording_url(&store, SID)
    );
    assert!(upload.session_url.ends_with(SID), "{}", upload.session_url);
    // The recording it announces is there.
    assert_eq!(recording(&store).await.len(), 33);

    let report = bounded(reports.recv()).await.unwrap();
    assert_eq!(report.session_id, SID);
    assert!(!report.upload_id.is_empty());
    assert!(report.result.is_ok());
    assert!(
        matches!(&report.upload_event, Some(EventOutcome::Emitted(id)) if id == "upload-event-id"),
        "{report:?}"
    );

    // A closed stream announces nothing.
    let s = streamer.create(SID).await.unwrap();
    s.record(&vectors::sample_session(1)[0]).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(emitter.len(), 1);
    assert!(reports.try_recv().is_err(), "no report for close");
}

/// A completion that fails emits no `session.upload`, and the report carries the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_emits_nothing_when_complete_fails() {
    let store = StoreUploader::memory();
    let hooked = Hooked::new(store.clone(), |call| match call {
        Call::Complete(..) => Err(UploadError::NotFound("the upload vanished".into())),
        _ => Ok(()),
    });
    let emitter = Arc::new(MemoryEmitter::new());
    let (tx, mut reports) = tokio::sync::mpsc::channel(4);
    let streamer = ReportingStreamer::over_uploader(
        UploaderStreamer::new(Arc::new(hooked), driver(4096)),
        emitter.clone(),
        CLUSTER,
    )
    .with_reports(tx);
    let s = streamer.create(SID).await.unwrap();
    for e in vectors::sample_session(5) {
        s.record(&e).await.unwrap();
    }
    let err = s.complete().await.unwrap_err();
    assert!(err.to_string().contains("vanished"), "{err}");
    assert!(emitter.is_empty());
    let report = bounded(reports.recv()).await.unwrap();
    assert!(report.result.is_err());
    assert!(report.upload_event.is_none());
}

/// The tee records every event and emits the ones that are not terminal detail: of a sample
/// session (start, resize, prints, end), the start and the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tee_emits_session_events_and_records_everything() {
    let store = StoreUploader::memory();
    let emitter = Arc::new(MemoryEmitter::new());
    let streamer = Arc::new(TeeStreamer::new(memory_streamer(&store), emitter.clone()));
    let w = SessionWriter::new(config(streamer.clone())).await.unwrap();
    let events = vectors::sample_session(40);
    for e in &events {
        w.record_event(e.clone()).await.unwrap();
    }
    w.complete().await.unwrap();

    assert_eq!(recording(&store).await, events, "every event recorded");
    let emitted = emitter.events();
    let want: Vec<AuditEvent> = events
        .iter()
        .filter(|e| tee_emits(e.event_type()))
        .cloned()
        .collect();
    assert_eq!(
        emitted.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
        [event_type::SESSION_START, event_type::SESSION_END]
    );
    assert_eq!(emitted, want, "the recorded events themselves, prepared");
    let stats = streamer.stats();
    assert_eq!((stats.emitted, stats.skipped, stats.failed), (2, 41, 0));

    // The tee is an emitter too: straight to its emitter.
    streamer.emit(events[0].clone()).await.unwrap();
    assert_eq!(emitter.len(), 3);
}

/// An emitter that fails does not fail the recording; the failures are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tee_emitter_failure_leaves_the_recording_whole() {
    let store = StoreUploader::memory();
    let down =
        CallbackEmitter::new(|_e: &AuditEvent| Err(EmitError::Closed("audit log down".into())));
    let streamer = Arc::new(TeeStreamer::new(memory_streamer(&store), down));
    let w = SessionWriter::new(config(streamer.clone())).await.unwrap();
    let events = vectors::sample_session(10);
    for e in &events {
        w.record_event(e.clone()).await.unwrap();
    }
    let stats = w.complete().await.unwrap();
    assert_eq!((stats.lost, stats.recoveries), (0, 0), "{stats:?}");
    assert_eq!(recording(&store).await, events);
    let tee = streamer.stats();
    assert_eq!((tee.emitted, tee.failed), (0, 2));
    assert!(tee.last_error.unwrap().contains("audit log down"));
}

/// A writer over the discard streamer takes everything and stores nothing; its streams
/// confirm each event at once and are done when completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_takes_everything_and_keeps_nothing() {
    let discard = Arc::new(DiscardStreamer::new());
    let w = SessionWriter::new(config(discard.clone())).await.unwrap();
    let events = vectors::sample_session(100);
    for e in &events {
        w.record_event(e.clone()).await.unwrap();
    }
    let stats = w.complete().await.unwrap();
    assert_eq!((stats.accepted, stats.lost), (103, 0));
    assert_eq!(discard.dropped(), 103);
    assert!(matches!(w.status().state, WriterState::Done(Ok(()))));

    let s = DiscardStream::new("upload-1");
    let mut statuses = s.statuses();
    let done = s.done();
    for e in &events[..5] {
        s.record(e).await.unwrap();
    }
    assert_eq!(statuses.borrow_and_update().last_event_index, 4);
    assert_eq!(statuses.borrow().upload_id, "upload-1");
    let mut done = Box::pin(done);
    assert!(
        futures::poll!(done.as_mut()).is_pending(),
        "not done before complete"
    );
    Box::new(s).complete().await.unwrap();
    bounded(done).await.unwrap();

    // Resumed discard streams hold nothing of the upload.
    let r = discard.resume(SID, "upload-2").await.unwrap();
    assert_eq!(r.statuses().borrow().last_event_index, -1);
    assert_eq!(r.statuses().borrow().upload_id, "upload-2");
}

async fn stream_and_emit<T: StreamEmitter>(t: &T, event: &AuditEvent) {
    let s = t.create(SID).await.unwrap();
    s.record(event).await.unwrap();
    s.complete().await.unwrap();
    t.emit(event.clone()).await.unwrap();
}

/// `StreamerAndEmitter` is one value that streams to its streamer and emits to its emitter;
/// the discard streamer and the tee are stream emitters too.
#[tokio::test]
async fn streamer_and_emitter_is_both() {
    let events = vectors::sample_session(1);
    let both = StreamerAndEmitter::new(DiscardStreamer::new(), MemoryEmitter::new());
    stream_and_emit(&both, &events[0]).await;
    assert_eq!(both.streamer.dropped(), 1, "the stream's event");
    assert_eq!(both.emitter.events(), vec![events[0].clone()]);

    let discard = DiscardStreamer::new();
    stream_and_emit(&discard, &events[0]).await;
    assert_eq!(discard.dropped(), 2);

    let tee = TeeStreamer::new(DiscardStreamer::new(), MemoryEmitter::new());
    stream_and_emit(&tee, &events[0]).await;
    assert_eq!(tee.emitter().len(), 2, "teed once, emitted once");
}

/// The writer's done signal resolves with the error once the stream fails for good, without
/// another write; its status says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_done_carries_the_permanent_failure() {
    let store = StoreUploader::memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let streamer = CallbackStreamer::new(memory_streamer(&store)).on_record(move |_, _| {
        if c.fetch_add(1, Ordering::SeqCst) == 2 {
            return Err(StreamFailure::unrecoverable(Hooked403));
        }
        Ok(())
    });
    let w = SessionWriter::new(config(Arc::new(streamer)))
        .await
        .unwrap();
    let done = w.done();
    assert!(w.status().state.is_open());
    // Start, resize, then a print the stream refuses for good.
    for e in vectors::sample_session(1).into_iter().take(3) {
        w.record_event(e).await.unwrap();
    }
    let err = bounded(done).await.unwrap_err();
    match &err {
        WriterError::Stopped {
            session_id,
            cause: StopCause::Unrecoverable(StreamFailure::Unrecoverable(_)),
        } => assert_eq!(session_id, SID),
        other => panic!("unexpected: {other}"),
    }
    assert!(
        err.to_string().contains("refused by the test hook"),
        "{err}"
    );
    let status = w.status();
    assert!(
        matches!(
            &status.state,
            WriterState::Done(Err(WriterError::Stopped { .. }))
        ),
        "{status:?}"
    );
    assert_eq!(status.stats.accepted, 3);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "nothing recorded after the failure"
    );
    // A done taken now resolves at once with the same error.
    let again = bounded(w.done()).await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
}

/// After complete the done signal is `Ok`, and the status names the upload the writer used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_done_is_ok_after_complete() {
    let store = StoreUploader::memory();
    let w = SessionWriter::new(config(Arc::new(memory_streamer(&store))))
        .await
        .unwrap();
    let mut done = Box::pin(w.done());
    for e in vectors::sample_session(5) {
        w.record_event(e).await.unwrap();
    }
    assert!(futures::poll!(done.as_mut()).is_pending());
    w.complete().await.unwrap();
    bounded(done).await.unwrap();
    let status = w.status();
    assert!(
        matches!(status.state, WriterState::Done(Ok(()))),
        "{status:?}"
    );
    let stream = status.stream.expect("a stream status");
    assert!(!stream.upload_id.is_empty());
    assert_eq!(status.stats.accepted, 8);
}

/// The recording stream's done signal: `Ok` after complete, the failure when a part upload
/// fails for good (without another record), `Gone` when the stream is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_stream_done() {
    // Completed.
    let store = Arc::new(StoreUploader::memory());
    let s = RecordingStream::create(store.clone(), SID, driver(4096))
        .await
        .unwrap();
    let done = s.done();
    for e in vectors::sample_session(3) {
        s.record(e).await.unwrap();
    }
    assert!(!s.is_done());
    s.complete().await.unwrap();
    bounded(done).await.unwrap();

    // Failed: every part upload is refused as gone.
    let hooked = Arc::new(Hooked::new(StoreUploader::memory(), |call| match call {
        Call::UploadPart(..) => Err(UploadError::NotFound("the upload vanished".into())),
        _ => Ok(()),
    }));
    let s = RecordingStream::create(hooked, SID, driver(1024))
        .await
        .unwrap();
    let done = s.done();
    for e in vectors::noisy_session(200) {
        if s.record(e).await.is_err() {
            break;
        }
    }
    let err = bounded(done).await.unwrap_err();
    assert!(matches!(err, DriverError::Stream(_)), "{err}");
    assert!(err.to_string().contains("vanished"), "{err}");
    assert!(s.is_done());
    // Through the session stream trait the failure is sorted as the writer sorts it: a part
    // that could not be stored is worth a new stream.
    let boxed: Box<dyn SessionStream> = Box::new(s);
    let sorted = bounded(boxed.done()).await.unwrap_err();
    assert!(matches!(sorted, StreamFailure::Transient(_)), "{sorted}");
    assert!(sorted.to_string().contains("vanished"), "{sorted}");

    // Dropped.
    let s = RecordingStream::create(store, SID, driver(4096))
        .await
        .unwrap();
    let done = s.done();
    drop(s);
    assert!(matches!(bounded(done).await, Err(DriverError::Gone)));
}

/// Wrapped streams pass the done signal through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_streams_pass_done_through() {
    let store = StoreUploader::memory();
    let streamer = CallbackStreamer::new(TeeStreamer::new(
        ReportingStreamer::over_uploader(memory_streamer(&store), MemoryEmitter::new(), CLUSTER),
        MemoryEmitter::new(),
    ));
    let s = streamer.create(SID).await.unwrap();
    let mut done = Box::pin(s.done());
    s.record(&vectors::sample_session(1)[0]).await.unwrap();
    assert!(futures::poll!(done.as_mut()).is_pending());
    s.complete().await.unwrap();
    bounded(done).await.unwrap();
}
