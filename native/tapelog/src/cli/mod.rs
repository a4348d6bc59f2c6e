//! The commands of the `tapelog` binary: argument parsing and printing around the library.

pub mod certs;
pub mod emit;
pub mod export;
pub mod forward;
pub mod play;
pub mod record;
pub mod remote;
pub mod search;
pub mod serve;
pub mod sessions;
pub mod storage;
pub mod upload;
pub mod uploads;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Why a command failed; the message says what, on which file or upload, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A recording could not be read.
    #[error(transparent)]
    Read(#[from] tapelog_store::file::ReadError),
    /// An output could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// An event could not be encoded.
    #[error("event {index} ({event_type}): {source}")]
    Event {
        /// Its index.
        index: i64,
        /// Its type.
        event_type: String,
        /// What was wrong.
        source: tapelog_core::EventError,
    },
    /// The `--storage` URL is wrong or the store can't be opened.
    #[error(transparent)]
    Storage(#[from] tapelog_store::url::StorageError),
    /// The store refused.
    #[error(transparent)]
    Upload(#[from] tapelog_store::UploadError),
    /// The stream stopped.
    #[error(transparent)]
    Driver(#[from] tapelog_store::stream::DriverError),
    /// An upload failed part-way; it can be resumed.
    #[error("{source}\n  the upload stays resumable: run the same command with --resume {upload}")]
    Resumable {
        /// What went wrong.
        source: Box<CliError>,
        /// The upload to resume.
        upload: String,
    },
    /// The upload is no longer open in the store: another process completed it, or took it
    /// over (a resume or the completer) and finished it. Resuming it is not possible.
    #[error(
        "{source}\n  upload {upload} is no longer open: another process completed or took over it{}; this process stops (see `tapelog uploads list`)",
        match recording { Some(url) => format!(" (the recording is at {url})"), None => String::new() }
    )]
    UploadGone {
        /// What went wrong here.
        source: Box<CliError>,
        /// The upload.
        upload: String,
        /// The completed recording's URL, when it exists.
        recording: Option<String>,
    },
    /// Stopped by SIGINT or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] tapelog_audit::AuditError),
    /// An event could not be written to the audit log.
    #[error("line {line}: {source}")]
    Emit {
        /// The input line.
        line: u64,
        /// What went wrong.
        source: tapelog_audit::emit::EmitError,
    },
    /// A call to `tapelog serve` failed.
    #[error(transparent)]
    Client(#[from] tapelog_client::ClientError),
    /// A session could not be recorded.
    #[error(transparent)]
    Record(#[from] tapelog_term::record::RecordError),
    /// The Fluentd exporter failed.
    #[error(transparent)]
    Forward(#[from] tapelog_forward::ForwardError),
    /// A Teleport cluster (`--teleport`) could not be read: the message names its address,
    /// the call and what to check. Every `TeleportError` becomes a `CliError` here.
    #[error(transparent)]
    Teleport(#[from] tapelog_teleport::TeleportError),
    /// Some input lines were rejected (each was reported).
    #[error("{rejected} of {total} lines rejected")]
    Rejected {
        /// Lines rejected.
        rejected: u64,
        /// Lines read (blank lines not counted).
        total: u64,
    },
}

/// The decode threads of `play` and `upload`: `--jobs`, else [`DEFAULT_DECODE_JOBS`].
pub fn decode_jobs(flag: Option<u16>) -> usize {
    flag.map_or(DEFAULT_DECODE_JOBS, usize::from)
}

/// `play` and `upload` decode one part after the other unless `--jobs` says otherwise
/// (measured in docs/benchmarks.md, "Parallel decode").
pub const DEFAULT_DECODE_JOBS: usize = 1;

/// A progress bar on standard error when it is a terminal (hidden otherwise).
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Becomes `true` on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed before this
/// returns, so a signal that arrives right after is not lost (nor fatal).
pub fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
        let _ = tx.send(true);
    });
    rx
}
