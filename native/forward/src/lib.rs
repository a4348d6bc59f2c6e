//! # tapelog-forward: the Fluentd exporter
//!
//! `tapelog forward`: the Fluentd exporter (upstream's `teleport-event-handler`).
//!
//! Reads audit events in order from a tapelog data directory or a `tapelog serve`, and the
//! session events of every uploaded session, and sends them to Fluentd; the stored position
//! only ever passes events Fluentd accepted (at-least-once). See `docs/forward.md`.
//!
//! - [`options`]: every option from flag, `FDFWD_*`/`FDWRD_*` variable, or TOML.
//! - [`state`]: the state directory (crash-safe files, dead letters).
//! - [`source`]: the audit log and session events, local or from a server.
//! - [`output`]: the interface of outputs; [`http`]: Fluentd's `in_http` (and the dry run);
//!   [`tcp`]: Fluentd's Forward protocol (`forward://`, `forward+tls://`).
//! - [`configure`]: `tapelog forward configure` (certificates, `fluent.conf`, TOML).
//! - [`pipeline`]: the exporter loop (a reader, one ordered lane per source, commits,
//!   sessions).
//! - The rules without I/O are the core's: [`tapelog_core::forward`].
//!
//! Depends on `tapelog-core`, `tapelog-api`, `tapelog-audit`, `tapelog-client` and
//! `tapelog-store` (no cloud features: it reads local stores, or sessions through a
//! server).
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod configure;
pub mod http;
pub mod log;
pub mod options;
pub mod output;
pub mod pipeline;
pub mod source;
pub mod state;
pub mod tcp;

use std::path::PathBuf;
use std::sync::Arc;

pub use options::{ForwardArgs, ForwardOptions, OptionsError};
pub use output::{Destination, Output, SendError};
pub use pipeline::{Summary, run, run_with_output};

/// Why the exporter stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Bad options.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// `--start-time` differs from the stored one.
    #[error(transparent)]
    StartTime(#[from] tapelog_core::forward::StartTimeError),
    /// A state file could not be read or written.
    #[error("state {}: {source}", path.display())]
    State {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A state file holds something unreadable.
    #[error(transparent)]
    StateFile(#[from] tapelog_core::forward::state::StateError),
    /// Certificates or keys can't be used.
    #[error("{0}")]
    Credentials(String),
    /// A URL can't be used.
    #[error("{option} {url:?}: {reason}")]
    Url {
        /// The option.
        option: String,
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The output's URL scheme names no output.
    #[error(
        "{option} {url:?}: the scheme {scheme:?} is not supported (https:// or http:// for Fluentd's in_http, forward+tls:// or forward:// for its Forward protocol)"
    )]
    UnsupportedScheme {
        /// The option.
        option: String,
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// Reading the audit log or a session failed.
    #[error("reading events: {message}")]
    Source {
        /// What failed.
        message: String,
        /// Whether trying again may work.
        transient: bool,
    },
    /// The Forward-protocol output can't be set up (URL, certificates).
    #[error(transparent)]
    Fluent(#[from] tcp::TcpError),
    /// A session has no recording (yet), or an export chunk is gone.
    #[error("{0}")]
    NotFound(String),
    /// The source lacks a call (`Unimplemented`: an older Teleport cluster).
    #[error("{0}")]
    NotImplemented(String),
}

impl ForwardError {
    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ForwardError::Source {
                transient: true,
                ..
            }
        )
    }
}

/// Opens the output `--fluentd-url`'s scheme names: `https://`/`http://` → in_http;
/// `forward://`/`forward+tls://` → Fluentd's Forward protocol ([`tcp`]);
/// `--dry-run` → an output that sends nothing. Both URLs must use the same kind.
pub fn open_output(opts: &ForwardOptions) -> Result<Arc<dyn Output>, ForwardError> {
    if opts.dry_run {
        return Ok(Arc::new(http::DryRunOutput));
    }
    let scheme_of = |url: &str| {
        url.split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default()
    };
    let scheme = scheme_of(&opts.fluentd_url);
    let is_forward = |s: &str| s == "forward" || s == "forward+tls";
    let session_scheme = scheme_of(&opts.fluentd_session_url);
    if is_forward(&scheme) != is_forward(&session_scheme) {
        return Err(ForwardError::Url {
            option: "--fluentd-session-url".into(),
            url: opts.fluentd_session_url.clone(),
            reason: format!(
                "its scheme {session_scheme:?} is not the same kind as --fluentd-url's {scheme:?} (both in_http or both Forward protocol)"
            ),
        });
    }
    match scheme.as_str() {
        "https" | "http" => {
            let config = http::HttpConfig {
                url: opts.fluentd_url.clone(),
                session_url: opts.fluentd_session_url.clone(),
                ca: opts.fluentd_ca.clone(),
                identity: opts.fluentd_cert.clone().zip(opts.fluentd_key.clone()),
                max_connections: opts.fluentd_max_connections,
            };
            Ok(Arc::new(http::HttpOutput::new(&config)?))
        }
        "forward" | "forward+tls" => {
            let config = tcp::TcpConfig {
                audit_url: opts.fluentd_url.clone(),
                session_url: opts.fluentd_session_url.clone(),
                ca: opts.fluentd_ca.clone(),
                cert: opts.fluentd_cert.clone(),
                key: opts.fluentd_key.clone(),
                max_connections: opts.fluentd_max_connections.max(1),
                timeout: tcp::DEFAULT_TIMEOUT,
                clock: tapelog_audit::clock::system(),
            };
            Ok(Arc::new(tcp::TcpOutput::new(config)?))
        }
        _ => Err(ForwardError::UnsupportedScheme {
            option: "--fluentd-url".into(),
            url: opts.fluentd_url.clone(),
            scheme,
        }),
    }
}
