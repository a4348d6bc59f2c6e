//! `tapelog uploads list|complete`: the uploads a store holds open, and one pass of the
//! upload completer; on the local store (`--storage`) or through a server (`--server`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tapelog_audit::emit::JsonLinesEmitter;
use tapelog_core::Timestamp;
use tapelog_store::MultipartUploader;
use tapelog_store::complete::{CompleterConfig, SessionEndOutcome, UploadCompleter};

use super::CliError;
use super::remote::RemoteArgs;
use super::storage::StorageArgs;

/// `tapelog uploads ...`
#[derive(clap::Subcommand)]
pub enum UploadsCommand {
    /// List the uploads that are not completed, oldest first.
    List(ListArgs),
    /// Complete abandoned uploads (one pass of the upload completer): every upload older
    /// than the grace period whose newest part is older too is completed, a `session.upload`
    /// event is emitted for it and, when its recording has no `session.end`, one is
    /// synthesised from its `session.start`.
    Complete(CompleteArgs),
}

/// Arguments of `tapelog uploads list`.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `tapelog uploads complete`.
#[derive(clap::Args)]
pub struct CompleteArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Leave uploads younger than this alone (seconds; upstream waits 24 h). 0 means no grace
    /// period at all (upstream reads 0 as its default).
    #[arg(long, default_value_t = 24 * 3600, value_name = "SECONDS")]
    pub grace: u64,
    /// Cluster name set on the emitted events (local only: a server uses its own).
    #[arg(long, env = "TAPELOG_CLUSTER_NAME", default_value = "tapelog")]
    pub cluster_name: String,
    /// Append the emitted events (`session.upload`, recovered `session.end`) to this file as
    /// JSON lines; by default they go to standard output. (Local only: a server emits them
    /// into its audit log.)
    #[arg(long, value_name = "FILE")]
    pub events: Option<std::path::PathBuf>,
}

/// Runs `tapelog uploads ...`.
pub async fn run(cmd: UploadsCommand) -> Result<(), CliError> {
    match cmd {
        UploadsCommand::List(a) => list(a).await,
        UploadsCommand::Complete(a) => complete(a).await,
    }
}

async fn list(a: ListArgs) -> Result<(), CliError> {
    if let Some(client) = a.remote.client(None)? {
        return list_remote(&client, a.json).await;
    }
    let uploader = a.storage.open()?;
    let uploads = uploader.list_uploads().await?;
    if !a.json {
        println!(
            "{:<36}  {:<36}  {:<24}  PARTS",
            "UPLOAD", "SESSION", "INITIATED"
        );
    }
    for u in &uploads {
        let parts = uploader.list_parts(u).await.map(|p| p.len());
        let initiated = Timestamp::from_unix_millis(u.initiated_ms).to_rfc3339();
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "upload_id": u.id,
                    "session_id": u.session_id,
                    "initiated": initiated,
                    "parts": parts.as_ref().ok(),
                })
            );
        } else {
            let parts = match parts {
                Ok(n) => n.to_string(),
                Err(e) => format!("? ({e})"),
            };
            println!(
                "{:<36}  {:<36}  {:<24}  {parts}",
                u.id, u.session_id, initiated
            );
        }
    }
    if !a.json {
        eprintln!("{} open upload(s)", uploads.len());
    }
    Ok(())
}

/// `uploads list --server`: the server's open uploads (the API does not count parts).
async fn list_remote(client: &tapelog_client::Client, json: bool) -> Result<(), CliError> {
    let uploads = client.list_uploads().await?;
    if json {
        for u in &uploads {
            println!(
                "{}",
                serde_json::json!({
                    "upload_id": u.upload_id,
                    "session_id": u.session_id,
                    "initiated": u.initiated,
                })
            );
        }
        return Ok(());
    }
    println!("{:<36}  {:<36}  INITIATED", "UPLOAD", "SESSION");
    for u in &uploads {
        println!("{:<36}  {:<36}  {}", u.upload_id, u.session_id, u.initiated);
    }
    eprintln!("{} open upload(s) on {}", uploads.len(), client.server());
    Ok(())
}

/// `uploads complete --server`: one pass of the server's completer, reported as the local
/// pass is (the events it emits go to the server's audit log).
async fn complete_remote(client: &tapelog_client::Client, grace: u64) -> Result<(), CliError> {
    let report = client.complete_uploads(Duration::from_secs(grace)).await?;
    for c in &report.completed {
        eprintln!(
            "completed {} (session {}) -> {}",
            c.upload_id, c.session_id, c.url
        );
    }
    for s in &report.skipped {
        eprintln!(
            "skipped   {} (session {}): {}",
            s.upload_id, s.session_id, s.reason
        );
    }
    for f in &report.failed {
        eprintln!(
            "failed    {} (session {}): {}",
            f.upload_id, f.session_id, f.reason
        );
    }
    eprintln!(
        "{} completed, {} skipped, {} failed on {}",
        report.completed.len(),
        report.skipped.len(),
        report.failed.len(),
        client.server()
    );
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{} upload(s) could not be completed on {}; they are tried again on the next pass",
            report.failed.len(),
            client.server()
        )))
    }
}

async fn complete(a: CompleteArgs) -> Result<(), CliError> {
    if let Some(client) = a.remote.client(None)? {
        return complete_remote(&client, a.grace).await;
    }
    let uploader = Arc::new(a.storage.open()?);
    let mut config = CompleterConfig::new(&a.cluster_name);
    config.grace = Duration::from_secs(a.grace);
    let sink: Box<dyn Write + Send> = match &a.events {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| CliError::Write {
                    path: path.display().to_string(),
                    source,
                })?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let completer = UploadCompleter::new(uploader, JsonLinesEmitter::new(sink), config);
    let report = completer
        .run_once(tapelog_store::now_ms())
        .await
        .map_err(|e| CliError::Usage(format!("upload completer: {e}")))?;
    for c in &report.completed {
        if c.parts == 0 {
            eprintln!(
                "cleaned   {} (session {}): no parts, nothing to complete",
                c.upload.id, c.upload.session_id
            );
            continue;
        }
        let end = match &c.session_end {
            Some(SessionEndOutcome::Present) => "has its session end".to_string(),
            Some(SessionEndOutcome::NoStart) => {
                "no session end and no start to recover one from".into()
            }
            Some(SessionEndOutcome::Synthesised {
                event_type,
                outcome,
            }) if outcome.is_emitted() => {
                format!("{event_type} recovered")
            }
            Some(SessionEndOutcome::Synthesised {
                event_type,
                outcome,
            }) => {
                format!("{event_type} recovered but not emitted: {outcome:?}")
            }
            Some(SessionEndOutcome::Failed(e)) => format!("session end check failed: {e}"),
            None => String::new(),
        };
        eprintln!(
            "completed {} (session {}): {} parts -> {}; {end}",
            c.upload.id, c.upload.session_id, c.parts, c.url
        );
    }
    for s in &report.skipped {
        eprintln!(
            "skipped   {} (session {}): {:?}",
            s.upload.id, s.upload.session_id, s.reason
        );
    }
    for f in &report.failed {
        eprintln!(
            "failed    {} (session {}): {}",
            f.upload.id, f.upload.session_id, f.error
        );
    }
    eprintln!(
        "{} completed, {} skipped, {} failed",
        report.completed.len(),
        report.skipped.len(),
        report.failed.len()
    );
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{} upload(s) could not be completed; they are tried again on the next pass",
            report.failed.len()
        )))
    }
}
