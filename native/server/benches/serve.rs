//! `tapelog serve` ingestion benchmark: `cargo bench -p tapelog-server --bench serve`.
//!
//! An in-process server on 127.0.0.1 (port 0) over a temporary data directory; 16 concurrent
//! clients POST audit events to `/v1/events` for a fixed time per mode. Two kinds of client:
//! **lean** (one kept-alive HTTP/1.1 connection each, the request bytes built once: the same
//! method, path, `authorization`, `content-type`, `accept` and body as `tapelog_client`
//! sends), which measures the server with little client cost on the shared cores, and
//! **client** (`tapelog_client::Client` on reqwest, encoding every request), what a real
//! caller gets. Modes:
//!
//! - **single**: one event per request (`application/json`);
//! - **batch**: 100 events per request (JSON lines);
//! - **pipelined** (lean client only): one event per request, 8 requests written together
//!   on the connection (HTTP/1.1 pipelining), then their 8 answers read.
//!
//! For each mode it prints events/s and the p50/p99 latency of a request. As a baseline, the
//! same events are appended straight to a `FileLog` (`FileLog::append`, one thread: what the
//! server writes into, without HTTP, checks or tasks), measured before each round; the lean
//! modes run 3 rounds and the medians are printed, with the ratios server ÷ baseline. No
//! timed asserts. Run as a test (`cargo test -p tapelog-server --bench serve`, no `--bench`
//! argument) it does a short smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tapelog_api::Role;
use tapelog_audit::{FileLog, FileLogConfig};
use tapelog_client::{Client, ClientConfig, Credentials, Token};
use tapelog_core::AuditEvent;
use tapelog_server::{ServeConfig, Server, TokenSpec};

const CLIENTS: usize = 16;
const BATCH: usize = 100;
const TOKEN: &str = "bench-recorder-token-0123456789";
/// Requests a pipelining lean client keeps in flight on its connection.
const PIPELINE: usize = 8;
/// The lean client's modes: (events a request, requests in flight on a connection).
const LEAN_MODES: [(usize, usize); 3] = [(1, 1), (BATCH, 1), (1, PIPELINE)];

fn lean_label(per: usize, depth: usize) -> String {
    if depth > 1 {
        format!("lean   {per:>3}/request, {depth} pipelined")
    } else {
        format!("lean   {per:>3}/request")
    }
}

/// A ~400-byte session.start event, as the audit benchmark uses.
fn event(i: usize) -> AuditEvent {
    let line = format!(
        concat!(
            r#"{{"ei":0,"event":"session.start","uid":"{i:08}-1b59-4858-b3a3-5e9467a77616","code":"T2000I","#,
            r#""time":"2024-01-15T10:00:00.000Z","cluster_name":"bench.example.com","user":"joe","login":"root","#,
            r#""sid":"9b6ec731-80f7-4751-9154-4214ecdc812a","namespace":"default","#,
            r#""server_id":"ade010d6-4e75-4ed8-9f92-886a4f49eb26","server_hostname":"node-1","#,
            r#""addr.remote":"173.160.69.53:56544","size":"80:25","session_recording":"node"}}"#
        ),
        i = i
    );
    match AuditEvent::from_json(&line) {
        Ok(e) => e,
        Err(e) => panic!("bench event: {e}"),
    }
}

struct Figures {
    events_per_s: f64,
    p50: Duration,
    p99: Duration,
    requests: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `CLIENTS` tasks POST for `budget`, `per_request` events a request.
async fn drive(url: &str, per_request: usize, budget: Duration) -> Figures {
    let events: Arc<Vec<AuditEvent>> = Arc::new((0..per_request).map(event).collect());
    let start = Instant::now();
    let deadline = start + budget;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client::new(ClientConfig::new(
            url,
            Credentials::token(Token::new(TOKEN).unwrap_or_else(|| panic!("token"))),
        ))
        .unwrap_or_else(|e| panic!("client: {e}"));
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let accepted = if events.len() == 1 {
                    client.emit(&events[0]).await
                } else {
                    client.emit_batch(&events).await
                };
                match accepted {
                    Ok(k) => n += k,
                    Err(e) => panic!("emit: {e}"),
                }
                lat.push(t.elapsed());
            }
            (n, lat)
        }));
    }
    collect(start, tasks).await
}

/// The request bytes `tapelog_client` sends for `events` (JSON for one, JSON lines for more).
fn request_bytes(addr: &str, events: &[AuditEvent]) -> Vec<u8> {
    let (content_type, body) = if events.len() == 1 {
        ("application/json", events[0].to_json())
    } else {
        let mut b = String::new();
        for e in events {
            b.push_str(&e.to_json());
            b.push('\n');
        }
        ("application/x-ndjson", b)
    };
    let mut r = format!(
        "POST /v1/events HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {content_type}\r\naccept: */*\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

/// Reads one answer (status 200, `content-length` body) from `conn`; `buf` keeps what is
/// read past it. Returns the body.
async fn read_answer(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "answer: {head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("length: {e}")))
                .unwrap_or_else(|| panic!("no content-length: {head}"));
            while buf.len() < end + 4 + len {
                let n = conn
                    .read(&mut chunk)
                    .await
                    .unwrap_or_else(|e| panic!("read: {e}"));
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return body;
        }
        let n = conn
            .read(&mut chunk)
            .await
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `CLIENTS` lean clients POST for `budget`, `per_request` events a request, `depth`
/// requests at a time on each connection (1: one request, then its answer; more: HTTP/1.1
/// pipelining, `depth` requests written together, then their `depth` answers read, each
/// request's latency from the write to its own answer).
async fn drive_lean(addr: &str, per_request: usize, depth: usize, budget: Duration) -> Figures {
    let events: Vec<AuditEvent> = (0..per_request).map(event).collect();
    let request = Arc::new(request_bytes(addr, &events).repeat(depth));
    let want = format!("{{\"accepted\":{per_request}}}");
    let start = Instant::now();
    let deadline = start + budget;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let request = request.clone();
        let want = want.clone();
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(&addr)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            conn.set_nodelay(true)
                .unwrap_or_else(|e| panic!("nodelay: {e}"));
            let mut buf = Vec::new();
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                tokio::time::timeout(Duration::from_secs(10), async {
                    conn.write_all(&request)
                        .await
                        .unwrap_or_else(|e| panic!("write: {e}"));
                    for _ in 0..depth {
                        let answer = read_answer(&mut conn, &mut buf).await;
                        assert_eq!(String::from_utf8_lossy(&answer), want);
                        n += per_request as u64;
                        lat.push(t.elapsed());
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("no answer in 10 s"));
            }
            (n, lat)
        }));
    }
    collect(start, tasks).await
}

async fn collect(
    start: Instant,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<Duration>)>>,
) -> Figures {
    let mut total = 0u64;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l) = t.await.unwrap_or_else(|e| panic!("client task: {e}"));
        total += n;
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Figures {
        events_per_s: total as f64 / secs,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        requests: lat.len(),
    }
}

/// The baseline: the same events appended straight to a `FileLog`, one thread.
fn baseline(dir: &std::path::Path, budget: Duration) -> f64 {
    let log = FileLog::open(FileLogConfig::new(dir, "baseline"))
        .unwrap_or_else(|e| panic!("file log: {e}"));
    let template = event(0);
    let start = Instant::now();
    let mut n = 0usize;
    while !n.is_multiple_of(64) || start.elapsed() < budget {
        if let Err(e) = log.append(&template) {
            panic!("append: {e}");
        }
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The server's per-event parse on one thread: the bench event's line read by
/// `AuditEvent::from_json` (the direct reader) and by the `serde_json::Value` reader it
/// replaced, in 20 alternating slices of `budget / 20`; prints the fastest slice of each
/// (the least disturbed by other work on the machine), in µs per event, and the ratio.
fn parse_cost(budget: Duration) {
    let line = event(0).to_json();
    let slice = budget / 20;
    let time = |read: &dyn Fn(&str) -> AuditEvent| {
        let start = Instant::now();
        let mut n = 0u64;
        while !n.is_multiple_of(64) || start.elapsed() < slice {
            std::hint::black_box(read(std::hint::black_box(&line)));
            n += 1;
        }
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let direct = |l: &str| AuditEvent::from_json(l).unwrap_or_else(|e| panic!("parse: {e}"));
    let value = |l: &str| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}"));
        AuditEvent::from_json_value(&v, Some(l)).unwrap_or_else(|e| panic!("parse: {e}"))
    };
    let (mut best_direct, mut best_value) = (f64::MAX, f64::MAX);
    for _ in 0..10 {
        best_direct = best_direct.min(time(&direct));
        best_value = best_value.min(time(&value));
    }
    println!(
        "== parse, one thread (fastest of 10 slices each): direct reader {best_direct:.2} µs/event, Value reader {best_value:.2} µs/event ({:.2}x){}",
        best_value / best_direct,
        if AuditEvent::from_json_direct(&line).is_some() {
            ""
        } else {
            " (the direct reader declines this event: from_json is the Value reader)"
        }
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let budget = if bench {
        Duration::from_secs(4)
    } else {
        Duration::from_millis(300)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let base_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let serve_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));

    if std::env::var("TAPELOG_BENCH_PROFILE").as_deref() == Ok("parse") {
        // For `perf record`: `AuditEvent::from_json` of the bench event alone, for 5 s.
        let line = event(0).to_json();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            for _ in 0..1000 {
                std::hint::black_box(AuditEvent::from_json(std::hint::black_box(&line)).ok());
            }
        }
        return;
    }
    println!("load average before: {}", loadavg());
    parse_cost(budget / 4);
    rt.block_on(async {
        let mut config = ServeConfig::new(serve_dir.path());
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.completer_interval = Duration::ZERO;
        config.server_id = "bench".into();
        config.tokens = vec![TokenSpec {
            role: Role::Recorder,
            name: "bench".into(),
            token: TOKEN.into(),
        }];
        let server = Server::start(config)
            .await
            .unwrap_or_else(|e| panic!("server: {e}"));
        let url = server.url();
        let addr = server.local_addr().to_string();
        println!(
            "== tapelog serve on {url}: {CLIENTS} concurrent clients, {:.1} s per mode; baseline FileLog::append, one thread, before each round",
            budget.as_secs_f64()
        );
        let rounds = if bench { 3 } else { 1 };
        let mut base = Vec::new();
        let mut runs: Vec<Vec<(f64, Figures)>> = LEAN_MODES.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            let b = tokio::task::block_in_place(|| baseline(base_dir.path(), budget / 2));
            println!("  round {round}: baseline {b:>10.0} events/s");
            base.push(b);
            for (k, &(per, depth)) in LEAN_MODES.iter().enumerate() {
                let f = drive_lean(&addr, per, depth, budget).await;
                print_line(&lean_label(per, depth), &f, b);
                runs[k].push((b, f));
            }
        }
        println!("== medians over {rounds} rounds (lean client)");
        base.sort_by(f64::total_cmp);
        println!("  baseline                 {:>10.0} events/s", base[base.len() / 2]);
        for (k, &(per, depth)) in LEAN_MODES.iter().enumerate() {
            let mut ratios: Vec<f64> = runs[k].iter().map(|(b, f)| f.events_per_s / b).collect();
            ratios.sort_by(f64::total_cmp);
            let mut p99: Vec<Duration> = runs[k].iter().map(|(_, f)| f.p99).collect();
            p99.sort();
            let mut p50: Vec<Duration> = runs[k].iter().map(|(_, f)| f.p50).collect();
            p50.sort();
            let mut eps: Vec<f64> = runs[k].iter().map(|(_, f)| f.events_per_s).collect();
            eps.sort_by(f64::total_cmp);
            println!(
                "  {}  {:>10.0} events/s  ({:.3} of baseline)  p50 {}  p99 {}",
                lean_label(per, depth),
                eps[eps.len() / 2],
                ratios[ratios.len() / 2],
                ms(p50[p50.len() / 2]),
                ms(p99[p99.len() / 2]),
            );
        }
        println!("== tapelog_client (reqwest), one round");
        let b = tokio::task::block_in_place(|| baseline(base_dir.path(), budget / 2));
        for per in [1, BATCH] {
            let f = drive(&url, per, budget).await;
            print_line(&format!("client {per:>3}/request"), &f, b);
        }
        server.shutdown().await;
    });
    println!("load average after: {}", loadavg());
}

fn print_line(label: &str, f: &Figures, base: f64) {
    println!(
        "  {label}  {:>10.0} events/s  ({:.3} of baseline)  p50 {}  p99 {}  ({} requests)",
        f.events_per_s,
        f.events_per_s / base,
        ms(f.p50),
        ms(f.p99),
        f.requests
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
