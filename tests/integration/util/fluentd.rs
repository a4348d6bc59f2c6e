//! An in-process receiver that answers as a real Fluentd 1.16 `in_http` source with
//! `client_cert_auth true` does (docs/forward.md, "How Fluentd's in_http answers"):
//!
//! - TLS with client certificates verified for real (rustls `WebPkiClientVerifier`, no
//!   anonymous clients): no certificate, or one from another CA, fails the handshake;
//! - `200` with an empty body and `Content-Type: text/plain` on success;
//! - `400 Received event is not json` on invalid JSON, `400 invalid time format…` on an
//!   unparseable `time`, `413` above 32 MB;
//! - the tag is the path; a JSON array is one record per element; `time` is removed from the
//!   stored record (`keep_time_key false`).
//!
//! Fault injection: latency per request, "down" (connections are accepted and dropped,
//! requests on open connections fail), and a predicate whose matching records get a 400.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tapelog_api::Role;
use tapelog_api::tls::certs::CertAuthority;

/// in_http's `body_size_limit` default.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;

type Predicate = Box<dyn Fn(&serde_json::Value) -> bool + Send + Sync>;

#[derive(Default)]
struct Inner {
    records: Mutex<Vec<(String, serde_json::Value)>>,
    latency_ms: AtomicU64,
    down: AtomicBool,
    reject: Mutex<Option<Predicate>>,
    requests: AtomicU64,
    rejected: AtomicU64,
    /// Connections dropped and requests failed while down.
    refused: AtomicU64,
    /// When the first request came and the last answer left: the span a sender kept the
    /// receiver busy (benchmarks).
    span: Mutex<Option<(std::time::Instant, std::time::Instant)>>,
}

/// Certificates written for a test: the receiver's CA and server cert, a client cert it
/// accepts, and one from another CA.
pub struct Pki {
    /// The directory.
    pub dir: PathBuf,
    /// CA certificate (PEM file).
    pub ca: PathBuf,
    /// Client certificate and key signed by the CA.
    pub client: (PathBuf, PathBuf),
    /// Client certificate and key from another CA.
    pub rogue: (PathBuf, PathBuf),
    server: (String, String),
    ca_cert: String,
}

impl Pki {
    /// Makes and writes the certificates into `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = CertAuthority::new("fluentd test CA").unwrap();
        let rogue_ca = CertAuthority::new("rogue CA").unwrap();
        let server = ca
            .server(&["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
        let client = ca.client("forwarder", Role::Admin).unwrap();
        let rogue = rogue_ca.client("forwarder", Role::Admin).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            dir: dir.to_path_buf(),
            ca: write("ca.crt", &ca.pem().cert),
            client: (
                write("client.crt", &client.cert),
                write("client.key", &client.key),
            ),
            rogue: (
                write("rogue.crt", &rogue.cert),
                write("rogue.key", &rogue.key),
            ),
            server: (server.cert, server.key),
            ca_cert: ca.pem().cert.clone(),
        }
    }
}

/// A running receiver; stops when dropped.
pub struct Fluentd {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Fluentd {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn pem_certs(text: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn tls_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let provider = tapelog_api::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&pki.ca_cert) {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem_certs(&pki.server.0), key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Fluentd's `time_format %Y-%m-%dT%H:%M:%S` (what follows the seconds is ignored).
fn time_ok(v: &serde_json::Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    if b.len() < 19 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

fn answer(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "text/plain")
        .header("Connection", "Keep-Alive")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    if inner.down.load(Ordering::SeqCst) {
        inner.refused.fetch_add(1, Ordering::SeqCst);
        return Err(std::io::Error::other("down"));
    }
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let came = std::time::Instant::now();
    let latency = inner.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let tag = req.uri().path().trim_start_matches('/').to_string();
    // Read to the end (so the client can read the answer), keeping at most the limit.
    let mut body_in = req.into_body();
    let mut body = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body_in.frame().await {
        let Ok(frame) = frame else {
            return Err(std::io::Error::other("body"));
        };
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= BODY_LIMIT {
                body.extend_from_slice(&data);
            } else if total > 4 * BODY_LIMIT {
                return Err(std::io::Error::other("body far too large"));
            }
        }
    }
    if total > BODY_LIMIT {
        return Ok(answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Payload Too Large",
        ));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Ok(answer(
            StatusCode::BAD_REQUEST,
            "400 Bad Request\nReceived event is not json",
        ));
    };
    let items = match value {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    let mut records = Vec::with_capacity(items.len());
    for mut item in items {
        let Some(obj) = item.as_object_mut() else {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                "400 Bad Request\nReceived event is not json",
            ));
        };
        if let Some(t) = obj.remove("time")
            && !time_ok(&t)
        {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                &format!(
                    "400 Bad Request\ninvalid time format: value = {t}, error_class = ArgumentError"
                ),
            ));
        }
        let rejected = inner
            .reject
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|p| p(&item));
        if rejected {
            inner.rejected.fetch_add(1, Ordering::SeqCst);
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                "400 Bad Request\ninvalid time format: injected",
            ));
        }
        records.push((tag.clone(), item));
    }
    inner.records.lock().unwrap().extend(records);
    let left = std::time::Instant::now();
    let mut span = inner.span.lock().unwrap();
    *span = Some(span.map_or((came, left), |(first, _)| (first, left)));
    Ok(answer(StatusCode::OK, ""))
}

impl Fluentd {
    /// Starts a receiver on a free loopback port.
    pub fn start(pki: &Pki) -> Fluentd {
        Self::start_on(pki, 0)
    }

    /// Starts a receiver on `port` (0: a free one).
    pub fn start_on(pki: &Pki, port: u16) -> Fluentd {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fluentd")
            .enable_all()
            .build()
            .unwrap();
        let inner = Arc::new(Inner::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(pki));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(SocketAddr::from((
                [127, 0, 0, 1],
                port,
            ))))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = inner.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if state.down.load(Ordering::SeqCst) {
                    state.refused.fetch_add(1, Ordering::SeqCst);
                    drop(tcp);
                    continue;
                }
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Fluentd {
            url: format!("https://127.0.0.1:{port}"),
            inner,
            rt: Some(rt),
        }
    }

    /// Every record received, with its tag, in arrival order.
    pub fn records(&self) -> Vec<(String, serde_json::Value)> {
        self.inner.records.lock().unwrap().clone()
    }

    /// How many records were received.
    pub fn record_count(&self) -> usize {
        self.inner.records.lock().unwrap().len()
    }

    /// From the first request accepted to the last answer (200s only).
    #[allow(dead_code)]
    pub fn busy_span(&self) -> Option<Duration> {
        self.inner
            .span
            .lock()
            .unwrap()
            .map(|(first, last)| last.duration_since(first))
    }

    /// Requests answered (any status).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Connections dropped and requests failed while down.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::SeqCst)
    }

    /// Records refused by the predicate.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::SeqCst)
    }

    /// Latency added to every request.
    pub fn set_latency(&self, d: Duration) {
        self.inner
            .latency_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Down (connections dropped, requests failed) or up.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Records matching `p` make their request fail with 400.
    pub fn reject_when(&self, p: impl Fn(&serde_json::Value) -> bool + Send + Sync + 'static) {
        *self.inner.reject.lock().unwrap() = Some(Box::new(p));
    }
}
