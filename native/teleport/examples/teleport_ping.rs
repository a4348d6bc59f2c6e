//! Connects to a Teleport Auth server with an identity file and prints what `Ping` says:
//! `cargo run -p tapelog-teleport --example teleport_ping -- <host:3025> <identity-file>`.

use std::path::PathBuf;
use std::process::ExitCode;

use tapelog_teleport::{AuthClient, Credentials, DEFAULT_ADDR};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let Some(identity) = args.next().map(PathBuf::from) else {
        eprintln!("usage: teleport_ping <host:port> <identity-file>");
        return ExitCode::from(2);
    };
    let result = async {
        let creds = Credentials::identity_file(&identity)?;
        let client = AuthClient::connect(&addr, &creds).await?;
        client.ping().await
    }
    .await;
    match result {
        Ok(info) => {
            println!(
                "cluster {} (Teleport {}), we are {}",
                info.cluster_name, info.server_version, info.remote_addr
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
