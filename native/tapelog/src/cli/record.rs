//! `tapelog record`: a command on a real PTY, recorded into the local store and audit log
//! (`tapelog_term::record`). This file only picks the destinations and prints the result.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use tapelog_audit::emit::{BoxEmitter, CheckingEmitter, new_uuid};
use tapelog_audit::{FileLog, FileLogConfig, default_server_id};
use tapelog_client::{RemoteEmitter, RemoteStreamConfig, RemoteStreamer};
use tapelog_core::export::TerminalSize;
use tapelog_session::{AuditStreamer, UploaderStreamer};
use tapelog_store::stream::DriverConfig;
use tapelog_store::{StoreUploader, check_id};
use tapelog_term::record::{Identity, RecordConfig, RecordError, current_user, record};

use super::CliError;
use super::emit::DataDirArgs;

/// Arguments of `tapelog record`.
#[derive(clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// With `--server`: record through that `tapelog serve` (its store and audit log)
    /// instead of into the data directory. If the server restarts during the session, the
    /// recording resumes on it and nothing is lost; with several `--server` replicas sharing
    /// one storage, it resumes through the next one.
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// The session id (a UUID); a new random one by default.
    #[arg(long, value_name = "SID")]
    pub session_id: Option<String>,
    /// Columns of the session's terminal (with --rows); default: this terminal's, else 80.
    #[arg(long, requires = "rows", value_parser = clap::value_parser!(u16).range(1..))]
    pub cols: Option<u16>,
    /// Rows of the session's terminal (with --cols); default: this terminal's, else 24.
    #[arg(long, requires = "cols", value_parser = clap::value_parser!(u16).range(1..))]
    pub rows: Option<u16>,
    /// Cluster name written into the events.
    #[arg(
        long,
        env = "TAPELOG_CLUSTER_NAME",
        default_value = "tapelog",
        value_name = "NAME"
    )]
    pub cluster_name: String,
    /// This host's id in the events and its directory under `DIR/log/` (default: the host
    /// name).
    #[arg(long, env = "TAPELOG_SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,
    /// The user named in the events (default: `$USER`, else the login name).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Runs `tapelog record`; the exit status is the command's.
pub async fn run(a: RecordArgs) -> Result<ExitCode, CliError> {
    let session_id = a.session_id.clone().unwrap_or_else(new_uuid);
    check_id("session id", &session_id)?;
    let server_id = a.server_id.clone().unwrap_or_else(default_server_id);
    let user = a.user.clone().unwrap_or_else(current_user);
    let identity = Identity {
        login: current_user(),
        user,
        cluster_name: a.cluster_name.clone(),
        server_hostname: default_server_id(),
        server_id: server_id.clone(),
    };
    let (streamer, emitter, play_hint): (Arc<dyn AuditStreamer>, BoxEmitter, String) =
        match a.remote.client(Some(&a.data.data_dir))? {
            Some(client) => {
                let mut hint = String::from("tapelog play ");
                for server in client.servers() {
                    hint.push_str(&format!("--server {} ", shell_word(server)));
                }
                (
                    Arc::new(RemoteStreamer::new(
                        client.clone(),
                        RemoteStreamConfig::default(),
                    )),
                    Arc::new(RemoteEmitter::new(client)),
                    hint,
                )
            }
            None => {
                let data_dir =
                    std::path::absolute(&a.data.data_dir).map_err(|source| CliError::Write {
                        path: a.data.data_dir.display().to_string(),
                        source,
                    })?;
                let uploader = StoreUploader::local(&data_dir.join("log").join("records"))?;
                let streamer = Arc::new(UploaderStreamer::new(
                    Arc::new(uploader),
                    DriverConfig::default(),
                ));
                let log = FileLog::open(FileLogConfig::new(&data_dir, &server_id))?;
                let hint = format!(
                    "tapelog play --data-dir {} ",
                    shell_word(&a.data.data_dir.display().to_string())
                );
                (
                    streamer,
                    Arc::new(CheckingEmitter::new(log, &a.cluster_name)),
                    hint,
                )
            }
        };
    let config = RecordConfig {
        session_id: session_id.clone(),
        identity,
        command: a.command,
        size: a
            .cols
            .zip(a.rows)
            .and_then(|(c, r)| TerminalSize::new(c, r)),
    };
    let outcome = record(config, streamer, emitter).await;
    finish(outcome, &session_id, &play_hint)
}

/// Prints how the session went and where to play it; the exit status to return.
fn finish(
    outcome: Result<tapelog_term::record::RecordOutcome, RecordError>,
    session_id: &str,
    play_hint: &str,
) -> Result<ExitCode, CliError> {
    let o = match outcome {
        Ok(o) => o,
        Err(RecordError::Finish { exit_code, cause }) => {
            eprintln!("tapelog: {cause}");
            eprintln!(
                "tapelog: the upload keeps what was stored; `tapelog uploads complete` completes it"
            );
            return Ok(exit_status(if exit_code == 0 { 1 } else { exit_code }));
        }
        Err(e) => return Err(e.into()),
    };
    for w in &o.warnings {
        eprintln!("tapelog: warning: {w}");
    }
    eprintln!(
        "tapelog: session {session_id} recorded ({} events, {} output bytes, exit status {})",
        o.stats.accepted, o.bytes_out, o.exit_code
    );
    eprintln!("tapelog: play it with: {play_hint}{session_id}");
    Ok(exit_status(o.exit_code))
}

fn exit_status(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@".contains(c));
    if plain && !s.is_empty() {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
