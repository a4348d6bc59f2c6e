//! `tapelog forward`: the Fluentd exporter ([`tapelog_forward`]); `tapelog forward
//! configure OUT_DIR` writes certificates and configuration files.

use std::path::PathBuf;

use tapelog_forward::{ForwardArgs, ForwardError};

use super::CliError;

/// `tapelog forward [FLAGS]` runs the exporter; `tapelog forward configure OUT_DIR` is a
/// subcommand.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ForwardCommand {
    #[command(subcommand)]
    pub command: Option<ForwardSubcommand>,
    #[command(flatten)]
    pub args: ForwardArgs,
}

/// Subcommands of `tapelog forward`.
#[derive(clap::Subcommand)]
pub enum ForwardSubcommand {
    /// Write a CA, Fluentd server and client certificates, a matching `fluent.conf` and a
    /// TOML file for `tapelog forward --config` into OUT_DIR.
    Configure(ConfigureArgs),
}

/// Arguments of `tapelog forward configure` (upstream's `configure`; the defaults are its).
#[derive(clap::Args)]
pub struct ConfigureArgs {
    /// The directory to write into (created if missing).
    pub out_dir: PathBuf,
    /// The Teleport/tapelog server address written as `[teleport] addr` (upstream's `[addr]`).
    #[arg(default_value = "localhost:3025")]
    pub addr: String,
    /// DNS names of Fluentd's server certificate, comma-separated; the first is the host in
    /// the TOML's URLs.
    #[arg(long, value_delimiter = ',', default_value = "localhost")]
    pub dns_names: Vec<String>,
    /// IP addresses of Fluentd's server certificate (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub ip: Vec<std::net::IpAddr>,
    /// How long the certificates are valid (a Go duration: 87600h, 720h, 30m).
    #[arg(long, default_value = "87600h")]
    pub ttl: String,
    /// Upstream's RSA key length; tapelog makes ECDSA P-256 keys and ignores it (a warning).
    #[arg(long)]
    pub length: Option<u32>,
    /// Which Fluentd source the TOML's URLs point at: `http` (in_http, upstream's) or
    /// `forward` (the Forward protocol over TLS, uncommented in `fluent.conf`).
    #[arg(long, default_value = "http", value_parser = ["http", "forward"])]
    pub protocol: String,
    /// Where Fluentd will see the key files, for `fluent.conf`'s paths (default: OUT_DIR;
    /// `/keys` for upstream's Docker mount).
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
    /// Overwrite files that exist (without it nothing is written when any exists).
    #[arg(long)]
    pub force: bool,
}

/// Runs `tapelog forward`.
pub async fn run(c: ForwardCommand) -> Result<(), CliError> {
    match c.command {
        Some(ForwardSubcommand::Configure(a)) => configure(a),
        None => {
            let opts = c.args.resolve().map_err(ForwardError::from)?;
            let shutdown = super::shutdown_signal();
            tapelog_forward::run(opts, shutdown).await?;
            Ok(())
        }
    }
}

fn configure(a: ConfigureArgs) -> Result<(), CliError> {
    use tapelog_forward::configure::{ConfigureOptions, Protocol, parse_go_duration, run};
    if let Some(n) = a.length {
        eprintln!("tapelog forward configure: --length {n} ignored: the keys are ECDSA P-256");
    }
    let ttl = parse_go_duration(&a.ttl)
        .map_err(|e| CliError::Usage(format!("--ttl {:?}: {e}", a.ttl)))?;
    let opts = ConfigureOptions {
        dns_names: a.dns_names,
        ips: a.ip,
        ttl,
        force: a.force,
        protocol: if a.protocol == "forward" {
            Protocol::Forward
        } else {
            Protocol::Http
        },
        addr: a.addr,
        fluentd_keys_dir: a.keys_dir,
    };
    let files = run(&a.out_dir, &opts)
        .map_err(|e| CliError::Usage(format!("tapelog forward configure: {e}")))?;
    for f in files.all() {
        println!("wrote {}", f.display());
    }
    println!(
        "start Fluentd with {} and run: tapelog forward --config {}",
        files.fluent_conf.display(),
        files.toml.display()
    );
    Ok(())
}
