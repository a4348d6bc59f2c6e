//! The options of commands that can work against a `tapelog serve` instead of local files:
//! `--server URL` and the credentials (`--token-file`, `--cert`, `--key`, `--ca`).

use std::path::{Path, PathBuf};

use tapelog_client::{Client, ClientConfig, CredentialOptions, Credentials};

use super::CliError;

/// Where the data directory is when a command has no `--data-dir` (for the admin token).
const DEFAULT_DATA_DIR: &str = "./tapelog-data";

/// `--server` and credentials.
#[derive(clap::Args, Clone, Debug)]
pub struct RemoteArgs {
    /// Work against this `tapelog serve` (`http://HOST:PORT`, `https://HOST:PORT`) instead of
    /// the local files.
    #[arg(long, env = "TAPELOG_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// With `--server`: a file holding the bearer token. Without it the token comes from
    /// TAPELOG_TOKEN, else the file named by TAPELOG_TOKEN_FILE, else `DATA_DIR/admin.token`
    /// (the admin token `tapelog serve` writes when it has no tokens configured) if it exists
    /// and no client certificate is given. Tokens are never printed.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// With `--server`: a client certificate (PEM) for mutual TLS; needs `--key`.
    #[arg(long, env = "TAPELOG_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// With `--server`: the client certificate's private key (PEM).
    #[arg(long, env = "TAPELOG_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// With `--server https://...`: the CA certificate (PEM) that signed the server's
    /// certificate (default: the system's roots).
    #[arg(long, env = "TAPELOG_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl RemoteArgs {
    /// The client for `--server`, or `None` when no server is given. `data_dir` is where the
    /// admin token is looked for (`TAPELOG_DATA_DIR` or `./tapelog-data` when `None`).
    pub fn client(&self, data_dir: Option<&Path>) -> Result<Option<Client>, CliError> {
        let Some(server) = &self.server else {
            return Ok(None);
        };
        let default_dir = std::env::var_os("TAPELOG_DATA_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from);
        let data_dir = data_dir.unwrap_or(&default_dir);
        let opts = CredentialOptions {
            token_file: self.token_file.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        };
        let credentials = Credentials::resolve(&opts, data_dir)?;
        Ok(Some(Client::new(ClientConfig::new(server, credentials))?))
    }
}

/// A tokio runtime for a synchronous command that talks to a server.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| CliError::Write {
            path: "the tokio runtime".into(),
            source,
        })
}

/// A recording downloaded from a server into a temporary file, removed when dropped (the
/// player re-reads its source from the start to seek back, so it needs a file).
pub struct TempRecording {
    path: PathBuf,
}

impl TempRecording {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempRecording {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Downloads the recording of `session_id` from `client` into a new temporary file, with a
/// progress bar on a terminal. Memory stays bounded: chunks go to disk as they arrive.
pub async fn download_recording(
    client: &Client,
    session_id: &str,
) -> Result<TempRecording, CliError> {
    use futures::StreamExt;
    use std::io::Write;

    let mut download = client.download_recording(session_id).await?;
    let path = std::env::temp_dir().join(format!(
        "tapelog-{session_id}-{}-{}.tar",
        std::process::id(),
        tapelog_store::now_ms()
    ));
    let write_err = |source| CliError::Write {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(write_err)?;
    let temp = TempRecording { path: path.clone() };
    let mut out = std::io::BufWriter::new(file);
    let bar = super::progress_bar(download.length.unwrap_or(0), "download");
    while let Some(chunk) = download.bytes.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).map_err(write_err)?;
        bar.inc(chunk.len() as u64);
    }
    out.flush().map_err(write_err)?;
    bar.finish_and_clear();
    Ok(temp)
}
