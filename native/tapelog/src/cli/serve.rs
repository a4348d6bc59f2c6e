//! `tapelog serve`: the settings from flags, `TAPELOG_*` variables and the TOML file (in
//! that order of precedence, then the defaults), then [`tapelog_server::Server`] until
//! SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tapelog_audit::{Durability, LimiterConfig};
use tapelog_core::codec::WriterConfig;
use tapelog_server::{FileConfig, ServeConfig, Server, TlsFiles, TokenSpec};
use tapelog_store::StorageOptions;

use super::CliError;

/// Arguments of `tapelog serve`. Every option can also be set by the environment variable
/// it names, or by the key of the same name (with `_` for `-`) in the `--config` file.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// A TOML file with any of the options below (`data_dir = "..."`, `[[tokens]]` tables
    /// with `role`, `name`, `token`); flags and variables win over it.
    #[arg(long, env = "TAPELOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory: the audit log in `DIR/log/<server id>/`, recordings in
    /// `DIR/log/records` (unless --storage), the admin token file. Default `./tapelog-data`.
    #[arg(long, env = "TAPELOG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address and port to listen on; port 0 picks a free one. Default `127.0.0.1:7450`.
    #[arg(long, env = "TAPELOG_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Where recordings go: a directory, `file:///dir`, `memory://`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `azblob://<account host>` (Teleport's layouts: one bucket or
    /// account serves both tools) or `az://container/prefix` (credentials from the store's
    /// usual variables, see docs/storage.md). Default `DIR/log/records`.
    #[arg(long, env = "TAPELOG_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// An audit log, as a URI (repeatable; like Teleport's `audit_events_uri`): `file://DIR`
    /// (the file log with data directory DIR), `postgres://…`/`postgresql://…` (Teleport's
    /// pgevents schema; libpq options, `#retention_period=…&cleanup_interval=…&disable_cleanup=…`),
    /// `stdout://`, `discard://`. Events go to every log, searches to the first.
    /// `TAPELOG_AUDIT` holds several separated by spaces. Default `file://DIR` of --data-dir.
    #[arg(
        long = "audit",
        env = "TAPELOG_AUDIT",
        value_name = "URI",
        value_delimiter = ' '
    )]
    pub audit: Vec<String>,
    /// With a database audit log shared by replicas: seconds the upload completer's lease
    /// lasts (one replica at a time completes uploads; a dead leader's lease expires after
    /// this). Default 30.
    #[arg(long, env = "TAPELOG_COMPLETER_LEASE", value_name = "SECONDS")]
    pub completer_lease: Option<u64>,
    /// Endpoint of an S3-compatible store (default: `AWS_ENDPOINT_URL`, else AWS).
    #[arg(long, env = "TAPELOG_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region of the bucket (default: `AWS_REGION` / `AWS_DEFAULT_REGION`).
    #[arg(long, env = "TAPELOG_REGION")]
    pub region: Option<String>,
    /// Allow plain HTTP to a non-loopback store endpoint.
    #[arg(long, env = "TAPELOG_ALLOW_HTTP")]
    pub allow_http: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        env = "TAPELOG_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TAPELOG_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Accept client certificates signed by this CA (PEM): CN = caller, OU = role.
    #[arg(long, env = "TAPELOG_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// A bearer token, `ROLE:NAME:SECRET` (repeatable; in the variable, comma-separated).
    /// With none (here or in the file), an admin token is made once in `DIR/admin.token`.
    #[arg(
        long = "token",
        env = "TAPELOG_TOKENS",
        value_name = "ROLE:NAME:SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,
    /// Allow listening on a non-loopback address without TLS (tokens then cross the
    /// network in clear text; a warning is printed).
    #[arg(long, env = "TAPELOG_ALLOW_INSECURE")]
    pub allow_insecure: bool,
    /// Largest request body in bytes. Default 16 MiB.
    #[arg(long, env = "TAPELOG_MAX_BODY", value_name = "BYTES")]
    pub max_body: Option<usize>,
    /// This server's directory under `DIR/log/`. Default: the host name.
    #[arg(long, env = "TAPELOG_SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,
    /// Cluster name set on events that have none. Default `tapelog`.
    #[arg(long, env = "TAPELOG_CLUSTER_NAME", value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// When an audit event counts as stored: `write` (after write(2), upstream's behaviour;
    /// the default) or `fsync`.
    #[arg(long, env = "TAPELOG_DURABILITY", value_name = "write|fsync")]
    pub durability: Option<String>,
    /// The upload completer leaves uploads younger than this alone (seconds). Default 3600.
    #[arg(long, env = "TAPELOG_COMPLETER_GRACE", value_name = "SECONDS")]
    pub completer_grace: Option<u64>,
    /// Seconds between upload completer passes; 0 turns it off. Default 300.
    #[arg(long, env = "TAPELOG_COMPLETER_INTERVAL", value_name = "SECONDS")]
    pub completer_interval: Option<u64>,
    /// Searches allowed per second (the search limiter's refill). Default 10.
    #[arg(long, env = "TAPELOG_SEARCH_RATE", value_name = "N")]
    pub search_rate: Option<u64>,
    /// Searches allowed at once (the search limiter's burst). Default 20.
    #[arg(long, env = "TAPELOG_SEARCH_BURST", value_name = "N")]
    pub search_burst: Option<u64>,
    /// Seconds shutdown waits for requests in flight, then for open streams to flush.
    /// Default 30.
    #[arg(long, env = "TAPELOG_SHUTDOWN_TIMEOUT", value_name = "SECONDS")]
    pub shutdown_timeout: Option<u64>,
    /// Minimum recording part size in bytes (non-last parts are cut at it). Default 5 MiB.
    #[arg(long, env = "TAPELOG_PART_SIZE", value_name = "BYTES")]
    pub part_size: Option<usize>,
    /// The web player's files (`web-demo/dist`, built by `web-demo/build.sh`), served at `/`.
    /// Default: `web-demo/dist` under the working directory when it holds an `index.html`.
    #[arg(long, env = "TAPELOG_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
    /// A read-only gateway to this Teleport cluster: HOST:PORT of its Auth Service. Searches,
    /// sessions, session events and recordings (rebuilt from its events) come from the
    /// cluster; every write is refused. Needs --teleport-identity, or --teleport-cert,
    /// --teleport-key and --teleport-ca.
    #[arg(long, env = "TAPELOG_TELEPORT", value_name = "HOST:PORT")]
    pub teleport: Option<String>,
    /// With --teleport: a Teleport identity file (read again whenever the gateway reconnects).
    #[arg(long, env = "TAPELOG_TELEPORT_IDENTITY", value_name = "FILE")]
    pub teleport_identity: Option<PathBuf>,
    /// With --teleport: a client certificate (PEM).
    #[arg(long, env = "TAPELOG_TELEPORT_CERT", value_name = "FILE")]
    pub teleport_cert: Option<PathBuf>,
    /// With --teleport: the key of --teleport-cert (PEM).
    #[arg(long, env = "TAPELOG_TELEPORT_KEY", value_name = "FILE")]
    pub teleport_key: Option<PathBuf>,
    /// With --teleport: the cluster's CA certificates (PEM).
    #[arg(long, env = "TAPELOG_TELEPORT_CA", value_name = "FILE")]
    pub teleport_ca: Option<PathBuf>,
    /// Threads that inflate and decode a recording's parts for a session's events and the
    /// legacy playback calls (per request; at most two parts per thread held). Default 1:
    /// part after part.
    #[arg(long, env = "TAPELOG_DECODE_JOBS", value_name = "N")]
    pub decode_jobs: Option<usize>,
}

/// How the second line of standard output starts: the web player's login URL follows
/// ([`tapelog_server::RunningServer::login_url`]).
pub const LOGIN_PREFIX: &str = "web player: ";

/// The smallest part that still holds a 64 KiB event.
const MIN_PART_SIZE: usize = 64 * 1024 + 1024;

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

/// A setting by the one precedence rule (`tapelog_api::layers`): clap has already merged the
/// flag with its `TAPELOG_*` variable (the flag wins), then the file.
fn layered<T>(flag_or_env: Option<T>, file: Option<T>) -> Option<T> {
    tapelog_api::layers::pick(flag_or_env, || None, || file).map(|l| l.value)
}

/// The server's settings: flag or variable, else the file, else the default.
pub fn config(a: &ServeArgs) -> Result<ServeConfig, CliError> {
    let file = match &a.config {
        Some(p) => FileConfig::load(p).map_err(usage)?,
        None => FileConfig::default(),
    };
    let data_dir = tapelog_api::layers::pick_or(
        a.data_dir.clone(),
        || None,
        || file.data_dir.clone(),
        || PathBuf::from("./tapelog-data"),
    )
    .value;
    let mut c = ServeConfig::new(data_dir);
    if let Some(l) = a.listen {
        c.listen = l;
    } else if let Some(l) = &file.listen {
        c.listen = l
            .parse()
            .map_err(|e| usage(format!("listen = {l:?} in the config file: {e}")))?;
    }
    c.storage = layered(a.storage.clone(), file.storage.clone());
    c.audit = if a.audit.is_empty() {
        file.audit.clone()
    } else {
        a.audit.iter().filter(|u| !u.is_empty()).cloned().collect()
    };
    for uri in &c.audit {
        tapelog_audit::AuditUri::parse(uri).map_err(|e| usage(format!("--audit: {e}")))?;
    }
    if let Some(l) = layered(a.completer_lease, file.completer_lease) {
        if l == 0 {
            return Err(usage("--completer-lease must be at least 1 second"));
        }
        c.completer_lease = Duration::from_secs(l);
    }
    let mut opts = StorageOptions::from_env();
    if let Some(e) = layered(a.endpoint.clone(), file.endpoint.clone()) {
        opts.endpoint = Some(e);
    }
    if let Some(r) = layered(a.region.clone(), file.region.clone()) {
        opts.region = Some(r);
    }
    opts.allow_http |= a.allow_http || file.allow_http.unwrap_or(false);
    c.storage_options = opts;
    let cert = layered(a.tls_cert.clone(), file.tls_cert.clone());
    let key = layered(a.tls_key.clone(), file.tls_key.clone());
    let client_ca = layered(a.client_ca.clone(), file.client_ca.clone());
    c.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (None, None) if client_ca.is_some() => {
            return Err(usage(
                "--client-ca needs TLS: give --tls-cert and --tls-key too",
            ));
        }
        (None, None) => None,
        _ => return Err(usage("--tls-cert and --tls-key go together")),
    };
    c.tokens = if a.tokens.is_empty() {
        file.token_specs().map_err(usage)?
    } else {
        a.tokens
            .iter()
            .map(|t| TokenSpec::parse(t).map_err(|e| usage(format!("--token: {e}"))))
            .collect::<Result<_, _>>()?
    };
    c.allow_insecure = a.allow_insecure || file.allow_insecure.unwrap_or(false);
    if let Some(m) = layered(a.max_body, file.max_body) {
        c.max_body = m;
    }
    if let Some(s) = layered(a.server_id.clone(), file.server_id.clone()) {
        c.server_id = s;
    }
    if let Some(n) = layered(a.cluster_name.clone(), file.cluster_name.clone()) {
        c.cluster_name = n;
    }
    if let Some(d) = layered(a.durability.clone(), file.durability.clone()) {
        c.durability = match d.as_str() {
            "write" => Durability::Write,
            "fsync" => Durability::Fsync,
            other => return Err(usage(format!("durability {other:?}: use write or fsync"))),
        };
    }
    if let Some(g) = layered(a.completer_grace, file.completer_grace) {
        c.completer_grace = Duration::from_secs(g);
    }
    if let Some(i) = layered(a.completer_interval, file.completer_interval) {
        c.completer_interval = Duration::from_secs(i);
    }
    let rate = layered(a.search_rate, file.search_rate);
    let burst = layered(a.search_burst, file.search_burst);
    if rate.is_some() || burst.is_some() {
        let rate = rate.unwrap_or(10);
        if rate == 0 {
            return Err(usage("--search-rate must be at least 1"));
        }
        c.search_limit = LimiterConfig {
            refill_time: Duration::from_secs(1),
            refill_amount: rate,
            burst: burst.unwrap_or(20),
        };
    }
    if let Some(t) = layered(a.shutdown_timeout, file.shutdown_timeout) {
        c.shutdown_timeout = Duration::from_secs(t);
    }
    c.web_dir = tapelog_server::WebRoot::configured_or_default(layered(
        a.web_dir.clone(),
        file.web_dir.clone(),
    ))
    .dir()
    .map(Path::to_path_buf);
    c.teleport = teleport(a, &file)?;
    if let Some(j) = layered(a.decode_jobs, file.decode_jobs) {
        if !(1..=1024).contains(&j) {
            return Err(usage(format!("--decode-jobs {j}: use 1 to 1024")));
        }
        c.decode_jobs = j;
    }
    if let Some(p) = a.part_size {
        if p < MIN_PART_SIZE {
            return Err(usage(format!(
                "--part-size {p} is too small: a part must hold a 64 KiB event ({MIN_PART_SIZE} bytes at least)"
            )));
        }
        c.stream.stream.writer = WriterConfig {
            min_upload_bytes: p,
            ..WriterConfig::default()
        };
    }
    Ok(c)
}

/// `--teleport` and its credentials (flag or variable, else the file).
fn teleport(
    a: &ServeArgs,
    file: &FileConfig,
) -> Result<Option<tapelog_server::TeleportGateway>, CliError> {
    let identity = layered(a.teleport_identity.clone(), file.teleport_identity.clone());
    let cert = layered(a.teleport_cert.clone(), file.teleport_cert.clone());
    let key = layered(a.teleport_key.clone(), file.teleport_key.clone());
    let ca = layered(a.teleport_ca.clone(), file.teleport_ca.clone());
    let Some(addr) = layered(a.teleport.clone(), file.teleport.clone()) else {
        if identity.is_some() || cert.is_some() || key.is_some() || ca.is_some() {
            return Err(usage(
                "--teleport-identity, --teleport-cert, --teleport-key and --teleport-ca need --teleport HOST:PORT",
            ));
        }
        return Ok(None);
    };
    super::remote::check_teleport_addr("--teleport", &addr)?;
    let credentials = super::remote::teleport_credentials(
        identity.as_deref(),
        cert.as_deref(),
        key.as_deref(),
        ca.as_deref(),
    )?;
    Ok(Some(tapelog_server::TeleportGateway { addr, credentials }))
}

/// Runs `tapelog serve` until SIGTERM or SIGINT.
pub async fn run(a: ServeArgs) -> Result<(), CliError> {
    let config = config(&a)?;
    let insecure = config.tls.is_none() && !config.listen.ip().is_loopback();
    let gateway = config.teleport.as_ref().map(|g| g.addr.clone());
    let stop = super::shutdown_signal();
    let server = Server::start(config)
        .await
        .map_err(|e| usage(format!("serve: {e}")))?;
    {
        // Standard output: the address first (scripts read it), then the web player's login
        // URL. Only this line carries a token, in the URL fragment: it is never written to
        // standard error (the server's log), and browsers never send a fragment.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.url());
        let _ = writeln!(out, "{LOGIN_PREFIX}{}", server.login_url());
        let _ = out.flush();
    }
    if insecure {
        eprintln!(
            "WARNING: serving plain HTTP on {}: tokens and data cross the network unencrypted (use --tls-cert/--tls-key)",
            server.local_addr()
        );
    }
    if let Some(g) = &gateway {
        eprintln!(
            "read-only gateway to the Teleport cluster at {g}: searches, sessions and recordings come from it, writes are refused"
        );
    }
    if let Some(p) = server.admin_token_file() {
        eprintln!(
            "no token configured: the admin token is in {} (clients on this machine read it from there; the web player's login URL on standard output carries it)",
            p.display()
        );
    } else {
        eprintln!(
            "tokens configured: the web player asks for one (an auditor's or an admin's) on its page"
        );
    }
    let mut stop = stop;
    let _ = stop.wait_for(|s| *s).await;
    eprintln!("shutting down: closing open streams");
    let report = server.shutdown().await;
    eprintln!(
        "stopped: {} stream(s) closed, resumable",
        report.streams_closed
    );
    for e in &report.stream_errors {
        eprintln!("  {e}");
    }
    Ok(())
}
