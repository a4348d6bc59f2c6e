//! Azure in Teleport's layout (`AzureLayout`) against azurite on loopback: the recording is the
//! block blob `<sid>` of the session container; markers `upload/<sid>/<uid>` and parts
//! `part/<sid>/<uid>/<n>` live in the inprogress container; completion is Put Block From URL
//! of each part and Put Block List.
//!
//! Azurite 3.35 does not implement Put Block From URL, so the tests that prove the real path
//! go through `util::azproxy`, a proxy that implements it faithfully (it reads the SAS-signed
//! source itself and stages the bytes with a Put Block), and whose log shows that tapelog sent
//! no part bytes while completing. The same uploads straight against azurite take the
//! layout's fallback (each part read back and staged with Put Block).

use crate::util::parts::{driver, part};

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use tapelog_core::AuditEvent;
use tapelog_core::codec::read_all;
use tapelog_store::layout::azure::{AzureAuth, AzureContainers, AzureLayout, SharedKey};
use tapelog_store::stream::RecordingStream;
use tapelog_store::url::{AZURE_EMULATOR_ACCOUNT, AZURE_EMULATOR_KEY};
use tapelog_store::{MultipartUploader, StreamUpload};

use crate::util::azproxy::{self, AzProxy};
use crate::util::stores::azure;

const SID: &str = "8b2d4f60-1a3c-4e5f-9a7b-2c4d6e8f0a1b";

fn events(n: usize) -> Vec<AuditEvent> {
    crate::util::parts::session_events(SID, n)
}

/// Fresh session and inprogress containers of the test azurite.
fn containers() -> AzureContainers {
    AzureContainers {
        session: azure().container(),
        inprogress: azure().container(),
    }
}

/// The layout on `containers`, at `endpoint` (azurite's, or a proxy's).
fn layout(endpoint: &str, containers: &AzureContainers) -> AzureLayout {
    AzureLayout::new(
        AZURE_EMULATOR_ACCOUNT,
        AzureAuth::SharedKey(AZURE_EMULATOR_KEY.to_string()),
        Some(endpoint),
        containers.clone(),
    )
    .unwrap()
}

async fn names(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut v: Vec<String> = store
        .list(None)
        .map_ok(|o| o.location.to_string())
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

async fn recording(l: &AzureLayout) -> Bytes {
    l.store()
        .get(&l.recording_path(SID))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// Uploads `evs` as `n` parts numbered 1, 3, 5… (Teleport's sparse numbers); returns the
/// listed parts and the bytes the recording must hold.
async fn upload_parts(
    l: &AzureLayout,
    upload: &StreamUpload,
    evs: &[AuditEvent],
    n: usize,
) -> Vec<u8> {
    let per = evs.len().div_ceil(n);
    let mut want = Vec::new();
    for (i, chunk) in evs.chunks(per).enumerate() {
        let p = part(chunk, 32 * 1024, i + 1 == n);
        want.extend_from_slice(&p.to_vec());
        l.upload_part(upload, 2 * i as u32 + 1, &p).await.unwrap();
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_parts_complete_by_put_block_from_url_with_no_part_bytes_through_tapelog() {
    let c = containers();
    let proxy: AzProxy = azproxy::start(&azure().endpoint).await;
    let l = layout(&proxy.endpoint, &c);
    let evs = events(900);
    let upload = l.create_upload(SID).await.unwrap();
    let want = upload_parts(&l, &upload, &evs, 30).await;
    let parts = l.list_parts(&upload).await.unwrap();
    assert_eq!(parts.len(), 30);
    assert_eq!(parts[29].number, 59);
    let mark = proxy.mark();
    l.complete_upload(&upload, &parts).await.unwrap();
    let calls = proxy.calls_since(mark);
    let from_url: Vec<_> = calls.iter().filter(|c| c.from_url).collect();
    assert_eq!(from_url.len(), 30, "{calls:#?}");
    assert!(from_url.iter().all(|c| c.status == 201 && c.sent == 0));
    let copied: u64 = from_url.iter().map(|c| c.copied).sum();
    assert_eq!(
        copied,
        want.len() as u64,
        "the service copied every part byte"
    );
    let sent: u64 = calls.iter().map(|c| c.sent).sum();
    let received: u64 = calls.iter().map(|c| c.received).sum();
    eprintln!(
        "complete of {} bytes in 30 parts: {} calls, {sent} bytes sent by tapelog, {received} received",
        want.len(),
        calls.len()
    );
    // What tapelog sends is the block list (30 ids) and the Blob Batch deleting the parts
    // (about 450 bytes a part); every other call has no body. A part is at least 32 KiB.
    for c in &calls {
        match c.comp.as_deref() {
            Some("blocklist") => assert!(c.sent < 4096, "{c:?}"),
            Some("batch") => assert!(c.sent < 30 * 1024, "{c:?}"),
            _ => assert_eq!(c.sent, 0, "{c:?}"),
        }
    }
    assert!(
        sent < 32 * 1024,
        "{sent} bytes sent while completing: {calls:#?}"
    );
    // It receives the listing of the parts it deletes; no part comes back.
    assert!(
        received < 32 * 1024,
        "{received} bytes received while completing"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.comp.as_deref() == Some("blocklist") && c.status == 201),
        "{calls:#?}"
    );
    assert_eq!(l.stats().from_url, 30);
    assert_eq!(l.stats().fallback, 0);

    let got = recording(&l).await;
    assert_eq!(got.as_ref(), want.as_slice(), "byte-exact");
    let read = read_all(&got);
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.events, evs);
    assert_eq!(names(l.store()).await, [SID], "the recording is `<sid>`");
    assert!(names(l.inprogress_store()).await.is_empty());
    assert!(l.list_uploads().await.unwrap().is_empty());
    assert_eq!(
        l.recording_url(SID),
        format!("{}/{}/{SID}", proxy.endpoint, c.session)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn straight_against_azurite_the_fallback_stages_the_parts_itself() {
    let c = containers();
    let l = layout(&azure().endpoint, &c);
    let evs = events(900);
    let upload = l.create_upload(SID).await.unwrap();
    let want = upload_parts(&l, &upload, &evs, 30).await;
    let parts = l.list_parts(&upload).await.unwrap();
    l.complete_upload(&upload, &parts).await.unwrap();
    // Azurite answers Put Block From URL with 501: every part went the other way.
    assert_eq!(l.stats().fallback, 30);
    assert_eq!(l.stats().from_url, 0);
    let got = recording(&l).await;
    assert_eq!(got.as_ref(), want.as_slice(), "byte-exact");
    assert_eq!(read_all(&got).events, evs);
    assert_eq!(names(l.store()).await, [SID]);
    assert!(names(l.inprogress_store()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_made_the_teleport_way_is_listed_and_completed() {
    let c = containers();
    let proxy = azproxy::start(&azure().endpoint).await;
    let l = layout(&proxy.endpoint, &c);
    let evs = events(200);
    // Teleport's calls: an empty marker blob, then one block blob per part.
    let uid = uuid::Uuid::new_v4().to_string();
    let inprogress = l.inprogress_store();
    inprogress
        .put(
            &Path::from(format!("upload/{SID}/{uid}")),
            PutPayload::new(),
        )
        .await
        .unwrap();
    let (p1, p3) = (
        part(&evs[..100], 4096, false),
        part(&evs[100..], 4096, true),
    );
    for (n, p) in [(1, &p1), (3, &p3)] {
        inprogress
            .put(
                &Path::from(format!("part/{SID}/{uid}/{n}")),
                PutPayload::from(p.to_vec()),
            )
            .await
            .unwrap();
    }
    // Not uploads: a name that is not two UUIDs.
    for junk in ["upload/not-a-uuid/x", "upload/readme"] {
        inprogress
            .put(&Path::from(junk), PutPayload::new())
            .await
            .unwrap();
    }
    let listed = l.list_uploads().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].session_id.as_str(), listed[0].id.as_str()),
        (SID, uid.as_str())
    );
    assert!(listed[0].initiated_ms > 0);
    let parts = l.list_parts(&listed[0]).await.unwrap();
    assert_eq!(parts.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 3]);
    assert!(parts.iter().all(|p| p.last_modified_ms > 0));
    l.complete_upload(&listed[0], &parts).await.unwrap();
    assert_eq!(l.stats().from_url, 2);
    let mut want = p1.to_vec();
    want.extend_from_slice(&p3.to_vec());
    assert_eq!(recording(&l).await.as_ref(), want.as_slice());
    assert_eq!(read_all(&recording(&l).await).events, evs);
    assert_eq!(
        names(inprogress).await,
        ["upload/not-a-uuid/x", "upload/readme"],
        "marker and parts deleted, the rest left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_exists_is_kept_and_only_the_marker_is_deleted() {
    let c = containers();
    let proxy = azproxy::start(&azure().endpoint).await;
    let l = layout(&proxy.endpoint, &c);
    l.store()
        .put(
            &l.recording_path(SID),
            PutPayload::from_static(b"already here"),
        )
        .await
        .unwrap();
    let evs = events(100);
    let upload = l.create_upload(SID).await.unwrap();
    upload_parts(&l, &upload, &evs, 2).await;
    let parts = l.list_parts(&upload).await.unwrap();
    l.complete_upload(&upload, &parts).await.unwrap();
    assert_eq!(recording(&l).await.as_ref(), b"already here");
    assert!(l.list_uploads().await.unwrap().is_empty(), "marker deleted");
    // As Teleport: the parts stay.
    assert_eq!(
        names(l.inprogress_store()).await,
        [
            format!("part/{SID}/{}/1", upload.id),
            format!("part/{SID}/{}/3", upload.id)
        ]
    );
    // The upload is gone now.
    assert!(matches!(
        l.complete_upload(&upload, &parts).await,
        Err(tapelog_store::UploadError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_parts_leave_no_recording_and_abort_cleans_up() {
    let c = containers();
    let l = layout(&azure().endpoint, &c);
    let upload = l.create_upload(SID).await.unwrap();
    l.complete_upload(&upload, &[]).await.unwrap();
    assert!(names(l.store()).await.is_empty());
    assert!(names(l.inprogress_store()).await.is_empty());

    let upload = l.create_upload(SID).await.unwrap();
    upload_parts(&l, &upload, &events(20), 2).await;
    assert!(l.read_part(&upload, 1).await.unwrap().is_some());
    assert!(l.read_part(&upload, 2).await.unwrap().is_none());
    l.abort_upload(&upload).await.unwrap();
    assert!(names(l.inprogress_store()).await.is_empty());
    assert!(matches!(
        l.upload_part(&upload, 5, &part(&events(2), 1, true)).await,
        Err(tapelog_store::UploadError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_stream_is_resumed_by_a_new_uploader() {
    let c = containers();
    let proxy = azproxy::start(&azure().endpoint).await;
    let first = layout(&proxy.endpoint, &c);
    let evs = events(600);
    let stream = RecordingStream::create(Arc::new(first.clone()), SID, driver(16 * 1024))
        .await
        .unwrap();
    for e in &evs[..300] {
        stream.record(e.clone()).await.unwrap();
    }
    // The process goes away with the upload open.
    stream.close().await.unwrap();
    drop(first);

    let second = layout(&proxy.endpoint, &c);
    let listed = second.list_uploads().await.unwrap();
    assert_eq!(listed.len(), 1);
    let resumed = RecordingStream::resume(
        Arc::new(second.clone()),
        listed[0].clone(),
        driver(16 * 1024),
    )
    .await
    .unwrap();
    // The parts were read back: the writer goes on after the last event they hold.
    let last = resumed.status().borrow().last_event_index;
    assert!(last >= 0, "{last}");
    let next = evs.iter().position(|e| e.index() > last).unwrap();
    for e in &evs[next..] {
        resumed.record(e.clone()).await.unwrap();
    }
    resumed.complete().await.unwrap();
    let got = read_all(&recording(&second).await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, evs);
    assert!(second.stats().from_url > 0);
    assert!(names(second.inprogress_store()).await.is_empty());
}

/// The signer against azurite: a `SharedKey` header and a service SAS it accepts, and the
/// same with another key, which it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_accepts_the_shared_key_and_sas_signatures() {
    let c = containers();
    let l = layout(&azure().endpoint, &c);
    let blob = "part/a/b/1";
    l.inprogress_store()
        .put(&Path::from(blob), PutPayload::from_static(b"hello"))
        .await
        .unwrap();
    let good = SharedKey::new(AZURE_EMULATOR_ACCOUNT, AZURE_EMULATOR_KEY).unwrap();
    let bad = SharedKey::new(AZURE_EMULATOR_ACCOUNT, "c2VjcmV0LWJ1dC13cm9uZy1rZXk=").unwrap();
    let url =
        reqwest::Url::parse(&format!("{}/{}/{blob}", azure().endpoint, c.inprogress)).unwrap();
    let http = reqwest::Client::new();
    let date = httpdate_now();
    for (key, ok) in [(&good, true), (&bad, false)] {
        let mut h = HeaderMap::new();
        h.insert("x-ms-version", HeaderValue::from_static("2023-11-03"));
        h.insert("x-ms-date", HeaderValue::from_str(&date).unwrap());
        let auth = key.authorization(&Method::GET, &url, &h, 0);
        let r = http
            .get(url.clone())
            .headers(h)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().is_success(), ok, "SharedKey: {}", r.status());
        if ok {
            assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello");
        }

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut sas_url = url.clone();
        sas_url.query_pairs_mut().extend_pairs(key.service_sas(
            &c.inprogress,
            blob,
            "r",
            now - 60,
            now + 600,
        ));
        let r = http.get(sas_url).send().await.unwrap();
        assert_eq!(r.status().is_success(), ok, "SAS: {}", r.status());
    }
}

/// `x-ms-date` now, RFC 1123.
fn httpdate_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
