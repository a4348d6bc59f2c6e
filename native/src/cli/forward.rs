//! `tapelog forward`: the Fluentd exporter ([`tapelog::forward`]); `tapelog forward
//! configure OUT_DIR` writes certificates and configuration files.

use std::path::PathBuf;

use tapelog::forward::{ForwardArgs, ForwardError};

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

/// Arguments of `tapelog forward configure`.
#[derive(clap::Args)]
pub struct ConfigureArgs {
    /// The directory to write into.
    pub out_dir: PathBuf,
}

/// Runs `tapelog forward`.
pub async fn run(c: ForwardCommand) -> Result<(), CliError> {
    match c.command {
        // wired at merge: forward::configure
        Some(ForwardSubcommand::Configure(a)) => Err(CliError::Usage(format!(
            "tapelog forward configure {}: not in this build yet",
            a.out_dir.display()
        ))),
        None => {
            let opts = c.args.resolve().map_err(ForwardError::from)?;
            let shutdown = super::shutdown_signal();
            tapelog::forward::run(opts, shutdown).await?;
            Ok(())
        }
    }
}
