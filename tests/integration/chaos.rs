//! Chaos: 20 concurrent streams (8 on S3 multipart, moto) × 4096 print events through a store that drops connections
//! (part uploads fail, sometimes past the retry budget, which fails the stream), fails creates
//! and resumes, while writers lose checkpoints (status updates they never see) and lose their
//! connection to the stream (the stream is dropped mid-way, its uploads cut off). Each writer
//! resumes the upload and replays from the last checkpoint it saw. All 20 recordings must
//! complete and read back exactly: every event once, in order.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tapelog_core::AuditEvent;
use tapelog_core::codec::{WriterConfig, read_all};
use tapelog_core::stream::StreamConfig;
use tapelog_core::vectors;
use tapelog_store::stream::{DriverConfig, RecordingStream, RetryPolicy};
use tapelog_store::{Call, Hooked, MultipartUploader, StoreUploader, StreamUpload, UploadError};

/// A small deterministic random source (xorshift), shared behind a mutex.
struct Dice(Mutex<u64>);

impl Dice {
    fn new(seed: u64) -> Dice {
        Dice(Mutex::new(seed | 1))
    }
    /// True with probability `p`.
    fn roll(&self, p: f64) -> bool {
        let mut r = self.0.lock().unwrap();
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        ((*r >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

fn dropped() -> UploadError {
    UploadError::Store(object_store::Error::Generic {
        store: "chaos",
        source: "connection dropped".into(),
    })
}

/// A store whose calls fail at random: creates, resumes (listing parts) and completes 30 % of
/// the time, part uploads 25 %, part reads 5 %.
fn chaos(
    inner: StoreUploader,
    dice: Dice,
    failures: Arc<AtomicU64>,
) -> Hooked<StoreUploader, impl Fn(Call<'_>) -> Result<(), UploadError> + Send + Sync + 'static> {
    Hooked::new(inner, move |call| {
        let p = match call {
            Call::Create(_) | Call::ListParts(_) | Call::Complete(..) => 0.3,
            Call::UploadPart(..) => 0.25,
            Call::ReadPart(..) => 0.05,
            _ => 0.0,
        };
        if dice.roll(p) {
            failures.fetch_add(1, Ordering::Relaxed);
            return Err(dropped());
        }
        Ok(())
    })
}

fn config() -> DriverConfig {
    DriverConfig {
        stream: StreamConfig {
            writer: WriterConfig {
                min_upload_bytes: 8 * 1024,
                ..WriterConfig::default()
            },
            max_concurrent_uploads: 4,
            inactivity_flush_ms: 60_000,
            release_after_ms: 30_000,
        },
        // Two attempts: a part whose two attempts are both dropped fails the stream.
        retry: RetryPolicy {
            attempts: 2,
            step: Duration::from_millis(1),
            max: Duration::from_millis(2),
        },
        ..DriverConfig::default()
    }
}

#[derive(Default, Debug)]
struct Counts {
    resumes: u64,
    dropped_streams: u64,
    lost_checkpoints: u64,
}

/// One writer: records `events`, resuming and replaying after every failure.
async fn writer<U: MultipartUploader>(
    store: Arc<U>,
    sid: String,
    events: Vec<AuditEvent>,
    seed: u64,
) -> Counts {
    let dice = Arc::new(Dice::new(seed));
    let checkpoint = Arc::new(AtomicI64::new(-1));
    let lost = Arc::new(AtomicU64::new(0));
    let mut counts = Counts::default();
    let mut upload: Option<StreamUpload> = None;
    for _round in 0..500 {
        let opened = match &upload {
            None => RecordingStream::create(store.clone(), &sid, config()).await,
            Some(u) => {
                counts.resumes += 1;
                RecordingStream::resume(store.clone(), u.clone(), config()).await
            }
        };
        let Ok(stream) = opened else { continue };
        upload = Some(stream.upload().clone());
        // Status updates reach the writer, or not.
        let mut status = stream.status();
        let (cp, d, l) = (checkpoint.clone(), dice.clone(), lost.clone());
        let watcher = tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let i = status.borrow_and_update().last_event_index;
                if d.roll(0.5) {
                    l.fetch_add(1, Ordering::Relaxed);
                } else {
                    cp.fetch_max(i, Ordering::Relaxed);
                }
            }
        });
        let from = checkpoint.load(Ordering::Relaxed);
        let mut failed = false;
        for e in events.iter().filter(|e| e.index() > from) {
            if dice.roll(1.0 / 3000.0) {
                // The connection to the stream is gone: drop it, uploads and all.
                counts.dropped_streams += 1;
                failed = true;
                break;
            }
            if stream.record(e.clone()).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            drop(stream);
            watcher.abort();
            continue;
        }
        let done = stream.complete().await;
        watcher.abort();
        if done.is_ok() {
            counts.lost_checkpoints = lost.load(Ordering::Relaxed);
            return counts;
        }
    }
    panic!("session {sid}: no complete after 500 rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streams_under_chaos_complete_exactly() {
    chaos_run(StoreUploader::memory(), 20, Duration::from_secs(120)).await;
}

/// The same on native S3 multipart uploads (moto): part spans come from the side objects,
/// completion is `CompleteMultipartUpload`. Fewer streams, since moto is slower than memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_under_chaos_complete_exactly_on_s3_multipart() {
    let moto = crate::util::stores::moto();
    let url = format!("s3://{}/chaos", moto.bucket());
    let inner = tapelog_store::open_storage(&url, &moto.options()).unwrap();
    assert_eq!(inner.layout_name(), "s3-multipart");
    chaos_run(inner, 8, Duration::from_secs(300)).await;
}

/// `streams` writers record through `inner` with chaos injected; every recording must read back
/// exactly and no upload be left.
async fn chaos_run(inner: StoreUploader, streams: u64, limit: Duration) {
    let failures = Arc::new(AtomicU64::new(0));
    let store = Arc::new(chaos(
        inner.clone(),
        Dice::new(0x9e37_79b9_7f4a_7c15),
        failures.clone(),
    ));
    let mut sessions = Vec::new();
    for s in 0..streams {
        let sid = format!("00000000-0000-4000-8000-{s:012x}");
        let mut events = vectors::noisy_session(4096 + 2);
        for e in &mut events {
            if let Some(m) = e.session_metadata_mut() {
                m.session_id = sid.clone();
            }
        }
        sessions.push((sid, events));
    }
    let tasks: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, (sid, events))| {
            tokio::spawn(writer(
                store.clone(),
                sid.clone(),
                events.clone(),
                1000 + i as u64,
            ))
        })
        .collect();
    let all = tokio::time::timeout(limit, futures::future::join_all(tasks))
        .await
        .unwrap_or_else(|_| panic!("chaos run took over {limit:?}"));
    let mut total = Counts::default();
    for c in all {
        let c = c.unwrap();
        total.resumes += c.resumes;
        total.dropped_streams += c.dropped_streams;
        total.lost_checkpoints += c.lost_checkpoints;
    }
    // The chaos really happened.
    assert!(failures.load(Ordering::Relaxed) > 5 * streams, "{total:?}");
    assert!(total.resumes > streams, "{total:?}");
    assert!(total.lost_checkpoints > streams, "{total:?}");

    use object_store::ObjectStoreExt;
    for (sid, events) in &sessions {
        let bytes = inner
            .store()
            .get(&inner.recording_path(sid))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let got = read_all(&bytes);
        assert!(got.error.is_none(), "{sid}: {:?}", got.error);
        assert_eq!(got.stats.out_of_order, 0, "{sid}");
        assert_eq!(
            got.stats.total - got.stats.skipped,
            events.len() as u64,
            "{sid}"
        );
        assert!(got.events == *events, "{sid}: events differ");
    }
    assert!(inner.list_uploads().await.unwrap().is_empty());
    eprintln!(
        "chaos: {} injected failures, {total:?}",
        failures.load(Ordering::Relaxed)
    );
}
