//! `tapelog serve` ingestion benchmark: `cargo bench -p tapelog --bench serve`.
//!
//! An in-process server on 127.0.0.1 (port 0) over a temporary data directory; 16 concurrent
//! clients (`tapelog_client::Client`, one connection pool each) POST audit events to
//! `/v1/events` for a fixed time per mode:
//!
//! - **single**: one event per request (`application/json`);
//! - **batch**: 100 events per request (JSON lines).
//!
//! For each mode it prints events/s and the p50/p99 latency of a request. As a baseline, the
//! same events are appended straight to a `FileLog` (what the server writes into, without
//! HTTP, checks or tasks) in the same run, and the ratios server ÷ baseline are printed. No
//! timed asserts. Run as a test (`cargo test -p tapelog --bench serve`, no `--bench`
//! argument) it does a short smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tapelog_api::Role;
use tapelog_audit::{FileLog, FileLogConfig};
use tapelog_client::{Client, ClientConfig, Credentials, Token};
use tapelog_core::AuditEvent;
use tapelog_server::{ServeConfig, Server, TokenSpec};

const CLIENTS: usize = 16;
const BATCH: usize = 100;
const TOKEN: &str = "bench-recorder-token-0123456789";

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

    println!("== baseline: FileLog::append, one thread, ~400-byte events");
    let base = baseline(base_dir.path(), budget);
    println!("  {base:>10.0} events/s");

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
        println!(
            "== tapelog serve on {url}: {CLIENTS} concurrent clients, {:.1} s per mode",
            budget.as_secs_f64()
        );
        for (mode, per) in [("single", 1), ("batch", BATCH)] {
            let f = drive(&url, per, budget).await;
            println!(
                "  {mode:<6} ({per:>3}/request)  {:>10.0} events/s  ({:.3} of baseline)  p50 {}  p99 {}  ({} requests)",
                f.events_per_s,
                f.events_per_s / base,
                ms(f.p50),
                ms(f.p99),
                f.requests
            );
        }
        server.shutdown().await;
    });
}
