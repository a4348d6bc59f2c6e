//! A Teleport Auth Service double as a process, for the browser test of `tapelog serve
//! --teleport` (web-demo/tests/gateway.mjs): starts `tapelog_teleport::double::Double` on
//! 127.0.0.1, stores one session (the core's sample session: start, resize, PRINTS prints,
//! end; print data included) and its `session.end` as an audit event, prints one JSON line on
//! standard output — `{"addr", "identity", "session_id", "last_line"}` (the identity file to
//! connect with, the text of the session's last print) — and runs until SIGTERM or SIGINT
//! (the double's files are removed then).
//!
//! usage: teleport-double [PRINTS]   (default 60)

use std::process::ExitCode;

use tapelog_core::vectors::{line, sample_session};
use tapelog_teleport::double::Double;

/// The session the double holds.
const SESSION_ID: &str = "7b4c2a10-5e3d-4f8a-9b61-0c2d3e4f5a6b";

fn main() -> ExitCode {
    let prints = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 60,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: teleport-double [PRINTS] (a number above 0)");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("teleport-double: the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(prints))
}

async fn run(prints: usize) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("teleport-double: cannot handle signals");
        return ExitCode::FAILURE;
    };
    let double = match Double::start().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("teleport-double: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut events = sample_session(prints);
    for e in &mut events {
        if let Some(s) = e.session_metadata_mut() {
            s.session_id = SESSION_ID.to_string();
        }
    }
    if let Some(end) = events.last() {
        double.add_events([end.clone()]);
    }
    double.add_session(SESSION_ID, events);
    let last = String::from_utf8_lossy(&line(prints - 1))
        .trim_end()
        .to_string();
    let hello = serde_json::json!({
        "addr": double.addr(),
        "identity": double.identity_file().display().to_string(),
        "session_id": SESSION_ID,
        "last_line": last,
    });
    println!("{hello}");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(double);
    ExitCode::SUCCESS
}
