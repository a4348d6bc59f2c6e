//! `tapelog forward` from a Teleport cluster: `cargo bench -p tapelog-forward --bench teleport`.
//!
//! The Auth API test double (tapelog-teleport's `double`, mutual TLS over loopback) holds
//! 20,000 audit events of today; they go to the in_http receiver of the tests (TLS with
//! client certificates, 25 ms added to every request, as in the `forward` bench). Measured in
//! the same run, each into a fresh receiver and state:
//!
//! 1. upstream's polling shape (the baseline): pages of `GetUnstructuredEvents` with limit 20,
//!    each event posted alone, one request at a time (teleport-event-handler's legacy mode),
//!    for a fixed time;
//! 2. `tapelog forward` in polling mode (the double answers the export probe with
//!    `Unimplemented`), defaults (`--batch 20`);
//! 3. `tapelog forward` in bulk export mode (chunks of 500 events, three at once).
//!
//! Prints events/s and the ratios to the baseline. Run as a test (`cargo test -p
//! tapelog-forward --bench teleport`) it exports 300 events per mode and checks they all
//! arrived.

#[allow(clippy::unwrap_used)]
#[path = "../../../tests/integration/util/fluentd.rs"]
mod fluentd;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tapelog_core::{AuditEvent, Timestamp};
use tapelog_forward::http::{HttpConfig, HttpOutput};
use tapelog_forward::{Destination, ForwardArgs, Output};
use tapelog_teleport::double::Double;
use tapelog_teleport::{AuthClient, Credentials, CredentialsSource, EventQuery};

fn event(i: usize, t: Timestamp) -> AuditEvent {
    let json = format!(
        r#"{{"event":"user.login","code":"T1000I","uid":"tp-{i:07}","time":"{}","cluster_name":"bench","user":"u{i}","success":true}}"#,
        t.to_rfc3339()
    );
    AuditEvent::from_json(&json).unwrap_or_else(|e| panic!("{e}"))
}

fn output(f: &fluentd::Fluentd, pki: &fluentd::Pki, tag: &str) -> HttpOutput {
    HttpOutput::new(&HttpConfig {
        url: format!("{}/{tag}", f.url),
        session_url: format!("{}/session", f.url),
        ca: Some(pki.ca.clone()),
        identity: Some(pki.client.clone()),
        max_connections: 10,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the exporter against `double` into `f`; returns its events/s.
fn exporter(
    rt: &tokio::runtime::Runtime,
    double: &Double,
    f: &fluentd::Fluentd,
    pki: &fluentd::Pki,
    state: &Path,
    start: Timestamp,
    events: usize,
) -> f64 {
    let p = |x: &Path| x.display().to_string();
    let env = |name: &str| -> Option<String> {
        match name {
            "FDFWD_TELEPORT_ADDR" => Some(double.addr()),
            "FDFWD_TELEPORT_IDENTITY" => Some(p(&double.identity_file())),
            "FDFWD_STORAGE" => Some(p(state)),
            "FDFWD_FLUENTD_URL" => Some(format!("{}/test.log", f.url)),
            "FDFWD_FLUENTD_SESSION_URL" => Some(format!("{}/session", f.url)),
            "FDFWD_FLUENTD_CA" => Some(p(&pki.ca)),
            "FDFWD_FLUENTD_CERT" => Some(p(&pki.client.0)),
            "FDFWD_FLUENTD_KEY" => Some(p(&pki.client.1)),
            "FDFWD_START_TIME" => Some(start.to_rfc3339()),
            "FDFWD_EXIT_ON_LAST_EVENT" => Some("true".into()),
            "FDFWD_TIMEOUT" => Some("100ms".into()),
            _ => None,
        }
    };
    let opts = ForwardArgs::default()
        .resolve_with(env)
        .unwrap_or_else(|e| panic!("{e}"));
    let out: Arc<dyn Output> = Arc::new(output(f, pki, "test.log"));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let begun = Instant::now();
    let summary = rt
        .block_on(tapelog_forward::run_with_output(opts, out, rx))
        .unwrap_or_else(|e| panic!("forward: {e}"));
    let elapsed = begun.elapsed().as_secs_f64();
    let got = f
        .records()
        .iter()
        .filter(|(tag, _)| tag == "test.log")
        .count();
    assert_eq!(got, events, "every event arrived");
    assert_eq!(summary.events as usize, events);
    events as f64 / elapsed
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (events, budget) = if bench {
        (20_000, Duration::from_secs(4))
    } else {
        (300, Duration::from_millis(300))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let pki = fluentd::Pki::new(&tmp.path().join("pki"));
    let double = rt
        .block_on(Double::start())
        .unwrap_or_else(|e| panic!("double: {e}"));
    double.set_chunk_size(500);
    // Today's events, spread over the last minutes (never in the future).
    let now = tapelog_audit::emit::system_clock();
    let midnight = Timestamp::from_unix_nanos(
        (now.unix_nanos() / 1_000_000_000).div_euclid(86_400) * 86_400 * 1_000_000_000,
    );
    let span = (now.unix_nanos() - midnight.unix_nanos()).max(1);
    double.add_events((0..events).map(|i| {
        event(
            i,
            Timestamp::from_unix_nanos(midnight.unix_nanos() + span * i as i128 / events as i128),
        )
    }));

    // 1. Upstream's polling shape: pages of 20, one event per request, serially.
    let base = fluentd::Fluentd::start(&pki);
    base.set_latency(Duration::from_millis(25));
    let serial = output(&base, &pki, "serial.log");
    let creds = Credentials::load(&CredentialsSource::IdentityFile(double.identity_file()))
        .unwrap_or_else(|e| panic!("{e}"));
    let begun = Instant::now();
    let mut sent = 0usize;
    rt.block_on(async {
        let client = AuthClient::connect(&double.addr(), &creds)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut key = String::new();
        'pages: while begun.elapsed() < budget {
            let mut q = EventQuery::new(midnight, now, 20);
            q.start_key = key.clone();
            let page = client
                .get_unstructured_events(&q)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            for e in page.items {
                serial
                    .send(Destination::Audit, &[e.json])
                    .await
                    .unwrap_or_else(|e| panic!("serial send: {e}"));
                sent += 1;
                if begun.elapsed() >= budget {
                    break 'pages;
                }
            }
            if page.last_key.is_empty() {
                break;
            }
            key = page.last_key;
        }
    });
    let base_rate = sent as f64 / begun.elapsed().as_secs_f64();

    // What one page of 20 costs the source alone (it bounds the polling mode: one page is
    // read at a time).
    let pages = if bench { 50 } else { 5 };
    let page_ms = rt.block_on(async {
        let client = AuthClient::connect(&double.addr(), &creds)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let begun = Instant::now();
        for _ in 0..pages {
            client
                .get_unstructured_events(&EventQuery::new(midnight, now, 20))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        begun.elapsed().as_secs_f64() * 1000.0 / f64::from(pages)
    });

    // 2. Polling mode.
    double.set_export_unimplemented(true);
    let fp = fluentd::Fluentd::start(&pki);
    fp.set_latency(Duration::from_millis(25));
    let poll_rate = exporter(
        &rt,
        &double,
        &fp,
        &pki,
        &tmp.path().join("s1"),
        midnight,
        events,
    );
    let poll_requests = fp.requests();

    // 3. Bulk export mode.
    double.set_export_unimplemented(false);
    let fe = fluentd::Fluentd::start(&pki);
    fe.set_latency(Duration::from_millis(25));
    let export_rate = exporter(
        &rt,
        &double,
        &fe,
        &pki,
        &tmp.path().join("s2"),
        midnight,
        events,
    );
    let export_requests = fe.requests();

    println!(
        "forward from a Teleport cluster (Auth API double): {events} events, 25 ms per request"
    );
    println!("  one GetUnstructuredEvents page of 20 from the double:  {page_ms:>6.1} ms");
    println!(
        "  upstream shape (pages of 20, one event a request): {base_rate:>9.1} events/s ({sent} events)"
    );
    println!(
        "  tapelog polling mode (--batch 20):                 {poll_rate:>9.1} events/s ({poll_requests} requests)  {:>7.1}x",
        poll_rate / base_rate
    );
    println!(
        "  tapelog bulk export mode (chunks of 500):          {export_rate:>9.1} events/s ({export_requests} requests)  {:>7.1}x",
        export_rate / base_rate
    );
}
