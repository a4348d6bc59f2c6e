//! The Forward protocol output against a real in-process receiver on loopback: TCP or TLS
//! with client certificates verified by rustls' `WebPkiClientVerifier`, messages decoded by
//! the core's decoder, acks sent (or withheld, or wrong) on demand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::util::TestCommand;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tapelog_api::Role;
use tapelog_api::tls::certs::CertAuthority;
use tapelog_core::fluentd::{EventTime, ForwardMessage, MessageDecoder, Mode, encode_ack};
use tapelog_forward::output::{Destination, Output, SendError};
use tapelog_forward::tcp::{TcpConfig, TcpOutput};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// What the receiver answers to a message.
const ACK: u8 = 0;
const WITHHOLD: u8 = 1;
const WRONG: u8 = 2;

/// A Forward protocol server: every decoded message goes to `messages`.
struct Receiver {
    addr: SocketAddr,
    messages: mpsc::UnboundedReceiver<ForwardMessage>,
    answer: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, addr: Option<SocketAddr>) -> Receiver {
        let listener = TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, messages) = mpsc::unbounded_channel();
        let answer = Arc::new(AtomicU8::new(ACK));
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let ans = answer.clone();
        // Dropping the JoinSet (when the task is aborted) aborts every connection too.
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (tx, ans, acceptor) = (tx.clone(), ans.clone(), acceptor.clone());
                conns.spawn(async move {
                    match acceptor {
                        None => serve(tcp, tx, ans).await,
                        // A refused handshake ends here: the client gets the alert.
                        Some(a) => {
                            if let Ok(s) = a.accept(tcp).await {
                                serve(s, tx, ans).await
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            messages,
            answer,
            task,
        }
    }

    fn set(&self, answer: u8) {
        self.answer.store(answer, Ordering::SeqCst);
    }

    async fn next(&mut self) -> ForwardMessage {
        tokio::time::timeout(Duration::from_secs(10), self.messages.recv())
            .await
            .expect("a message within 10 s")
            .expect("receiver running")
    }

    fn none_pending(&mut self) -> bool {
        self.messages.try_recv().is_err()
    }

    /// Closes the listener and every connection.
    async fn close(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    tx: mpsc::UnboundedSender<ForwardMessage>,
    answer: Arc<AtomicU8>,
) {
    let mut decoder = MessageDecoder::new(16 << 20);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if decoder.push(&buf[..n]).is_err() {
            return;
        }
        loop {
            let m = match decoder.poll() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => panic!("the receiver could not decode the output's bytes: {e}"),
            };
            let chunk = m.options.chunk.clone().unwrap_or_default();
            let _ = tx.send(m);
            let reply = match answer.load(Ordering::SeqCst) {
                ACK => encode_ack(&chunk),
                WRONG => encode_ack("bm90IHRoaXMgb25l"),
                _ => continue,
            };
            if s.write_all(&reply).await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
    }
}

/// A CA with a server and a client certificate in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        static N: AtomicU8 = AtomicU8::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let ca = CertAuthority::new(&format!("forward test CA {n}")).unwrap();
        let server = ca
            .server(&["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let client = ca.client("tapelog-forward", Role::Recorder).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.crt", &ca.pem().cert);
        write("server.crt", &server.cert);
        write("server.key", &server.key);
        write("client.crt", &client.cert);
        write("client.key", &client.key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The receiver's TLS: its certificate, and client certificates required and verified
    /// against this CA.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = tapelog_api::tls::provider();
        let mut roots = rustls::RootCertStore::empty();
        for c in tapelog_api::tls::read_certs(&self.path("ca.crt")).unwrap() {
            roots.add(c).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                tapelog_api::tls::read_certs(&self.path("server.crt")).unwrap(),
                tapelog_api::tls::read_key(&self.path("server.key")).unwrap(),
            )
            .unwrap();
        Arc::new(config)
    }

    fn output_config(&self, addr: SocketAddr) -> TcpConfig {
        let mut c = TcpConfig::new(
            format!("forward+tls://{addr}/test.log"),
            format!("forward+tls://{addr}/session"),
        );
        c.ca = Some(self.path("ca.crt"));
        c.cert = Some(self.path("client.crt"));
        c.key = Some(self.path("client.key"));
        c
    }
}

fn event(n: usize, batch: &str) -> String {
    json!({
        "event": "user.login", "code": "T1000I", "uid": format!("{batch}-{n}"), "ei": n,
        "time": format!("2024-05-01T10:11:{:02}.{:03}Z", n % 60, n % 1000),
        "user": batch, "success": true, "ratio": 0.5, "addr.remote": "10.0.0.1:1234",
    })
    .to_string()
}

fn check_batch(m: &ForwardMessage, events: &[String]) {
    assert_eq!(m.mode, Mode::PackedForward);
    assert_eq!(m.options.size, Some(events.len() as u64));
    assert!(
        m.options.chunk.as_deref().is_some_and(|c| c.len() == 24),
        "{:?}",
        m.options
    );
    assert_eq!(m.entries.len(), events.len());
    for (entry, json) in m.entries.iter().zip(events) {
        let want: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(entry.record.to_json().unwrap(), want);
        let time = tapelog_core::Timestamp::parse_rfc3339(want["time"].as_str().unwrap()).unwrap();
        assert_eq!(entry.time, EventTime::from_timestamp(time).unwrap());
    }
}

fn transient(r: Result<(), SendError>) -> String {
    match r {
        Err(SendError::Transient(m)) => {
            eprintln!("transient: {m}");
            m
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn events_arrive_over_mutual_tls_with_their_tags_times_and_records() {
    let pki = Pki::new();
    let mut rx = Receiver::start(Some(pki.server_config()), None).await;
    // A clock that stands still: the send time of an event without `time` is known exactly.
    let clock = tapelog_audit::clock::ManualClock::at_unix_ms(1_700_000_123_456);
    let mut config = pki.output_config(rx.addr);
    config.clock = clock.clone();
    let out = TcpOutput::new(config).unwrap();

    let audit: Vec<String> = (0..3).map(|n| event(n, "audit")).collect();
    out.send(Destination::Audit, &audit).await.unwrap();
    let m = rx.next().await;
    assert_eq!(m.tag, "test.log");
    check_batch(&m, &audit);

    let session = vec![json!({"event": "session.start", "sid": "7f3c", "ei": 1}).to_string()];
    clock.advance(std::time::Duration::from_millis(1_000));
    let sent = EventTime::from_timestamp(tapelog_core::Timestamp::from_unix_nanos(
        1_700_000_124_456_000_000,
    ))
    .unwrap();
    out.send(Destination::Session("7f3c"), &session)
        .await
        .unwrap();
    let m = rx.next().await;
    assert_eq!(m.tag, "session.7f3c.log");
    assert_eq!(m.entries.len(), 1);
    assert_eq!(
        m.entries[0].time, sent,
        "no `time`: stamped with the send time"
    );
    assert_eq!(
        m.entries[0].record.to_json().unwrap(),
        serde_json::from_str::<serde_json::Value>(&session[0]).unwrap()
    );

    // A batch much bigger than one read or one TLS record.
    let big: Vec<String> = (0..400)
        .map(|n| {
            let mut e: serde_json::Value = serde_json::from_str(&event(n, "big")).unwrap();
            e["data"] = json!("x".repeat(1000));
            e.to_string()
        })
        .collect();
    out.send(Destination::Audit, &big).await.unwrap();
    check_batch(&rx.next().await, &big);
    assert_eq!(out.idle_connections(), 1, "one connection, reused");

    // An event that can never be sent is refused for good, and nothing is sent.
    let r = out.send(Destination::Audit, &["[1,2]".to_string()]).await;
    assert!(
        matches!(r, Err(SendError::Rejected(ref m)) if m.contains("not a JSON object")),
        "{r:?}"
    );
    assert!(rx.none_pending());
}

#[tokio::test]
async fn plain_tcp_works_too() {
    let mut rx = Receiver::start(None, None).await;
    let out = TcpOutput::new(TcpConfig::new(
        format!("forward://{}/test.log", rx.addr),
        format!("forward://{}/session", rx.addr),
    ))
    .unwrap();
    let events: Vec<String> = (0..5).map(|n| event(n, "plain")).collect();
    out.send(Destination::Audit, &events).await.unwrap();
    let m = rx.next().await;
    assert_eq!(m.tag, "test.log");
    check_batch(&m, &events);
}

#[tokio::test]
async fn clients_without_a_trusted_certificate_are_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let mut rx = Receiver::start(Some(pki.server_config()), None).await;
    let events = vec![event(0, "refused")];

    // No client certificate.
    let mut c = pki.output_config(rx.addr);
    c.cert = None;
    c.key = None;
    c.timeout = Duration::from_secs(5);
    let out = TcpOutput::new(c).unwrap();
    let m = transient(out.send(Destination::Audit, &events).await);
    assert!(m.contains("refused the TLS handshake"), "{m}");

    // A client certificate from another CA.
    let mut c = pki.output_config(rx.addr);
    c.cert = Some(other.path("client.crt"));
    c.key = Some(other.path("client.key"));
    c.timeout = Duration::from_secs(5);
    let out = TcpOutput::new(c).unwrap();
    let m = transient(out.send(Destination::Audit, &events).await);
    assert!(m.contains("refused the TLS handshake"), "{m}");

    // The server's certificate checked against the wrong CA.
    let mut c = pki.output_config(rx.addr);
    c.ca = Some(other.path("ca.crt"));
    c.timeout = Duration::from_secs(5);
    let out = TcpOutput::new(c).unwrap();
    let m = transient(out.send(Destination::Audit, &events).await);
    assert!(
        m.contains("TLS handshake failed") && m.contains("not trusted"),
        "{m}"
    );

    assert!(rx.none_pending(), "nothing got through");
    // The right client still gets in.
    let out = TcpOutput::new(pki.output_config(rx.addr)).unwrap();
    out.send(Destination::Audit, &events).await.unwrap();
    check_batch(&rx.next().await, &events);
}

#[tokio::test]
async fn a_missing_or_wrong_ack_is_transient_and_a_retry_succeeds() {
    let pki = Pki::new();
    let mut rx = Receiver::start(Some(pki.server_config()), None).await;
    let mut c = pki.output_config(rx.addr);
    c.timeout = Duration::from_millis(400);
    let out = TcpOutput::new(c).unwrap();
    let events: Vec<String> = (0..3).map(|n| event(n, "acks")).collect();

    rx.set(WITHHOLD);
    let start = Instant::now();
    let m = transient(out.send(Destination::Audit, &events).await);
    let waited = start.elapsed();
    assert!(m.contains("no ack"), "{m}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    check_batch(&rx.next().await, &events);
    assert_eq!(
        out.idle_connections(),
        0,
        "the unacked connection is dropped"
    );

    rx.set(WRONG);
    let m = transient(out.send(Destination::Audit, &events).await);
    assert!(m.contains("wrong ack"), "{m}");
    check_batch(&rx.next().await, &events);
    assert_eq!(out.idle_connections(), 0);

    // Acks are back: the same batch goes through (at least once: the receiver has it 3 times).
    rx.set(ACK);
    out.send(Destination::Audit, &events).await.unwrap();
    check_batch(&rx.next().await, &events);
    assert_eq!(out.idle_connections(), 1);
}

#[tokio::test]
async fn a_receiver_that_goes_away_and_comes_back() {
    let pki = Pki::new();
    let mut rx = Receiver::start(Some(pki.server_config()), None).await;
    let mut c = pki.output_config(rx.addr);
    c.timeout = Duration::from_secs(5);
    let out = TcpOutput::new(c).unwrap();
    let events: Vec<String> = (0..2).map(|n| event(n, "restart")).collect();
    out.send(Destination::Audit, &events).await.unwrap();
    check_batch(&rx.next().await, &events);
    assert_eq!(out.idle_connections(), 1);

    // Down: the pooled connection is dead and nothing listens.
    let addr = rx.close().await;
    let m = transient(out.send(Destination::Audit, &events).await);
    assert!(m.contains("cannot connect"), "{m}");

    // Back on the same port: the next send succeeds on a new connection.
    let mut rx = Receiver::start(Some(pki.server_config()), Some(addr)).await;
    out.send(Destination::Audit, &events).await.unwrap();
    check_batch(&rx.next().await, &events);

    // Restarted while a connection sat idle: the send notices it is closed and reconnects.
    let addr = rx.close().await;
    let mut rx = Receiver::start(Some(pki.server_config()), Some(addr)).await;
    out.send(Destination::Session("s1"), &events).await.unwrap();
    let m = rx.next().await;
    assert_eq!(m.tag, "session.s1.log");
    check_batch(&m, &events);
}

#[tokio::test]
async fn concurrent_sends_share_the_pool_and_keep_each_batch_whole() {
    let pki = Pki::new();
    let mut rx = Receiver::start(Some(pki.server_config()), None).await;
    let mut c = pki.output_config(rx.addr);
    c.max_connections = 3;
    let out = Arc::new(TcpOutput::new(c).unwrap());
    let batches: Vec<Vec<String>> = (0..12)
        .map(|b| (0..25).map(|n| event(n, &format!("b{b}"))).collect())
        .collect();
    let mut sends = JoinSet::new();
    for (b, events) in batches.iter().cloned().enumerate() {
        let out = out.clone();
        sends.spawn(async move {
            let to = if b % 2 == 0 {
                Destination::Audit
            } else {
                Destination::Session("concurrent")
            };
            out.send(to, &events).await
        });
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap().unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..batches.len() {
        let m = rx.next().await;
        let user = m.entries[0]
            .record
            .get("user")
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        let b: usize = user[1..].parse().unwrap();
        let tag = if b.is_multiple_of(2) {
            "test.log"
        } else {
            "session.concurrent.log"
        };
        assert_eq!(m.tag, tag);
        check_batch(&m, &batches[b]);
        assert!(seen.insert(b), "batch {b} twice");
    }
    assert!(rx.none_pending());
    let idle = out.idle_connections();
    assert!(
        (1..=3).contains(&idle),
        "{idle} connections for at most 3 at once"
    );
}

#[tokio::test]
async fn the_files_configure_writes_work_end_to_end() {
    use tapelog_forward::configure::{self, ConfigureOptions, Protocol};
    let dir = tempfile::tempdir().unwrap();
    let opts = ConfigureOptions {
        ips: vec!["127.0.0.1".parse().unwrap()],
        protocol: Protocol::Forward,
        ..ConfigureOptions::default()
    };
    let files = configure::run(dir.path(), &opts).unwrap();
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    for (from, to) in [
        (&files.ca_cert, "ca.crt"),
        (&files.server_cert, "server.crt"),
        (&files.server_key, "server.key"),
        (&files.client_cert, "client.crt"),
        (&files.client_key, "client.key"),
    ] {
        std::fs::copy(from, pki.path(to)).unwrap();
    }
    let mut rx = Receiver::start(Some(pki.server_config()), None).await;

    // The TOML's URLs with the receiver's port, and its three files.
    let toml: toml::Table = std::fs::read_to_string(&files.toml)
        .unwrap()
        .parse()
        .unwrap();
    let fluentd = &toml["forward"]["fluentd"];
    let port = |url: &str| url.replace(":24224/", &format!(":{}/", rx.addr.port()));
    let mut c = TcpConfig::new(
        port(fluentd["url"].as_str().unwrap()),
        port(fluentd["session-url"].as_str().unwrap()),
    );
    c.ca = fluentd["ca"].as_str().map(PathBuf::from);
    c.cert = fluentd["cert"].as_str().map(PathBuf::from);
    c.key = fluentd["key"].as_str().map(PathBuf::from);
    assert!(
        c.audit_url.starts_with("forward+tls://localhost:"),
        "{}",
        c.audit_url
    );
    let out = TcpOutput::new(c).unwrap();
    let events = vec![event(1, "configured")];
    out.send(Destination::Session("abc"), &events)
        .await
        .unwrap();
    let m = rx.next().await;
    assert_eq!(m.tag, "session.abc.log");
    check_batch(&m, &events);
}

/// The real binary end to end: `tapelog forward configure --protocol forward` writes the
/// PKI and the TOML; a receiver with its server certificate; `tapelog forward --config` over
/// `forward+tls://` delivers the audit events in order and the uploaded session's events
/// (without `print`) under `session.<sid>.log`, and a second run sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tapelog_forward_over_forward_tls_with_the_files_configure_writes() {
    use std::process::Command;
    const BIN: &str = env!("CARGO_BIN_EXE_tapelog");
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    let run = |args: &[&str]| {
        let out = TestCommand::new().args(args).run();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let conf_s = conf.display().to_string();
    let said = run(&[
        "forward",
        "configure",
        &conf_s,
        "--ip",
        "127.0.0.1",
        "--protocol",
        "forward",
    ]);
    assert!(said.contains("tapelog-forward.toml"), "{said}");
    // Without --force a second configure refuses and leaves the files alone.
    let ca_before = std::fs::read(conf.join("ca.crt")).unwrap();
    let again = TestCommand::new()
        .args(["forward", "configure", &conf_s])
        .output();
    assert!(!again.status.success());
    assert_eq!(std::fs::read(conf.join("ca.crt")).unwrap(), ca_before);

    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    for f in ["ca.crt", "server.crt", "server.key"] {
        std::fs::copy(conf.join(f), pki.path(f)).unwrap();
    }
    let mut rx = Receiver::start(Some(pki.server_config()), None).await;

    // A data directory: 30 audit events, then an uploaded sample session.
    let data = tmp.path().join("data");
    let sample = tmp.path().join("sample.tar");
    run(&["sample", "-o", &sample.display().to_string()]);
    let sid = "2b7f3c0c-9d2a-4c1b-8f00-0123456789ab";
    let records = data.join("log").join("records").display().to_string();
    run(&[
        "upload",
        &sample.display().to_string(),
        "--storage",
        &records,
        "--session-id",
        sid,
    ]);
    let mut lines: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"event":"user.login","code":"T1000I","uid":"ev-{i:03}","time":"2024-05-01T10:00:{i:02}Z","user":"u{i}","success":true}}"#
            )
        })
        .collect();
    lines.push(format!(
        r#"{{"event":"session.upload","code":"T2005I","uid":"upload-1","sid":"{sid}","time":"2024-05-01T11:00:00Z","url":"file:///x"}}"#
    ));
    let mut emit = Command::new(BIN)
        .args(["emit", "--data-dir", &data.display().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = emit.stdin.take().unwrap();
        for l in &lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    assert!(emit.wait().unwrap().success());

    let port = rx.addr.port();
    let toml = conf.join("tapelog-forward.toml").display().to_string();
    let storage = tmp.path().join("storage").display().to_string();
    let audit_url = format!("forward+tls://localhost:{port}/test.log");
    let session_url = format!("forward+tls://localhost:{port}/session");
    let data_s = data.display().to_string();
    let args = [
        "forward",
        "--config",
        &toml,
        "--data-dir",
        &data_s,
        "--storage",
        &storage,
        "--fluentd-url",
        &audit_url,
        "--fluentd-session-url",
        &session_url,
        "--start-time",
        "2024-05-01T00:00:00Z",
        "--window-size",
        "87600h",
        "--exit-on-last-event",
    ];
    let forward = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || {
            Command::new(BIN)
                .args(&args)
                .env_clear()
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        }
    });
    let mut audit = Vec::new();
    let mut session = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (audit.len() < lines.len() || session.is_empty()) && Instant::now() < deadline {
        let m = rx.next().await;
        for e in &m.entries {
            let record = e.record.to_json().unwrap();
            if m.tag == "test.log" {
                audit.push(record["uid"].as_str().unwrap().to_string());
            } else {
                assert_eq!(m.tag, format!("session.{sid}.log"));
                session.push(record);
            }
        }
    }
    let out = forward.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    while let Ok(m) = rx.messages.try_recv() {
        for e in &m.entries {
            let record = e.record.to_json().unwrap();
            if m.tag != "test.log" {
                session.push(record);
            }
        }
    }
    let want: Vec<String> = (0..30)
        .map(|i| format!("ev-{i:03}"))
        .chain(["upload-1".to_string()])
        .collect();
    assert_eq!(audit, want, "audit events in order, each once");
    assert!(session.len() >= 2, "{session:?}");
    assert!(
        session.iter().all(|r| r["event"] != "print"),
        "print is skipped"
    );
    let indexes: Vec<i64> = session.iter().map(|r| r["ei"].as_i64().unwrap()).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    assert_eq!(session[0]["event"], "session.start");

    // A second run has nothing left to send.
    TestCommand::new().args(args).run();
    assert!(rx.none_pending(), "nothing is sent twice");
}
