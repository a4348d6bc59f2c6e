//! The upload completer against real stores (in memory and on local disk): uploads left open
//! by a "crashed" writer (parts written, never completed) are completed exactly, announced with
//! `session.upload`, and given the `session.end` their writer never wrote; live sessions,
//! recent uploads and recent parts are left alone; a second pass finds nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use tapelog_audit::emit::{EmitError, Emitter, JsonLinesEmitter, MemoryEmitter};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{EncodedPart, PartBuilder, WriterConfig, read_all};
use tapelog_core::stream::StreamConfig;
use tapelog_core::vectors;
use tapelog_store::complete::{
    CompleterConfig, CompleterReport, EventOutcome, RecordingBytes, RecordingSource,
    SessionEndOutcome, SessionTracker, SkipReason, TrackerError, UploadCompleter,
};
use tapelog_store::stream::{DriverConfig, RecordingStream};
use tapelog_store::{MultipartUploader, StoreUploader, StreamPart, StreamUpload, UploadError};

const HOUR_MS: u64 = 60 * 60 * 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn sid(i: u32) -> String {
    format!("0000c0de-0000-4000-8000-{i:012}")
}

/// The sample session of `prints` prints under session id `sid`, with or without its end.
pub(crate) fn session(sid: &str, prints: usize, with_end: bool) -> Vec<AuditEvent> {
    let mut events = vectors::sample_session(prints);
    if !with_end {
        events.pop();
    }
    for e in &mut events {
        if let Some(m) = e.session_metadata_mut() {
            m.session_id = sid.to_string();
        }
    }
    events
}

/// Parts of `per_part` events each (small padding so that the recording stays small).
fn parts_of(events: &[AuditEvent], per_part: usize) -> Vec<EncodedPart> {
    let cfg = WriterConfig {
        min_upload_bytes: 2048,
        ..WriterConfig::default()
    };
    let chunks: Vec<_> = events.chunks(per_part).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut b = PartBuilder::new(cfg);
            for e in *chunk {
                b.add(e).unwrap();
            }
            b.finish(i + 1 == chunks.len())
        })
        .collect()
}

/// A writer that crashed after uploading its parts: the upload stays open. Returns the
/// upload and the bytes the completed recording must hold.
pub(crate) async fn crashed_writer<U: MultipartUploader>(
    up: &U,
    sid: &str,
    events: &[AuditEvent],
    per_part: usize,
) -> (StreamUpload, Vec<u8>) {
    let upload = up.create_upload(sid).await.unwrap();
    let mut expect = Vec::new();
    for (i, part) in parts_of(events, per_part).iter().enumerate() {
        up.upload_part(&upload, i as u32 + 1, part).await.unwrap();
        expect.extend_from_slice(&part.to_vec());
    }
    (upload, expect)
}

async fn recording(store: &StoreUploader, sid: &str) -> Option<Vec<u8>> {
    match store.store().get(&store.recording_path(sid)).await {
        Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("reading recording: {e}"),
    }
}

fn config(grace: Duration) -> CompleterConfig {
    CompleterConfig {
        grace,
        ..CompleterConfig::new("completer.example")
    }
}

/// Both stores the completer must work with.
fn stores() -> Vec<(&'static str, StoreUploader, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let local = StoreUploader::local(dir.path()).unwrap();
    vec![
        ("memory", StoreUploader::memory(), None),
        ("local", local, Some(dir)),
    ]
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// Sessions the test says are live.
#[derive(Default)]
struct Live(Mutex<HashSet<String>>);

impl SessionTracker for Live {
    async fn is_live(&self, session_id: &str) -> Result<bool, TrackerError> {
        if session_id == sid(666) {
            return Err(TrackerError("tracker backend down".into()));
        }
        Ok(self.0.lock().unwrap().contains(session_id))
    }
}

/// A store whose uploads of some sessions look older than they are (the store stamps real
/// times; the grace rules need old uploads next to new ones).
struct Aged {
    inner: StoreUploader,
    age_ms: HashMap<String, i64>,
}

impl MultipartUploader for Aged {
    async fn create_upload(&self, s: &str) -> Result<StreamUpload, UploadError> {
        self.inner.create_upload(s).await
    }
    async fn upload_part(
        &self,
        u: &StreamUpload,
        n: u32,
        p: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        self.inner.upload_part(u, n, p).await
    }
    async fn reserve_part(&self, u: &StreamUpload, n: u32) -> Result<(), UploadError> {
        self.inner.reserve_part(u, n).await
    }
    async fn list_parts(&self, u: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        self.inner.list_parts(u).await
    }
    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        let mut v = self.inner.list_uploads().await?;
        for u in &mut v {
            u.initiated_ms -= self.age_ms.get(&u.session_id).copied().unwrap_or(0);
        }
        v.sort_by_key(|u| u.initiated_ms);
        Ok(v)
    }
    async fn complete_upload(&self, u: &StreamUpload, p: &[StreamPart]) -> Result<(), UploadError> {
        self.inner.complete_upload(u, p).await
    }
    async fn abort_upload(&self, u: &StreamUpload) -> Result<(), UploadError> {
        self.inner.abort_upload(u).await
    }
    fn recording_url(&self, s: &str) -> String {
        self.inner.recording_url(s)
    }
}

impl RecordingSource for Aged {
    async fn open_recording(&self, s: &str) -> Result<RecordingBytes, UploadError> {
        self.inner.open_recording(s).await
    }
}

/// Refuses every event.
struct Refusing;

impl Emitter for Refusing {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        Err(EmitError::Closed(format!(
            "no room for {}",
            event.event_type()
        )))
    }
}

fn completed_sids(r: &CompleterReport) -> Vec<String> {
    r.completed
        .iter()
        .map(|c| c.upload.session_id.clone())
        .collect()
}

#[tokio::test]
async fn abandoned_uploads_are_completed_exactly_with_their_events() {
    for (name, store, _dir) in stores() {
        let up = Arc::new(store.clone());
        let (a, b) = (sid(1), sid(2));
        let a_events = session(&a, 12, false);
        let b_events = session(&b, 5, true);
        let (_, a_bytes) = crashed_writer(&*up, &a, &a_events, 4).await;
        let (_, b_bytes) = crashed_writer(&*up, &b, &b_events, 3).await;

        let emitter = Arc::new(MemoryEmitter::new());
        let completer = UploadCompleter::new(
            up.clone(),
            emitter.clone(),
            config(Duration::from_millis(24 * HOUR_MS)),
        );
        let now = now_ms() + 25 * HOUR_MS;
        let report = completer.run_once(now).await.unwrap();
        assert!(report.failed.is_empty(), "{name}: {:?}", report.failed);
        assert!(report.skipped.is_empty(), "{name}: {:?}", report.skipped);
        let mut got = completed_sids(&report);
        got.sort();
        assert_eq!(got, vec![a.clone(), b.clone()], "{name}");

        // The recordings are the parts joined, byte for byte, and read back as written.
        for (s, bytes, events) in [(&a, &a_bytes, &a_events), (&b, &b_bytes, &b_events)] {
            let rec = recording(&store, s).await.unwrap();
            assert_eq!(&rec, bytes, "{name}: recording of {s}");
            let read = read_all(&rec);
            assert!(read.error.is_none(), "{name}: {:?}", read.error);
            assert_eq!(&read.events, events, "{name}");
        }
        for c in &report.completed {
            let n = if c.upload.session_id == a { 4 } else { 3 };
            assert_eq!(c.parts, n, "{name}");
            assert_eq!(c.url, store.recording_url(&c.upload.session_id));
            assert!(c.upload_event.as_ref().unwrap().is_emitted(), "{name}");
            match (c.session_end.as_ref().unwrap(), c.upload.session_id == a) {
                (
                    SessionEndOutcome::Synthesised {
                        event_type,
                        outcome,
                    },
                    true,
                ) => {
                    assert_eq!(event_type, "session.end");
                    assert!(outcome.is_emitted());
                }
                (SessionEndOutcome::Present, false) => {}
                (other, _) => panic!("{name}: {} {other:?}", c.upload.session_id),
            }
        }

        // Events: session.upload for each, one synthesised session.end for A only.
        let events = emitter.events();
        let uploads: Vec<_> = events
            .iter()
            .filter(|e| e.event_type() == "session.upload")
            .collect();
        assert_eq!(uploads.len(), 2, "{name}");
        for e in &uploads {
            let AuditEvent::SessionUpload(u) = e else {
                panic!("{e:?}");
            };
            let s = &u.session_metadata.session_id;
            assert_eq!(u.metadata.code, "T2005I");
            assert_eq!(u.metadata.index, i32::MAX as i64);
            assert_eq!(u.metadata.time.unix_millis() as u64, now);
            assert_eq!(u.metadata.cluster_name, "completer.example");
            assert!(is_uuid(&u.metadata.id), "{}", u.metadata.id);
            assert_eq!(u.session_url, store.recording_url(s));
            assert_eq!(
                e.to_json(),
                format!(
                    "{{\"ei\":2147483647,\"event\":\"session.upload\",\"uid\":\"{}\",\
                     \"code\":\"T2005I\",\"time\":\"{}\",\"cluster_name\":\"completer.example\",\
                     \"sid\":\"{s}\",\"url\":\"{}\"}}",
                    u.metadata.id,
                    u.metadata.time.to_rfc3339(),
                    store.recording_url(s)
                )
            );
        }
        let ends: Vec<_> = events
            .iter()
            .filter(|e| e.event_type() == "session.end")
            .collect();
        assert_eq!(ends.len(), 1, "{name}");
        let AuditEvent::SessionEnd(end) = ends[0] else {
            panic!("{:?}", ends[0]);
        };
        let last = a_events.last().unwrap().time();
        assert_eq!(end.session.session_id, a);
        assert_eq!(end.participants, vec!["joe"]);
        assert_eq!(end.start_time, a_events[0].time());
        assert_eq!(end.end_time, last);
        assert_eq!(end.metadata.time, last);
        assert!(end.interactive);
        assert!(is_uuid(&end.metadata.id));
        assert_eq!(
            ends[0].to_json(),
            format!(
                "{{\"ei\":0,\"event\":\"session.end\",\"uid\":\"{}\",\"code\":\"T2004I\",\
                 \"time\":\"2021-11-18T15:33:59.969Z\",\"cluster_name\":\"tapelog.example\",\
                 \"user\":\"joe\",\"login\":\"root\",\"sid\":\"{a}\",\"namespace\":\"default\",\
                 \"server_id\":\"ade010d6-4e75-4ed8-9f92-886a4f49eb26\",\
                 \"server_hostname\":\"localhost\",\"enhanced_recording\":false,\
                 \"interactive\":true,\"participants\":[\"joe\"],\
                 \"session_start\":\"2021-11-18T15:33:59.792Z\",\
                 \"session_stop\":\"2021-11-18T15:33:59.969Z\",\"session_recording\":\"node\"}}",
                end.metadata.id
            )
        );

        // The uploads are gone; a second pass finds nothing and emits nothing.
        assert!(up.list_uploads().await.unwrap().is_empty(), "{name}");
        let again = completer.run_once(now + 1000).await.unwrap();
        assert!(again.is_empty(), "{name}: {again:?}");
        assert_eq!(emitter.len(), 3, "{name}");
    }
}

#[tokio::test]
async fn live_recent_and_failing_tracker_uploads_are_skipped() {
    for (name, store, _dir) in stores() {
        let (live, recent_part, recent_upload, untracked) = (sid(10), sid(11), sid(12), sid(666));
        let age = (30 * HOUR_MS) as i64;
        let up = Arc::new(Aged {
            inner: store.clone(),
            age_ms: [
                (live.clone(), age),
                (recent_part.clone(), age),
                (untracked.clone(), age),
            ]
            .into(),
        });
        for s in [&live, &recent_part, &recent_upload, &untracked] {
            crashed_writer(&*up, s, &session(s, 3, false), 2).await;
        }
        let tracker = Arc::new(Live::default());
        tracker.0.lock().unwrap().insert(live.clone());
        let emitter = Arc::new(MemoryEmitter::new());
        let completer = UploadCompleter::new(
            up.clone(),
            emitter.clone(),
            config(Duration::from_millis(24 * HOUR_MS)),
        )
        .with_tracker(tracker.clone());

        let report = completer.run_once(now_ms()).await.unwrap();
        assert!(
            report.completed.is_empty(),
            "{name}: {:?}",
            report.completed
        );
        assert!(report.failed.is_empty(), "{name}: {:?}", report.failed);
        let reasons: HashMap<String, SkipReason> = report
            .skipped
            .iter()
            .map(|s| (s.upload.session_id.clone(), s.reason.clone()))
            .collect();
        assert_eq!(reasons.len(), 4, "{name}: {reasons:?}");
        assert_eq!(reasons[&live], SkipReason::Live);
        assert!(
            matches!(reasons[&recent_part], SkipReason::RecentPart { .. }),
            "{name}: {reasons:?}"
        );
        assert_eq!(reasons[&recent_upload], SkipReason::RecentUpload);
        assert_eq!(
            reasons[&untracked],
            SkipReason::Tracker(TrackerError("tracker backend down".into()))
        );
        assert!(emitter.is_empty());
        assert_eq!(up.list_uploads().await.unwrap().len(), 4);
        for s in [&live, &recent_part, &recent_upload] {
            assert_eq!(recording(&store, s).await, None, "{name}");
        }

        // A day later, with the session no longer live, all but the untracked one complete.
        tracker.0.lock().unwrap().clear();
        let report = completer.run_once(now_ms() + 25 * HOUR_MS).await.unwrap();
        let mut got = completed_sids(&report);
        got.sort();
        assert_eq!(
            got,
            vec![live.clone(), recent_part.clone(), recent_upload.clone()]
        );
        assert_eq!(report.skipped.len(), 1, "{name}");
        // Three session.upload and three recovered session.end events.
        assert_eq!(emitter.len(), 6, "{name}");
    }
}

#[tokio::test]
async fn upload_without_parts_is_cleaned_up_without_an_event() {
    for (name, store, _dir) in stores() {
        let up = Arc::new(store.clone());
        let s = sid(20);
        up.create_upload(&s).await.unwrap();
        let emitter = Arc::new(MemoryEmitter::new());
        let completer = UploadCompleter::new(up.clone(), emitter.clone(), config(Duration::ZERO));
        let report = completer.run_once(now_ms()).await.unwrap();
        assert_eq!(report.completed.len(), 1, "{name}: {report:?}");
        let c = &report.completed[0];
        assert_eq!((c.parts, c.url.as_str()), (0, ""));
        assert!(c.upload_event.is_none() && c.session_end.is_none());
        assert!(emitter.is_empty(), "{name}");
        assert!(up.list_uploads().await.unwrap().is_empty(), "{name}");
        assert_eq!(recording(&store, &s).await, None, "{name}");
        assert!(completer.run_once(now_ms()).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn closed_stream_is_completed_and_given_its_end() {
    for (name, store, _dir) in stores() {
        let up = Arc::new(store.clone());
        let s = sid(30);
        // Poorly compressible prints, so that the stream cuts several parts.
        let mut events = vectors::noisy_session(60);
        events.pop();
        for e in &mut events {
            if let Some(m) = e.session_metadata_mut() {
                m.session_id = s.clone();
            }
        }
        let cfg = DriverConfig {
            stream: StreamConfig {
                writer: WriterConfig {
                    min_upload_bytes: 1024,
                    ..WriterConfig::default()
                },
                ..StreamConfig::default()
            },
            ..DriverConfig::default()
        };
        let stream = RecordingStream::create(up.clone(), &s, cfg).await.unwrap();
        for e in &events {
            stream.record(e.clone()).await.unwrap();
        }
        // `close` uploads what it has and leaves the upload open, as a writer that died.
        stream.close().await.unwrap();
        assert_eq!(up.list_uploads().await.unwrap().len(), 1);

        let emitter = Arc::new(MemoryEmitter::new());
        let completer = UploadCompleter::new(up.clone(), emitter.clone(), config(Duration::ZERO));
        let report = completer.run_once(now_ms()).await.unwrap();
        assert_eq!(
            completed_sids(&report),
            vec![s.clone()],
            "{name}: {report:?}"
        );
        assert!(report.completed[0].parts >= 2, "{name}: {report:?}");
        let read = read_all(&recording(&store, &s).await.unwrap());
        assert!(read.error.is_none(), "{name}: {:?}", read.error);
        assert_eq!(read.events, events, "{name}");

        let got = emitter.events();
        assert_eq!(
            got.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
            vec!["session.upload", "session.end"],
            "{name}"
        );
        let AuditEvent::SessionEnd(end) = &got[1] else {
            panic!("{:?}", got[1]);
        };
        assert_eq!(end.end_time, events.last().unwrap().time());
        assert_eq!(end.participants, vec!["joe"]);
    }
}

#[tokio::test]
async fn emit_failures_are_reported_and_the_pass_goes_on() {
    let store = StoreUploader::memory();
    let up = Arc::new(store.clone());
    for i in 40..43 {
        let s = sid(i);
        crashed_writer(&*up, &s, &session(&s, 2, i != 41), 2).await;
    }
    let completer = UploadCompleter::new(up.clone(), Refusing, config(Duration::ZERO));
    let report = completer.run_once(now_ms()).await.unwrap();
    assert_eq!(report.completed.len(), 3, "{report:?}");
    for c in &report.completed {
        match c.upload_event.as_ref().unwrap() {
            EventOutcome::Failed(e) => {
                assert!(e.is_transient());
                assert_eq!(e.to_string(), "emitter closed: no room for session.upload");
            }
            other => panic!("{other:?}"),
        }
        let missing_end = c.upload.session_id == sid(41);
        match c.session_end.as_ref().unwrap() {
            SessionEndOutcome::Synthesised { outcome, .. } if missing_end => {
                assert!(matches!(outcome, EventOutcome::Failed(_)));
            }
            SessionEndOutcome::Present if !missing_end => {}
            other => panic!("{}: {other:?}", c.upload.session_id),
        }
        assert!(recording(&store, &c.upload.session_id).await.is_some());
    }
}

#[tokio::test]
async fn upload_locked_by_another_completer_is_skipped() {
    let store = StoreUploader::memory();
    let up = Arc::new(store.clone());
    let s = sid(50);
    let (upload, _) = crashed_writer(&*up, &s, &session(&s, 2, true), 2).await;
    let lock = object_store::path::Path::from(format!("multi/{}/complete.lock", upload.id));
    store
        .store()
        .put(&lock, PutPayload::from_static(b"lock"))
        .await
        .unwrap();
    let emitter = Arc::new(MemoryEmitter::new());
    let completer = UploadCompleter::new(up.clone(), emitter.clone(), config(Duration::ZERO));
    let report = completer.run_once(now_ms()).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].reason, SkipReason::Locked);
    assert!(emitter.is_empty());
    assert_eq!(up.list_uploads().await.unwrap().len(), 1);
}

#[tokio::test]
async fn json_lines_emitter_gets_teleports_json() {
    let store = StoreUploader::memory();
    let up = Arc::new(store.clone());
    let s = sid(60);
    crashed_writer(&*up, &s, &session(&s, 3, false), 2).await;
    let emitter = Arc::new(JsonLinesEmitter::new(Vec::<u8>::new()));
    let completer = UploadCompleter::new(up.clone(), emitter.clone(), config(Duration::ZERO));
    completer.run_once(now_ms()).await.unwrap();
    let text = emitter.with_writer(|w| String::from_utf8(w.clone()).unwrap());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let upload = AuditEvent::from_json(lines[0]).unwrap();
    assert_eq!(upload.event_type(), "session.upload");
    assert_eq!(upload.to_json(), lines[0]);
    let end = AuditEvent::from_json(lines[1]).unwrap();
    assert_eq!(end.event_type(), "session.end");
    assert_eq!(end.session_id(), s);
    assert_eq!(end.to_json(), lines[1]);
}

#[tokio::test]
async fn run_completes_periodically_until_shutdown() {
    let store = StoreUploader::memory();
    let up = Arc::new(store.clone());
    let s = sid(70);
    crashed_writer(&*up, &s, &session(&s, 2, true), 2).await;
    let emitter = Arc::new(MemoryEmitter::new());
    let completer = UploadCompleter::new(
        up.clone(),
        emitter.clone(),
        CompleterConfig {
            check_period: Duration::from_millis(40),
            ..config(Duration::ZERO)
        },
    );
    let passes = Arc::new(Mutex::new(0usize));
    let counter = passes.clone();
    let done = tokio::time::timeout(
        Duration::from_secs(10),
        completer.run_reporting(tokio::time::sleep(Duration::from_millis(400)), move |r| {
            r.unwrap();
            *counter.lock().unwrap() += 1;
        }),
    )
    .await;
    assert!(done.is_ok(), "run did not stop at shutdown");
    let passes = *passes.lock().unwrap();
    // 400 ms at one pass every 34..40 ms (the first after 20..40 ms).
    assert!((5..=12).contains(&passes), "{passes} passes");
    assert!(up.list_uploads().await.unwrap().is_empty());
    assert_eq!(emitter.len(), 1, "only the first pass had work");
    assert!(recording(&store, &s).await.is_some());
}

#[tokio::test]
async fn damaged_recording_is_completed_and_its_end_check_fails() {
    let store = StoreUploader::memory();
    let up = Arc::new(store.clone());
    let s = sid(80);
    let (upload, mut expect) = crashed_writer(&*up, &s, &session(&s, 2, false), 2).await;
    // A third part that is not a part at all (a writer that wrote garbage before dying).
    let junk = EncodedPart {
        data: b"definitely not a ProtoStream part header".to_vec(),
        padding: 0,
        events: 0,
        first_index: -1,
        last_index: -1,
    };
    up.upload_part(&upload, 3, &junk).await.unwrap();
    expect.extend_from_slice(&junk.data);
    let emitter = Arc::new(MemoryEmitter::new());
    let completer = UploadCompleter::new(up.clone(), emitter.clone(), config(Duration::ZERO));
    let report = completer.run_once(now_ms()).await.unwrap();
    assert_eq!(report.completed.len(), 1, "{report:?}");
    assert_eq!(recording(&store, &s).await.unwrap(), expect);
    match report.completed[0].session_end.as_ref().unwrap() {
        SessionEndOutcome::Failed(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("decoding the recording of session {s}: ")),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Only session.upload: nothing is recovered from a recording that cannot be read.
    let types: Vec<_> = emitter
        .events()
        .iter()
        .map(|e| e.event_type().to_string())
        .collect();
    assert_eq!(types, vec!["session.upload"]);
}
