//! Stream conformance: the tokio driver and the store uploader, against an in-memory store and
//! the local file system, each plain and with a flaky uploader (the first attempt at every part
//! fails), with and without forced flushes. Every read back checks skipped = 0,
//! out-of-order = 0, total = events written and the events themselves.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tapelog::stream::{DriverConfig, RecordingStream, RetryPolicy};
use tapelog::upload::{
    MultipartUploader, StoreUploader, StreamPart, StreamUpload, UploadError, check_id,
};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{EncodedPart, WriterConfig, read_all};
use tapelog_core::stream::StreamConfig;
use tapelog_core::vectors;

const SID: &str = "9b6ec731-80f7-4751-9154-4214ecdc812a";

/// Fails the first attempt at every part (and, when asked, every complete).
struct Flaky<U> {
    inner: U,
    seen: Mutex<HashSet<u32>>,
    fail_complete: Mutex<bool>,
}

impl<U: MultipartUploader> Flaky<U> {
    fn new(inner: U) -> Flaky<U> {
        Flaky {
            inner,
            seen: Mutex::new(HashSet::new()),
            fail_complete: Mutex::new(false),
        }
    }
}

fn injected() -> UploadError {
    UploadError::Store(object_store::Error::Generic {
        store: "flaky",
        source: "injected failure".into(),
    })
}

impl<U: MultipartUploader> MultipartUploader for Flaky<U> {
    async fn create_upload(&self, sid: &str) -> Result<StreamUpload, UploadError> {
        self.inner.create_upload(sid).await
    }
    async fn upload_part(
        &self,
        u: &StreamUpload,
        n: u32,
        p: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        if self.seen.lock().unwrap().insert(n) {
            return Err(injected());
        }
        self.inner.upload_part(u, n, p).await
    }
    async fn reserve_part(&self, u: &StreamUpload, n: u32) -> Result<(), UploadError> {
        self.inner.reserve_part(u, n).await
    }
    async fn list_parts(&self, u: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        self.inner.list_parts(u).await
    }
    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        self.inner.list_uploads().await
    }
    async fn complete_upload(
        &self,
        u: &StreamUpload,
        parts: &[StreamPart],
    ) -> Result<(), UploadError> {
        if *self.fail_complete.lock().unwrap() {
            return Err(injected());
        }
        self.inner.complete_upload(u, parts).await
    }
    async fn abort_upload(&self, u: &StreamUpload) -> Result<(), UploadError> {
        self.inner.abort_upload(u).await
    }
    fn recording_url(&self, sid: &str) -> String {
        self.inner.recording_url(sid)
    }
}

fn events(n: usize) -> Vec<AuditEvent> {
    vectors::noisy_session(n)
}

fn config(min: usize, concurrent: usize, flush_ms: u64) -> DriverConfig {
    DriverConfig {
        stream: StreamConfig {
            writer: WriterConfig {
                min_upload_bytes: min,
                ..WriterConfig::default()
            },
            max_concurrent_uploads: concurrent,
            inactivity_flush_ms: flush_ms,
            release_after_ms: flush_ms / 2,
        },
        retry: RetryPolicy {
            attempts: 5,
            step: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
    }
}

async fn recording(store: &StoreUploader) -> Vec<u8> {
    use object_store::ObjectStoreExt;
    let path = store.recording_path(SID);
    store
        .store()
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

fn check(bytes: &[u8], expect: &[AuditEvent]) {
    let got = read_all(bytes);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.skipped, 0);
    assert_eq!(got.stats.out_of_order, 0);
    assert_eq!(got.stats.total as usize, expect.len());
    assert_eq!(got.events, expect);
}

/// (parts, parts with padding) of a recording.
fn part_layout(bytes: &[u8]) -> (usize, usize) {
    let (mut pos, mut parts, mut padded) = (0, 0, 0);
    while pos + 24 <= bytes.len() {
        let size = u64::from_be_bytes(bytes[pos + 8..pos + 16].try_into().unwrap()) as usize;
        let pad = u64::from_be_bytes(bytes[pos + 16..pos + 24].try_into().unwrap()) as usize;
        parts += 1;
        padded += usize::from(pad > 0);
        pos += 24 + size + pad;
    }
    (parts, padded)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Disk,
}

fn store(kind: Kind, dir: &std::path::Path) -> StoreUploader {
    match kind {
        Kind::Memory => StoreUploader::memory(),
        Kind::Disk => StoreUploader::local(dir).unwrap(),
    }
}

/// Records `n` events through a stream and checks the completed recording; `pause` forces
/// inactivity flushes (padded partial parts) every `pause` events.
async fn case(kind: Kind, flaky: bool, n: usize, min: usize, concurrent: usize, pause: usize) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(kind, dir.path());
    let evs = events(n);
    let cfg = config(min, concurrent, if pause > 0 { 30 } else { 60_000 });
    let rs = if flaky {
        let up = Arc::new(Flaky::new(s.clone()));
        record(up, &evs, cfg, pause).await
    } else {
        record(Arc::new(s.clone()), &evs, cfg, pause).await
    };
    assert_eq!(rs, evs.last().unwrap().index(), "final durable index");
    let bytes = recording(&s).await;
    check(&bytes, &evs);
    let (parts, padded) = part_layout(&bytes);
    if pause > 0 {
        assert!(padded >= 2, "{padded} padded of {parts} parts");
    }
    if min <= 1024 {
        assert!(parts > 10, "{parts} parts");
    }
    assert!(
        s.list_uploads().await.unwrap().is_empty(),
        "upload cleaned up"
    );
}

async fn record<U: MultipartUploader>(
    up: Arc<U>,
    evs: &[AuditEvent],
    cfg: DriverConfig,
    pause: usize,
) -> i64 {
    let stream = RecordingStream::create(up, SID, cfg).await.unwrap();
    let status = stream.status();
    for (i, e) in evs.iter().enumerate() {
        stream.record(e.clone()).await.unwrap();
        if pause > 0 && i % pause == pause - 1 {
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
    }
    stream.complete().await.unwrap();
    status.borrow().last_event_index
}

macro_rules! suite {
    ($($name:ident: $kind:expr, $flaky:expr, $n:expr, $min:expr, $conc:expr, $pause:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                case($kind, $flaky, $n, $min, $conc, $pause).await;
            }
        )*
    };
}

suite! {
    memory_single_part: Kind::Memory, false, 20, 5 * 1024 * 1024, 1, 0;
    memory_single_part_flaky: Kind::Memory, true, 20, 5 * 1024 * 1024, 1, 0;
    memory_padding: Kind::Memory, false, 60, 64 * 1024, 1, 20;
    memory_padding_flaky: Kind::Memory, true, 60, 64 * 1024, 1, 20;
    memory_1024_events_1k_parts_2_uploads: Kind::Memory, false, 1024, 1024, 2, 0;
    memory_1024_events_1k_parts_2_uploads_flaky: Kind::Memory, true, 1024, 1024, 2, 0;
    memory_8192_events_64_uploads: Kind::Memory, false, 8192, 1024, 64, 0;
    memory_8192_events_64_uploads_flaky: Kind::Memory, true, 8192, 1024, 64, 0;
    disk_single_part: Kind::Disk, false, 20, 5 * 1024 * 1024, 1, 0;
    disk_single_part_flaky: Kind::Disk, true, 20, 5 * 1024 * 1024, 1, 0;
    disk_padding: Kind::Disk, false, 60, 64 * 1024, 1, 20;
    disk_padding_flaky: Kind::Disk, true, 60, 64 * 1024, 1, 20;
    disk_1024_events_1k_parts_2_uploads: Kind::Disk, false, 1024, 1024, 2, 0;
    disk_1024_events_1k_parts_2_uploads_flaky: Kind::Disk, true, 1024, 1024, 2, 0;
    disk_8192_events_64_uploads: Kind::Disk, false, 8192, 1024, 64, 0;
    disk_8192_events_64_uploads_flaky: Kind::Disk, true, 8192, 1024, 64, 0;
}

#[tokio::test]
async fn padded_parts_are_the_minimum_size_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreUploader::local(dir.path()).unwrap();
    let up = Arc::new(s.clone());
    let stream = RecordingStream::create(up.clone(), SID, config(64 * 1024, 1, 30))
        .await
        .unwrap();
    let evs = events(10);
    for e in &evs {
        stream.record(e.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let upload = stream.upload().clone();
    let parts = s.list_parts(&upload).await.unwrap();
    assert_eq!(parts.len(), 1, "flushed by inactivity");
    // Upstream's layout: multi/<upload>/<session>/<n>.part
    let part = dir
        .path()
        .join("multi")
        .join(&upload.id)
        .join(SID)
        .join(format!("{}.part", parts[0].number));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 64 * 1024);
    stream.close().await.unwrap();
    assert_eq!(
        s.list_uploads().await.unwrap(),
        vec![StreamUpload {
            initiated_ms: s.list_uploads().await.unwrap()[0].initiated_ms,
            ..upload
        }]
    );
}

#[tokio::test]
async fn empty_stream_completes_without_a_recording() {
    let s = StoreUploader::memory();
    let stream = RecordingStream::create(Arc::new(s.clone()), SID, config(1024, 1, 60_000))
        .await
        .unwrap();
    stream.complete().await.unwrap();
    assert!(s.list_uploads().await.unwrap().is_empty());
    use object_store::ObjectStoreExt;
    assert!(s.store().head(&s.recording_path(SID)).await.is_err());
}

#[tokio::test]
async fn resume_after_a_failed_complete() {
    for kind in [Kind::Memory, Kind::Disk] {
        let dir = tempfile::tempdir().unwrap();
        let s = store(kind, dir.path());
        let flaky = Arc::new(Flaky::new(s.clone()));
        *flaky.fail_complete.lock().unwrap() = true;
        let evs = events(500);
        let cfg = config(1024, 2, 60_000);
        let stream = RecordingStream::create(flaky.clone(), SID, cfg)
            .await
            .unwrap();
        let upload = stream.upload().clone();
        for e in &evs {
            stream.record(e.clone()).await.unwrap();
        }
        let err = stream.complete().await.unwrap_err();
        assert!(
            err.to_string().contains("completing the upload failed"),
            "{err}"
        );
        // Another stream (another process, in real life) resumes and completes it.
        let listed = s.list_uploads().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, upload.id);
        let resumed = RecordingStream::resume(Arc::new(s.clone()), listed[0].clone(), cfg)
            .await
            .unwrap();
        resumed.complete().await.unwrap();
        check(&recording(&s).await, &evs);
    }
}

#[tokio::test]
async fn bad_ids_are_refused_by_the_uploader() {
    let dir = tempfile::tempdir().unwrap();
    for s in [
        StoreUploader::memory(),
        StoreUploader::local(dir.path()).unwrap(),
    ] {
        for bad in [
            "../../etc",
            "not-a-uuid",
            "",
            "9b6ec731-80f7-4751-9154-4214ecdc812a/..",
        ] {
            let err = s.create_upload(bad).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    UploadError::InvalidId {
                        what: "session id",
                        ..
                    }
                ),
                "{err}"
            );
            let u = StreamUpload {
                id: bad.into(),
                session_id: SID.into(),
                initiated_ms: 0,
            };
            let err = s.list_parts(&u).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    UploadError::InvalidId {
                        what: "upload id",
                        ..
                    }
                ),
                "{err}"
            );
            let err = s.complete_upload(&u, &[]).await.unwrap_err();
            assert!(err.to_string().contains("expected a UUID"), "{err}");
        }
    }
    assert!(check_id("session id", SID).is_ok());
    // Nothing was written for the refused ids.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_second_completer_is_locked_out() {
    let s = StoreUploader::memory();
    let u = s.create_upload(SID).await.unwrap();
    let evs = events(10);
    let part = tapelog_core::codec::encode_recording(&evs, WriterConfig::default()).unwrap();
    let mut w = tapelog_core::codec::PartBuilder::new(WriterConfig::default());
    for e in &evs {
        w.add(e).unwrap();
    }
    let p = s.upload_part(&u, 1, &w.finish(true)).await.unwrap();
    // Hold the lock as a concurrent completer would.
    use object_store::ObjectStoreExt;
    let lock = object_store::path::Path::from(format!("multi/{}/complete.lock", u.id));
    s.store()
        .put(&lock, object_store::PutPayload::from_static(b"x"))
        .await
        .unwrap();
    let err = s
        .complete_upload(&u, std::slice::from_ref(&p))
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::Locked(_)), "{err}");
    s.store().delete(&lock).await.unwrap();
    s.complete_upload(&u, &[p]).await.unwrap();
    assert_eq!(recording(&s).await, part);
    // Completed: a second complete finds nothing.
    assert!(matches!(
        s.complete_upload(&u, &[]).await,
        Err(UploadError::NotFound(_))
    ));
}

/// An uploader that panics while uploading a part.
struct Panicky(StoreUploader);

impl MultipartUploader for Panicky {
    async fn create_upload(&self, sid: &str) -> Result<StreamUpload, UploadError> {
        self.0.create_upload(sid).await
    }
    async fn upload_part(
        &self,
        _: &StreamUpload,
        n: u32,
        _: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        panic!("uploader bug at part {n}")
    }
    async fn reserve_part(&self, u: &StreamUpload, n: u32) -> Result<(), UploadError> {
        self.0.reserve_part(u, n).await
    }
    async fn list_parts(&self, u: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        self.0.list_parts(u).await
    }
    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        self.0.list_uploads().await
    }
    async fn complete_upload(&self, u: &StreamUpload, p: &[StreamPart]) -> Result<(), UploadError> {
        self.0.complete_upload(u, p).await
    }
    async fn abort_upload(&self, u: &StreamUpload) -> Result<(), UploadError> {
        self.0.abort_upload(u).await
    }
    fn recording_url(&self, sid: &str) -> String {
        self.0.recording_url(sid)
    }
}

#[tokio::test]
async fn a_panicking_upload_fails_the_stream_instead_of_hanging() {
    let up = Arc::new(Panicky(StoreUploader::memory()));
    let stream = RecordingStream::create(up, SID, config(1024, 2, 60_000))
        .await
        .unwrap();
    let evs = events(50);
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        for e in &evs {
            if stream.record(e.clone()).await.is_err() {
                return Err(());
            }
        }
        stream.complete().await.map_err(|e| {
            assert!(e.to_string().contains("uploading part"), "{e}");
        })
    })
    .await
    .expect("the stream must not hang");
    assert!(outcome.is_err());
}
