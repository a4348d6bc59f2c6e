//! Stream conformance: the tokio driver and the store uploader, against an in-memory store,
//! the local file system, a real S3 server (s3s-fs) and a real Azure emulator (azurite), each
//! plain and with a flaky uploader (the first attempt at every part fails), with and without
//! forced flushes. Every read back checks skipped = 0, out-of-order = 0, total = events
//! written and the events themselves. The servers are started by this binary
//! (`util/stores.rs`); a missing one fails the tests with a message saying to run
//! `bash scripts/setup.sh`.

use crate::util::stores as support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStoreExt;
use tapelog_core::AuditEvent;
use tapelog_core::codec::{WriterConfig, read_all};
use tapelog_core::stream::StreamConfig;
use tapelog_core::vectors;
use tapelog_store::stream::{DriverConfig, RecordingStream, RetryPolicy};
use tapelog_store::url::{StorageOptions, open_storage};
use tapelog_store::{
    Call, Hooked, MultipartUploader, StoreUploader, StreamUpload, UploadError, check_id,
    check_upload_id,
};

const SID: &str = "9b6ec731-80f7-4751-9154-4214ecdc812a";

/// An uploader with a fault-injecting hook.
type Faulty<U> = Hooked<U, Box<dyn Fn(Call<'_>) -> Result<(), UploadError> + Send + Sync>>;

fn injected() -> UploadError {
    UploadError::Store(object_store::Error::Generic {
        store: "flaky",
        source: "injected failure".into(),
    })
}

/// Fails the first attempt at every part (and, with `fail_complete`, every complete).
fn flaky_uploader<U: MultipartUploader>(inner: U, fail_complete: bool) -> Faulty<U> {
    let seen = Mutex::new(HashSet::new());
    Hooked::new(
        inner,
        Box::new(move |call| match call {
            Call::UploadPart(_, n, _) if seen.lock().unwrap().insert(n) => Err(injected()),
            Call::Complete(..) if fail_complete => Err(injected()),
            _ => Ok(()),
        }),
    )
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
        ..DriverConfig::default()
    }
}

async fn recording(store: &StoreUploader) -> Vec<u8> {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    Disk,
    /// s3s-fs in tapelog's own layout (`?layout=objects`: s3s-fs can't list multipart uploads).
    S3,
    /// moto in Teleport's layout: native multipart uploads.
    S3Multipart,
    /// azurite in tapelog's own layout (`az://container/prefix`).
    Azure,
    /// azurite in Teleport's layout (`azblob-http://`, two containers; azurite lacks Put
    /// Block From URL, so completion takes the fallback: tests/integration/azure_layout.rs
    /// covers the server-side path through a proxy).
    AzBlob,
    /// The GCS double (tests/integration/util/gcs.rs) in Teleport's layout (compose).
    Gcs,
}

const ALL: [Kind; 7] = [
    Kind::Memory,
    Kind::Disk,
    Kind::S3,
    Kind::S3Multipart,
    Kind::Azure,
    Kind::AzBlob,
    Kind::Gcs,
];

/// A fresh place to store uploads: its uploader, and how to open it again from its URL (as
/// another process would).
struct Backend {
    uploader: StoreUploader,
    url: String,
    opts: StorageOptions,
    dir: tempfile::TempDir,
    /// The GCS double of a [`Kind::Gcs`] backend (stops when the backend is dropped).
    _gcs: Option<crate::util::gcs::OwnedGcsDouble>,
}

impl Backend {
    fn new(kind: Kind) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let mut gcs = None;
        let (url, opts) = match kind {
            Kind::Memory => ("memory://".to_string(), StorageOptions::default()),
            Kind::Disk => (
                format!("file://{}", dir.path().display()),
                StorageOptions::default(),
            ),
            Kind::S3 => {
                let s3 = support::s3();
                (
                    format!("s3://{}/teleport/records?layout=objects", s3.bucket()),
                    s3.options(),
                )
            }
            Kind::S3Multipart => {
                let moto = support::moto();
                (
                    format!("s3://{}/teleport/records", moto.bucket()),
                    moto.options(),
                )
            }
            Kind::Azure => {
                let az = support::azure();
                (format!("az://{}/records", az.container()), az.options())
            }
            Kind::AzBlob => {
                let az = support::azure();
                let rest = az.endpoint.trim_start_matches("http://");
                (
                    format!(
                        "azblob-http://{rest}#session_container={}&inprogress_container={}",
                        az.container(),
                        az.container()
                    ),
                    StorageOptions::default(),
                )
            }
            Kind::Gcs => {
                let d = crate::util::gcs::GcsDouble::spawn_open(100);
                let url = format!(
                    "gs://{}/teleport/records?endpoint={}",
                    crate::util::gcs::BUCKET,
                    d.double.endpoint
                );
                gcs = Some(d);
                (url, StorageOptions::default())
            }
        };
        let uploader = open_storage(&url, &opts).unwrap();
        Backend {
            uploader,
            url,
            opts,
            dir,
            _gcs: gcs,
        }
    }

    /// A second uploader on the same storage (memory: the same store, it has no URL to share).
    fn reopen(&self) -> StoreUploader {
        if self.url == "memory://" {
            return self.uploader.clone();
        }
        open_storage(&self.url, &self.opts).unwrap()
    }

    /// Every object in the store, under any prefix.
    async fn objects(&self) -> Vec<String> {
        use futures::TryStreamExt;
        let all: Vec<_> = self
            .uploader
            .store()
            .list(None)
            .try_collect()
            .await
            .unwrap();
        all.into_iter().map(|o| o.location.to_string()).collect()
    }
}

/// Records `n` events through a stream and checks the completed recording; `pause` forces
/// inactivity flushes (padded partial parts) every `pause` events.
async fn case(kind: Kind, flaky: bool, n: usize, min: usize, concurrent: usize, pause: usize) {
    let b = Backend::new(kind);
    let s = b.uploader.clone();
    let evs = events(n);
    let cfg = config(min, concurrent, if pause > 0 { 30 } else { 60_000 });
    let rs = if flaky {
        let up = Arc::new(flaky_uploader(s.clone(), false));
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

const MIB: usize = 1024 * 1024;

suite! {
    memory_single_part: Kind::Memory, false, 20, 5 * MIB, 1, 0;
    memory_single_part_flaky: Kind::Memory, true, 20, 5 * MIB, 1, 0;
    memory_padding: Kind::Memory, false, 60, 64 * 1024, 1, 20;
    memory_padding_flaky: Kind::Memory, true, 60, 64 * 1024, 1, 20;
    memory_1024_events_1k_parts_2_uploads: Kind::Memory, false, 1024, 1024, 2, 0;
    memory_1024_events_1k_parts_2_uploads_flaky: Kind::Memory, true, 1024, 1024, 2, 0;
    memory_8192_events_64_uploads: Kind::Memory, false, 8192, 1024, 64, 0;
    memory_8192_events_64_uploads_flaky: Kind::Memory, true, 8192, 1024, 64, 0;
    memory_2mib_parts_joined_in_5mib_chunks: Kind::Memory, false, 100, 2 * MIB, 1, 20;
    disk_single_part: Kind::Disk, false, 20, 5 * MIB, 1, 0;
    disk_single_part_flaky: Kind::Disk, true, 20, 5 * MIB, 1, 0;
    disk_padding: Kind::Disk, false, 60, 64 * 1024, 1, 20;
    disk_padding_flaky: Kind::Disk, true, 60, 64 * 1024, 1, 20;
    disk_1024_events_1k_parts_2_uploads: Kind::Disk, false, 1024, 1024, 2, 0;
    disk_1024_events_1k_parts_2_uploads_flaky: Kind::Disk, true, 1024, 1024, 2, 0;
    disk_8192_events_64_uploads: Kind::Disk, false, 8192, 1024, 64, 0;
    disk_8192_events_64_uploads_flaky: Kind::Disk, true, 8192, 1024, 64, 0;
    disk_2mib_parts_joined_in_5mib_chunks: Kind::Disk, false, 100, 2 * MIB, 1, 20;
    s3_single_part: Kind::S3, false, 20, 5 * MIB, 1, 0;
    s3_single_part_flaky: Kind::S3, true, 20, 5 * MIB, 1, 0;
    s3_padding: Kind::S3, false, 60, 64 * 1024, 1, 20;
    s3_padding_flaky: Kind::S3, true, 60, 64 * 1024, 1, 20;
    s3_1024_events_1k_parts_2_uploads: Kind::S3, false, 1024, 1024, 2, 0;
    s3_1024_events_1k_parts_2_uploads_flaky: Kind::S3, true, 1024, 1024, 2, 0;
    s3_8192_events_64_uploads: Kind::S3, false, 8192, 1024, 64, 0;
    s3_8192_events_64_uploads_flaky: Kind::S3, true, 8192, 1024, 64, 0;
    s3_2mib_parts_joined_in_5mib_chunks: Kind::S3, false, 100, 2 * MIB, 1, 20;
    s3_multipart_single_part: Kind::S3Multipart, false, 20, 5 * MIB, 1, 0;
    s3_multipart_single_part_flaky: Kind::S3Multipart, true, 20, 5 * MIB, 1, 0;
    s3_multipart_padding: Kind::S3Multipart, false, 60, 64 * 1024, 1, 20;
    s3_multipart_padding_flaky: Kind::S3Multipart, true, 60, 64 * 1024, 1, 20;
    s3_multipart_1024_events_1k_parts_2_uploads: Kind::S3Multipart, false, 1024, 1024, 2, 0;
    s3_multipart_1024_events_1k_parts_2_uploads_flaky: Kind::S3Multipart, true, 1024, 1024, 2, 0;
    s3_multipart_8192_events_64_uploads: Kind::S3Multipart, false, 8192, 1024, 64, 0;
    s3_multipart_8192_events_64_uploads_flaky: Kind::S3Multipart, true, 8192, 1024, 64, 0;
    s3_multipart_2mib_parts: Kind::S3Multipart, false, 100, 2 * MIB, 1, 20;
    azure_single_part: Kind::Azure, false, 20, 5 * MIB, 1, 0;
    azure_single_part_flaky: Kind::Azure, true, 20, 5 * MIB, 1, 0;
    azure_padding: Kind::Azure, false, 60, 64 * 1024, 1, 20;
    azure_padding_flaky: Kind::Azure, true, 60, 64 * 1024, 1, 20;
    azure_1024_events_1k_parts_2_uploads: Kind::Azure, false, 1024, 1024, 2, 0;
    azure_1024_events_1k_parts_2_uploads_flaky: Kind::Azure, true, 1024, 1024, 2, 0;
    azure_8192_events_64_uploads: Kind::Azure, false, 8192, 1024, 64, 0;
    azure_8192_events_64_uploads_flaky: Kind::Azure, true, 8192, 1024, 64, 0;
    azure_2mib_parts_joined_in_5mib_chunks: Kind::Azure, false, 100, 2 * MIB, 1, 20;
    azblob_single_part: Kind::AzBlob, false, 20, 5 * MIB, 1, 0;
    azblob_single_part_flaky: Kind::AzBlob, true, 20, 5 * MIB, 1, 0;
    azblob_padding: Kind::AzBlob, false, 60, 64 * 1024, 1, 20;
    azblob_padding_flaky: Kind::AzBlob, true, 60, 64 * 1024, 1, 20;
    azblob_1024_events_1k_parts_2_uploads: Kind::AzBlob, false, 1024, 1024, 2, 0;
    azblob_1024_events_1k_parts_2_uploads_flaky: Kind::AzBlob, true, 1024, 1024, 2, 0;
    azblob_8192_events_64_uploads: Kind::AzBlob, false, 8192, 1024, 64, 0;
    azblob_2mib_parts: Kind::AzBlob, false, 100, 2 * MIB, 1, 20;
    gcs_single_part: Kind::Gcs, false, 20, 5 * MIB, 1, 0;
    gcs_single_part_flaky: Kind::Gcs, true, 20, 5 * MIB, 1, 0;
    gcs_padding: Kind::Gcs, false, 60, 64 * 1024, 1, 20;
    gcs_padding_flaky: Kind::Gcs, true, 60, 64 * 1024, 1, 20;
    gcs_1024_events_1k_parts_2_uploads: Kind::Gcs, false, 1024, 1024, 2, 0;
    gcs_1024_events_1k_parts_2_uploads_flaky: Kind::Gcs, true, 1024, 1024, 2, 0;
    gcs_8192_events_64_uploads: Kind::Gcs, false, 8192, 1024, 64, 0;
    gcs_2mib_parts: Kind::Gcs, false, 100, 2 * MIB, 1, 20;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_parts_are_the_minimum_size() {
    for kind in ALL {
        let b = Backend::new(kind);
        let s = b.uploader.clone();
        let up = Arc::new(s.clone());
        let stream = RecordingStream::create(up.clone(), SID, config(64 * 1024, 1, 30))
            .await
            .unwrap();
        let evs = events(10);
        for e in &evs {
            stream.record(e.clone()).await.unwrap();
        }
        // The 30 ms inactivity timer flushes the part; its upload may take a while on a
        // loaded machine, so wait for it (bounded) rather than for a fixed time.
        let upload = stream.upload().clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut parts = s.list_parts(&upload).await.unwrap();
        while parts.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            parts = s.list_parts(&upload).await.unwrap();
        }
        assert_eq!(parts.len(), 1, "{kind:?}: flushed by inactivity");
        let objects = b.objects().await;
        if kind == Kind::S3Multipart {
            // The part is in S3's multipart upload (its size is S3's to check); beside it,
            // its span, under Teleport's prefix and outside `<sid>.tar*`.
            let span = format!("teleport/records/tapelog-spans/{SID}/");
            assert!(
                objects
                    .iter()
                    .any(|o| o.starts_with(&span) && o.ends_with(".span")),
                "{objects:?}"
            );
        } else if kind == Kind::Gcs {
            // Teleport's GCS layout: parts/<upload>/<n>.part under the prefix.
            let name = format!(
                "teleport/records/parts/{}/{}.part",
                upload.id, parts[0].number
            );
            assert!(objects.contains(&name), "{name} not in {objects:?}");
            let meta = s.store().head(&name.as_str().into()).await.unwrap();
            assert_eq!(meta.size, 64 * 1024, "{kind:?}");
        } else if kind == Kind::AzBlob {
            // Teleport's Azure layout: part/<sid>/<upload>/<n> in the inprogress container.
            let az = s.azure_layout().unwrap();
            let meta = az
                .inprogress_store()
                .head(&az.part_path(&upload, parts[0].number))
                .await
                .unwrap();
            assert_eq!(
                meta.location.as_ref(),
                format!("part/{SID}/{}/{}", upload.id, parts[0].number)
            );
            assert_eq!(meta.size, 64 * 1024, "{kind:?}");
        } else {
            // Upstream's layout: multi/<upload>/<session>/<n>.part
            let name = format!("multi/{}/{SID}/{}.part", upload.id, parts[0].number);
            let part = objects
                .iter()
                .find(|o| o.ends_with(&name))
                .unwrap_or_else(|| panic!("{kind:?}: no {name} in {objects:?}"));
            let meta = s.store().head(&part.as_str().into()).await.unwrap();
            assert_eq!(meta.size, 64 * 1024, "{kind:?}");
            if kind == Kind::Disk {
                let file = b.dir.path().join(&name);
                assert_eq!(std::fs::metadata(&file).unwrap().len(), 64 * 1024);
            }
            if kind == Kind::S3 {
                assert!(part.starts_with("teleport/records/multi/"), "{part}");
            }
        }
        stream.close().await.unwrap();
        let listed = b.reopen().list_uploads().await.unwrap();
        assert_eq!(
            listed,
            vec![StreamUpload {
                initiated_ms: listed[0].initiated_ms,
                ..upload
            }],
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_stream_completes_without_a_recording() {
    for kind in ALL {
        let b = Backend::new(kind);
        let s = b.uploader.clone();
        let stream = RecordingStream::create(Arc::new(s.clone()), SID, config(1024, 1, 60_000))
            .await
            .unwrap();
        stream.complete().await.unwrap();
        assert!(s.list_uploads().await.unwrap().is_empty(), "{kind:?}");
        assert!(s.store().head(&s.recording_path(SID)).await.is_err());
        assert_eq!(b.objects().await, Vec::<String>::new(), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_failed_complete() {
    for kind in ALL {
        let b = Backend::new(kind);
        let s = b.uploader.clone();
        let flaky = Arc::new(flaky_uploader(s.clone(), true));
        let evs = events(500);
        let cfg = config(1024, 2, 60_000);
        let stream = RecordingStream::create(flaky.clone(), SID, cfg.clone())
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
        // Another process resumes and completes it: a second uploader from the same URL.
        let other = b.reopen();
        let listed = other.list_uploads().await.unwrap();
        assert_eq!(listed.len(), 1, "{kind:?}");
        assert_eq!(listed[0].id, upload.id);
        let resumed = RecordingStream::resume(Arc::new(other.clone()), listed[0].clone(), cfg)
            .await
            .unwrap();
        resumed.complete().await.unwrap();
        check(&recording(&s).await, &evs);
        assert!(other.list_uploads().await.unwrap().is_empty());
        let base = b.url.split('?').next().unwrap().trim_end_matches('/');
        let want = if kind == Kind::AzBlob {
            // Teleport's recording URL on Azure: the blob's own URL.
            let (account, frag) = base.split_once('#').unwrap();
            let container = frag.split('&').next().unwrap();
            let account = account.replace("azblob-http://", "http://");
            format!(
                "{account}/{}/{SID}",
                container.trim_start_matches("session_container=")
            )
        } else if base.ends_with(':') {
            format!("{base}//{SID}")
        } else {
            format!("{base}/{SID}")
        };
        assert_eq!(s.recording_url(SID), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_are_refused_by_the_uploader() {
    for kind in ALL {
        let b = Backend::new(kind);
        let s = b.uploader.clone();
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
            if kind == Kind::S3Multipart && check_upload_id(bad).is_ok() {
                // A well-formed S3 upload id that S3 does not know.
                assert!(matches!(err, UploadError::NotFound(_)), "{err}");
                continue;
            }
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
        // Nothing was written for the refused ids.
        assert_eq!(b.objects().await, Vec::<String>::new(), "{kind:?}");
        if kind == Kind::Disk {
            assert_eq!(std::fs::read_dir(b.dir.path()).unwrap().count(), 0);
        }
    }
    assert!(check_id("session id", SID).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_completer_is_locked_out() {
    // Only tapelog's own layout has a lock. S3 completes a multipart upload once; Teleport's
    // GCS and Azure layouts complete idempotently (racing_completers_one_wins).
    for kind in ALL
        .into_iter()
        .filter(|k| !matches!(k, Kind::S3Multipart | Kind::Gcs | Kind::AzBlob))
    {
        let b = Backend::new(kind);
        let s = b.uploader.clone();
        let u = s.create_upload(SID).await.unwrap();
        let evs = events(10);
        let part = tapelog_core::codec::encode_recording(&evs, WriterConfig::default()).unwrap();
        let mut w = tapelog_core::codec::PartBuilder::new(WriterConfig::default());
        for e in &evs {
            w.add(e).unwrap();
        }
        let p = s.upload_part(&u, 1, &w.finish(true)).await.unwrap();
        // Hold the lock as a concurrent completer (another process) would.
        let lock = s.lock_path(&u);
        s.store()
            .put(&lock, object_store::PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let other = b.reopen();
        let err = other
            .complete_upload(&u, std::slice::from_ref(&p))
            .await
            .unwrap_err();
        assert!(matches!(err, UploadError::Locked(_)), "{kind:?}: {err}");
        // The locked-out completer touched nothing.
        assert!(s.store().head(&s.recording_path(SID)).await.is_err());
        let listed = s.list_parts(&u).await.unwrap();
        assert_eq!(listed.len(), 1, "{kind:?}");
        assert_eq!(listed[0].number, p.number);
        s.store().delete(&lock).await.unwrap();
        other.complete_upload(&u, &[p]).await.unwrap();
        assert_eq!(recording(&s).await, part, "{kind:?}");
        // Completed: a second complete finds nothing.
        assert!(matches!(
            s.complete_upload(&u, &[]).await,
            Err(UploadError::NotFound(_))
        ));
        assert_eq!(
            b.objects().await.len(),
            1,
            "{kind:?}: only the recording is left"
        );
    }
}

/// Many completers at once: one wins where create-if-absent is atomic, the others are locked
/// out or find the upload gone. s3s-fs checks `If-None-Match` and then writes, so there
/// several may win (see `docs/storage.md`); the recording must still be exact everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_completers_one_wins() {
    for kind in ALL {
        let b = Backend::new(kind);
        let s = b.uploader.clone();
        let u = s.create_upload(SID).await.unwrap();
        let cfg = WriterConfig {
            min_upload_bytes: 64 * 1024,
            ..WriterConfig::default()
        };
        let mut parts = Vec::new();
        let mut expect = Vec::new();
        for (i, chunk) in events(60).chunks(20).enumerate() {
            let mut w = tapelog_core::codec::PartBuilder::new(cfg);
            for e in chunk {
                w.add(e).unwrap();
            }
            let bytes = w.finish(i == 2);
            expect.extend_from_slice(&bytes.to_vec());
            parts.push(s.upload_part(&u, 2 * i as u32 + 1, &bytes).await.unwrap());
        }
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (other, u, parts) = (b.reopen(), u.clone(), parts.clone());
            tasks.push(tokio::spawn(async move {
                other.complete_upload(&u, &parts).await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => won += 1,
                Err(UploadError::Locked(_) | UploadError::NotFound(_)) => {}
                Err(e) => panic!("{kind:?}: {e}"),
            }
        }
        if matches!(
            kind,
            Kind::S3 | Kind::S3Multipart | Kind::Gcs | Kind::AzBlob
        ) {
            // s3s-fs: its create-if-absent is not atomic. S3 (moto too) answers a repeated
            // CompleteMultipartUpload of a completed upload with success. GCS and Azure in Teleport's layout
            // have no lock: a completer that finds the recording made only cleans up.
            assert!(won >= 1, "{kind:?}: nobody completed");
        } else {
            assert_eq!(won, 1, "{kind:?}");
        }
        assert_eq!(recording(&s).await, expect, "{kind:?}");
        assert!(s.list_uploads().await.unwrap().is_empty(), "{kind:?}");
        assert_eq!(
            b.objects().await.len(),
            1,
            "{kind:?}: only the recording is left"
        );
    }
}

/// Completion joins the parts in number order whatever order they are given in, byte for
/// byte, with chunk boundaries in the middle of parts (2 MiB parts, 5 MiB chunks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_joins_parts_in_order_byte_for_byte() {
    for kind in ALL {
        let b = Backend::new(kind);
        let s = b.uploader.clone();
        let u = s.create_upload(SID).await.unwrap();
        let cfg = WriterConfig {
            min_upload_bytes: 2 * MIB,
            ..WriterConfig::default()
        };
        let mut parts = Vec::new();
        let mut expect = Vec::new();
        let evs = events(70);
        for (i, chunk) in evs.chunks(10).enumerate() {
            let mut w = tapelog_core::codec::PartBuilder::new(cfg);
            for e in chunk {
                w.add(e).unwrap();
            }
            let bytes = w.finish(i == 6);
            expect.extend_from_slice(&bytes.to_vec());
            parts.push(s.upload_part(&u, 2 * i as u32 + 1, &bytes).await.unwrap());
        }
        assert!(expect.len() > 12 * MIB, "{}", expect.len());
        parts.reverse();
        b.reopen().complete_upload(&u, &parts).await.unwrap();
        let got = recording(&s).await;
        assert!(got == expect, "{kind:?}: joined bytes differ");
        check(&got, &evs);
        if kind == Kind::Disk {
            let file = b.dir.path().join(format!("{SID}.tar"));
            assert_eq!(std::fs::read(file).unwrap(), expect);
        }
    }
}

#[tokio::test]
async fn a_panicking_upload_fails_the_stream_instead_of_hanging() {
    let up = Arc::new(Hooked::new(StoreUploader::memory(), |call: Call<'_>| {
        if let Call::UploadPart(_, n, _) = call {
            panic!("uploader bug at part {n}");
        }
        Ok(())
    }));
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

/// Every attempt at a part: its number and bytes.
type Attempts = Vec<(u32, Vec<u8>)>;

/// Upstream once sent a retried padded part with a header computed for the unpadded bytes.
/// Every attempt at a part must carry the same bytes, and the header must describe them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_padded_part_sends_the_same_bytes_with_the_right_header() {
    let s = StoreUploader::memory();
    // Keeps the bytes of every attempt at every part; fails the first attempt of each.
    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let seen = attempts.clone();
    let up = Arc::new(Hooked::new(s.clone(), move |call: Call<'_>| {
        if let Call::UploadPart(_, n, p) = call {
            let mut a = seen.lock().unwrap();
            let first = !a.iter().any(|(m, _)| *m == n);
            a.push((n, p.to_vec()));
            if first {
                return Err(injected());
            }
        }
        Ok(())
    }));
    let evs = events(60);
    let rs = record(up.clone(), &evs, config(64 * 1024, 1, 30), 20).await;
    assert_eq!(rs, evs.last().unwrap().index());
    let attempts = attempts.lock().unwrap().clone();
    let mut padded = 0;
    for (n, bytes) in &attempts {
        let same: Vec<&Vec<u8>> = attempts
            .iter()
            .filter(|(m, _)| m == n)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(same.len(), 2, "part {n}: one failed attempt, one retry");
        assert!(
            same.iter().all(|b| b == &bytes),
            "part {n}: the retry differs"
        );
        let size = u64::from_be_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let pad = u64::from_be_bytes(bytes[16..24].try_into().unwrap()) as usize;
        assert_eq!(
            24 + size + pad,
            bytes.len(),
            "part {n}: header does not match its bytes"
        );
        assert!(bytes[24 + size..].iter().all(|&b| b == 0));
        padded += usize::from(pad > 0);
    }
    assert!(padded >= 2, "{padded} padded parts");
    check(&recording(&s).await, &evs);
}
