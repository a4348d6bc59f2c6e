//! The `tapelog` command line: a thin layer over the `tapelog` library (see `cli/`).

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
    /// output; `proto` writes a clean V1 recording (duplicates dropped, unknown events kept).
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Write {
            path: "the tokio runtime".into(),
            source,
        })?;
    rt.block_on(f)
}
