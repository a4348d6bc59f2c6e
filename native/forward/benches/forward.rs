//! `tapelog forward` throughput: `cargo bench -p tapelog-forward --bench forward`.
//!
//! Two comparisons, both against the in_http look-alike of the tests
//! (`tests/integration/util/fluentd.rs`: TLS with client certificates verified, the JSON of
//! every record parsed and checked as Fluentd checks it). The receiver runs in this process,
//! so its parsing shares the two cores with the sender on both sides of each ratio.
//!
//! 1. **Against a bare array sender**: the same events, pre-built as 1000-event JSON arrays,
//!    posted over one keep-alive mutual-TLS connection, one request at a time (as in_http is
//!    used), against `tapelog forward` (defaults) reading them from a data directory, each
//!    run into a fresh receiver and a fresh state directory; runs interleaved (9 at the
//!    look-alike's own rate, 3 with latency), medians, the ratio forward ÷ bare of the
//!    medians and of each run with the bare run before it (median and range) printed (the
//!    goal is ≥ 0.8), with the exporter's profile
//!    ([`tapelog_forward::pipeline::AuditTimings`]). Twice: with no added latency (the
//!    look-alike's own rate, several times Fluentd's), and with 15 ms added per request (about
//!    the 20 ms a real Fluentd took per 1000-event request here, issue 19).
//! 2. **Against upstream's serial sender** (25 ms added to every request): one event per
//!    request (teleport#56268) for a few seconds, against `tapelog forward` (defaults).
//!
//! Run as a test (`cargo test -p tapelog-forward --bench forward`) it does a short smoke run
//! and checks only that every event arrived.

#[allow(clippy::unwrap_used)]
#[path = "../../../tests/integration/util/fluentd.rs"]
mod fluentd;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tapelog_audit::{FileLog, FileLogConfig};
use tapelog_core::AuditEvent;
use tapelog_forward::http::{HttpConfig, HttpOutput};
use tapelog_forward::{Destination, ForwardArgs, Output};

fn event(i: usize) -> String {
    format!(
        r#"{{"event":"user.login","code":"T1000I","uid":"ev-{i:07}","time":"2024-05-01T10:{:02}:{:02}.{:03}Z","cluster_name":"bench","user":"u{i}","success":true,"addr.remote":"10.0.{}.{}:51234","user_agent":"tsh/16.4.0","method":"local"}}"#,
        (i / 60000) % 60,
        (i / 1000) % 60,
        i % 1000,
        (i / 256) % 256,
        i % 256
    )
}

/// The stored lines of the data directory, in order (what the exporter reads).
fn stored_lines(data: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for server in std::fs::read_dir(data.join("log")).unwrap() {
        let server = server.unwrap().path();
        if server.is_dir() && !server.ends_with("records") {
            for f in std::fs::read_dir(&server).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|x| x == "log") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn client(pki: &fluentd::Pki) -> reqwest::Client {
    let ca = std::fs::read(&pki.ca).unwrap();
    let mut id = std::fs::read(&pki.client.0).unwrap();
    id.push(b'\n');
    id.extend(std::fs::read(&pki.client.1).unwrap());
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(&id).unwrap())
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .unwrap()
}

/// The bare sender: pre-built bodies, one request at a time over one connection.
async fn bare(http: &reqwest::Client, url: &str, bodies: &[bytes::Bytes]) {
    for b in bodies {
        let resp = http
            .post(url)
            .header("Content-Type", "application/json")
            .body(b.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
    }
}

/// Runs `tapelog forward` from `data` to `f` with state in `state`, extra settings from
/// `extra`; returns what the run says.
fn forward(
    rt: &tokio::runtime::Runtime,
    f: &fluentd::Fluentd,
    pki: &fluentd::Pki,
    data: &Path,
    state: &Path,
    extra: &[(&str, &str)],
) -> tapelog_forward::Summary {
    let env = |name: &str| -> Option<String> {
        let p = |x: &Path| x.display().to_string();
        if let Some((_, v)) = extra.iter().find(|(k, _)| *k == name) {
            return Some((*v).to_string());
        }
        match name {
            "FDFWD_DATA_DIR" => Some(p(data)),
            "FDFWD_STORAGE" => Some(p(state)),
            "FDFWD_FLUENTD_URL" => Some(format!("{}/test.log", f.url)),
            "FDFWD_FLUENTD_SESSION_URL" => Some(format!("{}/session", f.url)),
            "FDFWD_FLUENTD_CA" => Some(p(&pki.ca)),
            "FDFWD_FLUENTD_CERT" => Some(p(&pki.client.0)),
            "FDFWD_FLUENTD_KEY" => Some(p(&pki.client.1)),
            "FDFWD_START_TIME" => Some("2024-05-01T00:00:00Z".into()),
            "FDFWD_WINDOW_SIZE" => Some("87600h".into()),
            "FDFWD_EXIT_ON_LAST_EVENT" => Some("true".into()),
            _ => None,
        }
    };
    let opts = ForwardArgs::default()
        .resolve_with(env)
        .unwrap_or_else(|e| panic!("{e}"));
    let output: Arc<dyn Output> = Arc::new(
        HttpOutput::new(&HttpConfig {
            url: opts.fluentd_url.clone(),
            session_url: opts.fluentd_session_url.clone(),
            ca: opts.fluentd_ca.clone(),
            identity: opts.fluentd_cert.clone().zip(opts.fluentd_key.clone()),
            max_connections: opts.fluentd_max_connections,
        })
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let (_tx, rx) = tokio::sync::watch::channel(false);
    rt.block_on(tapelog_forward::run_with_output(opts, output, rx))
        .unwrap_or_else(|e| panic!("forward: {e}"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of `fwd`, and of each run's ratio to the bare run just before it (paired:
/// the same moment's load) with that ratio's range: (median, paired median, low, high).
fn against(fwd: &mut [f64], bare_in_order: &[f64]) -> (f64, f64, f64, f64) {
    let mut paired: Vec<f64> = fwd.iter().zip(bare_in_order).map(|(f, b)| f / b).collect();
    let m = median(fwd);
    // `median` sorts: `paired`'s ends are then its range.
    let pm = median(&mut paired);
    (m, pm, paired[0], paired[paired.len() - 1])
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One timed run into a fresh receiver.
struct Run {
    /// Events/s over the whole run (the sender's start and end included).
    rate: f64,
    /// Events/s while the receiver was busy: its first request to its last answer.
    busy_rate: f64,
    requests: u64,
}

fn timed(
    pki: &fluentd::Pki,
    latency: Duration,
    events: usize,
    run: impl FnOnce(&fluentd::Fluentd),
) -> Run {
    let f = fluentd::Fluentd::start(pki);
    f.set_latency(latency);
    let start = Instant::now();
    run(&f);
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(f.record_count(), events, "every event arrived");
    let busy = f.busy_span().unwrap().as_secs_f64();
    Run {
        rate: events as f64 / elapsed,
        busy_rate: events as f64 / busy,
        requests: f.requests(),
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (events, runs, serial_budget) = if bench {
        (200_000, 3, Duration::from_secs(3))
    } else {
        (3_000, 1, Duration::from_millis(300))
    };
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let pki = fluentd::Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let log = FileLog::open(FileLogConfig::new(&data, "bench")).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..events {
        let e = AuditEvent::from_json(&event(i)).unwrap_or_else(|e| panic!("{e}"));
        log.append(&e).unwrap_or_else(|e| panic!("{e}"));
    }
    drop(log);
    let lines = stored_lines(&data);
    assert_eq!(lines.len(), events);
    let bytes_per_event = lines.iter().map(|l| l.len() + 1).sum::<usize>() / events;
    let bodies: Vec<bytes::Bytes> = lines
        .chunks(1000)
        .map(|c| bytes::Bytes::from(tapelog_core::forward::body(c)))
        .collect();
    drop(lines);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let http = client(&pki);

    // 1. At the receiver's rate (and at a rate like Fluentd's): interleaved runs.
    let variants: [(&str, &[(&str, &str)]); 1] = [("tapelog forward (defaults)", &[])];
    let mut state_n = 0;
    for latency_ms in [0u64, 15] {
        let latency = Duration::from_millis(latency_ms);
        let load_before = loadavg();
        let mut bare_rates = Vec::new();
        let mut bare_busy = Vec::new();
        let mut fwd_rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        let mut fwd_busy: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        let mut fwd_requests: Vec<u64> = vec![0; variants.len()];
        let mut profiles: Vec<Vec<(f64, tapelog_forward::pipeline::AuditTimings)>> =
            vec![Vec::new(); variants.len()];
        // A run at the receiver's own rate takes about a second and varies by ±0.07 in
        // the ratio on an idle machine: three times the runs there.
        let runs = if latency_ms == 0 { runs * 3 } else { runs };
        for _ in 0..runs {
            let b = timed(&pki, latency, events, |f| {
                rt.block_on(bare(&http, &format!("{}/test.log", f.url), &bodies));
            });
            bare_rates.push(b.rate);
            bare_busy.push(b.busy_rate);
            for (k, (_, extra)) in variants.iter().enumerate() {
                state_n += 1;
                let state = tmp.path().join(format!("state{state_n}"));
                let mut timings = Default::default();
                let run = timed(&pki, latency, events, |f| {
                    let summary = forward(&rt, f, &pki, &data, &state, extra);
                    assert_eq!(summary.events as usize, events);
                    timings = summary.timings;
                });
                fwd_rates[k].push(run.rate);
                fwd_busy[k].push(run.busy_rate);
                fwd_requests[k] = run.requests;
                profiles[k].push((run.rate, timings));
            }
        }
        let bare_rates_in_order = bare_rates.clone();
        let bare_busy_in_order = bare_busy.clone();
        let bare_median = median(&mut bare_rates);
        let bare_busy_median = median(&mut bare_busy);
        println!(
            "forward vs a bare array sender: {events} events ({bytes_per_event} bytes each), {latency_ms} ms added per request, {runs} interleaved runs, medians"
        );
        println!("  load before: {load_before}; after: {}", loadavg());
        println!(
            "  bare array sender (1000 per request, one connection): {bare_median:>9.0} events/s ({} requests, {:.2} ms each)",
            bodies.len(),
            1000.0 * 1000.0 / bare_median
        );
        for (k, (name, _)) in variants.iter().enumerate() {
            let (m, pm, lo, hi) = against(&mut fwd_rates[k], &bare_rates_in_order);
            println!(
                "  {name:<30}: {m:>9.0} events/s ({} requests)  ratio forward / bare: {:.2}; paired runs: median {pm:.2}, {lo:.2}-{hi:.2}",
                fwd_requests[k],
                m / bare_median,
            );
            // The same at the receiver: from its first request to its last answer, so
            // neither side's start (TLS set-up, the state directory) nor end is counted.
            let (mb, pmb, lo, hi) = against(&mut fwd_busy[k], &bare_busy_in_order);
            println!(
                "    while the receiver was busy (first request to last answer): bare {bare_busy_median:.0}, forward {mb:.0} events/s; ratio {:.2}; paired runs: median {pmb:.2}, {lo:.2}-{hi:.2}",
                mb / bare_busy_median,
            );
            profiles[k].sort_by(|a, b| a.0.total_cmp(&b.0));
            let (r, t) = &profiles[k][profiles[k].len() / 2];
            let total = events as f64 / r;
            let s = |d: Duration| d.as_secs_f64();
            println!(
                "    profile of its median run (wall s): total {total:.2}; reader: feed reads {:.2}, chunking {:.2}; sender: waiting for the reader {:.2}, requests {:.2} ({} requests, {:.2} ms each), storing positions {:.2} ({} fsync'd)",
                s(t.read),
                s(t.prepare),
                s(t.wait),
                s(t.send),
                t.requests,
                1000.0 * s(t.send) / t.requests.max(1) as f64,
                s(t.save),
                t.syncs
            );
        }
    }

    // 2. Against upstream's serial sender, 25 ms per request.
    let f = fluentd::Fluentd::start(&pki);
    f.set_latency(Duration::from_millis(25));
    let serial = HttpOutput::new(&HttpConfig {
        url: format!("{}/serial.log", f.url),
        session_url: format!("{}/session", f.url),
        ca: Some(pki.ca.clone()),
        identity: Some(pki.client.clone()),
        max_connections: 1,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let mut sent = 0usize;
    rt.block_on(async {
        while start.elapsed() < serial_budget {
            let one = [event(sent)];
            serial
                .send(Destination::Audit, &one)
                .await
                .unwrap_or_else(|e| panic!("serial send: {e}"));
            sent += 1;
        }
    });
    let serial_rate = sent as f64 / start.elapsed().as_secs_f64();
    drop(f);
    let f = fluentd::Fluentd::start(&pki);
    f.set_latency(Duration::from_millis(25));
    let start = Instant::now();
    let n = forward(&rt, &f, &pki, &data, &tmp.path().join("state-serial"), &[]).events;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(f.record_count(), events, "every event arrived");
    println!("forward against the serial sender: 25 ms per request");
    println!("  serial, one event per request: {serial_rate:>9.1} events/s ({sent} events)");
    println!(
        "  tapelog forward (defaults):    {rate:>9.1} events/s ({} requests)",
        f.requests()
    );
    println!(
        "  ratio:                         {:>9.1}x",
        rate / serial_rate
    );
}
