//! `tapelog uploads list|complete`: the uploads a store holds open, and one pass of the
//! upload completer.

use tapelog::upload::MultipartUploader;
use tapelog_core::Timestamp;

use super::CliError;
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
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `tapelog uploads complete`.
#[derive(clap::Args)]
pub struct CompleteArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Leave uploads younger than this alone (seconds; upstream waits 24 h).
    #[arg(long, default_value_t = 24 * 3600, value_name = "SECONDS")]
    pub grace: u64,
    /// Cluster name set on the emitted events.
    #[arg(long, env = "TAPELOG_CLUSTER_NAME", default_value = "tapelog")]
    pub cluster_name: String,
    /// Append the emitted events (`session.upload`, recovered `session.end`) to this file as
    /// JSON lines; by default they go to standard output.
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
    let uploader = a.storage.open()?;
    let uploads = uploader.list_uploads().await?;
    if !a.json {
        println!(
            "{:<36}  {:<36}  {:<24}  PARTS",
            "UPLOAD", "SESSION", "INITIATED"
        );
    }
    for u in &uploads {
        let parts = match uploader.list_parts(u).await {
            Ok(p) => p.len().to_string(),
            Err(e) => format!("? ({e})"),
        };
        let initiated = Timestamp::from_unix_millis(u.initiated_ms).to_rfc3339();
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "upload_id": u.id,
                    "session_id": u.session_id,
                    "initiated": initiated,
                    "parts": parts.parse::<u64>().ok(),
                })
            );
        } else {
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

async fn complete(a: CompleteArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::Usage("uploads complete: not yet wired".into()))
}
