//! `tapelog forward` throughput: `cargo bench -p tapelog --bench forward`.
//!
//! Audit events from a local data directory to the in_http receiver of the tests
//! (`tests/support/fluentd.rs`: TLS with client certificates) with 25 ms of latency added to
//! every request, against a serial sender that posts one event per request (upstream's
//! behaviour, teleport#56268) measured in the same run. Prints both rates and the ratio (the
//! target is ≥ 100×). Run as a test (`cargo test -p tapelog --bench forward`) it does a short
//! smoke run and checks only that every event arrived.

#[allow(clippy::unwrap_used)]
#[path = "../../../tests/integration/util/fluentd.rs"]
mod fluentd;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tapelog_audit::{FileLog, FileLogConfig};
use tapelog_core::AuditEvent;
use tapelog_forward::http::{HttpConfig, HttpOutput};
use tapelog_forward::{Destination, ForwardArgs, Output};

fn event(i: usize) -> String {
    format!(
        r#"{{"event":"user.login","code":"T1000I","uid":"ev-{i:07}","time":"2024-05-01T10:{:02}:{:02}.{:03}Z","cluster_name":"bench","user":"u{i}","success":true}}"#,
        (i / 60000) % 60,
        (i / 1000) % 60,
        i % 1000
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (events, serial_budget) = if bench {
        (20_000, Duration::from_secs(4))
    } else {
        (400, Duration::from_millis(300))
    };
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let pki = fluentd::Pki::new(&tmp.path().join("pki"));
    let f = fluentd::Fluentd::start(&pki);
    f.set_latency(Duration::from_millis(25));
    let data = tmp.path().join("data");
    let log = FileLog::open(FileLogConfig::new(&data, "bench")).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..events {
        let e = AuditEvent::from_json(&event(i)).unwrap_or_else(|e| panic!("{e}"));
        log.append(&e).unwrap_or_else(|e| panic!("{e}"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));

    // The serial baseline: one event per request, one request at a time.
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

    // The exporter with its defaults (pages of 20; one audit request in flight, carrying
    // what was read meanwhile, up to 1000 events).
    let env = |name: &str| -> Option<String> {
        let p = |x: &std::path::Path| x.display().to_string();
        match name {
            "FDFWD_DATA_DIR" => Some(p(&data)),
            "FDFWD_STORAGE" => Some(p(&tmp.path().join("state"))),
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
    let start = Instant::now();
    let summary = rt
        .block_on(tapelog_forward::run_with_output(opts, output, rx))
        .unwrap_or_else(|e| panic!("forward: {e}"));
    let elapsed = start.elapsed().as_secs_f64();
    let got = f
        .records()
        .iter()
        .filter(|(tag, _)| tag == "test.log")
        .count();
    assert_eq!(got, events, "every event arrived");
    assert_eq!(summary.events as usize, events);
    let rate = events as f64 / elapsed;
    let requests = f.requests() as usize - sent;
    println!("forward: {events} events, 25 ms per request");
    println!("  serial, one event per request: {serial_rate:>9.1} events/s ({sent} events)");
    println!("  tapelog forward (defaults):    {rate:>9.1} events/s ({elapsed:.2} s)");
    println!(
        "  requests:                      {requests:>9} ({:.0} events per request)",
        events as f64 / requests.max(1) as f64
    );
    println!(
        "  ratio:                         {:>9.1}x",
        rate / serial_rate
    );
}
