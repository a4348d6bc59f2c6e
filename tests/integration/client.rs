//! The client against the real server, in process on 127.0.0.1 (port 0): a round trip for
//! every endpoint; typed errors (401, 403, 404, 400, an unreachable server) whose text
//! reaches the user; the session writer recording through the server across a server
//! restart on the same port and data directory; and the real `tapelog` binary's
//! `search --server`, `sessions list --server` and `uploads list --server`.
//!
//! Kept-alive connections closed under the client, on purpose: a loopback HTTP/1.1 server
//! written here ([`KeepAlive`]) answers the first request of every connection and closes
//! (or resets) a connection when a second request comes on it, as a server that restarted
//! meanwhile does; optionally it stops listening first, as a server that is gone. Idempotent
//! requests must then be sent again on a new connection and succeed, other POSTs must not
//! be sent twice, and a server that is gone must be `ClientError::Connect`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tapelog_api::{ErrorCode, Role};
use tapelog_audit::emit::{EmitError, Emitter};
use tapelog_audit::{Order, SearchQuery, SessionQuery};
use tapelog_client::{
    Client, ClientConfig, ClientError, Credentials, RemoteEmitter, RemoteStreamConfig,
    RemoteStreamer, Token,
};
use tapelog_core::codec::read_all;
use tapelog_core::codec::writer::{RECORD_HEADER_SIZE, encode_record};
use tapelog_core::export::{TextFormat, export_event};
use tapelog_core::session::{PreparerConfig, RecoveryPolicy};
use tapelog_core::{AuditEvent, Timestamp, vectors};
use tapelog_server::{RunningServer, ServeConfig, Server, TokenSpec};
use tapelog_session::{SessionWriter, SessionWriterConfig};

const ADMIN: &str = "admin-token-0123456789abcdef";
const RECORDER: &str = "recorder-token-0123456789abcdef";
const AUDITOR: &str = "auditor-token-0123456789abcdef";
const CLUSTER: &str = "tapelog.example";

fn serve_config(dir: &Path, port: u16, tokens: bool) -> ServeConfig {
    let mut c = ServeConfig::new(dir);
    c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    c.server_id = "test-server".into();
    c.completer_interval = Duration::ZERO;
    if tokens {
        c.tokens = vec![
            TokenSpec {
                role: Role::Admin,
                name: "admin".into(),
                token: ADMIN.into(),
            },
            TokenSpec {
                role: Role::Recorder,
                name: "recorder".into(),
                token: RECORDER.into(),
            },
            TokenSpec {
                role: Role::Auditor,
                name: "auditor".into(),
                token: AUDITOR.into(),
            },
        ];
    }
    c
}

async fn start(dir: &Path, port: u16) -> RunningServer {
    // The port of a server just stopped may take a moment to be free again.
    let mut last = None;
    for _ in 0..50 {
        match Server::start(serve_config(dir, port, true)).await {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server did not start: {last:?}");
}

fn client(url: &str, token: &str) -> Client {
    Client::new(ClientConfig::new(
        url,
        Credentials::token(Token::new(token).unwrap()),
    ))
    .unwrap()
}

fn framed(events: &[AuditEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        let at = out.len();
        out.extend_from_slice(&[0; RECORD_HEADER_SIZE]);
        let len = encode_record(e, &mut out).unwrap() as u32;
        out[at..at + RECORD_HEADER_SIZE].copy_from_slice(&len.to_be_bytes());
    }
    out
}

/// The events as Teleport's JSON carries them (print data is not in the JSON).
fn as_json(events: &[AuditEvent]) -> Vec<AuditEvent> {
    events
        .iter()
        .map(|e| AuditEvent::from_json(&e.to_json()).unwrap())
        .collect()
}

fn everything() -> SearchQuery {
    SearchQuery {
        from: Timestamp::from_unix_nanos(0),
        to: tapelog_audit::emit::system_clock(),
        event_types: Vec::new(),
        limit: 0,
        order: Order::Ascending,
        start_key: String::new(),
    }
}

fn sessions() -> SessionQuery {
    SessionQuery {
        from: Timestamp::from_unix_nanos(0),
        to: tapelog_audit::emit::system_clock(),
        limit: 0,
        order: Order::Ascending,
        start_key: String::new(),
        condition: None,
        session_id: String::new(),
    }
}

async fn download(c: &Client, sid: &str) -> Vec<u8> {
    let mut d = c.download_recording(sid).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = d.bytes.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    if let Some(n) = d.length {
        assert_eq!(n, bytes.len() as u64);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_of_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0).await;
    let url = server.url();
    let admin = client(&url, ADMIN);
    let recorder = client(&url, RECORDER);
    let auditor = client(&url, AUDITOR);

    admin.healthz().await.unwrap();

    // Events: one, then a batch; the search finds them all, in pages too.
    let session = vectors::sample_session(5);
    assert_eq!(recorder.emit(&session[0]).await.unwrap(), 1);
    assert_eq!(
        RemoteEmitter::new(recorder.clone())
            .emit(session[1].clone())
            .await
            .map_err(|e| e.to_string()),
        Ok(())
    );
    let rest = &session[2..];
    assert_eq!(recorder.emit_batch(rest).await.unwrap(), rest.len() as u64);
    let page = auditor.search_events(&everything()).await.unwrap();
    assert_eq!(page.events.len(), session.len());
    assert!(page.next_key.is_empty());
    let uids: Vec<String> = page
        .events
        .iter()
        .map(|v| v["uid"].as_str().unwrap_or("").to_string())
        .collect();
    let want: Vec<String> = session.iter().map(|e| e.id().to_string()).collect();
    assert_eq!(uids, want);
    let mut q = everything();
    q.limit = 3;
    let pages: Vec<_> = auditor.event_pages(q).collect().await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p.as_ref().unwrap().events.len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), session.len());
    assert!(sizes.len() >= 3, "{sizes:?}");
    let mut q = everything();
    q.event_types = vec!["session.start".into(), "resize".into()];
    let page = auditor.search_events(&q).await.unwrap();
    assert_eq!(page.events.len(), 2);

    // Sessions: the session end event.
    let page = auditor.search_sessions(&sessions()).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0]["sid"], vectors::SESSION_ID);
    let mut q = sessions();
    q.condition = Some(tapelog_audit::Condition::equals("user", "nobody"));
    assert!(auditor.search_sessions(&q).await.unwrap().events.is_empty());

    // A stream: create, write, status, close, resume, write, complete.
    let sid = vectors::SESSION_ID;
    let created = recorder.create_stream(sid).await.unwrap();
    assert_eq!(created.session_id, sid);
    assert_eq!(created.last_event_index, -1);
    let upload = created.upload_id.clone();
    let uploads = auditor.list_uploads().await.unwrap();
    assert!(
        uploads
            .iter()
            .any(|u| u.upload_id == upload && u.session_id == sid)
    );
    let status = recorder
        .write_records(&upload, framed(&session[..4]).into())
        .await
        .unwrap();
    assert_eq!(status.upload_id, upload);
    assert_eq!(
        recorder.stream_status(&upload).await.unwrap().upload_id,
        upload
    );
    let closed = recorder.close_stream(&upload).await.unwrap();
    assert_eq!(closed.last_event_index, 3, "close stores what was sent");
    let resumed = recorder.resume_stream(&upload, sid).await.unwrap();
    assert_eq!(resumed.last_event_index, 3);
    recorder
        .write_records(&upload, framed(&session[4..]).into())
        .await
        .unwrap();
    let done = recorder.complete_stream(&upload).await.unwrap();
    assert_eq!(
        (done.session_id.as_str(), done.upload_id.as_str()),
        (sid, upload.as_str())
    );

    // The recording, streamed back, decodes to exactly what was sent.
    let bytes = download(&auditor, sid).await;
    let got = read_all(&bytes);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, session);

    // The session's events from an index, decoded as they arrive.
    let events: Vec<AuditEvent> = auditor
        .session_events(sid, 0)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(events, as_json(&session));
    let from3: Vec<i64> = auditor
        .session_events(sid, 3)
        .await
        .unwrap()
        .map(|e| e.unwrap().index())
        .collect()
        .await;
    assert_eq!(from3, (3..session.len() as i64).collect::<Vec<_>>());

    // One pass of the completer: nothing abandoned (the completed upload is gone).
    let report = admin
        .complete_uploads(Duration::from_secs(0))
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(
        auditor
            .list_uploads()
            .await
            .unwrap()
            .iter()
            .all(|u| u.upload_id != upload)
    );

    server.shutdown().await;
}

/// A recording damaged in its last part: `GET /v1/sessions/{sid}/events` gives every event
/// before the damage (none lost in the server's buffers), then the error line, and the body
/// ends cleanly; the client turns the line into `ClientError::Stopped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_of_a_damaged_recording_keep_every_event_before_the_damage() {
    use tapelog_core::codec::parallel::split;
    use tapelog_core::codec::{WriterConfig, encode_recording};
    let dir = tempfile::tempdir().unwrap();
    let sid = tapelog_core::sample::SESSION_ID;
    let clean = encode_recording(
        &tapelog_core::sample::sample_session(6000),
        WriterConfig {
            min_upload_bytes: 16 * 1024,
            ..WriterConfig::default()
        },
    )
    .unwrap();
    let parts = split(&clean);
    assert!(parts.len() > 3, "only {} parts", parts.len());
    // A flipped byte in the last part's compressed data.
    let (last_at, _, _) = parts[parts.len() - 1];
    let mut damaged = clean.clone();
    damaged[last_at as usize + 40] ^= 0x5a;
    let want = read_all(&damaged);
    let err = want.error.clone().expect("the recording is damaged");
    assert!(want.events.len() > 2000, "{} events", want.events.len());
    let records = dir.path().join("log/records");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::write(records.join(format!("{sid}.tar")), &damaged).unwrap();
    let server = start(dir.path(), 0).await;
    let auditor = client(&server.url(), AUDITOR);

    let mut stream = auditor.session_events(sid, 0).await.unwrap();
    let mut got = Vec::new();
    let mut end = None;
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = stream.next().await {
            match r {
                Ok(e) => got.push(e),
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the events did not end within 60 s");
    assert_eq!(got.len(), want.events.len(), "events before the damage");
    assert!(got == as_json(&want.events));
    match end {
        Some(ClientError::Stopped {
            line,
            code,
            message,
            ..
        }) => {
            assert_eq!(line, want.events.len() as u64 + 1);
            assert_eq!(code, ErrorCode::Internal);
            assert!(
                message.contains(&err.offset.to_string()),
                "{message} / {err}"
            );
        }
        other => panic!("wanted the server's error line, got {other:?}"),
    }

    // The raw answer: 200, complete (no transport error), the error object as its last line.
    let url = format!("{}/v1/sessions/{sid}/events", server.url());
    let body = reqwest::Client::new()
        .get(&url)
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .expect("the body ends cleanly");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), want.events.len() + 1);
    let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(last["error"]["code"], "internal");
    assert!(last.get("event").is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_errors_reach_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0).await;
    let url = server.url();
    let event = vectors::sample_session(1).remove(0);

    // No credentials: 401, with what to do.
    let anonymous = Client::new(ClientConfig::new(&url, Credentials::default())).unwrap();
    let e = anonymous.emit(&event).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert_eq!(e.code(), Some(ErrorCode::Unauthenticated));
    let text = e.to_string();
    assert!(
        text.contains("401") && text.contains("--token-file"),
        "{text}"
    );
    // An unknown token: 401, and the token is not in the message.
    let wrong = client(&url, "not-a-known-token-0123456789");
    let e = wrong.search_events(&everything()).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(!e.to_string().contains("not-a-known-token"), "{e}");

    // A wrong role: 403 both ways; the emitter calls it an I/O failure, not a bad event.
    let auditor = client(&url, AUDITOR);
    let e = auditor.emit(&event).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    assert!(e.to_string().contains("403"), "{e}");
    let recorder = client(&url, RECORDER);
    let e = recorder.search_events(&everything()).await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    match RemoteEmitter::new(auditor.clone())
        .emit(event.clone())
        .await
    {
        Err(EmitError::Io { .. }) => {}
        other => panic!("{other:?}"),
    }

    // A session that does not exist: 404 with the server's message.
    let missing = "00000000-0000-4000-8000-000000000001";
    let e = match auditor.download_recording(missing).await {
        Err(e) => e,
        Ok(_) => panic!("a recording of an unknown session"),
    };
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert!(e.to_string().contains("404"), "{e}");
    let e = recorder.resume_stream(missing, missing).await.unwrap_err();
    assert_eq!(e.status(), Some(404));

    // Ids that are not UUIDs stay one path segment and the server refuses them; `..` can't
    // be sent at all (URL normalisation would make it another endpoint).
    for bad in ["a/../../v1/events", "not-a-uuid", "%2e%2e"] {
        let e = match auditor.session_events(bad, 0).await {
            Err(e) => e,
            Ok(_) => panic!("events of session {bad:?}"),
        };
        assert_eq!(e.code(), Some(ErrorCode::InvalidId), "{bad}: {e}");
    }
    let e = match auditor.download_recording("..").await {
        Err(e) => e,
        Ok(_) => panic!("a recording of session \"..\""),
    };
    assert!(matches!(e, ClientError::InvalidId { .. }), "{e:?}");

    // A bad event: 400, and the emitter calls it permanent.
    let bad = AuditEvent::from_json(r#"{"event":"session.start","code":""}"#).unwrap();
    let e = recorder.emit(&bad).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    match RemoteEmitter::new(recorder.clone()).emit(bad).await {
        Err(e) => assert!(e.is_permanent(), "{e}"),
        Ok(()) => panic!("a bad event accepted"),
    }

    server.shutdown().await;

    // Nobody listening: says where and what to check. Both clients hold kept-alive
    // connections the shutdown closed; whether the client notices before sending or only
    // after, the answer is the same (a GET is sent again on a new connection, which is
    // refused; a POST is not sent again, and a new connection to the server is refused).
    let e = auditor.healthz().await.unwrap_err();
    let e2 = recorder.emit(&event).await.unwrap_err();
    for e in [e, e2] {
        assert!(e.is_unreachable(), "{e:?}");
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&url) && text.contains("tapelog serve"),
            "{text}"
        );
    }
}

/// How a [`KeepAlive`] server treats a request that comes on a connection that already
/// answered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnReuse {
    /// Read it, then close the connection without answering.
    Close,
    /// Read it, then reset the connection (RST).
    Reset,
}

/// One request a [`KeepAlive`] server read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// Which connection (0, 1, ... in the order they were accepted).
    conn: usize,
    /// Which request on that connection (1, 2, ...).
    nth: usize,
    /// `METHOD /path`.
    request: String,
    /// Whether it was answered (false: its connection was closed or reset).
    answered: bool,
}

/// A loopback HTTP/1.1 server with kept-alive connections that the test controls (see the
/// module documentation).
struct KeepAlive {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// Listens on 127.0.0.1 (port 0). With `gone`, the first reused connection also takes the
    /// listener down (before that connection is closed): every later connection is refused,
    /// and a request on any other connection still open is not answered either.
    async fn start(on_reuse: OnReuse, gone: bool) -> KeepAlive {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        // The connection that takes the server down asks the accept loop to drop the
        // listener and waits until it did.
        let (stop_tx, mut stop_rx) =
            tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
        let log = seen.clone();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accept = tokio::spawn(async move {
            let mut conn = 0;
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (tcp, _) = accepted.unwrap();
                        let log = log.clone();
                        let stop = gone.then(|| (stop_tx.clone(), down.clone()));
                        tokio::spawn(serve_keep_alive(tcp, conn, on_reuse, stop, log));
                        conn += 1;
                    }
                    Some(done) = stop_rx.recv() => {
                        drop(listener);
                        let _ = done.send(());
                        return;
                    }
                }
            }
        });
        KeepAlive { url, seen, accept }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether a request was read and not answered (its kept-alive connection was closed).
    fn closed_one(&self) -> bool {
        self.seen().iter().any(|s| !s.answered)
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One connection of a [`KeepAlive`] server.
async fn serve_keep_alive(
    mut tcp: tokio::net::TcpStream,
    conn: usize,
    on_reuse: OnReuse,
    stop: Option<(
        tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
        Arc<std::sync::atomic::AtomicBool>,
    )>,
    log: Arc<Mutex<Vec<Seen>>>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut nth = 0;
    loop {
        // One request: the head, then a body of its Content-Length.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return, // closed by the client (or idle for 30 s)
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse::<usize>().unwrap());
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the client closed the connection in a body");
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + length);
        let mut words = head.split_whitespace();
        let request = format!(
            "{} {}",
            words.next().unwrap_or(""),
            words.next().unwrap_or("").split('?').next().unwrap_or("")
        );
        nth += 1;
        let is_down = stop.as_ref().is_some_and(|(_, d)| d.load(Ordering::SeqCst));
        if nth > 1 || is_down {
            log.lock().unwrap().push(Seen {
                conn,
                nth,
                request,
                answered: false,
            });
            if let Some((stop, down)) = &stop
                && !down.swap(true, Ordering::SeqCst)
            {
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                stop.send(done_tx).await.unwrap();
                done_rx.await.unwrap();
            }
            if on_reuse == OnReuse::Reset {
                // SO_LINGER with a zero timeout: closing sends RST instead of FIN.
                use std::os::fd::AsRawFd;
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: a valid socket and a `linger` of the size given.
                let rc = unsafe {
                    libc::setsockopt(
                        tcp.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0);
            }
            return; // dropping the socket closes it
        }
        let body = match request.as_str() {
            "GET /healthz" => "ok".to_string(),
            "GET /v1/uploads" => r#"{"uploads":[]}"#.to_string(),
            "POST /v1/events" => r#"{"accepted":1}"#.to_string(),
            r if r.starts_with("POST /v1/streams") => format!(
                r#"{{"upload_id":"{UPLOAD}","session_id":"{SESSION}","last_event_index":4}}"#
            ),
            other => panic!("unexpected request {other}"),
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        log.lock().unwrap().push(Seen {
            conn,
            nth,
            request,
            answered: true,
        });
        if tcp.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

const UPLOAD: &str = "9a1d0f4e-52b4-4c1e-9d0a-3e8f6b7c2a10";
const SESSION: &str = "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b";

/// Calls `call` until a call's request came on a kept-alive connection that `server` then
/// closed (the client pool hands a connection back a moment after its answer, so a call may
/// go out on a new connection first); returns that call's result and what the server saw
/// from it on. At most 50 calls.
async fn until_closed<T, F, Fut>(server: &KeepAlive, call: F) -> (Result<T, ClientError>, Vec<Seen>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    for _ in 0..50 {
        let before = server.seen().len();
        let result = call().await;
        if server.closed_one() {
            return (result, server.seen()[before..].to_vec());
        }
        if let Err(e) = result {
            panic!("a call on a new connection failed: {e:?}");
        }
    }
    panic!("50 calls and none went out on a kept-alive connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_sent_again_when_a_kept_alive_connection_was_closed() {
    for on_reuse in [OnReuse::Close, OnReuse::Reset] {
        // GET /healthz.
        let server = KeepAlive::start(on_reuse, false).await;
        let c = client(&server.url, RECORDER);
        let (result, seen) = until_closed(&server, || c.healthz()).await;
        result.unwrap_or_else(|e| panic!("{on_reuse:?}: {e:?}"));
        // The request came on a kept-alive connection (its second request), was not
        // answered, then came again on a new connection and was answered.
        let closed = seen.iter().position(|s| !s.answered).unwrap();
        assert_eq!(seen[closed].request, "GET /healthz");
        assert!(seen[closed].nth >= 2, "{seen:?}");
        let again = &seen[closed + 1..];
        assert_eq!(again.len(), 1, "{on_reuse:?}: sent again once: {seen:?}");
        assert_eq!(again[0].request, "GET /healthz");
        assert_eq!((again[0].nth, again[0].answered), (1, true), "{seen:?}");
        assert_ne!(again[0].conn, seen[closed].conn);

        // GET /v1/uploads, a JSON answer.
        let server = KeepAlive::start(on_reuse, false).await;
        let c = client(&server.url, AUDITOR);
        let (result, seen) = until_closed(&server, || c.list_uploads()).await;
        assert!(result.unwrap().is_empty());
        let requests: Vec<_> = seen
            .iter()
            .map(|s| (s.request.as_str(), s.answered))
            .collect();
        assert_eq!(
            &requests[requests.len() - 2..],
            [("GET /v1/uploads", false), ("GET /v1/uploads", true)],
            "{seen:?}"
        );

        // A resume: a POST the API makes safe to send twice.
        let server = KeepAlive::start(on_reuse, false).await;
        let c = client(&server.url, RECORDER);
        let (result, seen) = until_closed(&server, || c.resume_stream(UPLOAD, SESSION)).await;
        let status = result.unwrap();
        assert_eq!(
            (status.upload_id.as_str(), status.last_event_index),
            (UPLOAD, 4)
        );
        let resume = format!("POST /v1/streams/{UPLOAD}/resume");
        let requests: Vec<_> = seen
            .iter()
            .map(|s| (s.request.clone(), s.answered))
            .collect();
        assert_eq!(
            &requests[requests.len() - 2..],
            [(resume.clone(), false), (resume, true)],
            "{seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_posts_are_not_sent_twice_when_a_kept_alive_connection_was_closed() {
    for on_reuse in [OnReuse::Close, OnReuse::Reset] {
        let server = KeepAlive::start(on_reuse, false).await;
        let c = client(&server.url, RECORDER);
        let event = vectors::sample_session(1).remove(0);
        let (result, seen) = until_closed(&server, || c.emit(&event)).await;
        let e = result.unwrap_err();
        // The server is there (a new connection answers /healthz): the request's fate is
        // unknown, and the error says so.
        assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
        assert!(e.is_unreachable(), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("not sent twice"), "{text}");
        assert!(
            text.contains(&format!("{}/v1/events", server.url)),
            "{text}"
        );
        let requests: Vec<_> = seen
            .iter()
            .map(|s| (s.request.as_str(), s.answered))
            .collect();
        assert_eq!(
            &requests[requests.len() - 2..],
            [("POST /v1/events", false), ("GET /healthz", true)],
            "{on_reuse:?}: {seen:?}"
        );
        assert_eq!(
            seen.iter()
                .filter(|s| s.request == "POST /v1/events")
                .count(),
            1,
            "sent once: {seen:?}"
        );

        // Records are not sent twice either (the server would record them twice).
        let server = KeepAlive::start(on_reuse, false).await;
        let c = client(&server.url, RECORDER);
        let records = Bytes::from(framed(&vectors::sample_session(1)));
        let (result, seen) =
            until_closed(&server, || c.write_records(UPLOAD, records.clone())).await;
        assert!(
            matches!(result, Err(ClientError::Transport { .. })),
            "{result:?}"
        );
        let path = format!("POST /v1/streams/{UPLOAD}/records");
        assert_eq!(
            seen.iter().filter(|s| s.request == path).count(),
            1,
            "sent once: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_under_a_kept_alive_connection_is_unreachable() {
    for on_reuse in [OnReuse::Close, OnReuse::Reset] {
        // A GET: sent again on a new connection, which is refused.
        let server = KeepAlive::start(on_reuse, true).await;
        let c = client(&server.url, AUDITOR);
        let (result, seen) = until_closed(&server, || c.healthz()).await;
        let e = result.unwrap_err();
        assert!(
            matches!(e, ClientError::Connect { .. }),
            "{on_reuse:?}: {e:?}"
        );
        assert!(e.is_unreachable());
        let text = e.to_string();
        assert!(
            text.contains(&server.url) && text.contains("tapelog serve"),
            "{text}"
        );
        assert!(text.contains("a new one failed"), "{text}");
        assert_eq!(seen.last().map(|s| s.answered), Some(false), "{seen:?}");
        // And so is every later call.
        let e = c.list_uploads().await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");

        // A POST that is not sent twice: a new connection (to /healthz) is refused.
        let server = KeepAlive::start(on_reuse, true).await;
        let c = client(&server.url, RECORDER);
        let (result, seen) = until_closed(&server, || c.create_stream(SESSION)).await;
        let e = result.unwrap_err();
        assert!(
            matches!(e, ClientError::Connect { .. }),
            "{on_reuse:?}: {e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&format!("{}/v1/streams", server.url)) && text.contains("tapelog serve"),
            "{text}"
        );
        assert_eq!(
            seen.iter()
                .filter(|s| s.request == "POST /v1/streams")
                .count(),
            1,
            "sent once: {seen:?}"
        );
    }
}

fn output_of(events: &[AuditEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        export_event(TextFormat::Terminal, e, &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_writer_records_through_a_restarting_server() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), 0).await;
    let port = first.local_addr().port();
    let url = first.url();
    let streamer = Arc::new(RemoteStreamer::new(
        client(&url, RECORDER),
        RemoteStreamConfig::default(),
    ));
    let sid = "6b2b6a58-62c5-4f6c-a1f4-8f3c4d2e1a90";
    let mut config = SessionWriterConfig::new(
        PreparerConfig {
            server_id: "node-1".into(),
            ..PreparerConfig::new(sid, CLUSTER)
        },
        streamer.clone(),
    );
    config.recovery = RecoveryPolicy {
        attempts: 40,
        step_ms: 50,
        max_ms: 300,
    };
    let writer = SessionWriter::new(config).await.unwrap();
    let mut want = Vec::new();
    let write = async |range: std::ops::RangeInclusive<u32>, want: &mut Vec<u8>| {
        for i in range {
            let line = format!("line {i}\r\n");
            writer.write(line.as_bytes()).await.unwrap();
            want.extend_from_slice(line.as_bytes());
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    write(1..=100, &mut want).await;
    // Let the batch reach the server, then stop it: its streams are closed (resumable).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = first.shutdown().await;
    assert_eq!(report.streams_closed, 1, "{report:?}");
    // Written while no server listens: the writer fails, and keeps trying to resume.
    write(101..=150, &mut want).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = start(dir.path(), port).await;
    write(151..=200, &mut want).await;
    let stats = writer.complete().await.unwrap();
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert!(
        stats.recoveries >= 1,
        "the writer resumed on the new server: {stats:?}"
    );
    assert_eq!(streamer.refused_records(), 0);

    let bytes = download(&client(&second.url(), AUDITOR), sid).await;
    let got = read_all(&bytes);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.skipped, 0, "duplicates in the recording");
    assert_eq!(got.stats.out_of_order, 0, "holes in the recording");
    let indexes: Vec<i64> = got.events.iter().map(AuditEvent::index).collect();
    assert_eq!(indexes, (0..got.events.len() as i64).collect::<Vec<_>>());
    assert!(
        got.events
            .iter()
            .filter(|e| e.event_type() != "print")
            .all(|e| e.session_id() == sid)
    );
    assert_eq!(
        String::from_utf8_lossy(&output_of(&got.events)),
        String::from_utf8_lossy(&want)
    );
    second.shutdown().await;
}

/// Runs the real binary (off the runtime's threads) in an empty directory, with no
/// credentials from the environment.
async fn tapelog(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || crate::util::tapelog(&args).output())
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn stdout_lines(o: &Output) -> Vec<String> {
    assert!(
        o.status.success(),
        "status {:?}, stderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0).await;
    let url = server.url();
    let files = tempfile::tempdir().unwrap();
    let token_file = |name: &str, token: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, format!("{token}\n")).unwrap();
        p.to_str().unwrap().to_string()
    };
    let auditor = token_file("auditor.token", AUDITOR);
    let recorder = token_file("recorder.token", RECORDER);
    let admin = token_file("admin.token", ADMIN);

    let session = vectors::sample_session(3);
    client(&url, RECORDER).emit_batch(&session).await.unwrap();
    let open = client(&url, RECORDER)
        .create_stream("3c1f3c5e-8d9b-4f7e-9a51-0f2b8c6d4e21")
        .await
        .unwrap();

    // search --server --json: Teleport's JSON lines, the same events.
    let o = tapelog(args(&[
        "search",
        "--server",
        &url,
        "--token-file",
        &auditor,
        "--json",
        "--type",
        "print",
    ]))
    .await;
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let got: Vec<AuditEvent> = lines
        .iter()
        .map(|l| AuditEvent::from_json(l).unwrap())
        .collect();
    assert_eq!(got, as_json(&session[2..5]));
    assert_eq!(lines[0], session[2].to_json());

    // search --server: the table.
    let o = tapelog(args(&[
        "search",
        "--server",
        &url,
        "--token-file",
        &auditor,
    ]))
    .await;
    let lines = stdout_lines(&o);
    assert!(lines[0].starts_with("TIME"), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("(end of results)"));
    assert_eq!(lines.len() - 2, session.len(), "{lines:?}");
    // Prints carry no session id; the other events do.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(vectors::SESSION_ID))
            .count(),
        session.iter().filter(|e| e.event_type() != "print").count()
    );

    // sessions list --server --json and the table.
    let o = tapelog(args(&[
        "sessions",
        "list",
        "--server",
        &url,
        "--token-file",
        &auditor,
        "--json",
    ]))
    .await;
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let end = AuditEvent::from_json(&lines[0]).unwrap();
    assert_eq!(end, as_json(&session)[session.len() - 1]);
    let o = tapelog(args(&[
        "sessions",
        "list",
        "--server",
        &url,
        "--token-file",
        &auditor,
    ]))
    .await;
    let lines = stdout_lines(&o);
    assert!(lines[0].starts_with("SESSION"), "{lines:?}");
    let row = lines
        .iter()
        .find(|l| l.starts_with(vectors::SESSION_ID))
        .expect("a row for the session");
    assert!(row.contains("joe"), "{row}");

    // uploads list --server: the open stream's upload.
    let o = tapelog(args(&[
        "uploads",
        "list",
        "--server",
        &url,
        "--token-file",
        &admin,
    ]))
    .await;
    let lines = stdout_lines(&o);
    assert!(lines[0].starts_with("UPLOAD"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with(&open.upload_id)),
        "{lines:?}"
    );
    let o = tapelog(args(&[
        "uploads",
        "list",
        "--server",
        &url,
        "--token-file",
        &admin,
        "--json",
    ]))
    .await;
    let lines = stdout_lines(&o);
    let listed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        listed
            .iter()
            .any(|u| u["upload_id"] == open.upload_id.as_str())
    );

    // A recorder may not search: exit status 1 and a message that says so.
    let o = tapelog(args(&[
        "search",
        "--server",
        &url,
        "--token-file",
        &recorder,
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("403") && err.contains("forbidden"), "{err}");
    assert!(!err.contains(RECORDER));

    server.shutdown().await;

    // Nobody listening any more.
    let o = tapelog(args(&[
        "search",
        "--server",
        &url,
        "--token-file",
        &auditor,
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tapelog serve") && err.contains(&url), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_finds_the_admin_token_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    // No tokens configured: the server writes DATA_DIR/admin.token.
    let server = Server::start(serve_config(dir.path(), 0, false))
        .await
        .unwrap();
    let url = server.url();
    assert!(dir.path().join("admin.token").is_file());
    let data_dir = dir.path().to_str().unwrap().to_string();
    let o = tapelog(args(&["uploads", "list", "--server", &url, "--json"])).await;
    assert_eq!(o.status.code(), Some(1), "no token anywhere: refused");
    let o = tapelog(args(&[
        "sessions",
        "list",
        "--server",
        &url,
        "--data-dir",
        &data_dir,
        "--json",
    ]))
    .await;
    assert!(stdout_lines(&o).is_empty());
    server.shutdown().await;
}
