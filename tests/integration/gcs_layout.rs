//! GCS in Teleport's layout (`uploads/<id>/<sid>.upload`, `parts/<id>/<n>.part`, compose into
//! `<sid>.tar`), against the GCS double on loopback ([`crate::util::gcs`]): completion composes
//! at most 32 sources a call (merges first) and reads no part back, an upload made the way
//! Teleport makes it is listed (parts in numeric order), resumed and completed, the edge cases
//! of Teleport's `CompleteUpload` (no parts, a recording already there), a whole stream with
//! a resume after the first stream is dropped, and compose failures that lose nothing.

use crate::util::gcs::{BUCKET, GcsDouble, Kind};

use crate::util::parts::{driver, part};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::ObjectStoreExt;
use tapelog_core::AuditEvent;
use tapelog_core::codec::read_all;
use tapelog_store::layout::gcs::GcsLayout;
use tapelog_store::stream::RecordingStream;
use tapelog_store::{MultipartUploader, StreamPart, StreamUpload, UploadError};

const SID: &str = "5d2e8b1a-3c4f-4e6a-9b7d-1f0e2c3a4b5d";
const PREFIX: &str = "teleport/records";

fn events(n: usize) -> Vec<AuditEvent> {
    crate::util::parts::session_events(SID, n)
}

fn object(rest: &str) -> String {
    format!("{PREFIX}/{rest}")
}

/// Uploads `evs` in `n` parts numbered 1..=n; returns the parts and their bytes joined.
async fn upload_parts(
    s: &GcsLayout,
    upload: &StreamUpload,
    evs: &[AuditEvent],
    n: usize,
) -> (Vec<StreamPart>, Vec<u8>) {
    let per = evs.len().div_ceil(n);
    let mut parts = Vec::new();
    let mut joined = Vec::new();
    for (i, chunk) in evs.chunks(per).enumerate() {
        let p = part(chunk, 1024, i + 1 == n);
        joined.extend_from_slice(&p.to_vec());
        parts.push(s.upload_part(upload, i as u32 + 1, &p).await.unwrap());
    }
    assert_eq!(parts.len(), n);
    (parts, joined)
}

async fn recording(s: &GcsLayout) -> Vec<u8> {
    s.store()
        .get(&s.recording_path(SID))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Objects of the upload layout still in the bucket (parts, merges, markers).
fn leftovers(d: &GcsDouble) -> Vec<String> {
    d.names()
        .into_iter()
        .filter(|n| {
            ["parts/", "merges/", "uploads/"]
                .iter()
                .any(|dir| n.starts_with(&object(dir)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_parts_compose_in_merges_of_32_without_reading_a_part() {
    let d = GcsDouble::start(25).await;
    let s = d.layout(PREFIX);
    let evs = events(210);
    let upload = s.create_upload(SID).await.unwrap();
    assert_eq!(
        d.names(),
        [object(&format!("uploads/{}/{SID}.upload", upload.id))]
    );
    assert_eq!(
        d.object(&object(&format!("uploads/{}/{SID}.upload", upload.id)))
            .unwrap(),
        SID.as_bytes()
    );
    let (parts, joined) = upload_parts(&s, &upload, &evs, 70).await;
    let listed = s.list_parts(&upload).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| p.number).collect::<Vec<_>>(),
        (1..=70).collect::<Vec<_>>(),
        "listed over several pages, in numeric order"
    );

    d.clear_calls();
    s.complete_upload(&upload, &parts).await.unwrap();
    let calls = d.calls();
    let composes: Vec<_> = calls.iter().filter(|c| c.kind == Kind::Compose).collect();
    // 70 sources: 32 parts → merge 1 (39 left), merge 1 + 31 parts → merge 2 (8 left), final.
    assert_eq!(composes.len(), 3, "{composes:#?}");
    assert!(composes.iter().all(|c| c.sources.len() <= 32));
    let part_name = |n: u32| object(&format!("parts/{}/{n}.part", upload.id));
    assert_eq!(
        composes[0].sources,
        (1..=32).map(part_name).collect::<Vec<_>>()
    );
    let merges = object(&format!("merges/{}/", upload.id));
    assert!(composes[0].object.starts_with(&merges) && composes[0].object.ends_with(".merge"));
    assert_eq!(composes[1].sources[0], composes[0].object);
    assert_eq!(
        composes[1].sources[1..],
        (33..=63).map(part_name).collect::<Vec<_>>()
    );
    assert_eq!(composes[2].sources[0], composes[1].object);
    assert_eq!(
        composes[2].sources[1..],
        (64..=70).map(part_name).collect::<Vec<_>>()
    );
    assert_eq!(composes[2].object, object(&format!("{SID}.tar")));
    assert!(
        !calls.iter().any(|c| c.kind == Kind::Get),
        "no object is read while completing: {calls:#?}"
    );
    let moved: usize = calls.iter().map(|c| c.bytes_in + c.bytes_out).sum();
    assert!(
        moved < joined.len() / 2,
        "{moved} bytes passed while completing {} bytes",
        joined.len()
    );

    assert_eq!(recording(&s).await, joined, "byte-exact");
    let got = read_all(&joined);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, evs);
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    assert_eq!(d.names(), [object(&format!("{SID}.tar"))]);
    assert!(s.list_uploads().await.unwrap().is_empty());
    assert_eq!(
        s.recording_url(SID),
        format!("gs://{BUCKET}/{PREFIX}/{SID}")
    );
    assert!(d.violations().is_empty(), "{:?}", d.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_made_the_teleport_way_is_listed_in_numeric_order_resumed_and_completed() {
    let d = GcsDouble::start(1000).await;
    let evs = events(120);
    let id = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let older = "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e";
    let older_sid = "1e2d3c4b-5a69-4788-97a6-b5c4d3e2f1a0";
    let now = SystemTime::now();
    // Teleport's CreateUpload and UploadPart: a marker whose body is the session id, then
    // parts as plain objects (its numbers are sparse: 1, 3, 5…, here past 9 to 11).
    d.insert(
        &object(&format!("uploads/{id}/{SID}.upload")),
        SID.as_bytes().to_vec(),
        now,
    );
    let numbers = [1u32, 3, 5, 7, 9, 11];
    for (n, chunk) in numbers.iter().zip(evs[..60].chunks(10)) {
        d.insert(
            &object(&format!("parts/{id}/{n}.part")),
            part(chunk, 2048, false).to_vec(),
            now,
        );
    }
    // Another upload, an hour older, and names that are not Teleport's uploads or parts.
    d.insert(
        &object(&format!("uploads/{older}/{older_sid}.upload")),
        older_sid.as_bytes().to_vec(),
        now - Duration::from_secs(3600),
    );
    d.insert(&object("uploads/not-a-uuid/x.upload"), "x", now);
    d.insert(&object(&format!("uploads/{id}/{SID}.txt")), "x", now);
    d.insert(&object(&format!("parts/{id}/notes.txt")), "x", now);
    d.insert(&object(&format!("parts/{id}/0.part")), "x", now);

    let s = d.layout(PREFIX);
    let listed = s.list_uploads().await.unwrap();
    let ids: Vec<(&str, &str)> = listed
        .iter()
        .map(|u| (u.id.as_str(), u.session_id.as_str()))
        .collect();
    assert_eq!(ids, [(older, older_sid), (id, SID)], "oldest first");
    assert!(listed[0].initiated_ms < listed[1].initiated_ms);
    let upload = listed[1].clone();
    let parts = s.list_parts(&upload).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        numbers,
        "11 after 9 (GCS lists 11.part before 3.part)"
    );
    assert!(
        parts
            .iter()
            .all(|p| !p.etag.is_empty() && p.last_modified_ms > 0)
    );

    // Resumed from the parts read back: nothing to replay before index 59.
    let stream = RecordingStream::resume(Arc::new(s.clone()), upload.clone(), driver(2048))
        .await
        .unwrap();
    assert_eq!(stream.status().borrow().last_event_index, evs[59].index());
    for e in &evs[60..] {
        stream.record(e.clone()).await.unwrap();
    }
    stream.complete().await.unwrap();
    let got = read_all(&recording(&s).await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, evs);
    let left = leftovers(&d);
    assert_eq!(
        left,
        [
            object(&format!("uploads/{older}/{older_sid}.upload")),
            object("uploads/not-a-uuid/x.upload"),
        ],
        "the upload's parts (junk included) and marker are gone"
    );
    assert!(d.violations().is_empty(), "{:?}", d.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_parts_writes_no_recording_and_cleans_up() {
    let d = GcsDouble::start(1000).await;
    let s = d.layout(PREFIX);
    let upload = s.create_upload(SID).await.unwrap();
    assert!(s.list_parts(&upload).await.unwrap().is_empty());
    s.complete_upload(&upload, &[]).await.unwrap();
    assert!(d.names().is_empty(), "{:?}", d.names());
    assert!(!d.calls().iter().any(|c| c.kind == Kind::Compose));
    assert!(matches!(
        s.list_parts(&upload).await,
        Err(UploadError::NotFound(_))
    ));
    assert!(matches!(
        s.complete_upload(&upload, &[]).await,
        Err(UploadError::NotFound(_))
    ));
    // Aborting what is gone is fine.
    s.abort_upload(&upload).await.unwrap();
    assert!(d.violations().is_empty(), "{:?}", d.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_already_there_means_cleanup_only() {
    let d = GcsDouble::start(1000).await;
    let s = d.layout(PREFIX);
    let evs = events(20);
    let upload = s.create_upload(SID).await.unwrap();
    let (parts, _) = upload_parts(&s, &upload, &evs, 2).await;
    let earlier = b"an earlier completion".to_vec();
    d.insert(
        &object(&format!("{SID}.tar")),
        earlier.clone(),
        SystemTime::now(),
    );
    d.clear_calls();
    s.complete_upload(&upload, &parts).await.unwrap();
    assert!(!d.calls().iter().any(|c| c.kind == Kind::Compose));
    assert_eq!(recording(&s).await, earlier, "unchanged");
    assert_eq!(d.names(), [object(&format!("{SID}.tar"))]);
    assert!(d.violations().is_empty(), "{:?}", d.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_and_resumed_gives_the_exact_recording() {
    let d = GcsDouble::start(50).await;
    let s = Arc::new(d.layout(""));
    let evs = events(600);
    let stream = RecordingStream::create(s.clone(), SID, driver(8 * 1024))
        .await
        .unwrap();
    for e in &evs[..400] {
        stream.record(e.clone()).await.unwrap();
    }
    let upload = stream.upload().clone();
    // Some parts are stored; whatever was not is lost with the dropped stream.
    let stored = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = s.list_parts(&upload).await.unwrap().len();
            if n >= 3 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    drop(stream);
    // Let a part already on the wire land before the resume looks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stored >= 3);

    let listed = s.list_uploads().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, upload.id);
    let stream = RecordingStream::resume(s.clone(), listed[0].clone(), driver(8 * 1024))
        .await
        .unwrap();
    let durable = stream.status().borrow().last_event_index;
    assert!(durable >= evs[0].index(), "the stored parts are read back");
    let next = evs.iter().position(|e| e.index() > durable).unwrap();
    assert!(next <= 400, "{next}");
    for e in &evs[next..] {
        stream.record(e.clone()).await.unwrap();
    }
    stream.complete().await.unwrap();
    let got = read_all(&recording(&s).await);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.out_of_order, 0);
    assert_eq!(got.events, evs);
    assert_eq!(d.names(), [format!("{SID}.tar")]);
    assert!(d.violations().is_empty(), "{:?}", d.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_failures_are_gcs_service_errors_and_lose_nothing() {
    let d = GcsDouble::start(1000).await;
    let s = d.layout(PREFIX);
    let evs = events(120);
    let upload = s.create_upload(SID).await.unwrap();
    let (parts, joined) = upload_parts(&s, &upload, &evs, 40).await;

    // The first merge fails.
    d.fail_next_compose(503, "backend unavailable");
    match s.complete_upload(&upload, &parts).await {
        Err(UploadError::Service {
            service: "GCS",
            call: "compose",
            message,
        }) => {
            assert!(message.contains("503"), "{message}");
            assert!(message.contains("backend unavailable"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The merge passes, the final compose fails with a long message (cut short).
    d.pass_next_compose();
    d.fail_next_compose(500, &"x".repeat(20_000));
    match s.complete_upload(&upload, &parts).await {
        Err(UploadError::Service { message, .. }) => {
            assert!(message.contains("500"), "{message}");
            assert!(message.len() < 1024, "{} bytes", message.len());
        }
        other => panic!("{other:?}"),
    }
    // Nothing acknowledged is lost: the upload and its parts are all there.
    let listed = s.list_uploads().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        s.list_parts(&listed[0]).await.unwrap().len(),
        40,
        "every part is kept"
    );
    assert!(d.object(&object(&format!("{SID}.tar"))).is_none());
    // A retry completes (the merge left by the failed attempt is composed again and
    // deleted).
    s.complete_upload(&listed[0], &parts).await.unwrap();
    assert_eq!(recording(&s).await, joined);
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

    // A source gone (another completer cleaned up) is NotFound.
    let upload = s.create_upload(SID).await.unwrap();
    let (parts, _) = upload_parts(&s, &upload, &evs[..30], 3).await;
    d.store()
        .delete(&object(&format!("parts/{}/2.part", upload.id)).into())
        .await
        .unwrap();
    d.store()
        .delete(&object(&format!("{SID}.tar")).into())
        .await
        .unwrap();
    assert!(matches!(
        s.complete_upload(&upload, &parts).await,
        Err(UploadError::NotFound(id)) if id == upload.id
    ));
    assert!(d.violations().is_empty(), "{:?}", d.violations());
}

/// Uploads stored in tapelog's old layout (`multi/<id>/<sid>/…`) on a bucket that is then
/// opened in Teleport's layout still list, take parts and complete, beside new uploads.
#[test]
fn uploads_in_tapelogs_old_layout_still_list_resume_and_complete() {
    use tapelog_store::url::{StorageOptions, open_storage};
    let d = GcsDouble::spawn_open(100);
    let url = |q: &str| format!("gs://{BUCKET}/{PREFIX}?endpoint={}{q}", d.double.endpoint);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = StorageOptions::default();
        let old = open_storage(&url("&layout=objects"), &opts).unwrap();
        assert_eq!(old.layout_name(), "objects");
        let evs = events(40);
        let u_old = old.create_upload(SID).await.unwrap();
        let p1 = old
            .upload_part(&u_old, 1, &part(&evs[..20], 4096, false))
            .await
            .unwrap();

        let new = open_storage(&url(""), &opts).unwrap();
        assert_eq!(new.layout_name(), "gcs-compose");
        let other = "0a0b0c0d-1e2f-4a5b-8c7d-9e0f1a2b3c4d";
        let u_new = new.create_upload(other).await.unwrap();
        let mut ids: Vec<String> = new
            .list_uploads()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        ids.sort();
        let mut want = vec![u_old.id.clone(), u_new.id.clone()];
        want.sort();
        assert_eq!(ids, want);
        // The old upload goes on in the old layout through the new uploader.
        // The same part (its time is the store's, not the writer's clock).
        let listed: Vec<(u32, String)> = new
            .list_parts(&u_old)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.number, p.etag))
            .collect();
        assert_eq!(listed, [(p1.number, p1.etag.clone())]);
        let p2 = new
            .upload_part(&u_old, 2, &part(&evs[20..], 4096, true))
            .await
            .unwrap();
        assert!(
            d.double
                .names()
                .iter()
                .any(|n| n.starts_with(&format!("{PREFIX}/multi/{}/", u_old.id))),
            "the old upload's parts stay in the old layout"
        );
        new.complete_upload(&u_old, &[p1, p2]).await.unwrap();
        let bytes = new
            .store()
            .get(&new.recording_path(SID))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let got = read_all(&bytes);
        assert!(got.error.is_none(), "{:?}", got.error);
        assert_eq!(got.events, evs);
        let left: Vec<String> = new
            .list_uploads()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(left, std::slice::from_ref(&u_new.id));
        assert!(
            !d.double.names().iter().any(|n| n.contains("/multi/")),
            "{:?}",
            d.double.names()
        );
    });
}
