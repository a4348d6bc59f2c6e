//! A loopback HTTP proxy in front of azurite that adds what azurite 3.35 lacks: **Put Block
//! From URL** (`BlockBlobHandler.stageBlockFromURL` throws `NotImplemented` there).
//!
//! A `PUT …?comp=block` with an `x-ms-copy-source` header is done the way the service does
//! it: the proxy GETs the source URL from azurite (the SAS in that URL authorizes the read;
//! a source naming the proxy itself is read from azurite directly), then sends azurite a plain
//! Put Block of those bytes to the same destination URL (whose own SAS authorizes the write),
//! without the copy headers. Every other request is passed through unchanged.
//!
//! Each call is logged with the bytes the client sent and received and the bytes the proxy
//! copied for it, so a test can tell which bytes tapelog itself moved.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// One call the proxy answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path (without the query).
    pub path: String,
    /// The `comp` query value, if any.
    pub comp: Option<String>,
    /// A Put Block From URL, done by the proxy.
    pub from_url: bool,
    /// Body bytes the client sent.
    pub sent: u64,
    /// Body bytes the client received.
    pub received: u64,
    /// Bytes the proxy read from the copy source (Put Block From URL only).
    pub copied: u64,
    /// The status the client got.
    pub status: u16,
}

/// A running proxy.
pub struct AzProxy {
    /// `http://127.0.0.1:<port>/devstoreaccount1`: an account URL, as azurite's.
    pub endpoint: String,
    log: Arc<Mutex<Vec<Call>>>,
}

impl AzProxy {
    /// Everything answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }

    /// The calls answered after the first `from` ones.
    pub fn calls_since(&self, from: usize) -> Vec<Call> {
        self.log.lock().unwrap()[from..].to_vec()
    }

    /// How many calls were answered so far.
    pub fn mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

struct State {
    /// `http://127.0.0.1:<azurite port>`.
    origin: reqwest::Url,
    /// `127.0.0.1:<proxy port>`.
    me: String,
    client: reqwest::Client,
    log: Arc<Mutex<Vec<Call>>>,
}

/// Starts a proxy in front of the azurite whose account URL is `azurite_endpoint`
/// (`http://127.0.0.1:<port>/<account>`), on the current tokio runtime.
pub async fn start(azurite_endpoint: &str) -> AzProxy {
    let parsed = reqwest::Url::parse(azurite_endpoint).unwrap();
    let mut origin = parsed.clone();
    origin.set_path("/");
    origin.set_query(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(State {
        origin,
        me: me.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        log: log.clone(),
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    AzProxy {
        endpoint: format!("http://{me}{}", parsed.path().trim_end_matches('/')),
        log,
    }
}

/// Headers a hop must not copy.
fn hop(name: &str) -> bool {
    matches!(
        name,
        "host" | "content-length" | "connection" | "transfer-encoding" | "keep-alive"
    )
}

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
) -> (StatusCode, Vec<(String, String)>, Bytes) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (
        status,
        vec![("x-ms-error-code".into(), code.into())],
        Bytes::from(body),
    )
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = state.origin.join(pq.trim_start_matches('/')).unwrap();
    let query: Vec<(String, String)> = target.query_pairs().into_owned().collect();
    let comp = query
        .iter()
        .find(|(k, _)| k == "comp")
        .map(|(_, v)| v.clone());
    let source = headers
        .get("x-ms-copy-source")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let from_url = method == Method::PUT && comp.as_deref() == Some("block") && source.is_some();

    let mut copied = 0u64;
    let mut out_body = body.clone();
    let mut skip: Vec<&str> = Vec::new();
    let mut early = None;
    if let (true, Some(source)) = (from_url, &source) {
        skip = vec![
            "x-ms-copy-source",
            "x-ms-copy-source-authorization",
            "x-ms-source-range",
            "x-ms-source-content-md5",
            "x-ms-source-content-crc64",
        ];
        // The service reads the source itself; a source on this proxy is azurite's blob.
        let mut src = match reqwest::Url::parse(source) {
            Ok(u) => u,
            Err(_) => {
                early = Some(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    "bad x-ms-copy-source",
                ));
                reqwest::Url::parse("http://invalid/").unwrap()
            }
        };
        if early.is_none() {
            let authority = format!(
                "{}:{}",
                src.host_str().unwrap_or(""),
                src.port().unwrap_or(80)
            );
            if authority == state.me {
                src.set_port(state.origin.port()).unwrap();
            }
            match state.client.get(src).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => {
                        copied = b.len() as u64;
                        out_body = b;
                    }
                    Err(e) => {
                        early = Some(error(
                            StatusCode::BAD_GATEWAY,
                            "CannotVerifyCopySource",
                            &e.to_string(),
                        ));
                    }
                },
                Ok(r) => {
                    let s = r.status();
                    early = Some(error(
                        s,
                        "CannotVerifyCopySource",
                        &format!("source answered {s}"),
                    ));
                }
                Err(e) => {
                    early = Some(error(
                        StatusCode::BAD_GATEWAY,
                        "CannotVerifyCopySource",
                        &e.to_string(),
                    ));
                }
            }
        }
    }
    let (status, resp_headers, resp_body) = match early {
        Some(e) => e,
        None => {
            let out_len = out_body.len();
            let mut rb = state.client.request(method.clone(), target).body(out_body);
            for (k, v) in headers.iter() {
                if !hop(k.as_str()) && !skip.contains(&k.as_str()) {
                    rb = rb.header(k, v);
                }
            }
            // Azure wants a length even for an empty body (an empty blob, a staged copy).
            if headers.contains_key("content-length") || from_url {
                rb = rb.header("content-length", out_len.to_string());
            }
            match rb.send().await {
                Ok(r) => {
                    let status = r.status();
                    let hs: Vec<(String, String)> = r
                        .headers()
                        .iter()
                        .filter(|(k, _)| {
                            // HEAD keeps the size of what it describes.
                            !matches!(
                                k.as_str(),
                                "connection" | "transfer-encoding" | "keep-alive"
                            ) && (k.as_str() != "content-length" || method == Method::HEAD)
                        })
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let b = r.bytes().await.unwrap_or_default();
                    (status, hs, b)
                }
                Err(e) => error(StatusCode::BAD_GATEWAY, "ProxyError", &e.to_string()),
            }
        }
    };
    state.log.lock().unwrap().push(Call {
        method: method.to_string(),
        path: uri.path().to_string(),
        comp,
        from_url,
        sent: body.len() as u64,
        received: resp_body.len() as u64,
        copied,
        status: status.as_u16(),
    });
    let mut resp = Response::builder().status(status);
    for (k, v) in resp_headers {
        resp = resp.header(k, v);
    }
    Ok(resp.body(Full::new(resp_body)).unwrap())
}
