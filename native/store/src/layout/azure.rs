#![cfg(feature = "azure")]
//! Teleport's Azure layout (`azsessions`): recordings and uploads kept exactly as Teleport's
//! Azure Blob Storage handler keeps them, so that one storage account serves both tools.
//!
//! | what | where |
//! |---|---|
//! | finished recording | block blob `<sid>` (no `.tar`) in the session container (default `session`) |
//! | upload marker | empty block blob `upload/<sid>/<upload-id>` in the inprogress container (default `inprogress`), created with `If-None-Match: *`; the upload id is a random UUID v4 |
//! | part n | block blob `part/<sid>/<upload-id>/<n>` in the inprogress container |
//!
//! | operation | calls |
//! |---|---|
//! | create | Put Blob of the marker (`PutMode::Create`) |
//! | upload part n | Get Blob Properties of the marker (a gone upload is [`UploadError::NotFound`]), Put Blob of the part |
//! | list uploads | flat List Blobs of `upload/`; names `<sid>/<uid>` with two UUIDs, others skipped; initiated = the marker's last-modified time (a marker is never rewritten, so it is its creation time); oldest first |
//! | list parts | List Blobs of `part/<sid>/<uid>/`, numbers parsed, sorted; ETag as listed |
//! | complete | Put Block From URL of each part into `<sid>` (5 at a time, block ids base64 of random UUIDs, all 48 characters long, as Teleport's), then Put Block List with `If-None-Match: *`; then the marker is deleted, then the parts |
//! | abort | delete the marker, then the parts |
//!
//! **Decisions.**
//! - The service copies the parts (Put Block From URL): no recording byte passes through
//!   tapelog while completing. The copy source is the part's URL with a read-only service
//!   SAS valid for 15 minutes when the account is reached with its shared key, or the same
//!   bearer token (`x-ms-copy-source-authorization`) when it is reached with a token.
//! - Put Block From URL is authorized by a write-only service SAS on the destination URL (not
//!   a `SharedKey` header): the request then carries no signature over its headers, which
//!   keeps it valid when a faithful stand-in service rewrites it (the tests' proxy in front of
//!   Azurite). Put Block List and the fallback's Put Block are signed with `SharedKey`.
//! - **Fallback.** A service that answers Put Block From URL with 501 / `APINotImplemented`
//!   (Azurite 3.35 does: `stageBlockFromURL` is not implemented) gets each part read back and
//!   staged with a plain Put Block instead; the layout stays Teleport's and completion works.
//!   The layout then stops trying Put Block From URL; [`AzureLayout::stats`] counts both ways.
//! - Zero parts: Teleport has no special case (it would commit an empty blob). Here, as in
//!   the S3 layout, an upload with no parts leaves no recording: the marker is deleted.
//! - The recording already exists (Put Block List answers `BlobAlreadyExists` or 412): as
//!   Teleport, only the marker is deleted (the parts stay) and the completion succeeds; the
//!   recording is left as it was.
//! - Completing an upload whose marker is gone is [`UploadError::NotFound`] (completed or
//!   aborted elsewhere), as S3's `NoSuchUpload`.
//! - [`AzureLayout::recording_url`] is the recording blob's own URL (`<account URL>/<session
//!   container>/<sid>`), what Teleport's `GetUploadMetadata` gives; another base can be set
//!   with [`AzureLayout::with_url_base`].
//!
//! **Why tapelog signs these two calls itself.** object_store's `MicrosoftAzure` (one instance
//! per container) does the plain blob calls, but it has no Put Block From URL, and its Put
//! Block List only commits the block ids of its own in-process multipart writer. Its request
//! signer and SAS generator are private to it, as are the bytes of an `AzureAccessKey`, so the
//! two calls are made with reqwest and signed here: [`SharedKey`] implements Azure's
//! "Authorize with Shared Key" (Blob service, version 2015-02-21 and later) and "Create a
//! service SAS" (version 2020-12-06 and later) string-to-sign rules. With a token credential
//! from object_store's chain ([`AzureCredential::BearerToken`]) the calls carry it as a bearer
//! token; with a SAS ([`AzureCredential::SASToken`]) its pairs go on both URLs. The reqwest
//! client follows the account URL only (object_store's client options, such as a proxy, are
//! not applied to it).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::azure::{
    AzureConfigKey, AzureCredential, AzureCredentialProvider, MicrosoftAzureBuilder,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::Digest as _;
use tapelog_audit::clock::SharedClock;
use tapelog_core::codec::EncodedPart;
use url::Url;

use crate::{MultipartUploader, StreamPart, StreamUpload, UploadError, check_id};

/// Teleport's default container of finished recordings.
pub const DEFAULT_SESSION_CONTAINER: &str = "session";
/// Teleport's default container of uploads in progress.
pub const DEFAULT_INPROGRESS_CONTAINER: &str = "inprogress";
/// The REST API version sent (`x-ms-version`) and signed into SAS tokens (`sv`).
pub const API_VERSION: &str = "2023-11-03";
/// Parts staged at once while completing (Teleport's parallelism).
pub const COMPLETE_PARALLELISM: usize = 5;
/// How long a SAS made for one call is valid.
const SAS_LIFETIME_S: i64 = 15 * 60;
/// A SAS starts this much before now, for clocks a little behind the service's.
const SAS_SKEW_S: i64 = 5 * 60;
/// The largest part read back (fallback staging, resume): a Put Block takes at most 4000 MiB,
/// tapelog's parts are a few MiB.
pub const MAX_PART_BYTES: u64 = 512 << 20;
/// At most this much of an error answer is read.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// The two containers of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureContainers {
    /// Finished recordings (`session`).
    pub session: String,
    /// Upload markers and parts (`inprogress`).
    pub inprogress: String,
}

impl Default for AzureContainers {
    fn default() -> Self {
        AzureContainers {
            session: DEFAULT_SESSION_CONTAINER.to_string(),
            inprogress: DEFAULT_INPROGRESS_CONTAINER.to_string(),
        }
    }
}

/// How the layout signs in to the account.
#[derive(Clone)]
pub enum AzureAuth {
    /// The account's shared key (base64, as `AZURE_STORAGE_ACCOUNT_KEY`).
    SharedKey(String),
    /// object_store's credential chain; its tokens (or SAS) also authorize the two calls
    /// made here. A shared key from a chain can't be used (object_store keeps its bytes).
    Credential(AzureCredentialProvider),
}

impl fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AzureAuth::SharedKey(_) => "SharedKey(..)",
            AzureAuth::Credential(_) => "Credential(..)",
        })
    }
}

/// How the parts of completed uploads reached their recordings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompletionStats {
    /// Parts the service copied itself (Put Block From URL).
    pub from_url: u64,
    /// Parts read back and staged with Put Block (the service lacks Put Block From URL).
    pub fallback: u64,
}

#[derive(Default)]
struct Counters {
    from_url: AtomicU64,
    fallback: AtomicU64,
    /// Put Block From URL answered 501 once: not tried again.
    no_from_url: AtomicBool,
}

// ---------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------

/// HMAC-SHA-256 (RFC 2104) over sha2.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha2::Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = sha2::Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An account name and its shared key: `SharedKey` authorization headers and service SAS
/// tokens (see the module documentation for the rules followed).
#[derive(Clone)]
pub struct SharedKey {
    account: String,
    key: Vec<u8>,
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKey")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SharedKey {
    /// The key of `account`, given in base64.
    pub fn new(account: &str, key_base64: &str) -> Result<SharedKey, UploadError> {
        let key = B64
            .decode(key_base64.trim())
            .map_err(|e| UploadError::Service {
                service: "Azure",
                call: "SharedKey",
                message: format!("the account key is not base64: {e}"),
            })?;
        Ok(SharedKey {
            account: account.to_string(),
            key,
        })
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The `SharedKey` string-to-sign of a Blob service request (version 2015-02-21 and
    /// later: a zero `Content-Length` is signed as empty; `Date` is left empty when
    /// `x-ms-date` is sent).
    pub fn string_to_sign(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        content_length: u64,
    ) -> String {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let length = if content_length == 0 {
            String::new()
        } else {
            content_length.to_string()
        };
        let mut s = String::new();
        for field in [
            method.as_str().to_string(),
            h("content-encoding"),
            h("content-language"),
            length,
            h("content-md5"),
            h("content-type"),
            h("date"),
            h("if-modified-since"),
            h("if-match"),
            h("if-none-match"),
            h("if-unmodified-since"),
            h("range"),
        ] {
            s.push_str(&field);
            s.push('\n');
        }
        // Canonicalized headers: x-ms-*, lower case, sorted, values with runs of white space
        // folded.
        let mut ms: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-ms-"))
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes());
                let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                (k.as_str().to_string(), v)
            })
            .collect();
        ms.sort();
        for (k, v) in ms {
            s.push_str(&k);
            s.push(':');
            s.push_str(&v);
            s.push('\n');
        }
        // Canonicalized resource: /account + the encoded path, then each query parameter
        // (lower-case name, decoded values sorted and joined by commas), sorted by name.
        s.push('/');
        s.push_str(&self.account);
        s.push_str(url.path());
        let mut query: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in url.query_pairs() {
            let k = k.to_ascii_lowercase();
            match query.iter_mut().find(|(name, _)| *name == k) {
                Some((_, vals)) => vals.push(v.into_owned()),
                None => query.push((k, vec![v.into_owned()])),
            }
        }
        query.sort();
        for (k, mut vals) in query {
            vals.sort();
            s.push('\n');
            s.push_str(&k);
            s.push(':');
            s.push_str(&vals.join(","));
        }
        s
    }

    /// The `Authorization` header value of a request.
    pub fn authorization(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        content_length: u64,
    ) -> String {
        let sig = hmac_sha256(
            &self.key,
            self.string_to_sign(method, url, headers, content_length)
                .as_bytes(),
        );
        format!("SharedKey {}:{}", self.account, B64.encode(sig))
    }

    /// The string-to-sign of a service SAS for blob `container/blob` (version 2020-12-06 and
    /// later, no identifier, IP, protocol, snapshot, encryption scope or response headers).
    pub fn sas_string_to_sign(
        &self,
        container: &str,
        blob: &str,
        permissions: &str,
        start: &str,
        expiry: &str,
    ) -> String {
        [
            permissions,
            start,
            expiry,
            &format!("/blob/{}/{container}/{blob}", self.account),
            "",
            "",
            "",
            API_VERSION,
            "b",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n")
    }

    /// A service SAS for blob `container/blob` with `permissions` (`r`, `w`...) from `start`
    /// to `expiry` (Unix seconds): the query pairs to add to the blob's URL.
    pub fn service_sas(
        &self,
        container: &str,
        blob: &str,
        permissions: &str,
        start: i64,
        expiry: i64,
    ) -> Vec<(String, String)> {
        let (st, se) = (iso8601(start), iso8601(expiry));
        let sig = hmac_sha256(
            &self.key,
            self.sas_string_to_sign(container, blob, permissions, &st, &se)
                .as_bytes(),
        );
        vec![
            ("sv".into(), API_VERSION.into()),
            ("st".into(), st),
            ("se".into(), se),
            ("sr".into(), "b".into()),
            ("sp".into(), permissions.into()),
            ("sig".into(), B64.encode(sig)),
        ]
    }
}

/// Year, month, day, hour, minute, second and weekday (0 = Sunday) of Unix time `secs`, UTC.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32, usize) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a proleptic Gregorian date, with years starting in March.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7) as usize;
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
        weekday,
    )
}

/// `2024-01-02T03:04:05Z`.
fn iso8601(secs: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `Tue, 02 Jan 2024 03:04:05 GMT` (RFC 1123, as `x-ms-date` wants).
fn rfc1123(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(secs);
    let month = MONTHS[(mo as usize).saturating_sub(1) % 12];
    format!(
        "{}, {d:02} {month} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[wd]
    )
}

/// Wall seconds for signatures: always the system clock (a test clock would make tokens the
/// service refuses).
fn now_s() -> i64 {
    (crate::now_ms() / 1000) as i64
}

// ---------------------------------------------------------------------------------------
// The layout
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
enum Auth {
    Key(SharedKey),
    Provider(AzureCredentialProvider),
}

/// How a request is authorized.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authz {
    /// A write SAS on the URL (with a shared key), so no header is signed.
    SasOnUrl,
    /// A `SharedKey` header (with a shared key).
    Header,
}

/// A failed call: what the service said.
struct Failure {
    status: Option<StatusCode>,
    code: String,
    message: String,
}

impl Failure {
    fn not_implemented(&self) -> bool {
        self.status == Some(StatusCode::NOT_IMPLEMENTED)
            || self.code == "APINotImplemented"
            || self.code == "NotImplemented"
    }

    fn already_exists(&self) -> bool {
        self.code == "BlobAlreadyExists"
            || self.status == Some(StatusCode::PRECONDITION_FAILED)
            || (self.status == Some(StatusCode::CONFLICT) && self.code.is_empty())
    }

    fn into_error(self, call: &'static str) -> UploadError {
        let status = self.status.map(|s| s.as_u16().to_string());
        UploadError::Service {
            service: "Azure",
            call,
            message: match (status, self.code.is_empty()) {
                (Some(s), false) => format!("{s} {}: {}", self.code, self.message),
                (Some(s), true) => format!("{s}: {}", self.message),
                (None, _) => self.message,
            },
        }
    }
}

/// Teleport's Azure layout over two containers (see the module documentation).
#[derive(Clone)]
pub struct AzureLayout {
    session: Arc<dyn ObjectStore>,
    inprogress: Arc<dyn ObjectStore>,
    http: reqwest::Client,
    /// The account URL (`https://<account>.blob.core.windows.net`, or an endpoint such as
    /// `http://127.0.0.1:10000/devstoreaccount1`); blobs are `<service>/<container>/<name>`.
    service: Url,
    auth: Auth,
    containers: AzureContainers,
    url_base: String,
    clock: SharedClock,
    counters: Arc<Counters>,
}

impl fmt::Debug for AzureLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureLayout")
            .field("service", &self.service.as_str())
            .field("containers", &self.containers)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> UploadError {
    UploadError::Service {
        service: "Azure",
        call: "configuration",
        message,
    }
}

impl AzureLayout {
    /// The layout on `account`, signing in with `auth`, at `endpoint` (the account URL, e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1` for azurite; `None`: Azure's
    /// `https://<account>.blob.core.windows.net`). Plain HTTP is allowed when the endpoint
    /// says `http://` (the caller has checked it).
    pub fn new(
        account: &str,
        auth: AzureAuth,
        endpoint: Option<&str>,
        containers: AzureContainers,
    ) -> Result<AzureLayout, UploadError> {
        let mut b = MicrosoftAzureBuilder::new().with_account(account);
        if let Some(e) = endpoint {
            b = b
                .with_endpoint(e.trim_end_matches('/').to_string())
                .with_allow_http(e.starts_with("http://"));
        }
        match auth {
            AzureAuth::SharedKey(k) => b = b.with_access_key(k),
            AzureAuth::Credential(c) => b = b.with_credentials(c),
        }
        AzureLayout::from_builder(b, containers)
    }

    /// The layout from an object_store builder configured for the account (account,
    /// credentials, endpoint or emulator, client options; no container, no URL): it is built
    /// once per container. The account key, when the builder has one, also signs the calls
    /// made here; otherwise the built store's credential provider is asked.
    pub fn from_builder(
        builder: MicrosoftAzureBuilder,
        containers: AzureContainers,
    ) -> Result<AzureLayout, UploadError> {
        let emulator = builder
            .get_config_value(&AzureConfigKey::UseEmulator)
            .is_some_and(|v| v == "true");
        let account = builder
            .get_config_value(&AzureConfigKey::AccountName)
            .or_else(|| emulator.then(|| crate::url::AZURE_EMULATOR_ACCOUNT.to_string()))
            .ok_or_else(|| config_error("no storage account named".into()))?;
        let key = builder
            .get_config_value(&AzureConfigKey::AccessKey)
            .or_else(|| {
                let other = [AzureConfigKey::Token, AzureConfigKey::SasKey]
                    .iter()
                    .any(|k| builder.get_config_value(k).is_some());
                (emulator && !other).then(|| crate::url::AZURE_EMULATOR_KEY.to_string())
            });
        let service = match builder.get_config_value(&AzureConfigKey::Endpoint) {
            Some(e) if !emulator => e,
            _ if emulator => {
                // object_store's emulator mode: the account is the first path segment.
                let base = std::env::var("AZURITE_BLOB_STORAGE_URL")
                    .unwrap_or_else(|_| "http://127.0.0.1:10000".to_string());
                format!("{}/{account}", base.trim_end_matches('/'))
            }
            _ => format!("https://{account}.blob.core.windows.net"),
        };
        let service = Url::parse(service.trim_end_matches('/'))
            .map_err(|e| config_error(format!("bad account URL {service:?}: {e}")))?;
        if service.cannot_be_a_base() || !matches!(service.scheme(), "http" | "https") {
            return Err(config_error(format!("bad account URL {service}")));
        }
        let session = builder
            .clone()
            .with_container_name(&containers.session)
            .build()?;
        let inprogress = builder
            .with_container_name(&containers.inprogress)
            .build()?;
        let auth = match key {
            Some(k) => Auth::Key(SharedKey::new(&account, &k)?),
            None => Auth::Provider(Arc::clone(session.credentials())),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| config_error(format!("HTTP client: {e}")))?;
        let url_base = format!(
            "{}/{}",
            service.as_str().trim_end_matches('/'),
            containers.session
        );
        Ok(AzureLayout {
            session: Arc::new(session),
            inprogress: Arc::new(inprogress),
            http,
            service,
            auth,
            containers,
            url_base,
            clock: tapelog_audit::clock::system(),
            counters: Arc::default(),
        })
    }

    /// The same reading wall time (upload and part times) from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> AzureLayout {
        self.clock = clock;
        self
    }

    /// Recording URLs as `<base>/<sid>` instead of the blob's own URL.
    pub fn with_url_base(mut self, base: &str) -> AzureLayout {
        self.url_base = base.trim_end_matches('/').to_string();
        self
    }

    /// The session container through object_store (where recordings are read back).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.session
    }

    /// The inprogress container through object_store (markers and parts).
    pub fn inprogress_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inprogress
    }

    /// The containers.
    pub fn containers(&self) -> &AzureContainers {
        &self.containers
    }

    /// How the parts of the uploads completed so far reached their recordings.
    pub fn stats(&self) -> CompletionStats {
        CompletionStats {
            from_url: self.counters.from_url.load(Ordering::Relaxed),
            fallback: self.counters.fallback.load(Ordering::Relaxed),
        }
    }

    /// The recording's path in the session container: Teleport's `<sid>`.
    pub fn recording_path(&self, session_id: &str) -> Path {
        Path::from(session_id)
    }

    /// The marker of `upload`: `upload/<sid>/<uid>`.
    pub fn marker_path(&self, upload: &StreamUpload) -> Path {
        Path::from(format!("upload/{}/{}", upload.session_id, upload.id))
    }

    fn parts_dir(&self, upload: &StreamUpload) -> Path {
        Path::from(format!("part/{}/{}", upload.session_id, upload.id))
    }

    /// Part `n` of `upload`: `part/<sid>/<uid>/<n>`.
    pub fn part_path(&self, upload: &StreamUpload, n: u32) -> Path {
        self.parts_dir(upload).join(n.to_string())
    }

    /// Whether `upload` is kept in this layout: its ids are UUIDs and its marker exists.
    pub async fn holds(&self, upload: &StreamUpload) -> Result<bool, UploadError> {
        if Self::check(upload).is_err() {
            return Ok(false);
        }
        match self.inprogress.head(&self.marker_path(upload)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn check(u: &StreamUpload) -> Result<(), UploadError> {
        check_id("upload id", &u.id)?;
        check_id("session id", &u.session_id)
    }

    async fn require_upload(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        if self.holds(upload).await? {
            Ok(())
        } else {
            Err(UploadError::NotFound(upload.id.clone()))
        }
    }

    /// The URL of blob `name` in `container`.
    fn blob_url(&self, container: &str, name: &str) -> Result<Url, UploadError> {
        let mut url = self.service.clone();
        url.path_segments_mut()
            .map_err(|()| config_error(format!("bad account URL {}", self.service)))?
            .pop_if_empty()
            .push(container)
            .extend(name.split('/'));
        Ok(url)
    }

    /// The credential of the account, when it comes from object_store's chain.
    async fn credential(
        &self,
        call: &'static str,
    ) -> Result<Option<Arc<AzureCredential>>, UploadError> {
        match &self.auth {
            Auth::Key(_) => Ok(None),
            Auth::Provider(p) => {
                p.get_credential()
                    .await
                    .map(Some)
                    .map_err(|e| UploadError::Service {
                        service: "Azure",
                        call,
                        message: format!("no credential: {e}"),
                    })
            }
        }
    }

    /// Authorizes a request to blob `container/blob` in `call`.
    #[allow(clippy::too_many_arguments)]
    async fn authorize(
        &self,
        call: &'static str,
        authz: Authz,
        method: &Method,
        url: &mut Url,
        headers: &mut HeaderMap,
        content_length: u64,
        (container, blob): (&str, &str),
    ) -> Result<(), UploadError> {
        let now = now_s();
        headers.insert("x-ms-version", HeaderValue::from_static(API_VERSION));
        headers.insert("x-ms-date", header_value(&rfc1123(now))?);
        match (&self.auth, authz) {
            (Auth::Key(k), Authz::SasOnUrl) => {
                let sas =
                    k.service_sas(container, blob, "w", now - SAS_SKEW_S, now + SAS_LIFETIME_S);
                url.query_pairs_mut().extend_pairs(sas);
            }
            (Auth::Key(k), Authz::Header) => {
                let v = k.authorization(method, url, headers, content_length);
                headers.insert(reqwest::header::AUTHORIZATION, header_value(&v)?);
            }
            (Auth::Provider(_), _) => match self.credential(call).await?.as_deref() {
                Some(AzureCredential::BearerToken(t)) => {
                    headers.insert(
                        reqwest::header::AUTHORIZATION,
                        header_value(&format!("Bearer {t}"))?,
                    );
                }
                Some(AzureCredential::SASToken(pairs)) => {
                    url.query_pairs_mut().extend_pairs(pairs.iter());
                }
                Some(AzureCredential::AccessKey(_)) | None => {
                    return Err(UploadError::Service {
                        service: "Azure",
                        call,
                        message: "the credential chain gave a shared key whose bytes object_store \
                                  keeps private; pass the key itself (AzureAuth::SharedKey)"
                            .into(),
                    });
                }
            },
        }
        Ok(())
    }

    /// Sends a request and returns the answer of a successful call, or what failed.
    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, Failure> {
        let r = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure {
                status: None,
                code: String::new(),
                // Without the URL: it may hold a SAS.
                message: transport_message(e.without_url()),
            })?;
        if r.status().is_success() {
            return Ok(r);
        }
        Err(failure_of(r).await)
    }

    /// Stages part `n` of `upload` as block `block_id` of the recording: Put Block From URL,
    /// or, from a service without it, the part read back and staged with Put Block.
    async fn stage(
        &self,
        upload: &StreamUpload,
        n: u32,
        block_id: &str,
    ) -> Result<(), UploadError> {
        if !self.counters.no_from_url.load(Ordering::Relaxed) {
            match self.stage_from_url(upload, n, block_id).await {
                Ok(()) => {
                    self.counters.from_url.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(f) if f.not_implemented() => {
                    self.counters.no_from_url.store(true, Ordering::Relaxed);
                }
                Err(f) => return Err(f.into_error("PutBlockFromURL")),
            }
        }
        let bytes = match self.read_part_bytes(upload, n).await? {
            Some(b) => b,
            None => {
                return Err(UploadError::NotFound(format!("{} part {n}", upload.id)));
            }
        };
        self.put_block(upload, block_id, bytes)
            .await
            .map_err(|f| f.into_error("PutBlock"))?;
        self.counters.fallback.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn stage_from_url(
        &self,
        upload: &StreamUpload,
        n: u32,
        block_id: &str,
    ) -> Result<(), Failure> {
        let sid = &upload.session_id;
        let part = self.part_path(upload, n);
        let mut source = self
            .blob_url(&self.containers.inprogress, part.as_ref())
            .map_err(failure_from)?;
        let mut url = self
            .blob_url(&self.containers.session, sid)
            .map_err(failure_from)?;
        url.query_pairs_mut()
            .append_pair("comp", "block")
            .append_pair("blockid", block_id);
        let mut headers = HeaderMap::new();
        match &self.auth {
            Auth::Key(k) => {
                let now = now_s();
                let sas = k.service_sas(
                    &self.containers.inprogress,
                    part.as_ref(),
                    "r",
                    now - SAS_SKEW_S,
                    now + SAS_LIFETIME_S,
                );
                source.query_pairs_mut().extend_pairs(sas);
            }
            Auth::Provider(_) => {
                match self
                    .credential("PutBlockFromURL")
                    .await
                    .map_err(failure_from)?
                    .as_deref()
                {
                    Some(AzureCredential::BearerToken(t)) => {
                        headers.insert(
                            "x-ms-copy-source-authorization",
                            header_value(&format!("Bearer {t}")).map_err(failure_from)?,
                        );
                    }
                    Some(AzureCredential::SASToken(pairs)) => {
                        source.query_pairs_mut().extend_pairs(pairs.iter());
                    }
                    _ => {}
                }
            }
        }
        headers.insert(
            "x-ms-copy-source",
            header_value(source.as_str()).map_err(failure_from)?,
        );
        // Required, and zero: the service reads the body from the source.
        headers.insert(
            reqwest::header::CONTENT_LENGTH,
            HeaderValue::from_static("0"),
        );
        self.authorize(
            "PutBlockFromURL",
            Authz::SasOnUrl,
            &Method::PUT,
            &mut url,
            &mut headers,
            0,
            (&self.containers.session, sid),
        )
        .await
        .map_err(failure_from)?;
        self.send(Method::PUT, url, headers, Bytes::new()).await?;
        Ok(())
    }

    async fn put_block(
        &self,
        upload: &StreamUpload,
        block_id: &str,
        bytes: Bytes,
    ) -> Result<(), Failure> {
        let sid = &upload.session_id;
        let mut url = self
            .blob_url(&self.containers.session, sid)
            .map_err(failure_from)?;
        url.query_pairs_mut()
            .append_pair("comp", "block")
            .append_pair("blockid", block_id);
        let mut headers = HeaderMap::new();
        self.authorize(
            "PutBlock",
            Authz::Header,
            &Method::PUT,
            &mut url,
            &mut headers,
            bytes.len() as u64,
            (&self.containers.session, sid),
        )
        .await
        .map_err(failure_from)?;
        self.send(Method::PUT, url, headers, bytes).await?;
        Ok(())
    }

    /// Put Block List of `ids` into the recording, only if it does not exist yet.
    async fn put_block_list(&self, upload: &StreamUpload, ids: &[String]) -> Result<(), Failure> {
        let sid = &upload.session_id;
        let mut url = self
            .blob_url(&self.containers.session, sid)
            .map_err(failure_from)?;
        url.query_pairs_mut().append_pair("comp", "blocklist");
        let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in ids {
            // Base64 needs no XML escaping.
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let body = Bytes::from(xml);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::IF_NONE_MATCH,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        self.authorize(
            "PutBlockList",
            Authz::Header,
            &Method::PUT,
            &mut url,
            &mut headers,
            body.len() as u64,
            (&self.containers.session, sid),
        )
        .await
        .map_err(failure_from)?;
        self.send(Method::PUT, url, headers, body).await?;
        Ok(())
    }

    async fn read_part_bytes(
        &self,
        upload: &StreamUpload,
        n: u32,
    ) -> Result<Option<Bytes>, UploadError> {
        match self.inprogress.get(&self.part_path(upload, n)).await {
            Ok(r) => {
                if r.meta.size > MAX_PART_BYTES {
                    return Err(UploadError::Service {
                        service: "Azure",
                        call: "GetBlob",
                        message: format!(
                            "part {n} of upload {} is {} bytes, over the {MAX_PART_BYTES} read back",
                            upload.id, r.meta.size
                        ),
                    });
                }
                Ok(Some(r.bytes().await?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_marker(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        match self.inprogress.delete(&self.marker_path(upload)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_parts(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        let dir = self.parts_dir(upload);
        let names: Vec<Path> = self
            .inprogress
            .list(Some(&dir))
            .map_ok(|o| o.location)
            .try_collect()
            .await?;
        // object_store sends these as Blob Batch requests (256 a request), as Teleport does.
        let mut deleted = self
            .inprogress
            .delete_stream(futures::stream::iter(names.into_iter().map(Ok)).boxed());
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn header_value(v: &str) -> Result<HeaderValue, UploadError> {
    HeaderValue::from_str(v).map_err(|e| config_error(format!("bad header value: {e}")))
}

fn failure_from(e: UploadError) -> Failure {
    Failure {
        status: None,
        code: String::new(),
        message: e.to_string(),
    }
}

fn transport_message(e: reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The service's error code and message of a failed answer (at most [`MAX_ERROR_BODY`] of
/// its body is read).
async fn failure_of(mut r: reqwest::Response) -> Failure {
    let status = r.status();
    let header_code = r
        .headers()
        .get(HeaderName::from_static("x-ms-error-code"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match r.chunk().await {
            Ok(Some(c)) => {
                let room = MAX_ERROR_BODY - body.len();
                body.extend_from_slice(&c[..c.len().min(room)]);
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    let code = header_code.or_else(|| tag("Code")).unwrap_or_default();
    let message = tag("Message")
        .map(|m| m.lines().next().unwrap_or("").to_string())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    Failure {
        status: Some(status),
        code,
        message,
    }
}

/// A new block id: base64 of a random UUID's text (48 characters, as Teleport's ids).
fn block_id() -> String {
    B64.encode(uuid::Uuid::new_v4().hyphenated().to_string())
}

/// The part number at the end of a part blob's name.
fn part_number(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() > 5 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    super::parse_part(name)
}

impl MultipartUploader for AzureLayout {
    async fn create_upload(&self, session_id: &str) -> Result<StreamUpload, UploadError> {
        check_id("session id", session_id)?;
        let upload = StreamUpload {
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            session_id: session_id.to_string(),
            initiated_ms: self.clock.unix_ms() as i64,
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inprogress
            .put_opts(&self.marker_path(&upload), PutPayload::new(), opts)
            .await?;
        Ok(upload)
    }

    async fn upload_part(
        &self,
        upload: &StreamUpload,
        number: u32,
        part: &EncodedPart,
    ) -> Result<StreamPart, UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
        self.require_upload(upload).await?;
        let path = self.part_path(upload, number);
        super::put_part(
            self.inprogress.as_ref(),
            &path,
            number,
            part,
            self.clock.unix_ms() as i64,
        )
        .await
    }

    async fn reserve_part(&self, upload: &StreamUpload, number: u32) -> Result<(), UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
        Ok(())
    }

    async fn list_parts(&self, upload: &StreamUpload) -> Result<Vec<StreamPart>, UploadError> {
        Self::check(upload)?;
        self.require_upload(upload).await?;
        let objects: Vec<_> = self
            .inprogress
            .list(Some(&self.parts_dir(upload)))
            .try_collect()
            .await?;
        let mut parts: Vec<StreamPart> = objects
            .iter()
            .filter_map(|o| {
                // Only `part/<sid>/<uid>/<n>` itself, nothing deeper.
                let rest = o
                    .location
                    .as_ref()
                    .strip_prefix(self.parts_dir(upload).as_ref())?
                    .strip_prefix('/')?;
                Some(StreamPart {
                    number: part_number(rest)?,
                    etag: o.e_tag.clone().unwrap_or_default(),
                    last_modified_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect();
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    async fn list_uploads(&self) -> Result<Vec<StreamUpload>, UploadError> {
        let objects: Vec<_> = self
            .inprogress
            .list(Some(&Path::from("upload")))
            .try_collect()
            .await?;
        let mut uploads: Vec<StreamUpload> = objects
            .iter()
            .filter_map(|o| {
                let (sid, uid) = o
                    .location
                    .as_ref()
                    .strip_prefix("upload/")?
                    .split_once('/')?;
                check_id("session id", sid).ok()?;
                check_id("upload id", uid).ok()?;
                Some(StreamUpload {
                    id: uid.to_string(),
                    session_id: sid.to_string(),
                    initiated_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect();
        super::sort_oldest_first(&mut uploads);
        Ok(uploads)
    }

    async fn complete_upload(
        &self,
        upload: &StreamUpload,
        parts: &[StreamPart],
    ) -> Result<(), UploadError> {
        Self::check(upload)?;
        let parts = super::sorted_parts(parts)?;
        self.require_upload(upload).await?;
        if parts.is_empty() {
            // No parts, no recording (see the module documentation).
            self.delete_marker(upload).await?;
            return self.delete_parts(upload).await;
        }
        let ids: Vec<String> = parts.iter().map(|_| block_id()).collect();
        let staged: Vec<(u32, String)> = parts.iter().map(|p| p.number).zip(ids.clone()).collect();
        futures::stream::iter(staged)
            .map(|(n, id)| async move { self.stage(upload, n, &id).await })
            .buffer_unordered(COMPLETE_PARALLELISM)
            .try_collect::<()>()
            .await?;
        match self.put_block_list(upload, &ids).await {
            Ok(()) => {}
            Err(f) if f.already_exists() => {
                // As Teleport: the recording stays as it is, only the marker goes.
                return self.delete_marker(upload).await;
            }
            Err(f) => return Err(f.into_error("PutBlockList")),
        }
        self.delete_marker(upload).await?;
        self.delete_parts(upload).await
    }

    async fn abort_upload(&self, upload: &StreamUpload) -> Result<(), UploadError> {
        Self::check(upload)?;
        self.delete_marker(upload).await?;
        self.delete_parts(upload).await
    }

    fn recording_url(&self, session_id: &str) -> String {
        format!("{}/{session_id}", self.url_base)
    }

    async fn read_part(
        &self,
        upload: &StreamUpload,
        number: u32,
    ) -> Result<Option<Bytes>, UploadError> {
        Self::check(upload)?;
        super::check_part(number)?;
        self.read_part_bytes(upload, number).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn emulator_key() -> SharedKey {
        SharedKey::new(
            crate::url::AZURE_EMULATOR_ACCOUNT,
            crate::url::AZURE_EMULATOR_KEY,
        )
        .unwrap()
    }

    /// The vector was derived by hand from "Create a service SAS" (version 2020-12-06 and
    /// later: 16 lines) and signed with Python's `hmac`.
    #[test]
    fn service_sas_vector() {
        let k = emulator_key();
        let start = 1_709_211_600; // 2024-02-29T13:00:00Z
        let sas = k.service_sas("inprogress", "part/sid/uid/3", "r", start, start + 900);
        let want: Vec<(String, String)> = [
            ("sv", API_VERSION),
            ("st", "2024-02-29T13:00:00Z"),
            ("se", "2024-02-29T13:15:00Z"),
            ("sr", "b"),
            ("sp", "r"),
            ("sig", "q8F+LiFquivd4AMCxxg7YUJGeKsVXFyTKFpvG92+VrE="),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(sas, want);
        assert_eq!(
            k.sas_string_to_sign(
                "inprogress",
                "part/sid/uid/3",
                "r",
                "2024-02-29T13:00:00Z",
                "2024-02-29T13:15:00Z"
            ),
            "r\n2024-02-29T13:00:00Z\n2024-02-29T13:15:00Z\n\
             /blob/devstoreaccount1/inprogress/part/sid/uid/3\n\n\n\n2023-11-03\nb\n\n\n\n\n\n\n"
        );
    }

    /// Derived by hand from "Authorize with Shared Key" (Blob service, 2015-02-21 and later),
    /// signed with Python's `hmac`: a path-style (emulator) URL, a percent-encoded query value
    /// signed decoded, headers other than x-ms-* left out of the canonical headers.
    #[test]
    fn shared_key_vector() {
        let k = emulator_key();
        let url = Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/session/\
             3f1c9a52-7d4e-4b8a-9c61-0e2f5a7b8d90?comp=block&blockid=QUJD%2B%2F%3D",
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-ms-version", HeaderValue::from_static("2023-11-03"));
        h.insert(
            "x-ms-date",
            HeaderValue::from_static("Thu, 29 Feb 2024 13:05:09 GMT"),
        );
        h.insert("content-type", HeaderValue::from_static("application/xml"));
        h.insert("if-none-match", HeaderValue::from_static("*"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let sts = k.string_to_sign(&Method::PUT, &url, &h, 120);
        assert_eq!(
            sts,
            "PUT\n\n\n120\n\napplication/xml\n\n\n\n*\n\n\n\
             x-ms-date:Thu, 29 Feb 2024 13:05:09 GMT\nx-ms-version:2023-11-03\n\
             /devstoreaccount1/devstoreaccount1/session/3f1c9a52-7d4e-4b8a-9c61-0e2f5a7b8d90\n\
             blockid:QUJD+/=\ncomp:block"
        );
        assert_eq!(
            k.authorization(&Method::PUT, &url, &h, 120),
            "SharedKey devstoreaccount1:LG+7NDBWOKNcjwyZR9+SrWGH76iKwe71Ho/kO+5jZf8="
        );
        // A zero length is signed as empty.
        assert!(
            k.string_to_sign(&Method::PUT, &url, &h, 0)
                .starts_with("PUT\n\n\n\n")
        );
    }

    #[test]
    fn dates() {
        // 2024-02-29 (a leap day) 13:05:09 UTC was a Thursday.
        assert_eq!(iso8601(1_709_211_909), "2024-02-29T13:05:09Z");
        assert_eq!(rfc1123(1_709_211_909), "Thu, 29 Feb 2024 13:05:09 GMT");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn part_numbers() {
        assert_eq!(part_number("1"), Some(1));
        assert_eq!(part_number("10000"), Some(10000));
        for bad in ["0", "10001", "", "-1", "+1", "1a", "123456", "1/2"] {
            assert_eq!(part_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn block_ids_have_one_length() {
        let ids: Vec<String> = (0..50).map(|_| block_id()).collect();
        assert!(ids.iter().all(|id| id.len() == 48), "{ids:?}");
    }
}
