//! Replicas: several `tapelog serve` processes over one shared storage directory (each with
//! its own data directory, the same token), and clients given all of them.
//!
//! - A session recorded through replica A (by the library's session writer, and by `tapelog
//!   record --server A --server B`) while A is killed with SIGKILL, or stopped with SIGTERM
//!   (it answers 503 while it closes its stream): the writer resumes the same upload through
//!   B, which opens it from the shared storage, and the completed recording in that storage
//!   holds exactly what was written.
//! - `tapelog search` and `tapelog emit` with a dead server, or one answering 503, before a
//!   live one succeed; with every server dead the error names each URL.
//! - A server that takes a request and closes the connection without an answer: an
//!   idempotent call goes on to the next server, an emit is not sent again anywhere (the
//!   next call goes to the next server).
//!
//! Everything on 127.0.0.1; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tapelog_audit::{Order, SearchQuery};
use tapelog_client::{
    Client, ClientConfig, ClientError, Credentials, RemoteEmitter, RemoteStreamConfig,
    RemoteStreamer, Token,
};
use tapelog_core::codec::read_all;
use tapelog_core::export::{TextFormat, export_event};
use tapelog_core::session::{PreparerConfig, RecoveryPolicy};
use tapelog_core::{AuditEvent, Timestamp};
use tapelog_session::{SessionWriter, SessionWriterConfig};

use crate::util::TestCommand;
use crate::util::serve::ServeProcess;

/// The one token every replica knows (an admin: records, emits and reads).
const TOKEN: &str = "failover-admin-token-0123456789";

/// Two replicas' shared storage and database audit log, and their own data directories.
struct Cluster {
    dir: tempfile::TempDir,
    /// The audit database every replica writes (`--audit`).
    audit: String,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            audit: crate::util::postgres::shared().create_database(),
        }
    }

    /// The events of session `sid` in the shared audit database, by type.
    fn audit_types(&self, sid: &str) -> Vec<String> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let log = tapelog_audit::PgLog::open(&self.audit, Default::default())
                .await
                .unwrap();
            let mut q = SearchQuery::new(
                Timestamp::from_unix_millis(0),
                Timestamp::from_unix_millis(32_503_680_000_000), // 3000-01-01
            );
            q.limit = 10_000;
            let page = tapelog_audit::AuditLog::search_events(&log, q)
                .await
                .unwrap();
            page.fields()
                .filter(|f| f.get_session_id() == sid)
                .map(|f| f.get_type().to_string())
                .collect()
        })
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("shared-records")
    }

    /// `tapelog serve` replica `name`: its own data directory, the shared storage, small
    /// parts (so that parts reach the storage during a session).
    fn replica(&self, name: &str) -> ServeProcess {
        let data = self.dir.path().join(name);
        let storage = self.storage();
        let audit = self.audit.clone();
        ServeProcess::start(move |c| {
            c.arg("--data-dir")
                .arg(&data)
                .args(["--audit", &audit])
                .arg("--storage")
                .arg(&storage)
                .args(["--listen", "127.0.0.1:0", "--completer-interval", "0"])
                .args(["--part-size", "70000", "--server-id", "replica"])
                .arg("--token")
                .arg(format!("admin:ops:{TOKEN}"))
                .stderr(Stdio::inherit());
        })
    }

    /// The completed recording of `sid` in the shared storage.
    fn recording(&self, sid: &str) -> Vec<u8> {
        let path = self.storage().join(format!("{sid}.tar"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// A URL where nothing listens (a port just bound and let go).
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn client(servers: &[&str]) -> Client {
    Client::new(ClientConfig::replicas(
        servers,
        Credentials::token(Token::new(TOKEN).unwrap()),
    ))
    .unwrap()
}

/// The terminal output of a recording's events.
fn output_of(events: &[AuditEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        export_event(TextFormat::Terminal, e, &mut out);
    }
    out
}

/// Decodes a recording and checks it is whole: no error, no duplicate, no hole.
fn decode_whole(bytes: &[u8]) -> Vec<AuditEvent> {
    let got = read_all(bytes);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.skipped, 0, "duplicates in the recording");
    assert_eq!(got.stats.out_of_order, 0, "holes in the recording");
    let indexes: Vec<i64> = got.events.iter().map(AuditEvent::index).collect();
    assert_eq!(indexes, (0..got.events.len() as i64).collect::<Vec<_>>());
    got.events
}

/// Output that gzip can't shrink much (so that parts fill): line `i` of a session.
fn noisy_line(i: u32) -> String {
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut s = format!("{i:05} ");
    for _ in 0..24 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{:04x}", x & 0xffff));
    }
    s.push_str("\r\n");
    s
}

/// How replica A is stopped under the writer.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL: gone at once, with what its stream held in memory.
    Kill,
    /// SIGTERM: answers 503 while it closes its stream (uploading what it holds), then exits.
    Terminate,
}

/// A session written by the library's session writer through replicas A and B (A first);
/// A is stopped (`stop`) once it has stored parts in the shared storage, and the writer
/// goes on writing meanwhile. The same upload is resumed through B, and the recording in
/// the shared storage holds exactly the bytes written.
fn writer_across_replicas(stop: Stop) {
    let cluster = Cluster::new();
    let a = cluster.replica("a");
    let b = cluster.replica("b");
    let (url_a, url_b) = (a.url.clone(), b.url.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = client(&[&url_a, &url_b]);
    let streamer = Arc::new(RemoteStreamer::new(
        c.clone(),
        RemoteStreamConfig::default(),
    ));
    let sid = "2f6c1a9e-8d4b-4c3a-9e21-5b7d0c4f8a13";
    let mut config = SessionWriterConfig::new(
        PreparerConfig {
            server_id: "node-1".into(),
            ..PreparerConfig::new(sid, "tapelog.example")
        },
        streamer.clone(),
    );
    config.recovery = RecoveryPolicy {
        attempts: 30,
        step_ms: 50,
        max_ms: 1000,
    };
    let writer = rt.block_on(SessionWriter::new(config)).unwrap();
    let mut want = Vec::new();
    let write = |range: std::ops::RangeInclusive<u32>, want: &mut Vec<u8>| {
        rt.block_on(async {
            for i in range {
                let line = noisy_line(i);
                writer.write(line.as_bytes()).await.unwrap();
                want.extend_from_slice(line.as_bytes());
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    };

    // Through A until A has put parts into the shared storage.
    write(1..=2000, &mut want);
    let durable = |w: &SessionWriter| w.status().stream.map_or(-1, |s| s.last_event_index);
    assert!(
        crate::util::wait_until(Duration::from_secs(30), || durable(&writer) >= 0),
        "A stored no part: {:?}",
        writer.status().stream
    );
    let upload = writer.status().stream.unwrap().upload_id;
    assert_eq!(c.server(), url_a, "A answered so far");
    // A stops while the session goes on: its stream's next batch fails, the writer resumes
    // the upload through B and replays what no status confirmed.
    let stopping = std::thread::spawn(move || match stop {
        Stop::Kill => a.kill(),
        Stop::Terminate => {
            a.terminate();
        }
    });
    write(2001..=3000, &mut want);
    stopping.join().unwrap();
    let stats = rt.block_on(writer.complete()).unwrap();
    assert_eq!(stats.lost, 0, "{stop:?}: {stats:?}");
    assert!(stats.recoveries >= 1, "{stop:?}: {stats:?}");
    assert_eq!(streamer.refused_records(), 0);
    assert_eq!(c.server(), url_b, "calls stick to B, which answered");
    let last = writer.status().stream.unwrap();
    assert_eq!(last.upload_id, upload, "the same upload, resumed through B");

    // The recording in the shared storage: every print, exactly the bytes written.
    let events = decode_whole(&cluster.recording(sid));
    assert!(events.iter().any(|e| e.event_type() == "print"));
    assert_eq!(
        String::from_utf8_lossy(&output_of(&events)),
        String::from_utf8_lossy(&want),
        "{stop:?}"
    );
    // B serves it too, through a client whose first server is the stopped A.
    let downloaded = rt.block_on(async {
        use futures::StreamExt;
        let c = client(&[&url_a, &url_b]);
        let mut d = c.download_recording(sid).await.unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = d.bytes.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        bytes
    });
    assert_eq!(downloaded, cluster.recording(sid));
    drop(b);
}

#[test]
fn session_writer_resumes_the_upload_through_the_next_replica() {
    writer_across_replicas(Stop::Kill);
}

#[test]
fn session_writer_waits_for_a_replica_shutting_down_then_resumes_through_the_next() {
    writer_across_replicas(Stop::Terminate);
}

/// What bash's `echo line $i` for 1..=n shows through a PTY.
fn lines(n: usize) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("line {i}\r\n").into_bytes())
        .collect()
}

/// `tapelog ARGS` with the token in the environment, to its end.
fn tapelog(args: &[&str]) -> Output {
    let mut cmd = crate::util::tapelog(args);
    cmd.env("TAPELOG_TOKEN", TOKEN);
    cmd.output()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn record_with_two_servers_survives_the_first_being_killed() {
    let cluster = Cluster::new();
    let a = cluster.replica("a");
    let b = cluster.replica("b");
    let (url_a, url_b) = (a.url.clone(), b.url.clone());
    let sid = "7a3e9c1d-2b4f-4e6a-8c0d-1f2e3a4b5c6d";
    let n = 300;
    let script = format!("for i in $(seq 1 {n}); do echo line $i; sleep 0.01; done");
    let mut test = TestCommand::new();
    test.args(["record", "--server", &url_a, "--server", &url_b])
        .args(["--session-id", sid, "--", "bash", "-c", &script])
        .env("TAPELOG_TOKEN", TOKEN);
    test.cmd().stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut record = test.spawn();
    // record copies the session's output to its stdout as it records: that says how far the
    // session is, whatever the machine's load.
    let (progress, shown) = std::sync::mpsc::channel();
    let out = record.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = progress.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match shown.recv_timeout(left) {
            Ok(line) if line.trim_end() == "line 50" => break,
            Ok(_) => {}
            Err(e) => panic!("the session did not reach line 50 within 60 s: {e}"),
        }
    }
    assert!(
        record.try_wait().unwrap().is_none(),
        "the recording ended too soon"
    );
    a.kill();

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = record.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = record.kill();
            panic!("tapelog record did not finish within 90 s of the kill");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    record
        .stderr
        .as_mut()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "record failed: {err}");
    assert!(
        err.contains(&format!(
            "tapelog play --server {url_a} --server {url_b} {sid}"
        )),
        "the play hint names both servers: {err}"
    );

    let events = decode_whole(&cluster.recording(sid));
    assert_eq!(
        String::from_utf8_lossy(&output_of(&events)),
        String::from_utf8_lossy(&lines(n))
    );
    // `export` through the replicas, A first: the same output, from B.
    let exported = tapelog(&[
        "export", "--server", &url_a, "--server", &url_b, "--format", "text", sid,
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(exported.stdout, lines(n));
    // The session's audit events, emitted through A then B, are in the one database, once.
    let types = cluster.audit_types(sid);
    for t in ["session.start", "session.end"] {
        assert_eq!(
            types.iter().filter(|x| *x == t).count(),
            1,
            "{t} in {types:?}"
        );
    }
    drop(b);
}

/// A loopback HTTP server that never handles a request: it answers 503 (as a `tapelog
/// serve` shutting down does), or closes the connection once the request has arrived.
struct Broken {
    url: String,
    /// The request lines it got (`POST /v1/events HTTP/1.1`).
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Breakage {
    Unavailable,
    HangUp,
}

impl Broken {
    fn start(how: Breakage) -> Broken {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((conn, _)) => Broken::handle(conn, how, &requests),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Broken {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn handle(mut conn: TcpStream, how: Breakage, requests: &Mutex<Vec<String>>) {
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The head, then whatever of the body has come: nothing is handled.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 1 << 16 {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => head.extend_from_slice(&buf[..k]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        if let Some(line) = text.lines().next().filter(|l| !l.is_empty()) {
            requests.lock().unwrap().push(line.to_string());
        }
        if let Breakage::Unavailable = how {
            let body = r#"{"error":{"code":"unavailable","message":"the server is shutting down: try again when it is back"}}"#;
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes());
        }
        let _ = conn.shutdown(std::net::Shutdown::Both);
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Broken {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Teleport JSON events for `tapelog emit`, `n` of them, users `user-0`...
fn events_file(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("events.jsonl");
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            r#"{{"event":"user.login","code":"T1000I","user":"user-{i}","success":true}}"#
        ));
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The users of the `user.login` events `search --json` prints, sorted: events emitted in the
/// same millisecond get the same time, and the database orders equal times by event id (as
/// Teleport's does), not by arrival.
fn logins(o: &Output) -> Vec<String> {
    assert!(o.status.success(), "search failed: {}", stderr(o));
    let mut users: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "user.login")
        .map(|v| v["user"].as_str().unwrap().to_string())
        .collect();
    users.sort();
    users
}

#[test]
fn emit_and_search_go_past_dead_and_unavailable_servers() {
    let cluster = Cluster::new();
    let live = cluster.replica("live");
    let dead = dead_url();
    let unavailable = Broken::start(Breakage::Unavailable);
    let files = tempfile::tempdir().unwrap();
    let events = events_file(files.path(), 3);
    let events = events.to_str().unwrap();

    // emit: the dead server took nothing; the live one takes every event.
    let out = tapelog(&["emit", "--server", &dead, "--server", &live.url, events]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("accepted 3, rejected 0"),
        "{}",
        stderr(&out)
    );
    let found = tapelog(&["search", "--server", &dead, "--server", &live.url, "--json"]);
    assert_eq!(logins(&found), ["user-0", "user-1", "user-2"]);

    // A server answering 503 handled nothing: emit and search go on to the live one.
    let out = tapelog(&[
        "emit",
        "--server",
        &unavailable.url,
        "--server",
        &live.url,
        events,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        unavailable
            .requests()
            .iter()
            .any(|r| r.starts_with("POST /v1/events ")),
        "{:?}",
        unavailable.requests()
    );
    // The servers in TAPELOG_SERVER, comma-separated.
    let mut search = crate::util::tapelog(["search", "--json"]);
    search.env("TAPELOG_TOKEN", TOKEN).env(
        "TAPELOG_SERVER",
        format!("{},{dead},{}", unavailable.url, live.url),
    );
    let found = search.output();
    assert_eq!(logins(&found).len(), 6, "each event emitted twice in all");
    assert!(
        unavailable
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /v1/events?")),
        "{:?}",
        unavailable.requests()
    );
}

#[test]
fn every_server_dead_is_an_error_naming_each() {
    let (one, two) = (dead_url(), dead_url());
    let out = tapelog(&["search", "--server", &one, "--server", &two]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("none of the 2 servers answered"), "{err}");
    for url in [&one, &two] {
        assert!(
            err.contains(&format!("cannot connect to {url}/v1/events")),
            "{err}"
        );
    }

    let files = tempfile::tempdir().unwrap();
    let events = events_file(files.path(), 1);
    let out = tapelog(&[
        "emit",
        "--server",
        &one,
        "--server",
        &two,
        events.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("line 1"), "{err}");
    assert!(err.contains("none of the 2 servers answered"), "{err}");
    assert!(err.contains(&one) && err.contains(&two), "{err}");

    // One server: its own error, as without failover.
    let out = tapelog(&["search", "--server", &one]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot connect to {one}/v1/events")),
        "{err}"
    );
    assert!(!err.contains("servers answered"), "{err}");
}

fn everything() -> SearchQuery {
    SearchQuery {
        from: Timestamp::from_unix_nanos(0),
        to: Timestamp::from_unix_nanos(
            tapelog_audit::emit::system_clock().unix_nanos() + 10_000_000_000,
        ),
        event_types: vec!["user.login".into()],
        limit: 0,
        order: Order::Ascending,
        start_key: String::new(),
    }
}

fn login(user: &str) -> AuditEvent {
    AuditEvent::from_json(&format!(
        r#"{{"event":"user.login","code":"T1000I","user":"{user}","success":true}}"#
    ))
    .unwrap()
}

#[test]
fn an_answer_lost_is_retried_elsewhere_only_when_idempotent() {
    let cluster = Cluster::new();
    let live = cluster.replica("live");
    let hangup = Broken::start(Breakage::HangUp);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // An emit whose connection closed before the answer is not sent again, here or on
        // the live server: whether the first server applied it is unknown.
        let c = client(&[&hangup.url, &live.url]);
        let e = c.emit(&login("first")).await.unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::Connect { .. } | ClientError::Transport { .. }
            ),
            "{e:?}"
        );
        let posts = |b: &Broken| {
            b.requests()
                .iter()
                .filter(|r| r.starts_with("POST "))
                .count()
        };
        assert_eq!(posts(&hangup), 1, "{:?}", hangup.requests());
        assert!(
            c.search_events(&everything())
                .await
                .unwrap()
                .events
                .is_empty(),
            "the live server got no copy"
        );
        // The emit's failure passed over the broken server: calls now start at the live one.
        assert_eq!(c.server(), live.url);
        let emitter = RemoteEmitter::new(c.clone());
        tapelog_audit::emit::Emitter::emit(&emitter, login("second"))
            .await
            .unwrap();
        assert_eq!(posts(&hangup), 1, "not tried again");

        // An idempotent call on a fresh client goes past the broken server.
        let c = client(&[&hangup.url, &live.url]);
        let page = c.search_events(&everything()).await.unwrap();
        let users: Vec<String> = page
            .events
            .iter()
            .map(|v| v["user"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(users, ["second"]);
        assert!(
            hangup
                .requests()
                .iter()
                .filter(|r| r.starts_with("GET /v1/events?"))
                .count()
                >= 2,
            "sent to the broken server, then on: {:?}",
            hangup.requests()
        );
    });
}
