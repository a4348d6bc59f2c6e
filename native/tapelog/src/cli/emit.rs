//! `tapelog emit`: Teleport JSON events, one per line, into the file audit log through the
//! checking rules, or (`--server`) into a `tapelog serve`'s audit log, which applies them.

use std::io::BufRead;
use std::path::PathBuf;

use clap::ValueEnum;
use tapelog_audit::emit::{BoxEmitter, CheckingEmitter, EmitError, Emitter};
use tapelog_audit::{Durability, MultiLog, OpenOptions, default_server_id};
use tapelog_client::RemoteEmitter;
use tapelog_core::AuditEvent;

use super::CliError;

/// Input lines longer than this are rejected without being kept in memory.
const MAX_INPUT_LINE: usize = 16 << 20;

/// When an event counts as stored.
#[derive(Clone, Copy, ValueEnum)]
pub enum DurabilityArg {
    /// After its `write(2)` (upstream's behaviour).
    Write,
    /// After `fdatasync(2)` of the file.
    Fsync,
}

/// The audit log options shared by `emit` and `search`.
#[derive(clap::Args, Clone)]
pub struct DataDirArgs {
    /// The data directory: audit files go to `DIR/log/<server id>/`.
    #[arg(
        long,
        env = "TAPELOG_DATA_DIR",
        default_value = "./tapelog-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// An audit log as a URI instead of the file log under --data-dir (repeatable, as
    /// `tapelog serve --audit`): `file://DIR`, `postgres://…`, `stdout://`, `discard://`.
    /// Events go to every one, searches read the first. `TAPELOG_AUDIT`: several, separated
    /// by spaces.
    #[arg(
        long = "audit",
        env = "TAPELOG_AUDIT",
        value_name = "URI",
        value_delimiter = ' '
    )]
    pub audit: Vec<String>,
}

impl DataDirArgs {
    /// The `--audit` URIs given (empty ones dropped).
    pub fn audit_uris(&self) -> Vec<String> {
        self.audit
            .iter()
            .filter(|u| !u.is_empty())
            .cloned()
            .collect()
    }
}

/// Arguments of `tapelog emit`.
#[derive(clap::Args)]
pub struct EmitArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// With `--server`: send the events to that `tapelog serve` (one request per event; the
    /// server checks them and fills uid, time and its own cluster name) instead of the data
    /// directory. With several servers an event goes on to the next only when the one tried
    /// surely did not take it (unreachable, 503): it is never sent twice.
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// This server's directory name under `DIR/log/` (default: the host name; local only).
    #[arg(long, env = "TAPELOG_SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,
    /// Cluster name set on events that have none (local only: a server sets its own).
    #[arg(
        long,
        env = "TAPELOG_CLUSTER_NAME",
        default_value = "",
        value_name = "NAME"
    )]
    pub cluster_name: String,
    /// When an event counts as stored (local only: a server has its own setting).
    #[arg(long, value_enum, default_value = "write")]
    pub durability: DurabilityArg,
    /// The events, one JSON object per line (`-` or nothing for standard input).
    pub input: Option<PathBuf>,
}

/// Events stored together at most (one database statement, one request to a server).
const BATCH: usize = 500;
/// Input bytes stored together at most (a server takes 16 MiB per request by default).
const BATCH_BYTES: usize = 4 << 20;

/// Reads one line of at most `max` bytes into `buf` (without the newline). `Ok(None)` at the
/// end of input; `Ok(Some(false))` when the line was longer (its bytes are dropped).
fn read_bounded_line(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut fits = true;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(any.then_some(fits));
        }
        any = true;
        let (piece, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if fits && buf.len() + piece.len() <= max {
            buf.extend_from_slice(piece);
        } else {
            fits = false;
            buf.clear();
        }
        let used = done.unwrap_or(avail.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Some(fits));
        }
    }
}

/// Runs `tapelog emit`.
pub async fn run(a: EmitArgs) -> Result<(), CliError> {
    // Where events go: a server (`--server`), else the logs of `--audit` (default: the file
    // log under --data-dir). Checked here either way, so that each event has its uid before
    // it is sent (a database stores a resent event once).
    let sink: BoxEmitter = match a.remote.client(Some(&a.data.data_dir))? {
        Some(client) => std::sync::Arc::new(RemoteEmitter::new(client)),
        None => {
            let options = OpenOptions {
                data_dir: a.data.data_dir.clone(),
                server_id: a.server_id.unwrap_or_else(default_server_id),
                durability: match a.durability {
                    DurabilityArg::Write => Durability::Write,
                    DurabilityArg::Fsync => Durability::Fsync,
                },
                metrics: tapelog_audit::metrics::Metrics::shared(),
            };
            std::sync::Arc::new(MultiLog::open(&a.data.audit_uris(), &options).await?)
        }
    };
    let emitter = CheckingEmitter::new(sink, &a.cluster_name);

    let (name, source): (String, Box<dyn std::io::Read>) = match &a.input {
        None => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) if p.as_os_str() == "-" => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|source| CliError::Write {
                path: p.display().to_string(),
                source,
            })?;
            (p.display().to_string(), Box::new(f))
        }
    };
    let mut input = std::io::BufReader::with_capacity(1 << 16, source);
    // Checked events not yet stored, with their line numbers: stored together (one statement
    // for a database) when BATCH are waiting or when the input has nothing more buffered, so
    // that a slow pipe's events are stored as they come.
    let mut pending: Vec<AuditEvent> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut first_pending_line = 0u64;

    let (mut accepted, mut rejected) = (0u64, 0u64);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        let read = read_bounded_line(&mut input, &mut buf, MAX_INPUT_LINE).map_err(|source| {
            CliError::Write {
                path: name.clone(),
                source,
            }
        })?;
        let Some(fits) = read else { break };
        line_no += 1;
        if !fits {
            eprintln!("line {line_no}: longer than {MAX_INPUT_LINE} bytes");
            rejected += 1;
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim(),
            Err(e) => {
                eprintln!("line {line_no}: not UTF-8: {e}");
                rejected += 1;
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let event = match AuditEvent::from_json(text) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("line {line_no}: {e}");
                rejected += 1;
                continue;
            }
        };
        let mut event = event;
        match emitter.check(&mut event) {
            Ok(()) => {
                if pending.is_empty() {
                    first_pending_line = line_no;
                }
                pending.push(event);
                pending_bytes += text.len();
            }
            Err(EmitError::Invalid { reason, .. }) => {
                eprintln!("line {line_no}: {reason}");
                rejected += 1;
            }
            Err(e) => {
                return Err(CliError::Emit {
                    line: line_no,
                    source: e,
                });
            }
        }
        if pending.len() >= BATCH || pending_bytes >= BATCH_BYTES || input.buffer().is_empty() {
            let n = pending.len() as u64;
            pending_bytes = 0;
            if let Err(e) = emitter.emit_batch(std::mem::take(&mut pending)).await {
                eprintln!("accepted {accepted}, rejected {rejected}");
                return Err(CliError::Emit {
                    line: first_pending_line,
                    source: e,
                });
            }
            accepted += n;
        }
    }
    if !pending.is_empty() {
        let n = pending.len() as u64;
        if let Err(e) = emitter.emit_batch(pending).await {
            eprintln!("accepted {accepted}, rejected {rejected}");
            return Err(CliError::Emit {
                line: first_pending_line,
                source: e,
            });
        }
        accepted += n;
    }
    eprintln!("accepted {accepted}, rejected {rejected}");
    if rejected > 0 {
        return Err(CliError::Rejected {
            rejected,
            total: accepted + rejected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn bounded_lines() {
        let mut r = std::io::BufReader::with_capacity(4, &b"ab\ncdefgh\n\nxyz"[..]);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(fits) = read_bounded_line(&mut r, &mut buf, 5).unwrap() {
            out.push((fits, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            out,
            [
                (true, "ab".to_string()),
                (false, String::new()),
                (true, String::new()),
                (true, "xyz".to_string())
            ]
        );
    }
}
