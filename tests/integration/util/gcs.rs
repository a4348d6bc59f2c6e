//! A GCS test double on loopback: no GCS emulator installs here, so the tests of Teleport's
//! GCS layout run against this in-memory server. It answers the subset of the API tapelog
//! calls — object_store's XML API client (`PUT`/`GET`/`HEAD`/`DELETE {base}/{bucket}/{object}`,
//! `PUT` with `x-goog-if-generation-match: 0` for create-if-absent, and `GET
//! {base}/{bucket}?list-type=2&prefix=…` for listings, paged with continuation tokens) plus
//! the JSON API's `POST {base}/storage/v1/b/{bucket}/o/{object}/compose` — and checks each
//! call the way GCS would (a bearer token, 1 to 32 compose sources that exist, a destination
//! name and content type). A failed check answers with an error and is kept as a
//! [`GcsDouble::violations`] entry. Every call is logged (method, kind, object, bytes in and
//! out, compose sources) so that tests can assert the sequence; compose failures can be
//! injected ([`GcsDouble::fail_next_compose`]).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use tapelog_store::layout::gcs::GcsLayout;

/// The bucket the double serves.
pub const BUCKET: &str = "tapelog-recordings";
/// The bearer token every call must carry.
pub const TOKEN: &str = "gcs-double-token";
/// Request bodies over this are refused.
const MAX_BODY: usize = 64 << 20;

/// What a call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Put,
    Get,
    Head,
    Delete,
    List,
    Compose,
    Other,
}

/// One call the double answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub kind: Kind,
    /// The object name (the destination of a compose, the prefix of a listing).
    pub object: String,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub status: u16,
    /// A compose's source names, in order.
    pub sources: Vec<String>,
}

#[derive(Clone)]
struct Object {
    data: Bytes,
    generation: u64,
    updated: SystemTime,
}

struct State {
    objects: Mutex<BTreeMap<String, Object>>,
    calls: Mutex<Vec<Call>>,
    violations: Mutex<Vec<String>>,
    fail_compose: Mutex<VecDeque<Option<(u16, String)>>>,
    generation: AtomicU64,
    /// XML API multipart uploads in progress (object_store's `put_multipart`, which joins
    /// the parts of tapelog's old layout): upload id → (object name, parts by number).
    multipart: Mutex<BTreeMap<String, Multipart>>,
    page: usize,
    /// Requests without the bearer token are served (Teleport's `endpoint=` option: an
    /// emulator reached without authentication).
    open: bool,
}

/// A double on its own runtime ([`GcsDouble::spawn_open`]).
pub struct OwnedGcsDouble {
    rt: Option<tokio::runtime::Runtime>,
    /// The double.
    pub double: GcsDouble,
}

impl Drop for OwnedGcsDouble {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The running double (stops with the test's runtime).
pub struct GcsDouble {
    /// `http://127.0.0.1:<port>`, object_store's base URL and the compose endpoint.
    pub endpoint: String,
    state: Arc<State>,
}

impl GcsDouble {
    /// Starts a double whose listings give at most `page` objects a page.
    pub async fn start(page: usize) -> GcsDouble {
        Self::start_with(page, false).await
    }

    /// A double that serves requests without a token too (what `gs://…?endpoint=` reaches).
    pub async fn start_open(page: usize) -> GcsDouble {
        Self::start_with(page, true).await
    }

    /// An open double ([`start_open`](Self::start_open)) on a runtime of its own, for code
    /// that is not async; it stops when the returned value is dropped.
    pub fn spawn_open(page: usize) -> OwnedGcsDouble {
        let (rt, double) = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let double = rt.block_on(GcsDouble::start_open(page));
            (rt, double)
        })
        .join()
        .unwrap();
        OwnedGcsDouble {
            rt: Some(rt),
            double,
        }
    }

    async fn start_with(page: usize, open: bool) -> GcsDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            objects: Mutex::new(BTreeMap::new()),
            multipart: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            fail_compose: Mutex::new(VecDeque::new()),
            generation: AtomicU64::new(1),
            page: page.max(1),
            open,
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        GcsDouble { endpoint, state }
    }

    /// object_store's GCS client of the double (base URL, bucket, a static bearer token).
    pub fn builder(&self) -> GoogleCloudStorageBuilder {
        GoogleCloudStorageBuilder::new()
            .with_bucket_name(BUCKET)
            .with_base_url(&self.endpoint)
            .with_bearer_token(TOKEN)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(30)),
            )
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(5),
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(5),
                    max_backoff: Duration::from_millis(50),
                    base: 2.0,
                },
            })
    }

    /// A plain object_store client of the double.
    pub fn store(&self) -> GoogleCloudStorage {
        self.builder().build().unwrap()
    }

    /// Teleport's layout under `prefix` of the double's bucket.
    pub fn layout(&self, prefix: &str) -> GcsLayout {
        let base = if prefix.is_empty() {
            format!("gs://{BUCKET}")
        } else {
            format!("gs://{BUCKET}/{prefix}")
        };
        GcsLayout::from_builder(self.builder(), prefix, &base).unwrap()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Forgets the calls so far.
    pub fn clear_calls(&self) {
        self.state.calls.lock().unwrap().clear();
    }

    /// The checks calls failed (empty when every call was as GCS wants it).
    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }

    /// The names of the objects, sorted.
    pub fn names(&self) -> Vec<String> {
        self.state.objects.lock().unwrap().keys().cloned().collect()
    }

    /// An object's bytes.
    pub fn object(&self, name: &str) -> Option<Bytes> {
        self.state
            .objects
            .lock()
            .unwrap()
            .get(name)
            .map(|o| o.data.clone())
    }

    /// Writes an object directly (what another GCS client, such as Teleport, would write),
    /// stamped `updated`.
    pub fn insert(&self, name: &str, data: impl Into<Bytes>, updated: SystemTime) {
        let generation = self.state.generation.fetch_add(1, Ordering::SeqCst);
        self.state.objects.lock().unwrap().insert(
            name.to_string(),
            Object {
                data: data.into(),
                generation,
                updated,
            },
        );
    }

    /// The next compose call (after those queued before) fails with `status` and GCS's JSON
    /// error carrying `message`.
    pub fn fail_next_compose(&self, status: u16, message: &str) {
        self.state
            .fail_compose
            .lock()
            .unwrap()
            .push_back(Some((status, message.to_string())));
    }

    /// The next compose call (after those queued before) is served as usual.
    pub fn pass_next_compose(&self) {
        self.state.fail_compose.lock().unwrap().push_back(None);
    }
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Days since 1970-01-01 to (year, month, day) (the proleptic Gregorian calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32, i64) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u64;
    let (y, m, day) = civil(days);
    (
        y,
        m,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis(),
        days,
    )
}

/// `2024-05-01T12:00:00.123Z` (the listing's `LastModified`).
fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms, _) = split_time(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

/// `Wed, 01 May 2024 12:00:00 GMT` (the `Last-Modified` header).
fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, _, days) = split_time(t);
    format!(
        "{}, {d:02} {} {y:04} {hh:02}:{mm:02}:{ss:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize]
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn json_error(status: u16, message: &str) -> (StatusCode, Vec<(&'static str, String)>, Bytes) {
    let body = serde_json::json!({ "error": { "code": status, "message": message } });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        vec![("content-type", "application/json".to_string())],
        Bytes::from(body.to_string()),
    )
}

fn plain(status: StatusCode, text: &str) -> (StatusCode, Vec<(&'static str, String)>, Bytes) {
    (status, Vec::new(), Bytes::from(text.to_string()))
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = query(&req);
    let auth_ok = state.open
        || req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"));
    let if_generation = req
        .headers()
        .get("x-goog-if-generation-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ranged = req.headers().contains_key("range");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut call = Call {
        method: method.to_string(),
        kind: Kind::Other,
        object: String::new(),
        bytes_in: body.len(),
        bytes_out: 0,
        status: 0,
        sources: Vec::new(),
    };
    let violation = |what: String| state.violations.lock().unwrap().push(what);
    let (status, headers, out) = if !auth_ok {
        violation(format!("{method} {path}: no bearer token"));
        json_error(401, "no bearer token")
    } else if body.len() > MAX_BODY {
        violation(format!("{method} {path}: body of {} bytes", body.len()));
        json_error(413, "too large")
    } else if let Some(rest) = path.strip_prefix("/storage/v1/b/") {
        call.kind = Kind::Compose;
        compose(&state, &method, rest, &body, &mut call, &violation)
    } else {
        let rest = path.trim_start_matches('/');
        let (bucket, object) = rest.split_once('/').unwrap_or((rest, ""));
        let object = percent_decode(object, false);
        call.object = object.clone();
        if percent_decode(bucket, false) != BUCKET {
            violation(format!("{method} {path}: unknown bucket"));
            plain(StatusCode::NOT_FOUND, "no such bucket")
        } else if object.is_empty() {
            call.kind = Kind::List;
            list(&state, &method, &q, &mut call, &violation)
        } else if let Some(answer) = multipart_call(&state, &method, &object, &q, &body, &mut call)
        {
            answer
        } else {
            object_call(
                &state,
                &method,
                &object,
                body,
                if_generation,
                ranged,
                &mut call,
                &violation,
            )
        }
    };
    call.status = status.as_u16();
    call.bytes_out = out.len();
    state.calls.lock().unwrap().push(call);
    let mut resp = Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    Ok(resp.body(Full::new(out)).unwrap())
}

type Answer = (StatusCode, Vec<(&'static str, String)>, Bytes);

/// A multipart upload in progress: its object's name and its parts by number.
type Multipart = (String, BTreeMap<u32, Bytes>);

/// The XML API's multipart calls (`POST ?uploads`, `PUT ?partNumber&uploadId`,
/// `POST ?uploadId` with the part list, `DELETE ?uploadId`); `None` for any other call.
fn multipart_call(
    state: &State,
    method: &Method,
    name: &str,
    q: &[(String, String)],
    body: &Bytes,
    call: &mut Call,
) -> Option<Answer> {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let mut uploads = state.multipart.lock().unwrap();
    let xml = |text: String| {
        (
            StatusCode::OK,
            vec![("content-type", "application/xml".to_string())],
            Bytes::from(text),
        )
    };
    if *method == Method::POST && get("uploads").is_some() {
        call.kind = Kind::Other;
        let id = format!("mp{}", state.generation.fetch_add(1, Ordering::SeqCst));
        uploads.insert(id.clone(), (name.to_string(), BTreeMap::new()));
        return Some(xml(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{name}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"
        )));
    }
    let id = get("uploadId")?;
    call.kind = Kind::Other;
    let Some((key, parts)) = uploads.get_mut(&id) else {
        return Some(plain(StatusCode::NOT_FOUND, "no such upload"));
    };
    if key != name {
        return Some(plain(StatusCode::BAD_REQUEST, "upload of another object"));
    }
    match (method.clone(), get("partNumber")) {
        (Method::PUT, Some(n)) => {
            let Ok(n) = n.parse::<u32>() else {
                return Some(plain(StatusCode::BAD_REQUEST, "part number"));
            };
            parts.insert(n, body.clone());
            Some((
                StatusCode::OK,
                vec![("etag", format!("\"p{n}-{}\"", body.len()))],
                Bytes::new(),
            ))
        }
        (Method::POST, None) => {
            // The part list: the numbers in order (`<PartNumber>n</PartNumber>`).
            let text = String::from_utf8_lossy(body);
            let mut data = Vec::new();
            for chunk in text.split("<PartNumber>").skip(1) {
                let n = chunk
                    .split('<')
                    .next()
                    .and_then(|n| n.trim().parse::<u32>().ok());
                match n.and_then(|n| parts.get(&n)) {
                    Some(p) => data.extend_from_slice(p),
                    None => return Some(plain(StatusCode::BAD_REQUEST, "unknown part")),
                }
            }
            let o = Object {
                data: Bytes::from(data),
                generation: state.generation.fetch_add(1, Ordering::SeqCst),
                updated: SystemTime::now(),
            };
            let etag = format!("\"g{}\"", o.generation);
            state.objects.lock().unwrap().insert(name.to_string(), o);
            uploads.remove(&id);
            Some(xml(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{name}</Key><ETag>{etag}</ETag></CompleteMultipartUploadResult>"
            )))
        }
        (Method::DELETE, None) => {
            uploads.remove(&id);
            Some((StatusCode::NO_CONTENT, Vec::new(), Bytes::new()))
        }
        _ => Some(plain(StatusCode::BAD_REQUEST, "multipart call")),
    }
}

#[allow(clippy::too_many_arguments)]
fn object_call(
    state: &State,
    method: &Method,
    name: &str,
    body: Bytes,
    if_generation: Option<String>,
    ranged: bool,
    call: &mut Call,
    violation: &dyn Fn(String),
) -> Answer {
    let mut objects = state.objects.lock().unwrap();
    let meta = |o: &Object, with_length: bool| {
        let mut h = vec![
            ("etag", format!("\"g{}\"", o.generation)),
            ("last-modified", http_date(o.updated)),
            ("x-goog-generation", o.generation.to_string()),
        ];
        if with_length {
            h.push(("content-length", o.data.len().to_string()));
        }
        h
    };
    match *method {
        Method::PUT => {
            call.kind = Kind::Put;
            match if_generation.as_deref() {
                None => {}
                Some("0") if objects.contains_key(name) => {
                    return plain(StatusCode::PRECONDITION_FAILED, "exists");
                }
                Some("0") => {}
                Some(other) => {
                    violation(format!("PUT {name}: if-generation-match {other}"));
                    return plain(StatusCode::NOT_IMPLEMENTED, "generation match");
                }
            }
            let o = Object {
                data: body,
                generation: state.generation.fetch_add(1, Ordering::SeqCst),
                updated: SystemTime::now(),
            };
            let h = meta(&o, false);
            objects.insert(name.to_string(), o);
            (StatusCode::OK, h, Bytes::new())
        }
        Method::GET | Method::HEAD => {
            let head = *method == Method::HEAD;
            call.kind = if head { Kind::Head } else { Kind::Get };
            if ranged {
                violation(format!("{method} {name}: a range (the double has none)"));
            }
            match objects.get(name) {
                None => plain(StatusCode::NOT_FOUND, "no such object"),
                Some(o) => {
                    let data = if head { Bytes::new() } else { o.data.clone() };
                    (StatusCode::OK, meta(o, head), data)
                }
            }
        }
        Method::DELETE => {
            call.kind = Kind::Delete;
            match objects.remove(name) {
                None => plain(StatusCode::NOT_FOUND, "no such object"),
                Some(_) => (StatusCode::NO_CONTENT, Vec::new(), Bytes::new()),
            }
        }
        _ => {
            violation(format!("{method} {name}: not a GCS object call"));
            plain(StatusCode::METHOD_NOT_ALLOWED, "method")
        }
    }
}

fn list(
    state: &State,
    method: &Method,
    q: &[(String, String)],
    call: &mut Call,
    violation: &dyn Fn(String),
) -> Answer {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if *method != Method::GET || get("list-type") != Some("2") {
        violation(format!("{method} bucket {q:?}: not a list call"));
        return plain(StatusCode::BAD_REQUEST, "list");
    }
    let prefix = get("prefix").unwrap_or("").to_string();
    call.object = prefix.clone();
    let delimiter = get("delimiter");
    let after = get("continuation-token")
        .or(get("start-after"))
        .map(str::to_string);
    let max = get("max-keys")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .min(state.page);
    let objects = state.objects.lock().unwrap();
    let mut contents = String::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut count = 0;
    let mut last = None;
    let mut more = false;
    for (k, o) in objects.iter() {
        if !k.starts_with(&prefix) || after.as_ref().is_some_and(|a| k.as_str() <= a.as_str()) {
            continue;
        }
        if count == max {
            more = true;
            break;
        }
        if let Some(d) = delimiter
            && let Some(i) = k[prefix.len()..].find(d)
        {
            let p = k[..prefix.len() + i + d.len()].to_string();
            if prefixes.last() != Some(&p) {
                prefixes.push(p);
            }
            last = Some(k.clone());
            continue;
        }
        contents.push_str(&format!(
            "<Contents><Key>{}</Key><Size>{}</Size><LastModified>{}</LastModified><ETag>\"g{}\"</ETag></Contents>",
            xml_escape(k),
            o.data.len(),
            rfc3339(o.updated),
            o.generation
        ));
        count += 1;
        last = Some(k.clone());
    }
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>{BUCKET}</Name><Prefix>{}</Prefix><KeyCount>{count}</KeyCount>",
        xml_escape(&prefix)
    );
    xml.push_str(&contents);
    for p in prefixes {
        xml.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            xml_escape(&p)
        ));
    }
    if let (true, Some(l)) = (more, last) {
        xml.push_str(&format!(
            "<IsTruncated>true</IsTruncated><NextContinuationToken>{}</NextContinuationToken>",
            xml_escape(&l)
        ));
    }
    xml.push_str("</ListBucketResult>");
    (
        StatusCode::OK,
        vec![("content-type", "application/xml".to_string())],
        Bytes::from(xml),
    )
}

fn compose(
    state: &State,
    method: &Method,
    rest: &str,
    body: &[u8],
    call: &mut Call,
    violation: &dyn Fn(String),
) -> Answer {
    // {bucket}/o/{destination}/compose
    let parsed = rest
        .split_once("/o/")
        .and_then(|(b, r)| Some((b, r.strip_suffix("/compose")?)));
    let Some((bucket, dest)) = parsed else {
        violation(format!("{method} /storage/v1/b/{rest}: not a compose call"));
        return json_error(400, "not a compose call");
    };
    let dest = percent_decode(dest, false);
    call.object = dest.clone();
    if *method != Method::POST || percent_decode(bucket, false) != BUCKET {
        violation(format!("{method} compose into {bucket}/{dest}"));
        return json_error(400, "compose is a POST to a known bucket");
    }
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            violation(format!("compose {dest}: body is not JSON: {e}"));
            return json_error(400, "body is not JSON");
        }
    };
    let sources: Vec<String> = json
        .get("sourceObjects")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    call.sources = sources.clone();
    if let Some(Some((status, message))) = state.fail_compose.lock().unwrap().pop_front() {
        return json_error(status, &message);
    }
    if sources.is_empty() || sources.len() > 32 {
        violation(format!("compose {dest}: {} sources", sources.len()));
        return json_error(400, "a compose takes 1 to 32 source objects");
    }
    if json.pointer("/destination/contentType").is_none() || dest.is_empty() {
        violation(format!("compose {dest}: no destination or content type"));
        return json_error(400, "destination");
    }
    let mut objects = state.objects.lock().unwrap();
    let mut data = Vec::new();
    for s in &sources {
        match objects.get(s) {
            Some(o) => data.extend_from_slice(&o.data),
            None => return json_error(404, &format!("Object {s} not found")),
        }
    }
    let o = Object {
        data: Bytes::from(data),
        generation: state.generation.fetch_add(1, Ordering::SeqCst),
        updated: SystemTime::now(),
    };
    let resource = serde_json::json!({
        "kind": "storage#object",
        "bucket": BUCKET,
        "name": dest,
        "size": o.data.len().to_string(),
        "generation": o.generation.to_string(),
        "componentCount": sources.len(),
    });
    objects.insert(dest, o);
    (
        StatusCode::OK,
        vec![("content-type", "application/json".to_string())],
        Bytes::from(resource.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_123);
        assert_eq!(rfc3339(t), "2024-05-01T12:00:00.123Z");
        assert_eq!(http_date(t), "Wed, 01 May 2024 12:00:00 GMT");
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
    }
}
