//! `tapelog certs init`: a CA, a server certificate and one client certificate per role,
//! for `tapelog serve --tls-cert --tls-key --client-ca` (see [`tapelog_api::tls::certs`]).

use std::path::PathBuf;

use super::CliError;

/// `tapelog certs ...`
#[derive(clap::Subcommand)]
pub enum CertsCommand {
    /// Write `ca.pem`, `server.pem` and `recorder.pem`, `auditor.pem`, `admin.pem` (each
    /// with its `-key.pem`, mode 0600) into DIR. Client certificates carry CN
    /// `tapelog-<role>` and OU `<role>`.
    Init(InitArgs),
}

/// Arguments of `tapelog certs init`.
#[derive(clap::Args)]
pub struct InitArgs {
    /// The directory to write into (created if missing; existing files are replaced).
    pub dir: PathBuf,
    /// A host name or IP address the server certificate is for (repeatable). Default
    /// `127.0.0.1` and `localhost`.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
}

/// Runs `tapelog certs ...`.
pub fn run(cmd: CertsCommand) -> Result<(), CliError> {
    match cmd {
        CertsCommand::Init(a) => {
            let files = tapelog_api::tls::certs::init(&a.dir, &a.hosts)
                .map_err(|e| CliError::Usage(format!("certs init: {e}")))?;
            println!("CA          {}", files.ca.display());
            println!(
                "server      {} {}",
                files.server.display(),
                files.server_key.display()
            );
            for (role, cert, key) in &files.clients {
                println!(
                    "{:<11} {} {}",
                    tapelog_api::tls::certs::role_name(*role),
                    cert.display(),
                    key.display()
                );
            }
            eprintln!(
                "serve with: tapelog serve --tls-cert {} --tls-key {} --client-ca {}",
                files.server.display(),
                files.server_key.display(),
                files.ca.display()
            );
            Ok(())
        }
    }
}
