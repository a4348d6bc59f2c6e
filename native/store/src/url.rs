//! Storage URLs: what `--storage` names and how it becomes a [`StoreUploader`].
//!
//! | URL | store |
//! |---|---|
//! | `file:///abs/dir` or `/abs/dir` | a directory on local disk (created if missing) |
//! | `memory://` | a fresh in-memory store (tests, dry runs) |
//! | `s3://bucket[/prefix]` (or `s3a://`) | Amazon S3 or an S3-compatible server (`endpoint`) |
//! | `azblob://<account host>[/path][#session_container=..&inprogress_container=..]` (or `azblob-http://`) | Azure Blob Storage in Teleport's layout (two containers) |
//! | `az://container[/prefix]` (or `azure://`, `adl://`) | Azure Blob Storage (or azurite) in tapelog's own layout |
//! | `gs://bucket[/prefix][?path=..&endpoint=..]` | Google Cloud Storage in Teleport's layout |
//!
//! The cloud URLs are read as `object_store` reads them: parsed by the `url` crate, the store
//! chosen and the prefix taken by [`ObjectStoreScheme::parse`] (percent-decoded, checked
//! segment by segment as an object path). On top, tapelog checks the bucket name against the
//! service's naming rules, refuses a user, password or port, and refuses the forms whose host
//! names an account or region (`https://…`, `abfs://container@account…`): those settings are
//! options here. [`StorageUrl::base`] percent-encodes what the parser would not give back.
//!
//! The cloud stores are features of this crate (`s3`, `azure`, `gcp`); a build without the
//! one a URL needs parses the URL but refuses to open it ([`StorageError::NoBackend`]).
//!
//! Each store keeps uploads in the layout Teleport's handler for it uses ([`crate::layout`]):
//! `s3://` and `gs://` take Teleport's query options ([`S3_URL_OPTIONS`], [`GCS_URL_OPTIONS`])
//! and `layout=objects` for tapelog's own layout; `azblob://` takes Teleport's fragment options.
//!
//! Credentials come from [`StorageOptions`], never from the URL. Plain-HTTP
//! endpoints are accepted on their own only when the host is loopback (127.0.0.0/8, ::1,
//! `localhost`); anywhere else they need [`StorageOptions::allow_http`].

use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

#[cfg(feature = "s3")]
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
#[cfg(feature = "azure")]
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
#[cfg(feature = "gcp")]
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{ObjectStore, ObjectStoreScheme};
use thiserror::Error;

use super::StoreUploader;

/// The account name of the Azure storage emulator (azurite), a published constant.
pub const AZURE_EMULATOR_ACCOUNT: &str = "devstoreaccount1";
/// The account key of the Azure storage emulator (azurite), a published constant.
pub const AZURE_EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How to reach and sign in to the store a storage URL names. Each field applies to the
/// schemes its comment names and is ignored by the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageOptions {
    /// Service endpoint for the URL's scheme, e.g. `http://127.0.0.1:9000` (an S3-compatible
    /// server), `http://127.0.0.1:10000/devstoreaccount1` (azurite), a GCS base URL. Set
    /// explicitly (the CLI's `--endpoint`); [`StorageOptions::from_env`] leaves it empty and
    /// keeps the per-scheme endpoint variables in [`StorageOptions::config`].
    pub endpoint: Option<String>,
    /// S3 region (`AWS_REGION`, `AWS_DEFAULT_REGION`); `us-east-1` when unset.
    pub region: Option<String>,
    /// S3 access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3 secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// S3 session token (`AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
    /// Allow plain HTTP to a host that is not loopback (`AWS_ALLOW_HTTP`, `AZURE_ALLOW_HTTP`).
    pub allow_http: bool,
    /// Azure storage account (`AZURE_STORAGE_ACCOUNT_NAME`).
    pub azure_account: Option<String>,
    /// Azure storage account key (`AZURE_STORAGE_ACCOUNT_KEY`).
    pub azure_access_key: Option<String>,
    /// Talk to the Azure emulator (`AZURE_STORAGE_USE_EMULATOR`): its account and key are the
    /// defaults; without an endpoint it is `http://127.0.0.1:10000`.
    pub azure_use_emulator: bool,
    /// GCS service-account JSON file (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_PATH`).
    pub google_service_account: Option<String>,
    /// GCS service-account JSON itself (`GOOGLE_SERVICE_ACCOUNT_KEY`).
    pub google_service_account_key: Option<String>,
    /// GCS application default credentials file (`GOOGLE_APPLICATION_CREDENTIALS`).
    pub google_application_credentials: Option<String>,
    /// Further `object_store` settings as (key, value), e.g. `("aws_role_arn", ..)`: keys
    /// starting with `aws_` go to S3, `azure_` to Azure, `google_` to GCS, applied before the
    /// fields above. A key its store does not know is an error.
    pub config: Vec<(String, String)>,
}

/// Environment variables read into the typed fields (so not repeated in `config`).
const TYPED_ENV: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ALLOW_HTTP",
    "AZURE_ALLOW_HTTP",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_USE_EMULATOR",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

impl StorageOptions {
    /// Options from the environment: the variables named on each field, and every other
    /// `AWS_*`, `AZURE_*` or `GOOGLE_*` variable that `object_store` knows (for example
    /// `AWS_ENDPOINT_URL`, `AZURE_STORAGE_ENDPOINT`, `AWS_ROLE_ARN`) into `config`.
    pub fn from_env() -> StorageOptions {
        StorageOptions::from_vars(std::env::vars())
    }

    /// [`StorageOptions::from_env`] over the given variables (testable without touching the
    /// process environment).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> StorageOptions {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let get = |name: &str| {
            vars.iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        let flag = |name: &str| get(name).is_some_and(|v| truthy(&v));
        let mut config: Vec<(String, String)> = vars
            .iter()
            .filter(|(k, v)| !v.is_empty() && !TYPED_ENV.contains(&k.as_str()))
            .filter_map(|(k, v)| {
                let key = k.to_ascii_lowercase();
                known_key(&key).then(|| (key, v.clone()))
            })
            .collect();
        config.sort();
        StorageOptions {
            endpoint: None,
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            session_token: get("AWS_SESSION_TOKEN"),
            allow_http: flag("AWS_ALLOW_HTTP") || flag("AZURE_ALLOW_HTTP"),
            azure_account: get("AZURE_STORAGE_ACCOUNT_NAME"),
            azure_access_key: get("AZURE_STORAGE_ACCOUNT_KEY"),
            azure_use_emulator: flag("AZURE_STORAGE_USE_EMULATOR"),
            google_service_account: get("GOOGLE_SERVICE_ACCOUNT")
                .or_else(|| get("GOOGLE_SERVICE_ACCOUNT_PATH")),
            google_service_account_key: get("GOOGLE_SERVICE_ACCOUNT_KEY"),
            google_application_credentials: get("GOOGLE_APPLICATION_CREDENTIALS"),
            config,
        }
    }

    /// The first `config` value under one of `keys`.
    #[cfg(any(feature = "s3", feature = "azure", feature = "gcp"))]
    fn config_value(&self, keys: &[&str]) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| keys.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Whether `key` (lower case) is an `object_store` setting of the store its prefix names
/// (never, for a store this build lacks).
fn known_key(key: &str) -> bool {
    if key.starts_with("aws_") {
        #[cfg(feature = "s3")]
        return key.parse::<AmazonS3ConfigKey>().is_ok();
    } else if key.starts_with("azure_") {
        #[cfg(feature = "azure")]
        return key.parse::<AzureConfigKey>().is_ok();
    } else if key.starts_with("google_") {
        #[cfg(feature = "gcp")]
        return key.parse::<GoogleConfigKey>().is_ok();
    }
    false
}

/// What is wrong with a storage URL or its options.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A scheme tapelog does not store to.
    #[error(
        "storage URL {url:?}: unknown scheme {scheme:?} (use file://, memory://, s3://, gs://, azblob://, azblob-http://, az:// or azure://)"
    )]
    UnknownScheme {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// `s3://`, `az://` or `gs://` without a bucket (container).
    #[error("storage URL {url:?}: no {what} named (expected {example})")]
    MissingBucket {
        /// The URL given.
        url: String,
        /// "bucket" or "container".
        what: &'static str,
        /// The expected form.
        example: &'static str,
    },
    /// A bucket or container name the service would refuse.
    #[error("storage URL {url:?}: invalid {what} name {name:?}: {reason}")]
    BadBucket {
        /// The URL given.
        url: String,
        /// "bucket" or "container".
        what: &'static str,
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A local path that is not absolute.
    #[error(
        "storage URL {url:?}: {path:?} is a relative path; give an absolute one (file:///abs/dir or /abs/dir)"
    )]
    RelativePath {
        /// The URL given.
        url: String,
        /// The path in it.
        path: String,
    },
    /// A URL that cannot be read (host in a `file://` URL, query string, bad prefix...).
    #[error("storage URL {url:?}: {reason}")]
    Malformed {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// An endpoint that is not an `http://` or `https://` URL with a host.
    #[error("storage URL {url:?}: bad endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The URL given.
        url: String,
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// A plain-HTTP endpoint off loopback without `allow_http`.
    #[error(
        "storage URL {url:?}: endpoint {endpoint:?} is plain HTTP to a host that is not loopback; use https or allow HTTP explicitly (allow_http, AWS_ALLOW_HTTP=true)"
    )]
    InsecureEndpoint {
        /// The URL given.
        url: String,
        /// The endpoint.
        endpoint: String,
    },
    /// A `config` key the store does not know.
    #[error("storage URL {url:?}: unknown {store} option {key:?}")]
    UnknownOption {
        /// The URL given.
        url: String,
        /// "S3", "Azure" or "GCS".
        store: &'static str,
        /// The key.
        key: String,
    },
    /// The local directory cannot be created or opened.
    #[error("storage URL {url:?}: cannot use directory {}: {source}", path.display())]
    Directory {
        /// The URL given.
        url: String,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A store this build of tapelog was compiled without.
    #[error(
        "storage URL {url:?}: this build of tapelog has no {store} support (feature `{feature}` of tapelog-store)"
    )]
    NoBackend {
        /// The URL given.
        url: String,
        /// Its scheme, canonical: "s3", "az" or "gs".
        scheme: &'static str,
        /// "S3", "Azure" or "GCS".
        store: &'static str,
        /// The crate feature that adds it: "s3", "azure" or "gcp".
        feature: &'static str,
    },
    /// `object_store` refused the configuration (credentials, keys...).
    #[error("storage URL {url:?}: {source}")]
    Store {
        /// The URL given.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

/// A storage URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// A directory on local disk.
    File(PathBuf),
    /// A fresh in-memory store.
    Memory,
    /// An S3 bucket and a prefix in it (no slashes at either end; may be empty).
    S3 {
        /// Bucket.
        bucket: String,
        /// Prefix.
        prefix: String,
        /// The URL's query options ([`S3_URL_OPTIONS`]), in order.
        options: Vec<(String, String)>,
    },
    /// An Azure container and a prefix in it.
    Azure {
        /// Container.
        container: String,
        /// Prefix.
        prefix: String,
    },
    /// A GCS bucket and a prefix in it.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Prefix (from the URL's path or Teleport's `path` option).
        prefix: String,
        /// The URL's query options ([`GCS_URL_OPTIONS`]), in order.
        options: Vec<(String, String)>,
    },
    /// An Azure storage account in Teleport's layout (`azblob://`): recordings in one
    /// container, uploads in another.
    AzBlob {
        /// The account's URL (`https://<host>[/path]`, `http://` for `azblob-http://`).
        endpoint: String,
        /// Where recordings are (Teleport's `session_container`, default `session`).
        session_container: String,
        /// Where uploads in progress are (`inprogress_container`, default `inprogress`).
        inprogress_container: String,
    },
}

impl StorageUrl {
    /// Parses a storage URL (see the module documentation for the forms).
    pub fn parse(url: &str) -> Result<StorageUrl, StorageError> {
        let malformed = |reason: &str| StorageError::Malformed {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url.trim().is_empty() {
            return Err(malformed("empty"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return local_path(url, url);
        };
        let scheme_lc = scheme.to_ascii_lowercase();
        if scheme_lc == "file" {
            return file_url(url, rest);
        }
        if matches!(scheme_lc.as_str(), "azblob" | "azblob-http") {
            return azblob_url(url, &scheme_lc, rest);
        }
        let queries = matches!(scheme_lc.as_str(), "s3" | "s3a" | "gs");
        if rest.contains('#') || (!queries && rest.contains('?')) {
            return Err(malformed(if queries {
                "fragments are not supported"
            } else {
                "query strings and fragments are not supported (pass options separately)"
            }));
        }
        let (what, example, canonical) = match scheme_lc.as_str() {
            "memory" => {
                if !rest.trim_matches('/').is_empty() {
                    return Err(malformed("memory:// takes no bucket or path"));
                }
                return Ok(StorageUrl::Memory);
            }
            "s3" | "s3a" => ("bucket", "s3://bucket/prefix", "s3"),
            "gs" => ("bucket", "gs://bucket/prefix", "gs"),
            "az" | "azure" | "adl" => ("container", "az://container/prefix", "az"),
            // object_store reads these too, but they name an account or a region in the host,
            // which tapelog takes as options (--endpoint, AZURE_STORAGE_ACCOUNT_NAME …).
            "abfs" | "abfss" | "https" | "http" => {
                return Err(malformed(
                    "name the store as s3://bucket/prefix, az://container/prefix or \
                     gs://bucket/prefix, and pass the endpoint or account as options",
                ));
            }
            _ => {
                return Err(StorageError::UnknownScheme {
                    url: url.to_string(),
                    scheme: scheme.to_string(),
                });
            }
        };
        let missing = || StorageError::MissingBucket {
            url: url.to_string(),
            what,
            example,
        };
        if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
            return Err(missing());
        }
        // object_store's own reading of the URL: the `url` crate's parser, then
        // `ObjectStoreScheme::parse` for the store and the object path (percent-decoded,
        // checked segment by segment).
        let parsed =
            url::Url::parse(url).map_err(|e| malformed(&format!("not a valid URL: {e}")))?;
        let bucket = parsed.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(missing());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.port().is_some() {
            return Err(malformed(
                "a bucket or container name takes no user, password or port",
            ));
        }
        if let Err(reason) = check_bucket(canonical, bucket) {
            return Err(StorageError::BadBucket {
                url: url.to_string(),
                what,
                name: bucket.to_string(),
                reason,
            });
        }
        let (_, prefix) = ObjectStoreScheme::parse(&parsed)
            .map_err(|e| malformed(&format!("bad prefix {:?}: {e}", parsed.path())))?;
        let (bucket, prefix) = (bucket.to_string(), prefix.as_ref().to_string());
        Ok(match canonical {
            "s3" => StorageUrl::S3 {
                bucket,
                prefix,
                options: url_options(url, &parsed, "S3", S3_URL_OPTIONS)?,
            },
            "gs" => {
                let options = url_options(url, &parsed, "GCS", GCS_URL_OPTIONS)?;
                let path = options
                    .iter()
                    .find(|(k, _)| k == "path")
                    .map(|(_, v)| v.trim_matches('/'))
                    .filter(|p| !p.is_empty());
                let prefix = match path {
                    Some(_) if !prefix.is_empty() => {
                        return Err(malformed(
                            "give the prefix in the URL's path or as path=, not both",
                        ));
                    }
                    Some(p) => object_store::path::Path::parse(p)
                        .map_err(|e| malformed(&format!("bad path={p:?}: {e}")))?
                        .as_ref()
                        .to_string(),
                    None => prefix,
                };
                StorageUrl::Gcs {
                    bucket,
                    prefix,
                    options,
                }
            }
            _ => StorageUrl::Azure {
                container: bucket,
                prefix,
            },
        })
    }

    /// The URL in canonical form (`az://` for Azure), without a trailing slash; recording
    /// URLs are this plus `/<session id>`, except on `azblob://`, whose recordings are named
    /// by their blobs' own URLs.
    pub fn base(&self) -> String {
        let join = |scheme: &str, bucket: &str, prefix: &str| {
            if prefix.is_empty() {
                format!("{scheme}://{bucket}")
            } else {
                format!("{scheme}://{bucket}/{}", encode_prefix(prefix))
            }
        };
        match self {
            StorageUrl::File(dir) => file_base(&dir.to_string_lossy()),
            StorageUrl::Memory => "memory://".to_string(),
            StorageUrl::S3 { bucket, prefix, .. } => join("s3", bucket, prefix),
            StorageUrl::Azure { container, prefix } => join("az", container, prefix),
            StorageUrl::Gcs { bucket, prefix, .. } => join("gs", bucket, prefix),
            // The storage URL itself (recording URLs on Azure are the blobs' own URLs).
            StorageUrl::AzBlob {
                endpoint,
                session_container,
                inprogress_container,
            } => {
                let (scheme, rest) = match endpoint.strip_prefix("http://") {
                    Some(rest) => ("azblob-http", rest),
                    None => ("azblob", endpoint.trim_start_matches("https://")),
                };
                format!(
                    "{scheme}://{rest}#session_container={session_container}&inprogress_container={inprogress_container}"
                )
            }
        }
    }
}

/// Teleport's Azure URL: `azblob://<account host>[/path]` (https) or `azblob-http://…`, with
/// the containers in the fragment (`#session_container=..&inprogress_container=..`).
fn azblob_url(url: &str, scheme: &str, rest: &str) -> Result<StorageUrl, StorageError> {
    let malformed = |reason: String| StorageError::Malformed {
        url: url.to_string(),
        reason,
    };
    let (location, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let location = location.trim_end_matches('/');
    if location.is_empty() || location.starts_with('/') {
        return Err(StorageError::MissingBucket {
            url: url.to_string(),
            what: "account host",
            example: "azblob://<account>.blob.core.windows.net",
        });
    }
    if location.contains('?') {
        return Err(malformed(
            "azblob:// takes its options in the fragment (#session_container=..&inprogress_container=..)".into(),
        ));
    }
    let http = scheme == "azblob-http";
    let endpoint = format!("{}://{location}", if http { "http" } else { "https" });
    let parsed = url::Url::parse(&endpoint)
        .map_err(|e| malformed(format!("not a valid account URL {endpoint:?}: {e}")))?;
    if parsed.host_str().is_none_or(str::is_empty)
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(malformed(
            "expected azblob://<account host>[:port][/path]".into(),
        ));
    }
    let (mut session, mut inprogress) = ("session".to_string(), "inprogress".to_string());
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(fragment.as_bytes()) {
        if seen.iter().any(|s| *s == k) {
            return Err(malformed(format!("option {k} given twice")));
        }
        seen.push(k.to_string());
        match k.as_ref() {
            "session_container" => session = v.into_owned(),
            "inprogress_container" => inprogress = v.into_owned(),
            _ => {
                return Err(StorageError::UnknownOption {
                    url: url.to_string(),
                    store: "Azure",
                    key: k.into_owned(),
                });
            }
        }
    }
    for c in [&session, &inprogress] {
        check_bucket("az", c).map_err(|reason| StorageError::BadBucket {
            url: url.to_string(),
            what: "container",
            name: c.clone(),
            reason,
        })?;
    }
    if session == inprogress {
        return Err(malformed(format!(
            "session_container and inprogress_container are both {session:?}"
        )));
    }
    Ok(StorageUrl::AzBlob {
        endpoint: parsed.as_str().trim_end_matches('/').to_string(),
        session_container: session,
        inprogress_container: inprogress,
    })
}

/// The query options a `gs://` URL takes: Teleport's (`projectID`, `path`, `credentialsPath`,
/// `endpoint`, `keyName`) plus tapelog's `layout`.
///
/// | key | meaning |
/// |---|---|
/// | `path` | the prefix (instead of the URL's path) |
/// | `credentialsPath` | a credentials JSON file (service account or user) |
/// | `endpoint` | another GCS endpoint, `host[:port]` (https) or a URL; requests are not signed (emulators, tests) |
/// | `projectID`, `keyName` | accepted and unused: Teleport needs them only to create the bucket, which tapelog never does |
/// | `layout` | `compose` (Teleport's, the default) or `objects` (tapelog's own, from before) |
pub const GCS_URL_OPTIONS: &[&str] = &[
    "projectID",
    "path",
    "credentialsPath",
    "endpoint",
    "keyName",
    "layout",
];

/// The query options an `s3://` URL takes: Teleport's, with its meanings, plus tapelog's
/// `layout`.
///
/// | key | meaning |
/// |---|---|
/// | `region` | the bucket's region (over `AWS_REGION`) |
/// | `endpoint` | an S3-compatible endpoint, `host[:port]` or a URL; no scheme means https (http with `insecure`) |
/// | `insecure` | plain HTTP allowed to the endpoint (TLS is never left unverified by tapelog) |
/// | `disablesse` | no server-side encryption asked for (default: `aws:kms`) |
/// | `sse_kms_key` | the KMS key for `aws:kms` |
/// | `acl` | a canned ACL for new uploads ([`crate::layout::s3::ALLOWED_ACLS`]) |
/// | `use_fips_endpoint` | AWS's FIPS endpoints |
/// | `use_s3_virtual_style_addressing` | virtual-host addressing with a custom endpoint (default: path style) |
/// | `layout` | `multipart` (default: native multipart, Teleport's layout) or `objects` (tapelog's own layout of parts as objects, for servers without multipart listing) |
pub const S3_URL_OPTIONS: &[&str] = &[
    "region",
    "endpoint",
    "insecure",
    "disablesse",
    "sse_kms_key",
    "acl",
    "use_fips_endpoint",
    "use_s3_virtual_style_addressing",
    "layout",
];

/// The query options of `parsed`, each known to `store` and given once.
fn url_options(
    url: &str,
    parsed: &url::Url,
    store: &'static str,
    known: &[&str],
) -> Result<Vec<(String, String)>, StorageError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        if !known.contains(&k.as_ref()) {
            return Err(StorageError::UnknownOption {
                url: url.to_string(),
                store,
                key: k.into_owned(),
            });
        }
        if out.iter().any(|(seen, _)| seen == &k) {
            return Err(StorageError::Malformed {
                url: url.to_string(),
                reason: format!("option {k:?} is given twice"),
            });
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// `file://` + the absolute `path` with the characters a `file://` URL reads specially
/// (`%`, `?`, `#`) percent-encoded, without a trailing slash (the root stays `file:///`), so
/// that the URL parses back to the same directory.
fn file_base(path: &str) -> String {
    let mut out = String::with_capacity(7 + path.len());
    out.push_str("file://");
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    while out.len() > "file:///".len() && out.ends_with('/') {
        out.pop();
    }
    out
}

/// A prefix as a URL path: every byte but the unreserved characters, `/` and the
/// sub-delimiters percent-encoded, so that the URL parser (which drops tabs and newlines and
/// trims spaces) and object_store's decoding give the same prefix back.
fn encode_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for b in prefix.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn local_path(url: &str, path: &str) -> Result<StorageUrl, StorageError> {
    if !FsPath::new(path).is_absolute() {
        return Err(StorageError::RelativePath {
            url: url.to_string(),
            path: path.to_string(),
        });
    }
    Ok(StorageUrl::File(PathBuf::from(path)))
}

fn file_url(url: &str, rest: &str) -> Result<StorageUrl, StorageError> {
    let malformed = |reason: String| StorageError::Malformed {
        url: url.to_string(),
        reason,
    };
    if rest.contains(['?', '#']) {
        return Err(malformed(
            "query strings and fragments are not supported".into(),
        ));
    }
    // file:///abs, file://localhost/abs; file://dir/x is a relative path or a remote host.
    let path = match rest.strip_prefix("localhost") {
        Some(p) if p.starts_with('/') => p,
        _ => rest,
    };
    if !path.starts_with('/') {
        return Err(StorageError::RelativePath {
            url: url.to_string(),
            path: path.to_string(),
        });
    }
    let decoded = percent_decode(path).ok_or_else(|| {
        malformed(format!(
            "bad percent escape in {path:?} (use %XX with two hex digits, UTF-8)"
        ))
    })?;
    local_path(url, &decoded)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The naming rules of each service, so a typo fails here and not on the first upload.
fn check_bucket(scheme: &str, name: &str) -> Result<(), &'static str> {
    let (max, allowed): (usize, fn(u8) -> bool) = match scheme {
        "s3" => (63, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-'
        }),
        "gs" => (222, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
        }),
        _ => (63, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
        }),
    };
    if name.len() < 3 || name.len() > max {
        return Err(if max == 63 {
            "names are 3 to 63 characters long"
        } else {
            "names are 3 to 222 characters long"
        });
    }
    if !name.bytes().all(allowed) {
        return Err(match scheme {
            "s3" => "only lower-case letters, digits, '.' and '-' are allowed",
            "gs" => "only lower-case letters, digits, '.', '-' and '_' are allowed",
            _ => "only lower-case letters, digits and '-' are allowed",
        });
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("names start and end with a letter or digit");
    }
    Ok(())
}

/// Checks an endpoint and says whether plain HTTP is to be allowed for it.
#[cfg_attr(
    not(any(feature = "s3", feature = "azure", feature = "gcp")),
    allow(dead_code)
)]
fn check_endpoint(url: &str, endpoint: &str, allow_http: bool) -> Result<bool, StorageError> {
    let bad = |reason: &str| StorageError::BadEndpoint {
        url: url.to_string(),
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| bad("expected http://host[:port] or https://host[:port]"))?;
    let http = match scheme.to_ascii_lowercase().as_str() {
        "http" => true,
        "https" => false,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']')
            .map(|(h, _)| h)
            .ok_or_else(|| bad("unclosed '[' in the host"))?
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if !http {
        return Ok(allow_http);
    }
    if is_loopback(host) || allow_http {
        Ok(true)
    } else {
        Err(StorageError::InsecureEndpoint {
            url: url.to_string(),
            endpoint: endpoint.to_string(),
        })
    }
}

#[cfg_attr(
    not(any(feature = "s3", feature = "azure", feature = "gcp")),
    allow(dead_code)
)]
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Opens the store `url` names, with uploads kept under its prefix (see
/// [`StoreUploader`] for the layout). Builds the client only: no request is sent, so a wrong
/// key or a missing bucket shows on the first upload.
pub fn open_storage(url: &str, opts: &StorageOptions) -> Result<StoreUploader, StorageError> {
    let parsed = StorageUrl::parse(url)?;
    let base = parsed.base();
    let store_err = |source: object_store::Error| StorageError::Store {
        url: url.to_string(),
        source,
    };
    let (store, prefix): (Arc<dyn ObjectStore>, &str) = match &parsed {
        StorageUrl::File(dir) => {
            let dir_err = |source| StorageError::Directory {
                url: url.to_string(),
                path: dir.clone(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(dir_err)?;
            let fs =
                object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(store_err)?;
            (Arc::new(fs), "")
        }
        StorageUrl::Memory => (Arc::new(object_store::memory::InMemory::new()), ""),
        StorageUrl::S3 {
            bucket,
            prefix,
            options,
        } => return open_s3(url, &base, bucket, prefix, options, opts),
        StorageUrl::Azure { container, prefix } => (build_azure(url, container, opts)?, prefix),
        StorageUrl::Gcs {
            bucket,
            prefix,
            options,
        } => return open_gcs(url, &base, bucket, prefix, options, opts),
        StorageUrl::AzBlob {
            endpoint,
            session_container,
            inprogress_container,
        } => {
            return open_azblob(url, endpoint, session_container, inprogress_container, opts);
        }
    };
    Ok(StoreUploader::new(store, prefix, &base))
}

/// The error for a store this build lacks.
#[cfg(not(all(feature = "s3", feature = "azure", feature = "gcp")))]
fn no_backend(
    url: &str,
    scheme: &'static str,
    store: &'static str,
    feature: &'static str,
) -> StorageError {
    StorageError::NoBackend {
        url: url.to_string(),
        scheme,
        store,
        feature,
    }
}

#[cfg(not(feature = "s3"))]
fn open_s3(
    url: &str,
    _: &str,
    _: &str,
    _: &str,
    _: &[(String, String)],
    _: &StorageOptions,
) -> Result<StoreUploader, StorageError> {
    Err(no_backend(url, "s3", "S3", "s3"))
}

#[cfg(not(feature = "azure"))]
fn build_azure(
    url: &str,
    _: &str,
    _: &StorageOptions,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Err(no_backend(url, "az", "Azure", "azure"))
}

#[cfg(not(feature = "gcp"))]
fn open_gcs(
    url: &str,
    _: &str,
    _: &str,
    _: &str,
    _: &[(String, String)],
    _: &StorageOptions,
) -> Result<StoreUploader, StorageError> {
    Err(no_backend(url, "gs", "GCS", "gcp"))
}

#[cfg(not(feature = "azure"))]
fn open_azblob(
    url: &str,
    _: &str,
    _: &str,
    _: &str,
    _: &StorageOptions,
) -> Result<StoreUploader, StorageError> {
    Err(no_backend(url, "azblob", "Azure", "azure"))
}

#[cfg(any(feature = "s3", feature = "azure", feature = "gcp"))]
fn unknown(url: &str, store: &'static str, key: &str) -> StorageError {
    StorageError::UnknownOption {
        url: url.to_string(),
        store,
        key: key.to_string(),
    }
}

/// A boolean URL option, read as Teleport reads it (Go's `strconv.ParseBool`).
#[cfg(feature = "s3")]
fn bool_option(url: &str, options: &[(String, String)], key: &str) -> Result<bool, StorageError> {
    match options.iter().find(|(k, _)| k == key) {
        None => Ok(false),
        Some((_, v)) => {
            tapelog_core::audit::pg::go_bool(v).ok_or_else(|| StorageError::Malformed {
                url: url.to_string(),
                reason: format!("option {key}={v:?} is not a boolean (true, false, 1, 0...)"),
            })
        }
    }
}

#[cfg(feature = "s3")]
fn open_s3(
    url: &str,
    base: &str,
    bucket: &str,
    prefix: &str,
    options: &[(String, String)],
    opts: &StorageOptions,
) -> Result<StoreUploader, StorageError> {
    use crate::layout::objects::ObjectsLayout;
    use crate::layout::s3::{ALLOWED_ACLS, S3Layout, S3Settings, Sse};

    let malformed = |reason: String| StorageError::Malformed {
        url: url.to_string(),
        reason,
    };
    let get = |key: &str| {
        options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let insecure = bool_option(url, options, "insecure")?;
    let multipart = match get("layout") {
        None | Some("multipart") => true,
        Some("objects") => false,
        Some(other) => {
            return Err(malformed(format!(
                "layout={other:?}: expected multipart or objects"
            )));
        }
    };
    // Teleport's endpoint option: `host[:port]` means https (http with `insecure`).
    let url_endpoint = get("endpoint").filter(|e| !e.is_empty()).map(|e| {
        if e.contains("://") {
            e.to_string()
        } else if insecure {
            format!("http://{e}")
        } else {
            format!("https://{e}")
        }
    });
    let opt_endpoint = opts
        .endpoint
        .as_deref()
        .or_else(|| opts.config_value(&["aws_endpoint_url", "aws_endpoint"]));
    let endpoint = match (url_endpoint, opt_endpoint) {
        (Some(u), Some(o)) if u.trim_end_matches('/') != o.trim_end_matches('/') => {
            return Err(malformed(format!(
                "endpoint={u:?} in the URL and {o:?} in the options disagree"
            )));
        }
        (Some(u), _) => Some(u),
        (None, o) => o.map(str::to_string),
    };
    let region = get("region")
        .filter(|r| !r.is_empty())
        .or(opts.region.as_deref())
        .unwrap_or("us-east-1")
        .to_string();
    let sse = if bool_option(url, options, "disablesse")? {
        Sse::Off
    } else {
        match get("sse_kms_key").filter(|k| !k.is_empty()) {
            Some(k) => Sse::KmsKey(k.to_string()),
            None => Sse::Kms,
        }
    };
    let acl = match get("acl").filter(|a| !a.is_empty()) {
        Some(a) if ALLOWED_ACLS.contains(&a) => Some(a.to_string()),
        Some(a) => {
            return Err(malformed(format!(
                "acl={a:?} is not one of {}",
                ALLOWED_ACLS.join(", ")
            )));
        }
        None => None,
    };
    let virtual_style = bool_option(url, options, "use_s3_virtual_style_addressing")?;
    let fips = bool_option(url, options, "use_fips_endpoint")?;

    let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
    for (k, v) in opts.config.iter().filter(|(k, _)| k.starts_with("aws_")) {
        let key = k.parse().map_err(|_| unknown(url, "S3", k))?;
        b = b.with_config(key, v);
    }
    let mut http = opts.allow_http || insecure;
    if let Some(e) = &endpoint {
        http = check_endpoint(url, e, http)?;
        b = b
            .with_endpoint(e)
            .with_allow_http(http)
            .with_virtual_hosted_style_request(virtual_style);
    } else if http {
        b = b.with_allow_http(true);
    }
    b = b.with_region(&region);
    if let Some(k) = &opts.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = &opts.secret_access_key {
        b = b.with_secret_access_key(k);
    }
    if let Some(t) = &opts.session_token {
        b = b.with_token(t);
    }
    // The objects written beside the multipart uploads (spans) are encrypted as the uploads.
    match &sse {
        Sse::Kms => {
            if let Ok(key) = "aws_server_side_encryption".parse::<AmazonS3ConfigKey>() {
                b = b.with_config(key, "aws:kms");
            }
        }
        Sse::KmsKey(k) => b = b.with_sse_kms_encryption(k),
        Sse::Off => {}
    }
    let store = b.build().map_err(|source| StorageError::Store {
        url: url.to_string(),
        source,
    })?;
    let objects = |store: Arc<dyn ObjectStore>| ObjectsLayout::new(store, prefix, base);
    if !multipart {
        return Ok(StoreUploader::new(Arc::new(store), prefix, base));
    }
    let legacy = objects(Arc::new(store.clone()));
    let settings = S3Settings {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        region,
        endpoint,
        path_style: !virtual_style,
        fips,
        sse,
        acl,
    };
    Ok(StoreUploader::s3(
        S3Layout::new(store, settings, base),
        legacy,
    ))
}

#[cfg(feature = "azure")]
fn build_azure(
    url: &str,
    container: &str,
    opts: &StorageOptions,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let mut b = MicrosoftAzureBuilder::new().with_container_name(container);
    for (k, v) in opts.config.iter().filter(|(k, _)| k.starts_with("azure_")) {
        let key = k.parse().map_err(|_| unknown(url, "Azure", k))?;
        b = b.with_config(key, v);
    }
    let endpoint = opts
        .endpoint
        .as_deref()
        .or_else(|| opts.config_value(&["azure_storage_endpoint", "azure_endpoint"]));
    let account = opts.azure_account.clone();
    let key = opts.azure_access_key.clone();
    match endpoint {
        Some(e) => {
            let http = check_endpoint(url, e, opts.allow_http)?;
            // object_store's emulator mode ignores the endpoint, so an emulator on another
            // port is addressed as an account at an endpoint (path style, as azurite wants).
            let (account, key, e) = if opts.azure_use_emulator {
                let account = account.unwrap_or_else(|| AZURE_EMULATOR_ACCOUNT.to_string());
                let trimmed = e.trim_end_matches('/');
                let has_path = trimmed
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.contains('/'));
                let e = if has_path {
                    trimmed.to_string()
                } else {
                    format!("{trimmed}/{account}")
                };
                (
                    Some(account),
                    Some(key.unwrap_or_else(|| AZURE_EMULATOR_KEY.to_string())),
                    e,
                )
            } else {
                (account, key, e.to_string())
            };
            b = b.with_endpoint(e).with_allow_http(http);
            if let Some(a) = account {
                b = b.with_account(a);
            }
            if let Some(k) = key {
                b = b.with_access_key(k);
            }
        }
        None => {
            if opts.azure_use_emulator {
                b = b.with_use_emulator(true);
            }
            if opts.allow_http {
                b = b.with_allow_http(true);
            }
            if let Some(a) = account {
                b = b.with_account(a);
            }
            if let Some(k) = key {
                b = b.with_access_key(k);
            }
        }
    }
    let store = b.build().map_err(|source| StorageError::Store {
        url: url.to_string(),
        source,
    })?;
    Ok(Arc::new(store))
}

#[cfg(feature = "gcp")]
fn open_gcs(
    url: &str,
    base: &str,
    bucket: &str,
    prefix: &str,
    options: &[(String, String)],
    opts: &StorageOptions,
) -> Result<StoreUploader, StorageError> {
    use crate::layout::gcs::GcsLayout;
    use crate::layout::objects::ObjectsLayout;
    let get = |k: &str| {
        options
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let store_err = |source| StorageError::Store {
        url: url.to_string(),
        source,
    };
    let compose = match get("layout") {
        None | Some("compose") => true,
        Some("objects") => false,
        Some(o) => {
            return Err(StorageError::Malformed {
                url: url.to_string(),
                reason: format!("layout={o:?}: expected compose or objects"),
            });
        }
    };
    let mut b = gcs_builder(url, bucket, opts)?;
    if let Some(p) = get("credentialsPath") {
        b = b.with_application_credentials(p);
    }
    // Teleport's endpoint option: an emulator reached without authentication.
    if let Some(e) = get("endpoint") {
        let e = if e.contains("://") {
            e.to_string()
        } else {
            format!("https://{e}")
        };
        let http = check_endpoint(url, &e, opts.allow_http)?;
        // No authentication, as Teleport's option means. object_store 0.14.2's GCS writes
        // ask the credential provider even with skip_signature, so an empty static token
        // keeps it from looking for a metadata server.
        b = b
            .with_base_url(&e)
            .with_skip_signature(true)
            .with_bearer_token("");
        if http {
            b = b.with_client_options(object_store::ClientOptions::new().with_allow_http(true));
        }
    }
    if !compose {
        return Ok(StoreUploader::new(
            Arc::new(b.build().map_err(store_err)?),
            prefix,
            base,
        ));
    }
    let layout = GcsLayout::from_builder(b, prefix, base).map_err(store_err)?;
    let legacy = ObjectsLayout::new(Arc::clone(layout.store()), prefix, base);
    Ok(StoreUploader::gcs(layout, legacy))
}

#[cfg(feature = "azure")]
fn open_azblob(
    url: &str,
    endpoint: &str,
    session: &str,
    inprogress: &str,
    opts: &StorageOptions,
) -> Result<StoreUploader, StorageError> {
    use crate::layout::azure::{AzureContainers, AzureLayout};
    let http = check_endpoint(
        url,
        endpoint,
        opts.allow_http || endpoint.starts_with("http://"),
    )?;
    // The account: AZURE_STORAGE_ACCOUNT_NAME, else the path's first segment (azurite's
    // http://127.0.0.1:10000/devstoreaccount1), else the host's first label.
    let parsed = url::Url::parse(endpoint).map_err(|e| StorageError::Malformed {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let from_path = parsed
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let account = opts
        .azure_account
        .clone()
        .or_else(|| from_path.clone())
        .or_else(|| {
            parsed
                .host_str()
                .and_then(|h| h.split('.').next())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let mut b = MicrosoftAzureBuilder::new();
    for (k, v) in opts.config.iter().filter(|(k, _)| k.starts_with("azure_")) {
        let key = k.parse().map_err(|_| unknown(url, "Azure", k))?;
        b = b.with_config(key, v);
    }
    b = b
        .with_account(&account)
        .with_endpoint(endpoint.to_string())
        .with_allow_http(http);
    let emulator = opts.azure_use_emulator || account == AZURE_EMULATOR_ACCOUNT;
    let key = opts
        .azure_access_key
        .clone()
        .or_else(|| emulator.then(|| AZURE_EMULATOR_KEY.to_string()));
    if let Some(k) = key {
        b = b.with_access_key(k);
    }
    let layout = AzureLayout::from_builder(
        b,
        AzureContainers {
            session: session.to_string(),
            inprogress: inprogress.to_string(),
        },
    )
    .map_err(|e| StorageError::Malformed {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    Ok(StoreUploader::azure(layout))
}

/// The GCS client's settings from the options (bucket, credentials, endpoint).
#[cfg(feature = "gcp")]
fn gcs_builder(
    url: &str,
    bucket: &str,
    opts: &StorageOptions,
) -> Result<GoogleCloudStorageBuilder, StorageError> {
    let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
    for (k, v) in opts.config.iter().filter(|(k, _)| k.starts_with("google_")) {
        let key = k.parse().map_err(|_| unknown(url, "GCS", k))?;
        b = b.with_config(key, v);
    }
    let endpoint = opts
        .endpoint
        .as_deref()
        .or_else(|| opts.config_value(&["google_base_url"]));
    if let Some(e) = endpoint {
        let http = check_endpoint(url, e, opts.allow_http)?;
        b = b.with_base_url(e);
        if http {
            b = b.with_client_options(object_store::ClientOptions::new().with_allow_http(true));
        }
    }
    if let Some(p) = &opts.google_service_account {
        b = b.with_service_account_path(p);
    }
    if let Some(k) = &opts.google_service_account_key {
        b = b.with_service_account_key(k);
    }
    if let Some(p) = &opts.google_application_credentials {
        b = b.with_application_credentials(p);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::MultipartUploader;

    const SID: &str = "9b6ec731-80f7-4751-9154-4214ecdc812a";

    fn parse(url: &str) -> StorageUrl {
        StorageUrl::parse(url).unwrap()
    }

    fn err(url: &str) -> StorageError {
        StorageUrl::parse(url).unwrap_err()
    }

    #[cfg(feature = "s3")]
    fn s3_opts() -> StorageOptions {
        StorageOptions {
            endpoint: Some("http://127.0.0.1:9".into()),
            access_key_id: Some("AK".into()),
            secret_access_key: Some("SK".into()),
            ..StorageOptions::default()
        }
    }

    #[test]
    fn file_urls_and_plain_paths() {
        assert_eq!(
            parse("file:///var/lib/x"),
            StorageUrl::File("/var/lib/x".into())
        );
        assert_eq!(
            parse("file://localhost/var/x"),
            StorageUrl::File("/var/x".into())
        );
        assert_eq!(parse("FILE:///a%20b"), StorageUrl::File("/a b".into()));
        assert_eq!(
            parse("/srv/records"),
            StorageUrl::File("/srv/records".into())
        );
        assert_eq!(parse("file:///srv/records/").base(), "file:///srv/records");
    }

    #[test]
    fn every_base_parses_back_to_the_same_url() {
        // What the storage_url fuzz target checks: the root lost its slash (`file:`), and a
        // directory name with `%`, `?` or `#` gave a URL that failed or named another one.
        for (url, base) in [
            ("/", "file:///"),
            ("file:///", "file:///"),
            ("//", "file:///"),
            ("/a%b", "file:///a%25b"),
            ("file:///a%2541", "file:///a%2541"),
            ("/x?y#z/", "file:///x%3Fy%23z"),
            ("file:///a%3Fb", "file:///a%3Fb"),
            ("/ü b", "file:///ü b"),
            ("s3://abc/p/", "s3://abc/p"),
            ("s3://abc/a%20b/%25x", "s3://abc/a%20b/%25x"),
            ("s3://abc/a%20b%20", "s3://abc/a%20b%20"),
            ("gs://abc/ü", "gs://abc/%C3%BC"),
            ("memory:///", "memory://"),
        ] {
            let u = parse(url);
            assert_eq!(u.base(), base, "{url}");
            assert_eq!(parse(&u.base()), u, "{url}");
        }
    }

    #[test]
    fn relative_paths_are_refused() {
        for url in [
            "records",
            "./records",
            "file://records/x",
            "file://",
            "../x",
        ] {
            let e = err(url);
            assert!(matches!(e, StorageError::RelativePath { .. }), "{url}: {e}");
            assert!(e.to_string().contains("absolute"), "{e}");
        }
    }

    #[test]
    fn malformed_urls() {
        for (url, says) in [
            ("", "empty"),
            ("file:///a%zz", "percent escape"),
            ("file:///a?x=1", "query"),
            ("az://container/p?x=1", "query"),
            ("s3://bucket/p#x", "fragments"),
            ("memory://bucket", "memory://"),
            ("s3://bucket/a//b", "bad prefix"),
            ("s3://abc//p/", "bad prefix"),
            ("s3://abc/a%09b", "bad prefix"),
            ("az://user@acct", "no user"),
            ("gs://a:b", "not a valid URL"),
            ("s3://user@bucket/p", "no user"),
            ("s3://bucket:9000/p", "no user, password or port"),
            ("https://bucket.s3.amazonaws.com/p", "as options"),
            ("abfs://recs@account.dfs.core.windows.net/p", "as options"),
            ("s3://buck et/p", "not a valid URL"),
        ] {
            let e = err(url);
            assert!(matches!(e, StorageError::Malformed { .. }), "{url}: {e}");
            assert!(e.to_string().contains(says), "{url}: {e}");
            assert!(e.to_string().contains(&format!("{url:?}")), "{e}");
        }
    }

    #[test]
    fn object_store_urls() {
        assert_eq!(parse("memory://"), StorageUrl::Memory);
        assert_eq!(
            parse("s3://my-bucket/a/b/"),
            StorageUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into(),
                options: vec![],
            }
        );
        assert_eq!(
            parse("s3://my.bucket"),
            StorageUrl::S3 {
                bucket: "my.bucket".into(),
                prefix: "".into(),
                options: vec![],
            }
        );
        let az = StorageUrl::Azure {
            container: "recs".into(),
            prefix: "teleport".into(),
        };
        assert_eq!(parse("az://recs/teleport"), az);
        assert_eq!(parse("azure://recs/teleport"), az);
        assert_eq!(parse("adl://recs/teleport"), az);
        assert_eq!(parse("s3a://my-bucket/a"), parse("s3://my-bucket/a"));
        // Dot segments are resolved by the URL parser, as in any URL.
        assert_eq!(parse("gs://b_1/a/../x"), parse("gs://b_1/x"));
        // The prefix is percent-decoded, as object_store reads a URL's path.
        assert_eq!(
            parse("s3://my-bucket/a%20b"),
            StorageUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a b".into(),
                options: vec![],
            }
        );
        assert_eq!(az.base(), "az://recs/teleport");
        assert_eq!(
            parse("gs://b_1/x"),
            StorageUrl::Gcs {
                bucket: "b_1".into(),
                prefix: "x".into(),
                options: vec![],
            }
        );
        assert_eq!(parse("gs://b_1/x").base(), "gs://b_1/x");
        assert_eq!(parse("s3://abc").base(), "s3://abc");
    }

    #[test]
    fn gs_urls_take_teleports_query_options() {
        // Teleport's form: the prefix as path=, the project named.
        let u = parse("gs://recs?projectID=p1&path=teleport/records");
        assert_eq!(u.base(), "gs://recs/teleport/records");
        assert!(matches!(&u, StorageUrl::Gcs { prefix, options, .. }
            if prefix == "teleport/records" && options.len() == 2));
        for (url, reason) in [
            ("gs://recs/a?path=b", "not both"),
            ("gs://recs?path=a/../b", "bad path"),
            ("gs://recs?path=a&path=b", "twice"),
            ("gs://recs#x", "fragments"),
        ] {
            let e = err(url).to_string();
            assert!(e.contains(reason), "{url}: {e}");
        }
        assert!(matches!(
            err("gs://recs?bucketRegion=x"),
            StorageError::UnknownOption { store: "GCS", .. }
        ));
    }

    #[test]
    fn azblob_urls_are_teleports() {
        let u = parse("azblob://acct.blob.core.windows.net");
        assert_eq!(
            u,
            StorageUrl::AzBlob {
                endpoint: "https://acct.blob.core.windows.net".into(),
                session_container: "session".into(),
                inprogress_container: "inprogress".into(),
            }
        );
        assert_eq!(
            u.base(),
            "azblob://acct.blob.core.windows.net#session_container=session&inprogress_container=inprogress"
        );
        assert_eq!(parse(&u.base()), u);
        let u = parse(
            "azblob-http://127.0.0.1:10000/devstoreaccount1#session_container=recs&inprogress_container=work",
        );
        assert_eq!(
            u,
            StorageUrl::AzBlob {
                endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
                session_container: "recs".into(),
                inprogress_container: "work".into(),
            }
        );
        assert_eq!(parse(&u.base()), u);
        assert!(
            u.base()
                .starts_with("azblob-http://127.0.0.1:10000/devstoreaccount1#")
        );
        for (url, reason) in [
            ("azblob://", "no account host"),
            ("azblob://h?x=1", "fragment"),
            ("azblob://h#session_container=A_B", "container"),
            (
                "azblob://h#session_container=x1y&inprogress_container=x1y",
                "both",
            ),
            (
                "azblob://h#session_container=abc&session_container=abd",
                "twice",
            ),
            ("azblob://user@h", "account host"),
        ] {
            let e = err(url).to_string();
            assert!(e.contains(reason), "{url}: {e}");
        }
        assert!(matches!(
            err("azblob://h#container=x"),
            StorageError::UnknownOption { store: "Azure", .. }
        ));
    }

    #[test]
    fn s3_urls_take_teleports_query_options() {
        let u = parse("s3://b-1/p?region=eu-west-1&disablesse=true&endpoint=127.0.0.1:9");
        let StorageUrl::S3 {
            options, prefix, ..
        } = &u
        else {
            panic!("{u:?}")
        };
        assert_eq!(prefix, "p");
        assert_eq!(options[0], ("region".into(), "eu-west-1".into()));
        assert_eq!(options.len(), 3);
        // Recording URLs have no options in them.
        assert_eq!(u.base(), "s3://b-1/p");
        assert_eq!(parse("s3://b-1?region=x").base(), "s3://b-1");
        for (url, says) in [
            (
                "s3://b-1/p?complete_initiators=a",
                "unknown S3 option \"complete_initiators\"",
            ),
            ("s3://b-1/p?x=1", "unknown S3 option"),
            ("s3://b-1/p?region=a&region=b", "given twice"),
        ] {
            let e = err(url);
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
        assert!(matches!(
            err("s3://?region=x"),
            StorageError::MissingBucket { .. }
        ));
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_option_values_are_checked_when_opened() {
        for (url, says) in [
            ("s3://b-1/p?disablesse=maybe", "not a boolean"),
            ("s3://b-1/p?acl=everyone", "not one of"),
            ("s3://b-1/p?layout=flat", "expected multipart or objects"),
            ("s3://b-1/p?endpoint=127.0.0.1:8", "disagree"),
            ("s3://b-1/p?endpoint=http://example.com:8", "plain HTTP"),
        ] {
            let mut opts = s3_opts();
            if url.contains("example.com") {
                opts.endpoint = None;
            }
            let e = open_storage(url, &opts).err().unwrap();
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
        // insecure=true is what allows plain HTTP off loopback, as in Teleport.
        let mut opts = s3_opts();
        opts.endpoint = None;
        let s = open_storage("s3://b-1/p?endpoint=example.com:8&insecure=true", &opts);
        assert!(s.is_ok(), "{:?}", s.err());
        let s = open_storage("s3://b-1/p", &s3_opts()).unwrap();
        assert_eq!(s.layout_name(), "s3-multipart");
        let s = open_storage("s3://b-1/p?layout=objects", &s3_opts()).unwrap();
        assert_eq!(s.layout_name(), "objects");
    }

    #[test]
    fn unknown_schemes() {
        for url in ["ftp://host/x", "s4://b"] {
            let e = err(url);
            assert!(
                matches!(e, StorageError::UnknownScheme { .. }),
                "{url}: {e}"
            );
        }
        assert!(err("ftp://h").to_string().contains("\"ftp\""));
    }

    #[test]
    fn missing_and_bad_buckets() {
        for url in ["s3://", "s3:///prefix", "gs://", "az://", "azure:///x"] {
            let e = err(url);
            assert!(
                matches!(e, StorageError::MissingBucket { .. }),
                "{url}: {e}"
            );
        }
        assert!(err("az://").to_string().contains("no container"));
        assert!(err("s3://").to_string().contains("no bucket"));
        for url in [
            "s3://ab",
            "s3://Upper",
            "s3://under_score",
            "s3://-dash",
            "az://dot.ted",
        ] {
            let e = err(url);
            assert!(matches!(e, StorageError::BadBucket { .. }), "{url}: {e}");
        }
        assert!(StorageUrl::parse(&format!("s3://{}", "a".repeat(64))).is_err());
        assert!(StorageUrl::parse(&format!("gs://{}", "a".repeat(64))).is_ok());
    }

    #[test]
    #[cfg(feature = "s3")]
    fn endpoints_and_plain_http() {
        let u = "s3://b";
        for e in [
            "http://127.0.0.1:9000",
            "http://127.1.2.3",
            "http://localhost:1/path",
            "http://[::1]:9000",
            "http://user:pw@127.0.0.1:9",
        ] {
            assert!(check_endpoint(u, e, false).unwrap(), "{e}");
        }
        assert!(!check_endpoint(u, "https://s3.example.com", false).unwrap());
        assert!(check_endpoint(u, "http://10.0.0.1:9000", true).unwrap());
        for e in [
            "http://10.0.0.1:9000",
            "http://s3.example.com",
            "http://[::2]",
        ] {
            let err = check_endpoint(u, e, false).unwrap_err();
            assert!(
                matches!(err, StorageError::InsecureEndpoint { .. }),
                "{e}: {err}"
            );
            assert!(err.to_string().contains("allow_http"), "{err}");
        }
        for e in [
            "127.0.0.1:9000",
            "ftp://h",
            "http://",
            "http://[::1",
            "http://:80",
        ] {
            let err = check_endpoint(u, e, false).unwrap_err();
            assert!(
                matches!(err, StorageError::BadEndpoint { .. }),
                "{e}: {err}"
            );
        }
        // The same checks on open, for every networked scheme.
        for url in ["s3://bucket", "az://container", "gs://bucket"] {
            let opts = StorageOptions {
                endpoint: Some("http://storage.example.com".into()),
                ..s3_opts()
            };
            let e = open_storage(url, &opts).err().unwrap();
            assert!(
                matches!(e, StorageError::InsecureEndpoint { .. }),
                "{url}: {e}"
            );
            let opts = StorageOptions {
                endpoint: Some("storage.example.com".into()),
                ..s3_opts()
            };
            let e = open_storage(url, &opts).err().unwrap();
            assert!(matches!(e, StorageError::BadEndpoint { .. }), "{url}: {e}");
        }
    }

    #[test]
    fn stores_missing_from_the_build_are_named() {
        let cases = [
            ("s3://bucket/p", "S3", "s3", cfg!(feature = "s3")),
            ("azure://recs", "Azure", "azure", cfg!(feature = "azure")),
            ("gs://recordings", "GCS", "gcp", cfg!(feature = "gcp")),
        ];
        for (url, store, feature, built) in cases {
            let e = open_storage(url, &StorageOptions::default()).err();
            if built {
                assert!(!matches!(e, Some(StorageError::NoBackend { .. })), "{url}");
                continue;
            }
            let e = e.unwrap();
            assert!(
                matches!(&e, StorageError::NoBackend { store: s, feature: f, .. } if *s == store && *f == feature),
                "{url}: {e}"
            );
            let msg = e.to_string();
            assert!(msg.contains(&format!("no {store} support")), "{msg}");
            assert!(
                msg.contains(&format!("feature `{feature}` of tapelog-store")),
                "{msg}"
            );
        }
    }

    #[test]
    #[cfg(feature = "s3")]
    fn opens_s3_and_names_recordings() {
        let s = open_storage("s3://bucket/teleport/records/", &s3_opts()).unwrap();
        assert_eq!(
            s.recording_url(SID),
            format!("s3://bucket/teleport/records/{SID}")
        );
        assert_eq!(
            s.recording_path(SID).as_ref(),
            format!("teleport/records/{SID}.tar")
        );
        let s = open_storage("s3://bucket", &s3_opts()).unwrap();
        assert_eq!(s.recording_url(SID), format!("s3://bucket/{SID}"));
        assert_eq!(s.recording_path(SID).as_ref(), format!("{SID}.tar"));
        // Plain HTTP off loopback is fine once allowed.
        let opts = StorageOptions {
            endpoint: Some("http://minio.internal:9000".into()),
            allow_http: true,
            ..s3_opts()
        };
        assert!(open_storage("s3://bucket", &opts).is_ok());
    }

    #[test]
    #[cfg(feature = "azure")]
    fn opens_azure() {
        let opts = StorageOptions {
            endpoint: Some("http://127.0.0.1:10000".into()),
            azure_use_emulator: true,
            ..StorageOptions::default()
        };
        let s = open_storage("azure://recs/x", &opts).unwrap();
        assert_eq!(s.recording_url(SID), format!("az://recs/x/{SID}"));
        // Real Azure needs an account.
        let e = open_storage("az://recs", &StorageOptions::default())
            .err()
            .unwrap();
        assert!(matches!(e, StorageError::Store { .. }), "{e}");
        assert!(e.to_string().contains("az://recs"), "{e}");
        let opts = StorageOptions {
            azure_account: Some("acct".into()),
            azure_access_key: Some("not base64!".into()),
            ..StorageOptions::default()
        };
        let e = open_storage("az://recs", &opts).err().unwrap();
        assert!(matches!(e, StorageError::Store { .. }), "{e}");
    }

    #[test]
    #[cfg(feature = "gcp")]
    fn opens_gcs_from_a_service_account_file_without_network() {
        let dir = tempfile::tempdir().unwrap();
        let sa = dir.path().join("sa.json");
        std::fs::write(
            &sa,
            r#"{"type":"service_account","project_id":"p","private_key_id":"k1",
                "private_key":"unused","client_email":"svc@p.iam.gserviceaccount.com",
                "disable_oauth":true}"#,
        )
        .unwrap();
        let opts = StorageOptions {
            google_service_account: Some(sa.display().to_string()),
            ..StorageOptions::default()
        };
        let s = open_storage("gs://recordings/tp", &opts).unwrap();
        assert_eq!(s.recording_url(SID), format!("gs://recordings/tp/{SID}"));
        // A file that is not a service account is named in the error.
        std::fs::write(&sa, "{}").unwrap();
        let e = open_storage("gs://recordings/tp", &opts).err().unwrap();
        assert!(matches!(e, StorageError::Store { .. }), "{e}");
        assert!(e.to_string().contains("gs://recordings/tp"), "{e}");
        let opts = StorageOptions {
            google_service_account: Some("/nonexistent/sa.json".into()),
            ..StorageOptions::default()
        };
        assert!(open_storage("gs://recordings", &opts).is_err());
    }

    #[test]
    #[cfg(all(feature = "s3", feature = "azure"))]
    fn unknown_options_are_refused() {
        let mut opts = s3_opts();
        opts.config.push(("aws_no_such_thing".into(), "1".into()));
        let e = open_storage("s3://bucket", &opts).err().unwrap();
        assert!(
            matches!(e, StorageError::UnknownOption { store: "S3", .. }),
            "{e}"
        );
        // Other stores' keys are not S3's business.
        let mut opts = s3_opts();
        opts.config.push(("azure_no_such_thing".into(), "1".into()));
        assert!(open_storage("s3://bucket", &opts).is_ok());
        let e = open_storage("az://container", &opts).err().unwrap();
        assert!(
            matches!(e, StorageError::UnknownOption { store: "Azure", .. }),
            "{e}"
        );
    }

    #[test]
    #[cfg(all(feature = "s3", feature = "azure", feature = "gcp"))]
    fn options_from_the_environment() {
        let vars = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_SESSION_TOKEN", "TOK"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_PROFILE", "ignored: object_store has no such key"),
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
            ("AZURE_STORAGE_USE_EMULATOR", "1"),
            ("AZURE_STORAGE_ENDPOINT", "http://127.0.0.1:10000/acct"),
            ("GOOGLE_SERVICE_ACCOUNT", "/etc/sa.json"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/etc/adc.json"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let o = StorageOptions::from_vars(vars);
        assert_eq!(o.endpoint, None);
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        assert_eq!(o.access_key_id.as_deref(), Some("AK"));
        assert_eq!(o.secret_access_key.as_deref(), Some("SK"));
        assert_eq!(o.session_token.as_deref(), Some("TOK"));
        assert!(o.allow_http);
        assert_eq!(o.azure_account.as_deref(), Some("acct"));
        assert_eq!(o.azure_access_key.as_deref(), Some("a2V5"));
        assert!(o.azure_use_emulator);
        assert_eq!(o.google_service_account.as_deref(), Some("/etc/sa.json"));
        assert_eq!(
            o.google_application_credentials.as_deref(),
            Some("/etc/adc.json")
        );
        assert_eq!(
            o.config,
            vec![
                (
                    "aws_endpoint_url".to_string(),
                    "http://127.0.0.1:9000".to_string()
                ),
                (
                    "azure_storage_endpoint".to_string(),
                    "http://127.0.0.1:10000/acct".to_string()
                ),
            ]
        );
        // AWS_REGION wins over AWS_DEFAULT_REGION; empty values count as unset.
        let o = StorageOptions::from_vars(
            [
                ("AWS_REGION", "us-west-2"),
                ("AWS_DEFAULT_REGION", "x"),
                ("AWS_ACCESS_KEY_ID", ""),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(o.region.as_deref(), Some("us-west-2"));
        assert_eq!(o.access_key_id, None);
        assert!(!o.allow_http);
        // The per-scheme endpoint from the environment is checked like an explicit one.
        let o = StorageOptions {
            config: vec![("aws_endpoint_url".into(), "http://10.1.1.1:9000".into())],
            ..StorageOptions::default()
        };
        let e = open_storage("s3://bucket", &o).err().unwrap();
        assert!(matches!(e, StorageError::InsecureEndpoint { .. }), "{e}");
    }

    #[tokio::test]
    async fn file_and_memory_open_working_stores() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a b").join("records");
        let url = format!("file://{}", sub.display()).replace(' ', "%20");
        let s = open_storage(&url, &StorageOptions::default()).unwrap();
        assert!(sub.is_dir(), "created");
        assert_eq!(
            s.recording_url(SID),
            format!("file://{}/{SID}", sub.display())
        );
        let u = s.create_upload(SID).await.unwrap();
        assert!(
            sub.join("multi")
                .join(&u.id)
                .join(SID)
                .join("upload")
                .is_file()
        );
        let plain = open_storage(&sub.display().to_string(), &StorageOptions::default()).unwrap();
        assert_eq!(plain.list_uploads().await.unwrap().len(), 1);
        let m = open_storage("memory://", &StorageOptions::default()).unwrap();
        assert_eq!(m.recording_url(SID), format!("memory://{SID}"));
        assert!(m.list_uploads().await.unwrap().is_empty());
        // A file where the directory should be.
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = open_storage(
            &file.join("d").display().to_string(),
            &StorageOptions::default(),
        )
        .err()
        .unwrap();
        assert!(matches!(e, StorageError::Directory { .. }), "{e}");
    }
}
