//! The `tapelog` command line: a thin layer over the library crates under `native/`
//! (`tapelog-audit`, `tapelog-store`, `tapelog-session`, `tapelog-api`, `tapelog-client`,
//! `tapelog-server`, `tapelog-forward`, `tapelog-term`; see `cli/`).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::CliError;

/// tapelog: Teleport-compatible session recordings and audit events.
#[derive(Parser)]
#[command(name = "tapelog", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a recording (ProtoStream V1/V2 or legacy tar) and write it out in another form.
    ///
    /// `json` prints one event per line, exactly Teleport's JSON; `text` prints the terminal
    /// output; `asciicast` writes asciicast v2 for asciinema; `proto` writes a clean V1
    /// recording (duplicates dropped, unknown events kept).
    /// On a damaged recording every event before the damage is written, then tapelog exits
    /// with status 1 and says where the damage is.
    Export(cli::export::ExportArgs),
    /// Write a sample recording (a short terminal session) in the V1 format.
    Sample(cli::export::SampleArgs),
    /// Upload a local recording into a store through the recording stream (resumable).
    ///
    /// Prints `upload UPLOAD_ID session SID` first and `complete URL` at the end. A run that
    /// is interrupted (Ctrl-C, SIGTERM, a store failure, or even SIGKILL) leaves the upload
    /// open: run the same command with `--resume UPLOAD_ID`, from any process or host that
    /// sees the store.
    Upload(cli::upload::UploadArgs),
    /// List open uploads, or complete abandoned ones (in a store, or on a server with
    /// `--server URL`).
    #[command(subcommand)]
    Uploads(cli::uploads::UploadsCommand),
    /// Append Teleport JSON events (one per line) to the file audit log.
    ///
    /// Each event goes through the checking rules (type and code required; uid, time and
    /// cluster name filled when empty) and into the file of its UTC day under
    /// `DIR/log/<server id>/`. Bad lines are reported with their line number and skipped;
    /// prints `accepted N, rejected M` and exits with status 1 if any line was rejected.
    Emit(cli::emit::EmitArgs),
    /// Search the file audit log of every server under `DIR/log/` (or a server's, with
    /// `--server URL`): one page, or all pages with `--all`.
    Search(cli::search::SearchArgs),
    /// Completed sessions, from the local audit log or a server (`--server URL`).
    #[command(subcommand)]
    Sessions(cli::sessions::SessionsCommand),
    /// Serve the HTTP API (docs/api.md): emit events, stream recordings, search, play back.
    ///
    /// Prints `listening on http://ADDR:PORT` (or https) as its first line. With no token
    /// configured it makes an admin token once in `DIR/admin.token` (mode 0600) and prints
    /// the file's path. SIGTERM or Ctrl-C stops it: open streams are closed and stay
    /// resumable.
    Serve(Box<cli::serve::ServeArgs>),
    /// TLS certificates for `serve`: a CA, a server certificate, client certificates.
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
    /// Run a command in a new pseudo-terminal and record the session.
    ///
    /// `tapelog record -- CMD ARGS…` runs CMD on a real PTY, passes your terminal through (raw
    /// mode, restored at the end), and records its output as `print` events, window changes as
    /// `resize` events, and `session.start`, `session.leave`, `session.data` and `session.end`,
    /// streamed into `DIR/log/records` (completed into `SID.tar` at the end) and appended to
    /// the audit log in DIR. The exit status is the command's (128+N if signal N ended it).
    /// SIGINT, SIGTERM and SIGHUP sent to tapelog go to the command. The session id and how to
    /// play it are printed on standard error at the end.
    Record(cli::record::RecordArgs),
    /// Play a recording in the terminal, with its timing.
    ///
    /// On a terminal: space pauses and resumes, the right and left arrows seek 5 seconds
    /// forward and back (of the timeline after --max-idle), q or Ctrl-C quits; the terminal
    /// is restored on every way out. When standard output is not a terminal, the output is
    /// written with its timing and nothing else (the bytes of `export --format text`).
    Play(cli::play::PlayArgs),
    /// Export audit events and session events to Fluentd (upstream's
    /// teleport-event-handler), at least once, resuming after a crash.
    ///
    /// Every option is also read from `FDFWD_<NAME>` (or upstream's `FDWRD_<NAME>`) and from
    /// the `--config` TOML file (`[forward.fluentd]`, `[teleport]`); flags win, then
    /// variables, then the file. See docs/forward.md.
    Forward(Box<cli::forward::ForwardCommand>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Export(a) => cli::export::export(a),
        Command::Sample(a) => cli::export::sample(a),
        Command::Upload(a) => block_on(cli::upload::run(a)),
        Command::Uploads(c) => block_on(cli::uploads::run(c)),
        Command::Emit(a) => block_on(cli::emit::run(a)),
        Command::Search(a) => cli::search::run(a),
        Command::Sessions(c) => cli::sessions::run(c),
        Command::Serve(a) => block_on(cli::serve::run(*a)),
        Command::Certs(c) => cli::certs::run(c),
        Command::Play(a) => cli::play::run(a),
        Command::Forward(c) => block_on(cli::forward::run(*c)),
        Command::Record(a) => match runtime().and_then(|rt| rt.block_on(cli::record::run(a))) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`tapelog export ... | head`) is not a failure.
        Err(CliError::Write { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(CliError::Interrupted) => {
            eprintln!("tapelog: interrupted");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("tapelog: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(f: impl Future<Output = Result<(), CliError>>) -> Result<(), CliError> {
    runtime()?.block_on(f)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Write {
            path: "the tokio runtime".into(),
            source,
        })
}
