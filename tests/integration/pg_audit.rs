//! The database audit log (`--audit postgres://…`) against a real PostgreSQL 15
//! (`util::postgres`): Teleport's schema both ways (rows Teleport writes are found, with
//! their page keys; rows tapelog writes read like Teleport's), search rules, retention, a
//! retried emit stored once, 200,000 events through the API, the database killed with
//! SIGKILL mid-ingest, several logs at once, and the completer lease among replicas.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use tapelog_audit::emit::Emitter;
use tapelog_audit::{
    AuditBackend, AuditError, AuditLog, Condition, FileLog, FileLogConfig, MultiLog, Order, PgLog,
    PgLogConfig, SearchQuery, SessionQuery,
};
use tapelog_core::audit::pg::{format_uuid, session_uuid};
use tapelog_core::{AuditEvent, Timestamp};
use tokio_postgres::NoTls;

use crate::util::postgres::{self, PgServer};
use crate::util::serve::{self, ADMIN, RECORDER};

/// 2026-12-01T00:00:00Z in nanoseconds.
const T0: i128 = 1_796_083_200 * 1_000_000_000;

fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_unix_nanos(T0 + i128::from(ms) * 1_000_000)
}

fn wide() -> SearchQuery {
    SearchQuery::new(at_ms(-86_400_000), at_ms(10 * 86_400_000))
}

/// `n` logins `step_ms` apart from `start_ms`, each with a fresh uid; user `who-<i>`.
fn logins(n: usize, start_ms: i64, step_ms: i64, who: &str) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let t = at_ms(start_ms + i as i64 * step_ms).to_rfc3339();
            AuditEvent::from_json(&format!(
                r#"{{"event":"user.login","code":"T1000I","uid":"{}","time":"{t}","user":"{who}-{i}","success":true}}"#,
                serve::uuid()
            ))
            .unwrap()
        })
        .collect()
}

async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn open(url: &str) -> PgLog {
    PgLog::open(url, PgLogConfig::default()).await.unwrap()
}

/// Every page of `q`, following the keys.
async fn all_pages(log: &impl AuditLog, mut q: SearchQuery) -> Vec<String> {
    let mut uids = Vec::new();
    for _ in 0..10_000 {
        let page = log.search_events(q.clone()).await.unwrap();
        uids.extend(page.fields().map(|f| f.get_id().to_string()));
        if page.next_key.is_empty() {
            return uids;
        }
        q.start_key = page.next_key;
    }
    panic!("more than 10,000 pages");
}

/// Teleport's page key for a row: `u64` LE of its time in µs, then its event id.
fn teleport_key(micros: i64, id: &uuid::Uuid) -> String {
    let mut raw = (micros as u64).to_le_bytes().to_vec();
    raw.extend_from_slice(id.as_bytes());
    base64::engine::general_purpose::URL_SAFE.encode(raw)
}

#[tokio::test]
async fn rows_teleport_writes_are_found_and_their_keys_work_both_ways() {
    let url = postgres::shared().create_database();
    let log = open(&url).await;
    let db = sql(&url).await;
    // Five logins and an app session end, inserted as Teleport's pgevents does: a random
    // event id, the derived session id, the JSON, creation_time by default.
    let app_sid = "ab".repeat(32);
    let mut ids = Vec::new();
    for i in 0..6i64 {
        let time = at_ms(1000 * i);
        let (kind, sid, json) = if i == 5 {
            (
                "session.end",
                app_sid.as_str(),
                format!(
                    r#"{{"event":"session.end","code":"T2004I","uid":"{}","time":"{}","sid":"{app_sid}","user":"app-user"}}"#,
                    serve::uuid(),
                    time.to_rfc3339()
                ),
            )
        } else {
            (
                "user.login",
                "",
                format!(
                    r#"{{"event":"user.login","code":"T1000I","uid":"tp-{i}","time":"{}","user":"tp{i}"}}"#,
                    time.to_rfc3339()
                ),
            )
        };
        let id = uuid::Uuid::new_v4();
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(time.unix_nanos()).unwrap();
        let session = uuid::Uuid::from_bytes(session_uuid(sid));
        db.execute(
            "INSERT INTO events (event_time, event_id, event_type, session_id, event_data) \
             VALUES ($1, $2, $3, $4, $5::text::json) ON CONFLICT DO NOTHING",
            &[&t, &id, &kind, &session, &json],
        )
        .await
        .unwrap();
        ids.push((time.unix_nanos() / 1000, id));
    }
    // Pages of two: every row once, in time order; the key is Teleport's for the last row.
    let mut q = wide();
    q.limit = 2;
    let first = log.search_events(q.clone()).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.next_key, teleport_key(ids[1].0 as i64, &ids[1].1));
    let everything = all_pages(&log, q.clone()).await;
    assert_eq!(everything.len(), 6, "{everything:?}");
    assert_eq!(&everything[..2], ["tp-0", "tp-1"]);
    // A key made the way Teleport makes it continues after its row.
    q.start_key = teleport_key(ids[2].0 as i64, &ids[2].1);
    let after = log.search_events(q.clone()).await.unwrap();
    assert_eq!(
        after.fields().map(|f| f.get_id()).collect::<Vec<_>>(),
        ["tp-3", "tp-4"]
    );
    // Descending from the same key goes the other way.
    q.order = Order::Descending;
    let before = log.search_events(q).await.unwrap();
    assert_eq!(
        before.fields().map(|f| f.get_id()).collect::<Vec<_>>(),
        ["tp-1", "tp-0"]
    );
    // The app session (a 64-hex id) is found by its id, as upstream derives the column.
    let mut sq = SessionQuery::new(at_ms(-1000), at_ms(100_000));
    sq.session_id = app_sid.clone();
    let sessions = log.search_session_events(sq).await.unwrap();
    assert_eq!(sessions.events.len(), 1);
    assert_eq!(sessions.events[0].fields.get_string("user"), "app-user");
    // A malformed key is refused, naming it.
    let mut bad = wide();
    bad.start_key = "AAAA".into();
    let e = log.search_events(bad).await.unwrap_err();
    assert!(e.to_string().contains("malformed pagination key"), "{e}");
}

#[tokio::test]
async fn rows_tapelog_writes_read_like_teleports_and_a_retry_stores_nothing_twice() {
    let url = postgres::shared().create_database();
    let log = open(&url).await;
    let db = sql(&url).await;
    let uuid_sid = serve::uuid();
    let app_sid = "cd".repeat(32);
    let mut events = logins(3, 0, 10, "w");
    for (i, sid) in [uuid_sid.as_str(), app_sid.as_str()].iter().enumerate() {
        events.push(
            AuditEvent::from_json(&format!(
                r#"{{"event":"session.start","code":"T2000I","uid":"{}","time":"{}","sid":"{sid}","user":"s{i}","server_id":"node"}}"#,
                serve::uuid(),
                at_ms(100 + i as i64).to_rfc3339()
            ))
            .unwrap(),
        );
    }
    log.emit_batch(events.clone()).await.unwrap();
    // The same batch again (a retry after a lost answer), and one event alone: no new row.
    log.emit_batch(events.clone()).await.unwrap();
    log.emit(events[0].clone()).await.unwrap();
    let rows = db
        .query(
            "SELECT event_id::text, event_type, session_id::text, event_data::text, \
             (extract(epoch FROM event_time) * 1000000)::bigint, creation_time IS NOT NULL \
             FROM events ORDER BY event_time, event_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), events.len());
    for (row, e) in rows.iter().zip(&events) {
        assert_eq!(row.get::<_, String>(0), e.id(), "event_id is the uid");
        assert_eq!(row.get::<_, String>(1), e.event_type());
        let want_sid = format_uuid(&session_uuid(e.session_id()));
        assert_eq!(row.get::<_, String>(2), want_sid);
        let stored: serde_json::Value = serde_json::from_str(&row.get::<_, String>(3)).unwrap();
        let want: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(stored, want, "event_data is Teleport's JSON");
        assert_eq!(row.get::<_, i64>(4), (e.time().unix_nanos() / 1000) as i64);
        assert!(row.get::<_, bool>(5));
    }
    // The session ids: a UUID kept, a 64-hex one derived, none the zero UUID.
    assert_eq!(rows[3].get::<_, String>(2), uuid_sid);
    assert_ne!(rows[4].get::<_, String>(2), format_uuid(&[0; 16]));
    assert_eq!(
        rows[0].get::<_, String>(2),
        "00000000-0000-0000-0000-000000000000"
    );
    // The schema is Teleport's: columns and types, indexes, version 1.
    let cols = db
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
             WHERE table_name = 'events' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let cols: Vec<(String, String, String)> = cols
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want = [
        ("event_time", "timestamp with time zone"),
        ("event_id", "uuid"),
        ("event_type", "text"),
        ("session_id", "uuid"),
        ("event_data", "json"),
        ("creation_time", "timestamp with time zone"),
    ];
    assert_eq!(cols.len(), want.len(), "{cols:?}");
    for ((name, ty, nullable), (wn, wt)) in cols.iter().zip(want) {
        assert_eq!(
            (name.as_str(), ty.as_str(), nullable.as_str()),
            (wn, wt, "NO")
        );
    }
    let indexes: HashSet<String> = db
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'events'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in [
        "events_pkey",
        "events_search_session_events_idx",
        "events_creation_time_idx",
    ] {
        assert!(indexes.contains(name), "{name} missing from {indexes:?}");
    }
    let version: i32 = db
        .query_one("SELECT max(version) FROM audit_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 1);
}

#[tokio::test]
async fn a_database_teleport_created_is_accepted_and_a_newer_schema_refused() {
    let url = postgres::shared().create_database();
    let db = sql(&url).await;
    // Teleport's objects, made by hand before tapelog ever connects.
    db.batch_execute(
        "CREATE TABLE audit_version (version integer PRIMARY KEY CHECK (version > 0), created timestamptz NOT NULL DEFAULT now());
         CREATE TABLE events (event_time timestamptz NOT NULL, event_id uuid NOT NULL, event_type text NOT NULL,
           session_id uuid NOT NULL, event_data json NOT NULL, creation_time timestamptz NOT NULL DEFAULT now(),
           PRIMARY KEY (event_time, event_id));
         CREATE INDEX events_search_session_events_idx ON events (session_id, event_time, event_id)
           WHERE session_id != '00000000-0000-0000-0000-000000000000';
         CREATE INDEX events_creation_time_idx ON events USING brin (creation_time);
         INSERT INTO audit_version (version) VALUES (1);
         INSERT INTO events (event_time, event_id, event_type, session_id, event_data) VALUES
           ('2026-12-01T00:00:01Z', gen_random_uuid(), 'user.login', '00000000-0000-0000-0000-000000000000',
            '{\"event\":\"user.login\",\"uid\":\"pre\",\"time\":\"2026-12-01T00:00:01Z\",\"code\":\"T1000I\"}');",
    )
    .await
    .unwrap();
    let log = open(&url).await;
    assert_eq!(all_pages(&log, wide()).await, ["pre"]);
    log.emit_batch(logins(2, 5000, 1, "x")).await.unwrap();
    assert_eq!(all_pages(&log, wide()).await.len(), 3);
    // A schema from a newer version is not touched.
    db.batch_execute("INSERT INTO audit_version (version) VALUES (2)")
        .await
        .unwrap();
    let e = PgLog::open(&url, PgLogConfig::default()).await.unwrap_err();
    assert!(
        e.to_string().contains("unsupported schema version 2"),
        "{e}"
    );
}

#[tokio::test]
async fn search_rules_match_upstream() {
    let url = postgres::shared().create_database();
    let log = open(&url).await;
    log.emit_batch(logins(600, 0, 1, "many")).await.unwrap();
    // limit 0 is 500; over 10,000 refused.
    let page = log.search_events(wide()).await.unwrap();
    assert_eq!(page.events.len(), 500);
    assert!(!page.next_key.is_empty());
    let mut q = wide();
    q.limit = 10_001;
    assert!(matches!(
        log.search_events(q).await.unwrap_err(),
        AuditError::Query(_)
    ));
    // A page that comes out exactly full at the end still has a key; the next is empty.
    let mut q = wide();
    q.limit = 300;
    let p1 = log.search_events(q.clone()).await.unwrap();
    q.start_key = p1.next_key;
    let p2 = log.search_events(q.clone()).await.unwrap();
    assert_eq!(p2.events.len(), 300);
    assert!(!p2.next_key.is_empty());
    q.start_key = p2.next_key;
    let p3 = log.search_events(q).await.unwrap();
    assert!(p3.events.is_empty() && p3.next_key.is_empty());
    // The time range is inclusive at both ends.
    let mut q = SearchQuery::new(at_ms(10), at_ms(20));
    q.limit = 100;
    assert_eq!(log.search_events(q).await.unwrap().events.len(), 11);
    // Types filter.
    let mut q = wide();
    q.event_types = vec!["session.end".into()];
    assert!(log.search_events(q).await.unwrap().events.is_empty());
    // The 1 MiB cap: 40 events of 40 KB stop a page well before its limit.
    let big: Vec<AuditEvent> = (0..40)
        .map(|i| {
            AuditEvent::from_json(&format!(
                r#"{{"event":"user.login","code":"T1000I","uid":"{}","time":"{}","user":"{}"}}"#,
                serve::uuid(),
                at_ms(86_400_000 + i).to_rfc3339(),
                "x".repeat(40_000)
            ))
            .unwrap()
        })
        .collect();
    log.emit_batch(big).await.unwrap();
    let mut q = SearchQuery::new(at_ms(86_400_000), at_ms(86_500_000));
    q.limit = 1000;
    let capped = log.search_events(q.clone()).await.unwrap();
    let bytes: usize = capped.events.iter().map(|e| e.json.len()).sum();
    assert!(
        capped.events.len() < 40 && bytes < 1 << 20,
        "{}",
        capped.events.len()
    );
    assert!(!capped.next_key.is_empty());
    assert_eq!(all_pages(&log, q).await.len(), 40);
    // Session search: the condition filters rows without moving the key past the page.
    let ends: Vec<AuditEvent> = (0..6)
        .map(|i| {
            AuditEvent::from_json(&format!(
                r#"{{"event":"session.end","code":"T2004I","uid":"{}","time":"{}","sid":"{}","user":"{}"}}"#,
                serve::uuid(),
                at_ms(2 * 86_400_000 + i).to_rfc3339(),
                serve::uuid(),
                if i % 2 == 0 { "alice" } else { "bob" }
            ))
            .unwrap()
        })
        .collect();
    log.emit_batch(ends).await.unwrap();
    let mut sq = SessionQuery::new(at_ms(0), at_ms(3 * 86_400_000));
    sq.condition = Some(Condition::equals("user", "alice"));
    let alice = log.search_session_events(sq).await.unwrap();
    assert_eq!(alice.events.len(), 3);
    assert!(alice.fields().all(|f| f.get_string("user") == "alice"));
}

#[tokio::test]
async fn retention_deletes_rows_older_than_the_period() {
    let url = postgres::shared().create_database();
    let log = PgLog::open(
        &format!("{url}#retention_period=1h&disable_cleanup=true"),
        PgLogConfig::default(),
    )
    .await
    .unwrap();
    let events = logins(3, 0, 1, "r");
    log.emit_batch(events.clone()).await.unwrap();
    let db = sql(&url).await;
    db.execute(
        "UPDATE events SET creation_time = now() - interval '2 hours' WHERE event_id = $1::text::uuid",
        &[&events[1].id()],
    )
    .await
    .unwrap();
    assert_eq!(log.delete_expired().await.unwrap(), 1);
    let left = all_pages(&log, wide()).await;
    assert_eq!(left, [events[0].id(), events[2].id()]);
}

/// POSTs `events` as one JSON array; returns the status and the `Retry-After` header.
async fn post(base: &str, events: &[AuditEvent]) -> (u16, Option<String>, String) {
    let body = format!(
        "[{}]",
        events
            .iter()
            .map(|e| e.to_json())
            .collect::<Vec<_>>()
            .join(",")
    );
    match serve::http()
        .post(format!("{base}/v1/events"))
        .bearer_auth(RECORDER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, None, e.to_string()),
    }
}

/// One page of an API listing (`GET url?query` as the admin): its events' uids and its
/// `next_key`.
async fn api_page(url: &str, query: &[(&str, String)]) -> (Vec<String>, String) {
    let r: serde_json::Value = serve::http()
        .get(url)
        .bearer_auth(ADMIN)
        .query(query)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let uids = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uid"].as_str().unwrap().to_string())
        .collect();
    (uids, r["next_key"].as_str().unwrap_or_default().to_string())
}

/// Every event of the API's search, page by page (10,000 a page).
async fn api_uids(base: &str) -> Vec<String> {
    let mut uids = Vec::new();
    let mut key = String::new();
    for _ in 0..1000 {
        let (page, next) = api_page(
            &format!("{base}/v1/events"),
            &[
                ("from", at_ms(-86_400_000).to_rfc3339()),
                ("to", at_ms(10 * 86_400_000).to_rfc3339()),
                ("limit", "10000".into()),
                ("start_key", key.clone()),
            ],
        )
        .await;
        uids.extend(page);
        key = next;
        if key.is_empty() {
            return uids;
        }
    }
    panic!("more than 1000 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_events_through_the_api_and_every_page_back() {
    let url = postgres::shared().create_database();
    let dir = tempfile::tempdir().unwrap();
    let mut config = serve::config(dir.path());
    config.audit = vec![url.clone()];
    let server = serve::start(config).await;
    let base = server.url();
    let mut sent = HashSet::new();
    for batch in 0..200 {
        let events = logins(1000, batch * 1000, 1, "bulk");
        let (status, _, body) = post(&base, &events).await;
        assert_eq!(status, 200, "{body}");
        sent.extend(events.iter().map(|e| e.id().to_string()));
    }
    let got = api_uids(&base).await;
    assert_eq!(got.len(), 200_000);
    assert_eq!(got.iter().cloned().collect::<HashSet<_>>(), sent);
    // In time order: user bulk-0 of batch 0 first.
    let log = open(&url).await;
    let first = log.search_events(wide()).await.unwrap();
    assert_eq!(first.events[0].fields.get_string("user"), "bulk-0");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_killed_mid_ingest_loses_nothing_acknowledged() {
    let pg = PgServer::start_private();
    let url = pg.create_database();
    let dir = tempfile::tempdir().unwrap();
    let mut config = serve::config(dir.path());
    config.audit = vec![url.clone()];
    let server = serve::start(config).await;
    let base = server.url();
    let health = |base: String| async move {
        serve::http()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(health(base.clone()).await, 200);
    // A recording stream, open across the outage: it does not touch the audit database.
    let http = serve::http();
    let sid = serve::uuid();
    let session = serve::session(&sid, 40);
    let (before, during) = session.split_at(20);
    let stream = crate::serve::create_stream(&http, &base, RECORDER, &sid).await;
    crate::serve::send_records(&http, &base, RECORDER, &stream.upload_id, before).await;
    let mut acked: Vec<String> = Vec::new();
    let mut unavailable = 0;
    let mut killed = false;
    let mut restarted = false;
    let mut acked_after_restart = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut batch = 0i64;
    while acked_after_restart < 10 {
        assert!(Instant::now() < deadline, "ingest did not recover");
        let events = logins(100, batch * 100, 1, "k");
        batch += 1;
        let (status, retry, body) = post(&base, &events).await;
        match status {
            200 => {
                acked.extend(events.iter().map(|e| e.id().to_string()));
                if restarted {
                    acked_after_restart += 1;
                }
            }
            503 => {
                assert!(killed, "503 before the database went: {body}");
                assert_eq!(retry.as_deref(), Some("2"));
                assert!(body.contains("unavailable"), "{body}");
                unavailable += 1;
            }
            other => panic!("status {other}: {body}"),
        }
        if !killed && acked.len() >= 2000 {
            pg.kill9();
            killed = true;
        }
        if killed && !restarted && unavailable >= 2 {
            assert_eq!(health(base.clone()).await, 503);
            let search = http
                .get(format!("{base}/v1/events"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(search.status().as_u16(), 503);
            let text = search.text().await.unwrap();
            assert!(
                text.contains(&format!(":{}", pg.port())),
                "names the database: {text}"
            );
            crate::serve::send_records(&http, &base, RECORDER, &stream.upload_id, during).await;
            pg.restart();
            restarted = true;
        }
    }
    assert!(unavailable >= 2);
    assert_eq!(health(base.clone()).await, 200);
    let done =
        crate::serve::post_stream(&http, &base, RECORDER, &stream.upload_id, "complete").await;
    assert!(done.status().is_success(), "{}", done.text().await.unwrap());
    let recording =
        std::fs::read(dir.path().join("log/records").join(format!("{sid}.tar"))).unwrap();
    let read = tapelog_core::codec::read_all(&recording);
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.events, session);
    let stored: HashSet<String> = all_pages(&open(&url).await, wide())
        .await
        .into_iter()
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|u| !stored.contains(*u)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_logs_get_every_event_and_the_first_answers_searches() {
    let url = postgres::shared().create_database();
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let file_uri = format!("file://{}", files.display());
    // Files first, then the database.
    let mut config = serve::config(dir.path());
    config.audit = vec![file_uri.clone(), url.clone()];
    let server = serve::start(config).await;
    let events = logins(20, 0, 1, "multi");
    assert_eq!(post(&server.url(), &events).await.0, 200);
    let want: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
    let file_log = FileLog::open(FileLogConfig::new(&files, "test-server")).unwrap();
    assert_eq!(all_pages(&file_log, wide()).await, want);
    let db_log = open(&url).await;
    assert_eq!(all_pages(&db_log, wide()).await, want);
    // A row only the database has: not seen through a server whose first log is the files…
    db_log
        .emit_batch(logins(1, 500, 1, "db-only"))
        .await
        .unwrap();
    assert_eq!(api_uids(&server.url()).await, want);
    server.shutdown().await;
    // …seen when the database comes first.
    let mut config = serve::config(dir.path());
    config.audit = vec![url.clone(), file_uri];
    let server = serve::start(config).await;
    assert_eq!(api_uids(&server.url()).await.len(), 21);
    server.shutdown().await;
    // A write-only log is passed over by searches; a failing log does not stop the others.
    let multi = MultiLog::new(vec![
        AuditBackend::Stdout(std::sync::Arc::new(tapelog_audit::WriterLog::new(
            std::io::stdout(),
        ))),
        AuditBackend::Postgres(db_log.clone()),
    ]);
    assert_eq!(all_pages(&multi, wide()).await.len(), 21);
    let file_then_bad = MultiLog::new(vec![
        AuditBackend::File(file_log.clone()),
        AuditBackend::Postgres(db_log.clone()),
    ]);
    db_log.shut();
    let e = file_then_bad
        .emit_batch(logins(1, 900, 1, "after-shut"))
        .await
        .unwrap_err();
    assert!(!e.is_permanent(), "{e}");
    assert_eq!(all_pages(&file_log, wide()).await.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_holder_at_a_time_and_an_expired_lease_moves() {
    let url = postgres::shared().create_database();
    let (a, b) = (open(&url).await, open(&url).await);
    let ttl = Duration::from_secs(2);
    assert!(a.try_lease("job", "a", ttl).await.unwrap());
    assert!(!b.try_lease("job", "b", ttl).await.unwrap());
    assert!(a.try_lease("job", "a", ttl).await.unwrap(), "renewal");
    assert!(
        b.try_lease("other", "b", ttl).await.unwrap(),
        "leases are per name"
    );
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(
        b.try_lease("job", "b", ttl).await.unwrap(),
        "expired: taken over"
    );
    assert!(!a.try_lease("job", "a", ttl).await.unwrap());
    b.release_lease("job", "b").await.unwrap();
    assert!(
        a.try_lease("job", "a", ttl).await.unwrap(),
        "released: free"
    );
}

#[test]
fn killed_completer_leader_hands_over_and_the_upload_is_completed_once() {
    let url = postgres::shared().create_database();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replica = |id: &str| {
        let data = dir.path().join(id);
        serve::ServeProcess::start(|c| {
            c.args([
                "--listen",
                "127.0.0.1:0",
                "--server-id",
                id,
                "--audit",
                &url,
            ])
            .args(["--completer-interval", "1", "--completer-grace", "1"])
            .args(["--completer-lease", "3", "--token"])
            .arg(format!("admin:adm:{ADMIN}"))
            .arg("--storage")
            .arg(&store)
            .arg("--data-dir")
            .arg(&data);
        })
    };
    let db = rt.block_on(sql(&url));
    let holder = || -> Option<String> {
        rt.block_on(db.query_opt(
            "SELECT holder FROM tapelog_leases WHERE name = 'upload-completer' AND expires > now()",
            &[],
        ))
        .ok()
        .flatten()
        .map(|r| r.get(0))
    };
    let a = replica("replica-a");
    assert!(
        crate::util::wait_until(Duration::from_secs(30), || holder()
            .is_some_and(|h| h.starts_with("replica-a/"))),
        "replica a never took the lease"
    );
    let b = replica("replica-b");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        holder().is_some_and(|h| h.starts_with("replica-a/")),
        "a keeps it while alive"
    );
    a.kill();
    // An upload abandoned after the leader died: only b can complete it.
    let sid = serve::uuid();
    let local = tapelog_store::StoreUploader::local(&store).unwrap();
    let events = crate::complete::session(&sid, 20, true);
    let (_, expect) = rt.block_on(crate::complete::crashed_writer(&local, &sid, &events, 8));
    let recording = store.join(format!("{sid}.tar"));
    assert!(
        crate::util::wait_until(Duration::from_secs(60), || recording.exists()),
        "replica b did not complete the upload"
    );
    assert!(holder().is_some_and(|h| h.starts_with("replica-b/")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read(&recording).unwrap(), expect);
    let uploads: i64 = rt
        .block_on(db.query_one(
            "SELECT count(*) FROM events WHERE event_type = 'session.upload' AND event_data::text LIKE $1",
            &[&format!("%{sid}%")],
        ))
        .unwrap()
        .get(0);
    assert_eq!(uploads, 1, "the upload was completed once");
    drop(b);
}

fn uids(page: &tapelog_audit::FeedPage) -> Vec<String> {
    page.events
        .iter()
        .map(|e| e.fields.get_id().to_string())
        .collect()
}

#[tokio::test]
async fn the_feed_reads_in_arrival_order_and_catches_late_events() {
    let url = postgres::shared().create_database();
    let config = PgLogConfig {
        feed_lag: Duration::ZERO,
        ..PgLogConfig::default()
    };
    let log = PgLog::open(&url, config.clone()).await.unwrap();
    let early = logins(30, 10_000, 1, "early");
    log.emit_batch(early.clone()).await.unwrap();
    let mut key = String::new();
    let mut got = Vec::new();
    for _ in 0..100 {
        let page = log.feed(&key, 7).await.unwrap();
        if page.events.is_empty() {
            assert_eq!(page.next_key, key, "nothing new: the same key");
            break;
        }
        assert!(page.events.len() <= 7);
        got.extend(uids(&page));
        key = page.next_key;
    }
    let want: Vec<String> = early.iter().map(|e| e.id().to_string()).collect();
    assert_eq!(got, want);
    assert!(key.starts_with("p1:"), "{key}");
    // An event with a time before all of them, stored now: the next read has it (a search by
    // time would have passed it).
    let late = logins(1, 0, 1, "late");
    log.emit_batch(late.clone()).await.unwrap();
    let page = log.feed(&key, 100).await.unwrap();
    assert_eq!(uids(&page), [late[0].id()]);
    // Rows younger than the lag wait.
    let lagging = PgLog::open(
        &url,
        PgLogConfig {
            feed_lag: Duration::from_secs(3600),
            ..config
        },
    )
    .await
    .unwrap();
    assert!(lagging.feed("", 100).await.unwrap().events.is_empty());
    // A file log's key is refused, naming it.
    let e = log.feed("f1:AAAA", 10).await.unwrap_err();
    assert!(e.to_string().contains("f1:AAAA"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_a_database_serves_the_feed_that_forward_reads() {
    let url = postgres::shared().create_database();
    let dir = tempfile::tempdir().unwrap();
    let mut config = serve::config(dir.path());
    config.audit = vec![url];
    let server = serve::start(config).await;
    let events = logins(5, 0, 1, "fed");
    assert_eq!(post(&server.url(), &events).await.0, 200);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut key = String::new();
    while got.len() < 5 {
        assert!(Instant::now() < deadline, "the feed gave {got:?}");
        let url = format!("{}/v1/events/feed", server.url());
        let (page, next) = api_page(&url, &[("after", key.clone())]).await;
        got.extend(page);
        key = next;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let want: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
    assert_eq!(got, want);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_follows_libpq_sslmodes() {
    use tapelog_api::tls::certs::CertAuthority;
    let ca = CertAuthority::new("pg test ca").unwrap();
    let cert = ca.server(&["127.0.0.1".to_string()]).unwrap();
    let pg = PgServer::start_private_tls(&cert.cert, &cert.key);
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem().cert).unwrap();
    let other_file = dir.path().join("other.pem");
    std::fs::write(
        &other_file,
        &CertAuthority::new("other").unwrap().pem().cert,
    )
    .unwrap();
    let with = |opts: &str| format!("{url}?{opts}");
    // verify-full against the right CA: stored and read over TLS.
    let root = format!("sslrootcert={}", ca_file.display());
    let log = PgLog::open(
        &with(&format!("sslmode=verify-full&{root}")),
        PgLogConfig::default(),
    )
    .await
    .unwrap();
    log.emit_batch(logins(3, 0, 1, "tls")).await.unwrap();
    assert_eq!(all_pages(&log, wide()).await.len(), 3);
    let encrypted = pg.psql(
        &db,
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE ssl AND application_name = 'tapelog'",
    );
    assert_ne!(encrypted.trim(), "0", "tapelog's connections use TLS");
    // `require` without a root certificate: encrypted, not verified.
    assert!(
        PgLog::open(&with("sslmode=require"), PgLogConfig::default())
            .await
            .is_ok()
    );
    // Another CA: refused, saying why.
    let e = PgLog::open(
        &with(&format!(
            "sslmode=verify-ca&sslrootcert={}",
            other_file.display()
        )),
        PgLogConfig::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    // The name connected to (`localhost`, reaching 127.0.0.1) is not the certificate's:
    // verify-full refuses, verify-ca (the chain only) accepts.
    let by_name = url.replacen("127.0.0.1", "localhost", 1);
    let named = |mode: &str| format!("{by_name}?hostaddr=127.0.0.1&sslmode={mode}&{root}");
    let e = PgLog::open(&named("verify-full"), PgLogConfig::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("certificate") || e.contains("NotValidForName"),
        "{e}"
    );
    assert!(
        PgLog::open(&named("verify-ca"), PgLogConfig::default())
            .await
            .is_ok()
    );
    // No TLS to a server that takes only TLS: refused by the server.
    assert!(
        PgLog::open(&with("sslmode=disable"), PgLogConfig::default())
            .await
            .is_err()
    );
    // verify-ca without a root certificate: a configuration error, before connecting.
    let e = PgLog::open(&with("sslmode=verify-ca"), PgLogConfig::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs sslrootcert"), "{e}");
}
