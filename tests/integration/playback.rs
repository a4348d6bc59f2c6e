//! Playback: `stream_session_events` over recordings in real stores (local disk, memory and the
//! s3s-fs S3 server), the legacy `get_session_events` / `get_session_chunk` API over
//! recordings and over the pre-4.4 per-server layout merged across two auth servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::util::stores as support;

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use tapelog_core::AuditEvent;
use tapelog_core::codec::WriterConfig;
use tapelog_core::playback::MAX_CHUNK_BYTES;
use tapelog_core::stream::StreamConfig;
use tapelog_core::vectors::{
    self, LEGACY_COMMAND_INDEX, SESSION_ID, legacy_command_event, sample_output, sample_session,
};
use tapelog_store::StoreUploader;
use tapelog_store::playback::{Playback, PlaybackError, RecordingSource};
use tapelog_store::stream::{DriverConfig, RecordingStream};
use tapelog_store::url::open_storage;

/// Streams `events` into `uploader` as a recording of small parts and completes it.
async fn record(uploader: &StoreUploader, events: &[AuditEvent]) {
    let config = DriverConfig {
        stream: StreamConfig {
            writer: WriterConfig {
                min_upload_bytes: 16 * 1024,
                ..WriterConfig::default()
            },
            ..StreamConfig::default()
        },
        ..DriverConfig::default()
    };
    let stream = RecordingStream::create(Arc::new(uploader.clone()), SESSION_ID, config)
        .await
        .unwrap();
    for e in events {
        stream.record_ref(e).await.unwrap();
    }
    stream.complete().await.unwrap();
}

async fn collect<S: RecordingSource>(p: &Playback<S>, start: i64) -> Vec<AuditEvent> {
    let mut s = p.stream_session_events(SESSION_ID, start).await.unwrap();
    let mut out = Vec::new();
    while let Some(e) = s.next().await {
        out.push(e.unwrap());
    }
    out
}

async fn stream_events_on(uploader: StoreUploader) {
    let events = sample_session(3000);
    record(&uploader, &events).await;
    let p = Playback::new(uploader, None);
    assert_eq!(collect(&p, 0).await, events);
    let from = collect(&p, 1234).await;
    assert_eq!(from, events[1234..].to_vec());
    assert!(collect(&p, 1_000_000).await.is_empty());
}

#[tokio::test]
async fn stream_session_events_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    stream_events_on(StoreUploader::local(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn stream_session_events_in_memory() {
    stream_events_on(StoreUploader::memory()).await;
}

#[tokio::test]
async fn stream_session_events_on_s3() {
    // s3s-fs in tapelog's own layout (it can't list multipart uploads), moto in Teleport's.
    let s3 = support::s3();
    let url = format!("s3://{}/records?layout=objects", s3.bucket());
    stream_events_on(open_storage(&url, &s3.options()).unwrap()).await;
    let moto = support::moto();
    let url = format!("s3://{}/records", moto.bucket());
    let uploader = open_storage(&url, &moto.options()).unwrap();
    assert_eq!(uploader.layout_name(), "s3-multipart");
    stream_events_on(uploader).await;
}

#[tokio::test]
async fn reading_is_streaming_with_bounded_buffers() {
    // 40 MB of terminal output; the reader holds a chunk of the store at a time, never the
    // recording.
    let dir = tempfile::tempdir().unwrap();
    let uploader = StoreUploader::local(dir.path()).unwrap();
    let mut events = sample_session(0);
    let end = events.pop().unwrap();
    let block: Vec<u8> = (0..32 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let n = 40 * 1024 * 1024 / block.len();
    for i in 0..n {
        let idx = 2 + i as i64;
        events.push(vectors::print(
            idx,
            i as i64,
            (i * block.len()) as i64,
            i as i64,
            &block,
        ));
    }
    let mut end = end;
    end.set_index(2 + n as i64);
    events.push(end);
    record(&uploader, &events).await;

    let chunks = uploader.open_recording(SESSION_ID).await.unwrap();
    let mut reader = tapelog_store::playback::SessionReader::new(SESSION_ID, chunks);
    let (mut count, mut bytes, mut most_buffered) = (0usize, 0usize, 0usize);
    while let Some(e) = reader.next_event().await {
        let e = e.unwrap();
        bytes += e.print_data().map_or(0, <[u8]>::len);
        count += 1;
        most_buffered = most_buffered.max(reader.buffered_bytes());
    }
    assert_eq!(count, events.len());
    assert_eq!(bytes, n * block.len());
    assert!(
        most_buffered < 4 * 1024 * 1024,
        "the reader held {most_buffered} bytes of a 40 MB recording"
    );
}

#[tokio::test]
async fn legacy_api_over_a_recording() {
    let uploader = StoreUploader::memory();
    let mut events = sample_session(50);
    // An enhanced event in the recording: the playback view leaves it out.
    let end = events.pop().unwrap();
    let mut cmd = legacy_command_event();
    cmd.set_index(events.len() as i64);
    events.push(cmd);
    let mut end = end;
    end.set_index(events.len() as i64);
    events.push(end);
    record(&uploader, &events).await;
    let p = Playback::new(uploader, None);

    let all = p.get_session_events(SESSION_ID, 0).await.unwrap();
    assert_eq!(all.len(), events.len() - 1);
    for (n, f) in all.iter().enumerate() {
        assert_eq!(f.get_int("id"), n as i64);
        assert_eq!(f.get_index(), n as i64);
        assert_ne!(f.get_type(), "session.command");
        assert!(!f.0.contains_key("data"));
    }
    assert_eq!(all.last().unwrap().get_type(), "session.end");
    let after = p.get_session_events(SESSION_ID, 10).await.unwrap();
    assert_eq!(after, all[10..].to_vec());

    let output = sample_output(50);
    assert_eq!(
        p.get_session_chunk(SESSION_ID, 0, usize::MAX)
            .await
            .unwrap(),
        output
    );
    assert_eq!(
        p.get_session_chunk(SESSION_ID, 17, 100).await.unwrap(),
        output[17..117].to_vec()
    );
    assert!(
        p.get_session_chunk(SESSION_ID, output.len() as u64, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

fn write_legacy(log: &Path) {
    for (server, files) in vectors::legacy_two_servers(40) {
        let dir = log.join(server).join("sessions/default");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in files {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
    // Directories that hold no server's files are not looked in.
    std::fs::create_dir_all(log.join("records")).unwrap();
    std::fs::create_dir_all(log.join("playbacks/sessions/default")).unwrap();
    std::fs::write(
        log.join(format!("playbacks/sessions/default/{SESSION_ID}.index")),
        "not an index",
    )
    .unwrap();
}

/// The two-auth-server session, merged: the sample session with the command event after the
/// event of the same index.
fn merged_expected() -> Vec<AuditEvent> {
    let mut expect = sample_session(40);
    let at = expect
        .iter()
        .position(|e| e.index() == LEGACY_COMMAND_INDEX)
        .unwrap();
    expect.insert(at + 1, legacy_command_event());
    expect
}

#[tokio::test]
async fn legacy_sessions_merge_across_servers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_legacy(&log);
    let p = Playback::new(StoreUploader::memory(), Some(&log));
    let expect = merged_expected();

    // Streaming: every event in order, print data restored from both servers' chunks.
    assert_eq!(collect(&p, 0).await, expect);

    // GetSessionEvents: one ordered session with cursors, no print data.
    let got = p.get_session_events(SESSION_ID, 0).await.unwrap();
    assert_eq!(got.len(), expect.len());
    for (n, (f, e)) in got.iter().zip(&expect).enumerate() {
        assert_eq!(f.get_int("id"), n as i64);
        assert_eq!(f.get_index(), e.index());
        assert_eq!(f.get_type(), e.event_type());
        assert!(!f.0.contains_key("data"));
    }
    let tail = p.get_session_events(SESSION_ID, 25).await.unwrap();
    assert_eq!(tail, got[25..].to_vec());

    // GetSessionChunk across the two servers' chunk files.
    let output = sample_output(40);
    assert_eq!(
        p.get_session_chunk(SESSION_ID, 0, MAX_CHUNK_BYTES * 4)
            .await
            .unwrap(),
        output
    );
    let mid = output.len() / 2;
    assert_eq!(
        p.get_session_chunk(SESSION_ID, mid as u64 - 5, 10)
            .await
            .unwrap(),
        output[mid - 5..mid + 5].to_vec()
    );
}

#[tokio::test]
async fn playback_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = StoreUploader::local(dir.path()).unwrap();
    let p = Playback::new(uploader.clone(), Some(dir.path()));
    for bad in ["../../etc/passwd", "x", ""] {
        let err = p.get_session_events(bad, 0).await.unwrap_err();
        assert!(matches!(err, PlaybackError::InvalidId(_)), "{err}");
        assert!(p.stream_session_events(bad, 0).await.is_err());
    }
    let err = p.get_session_chunk(SESSION_ID, 0, 10).await.unwrap_err();
    assert!(matches!(err, PlaybackError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(SESSION_ID));

    // A damaged recording: every event before the damage, then the error.
    let events = sample_session(20);
    let cfg = WriterConfig::default();
    let mut bytes = vectors::one_part(&events, true, cfg);
    let cut = bytes.len() - 40;
    bytes.truncate(cut);
    let path = dir.path().join(format!("{SESSION_ID}.tar"));
    std::fs::write(&path, &bytes).unwrap();
    let mut s = p.stream_session_events(SESSION_ID, 0).await.unwrap();
    let mut ok = 0;
    let mut failed = None;
    while let Some(e) = s.next().await {
        match e {
            Ok(_) => ok += 1,
            Err(e) => failed = Some(e),
        }
    }
    let err = failed.expect("the damage is reported");
    assert!(matches!(err, PlaybackError::Decode { .. }), "{err}");
    assert!(ok < events.len());
}
