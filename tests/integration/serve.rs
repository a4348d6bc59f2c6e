//! `tapelog serve` over real TCP on loopback: the bad-input table with a healthy client
//! alongside, streams over HTTP (and resumed on a new server), mTLS, search and playback,
//! uploads, metrics, the admin token file, and SIGTERM of the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::util::TestCommand;
use crate::util::serve::{self as support, ServeProcess};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tapelog_api::{
    CompletedBody, ErrorBody, ErrorCode, EventsPage, RECORDS_CONTENT_TYPE, StreamStatusBody,
    UploadsBody,
};
use tapelog_core::AuditEvent;
use tapelog_core::codec::read_all;

use support::{ADMIN, AUDITOR, RECORDER, RECORDER2, framed, http, session, uuid};

/// A user.login event with a marker in its `user` field.
fn login(marker: &str) -> Value {
    json!({"event": "user.login", "code": "T1000I", "user": marker, "success": true})
}

async fn error_of(r: reqwest::Response) -> (StatusCode, ErrorBody) {
    let status = r.status();
    let text = r.text().await.unwrap();
    let body: ErrorBody = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {status} {text}"));
    (status, body)
}

pub(crate) async fn create_stream(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    sid: &str,
) -> StreamStatusBody {
    let r = c
        .post(format!("{base}/v1/streams"))
        .bearer_auth(token)
        .json(&json!({ "session_id": sid }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

pub(crate) async fn send_records(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    upload: &str,
    events: &[AuditEvent],
) -> StreamStatusBody {
    let r = c
        .post(format!("{base}/v1/streams/{upload}/records"))
        .bearer_auth(token)
        .header("content-type", RECORDS_CONTENT_TYPE)
        .body(framed(events))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

pub(crate) async fn post_stream(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    upload: &str,
    what: &str,
) -> reqwest::Response {
    c.post(format!("{base}/v1/streams/{upload}/{what}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn search(c: &reqwest::Client, base: &str, query: &str) -> EventsPage {
    let r = c
        .get(format!("{base}/v1/events?{query}"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_documented_errors_while_a_healthy_client_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    config.max_body = 1 << 20;
    let server = support::start(config).await;
    let base = server.url();
    let c = http();

    // The healthy client: one event per request, as fast as it can, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let healthy = {
        let (stop, ok, failed, base, c) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            base.clone(),
            c.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(RECORDER)
                    .json(&login(&format!("healthy-{n}")))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                n += 1;
            }
        })
    };

    // A stream of rec1, and one completed already.
    let sid = uuid();
    let owned = create_stream(&c, &base, RECORDER, &sid).await;
    let done = create_stream(&c, &base, RECORDER, &uuid()).await;
    assert_eq!(
        post_stream(&c, &base, RECORDER, &done.upload_id, "complete")
            .await
            .status(),
        StatusCode::OK
    );

    let events_url = format!("{base}/v1/events");
    let big_event = json!({"event": "user.delete", "code": "T1004I", "name": "x".repeat(100_000)});
    let mut huge_record = (70_000u32).to_be_bytes().to_vec();
    huge_record.resize(4 + 70_000, 0);
    let bad_batch = json!([login("batch-good-marker"), {"event": "user.login", "user": "no-code"}]);

    type Case = (
        &'static str,
        reqwest::RequestBuilder,
        StatusCode,
        ErrorCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "no auth",
            c.post(&events_url).json(&login("a")),
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "no credentials",
        ),
        (
            "unknown token",
            c.post(&events_url)
                .bearer_auth("not-a-token-of-this-server")
                .json(&login("a")),
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "unknown token",
        ),
        (
            "wrong role",
            c.post(&events_url).bearer_auth(AUDITOR).json(&login("a")),
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "needs the recorder role",
        ),
        (
            "recorder searches",
            c.get(&events_url).bearer_auth(RECORDER),
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "needs the auditor role",
        ),
        (
            "recorder reads the feed",
            c.get(format!("{events_url}/feed")).bearer_auth(RECORDER),
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "needs the auditor role",
        ),
        (
            "malformed feed key",
            c.get(format!("{events_url}/feed"))
                .query(&[("after", "tl1.not-a-feed-key")])
                .bearer_auth(AUDITOR),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "malformed feed key \"tl1.not-a-feed-key\"",
        ),
        (
            "malformed JSON",
            c.post(&events_url)
                .bearer_auth(RECORDER)
                .header("content-type", "application/json")
                .body("{\"event\": "),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "malformed JSON",
        ),
        (
            "bad event in a batch",
            c.post(&events_url).bearer_auth(RECORDER).json(&bad_batch),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "event 1: ",
        ),
        (
            "bad ndjson line",
            c.post(&events_url)
                .bearer_auth(RECORDER)
                .header("content-type", "application/x-ndjson")
                .body(format!("{}\n{{oops\n", login("l1"))),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "line 2",
        ),
        (
            "wrong content type",
            c.post(&events_url)
                .bearer_auth(RECORDER)
                .header("content-type", "text/plain")
                .body(login("a").to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "\"text/plain\" is not accepted",
        ),
        (
            "oversized body",
            c.post(&events_url)
                .bearer_auth(RECORDER)
                .header("content-type", "application/json")
                .body(vec![b' '; 2 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "over the limit of 1048576 bytes",
        ),
        (
            "oversized chunked body",
            c.post(&events_url)
                .bearer_auth(RECORDER)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures::stream::iter(
                    (0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 << 10])),
                ))),
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "over the limit",
        ),
        (
            "oversized event",
            c.post(&events_url).bearer_auth(RECORDER).json(&big_event),
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "user.delete event",
        ),
        (
            "oversized record",
            c.post(format!("{base}/v1/streams/{}/records", owned.upload_id))
                .bearer_auth(RECORDER)
                .header("content-type", RECORDS_CONTENT_TYPE)
                .body(huge_record),
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "70000 bytes",
        ),
        (
            "records as JSON",
            c.post(format!("{base}/v1/streams/{}/records", owned.upload_id))
                .bearer_auth(RECORDER)
                .json(&json!([])),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            RECORDS_CONTENT_TYPE,
        ),
        (
            "session id ..",
            c.post(format!("{base}/v1/streams"))
                .bearer_auth(RECORDER)
                .json(&json!({"session_id": ".."})),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidId,
            "invalid session id \"..\"",
        ),
        (
            "upload id neither a UUID nor a store's id",
            c.post(format!("{base}/v1/streams/not%20a%20uuid/records"))
                .bearer_auth(RECORDER)
                .header("content-type", RECORDS_CONTENT_TYPE)
                .body(vec![]),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidId,
            "invalid upload id \"not a uuid\"",
        ),
        (
            "session path traversal",
            c.get(format!("{base}/v1/sessions/..%2F..%2Fetc/events"))
                .bearer_auth(AUDITOR),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidId,
            "invalid session id \"../../etc\"",
        ),
        (
            "path id not UTF-8",
            c.get(format!("{base}/v1/sessions/%FF%FE/recording"))
                .bearer_auth(AUDITOR),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidId,
            "bad id in the path",
        ),
        (
            "missing field",
            c.post(format!("{base}/v1/streams"))
                .bearer_auth(RECORDER)
                .json(&json!({"sid": "x"})),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "missing field `session_id`",
        ),
        (
            "resume of an unknown upload",
            c.post(format!("{base}/v1/streams/{}/resume", uuid()))
                .bearer_auth(RECORDER)
                .json(&json!({"session_id": uuid()})),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no open upload",
        ),
        (
            "complete twice",
            c.post(format!("{base}/v1/streams/{}/complete", done.upload_id))
                .bearer_auth(RECORDER),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "is not open on this server",
        ),
        (
            "another recorder's stream",
            c.post(format!("{base}/v1/streams/{}/records", owned.upload_id))
                .bearer_auth(RECORDER2)
                .header("content-type", RECORDS_CONTENT_TYPE)
                .body(framed(&session(&sid, 1))),
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "belongs to \"rec1\"",
        ),
        (
            "another recorder completes",
            c.post(format!("{base}/v1/streams/{}/complete", owned.upload_id))
                .bearer_auth(RECORDER2),
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "belongs to",
        ),
        (
            "bad search time",
            c.get(format!("{events_url}?from=yesterday"))
                .bearer_auth(AUDITOR),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "from=\"yesterday\" is not an RFC 3339 time",
        ),
        (
            "bad search limit",
            c.get(format!("{events_url}?limit=many"))
                .bearer_auth(AUDITOR),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "bad query",
        ),
        (
            "unknown endpoint",
            c.get(format!("{base}/v1/nothing")).bearer_auth(ADMIN),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such endpoint",
        ),
        (
            "completer needs admin",
            c.post(format!("{base}/v1/uploads/complete"))
                .bearer_auth(AUDITOR),
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "needs the admin role",
        ),
    ];
    for (name, req, status, code, message) in cases {
        let r = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let (got_status, body) = error_of(r).await;
        assert_eq!(got_status, status, "{name}: {}", body.error.message);
        assert_eq!(body.error.code, code, "{name}: {}", body.error.message);
        assert!(
            body.error.message.contains(message),
            "{name}: {:?} does not say {message:?}",
            body.error.message
        );
    }

    // The refused batch wrote nothing, not even its good event.
    let page = search(&c, &base, "type=user.login&limit=10000").await;
    assert!(page.events.iter().all(|e| e["user"] != "batch-good-marker"));
    // The stream rec2 was refused still works for rec1.
    let st = send_records(&c, &base, RECORDER, &owned.upload_id, &session(&sid, 2)).await;
    assert_eq!(st.upload_id, owned.upload_id);

    // The healthy client got through while all that went on; on a loaded machine it may
    // have needed longer than the bad requests took: its first 10 events may come after them
    // (a bounded wait, not a fixed one).
    for _ in 0..600 {
        if ok.load(Ordering::Relaxed) >= 10 || failed.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    healthy.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(
        ok >= 10,
        "the healthy client made little progress in 60 s: {ok}"
    );
    assert_eq!(
        failed, 0,
        "the healthy client failed {failed} times ({ok} ok)"
    );
    // Every healthy event is in the log (every page: one page stops at 1 MiB).
    let mut healthy_seen = 0u64;
    let mut key = String::new();
    for _ in 0..1000 {
        let r = c
            .get(format!("{base}/v1/events"))
            .query(&[
                ("type", "user.login"),
                ("limit", "10000"),
                ("start_key", &key),
            ])
            .bearer_auth(AUDITOR)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page: EventsPage = r.json().await.unwrap();
        healthy_seen += page
            .events
            .iter()
            .filter(|e| {
                e["user"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("healthy-"))
            })
            .count() as u64;
        if page.next_key.is_empty() {
            break;
        }
        key = page.next_key;
    }
    assert_eq!(healthy_seen, ok);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_http_complete_and_resume_on_a_new_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start(support::config(dir.path())).await;
    let base = server.url();
    let c = http();

    // Create, write in three requests, complete: the recording is exactly the events.
    let sid = uuid();
    let events = session(&sid, 40);
    let st = create_stream(&c, &base, RECORDER, &sid).await;
    assert_eq!(st.last_event_index, -1);
    assert_eq!(st.session_id, sid);
    for chunk in events.chunks(15) {
        send_records(&c, &base, RECORDER, &st.upload_id, chunk).await;
    }
    let r = post_stream(&c, &base, RECORDER, &st.upload_id, "complete").await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: CompletedBody = r.json().await.unwrap();
    assert_eq!(
        (done.session_id.as_str(), done.upload_id.as_str()),
        (sid.as_str(), st.upload_id.as_str())
    );
    let bytes = c
        .get(format!("{base}/v1/sessions/{sid}/recording"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let read = read_all(&bytes);
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.events, events);

    // Ranges (the web player re-reads from a part boundary to seek back).
    let size = bytes.len();
    let ranged = |range: String| {
        c.get(format!("{base}/v1/sessions/{sid}/recording"))
            .bearer_auth(AUDITOR)
            .header("range", range)
            .send()
    };
    for (range, from, to) in [
        (format!("bytes={}-", size / 3), size / 3, size),
        ("bytes=7-19".to_string(), 7, 20),
        ("bytes=-10".to_string(), size - 10, size),
        (format!("bytes=5-{}", size * 2), 5, size),
    ] {
        let r = ranged(range.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {from}-{}/{size}", to - 1).as_str(),
            "{range}"
        );
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[from..to], "{range}");
    }
    let r = ranged(format!("bytes={size}-")).await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    let r = ranged("bytes=0-1,4-5".to_string()).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "several ranges: the whole recording"
    );
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap(), bytes);

    // Session events from an index, as JSON lines.
    let r = c
        .get(format!("{base}/v1/sessions/{sid}/events?from_index=5"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let want: String = events[5..].iter().map(|e| e.to_json() + "\n").collect();
    assert_eq!(r.text().await.unwrap(), want);
    let r = c
        .get(format!("{base}/v1/sessions/{}/recording", uuid()))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1.error.code, ErrorCode::NotFound);

    // Close a second stream half-way; a new server over the same data dir resumes it.
    let sid2 = uuid();
    let events2 = session(&sid2, 30);
    let st2 = create_stream(&c, &base, RECORDER, &sid2).await;
    send_records(&c, &base, RECORDER, &st2.upload_id, &events2[..20]).await;
    let r = post_stream(&c, &base, RECORDER, &st2.upload_id, "close").await;
    assert_eq!(r.status(), StatusCode::OK);
    let closed: StreamStatusBody = r.json().await.unwrap();
    assert_eq!(closed.last_event_index, 19);
    let r = c
        .get(format!("{base}/v1/streams/{}", st2.upload_id))
        .bearer_auth(RECORDER)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1.error.code, ErrorCode::NotFound);
    let report = server.shutdown().await;
    assert_eq!(report.streams_closed, 0);

    let server = support::start(support::config(dir.path())).await;
    let base = server.url();
    let uploads: UploadsBody = c
        .get(format!("{base}/v1/uploads"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploads.uploads.len(), 1);
    assert_eq!(uploads.uploads[0].upload_id, st2.upload_id);
    assert_eq!(uploads.uploads[0].session_id, sid2);
    assert!(!uploads.uploads[0].initiated.is_empty());
    // Records to a stream this server does not have open: 404, the client resumes.
    let r = c
        .post(format!("{base}/v1/streams/{}/records", st2.upload_id))
        .bearer_auth(RECORDER)
        .header("content-type", RECORDS_CONTENT_TYPE)
        .body(framed(&events2[20..]))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1.error.code, ErrorCode::NotFound);
    let r = c
        .post(format!("{base}/v1/streams/{}/resume", st2.upload_id))
        .bearer_auth(RECORDER)
        .json(&json!({ "session_id": sid2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let resumed: StreamStatusBody = r.json().await.unwrap();
    assert_eq!(
        resumed.last_event_index, 19,
        "the store holds events 0..=19"
    );
    send_records(&c, &base, RECORDER, &st2.upload_id, &events2[20..]).await;
    let r = post_stream(&c, &base, RECORDER, &st2.upload_id, "complete").await;
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = c
        .get(format!("{base}/v1/sessions/{sid2}/recording"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let read = read_all(&bytes);
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.events, events2);
    server.shutdown().await;
}

/// A reqwest client that trusts `ca` and, when given, presents `identity` (cert, key).
fn tls_client(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in tapelog_api::tls::read_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(tapelog_api::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                tapelog_api::tls::read_certs(cert).unwrap(),
                tapelog_api::tls::read_key(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_roles_from_certificates_and_tokens_over_tls() {
    use tapelog_api::Role;
    let dir = tempfile::tempdir().unwrap();
    let pki = tapelog_api::tls::certs::init(&dir.path().join("pki"), &[]).unwrap();
    let other = tapelog_api::tls::certs::init(&dir.path().join("other"), &[]).unwrap();
    let mut config = support::config(&dir.path().join("data"));
    config.tls = Some(tapelog_server::TlsFiles {
        cert: pki.server.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    });
    let server = support::start(config).await;
    let base = server.url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    // A recorder certificate emits; an auditor certificate searches but may not emit.
    let recorder = tls_client(&pki.ca, pki.client(Role::Recorder));
    let r = recorder
        .post(format!("{base}/v1/events"))
        .json(&login("by-cert"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let auditor = tls_client(&pki.ca, pki.client(Role::Auditor));
    let r = auditor
        .get(format!("{base}/v1/events?type=user.login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page: EventsPage = r.json().await.unwrap();
    assert!(page.events.iter().any(|e| e["user"] == "by-cert"));
    let r = auditor
        .post(format!("{base}/v1/events"))
        .json(&login("x"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body.error.code),
        (StatusCode::FORBIDDEN, ErrorCode::Forbidden)
    );
    assert!(
        body.error.message.contains("tapelog-auditor"),
        "{}",
        body.error.message
    );

    // A certificate from another CA fails the handshake.
    let stranger = tls_client(&pki.ca, other.client(Role::Admin));
    let r = stranger.get(format!("{base}/v1/uploads")).send().await;
    assert!(
        r.is_err(),
        "a foreign certificate was accepted: {:?}",
        r.map(|r| r.status())
    );

    // No certificate: a bearer token still works over TLS; nothing at all is 401.
    let plain = tls_client(&pki.ca, None);
    let r = plain
        .post(format!("{base}/v1/events"))
        .bearer_auth(RECORDER)
        .json(&login("by-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = plain
        .get(format!("{base}/v1/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1.error.code, ErrorCode::Unauthenticated);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_sessions_uploads_metrics_and_the_admin_token_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    config.tokens.clear();
    let server = support::start(config.clone()).await;
    let base = server.url();
    let c = http();
    let token_file = dir.path().join("admin.token");
    assert_eq!(server.admin_token_file(), Some(token_file.as_path()));
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let admin = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(admin.len() >= 32);

    // Batch (array), single, and JSON lines.
    let batch: Vec<Value> = (0..25).map(|i| login(&format!("u{i:02}"))).collect();
    let r = c
        .post(format!("{base}/v1/events"))
        .bearer_auth(&admin)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 25}));
    let sid = uuid();
    let end = json!({"event": "session.end", "code": "T2004I", "sid": sid, "user": "alice",
        "time": "2024-01-15T10:00:00Z"});
    let lines = format!("{}\n\n{}\n", login("nd1"), end);
    let r = c
        .post(format!("{base}/v1/events"))
        .bearer_auth(&admin)
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 2}));

    // Pages of 10 with keys, in order.
    let mut key = String::new();
    let mut users = Vec::new();
    for _ in 0..10 {
        let r = c
            .get(format!("{base}/v1/events"))
            .query(&[
                ("type", "user.login"),
                ("limit", "10"),
                ("start_key", key.as_str()),
            ])
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page: EventsPage = r.json().await.unwrap();
        assert!(page.events.len() <= 10);
        users.extend(
            page.events
                .iter()
                .map(|e| e["user"].as_str().unwrap().to_string()),
        );
        key = page.next_key;
        if key.is_empty() {
            break;
        }
    }
    let mut want: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    want.push("nd1".into());
    assert_eq!(users, want);
    // Sessions: the session end, by condition and by id.
    let r = c
        .get(format!("{base}/v1/sessions?where=user%3Dalice"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let page: EventsPage = r.json().await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0]["sid"], sid.as_str());
    assert_eq!(
        page.events[0]["cluster_name"], "tapelog",
        "the checking emitter filled it"
    );
    let r = c
        .get(format!("{base}/v1/sessions?session_id={}", uuid()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(r.json::<EventsPage>().await.unwrap().events.is_empty());

    // An open stream shows in the uploads list and in streams_open.
    let st = create_stream(&c, &base, &admin, &uuid()).await;
    let uploads: UploadsBody = c
        .get(format!("{base}/v1/uploads"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(uploads.uploads.iter().any(|u| u.upload_id == st.upload_id));
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = r.text().await.unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert!(value("audit_emitted_events") >= 27.0);
    assert!(value("streams_open") >= 1.0);
    for name in [
        "audit_failed_emit_events",
        "audit_dropped_events",
        "stream_parts_uploaded",
        "stream_part_retries",
        "stream_uploaded_bytes",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} counter")),
            "{name}"
        );
        value(name);
    }
    // The completer (admin) leaves the live stream alone.
    let r = c
        .post(format!("{base}/v1/uploads/complete?grace=0"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: tapelog_api::CompleteReportBody = r.json().await.unwrap();
    assert!(report.completed.is_empty(), "{report:?}");
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.upload_id == st.upload_id && s.reason == "Live"),
        "{report:?}"
    );
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let report = server.shutdown().await;
    assert_eq!(report.streams_closed, 1);

    // Restarted: the same token, the file untouched; the closed upload is now abandoned.
    let server = support::start(config).await;
    let base = server.url();
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), admin);
    let r = c
        .post(format!("{base}/v1/uploads/complete?grace=0"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let report: tapelog_api::CompleteReportBody = r.json().await.unwrap();
    assert!(
        report.completed.iter().any(|d| d.upload_id == st.upload_id),
        "{report:?}"
    );
    server.shutdown().await;
}

/// Each server owns its metrics: two servers in one process count apart, in `/metrics` and
/// in `RunningServer::metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_in_one_process_count_apart() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::start(support::config(da.path())).await;
    let b = support::start(support::config(db.path())).await;
    let c = http();
    let emit = |base: String, events: Vec<Value>| {
        let c = c.clone();
        async move {
            let r = c
                .post(format!("{base}/v1/events"))
                .bearer_auth(RECORDER)
                .json(&events)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
    };
    emit(a.url(), (0..3).map(|i| login(&format!("a{i}"))).collect()).await;
    emit(b.url(), vec![login("b0")]).await;
    let st = create_stream(&c, &a.url(), RECORDER, &uuid()).await;
    let scrape = |base: String| {
        let c = c.clone();
        async move {
            let text = c
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            move |name: &str| -> String {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name} ")))
                    .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
                    .to_string()
            }
        }
    };
    let (ma, mb) = (scrape(a.url()).await, scrape(b.url()).await);
    assert_eq!(ma("audit_emitted_events"), "3");
    assert_eq!(mb("audit_emitted_events"), "1");
    assert_eq!(ma("streams_open"), "1");
    assert_eq!(mb("streams_open"), "0");
    assert_eq!(a.metrics().audit_emitted_events.get(), 3);
    assert_eq!(b.metrics().audit_emitted_events.get(), 1);
    let r = post_stream(&c, &a.url(), RECORDER, &st.upload_id, "close").await;
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_open_streams_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let serve = ServeProcess::start(|c| {
        c.args([
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--completer-interval",
            "0",
        ])
        .args([
            "--token",
            &format!("recorder:rec1:{RECORDER}"),
            "--token",
            &format!("auditor:aud:{AUDITOR}"),
        ])
        .stderr(std::process::Stdio::piped());
    });
    let base = serve.url.clone();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let c = http();
    let sid = uuid();
    let events = session(&sid, 25);
    let st = create_stream(&c, &base, RECORDER, &sid).await;
    send_records(&c, &base, RECORDER, &st.upload_id, &events[..12]).await;

    // SIGTERM: exit 0 within the bound.
    let err = tokio::task::spawn_blocking(move || serve.terminate())
        .await
        .unwrap();
    assert!(err.contains("1 stream(s) closed"), "{err}");

    // The upload is listed and resumable with every confirmed event.
    let server = support::start(support::config(dir.path())).await;
    let base = server.url();
    let uploads: UploadsBody = c
        .get(format!("{base}/v1/uploads"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploads.uploads.len(), 1);
    assert_eq!(uploads.uploads[0].upload_id, st.upload_id);
    let r = c
        .post(format!("{base}/v1/streams/{}/resume", st.upload_id))
        .bearer_auth(RECORDER)
        .json(&json!({ "session_id": sid }))
        .send()
        .await
        .unwrap();
    let resumed: StreamStatusBody = r.json().await.unwrap();
    assert_eq!(resumed.last_event_index, 11);
    send_records(&c, &base, RECORDER, &st.upload_id, &events[12..]).await;
    assert_eq!(
        post_stream(&c, &base, RECORDER, &st.upload_id, "complete")
            .await
            .status(),
        StatusCode::OK
    );
    let bytes = c
        .get(format!("{base}/v1/sessions/{sid}/recording"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(read_all(&bytes).events, events);
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_on_a_public_address_needs_allow_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    config.listen = "0.0.0.0:0".parse().unwrap();
    let err = tapelog_server::Server::start(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--allow-insecure"), "{err}");
    config.allow_insecure = true;
    let server = support::start(config).await;
    assert!(server.local_addr().ip().is_unspecified());
    server.shutdown().await;
}

/// `tapelog serve` (the binary) with `args` and `env`.
fn spawn_serve(args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
    ServeProcess::start(|c| {
        c.args(args).stderr(std::process::Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
    })
}

/// `tapelog serve` (the binary) on a free loopback port over `data` with `args`; its first
/// two stdout lines (the address, the web player's login URL) and the process.
fn serve_with_login_line(data: &std::path::Path, args: &[&str]) -> (String, String, ServeProcess) {
    let serve = ServeProcess::start(|c| {
        c.arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--completer-interval", "0"])
            .args(args)
            .stderr(std::process::Stdio::piped());
    });
    let line = serve.next_line();
    let login = line
        .strip_prefix("web player: ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    (serve.url.clone(), login, serve)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_a_login_url_with_the_admin_token_and_never_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (base, login_url, child) = serve_with_login_line(dir.path(), &[]);
    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    assert!(token.len() >= 32, "{token:?}");
    // The token is in the fragment of the page's URL, nowhere else in it.
    assert_eq!(login_url, format!("{base}/#token={token}"));

    // The token works, whether the page is fetched by its login URL or the API called with it;
    // a wrong token and a token in a query string get the usual answers.
    let c = http();
    let r = c.get(&login_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{base}/v1/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{base}/v1/events"))
        .bearer_auth(&token)
        .json(&login("login-url"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{base}/v1/sessions?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(format!("{base}/v1/no-such-endpoint"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    // The server's log (standard error, to its end after SIGTERM) names the file, never the
    // token.
    let log = child.terminate();
    assert!(log.contains("admin.token"), "{log}");
    assert!(!log.contains(&token), "the log holds the token: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_configured_tokens_the_login_url_carries_none() {
    let dir = tempfile::tempdir().unwrap();
    let (base, login_url, child) = serve_with_login_line(
        dir.path(),
        &[
            "--token",
            &format!("auditor:aud:{AUDITOR}"),
            "--token",
            &format!("admin:adm:{ADMIN}"),
        ],
    );
    assert_eq!(login_url, format!("{base}/"));
    assert!(!dir.path().join("admin.token").exists());
    let r = http()
        .get(format!("{base}/v1/sessions"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let log = child.terminate();
    assert!(!log.contains(AUDITOR) && !log.contains(ADMIN), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_env_and_flags_in_order_of_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag) = (
        dir.path().join("file"),
        dir.path().join("env"),
        dir.path().join("flag"),
    );
    let toml = dir.path().join("serve.toml");
    std::fs::write(
        &toml,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\ncompleter_interval = 0\nserver_id = \"from-file\"\n\n[[tokens]]\nrole = \"recorder\"\nname = \"filehost\"\ntoken = \"{RECORDER}\"\n",
            from_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let toml = toml.to_str().unwrap();
    let c = http();
    let emit = |base: String| {
        let c = c.clone();
        async move {
            let r = c
                .post(format!("{base}/v1/events"))
                .bearer_auth(RECORDER)
                .json(&login("cfg"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    let day_files = |dir: &std::path::Path| {
        dir.join("log")
            .join("from-file")
            .read_dir()
            .map(|d| d.count())
            .unwrap_or(0)
    };

    // The file alone: its data dir, its tokens (no admin token made).
    let serve = spawn_serve(&["--config", toml], &[]);
    emit(serve.url.clone()).await;
    let err = serve.terminate();
    assert!(day_files(&from_file) > 0, "{err}");
    assert!(!from_file.join("admin.token").exists());
    // The variable wins over the file.
    let serve = spawn_serve(
        &["--config", toml],
        &[("TAPELOG_DATA_DIR", from_env.to_str().unwrap())],
    );
    emit(serve.url.clone()).await;
    serve.terminate();
    assert!(day_files(&from_env) > 0);
    // The flag wins over both.
    let serve = spawn_serve(
        &["--config", toml, "--data-dir", from_flag.to_str().unwrap()],
        &[("TAPELOG_DATA_DIR", from_env.to_str().unwrap())],
    );
    emit(serve.url.clone()).await;
    serve.terminate();
    assert!(day_files(&from_flag) > 0);

    // --help names every option.
    let help = TestCommand::new().args(["serve", "--help"]).output();
    let help = String::from_utf8(help.stdout).unwrap();
    for opt in [
        "--config",
        "--data-dir",
        "--listen",
        "--storage",
        "--endpoint",
        "--region",
        "--tls-cert",
        "--tls-key",
        "--client-ca",
        "--token",
        "--allow-insecure",
        "--max-body",
        "--server-id",
        "--cluster-name",
        "--durability",
        "--completer-grace",
        "--completer-interval",
        "--search-rate",
        "--search-burst",
        "--shutdown-timeout",
        "TAPELOG_TOKENS",
    ] {
        assert!(help.contains(opt), "--help does not name {opt}");
    }
}

#[test]
fn certs_init_writes_a_pki_whose_client_certs_name_their_roles() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    TestCommand::new()
        .args([
            "certs",
            "init",
            dir.path().to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--host",
            "tapelog.test",
        ])
        .run();
    for role in ["recorder", "auditor", "admin"] {
        let cert = tapelog_api::tls::read_certs(&dir.path().join(format!("{role}.pem"))).unwrap();
        let id = tapelog_api::tls::cert_identity(cert[0].as_ref()).unwrap();
        assert_eq!(id.name, format!("tapelog-{role}"));
        assert_eq!(id.unit, role);
        assert!(id.role.is_some());
        let key = dir.path().join(format!("{role}-key.pem"));
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The server certificate and key load into a rustls configuration with the CA.
    tapelog_api::tls::server_config(
        &dir.path().join("server.pem"),
        &dir.path().join("server-key.pem"),
        Some(&dir.path().join("ca.pem")),
    )
    .unwrap();
}

/// `GET /v1/events/feed`: the audit log in arrival order, an event posted late with an old
/// time included, the key unchanged when nothing is new; the same through the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_feed_returns_what_was_appended_whatever_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start(support::config(dir.path())).await;
    let base = server.url();
    let c = http();
    let post = |events: Vec<Value>| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let r = c
                .post(format!("{base}/v1/events"))
                .bearer_auth(RECORDER)
                .json(&events)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
    };
    let at = |marker: &str, time: &str| {
        let mut e = login(marker);
        e["time"] = json!(time);
        e
    };
    post(
        (0..5)
            .map(|i| at(&format!("u{i}"), &format!("2024-01-16T10:00:0{i}Z")))
            .collect(),
    )
    .await;
    let feed = |after: String, limit: &'static str| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let r = c
                .get(format!("{base}/v1/events/feed"))
                .query(&[("after", after.as_str()), ("limit", limit)])
                .bearer_auth(AUDITOR)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<EventsPage>().await.unwrap()
        }
    };
    let users = |p: &EventsPage| -> Vec<String> {
        p.events
            .iter()
            .map(|e| e["user"].as_str().unwrap().to_string())
            .collect()
    };
    let p1 = feed(String::new(), "3").await;
    assert_eq!(users(&p1), ["u0", "u1", "u2"]);
    assert!(p1.next_key.starts_with("f1:"), "{}", p1.next_key);
    let p2 = feed(p1.next_key.clone(), "3").await;
    assert_eq!(users(&p2), ["u3", "u4"]);
    let p3 = feed(p2.next_key.clone(), "3").await;
    assert!(p3.events.is_empty());
    assert_eq!(p3.next_key, p2.next_key, "nothing new: the same key");
    // A day older than everything read, posted now.
    post(vec![at("late", "2024-01-15T10:00:00Z")]).await;
    let p4 = feed(p3.next_key.clone(), "3").await;
    assert_eq!(users(&p4), ["late"]);
    // The client reads the same.
    let client = tapelog_client::Client::new(tapelog_client::ClientConfig::new(
        &base,
        tapelog_client::Credentials::token(tapelog_client::Token::new(AUDITOR).unwrap()),
    ))
    .unwrap();
    let page = client.events_feed(&p2.next_key, 0).await.unwrap();
    assert_eq!(users(&page), ["late"]);
    assert_eq!(page.next_key, p4.next_key);
}
