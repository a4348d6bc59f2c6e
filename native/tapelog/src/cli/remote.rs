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
    /// the local files. Repeat it (or separate URLs with commas, also in TAPELOG_SERVER) for
    /// replicas of one service: a call goes to the one that answered last and fails over to
    /// the next when a server is unreachable or answers 503 (docs/api.md, "Replicas and
    /// failover").
    #[arg(
        long,
        env = "TAPELOG_SERVER",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub server: Vec<String>,
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
    /// The servers of `--server` (or TAPELOG_SERVER), in order, empty items dropped.
    pub fn servers(&self) -> Vec<&str> {
        self.server
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The client for `--server` (failing over between the servers when several are given),
    /// or `None` when no server is given. `data_dir` is where the admin token is looked for
    /// (`TAPELOG_DATA_DIR` or `./tapelog-data` when `None`).
    pub fn client(&self, data_dir: Option<&Path>) -> Result<Option<Client>, CliError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Ok(None);
        }
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
        Ok(Some(Client::new(ClientConfig::replicas(
            &servers,
            credentials,
        ))?))
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

/// `--teleport` and its credentials: the commands that read (`search`, `sessions list`,
/// `play`, `export`) work on a Teleport cluster's Auth Service instead of local files.
#[derive(clap::Args, Clone, Debug)]
pub struct TeleportArgs {
    /// Read this Teleport cluster instead of local files: HOST:PORT of its Auth Service (as
    /// teleport-event-handler's --teleport-addr; a Proxy address is not supported). Needs
    /// --teleport-identity, or --teleport-cert, --teleport-key and --teleport-ca.
    #[arg(long, value_name = "HOST:PORT")]
    pub teleport: Option<String>,
    /// With `--teleport`: a Teleport identity file (`tctl auth sign --format=file`, tbot).
    #[arg(long, value_name = "FILE", requires = "teleport")]
    pub teleport_identity: Option<PathBuf>,
    /// With `--teleport`: a client certificate (PEM); needs --teleport-key and --teleport-ca.
    #[arg(long, value_name = "FILE", requires = "teleport")]
    pub teleport_cert: Option<PathBuf>,
    /// With `--teleport`: the key of --teleport-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "teleport")]
    pub teleport_key: Option<PathBuf>,
    /// With `--teleport`: the cluster's CA certificates (PEM).
    #[arg(long, value_name = "FILE", requires = "teleport")]
    pub teleport_ca: Option<PathBuf>,
}

impl TeleportArgs {
    /// Where the credentials come from (`--teleport-identity`, or the three files).
    pub fn credentials_source(&self) -> Result<tapelog_teleport::CredentialsSource, CliError> {
        teleport_credentials(
            self.teleport_identity.as_deref(),
            self.teleport_cert.as_deref(),
            self.teleport_key.as_deref(),
            self.teleport_ca.as_deref(),
        )
    }

    /// The cluster of `--teleport`, connected, or `None` without it. Refuses `--server`
    /// (and its credential options) and a `--data-dir` other than the default (`data_dir`:
    /// the command's, if it has one): one command reads one source.
    pub fn open(
        &self,
        data_dir: Option<&Path>,
        remote: &RemoteArgs,
    ) -> Result<Option<Cluster>, CliError> {
        let Some(addr) = &self.teleport else {
            return Ok(None);
        };
        check_teleport_addr("--teleport", addr)?;
        if !remote.servers().is_empty() {
            return Err(CliError::Usage(
                "--teleport reads a Teleport cluster and --server (or TAPELOG_SERVER) a tapelog serve: give one of them".into(),
            ));
        }
        let server_only = [
            ("--token-file", remote.token_file.is_some()),
            ("--cert", remote.cert.is_some()),
            ("--key", remote.key.is_some()),
            ("--ca", remote.ca.is_some()),
        ];
        if let Some((flag, _)) = server_only.iter().find(|(_, given)| *given) {
            return Err(CliError::Usage(format!(
                "{flag} is a credential for --server; a Teleport cluster takes --teleport-identity, or --teleport-cert, --teleport-key and --teleport-ca"
            )));
        }
        if let Some(dir) = data_dir
            && dir != Path::new(DEFAULT_DATA_DIR)
        {
            return Err(CliError::Usage(format!(
                "--teleport reads a Teleport cluster and --data-dir {} (or TAPELOG_DATA_DIR) local files: give one of them",
                dir.display()
            )));
        }
        let source = self.credentials_source()?;
        let credentials = tapelog_teleport::Credentials::load(&source)
            .map_err(tapelog_teleport::TeleportError::from)?;
        let rt = runtime()?;
        let client = rt.block_on(tapelog_teleport::AuthClient::connect(addr, &credentials))?;
        Ok(Some(Cluster { client, rt }))
    }
}

/// Refuses a URL where a Teleport Auth address (`HOST:PORT`) is expected.
pub fn check_teleport_addr(flag: &str, addr: &str) -> Result<(), CliError> {
    if addr.contains("://") || !addr.contains(':') {
        return Err(CliError::Usage(format!(
            "{flag} {addr:?}: expected HOST:PORT of a Teleport Auth Service (e.g. auth.example.com:3025); a tapelog serve is given with --server URL"
        )));
    }
    Ok(())
}

/// The credentials of `--teleport-identity` or `--teleport-cert/--teleport-key/--teleport-ca`
/// (one or the other, the three files together).
pub fn teleport_credentials(
    identity: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
) -> Result<tapelog_teleport::CredentialsSource, CliError> {
    use tapelog_teleport::CredentialsSource;
    match (identity, cert, key, ca) {
        (Some(id), None, None, None) => Ok(CredentialsSource::IdentityFile(id.to_path_buf())),
        (Some(_), _, _, _) => Err(CliError::Usage(
            "--teleport-identity can't be combined with --teleport-cert, --teleport-key or --teleport-ca".into(),
        )),
        (None, Some(cert), Some(key), Some(ca)) => Ok(CredentialsSource::Files {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca: ca.to_path_buf(),
        }),
        (None, None, None, None) => Err(CliError::Usage(
            "a Teleport cluster needs --teleport-identity FILE, or --teleport-cert, --teleport-key and --teleport-ca".into(),
        )),
        _ => Err(CliError::Usage(
            "--teleport-cert, --teleport-key and --teleport-ca go together".into(),
        )),
    }
}

/// A connected Teleport cluster, with the runtime its calls run on.
pub struct Cluster {
    /// The Auth Service client.
    pub client: tapelog_teleport::AuthClient,
    /// The runtime.
    pub rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// One page of `GetUnstructuredEvents`.
    pub fn page(
        &self,
        q: &tapelog_teleport::EventQuery,
    ) -> Result<tapelog_teleport::UnstructuredPage, CliError> {
        Ok(self.rt.block_on(self.client.get_unstructured_events(q))?)
    }

    /// The recording of `session_id` rebuilt from the cluster's typed `StreamSessionEvents`
    /// (print data intact) by tapelog's writer into a new temporary file (the player re-reads
    /// its source to seek back). Memory stays bounded: parts go to disk as they are made.
    pub fn download_recording(&self, session_id: &str) -> Result<TempRecording, CliError> {
        use std::io::Write;

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
        self.rt.block_on(async {
            use futures::StreamExt;
            let events = self.client.stream_session_events(session_id, 0).await?;
            let mut bytes = tapelog_teleport::recording::recording_bytes(
                self.client.addr(),
                events,
                tapelog_core::codec::WriterConfig::default(),
            );
            while let Some(chunk) = bytes.next().await {
                out.write_all(&chunk?).map_err(write_err)?;
            }
            Ok::<(), CliError>(())
        })?;
        out.flush().map_err(write_err)?;
        Ok(temp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        remote: RemoteArgs,
    }

    #[test]
    fn servers_repeat_and_split_on_commas() {
        let c = Command::try_parse_from([
            "tapelog",
            "--server",
            "http://127.0.0.1:1,http://127.0.0.1:2,",
            "--server",
            " http://127.0.0.1:3 ",
        ])
        .unwrap();
        assert_eq!(
            c.remote.servers(),
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        let client = c.remote.client(None).unwrap().unwrap();
        assert_eq!(
            client.servers(),
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        let bad =
            Command::try_parse_from(["tapelog", "--server", "http://127.0.0.1:1,ftp://x"]).unwrap();
        let err = bad.remote.client(None).unwrap_err().to_string();
        assert!(err.contains("ftp://x"), "{err}");
    }
}
