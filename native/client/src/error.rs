//! [`ClientError`]: why a call to `tapelog serve` failed, said so that a person can act on it.

use tapelog_api::{ErrorBody, ErrorCode};

use crate::failover::Failure;

/// Why a call to the server failed. Every variant names the server URL; none carries a
/// token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not usable.
    #[error(
        "{url:?} is not a server URL: {reason} (expected http://HOST:PORT or https://HOST:PORT)"
    )]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A credentials file could not be read.
    #[error("reading the {what} {path}: {source}")]
    CredentialsFile {
        /// What the file is ("token file", "client certificate", ...).
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Credentials were given but cannot be used.
    #[error("{0}")]
    Credentials(String),
    /// The server could not be reached: the connection was refused, or a kept-alive
    /// connection turned out closed and a new one failed too (the server is gone).
    #[error(
        "cannot connect to {url}: {reason}; is `tapelog serve` running there? Check the address (--server, TAPELOG_SERVER) and that the server is up"
    )]
    Connect {
        /// The URL of the request.
        url: String,
        /// What failed (the error chain, no credentials in it).
        reason: String,
    },
    /// The TLS handshake failed (unknown server CA, refused client certificate, ...).
    #[error(
        "TLS with {url} failed: {reason}; check --ca (the CA that signed the server's certificate) and --cert/--key (a client certificate the server's --client-ca signed)"
    )]
    Tls {
        /// The URL of the request.
        url: String,
        /// What rustls said.
        reason: String,
    },
    /// No answer in time.
    #[error("{method} {url}: no answer in time ({reason})")]
    Timeout {
        /// The request method.
        method: String,
        /// The URL.
        url: String,
        /// What timed out.
        reason: String,
    },
    /// The connection failed during the request or the answer (the server went away).
    #[error("{method} {url}: the connection failed: {reason}")]
    Transport {
        /// The request method.
        method: String,
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an error (docs/api.md, "Errors").
    #[error("{method} {url}: {status} {}: {message}{}", code_name(*.code), hint(*.status))]
    Api {
        /// The request method.
        method: String,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The API's error code (`None` when the body was not an API error).
        code: Option<ErrorCode>,
        /// The server's message (or the start of the body).
        message: String,
    },
    /// A streamed answer ended with the server's error line (the events before it were
    /// given; docs/api.md, `GET /v1/sessions/{sid}/events`).
    #[error("{url}: the answer stopped at line {line}: {}: {message}", code_name(Some(*.code)))]
    Stopped {
        /// The URL.
        url: String,
        /// The error line's number (every line before it was an event, given).
        line: u64,
        /// The API's error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("{url}: unexpected answer: {reason}")]
    BadAnswer {
        /// The URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An id that can't be put in a URL path: `.` and `..` are removed by URL normalisation
    /// (also when percent-encoded), so the request would reach another endpoint.
    #[error("{id:?} is not a session or upload id (ids are UUIDs)")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// A query cannot be expressed in the API.
    #[error("{0}")]
    Unsupported(String),
    /// Every server of a client with several failed a call in a way that let it go on to
    /// the next (unreachable, 503, or an idempotent request without an answer), for every
    /// pass the client makes (docs/api.md, "Replicas and failover").
    #[error(
        "{method} {path}: none of the {} servers answered ({rounds} pass(es) over them); the last pass:{}",
        .failures.len(),
        each_line(.failures)
    )]
    AllServersFailed {
        /// The request method.
        method: String,
        /// The endpoint (no server, no query).
        path: String,
        /// The passes made over the servers.
        rounds: u32,
        /// What each server said on the last pass, in the order tried (each names its URL).
        failures: Vec<ClientError>,
    },
}

fn each_line(failures: &[ClientError]) -> String {
    failures.iter().map(|e| format!("\n  - {e}")).collect()
}

fn code_name(code: Option<ErrorCode>) -> String {
    match code {
        Some(c) => serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        None => "error".into(),
    }
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => {
            "\n  give credentials the server knows: --token-file FILE, TAPELOG_TOKEN, TAPELOG_TOKEN_FILE, <data-dir>/admin.token, or a client certificate (--cert/--key)"
        }
        403 => {
            "\n  these credentials' role may not do this: reading needs an auditor or admin token, recording a recorder or admin one"
        }
        503 => "\n  the server is shutting down; try again when it is back",
        _ => "",
    }
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// The server could not be reached, timed out or dropped the connection: trying again
    /// (later, or on a restarted server) may work.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Timeout { .. }
                | ClientError::Transport { .. }
                | ClientError::AllServersFailed { .. }
        )
    }

    /// An API error from the status and body of an answer.
    pub(crate) fn from_answer(method: &str, url: &str, status: u16, body: &[u8]) -> ClientError {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => (Some(b.error.code), b.error.message),
            Err(_) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
                let text = text.trim();
                let message = if text.is_empty() {
                    "(no message)".to_string()
                } else {
                    text.to_string()
                };
                (None, message)
            }
        };
        ClientError::Api {
            method: method.to_string(),
            url: url.to_string(),
            status,
            code,
            message,
        }
    }

    /// Sorts a reqwest error: connection, TLS, timeout or transport.
    pub(crate) fn from_reqwest(method: &str, url: &str, e: &reqwest::Error) -> ClientError {
        let reason = reason(e);
        let url = url.to_string();
        if is_tls(e) {
            return ClientError::Tls { url, reason };
        }
        if e.is_timeout() {
            return ClientError::Timeout {
                method: method.to_string(),
                url,
                reason,
            };
        }
        if e.is_connect() {
            return ClientError::Connect { url, reason };
        }
        ClientError::Transport {
            method: method.to_string(),
            url,
            reason,
        }
    }
}

/// What a reqwest error says failed: its sources (reqwest's own message repeats the URL,
/// with its query).
pub(crate) fn reason(e: &reqwest::Error) -> String {
    match std::error::Error::source(e) {
        Some(inner) => chain(inner),
        None => e.to_string(),
    }
}

/// How a request that got no answer failed, for the failover rules: a connection that could
/// not be made is [`Failure::NotSent`]; TLS failures and requests that could not be built are
/// [`Failure::Final`] (another server would not cure them); the rest (closed, reset, timed
/// out once sent) is [`Failure::Lost`].
pub(crate) fn failure_of(e: &reqwest::Error) -> Failure {
    if is_tls(e) || e.is_builder() || e.is_redirect() {
        Failure::Final
    } else if e.is_connect() {
        Failure::NotSent
    } else {
        Failure::Lost
    }
}

/// Whether a request failed because its connection was closed under it: the peer closed
/// or reset it before the answer came ("connection closed before message completed",
/// reset, broken pipe, an unexpected end). That is what a kept-alive connection to a
/// server that stopped or restarted looks like. A refused connection, a timeout or a TLS
/// failure is not this.
pub(crate) fn is_closed_connection(e: &reqwest::Error) -> bool {
    if e.is_connect() || e.is_timeout() || is_tls(e) {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The error and its sources, joined with ": " (repeated messages once).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Whether a rustls error is somewhere in the chain.
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        cur = err.source();
    }
    false
}
