//! `tapelog forward`: the Fluentd exporter (upstream's `teleport-event-handler`).
//!
//! Reads audit events in order from a tapelog data directory or a `tapelog serve`, and the
//! session events of every uploaded session, and sends them to Fluentd; the stored position
//! only ever passes events Fluentd accepted (at-least-once). See `docs/forward.md`.
//!
//! - [`options`]: every option from flag, `FDFWD_*`/`FDWRD_*` variable, or TOML.
//! - [`state`]: the state directory (crash-safe files, dead letters).
//! - [`source`]: the audit log and session events, local or from a server.
//! - [`output`]: the interface of outputs; [`http`]: Fluentd's `in_http` (and the dry run).
//! - [`pipeline`]: the exporter loop (a reader, one ordered lane per source, commits,
//!   sessions).
//! - The rules without I/O are the core's: [`tapelog_core::forward`].

pub mod http;
pub mod log;
pub mod options;
pub mod output;
pub mod pipeline;
pub mod source;
pub mod state;

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
    /// The output's URL scheme has no output in this build.
    #[error(
        "{option} {url:?}: the scheme {scheme:?} is not supported here (use https:// or http:// for Fluentd's in_http)"
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
    /// A session has no recording (yet).
    #[error("{0}")]
    NotFound(String),
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
/// `--dry-run` → an output that sends nothing.
///
/// `forward://` and `forward+tls://` (Fluentd's Forward protocol, `fluent.rs`) are built in
/// parallel; until they are wired here they return [`ForwardError::UnsupportedScheme`].
pub fn open_output(opts: &ForwardOptions) -> Result<Arc<dyn Output>, ForwardError> {
    if opts.dry_run {
        return Ok(Arc::new(http::DryRunOutput));
    }
    let scheme = opts
        .fluentd_url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
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
        // wired at merge: forward::fluent (FluentOutput::connect)
        "forward" | "forward+tls" => Err(ForwardError::UnsupportedScheme {
            option: "--fluentd-url".into(),
            url: opts.fluentd_url.clone(),
            scheme,
        }),
        _ => Err(ForwardError::UnsupportedScheme {
            option: "--fluentd-url".into(),
            url: opts.fluentd_url.clone(),
            scheme,
        }),
    }
}
