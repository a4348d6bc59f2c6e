//! S3 in Teleport's layout (native multipart uploads of `<prefix>/<sid>.tar`), against moto on
//! loopback, both ways: an upload made with plain S3 calls the way Teleport's uploader makes
//! it is listed, resumed and completed by tapelog; an upload tapelog starts is a plain
//! multipart upload with Teleport's key, which plain S3 calls (Teleport's completer) list and
//! complete. Also: resumes read the spans kept beside the parts (parts of an unfinished upload
//! can't be read back), completion moves no part bytes through tapelog (a counting proxy),
//! uploads in tapelog's old layout on the same bucket still complete, and the URL options
//! reach S3.

use crate::util::stores::{MOTO_MIN_PART, moto};

use crate::util::parts::{driver, part};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use object_store::ObjectStoreExt;
use tapelog_core::AuditEvent;
use tapelog_core::codec::read_all;
use tapelog_store::stream::{RecordingStream, RetryPolicy, plan_resume};
use tapelog_store::url::{StorageOptions, open_storage};
use tapelog_store::{MultipartUploader, StoreUploader, StreamUpload};

const SID: &str = "3f1c9a52-7d4e-4b8a-9c61-0e2f5a7b8d90";
const PREFIX: &str = "teleport/records";

fn events(n: usize) -> Vec<AuditEvent> {
    crate::util::parts::session_events(SID, n)
}

/// A plain S3 client of the test moto (what Teleport's uploader is, as far as S3 can tell).
fn sdk(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("k", "s", None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

struct Bucket {
    name: String,
    url: String,
    opts: StorageOptions,
    sdk: Client,
}

fn bucket() -> Bucket {
    let m = moto();
    let name = m.bucket();
    Bucket {
        url: format!("s3://{name}/{PREFIX}"),
        sdk: sdk(&m.endpoint),
        opts: m.options(),
        name,
    }
}

impl Bucket {
    fn uploader(&self) -> StoreUploader {
        open_storage(&self.url, &self.opts).unwrap()
    }

    fn key(&self) -> String {
        format!("{PREFIX}/{SID}.tar")
    }

    /// Every object key in the bucket.
    async fn objects(&self) -> Vec<String> {
        let out = self
            .sdk
            .list_objects_v2()
            .bucket(&self.name)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// The multipart uploads a plain `ListMultipartUploads` shows: (key, upload id).
    async fn plain_uploads(&self) -> Vec<(String, String)> {
        let out = self
            .sdk
            .list_multipart_uploads()
            .bucket(&self.name)
            .prefix(PREFIX)
            .send()
            .await
            .unwrap();
        out.uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap_or_default().to_string(),
                    u.upload_id().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    async fn recording(&self) -> Vec<u8> {
        let s = self.uploader();
        s.store()
            .get(&s.recording_path(SID))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_started_the_teleport_way_is_resumed_and_completed_by_tapelog() {
    let b = bucket();
    let evs = events(300);
    // Teleport's calls: CreateMultipartUpload of <prefix>/<sid>.tar, parts 1 and 3 (its
    // numbers are sparse), no tapelog side objects.
    let created = b
        .sdk
        .create_multipart_upload()
        .bucket(&b.name)
        .key(b.key())
        .send()
        .await
        .unwrap();
    let id = created.upload_id().unwrap().to_string();
    for (n, chunk) in [(1, &evs[..100]), (3, &evs[100..200])] {
        b.sdk
            .upload_part()
            .bucket(&b.name)
            .key(b.key())
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(part(chunk, 64 * 1024, false).to_vec()))
            .send()
            .await
            .unwrap();
    }
    let s = b.uploader();
    let listed = s.list_uploads().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].id.as_str(), listed[0].session_id.as_str()),
        (id.as_str(), SID)
    );
    let numbers: Vec<u32> = s
        .list_parts(&listed[0])
        .await
        .unwrap()
        .iter()
        .map(|p| p.number)
        .collect();
    assert_eq!(numbers, [1, 3]);
    // No spans: the parts are kept as listed and the writer replays everything.
    let stream = RecordingStream::resume(Arc::new(s.clone()), listed[0].clone(), driver(64 * 1024))
        .await
        .unwrap();
    assert_eq!(stream.status().borrow().last_event_index, -1);
    for e in &evs {
        stream.record(e.clone()).await.unwrap();
    }
    stream.complete().await.unwrap();
    let got = read_all(&b.recording().await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, evs, "replayed events are dropped by the reader");
    assert!(b.plain_uploads().await.is_empty());
    assert_eq!(b.objects().await, [b.key()], "only the recording is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tapelogs_upload_is_a_plain_multipart_upload_that_teleports_calls_complete() {
    let b = bucket();
    let evs = events(400);
    let s = b.uploader();
    let stream = RecordingStream::create(Arc::new(s.clone()), SID, driver(16 * 1024))
        .await
        .unwrap();
    for e in &evs {
        stream.record(e.clone()).await.unwrap();
    }
    let upload = stream.upload().clone();
    stream.close().await.unwrap();
    // Teleport's ListUploads: ListMultipartUploads by prefix, key <prefix>/<sid>.tar.
    assert_eq!(b.plain_uploads().await, [(b.key(), upload.id.clone())]);
    let ours = s.list_parts(&upload).await.unwrap();
    assert!(ours.len() >= 3, "{ours:?}");
    let theirs = b
        .sdk
        .list_parts()
        .bucket(&b.name)
        .key(b.key())
        .upload_id(&upload.id)
        .send()
        .await
        .unwrap();
    let plain: Vec<(u32, String)> = theirs
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap() as u32,
                p.e_tag().unwrap().to_string(),
            )
        })
        .collect();
    let mine: Vec<(u32, String)> = ours.iter().map(|p| (p.number, p.etag.clone())).collect();
    assert_eq!(plain, mine);
    // Teleport's CompleteUpload: the listed parts' ETags in number order.
    let parts = plain
        .iter()
        .map(|(n, etag)| {
            CompletedPart::builder()
                .part_number(*n as i32)
                .e_tag(etag)
                .build()
        })
        .collect();
    b.sdk
        .complete_multipart_upload()
        .bucket(&b.name)
        .key(b.key())
        .upload_id(&upload.id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = read_all(&b.recording().await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, evs);
    assert!(s.list_uploads().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_reads_the_spans_and_leaves_out_a_part_after_a_hole() {
    let b = bucket();
    let evs = events(30);
    let s = b.uploader();
    let upload = s.create_upload(SID).await.unwrap();
    // Part 1 holds 0..=9; part 5 holds 20..=29; part 3 (10..=19) never arrived.
    s.upload_part(&upload, 1, &part(&evs[..10], 4096, false))
        .await
        .unwrap();
    s.upload_part(&upload, 5, &part(&evs[20..], 4096, false))
        .await
        .unwrap();
    let plan = plan_resume(&s, &upload, RetryPolicy::default())
        .await
        .unwrap();
    let kept: Vec<u32> = plan.keep.iter().map(|p| p.number).collect();
    assert_eq!(kept, [1]);
    assert_eq!(plan.orphans, [5]);
    assert_eq!(plan.durable_index, evs[9].index());
    assert_eq!(plan.highest_number, 5);
    // Resumed from another process: the writer replays from index 10, the orphan stays out.
    let stream = RecordingStream::resume(Arc::new(b.uploader()), upload.clone(), driver(4096))
        .await
        .unwrap();
    assert_eq!(stream.status().borrow().last_event_index, evs[9].index());
    for e in &evs[10..] {
        stream.record(e.clone()).await.unwrap();
    }
    stream.complete().await.unwrap();
    let got = read_all(&b.recording().await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.out_of_order, 0);
    assert_eq!(got.events, evs);
    assert_eq!(
        b.objects().await,
        [b.key()],
        "spans are deleted with the upload"
    );
}

/// A TCP proxy on loopback in front of moto that counts the bytes each way.
struct CountingProxy {
    endpoint: String,
    down: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
}

async fn counting_proxy(target: &str) -> CountingProxy {
    let target = target.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (down, up) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (d, u) = (down.clone(), up.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (d, u, target) = (d.clone(), u.clone(), target.clone());
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let to_server = async {
                    let n = tokio::io::copy(&mut cr, &mut sw).await.unwrap_or(0);
                    u.fetch_add(n, Ordering::Relaxed);
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut sw).await;
                };
                let to_client = async {
                    let n = tokio::io::copy(&mut sr, &mut cw).await.unwrap_or(0);
                    d.fetch_add(n, Ordering::Relaxed);
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut cw).await;
                };
                tokio::join!(to_server, to_client);
            });
        }
    });
    CountingProxy { endpoint, down, up }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_moves_no_part_bytes_through_tapelog() {
    let b = bucket();
    let proxy = counting_proxy(&moto().endpoint).await;
    let opts = StorageOptions {
        endpoint: Some(proxy.endpoint.clone()),
        ..b.opts.clone()
    };
    let s = open_storage(&b.url, &opts).unwrap();
    let evs = events(2000);
    let upload = s.create_upload(SID).await.unwrap();
    let mut parts = Vec::new();
    let mut size = 0;
    for (i, chunk) in evs.chunks(100).enumerate() {
        let p = part(chunk, 256 * 1024, i == 19);
        size += p.len();
        parts.push(s.upload_part(&upload, 2 * i as u32 + 1, &p).await.unwrap());
    }
    assert!(size > 4 << 20, "{size}");
    let (down, up) = (
        proxy.down.load(Ordering::Relaxed),
        proxy.up.load(Ordering::Relaxed),
    );
    s.complete_upload(&upload, &parts).await.unwrap();
    // Connections kept open by the pool are counted as their bytes pass.
    let down = proxy.down.load(Ordering::Relaxed) - down;
    let up = proxy.up.load(Ordering::Relaxed) - up;
    eprintln!("complete of {size} bytes in 20 parts: {up} bytes sent, {down} received");
    assert!(down < 64 * 1024, "{down} bytes came back while completing");
    assert!(up < 64 * 1024, "{up} bytes were sent while completing");
    let got = read_all(&b.recording().await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, evs);
    assert_eq!(b.recording().await.len() as u64, size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_tapelogs_old_layout_still_list_resume_and_complete() {
    let b = bucket();
    let evs = events(200);
    let old = open_storage(&format!("{}?layout=objects", b.url), &b.opts).unwrap();
    assert_eq!(old.layout_name(), "objects");
    let stream = RecordingStream::create(Arc::new(old.clone()), SID, driver(4096))
        .await
        .unwrap();
    for e in &evs[..120] {
        stream.record(e.clone()).await.unwrap();
    }
    let upload: StreamUpload = stream.upload().clone();
    stream.close().await.unwrap();
    assert!(
        b.plain_uploads().await.is_empty(),
        "the old layout is plain objects"
    );

    let s = b.uploader();
    assert_eq!(s.layout_name(), "s3-multipart");
    let listed = s.list_uploads().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, upload.id);
    let stream = RecordingStream::resume(Arc::new(s.clone()), listed[0].clone(), driver(4096))
        .await
        .unwrap();
    // The old layout's parts can be read back: the resume knows what is durable.
    assert_eq!(stream.status().borrow().last_event_index, evs[119].index());
    for e in &evs[120..] {
        stream.record(e.clone()).await.unwrap();
    }
    stream.complete().await.unwrap();
    let got = read_all(&b.recording().await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, evs);
    assert!(s.list_uploads().await.unwrap().is_empty());
    assert_eq!(
        b.objects().await,
        [b.key()],
        "the old layout's objects are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_parts_follows_every_page() {
    // S3 answers ListParts 1,000 parts at a time.
    let b = bucket();
    let s = b.uploader();
    let upload = s.create_upload(SID).await.unwrap();
    let evs = events(1);
    let p = part(&evs, MOTO_MIN_PART, false);
    let tasks: Vec<_> = (1..=1100u32)
        .map(|n| {
            let (s, upload, p) = (s.clone(), upload.clone(), p.clone());
            tokio::spawn(async move { s.upload_part(&upload, n, &p).await.unwrap() })
        })
        .collect();
    futures::future::join_all(tasks).await;
    let parts = s.list_parts(&upload).await.unwrap();
    let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
    assert_eq!(numbers, (1..=1100).collect::<Vec<_>>());
    s.abort_upload(&upload).await.unwrap();
    assert!(s.list_uploads().await.unwrap().is_empty());
    assert!(
        b.objects().await.is_empty(),
        "spans are deleted with the upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_and_acl_options_reach_s3() {
    for (query, want) in [("", Some("aws:kms")), ("?disablesse=true", None)] {
        let b = bucket();
        let url = format!("{}{query}", b.url);
        let s = open_storage(&url, &b.opts).unwrap();
        let evs = events(10);
        let upload = s.create_upload(SID).await.unwrap();
        let p = s
            .upload_part(&upload, 1, &part(&evs, 1024, true))
            .await
            .unwrap();
        s.complete_upload(&upload, &[p]).await.unwrap();
        let head = b
            .sdk
            .head_object()
            .bucket(&b.name)
            .key(b.key())
            .send()
            .await
            .unwrap();
        let sse = head
            .server_side_encryption()
            .map(|s| s.as_str().to_string());
        assert_eq!(sse.as_deref(), want, "{query}");
    }
    let b = bucket();
    let s = open_storage(&format!("{}?acl=bucket-owner-full-control", b.url), &b.opts).unwrap();
    let upload = s.create_upload(SID).await.unwrap();
    assert_eq!(b.plain_uploads().await, [(b.key(), upload.id.clone())]);
    // Zero parts: aborted, as Teleport does; no recording.
    s.complete_upload(&upload, &[]).await.unwrap();
    assert!(b.plain_uploads().await.is_empty());
    assert!(b.objects().await.is_empty());
}
