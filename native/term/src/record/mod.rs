//! Recording a terminal session: a command on a real PTY, its terminal passed through to ours
//! (raw mode while it runs), its output recorded as `print` events through a
//! [`SessionWriter`], resizes (SIGWINCH) as `resize` events, and `session.start`,
//! `session.leave`, `session.data`, `session.end` both in the recording and through an audit
//! emitter, as a Teleport node does.
//!
//! [`record`] is generic over where things go: an [`AuditStreamer`] (local uploads, or a
//! remote server's streams) and a [`BoxEmitter`] (the file audit log behind a checking emitter,
//! or a server). The `tapelog record` command is the glue that picks them.
//!
//! - `events.rs`: the session events and their fields ([`SessionEvents`], [`Identity`]).
//! - `pump.rs`: the output and input pumps (threads).

mod events;
mod pump;

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{Pid, Signal};
use tapelog_core::AuditEvent;
use tapelog_core::export::TerminalSize;
use tapelog_core::session::{PreparerConfig, WriterStats};
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};

use crate::pty::{
    Pty, PtyError, RawMode, foreground_group, is_terminal, set_window_size, window_size,
};
use tapelog_audit::emit::{BoxEmitter, system_clock};
use tapelog_session::{AuditStreamer, SessionWriter, SessionWriterConfig, WriterError};

pub use events::{Identity, SESSION_RECORDING_MODE, SessionEvents, current_user};
pub use pump::POLL_MS;

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// The session id (a UUID).
    pub session_id: String,
    /// Who and where.
    pub identity: Identity,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// The PTY's first size; `None`: our terminal's (standard input, else output), else 80×24.
    pub size: Option<TerminalSize>,
}

/// How a recorded session went.
#[derive(Debug)]
pub struct RecordOutcome {
    /// The session.
    pub session_id: String,
    /// The command's exit code; 128 + N when signal N ended it.
    pub exit_code: i32,
    /// Output bytes (`session.data` `tx`).
    pub bytes_out: u64,
    /// Input bytes (`session.data` `rx`).
    pub bytes_in: u64,
    /// Resize events recorded.
    pub resizes: u64,
    /// The session writer's counters (accepted, lost, ...).
    pub stats: WriterStats,
    /// What went wrong without stopping the session (audit events not stored, recording
    /// errors during the session, lost events).
    pub warnings: Vec<String>,
}

/// Why a session could not be recorded.
#[derive(Debug, Error)]
pub enum RecordError {
    /// No command.
    #[error("no command to record")]
    NoCommand,
    /// The PTY or the command failed.
    #[error(transparent)]
    Pty(#[from] PtyError),
    /// The recording could not start (the stream could not be opened, ...); the command was
    /// stopped.
    #[error(transparent)]
    Start(WriterError),
    /// The command ran, but finishing its recording failed. The upload holds what was stored
    /// and stays resumable (or is completed by the upload completer).
    #[error("{cause}")]
    Finish {
        /// The command's exit code.
        exit_code: i32,
        /// What failed.
        cause: WriterError,
    },
}

/// Records `config.command` on a PTY: see the module documentation. Standard input and output
/// are the user's terminal (raw mode while the command runs when standard input is one; the
/// terminal is restored on every way out, panics included). SIGINT, SIGTERM and SIGHUP sent
/// to this process are passed to the command's foreground process group. Returns once the
/// command has ended and the recording is complete.
pub async fn record(
    config: RecordConfig,
    streamer: Arc<dyn AuditStreamer>,
    emitter: BoxEmitter,
) -> Result<RecordOutcome, RecordError> {
    let (program, args) = config.command.split_first().ok_or(RecordError::NoCommand)?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stdin_tty = is_terminal(stdin.as_fd());
    let outer_size = || window_size(stdin.as_fd()).or_else(|| window_size(stdout.as_fd()));
    let mut size = config
        .size
        .or_else(outer_size)
        .unwrap_or(TerminalSize::DEFAULT);

    let pty = Pty::open(size)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let mut child = pty.spawn(&mut cmd)?;
    let child_pid = Pid::from_child(&child);
    // Our copy of the slave must go, or the end of the session is never seen on the master.
    let master = Arc::new(pty.into_master());

    let preparer = PreparerConfig {
        server_id: config.identity.server_id.clone(),
        ..PreparerConfig::new(&config.session_id, &config.identity.cluster_name)
    };
    let writer = match SessionWriter::new(SessionWriterConfig::new(preparer, streamer)).await {
        Ok(w) => Arc::new(w),
        Err(e) => {
            signal_group(&master, child_pid, Signal::HUP);
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            return Err(RecordError::Start(e));
        }
    };
    let command: Vec<String> = config
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let events = SessionEvents::new(config.identity.clone(), &config.session_id, command);
    let mut warnings = Vec::new();
    let start = both(&writer, &emitter, events.start(size), &mut warnings)
        .await
        .map_err(RecordError::Start)?;

    let raw = if stdin_tty {
        Some(RawMode::enable(stdin.as_fd())?)
    } else {
        None
    };
    let exited = Arc::new(AtomicBool::new(false));
    let out_pump = {
        let (m, w, e) = (master.clone(), writer.clone(), exited.clone());
        std::thread::spawn(move || pump::output(m, std::io::stdout(), w, e))
    };
    let in_pump = {
        let (m, s) = (master.clone(), exited.clone());
        std::thread::spawn(move || pump::input(std::io::stdin(), stdin_tty, m, s))
    };

    let mut wait = tokio::task::spawn_blocking(move || child.wait());
    let mut winch = signal(SignalKind::window_change()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut resizes = 0u64;
    let status = loop {
        tokio::select! {
            s = &mut wait => break s,
            Some(()) = recv(&mut winch) => {
                let Some(new) = outer_size() else { continue };
                if new == size {
                    continue;
                }
                size = new;
                if let Err(e) = set_window_size(master.as_fd(), new) {
                    warnings.push(format!("resizing the session's terminal: {e}"));
                }
                if let Err(e) = writer.record_event(events.resize(new)).await {
                    warnings.push(format!("recording a resize: {e}"));
                }
                resizes += 1;
            }
            Some(()) = recv(&mut int) => signal_group(&master, child_pid, Signal::INT),
            Some(()) = recv(&mut term) => signal_group(&master, child_pid, Signal::TERM),
            Some(()) = recv(&mut hup) => signal_group(&master, child_pid, Signal::HUP),
        }
    };
    let exit_code = match status {
        Ok(Ok(s)) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Ok(Err(e)) => {
            warnings.push(format!("waiting for the command: {e}"));
            1
        }
        Err(e) => {
            warnings.push(format!("waiting for the command: {e}"));
            1
        }
    };
    exited.store(true, Ordering::Release);
    let join = |h: std::thread::JoinHandle<pump::Pumped>| async move {
        tokio::task::spawn_blocking(move || h.join().unwrap_or_default())
            .await
            .unwrap_or_default()
    };
    let out = join(out_pump).await;
    let input = join(in_pump).await;
    drop(raw);
    warnings.extend(out.error.map(|e| format!("recording the output: {e}")));

    let finish = async {
        both(&writer, &emitter, events.leave(), &mut warnings).await?;
        both(
            &writer,
            &emitter,
            events.data(out.bytes, input.bytes),
            &mut warnings,
        )
        .await?;
        let end = events.end(start.time(), system_clock());
        both(&writer, &emitter, end, &mut warnings).await?;
        writer.complete().await
    };
    let stats = finish
        .await
        .map_err(|cause| RecordError::Finish { exit_code, cause })?;
    warnings.extend(stats.warnings(&config.session_id));
    Ok(RecordOutcome {
        session_id: config.session_id,
        exit_code,
        bytes_out: out.bytes,
        bytes_in: input.bytes,
        resizes,
        stats,
        warnings,
    })
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Prepares `event` once and writes the same event into the recording and the audit log, as
/// upstream does with session events. An audit failure is a warning; a recording failure is
/// the error.
async fn both(
    writer: &SessionWriter,
    emitter: &BoxEmitter,
    event: AuditEvent,
    warnings: &mut Vec<String>,
) -> Result<AuditEvent, WriterError> {
    let prepared = writer.prepare(event)?;
    writer.record_prepared(prepared.clone()).await?;
    if let Err(e) = emitter.emit_boxed(prepared.clone()).await {
        warnings.push(format!(
            "the audit log refused the {} event: {e}",
            prepared.event_type()
        ));
    }
    Ok(prepared)
}

/// Sends `sig` to the session's foreground process group (the command's own group when the
/// terminal names none).
fn signal_group(master: &OwnedFd, child: Pid, sig: Signal) {
    let group = foreground_group(master.as_fd()).unwrap_or(child);
    // A group that is gone already just fails.
    let _ = rustix::process::kill_process_group(group, sig);
}
