//! The client against the test double: every call, paging, export cursors, and the errors
//! tapelog's exporter must tell apart.

use std::time::Duration;

use futures::StreamExt;
use tapelog_core::{AuditEvent, Timestamp};
use tapelog_teleport::double::{Double, files};
use tapelog_teleport::{
    AuthClient, ConnectOptions, Credentials, CredentialsSource, ErrorKind, EventQuery, KeyFormat,
    ResultStream, TeleportError,
};

const DAY: i64 = 86_400;
/// 2026-12-01T00:00:00Z.
const DAY0: i64 = 1_796_083_200;

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

fn event(event_type: &str, id: &str, seconds: i64) -> AuditEvent {
    let json = serde_json::json!({
        "event": event_type,
        "uid": id,
        "code": "T0000I",
        "time": "2026-12-01T00:00:00Z",
        "user": "alice",
        "login": "root",
    });
    let mut e = AuditEvent::from_json(&json.to_string()).expect("event JSON");
    e.set_time(at(seconds));
    e
}

fn session_event(sid: &str, index: i64, event_type: &str) -> AuditEvent {
    let json = serde_json::json!({
        "event": event_type,
        "uid": format!("{sid}-{index}"),
        "time": "2026-12-01T00:00:00Z",
        "sid": sid,
        "ei": index,
    });
    AuditEvent::from_json(&json.to_string()).expect("event JSON")
}

fn print_event(sid: &str, index: i64, data: &[u8]) -> AuditEvent {
    let mut e = session_event(sid, index, "print");
    if let AuditEvent::SessionPrint(p) = &mut e {
        p.data = data.to_vec();
        p.bytes = data.len() as i64;
    }
    e
}

async fn start() -> (Double, AuthClient) {
    let double = Double::start().await.expect("double starts");
    let creds = Credentials::identity_file(&double.identity_file()).expect("identity");
    let client = AuthClient::connect(&double.addr(), &creds)
        .await
        .expect("client connects");
    (double, client)
}

async fn collect<T>(s: ResultStream<T>) -> Result<Vec<T>, TeleportError> {
    tokio::time::timeout(Duration::from_secs(10), s.collect::<Vec<_>>())
        .await
        .expect("stream ends in time")
        .into_iter()
        .collect()
}

fn ids_of_json(items: &[tapelog_teleport::UnstructuredEvent]) -> Vec<String> {
    items.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test]
async fn ping_sends_version_header_and_counts_calls() {
    let (double, client) = start().await;
    let info = client.ping().await.expect("ping");
    assert_eq!(info.cluster_name, "double.example");
    assert_eq!(info.server_version, "17.5.0");
    assert!(info.remote_addr.starts_with("127.0.0.1:"), "{info:?}");
    client.ping().await.expect("ping");
    assert_eq!(double.calls("Ping"), 2);
    assert_eq!(double.calls_without_version(), 0);
}

#[tokio::test]
async fn the_double_counts_calls_without_the_version_header() {
    use tapelog_teleport::pb::proto::{PingRequest, auth_service_client::AuthServiceClient};
    let double = Double::start().await.expect("double");
    let creds = Credentials::identity_file(&double.identity_file()).expect("identity");
    let channel = tapelog_teleport::connect::connect_without_header(
        &double.addr(),
        &creds,
        &ConnectOptions::default(),
    )
    .await
    .expect("connect");
    AuthServiceClient::new(channel)
        .ping(PingRequest {})
        .await
        .expect("ping without header");
    assert_eq!(double.calls("Ping"), 1);
    assert_eq!(double.calls_without_version(), 1);
}

#[tokio::test]
async fn unstructured_pages_in_both_orders_with_range_and_type_filter() {
    let (double, client) = start().await;
    let events: Vec<AuditEvent> = (0..25)
        .map(|i| {
            let ty = if i % 5 == 0 {
                "session.start"
            } else {
                "user.login"
            };
            event(ty, &format!("e{i:02}"), DAY0 + i * 60)
        })
        .collect();
    // Added out of time order: pages are sorted by time.
    double.add_events(events.iter().rev().cloned());

    let mut q = EventQuery::new(at(DAY0), at(DAY0 + DAY), 10);
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.get_unstructured_events(&q).await.expect("page");
        pages += 1;
        assert!(page.items.len() <= 10);
        got.extend(page.items);
        if page.last_key.is_empty() {
            break;
        }
        q.start_key = page.last_key;
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| format!("e{i:02}")).collect();
    assert_eq!(ids_of_json(&got), want);
    // The JSON is the event's own, with type, time and id alongside.
    let first = &got[0];
    assert_eq!(first.event_type, "session.start");
    assert_eq!(first.time, at(DAY0));
    let back = AuditEvent::from_json(&first.json).expect("JSON parses");
    assert_eq!(back, events[0]);

    // Newest first.
    let mut q = EventQuery::new(at(DAY0), at(DAY0 + DAY), 4);
    q.ascending = false;
    let page = client.get_unstructured_events(&q).await.expect("page");
    assert_eq!(ids_of_json(&page.items), ["e24", "e23", "e22", "e21"]);
    assert!(!page.last_key.is_empty());

    // Time range (inclusive) and type filter.
    let mut q = EventQuery::new(at(DAY0 + 60), at(DAY0 + 11 * 60), 100);
    q.event_types = vec!["session.start".into()];
    let page = client.get_unstructured_events(&q).await.expect("page");
    assert_eq!(ids_of_json(&page.items), ["e05", "e10"]);
    assert!(page.last_key.is_empty());
}

#[tokio::test]
async fn limits_as_upstream() {
    let (double, client) = start().await;
    double.add_events((0..520).map(|i| event("user.login", &format!("e{i}"), DAY0 + i)));
    let q = EventQuery::new(at(DAY0), at(DAY0 + DAY), 0);
    let page = client.get_unstructured_events(&q).await.expect("page");
    assert_eq!(page.items.len(), 500, "limit 0 means 500");
    assert!(!page.last_key.is_empty());

    let q = EventQuery::new(at(DAY0), at(DAY0 + DAY), 10_001);
    let err = client
        .get_unstructured_events(&q)
        .await
        .expect_err("too big");
    assert_eq!(err.kind(), ErrorKind::BadParameter, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("GetUnstructuredEvents") && text.contains(&double.addr()),
        "{text}"
    );
}

#[tokio::test]
async fn typed_get_events_pages_and_keeps_events_whole() {
    let (double, client) = start().await;
    let events: Vec<AuditEvent> = (0..7)
        .map(|i| event("user.login", &format!("t{i}"), DAY0 + i))
        .collect();
    double.add_events(events.clone());
    let mut q = EventQuery::new(at(DAY0), at(DAY0 + DAY), 3);
    let mut got = Vec::new();
    for _ in 0..10 {
        let (page, key) = client.get_events(&q).await.expect("page");
        got.extend(page);
        if key.is_empty() {
            break;
        }
        q.start_key = key;
    }
    assert_eq!(got, events);
    assert_eq!(double.calls("GetEvents"), 3);
    assert_eq!(double.calls_without_version(), 0);
}

#[tokio::test]
async fn export_chunks_with_cursor_resume_and_late_events() {
    let (double, client) = start().await;
    double.set_chunk_size(3);
    // Five events on day 0, two on day 1.
    double.add_events((0..5).map(|i| event("user.login", &format!("a{i}"), DAY0 + 100 + i)));
    double.add_events((0..2).map(|i| event("user.login", &format!("b{i}"), DAY0 + DAY + i)));

    // Any time of the day names the day.
    let day0 = at(DAY0 + 3_600);
    let mut chunks = collect(client.get_event_export_chunks(day0).await.expect("chunks"))
        .await
        .expect("chunks");
    chunks.sort();
    assert_eq!(chunks.len(), 2);
    let mut all = Vec::new();
    for c in &chunks {
        let evs = collect(
            client
                .export_unstructured_events(day0, c, "")
                .await
                .expect("export"),
        )
        .await
        .expect("export");
        all.extend(evs.into_iter().map(|e| e.event.id));
    }
    all.sort();
    assert_eq!(all, ["a0", "a1", "a2", "a3", "a4"]);

    // Resume inside a chunk from the cursor after its first event.
    let first = collect(
        client
            .export_unstructured_events(day0, &chunks[0], "")
            .await
            .expect("export"),
    )
    .await
    .expect("export");
    assert_eq!(first.len(), 3);
    let rest = collect(
        client
            .export_unstructured_events(day0, &chunks[0], &first[0].cursor)
            .await
            .expect("export"),
    )
    .await
    .expect("export");
    assert_eq!(rest, first[1..].to_vec());

    // A late event of day 0 fills the second chunk; a fourth makes a new chunk.
    double.add_events((5..7).map(|i| event("user.login", &format!("a{i}"), DAY0 + 200 + i)));
    let chunks = collect(client.get_event_export_chunks(day0).await.expect("chunks"))
        .await
        .expect("chunks");
    assert_eq!(chunks.len(), 3);

    // Day 1 is separate.
    let day1 = collect(
        client
            .get_event_export_chunks(at(DAY0 + DAY))
            .await
            .expect("chunks"),
    )
    .await
    .expect("chunks");
    assert_eq!(day1.len(), 1);

    // An unknown chunk is NotFound (on the call or on the stream).
    let err = match client
        .export_unstructured_events(day0, "chunk-99", "")
        .await
    {
        Err(e) => e,
        Ok(s) => collect(s).await.expect_err("unknown chunk"),
    };
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn export_unimplemented_on_an_old_cluster() {
    let (double, client) = start().await;
    double.set_export_unimplemented(true);
    let err = match client.get_event_export_chunks(at(DAY0)).await {
        Err(e) => e,
        Ok(s) => collect(s).await.expect_err("unimplemented"),
    };
    assert_eq!(err.kind(), ErrorKind::NotImplemented, "{err}");
    assert!(err.to_string().contains("GetEventExportChunks"), "{err}");
    // Polling still works.
    let page = client
        .get_unstructured_events(&EventQuery::new(at(DAY0), at(DAY0 + DAY), 10))
        .await
        .expect("polling");
    assert!(page.items.is_empty() && page.last_key.is_empty());
}

#[tokio::test]
async fn session_streams_typed_and_unstructured() {
    let (double, client) = start().await;
    let sid = "9b9a6b4e-7b1c-4d8e-8f0a-0c1d2e3f4a5b";
    let rec = vec![
        session_event(sid, 0, "session.start"),
        print_event(sid, 1, b"hello\r\n"),
        print_event(sid, 2, b"world\r\n"),
        session_event(sid, 3, "session.end"),
    ];
    double.add_session(sid, rec.clone());

    let typed = collect(client.stream_session_events(sid, 0).await.expect("stream"))
        .await
        .expect("stream");
    assert_eq!(typed, rec);
    assert_eq!(typed[1].print_data(), Some(b"hello\r\n".as_slice()));

    // The start index is inclusive.
    let json = collect(
        client
            .stream_unstructured_session_events(sid, 2)
            .await
            .expect("stream"),
    )
    .await
    .expect("stream");
    let idx: Vec<i64> = json.iter().map(|e| e.index).collect();
    assert_eq!(idx, [2, 3]);
    assert_eq!(json[0].event_type, "print");
    assert!(
        !json[0].json.contains("hello"),
        "print data is not in Teleport's JSON"
    );

    // A missing recording is NotFound on both calls.
    for typed in [true, false] {
        let err = if typed {
            match client.stream_session_events("missing", 0).await {
                Err(e) => e,
                Ok(s) => collect(s).await.expect_err("missing"),
            }
        } else {
            match client
                .stream_unstructured_session_events("missing", 0)
                .await
            {
                Err(e) => e,
                Ok(s) => collect(s).await.expect_err("missing"),
            }
        };
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

#[tokio::test]
async fn a_bad_item_is_a_typed_error_with_its_position() {
    let (double, client) = start().await;
    let good = session_event("s", 0, "session.start").to_oneof_bytes();
    double.add_raw_session("s", vec![good, vec![0xff, 0xff, 0xff]]);
    let items: Vec<Result<AuditEvent, TeleportError>> = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .stream_session_events("s", 0)
            .await
            .expect("stream")
            .collect::<Vec<_>>(),
    )
    .await
    .expect("in time");
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    match &items[1] {
        Err(e @ TeleportError::BadItem { rpc, position, .. }) => {
            assert_eq!(*rpc, "StreamSessionEvents");
            assert_eq!(*position, 1);
            assert_eq!(e.kind(), ErrorKind::Decode);
        }
        other => panic!("expected a bad item, got {other:?}"),
    }
}

#[tokio::test]
async fn injected_unavailable_then_recovers() {
    let (double, client) = start().await;
    double.fail_next(2);
    for _ in 0..2 {
        let err = client.ping().await.expect_err("injected");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }
    client.ping().await.expect("third call works");
    assert_eq!(double.calls("Ping"), 3);
}

#[tokio::test]
async fn upsert_lock_is_recorded() {
    let (double, client) = start().await;
    let expires = at(DAY0 + 600);
    client
        .upsert_lock("alice", "root", "User is locked", Some(expires))
        .await
        .expect("lock");
    let locks = double.locks();
    assert_eq!(locks.len(), 1);
    let l = &locks[0];
    assert_eq!(l.kind, "lock");
    assert_eq!(l.version, "v2");
    let md = l.metadata.as_ref().expect("metadata");
    assert_eq!(md.name, "event-handler-auto-lock-alice-root");
    let spec = l.spec.as_ref().expect("spec");
    let target = spec.target.as_ref().expect("target");
    assert_eq!(
        (target.user.as_str(), target.login.as_str()),
        ("alice", "root")
    );
    assert_eq!(spec.message, "User is locked");
    assert_eq!(spec.expires.as_ref().map(|t| t.seconds), Some(DAY0 + 600));
}

#[tokio::test]
async fn client_certificate_of_another_ca_is_refused() {
    let double = Double::start().await.expect("double");
    let creds =
        Credentials::identity_file(&double.file(files::IDENTITY_FOREIGN)).expect("identity");
    // TLS 1.3: the server's refusal may arrive at connect or at the first call.
    let err = match AuthClient::connect(&double.addr(), &creds).await {
        Err(e) => e,
        Ok(c) => c.ping().await.expect_err("refused"),
    };
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains(&double.addr()), "{err}");
    assert!(double.handshake_failures() >= 1);
    assert_eq!(double.calls("Ping"), 0);
}

#[tokio::test]
async fn server_of_another_ca_is_refused() {
    let double = Double::start().await.expect("double");
    let creds =
        Credentials::identity_file(&double.file(files::IDENTITY_WRONG_CA)).expect("identity");
    let err = AuthClient::connect(&double.addr(), &creds)
        .await
        .expect_err("wrong CA");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let text = err.to_string();
    assert!(text.contains("not signed by the identity's CA"), "{text}");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let double = Double::start().await.expect("double");
    let creds = Credentials::identity_file(&double.identity_file()).expect("identity");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let opts = ConnectOptions {
        dial_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    let err = AuthClient::connect_with(&addr, &creds, &opts)
        .await
        .expect_err("nothing there");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

#[tokio::test]
async fn every_key_format_and_the_tls_files_connect() {
    let double = Double::start().await.expect("double");
    for (name, format) in [
        (files::IDENTITY, KeyFormat::Pkcs8),
        (files::IDENTITY_SEC1, KeyFormat::Sec1),
        (files::IDENTITY_PKCS1, KeyFormat::Pkcs1),
    ] {
        let creds = Credentials::identity_file(&double.file(name)).expect("identity");
        assert_eq!(creds.key_format, format, "{name}");
        assert!(creds.ssh_cert.is_some(), "{name}");
        let client = AuthClient::connect(&double.addr(), &creds)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        client
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let source = CredentialsSource::Files {
        cert: double.file(files::CERT),
        key: double.file(files::KEY),
        ca: double.file(files::CA),
    };
    let creds = Credentials::load(&source).expect("files");
    let creds = creds.reload().expect("reload");
    let client = AuthClient::connect(&double.addr(), &creds)
        .await
        .expect("connect");
    client.ping().await.expect("ping");
    assert_eq!(double.calls("Ping"), 4);
}
