//! The Fluentd `in_http` output: one POST per batch, the body a JSON array (one record per
//! element), over TLS with a client certificate.
//!
//! - Audit batches go to `--fluentd-url`, session batches to `--fluentd-session-url` +
//!   `.<sid>.log` (in_http takes the tag from the path).
//! - Only `200` is success. `400` (invalid JSON, unparseable `time`) and `413` (body over
//!   in_http's 32 MB limit) are [`SendError::Rejected`]: the same body fails again. Every
//!   other status, timeouts, connection and TLS failures are [`SendError::Transient`].
//! - At most `--fluentd-max-connections` requests are in flight (a semaphore), and the
//!   connection pool keeps as many idle connections for reuse; each request is bounded by
//!   30 s.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use super::ForwardError;
use super::output::{Destination, Output, SendError};

/// Bound on one request, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error answer is kept for the message.
const MAX_REASON: usize = 512;

/// How [`HttpOutput`] connects.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `--fluentd-url`.
    pub url: String,
    /// `--fluentd-session-url`.
    pub session_url: String,
    /// `--fluentd-ca`: the roots Fluentd's certificate must chain to (none: the system's).
    pub ca: Option<std::path::PathBuf>,
    /// `--fluentd-cert` and `--fluentd-key`.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Requests in flight at most.
    pub max_connections: usize,
}

/// The in_http output.
pub struct HttpOutput {
    http: reqwest::Client,
    url: reqwest::Url,
    session_url: String,
    permits: Arc<Semaphore>,
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, ForwardError> {
    std::fs::read(path)
        .map_err(|source| ForwardError::Credentials(format!("{what} {}: {source}", path.display())))
}

fn parse_url(option: &str, url: &str) -> Result<reqwest::Url, ForwardError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| ForwardError::Url {
        option: option.into(),
        url: url.into(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ForwardError::Url {
            option: option.into(),
            url: url.into(),
            reason: "the in_http output needs http:// or https://".into(),
        });
    }
    Ok(parsed)
}

impl HttpOutput {
    /// Checks the URLs and loads the certificates; connects on the first send.
    pub fn new(config: &HttpConfig) -> Result<HttpOutput, ForwardError> {
        let url = parse_url("--fluentd-url", &config.url)?;
        parse_url("--fluentd-session-url", &config.session_url)?;
        let max = config.max_connections.max(1);
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(max)
            .tcp_nodelay(true)
            .no_proxy();
        if let Some(ca) = &config.ca {
            let pem = read_file("--fluentd-ca", ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ForwardError::Credentials(format!(
                    "--fluentd-ca {}: not PEM certificates: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(ForwardError::Credentials(format!(
                    "--fluentd-ca {}: no certificate in the file",
                    ca.display()
                )));
            }
            builder = builder.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &config.identity {
            let mut pem = read_file("--fluentd-cert", cert)?;
            pem.push(b'\n');
            pem.extend(read_file("--fluentd-key", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ForwardError::Credentials(format!(
                    "--fluentd-cert {} / --fluentd-key {}: not a PEM certificate and key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(id);
        }
        let http = builder
            .build()
            .map_err(|e| ForwardError::Credentials(format!("setting up TLS for Fluentd: {e}")))?;
        Ok(HttpOutput {
            http,
            url,
            session_url: config.session_url.trim_end_matches('/').to_string(),
            permits: Arc::new(Semaphore::new(max)),
        })
    }

    fn target(&self, to: Destination<'_>) -> Result<reqwest::Url, SendError> {
        match to {
            Destination::Audit => Ok(self.url.clone()),
            Destination::Session(sid) => {
                let u = tapelog_core::forward::session_target(self.session_url.as_str(), sid);
                reqwest::Url::parse(&u)
                    .map_err(|e| SendError::Rejected(format!("session URL {u}: {e}")))
            }
        }
    }

    async fn post(&self, to: Destination<'_>, events: &[String]) -> Result<(), SendError> {
        let url = self.target(to)?;
        let body = tapelog_core::forward::body(events);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Transient("the output is closed".into()))?;
        let resp = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("POST {url}: {}", error_chain(&e))))?;
        let status = resp.status();
        if status == StatusCode::OK {
            // Drain the (empty) body so the connection is reused.
            let _ = resp.bytes().await;
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let reason: String = text.trim().chars().take(MAX_REASON).collect();
        let msg = format!("POST {url}: HTTP {status}: {reason}");
        if status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE {
            Err(SendError::Rejected(msg))
        } else {
            Err(SendError::Transient(msg))
        }
    }
}

/// An error with its causes (reqwest hides the TLS reason in the chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

impl Output for HttpOutput {
    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        events: &'a [String],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.post(to, events))
    }

    fn describe(&self, to: Destination<'_>) -> String {
        match to {
            Destination::Audit => self.url.to_string(),
            Destination::Session(sid) => format!("{}.{sid}.log", self.session_url),
        }
    }
}

/// `--dry-run`: accepts everything, sends nothing.
pub struct DryRunOutput;

impl Output for DryRunOutput {
    fn send<'a>(
        &'a self,
        _to: Destination<'a>,
        _events: &'a [String],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }

    fn describe(&self, to: Destination<'_>) -> String {
        match to {
            Destination::Audit => "dry run (audit)".into(),
            Destination::Session(sid) => format!("dry run (session {sid})"),
        }
    }
}
