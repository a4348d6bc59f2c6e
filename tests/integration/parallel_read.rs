//! The parallel event reader (issue 19) where events are read, not exported: the reader
//! itself (`tapelog_store::file::ParallelEvents`) against `EventStream`, `tapelog play --jobs`
//! and `tapelog upload --jobs` against one job, and the server's
//! `GET /v1/sessions/{sid}/events` with `decode_jobs` 2 against 1, on every test vector and on
//! recordings with replayed, missing and damaged parts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use tapelog_api::Role;
use tapelog_client::{Client, ClientConfig, Credentials, Token};
use tapelog_core::codec::{Format, detect_format, read_all};
use tapelog_core::vectors;
use tapelog_server::{ServeConfig, Server, TokenSpec};
use tapelog_store::file::{Events, ParallelEvents, open_path, open_path_jobs};

use crate::parallel_export::replayed_and_damaged;

/// Events as JSON, then the error's text if any.
type Read = Vec<Result<String, String>>;

fn drain(
    events: impl Iterator<Item = Result<tapelog_core::AuditEvent, tapelog_store::file::ReadError>>,
) -> Read {
    events
        .map(|r| r.map(|e| e.to_json()).map_err(|e| e.to_string()))
        .collect()
}

fn is_proto(bytes: &[u8]) -> bool {
    matches!(detect_format(bytes), Format::ProtoV1 | Format::ProtoV2)
}

/// Every recording the tests read: the vectors and the replayed/damaged ones.
fn recordings() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = vectors::all()
        .into_iter()
        .map(|v| (v.name.to_string(), v.bytes.clone()))
        .collect();
    all.extend(
        replayed_and_damaged()
            .into_iter()
            .map(|(n, b)| (n.to_string(), b)),
    );
    all
}

#[test]
fn the_parallel_reader_reads_what_the_sequential_one_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut proto = 0;
    for (name, bytes) in recordings() {
        let path = dir.path().join(format!("{name}.rec"));
        std::fs::write(&path, &bytes).unwrap();
        let Ok(mut seq) = open_path(&path) else {
            // Not a recording: the constructor that picks refuses it the same way.
            assert!(open_path_jobs(&path, 2).is_err(), "{name}");
            continue;
        };
        let want = drain(seq.by_ref());
        let want_stats = seq.stats();
        for jobs in [1, 2, 5] {
            let mut picked = open_path_jobs(&path, jobs).unwrap();
            assert_eq!(
                matches!(picked, Events::Parallel(_)),
                jobs > 1 && is_proto(&bytes),
                "{name} jobs {jobs}"
            );
            assert!(drain(picked.by_ref()) == want, "{name} jobs {jobs}");
            assert_eq!(picked.stats(), want_stats, "{name} jobs {jobs}");
            if !is_proto(&bytes) {
                continue;
            }
            let mut par = ParallelEvents::open(&path, jobs).unwrap();
            let got = drain(par.by_ref());
            assert_eq!(got.len(), want.len(), "{name} jobs {jobs}");
            assert!(got == want, "{name} jobs {jobs}: events or error differ");
            assert_eq!(par.stats(), want_stats, "{name} jobs {jobs}");
        }
        proto += usize::from(is_proto(&bytes));
    }
    assert!(proto > 10, "only {proto} ProtoStream recordings");
    // The damaged ones end with the sequential reader's error, at its byte.
    for (name, bytes) in replayed_and_damaged() {
        let want = read_all(&bytes);
        let path = dir.path().join(format!("{name}.rec"));
        let got = drain(ParallelEvents::open(&path, 3).unwrap());
        match &want.error {
            Some(e) => {
                assert_eq!(got.len(), want.events.len() + 1, "{name}");
                let last = got.last().unwrap().as_ref().unwrap_err();
                assert!(
                    last.contains(&format!("at byte {} (part {}", e.offset, e.part)),
                    "{name}: {last}"
                );
            }
            None => assert_eq!(got.len(), want.events.len(), "{name}"),
        }
    }
}

#[test]
fn play_prints_the_same_with_any_number_of_jobs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in replayed_and_damaged() {
        let path = dir.path().join(format!("{name}.rec"));
        std::fs::write(&path, &bytes).unwrap();
        let p = path.to_str().unwrap();
        let play = |jobs: &str| {
            crate::util::tapelog(["play", "--max-idle", "0", "--jobs", jobs, p]).output()
        };
        let one = play("1");
        assert!(!one.stdout.is_empty(), "{name}");
        let damaged = read_all(&bytes).error.is_some();
        assert_eq!(one.status.code(), Some(i32::from(damaged)), "{name}");
        for jobs in ["2", "5"] {
            let many = play(jobs);
            assert_eq!(many.status.code(), one.status.code(), "{name} {jobs}");
            assert!(
                many.stdout == one.stdout,
                "{name} --jobs {jobs}: output differs"
            );
            assert_eq!(
                String::from_utf8_lossy(&many.stderr),
                String::from_utf8_lossy(&one.stderr),
                "{name} --jobs {jobs}"
            );
        }
    }
}

#[test]
fn upload_stores_the_same_recording_with_any_number_of_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = replayed_and_damaged();
    let sid = tapelog_core::sample::SESSION_ID;
    for (name, bytes) in &recordings {
        let path = dir.path().join(format!("{name}.rec"));
        std::fs::write(&path, bytes).unwrap();
        let want = read_all(bytes);
        let mut stored = Vec::new();
        for jobs in ["1", "2"] {
            let store = dir.path().join(format!("store-{name}-{jobs}"));
            let out = crate::util::tapelog([
                "upload",
                "--part-size",
                "70000",
                "--jobs",
                jobs,
                "--storage",
                store.to_str().unwrap(),
                path.to_str().unwrap(),
            ])
            .output();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            match &want.error {
                None => {
                    assert_eq!(out.status.code(), Some(0), "{name} {jobs}: {stderr}");
                    let rec = std::fs::read(store.join(format!("{sid}.tar"))).unwrap();
                    let got = read_all(&rec);
                    assert!(got.error.is_none(), "{name} {jobs}");
                    assert_eq!(got.events, want.events, "{name} --jobs {jobs}");
                    stored.push(rec);
                }
                Some(e) => {
                    // The events before the damage are sent and left resumable; the error
                    // names the sequential reader's byte.
                    assert_eq!(out.status.code(), Some(1), "{name} {jobs}: {stderr}");
                    assert!(
                        stderr.contains(&format!("at byte {} (part {}", e.offset, e.part)),
                        "{name} {jobs}: {stderr}"
                    );
                    assert!(stderr.contains("--resume"), "{name} {jobs}: {stderr}");
                }
            }
        }
        if let [a, b] = &stored[..] {
            assert!(a == b, "{name}: the stored recordings differ");
        }
    }
}

const AUDITOR: &str = "auditor-token-0123456789abcdef";

/// The events `GET /v1/sessions/{sid}/events` gives for `bytes` stored as the recording of
/// `sid`, with `decode_jobs`; and whether the body ended in an error.
async fn served_events(dir: &Path, bytes: &[u8], decode_jobs: usize) -> (Vec<String>, bool) {
    let sid = tapelog_core::sample::SESSION_ID;
    let data = dir.join(format!("data-{decode_jobs}"));
    let records = data.join("log/records");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::write(records.join(format!("{sid}.tar")), bytes).unwrap();
    let mut c = ServeConfig::new(&data);
    c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.server_id = "test-server".into();
    c.completer_interval = Duration::ZERO;
    c.decode_jobs = decode_jobs;
    c.tokens = vec![TokenSpec {
        role: Role::Auditor,
        name: "auditor".into(),
        token: AUDITOR.into(),
    }];
    let server = Server::start(c).await.unwrap();
    let client = Client::new(ClientConfig::new(
        &server.url(),
        Credentials::token(Token::new(AUDITOR).unwrap()),
    ))
    .unwrap();
    let mut stream = client.session_events(sid, 0).await.unwrap();
    let mut events = Vec::new();
    let mut failed = false;
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = stream.next().await {
            match e {
                Ok(e) => events.push(e.to_json()),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the events did not end within 60 s");
    server.shutdown().await;
    (events, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_are_the_same_with_two_decode_jobs() {
    for (name, bytes) in replayed_and_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let want = read_all(&bytes);
        let damaged = want.error.is_some();
        let (one, one_failed) = served_events(dir.path(), &bytes, 1).await;
        let (two, two_failed) = served_events(dir.path(), &bytes, 2).await;
        let want: Vec<String> = want
            .events
            .iter()
            .map(|e| {
                tapelog_core::AuditEvent::from_json(&e.to_json())
                    .unwrap()
                    .to_json()
            })
            .collect();
        assert_eq!(one_failed, damaged, "{name}");
        assert_eq!(two_failed, one_failed, "{name}");
        // Damaged or not, every event before the end (the error line, if any): the same
        // with either path.
        assert!(one == want, "{name}: decode_jobs 1");
        assert!(two == one, "{name}: events differ");
    }
}
