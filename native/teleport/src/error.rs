//! [`TeleportError`]: what went wrong talking to a Teleport Auth server, with the address,
//! the call, and what to check.

use std::path::PathBuf;

use thiserror::Error;
use tonic::Code;

/// The kind of a failed call, as Teleport's client classifies gRPC codes (`trail.FromGRPC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// gRPC `NotFound` (a missing recording, an unknown export chunk).
    NotFound,
    /// gRPC `PermissionDenied` (the identity's roles do not allow the call).
    AccessDenied,
    /// gRPC `ResourceExhausted`.
    LimitExceeded,
    /// gRPC `Unimplemented` (an older cluster, or an audit backend without the call).
    NotImplemented,
    /// gRPC `Unavailable` (Teleport's ConnectionProblem).
    Unavailable,
    /// gRPC `InvalidArgument` (e.g. a page limit above 10,000).
    BadParameter,
    /// gRPC `AlreadyExists`.
    AlreadyExists,
    /// gRPC `FailedPrecondition`.
    CompareFailed,
    /// Any other gRPC code.
    Other,
    /// The TCP connection or the TLS handshake failed.
    Connect,
    /// The identity file or certificate files could not be used.
    Credentials,
    /// The server sent something that does not decode.
    Decode,
}

impl ErrorKind {
    /// The kind of a gRPC status code.
    pub fn from_code(code: Code) -> ErrorKind {
        match code {
            Code::NotFound => ErrorKind::NotFound,
            Code::PermissionDenied => ErrorKind::AccessDenied,
            Code::ResourceExhausted => ErrorKind::LimitExceeded,
            Code::Unimplemented => ErrorKind::NotImplemented,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::InvalidArgument => ErrorKind::BadParameter,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::FailedPrecondition => ErrorKind::CompareFailed,
            _ => ErrorKind::Other,
        }
    }
}

/// What went wrong reading an identity file or certificate files.
#[derive(Debug, Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file lacks a part, or a part does not parse.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
}

/// A failed operation against a Teleport Auth server.
#[derive(Debug, Error)]
pub enum TeleportError {
    /// The server answered a call with an error status.
    #[error("{rpc} on {addr}: {kind:?} ({code:?}): {message}{}", hint(*kind))]
    Rpc {
        /// Teleport's classification of the code.
        kind: ErrorKind,
        /// The gRPC code.
        code: Code,
        /// The server's message.
        message: String,
        /// The Auth address.
        addr: String,
        /// The call, e.g. `GetUnstructuredEvents`.
        rpc: &'static str,
    },
    /// TCP or TLS failed before any call.
    #[error("connecting to {addr}: {what}")]
    Connect {
        /// The Auth address.
        addr: String,
        /// What failed, with what to check.
        what: String,
    },
    /// Credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// An item of a reply does not decode.
    #[error("{rpc} on {addr}: item {position} does not decode: {what}")]
    BadItem {
        /// The Auth address.
        addr: String,
        /// The call.
        rpc: &'static str,
        /// 0-based position of the item in the page or stream.
        position: usize,
        /// What is wrong with it.
        what: String,
    },
}

impl TeleportError {
    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TeleportError::Rpc { kind, .. } => *kind,
            TeleportError::Connect { .. } => ErrorKind::Connect,
            TeleportError::Credentials(_) => ErrorKind::Credentials,
            TeleportError::BadItem { .. } => ErrorKind::Decode,
        }
    }

    /// Whether trying again may work: the server unreachable, restarting or overloaded
    /// (`Unavailable`, a failed connection, `ResourceExhausted`), or a call cut or failed on
    /// its side (`Unknown` — a connection reset mid-stream —, `Internal`, `Aborted`,
    /// `DeadlineExceeded`). Upstream's handler retries every error of its events loop;
    /// refused credentials and invalid requests are left to the caller here, and so is
    /// `Cancelled`, which is how a client certificate refused after the TLS 1.3 handshake
    /// shows.
    pub fn is_retryable(&self) -> bool {
        match self {
            TeleportError::Connect { .. } => true,
            TeleportError::Rpc { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::Unknown
                    | Code::Internal
                    | Code::Aborted
                    | Code::DeadlineExceeded
            ),
            TeleportError::Credentials(_) | TeleportError::BadItem { .. } => false,
        }
    }

    /// Whether the call ended `Cancelled`: its connection ended before it was answered (a
    /// server restarting, or a client certificate refused after a TLS 1.3 handshake whose
    /// alert did not come through). The caller knows which: whether the connection had
    /// answered a call before.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            TeleportError::Rpc {
                code: Code::Cancelled,
                ..
            }
        )
    }

    /// Whether the server may have refused the identity: `PermissionDenied`,
    /// `Unauthenticated`, credentials that do not load, or `Cancelled` — how a client
    /// certificate refused after the TLS 1.3 handshake (expired, or of another cluster's CA)
    /// shows. A renewed identity file may mend these.
    pub fn is_refused_identity(&self) -> bool {
        match self {
            TeleportError::Credentials(_) => true,
            TeleportError::Rpc { code, .. } => matches!(
                code,
                Code::PermissionDenied | Code::Unauthenticated | Code::Cancelled
            ),
            TeleportError::Connect { .. } | TeleportError::BadItem { .. } => false,
        }
    }

    /// The error of a failed call.
    pub(crate) fn from_status(addr: &str, rpc: &'static str, s: &tonic::Status) -> TeleportError {
        if let Some(what) = crate::connect::dial_failure(s) {
            return TeleportError::Connect {
                addr: addr.to_string(),
                what,
            };
        }
        let mut message = s.message().to_string();
        if s.code() == Code::Cancelled {
            message.push_str(
                " (the connection ended before an answer: the server restarted, or refused the \
                 client certificate: check that the identity is not expired and was issued by \
                 this cluster's CA)",
            );
        }
        if looks_like_http1(&message) {
            message.push_str(&format!(
                " (the server did not answer as a gRPC Auth server: {PROXY_NOTE})"
            ));
        }
        TeleportError::Rpc {
            kind: ErrorKind::from_code(s.code()),
            code: s.code(),
            message,
            addr: addr.to_string(),
            rpc,
        }
    }
}

/// Why a Proxy address does not work.
pub(crate) const PROXY_NOTE: &str = "give the Auth Service address (host:3025); a Proxy address \
    with TLS routing (e.g. :443) is not supported";

fn looks_like_http1(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("content-type") || m.contains("http/1") || m.contains("text/html")
}

fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::AccessDenied => {
            ". Check the identity's roles: reading events needs `event` and `session` with \
             verbs `list`,`read` (the `teleport-event-handler` role); locking needs \
             `lock: [create, update]`; an expired identity must be renewed"
        }
        ErrorKind::Unavailable => {
            ". The Auth server is unreachable or restarting; check the address and the network"
        }
        ErrorKind::NotImplemented => {
            ". The cluster (or its audit backend) does not offer this call"
        }
        ErrorKind::NotFound => "",
        ErrorKind::BadParameter => ". The request was refused as invalid (limit above 10,000?)",
        _ => "",
    }
}
