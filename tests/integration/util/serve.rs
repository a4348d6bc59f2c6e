//! `tapelog serve` for the tests: in process on 127.0.0.1:0 with one token per role
//! ([`config`], [`start`]), or the real binary as a child process ([`ServeProcess`]); HTTP
//! clients, sample sessions as framed records.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tapelog_core::AuditEvent;
use tapelog_core::codec::frame_record;
use tapelog_server::{RunningServer, ServeConfig, Server, TokenSpec};

/// Tokens of the test servers.
pub const RECORDER: &str = "recorder-token-0123456789";
/// A second recorder.
pub const RECORDER2: &str = "recorder2-token-0123456789";
/// An auditor.
pub const AUDITOR: &str = "auditor-token-0123456789";
/// An admin.
pub const ADMIN: &str = "admin-token-0123456789";

/// One token per role (two recorders).
pub fn tokens() -> Vec<TokenSpec> {
    vec![
        TokenSpec::parse(&format!("recorder:rec1:{RECORDER}")).unwrap(),
        TokenSpec::parse(&format!("recorder:rec2:{RECORDER2}")).unwrap(),
        TokenSpec::parse(&format!("auditor:aud:{AUDITOR}")).unwrap(),
        TokenSpec::parse(&format!("admin:adm:{ADMIN}")).unwrap(),
    ]
}

/// A config for `dir` on a free loopback port with the test tokens, no periodic completer.
pub fn config(dir: &Path) -> ServeConfig {
    let mut c = ServeConfig::new(dir);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.tokens = tokens();
    c.server_id = "test-server".into();
    c.completer_interval = Duration::ZERO;
    c.shutdown_timeout = Duration::from_secs(10);
    c
}

/// Starts a server.
pub async fn start(config: ServeConfig) -> RunningServer {
    Server::start(config).await.expect("server starts")
}

/// A plain HTTP client with a bounded timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A sample session (start, resize, `prints` prints, end) with session id `sid`.
pub fn session(sid: &str, prints: usize) -> Vec<AuditEvent> {
    let mut events = tapelog_core::vectors::sample_session(prints);
    for e in &mut events {
        if let Some(s) = e.session_metadata_mut() {
            s.session_id = sid.to_string();
        }
    }
    events
}

/// Events as framed records (a records request body).
pub fn framed(events: &[AuditEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        frame_record(e, &mut out).unwrap();
    }
    out
}

/// A fresh UUID.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

// The real binary.

/// A `tapelog serve` child process; killed when dropped.
pub struct ServeProcess {
    /// The process.
    pub child: Child,
    /// Its base URL (`http://127.0.0.1:PORT` or `https://…`), no trailing slash.
    pub url: String,
    /// Its stdout lines after the address.
    lines: std::sync::mpsc::Receiver<String>,
    /// Its command (which owns its home and working directories).
    _cmd: super::TestCommand,
}

impl ServeProcess {
    /// `tapelog serve` with the arguments `args` adds (stdout is piped to read the address;
    /// `args` may set stderr and the environment), waiting up to 60 s for its address.
    pub fn start(args: impl FnOnce(&mut Command)) -> ServeProcess {
        Self::try_start(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`start`](Self::start), returning why it did not start (it exited without printing
    /// its address, e.g. its port was still taken; or 60 s passed) instead of panicking.
    pub fn try_start(args: impl FnOnce(&mut Command)) -> Result<ServeProcess, String> {
        let mut test = super::TestCommand::new();
        test.arg("serve");
        let cmd = test.cmd();
        args(cmd);
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Every line is passed on; the pipe is drained to the end either way.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        // The sender is dropped when serve exits without a line: no need to wait 60 s then.
        let first = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(first) => first,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                return Err(format!(
                    "tapelog serve printed no address ({e}); exit status {status:?}"
                ));
            }
        };
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .trim_end_matches('/')
            .to_string();
        Ok(ServeProcess {
            child,
            url,
            lines: rx,
            _cmd: test,
        })
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        self.url
            .split_once("://")
            .map_or(self.url.clone(), |(_, a)| a.to_string())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Its next line on stdout after the address (waits up to 60 s).
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("tapelog serve printed no further line: {e}"))
    }

    /// SIGTERM; expects exit status 0 within 30 s and returns stderr to its end (empty
    /// unless `args` piped it).
    pub fn terminate(mut self) -> String {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child, which has not been waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let exited = super::wait_until(Duration::from_secs(30), || {
            self.child.try_wait().unwrap().is_some()
        });
        let mut err = String::new();
        if !exited {
            let _ = self.child.kill();
        }
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut err).unwrap();
        }
        assert!(exited, "serve did not exit within 30 s of SIGTERM: {err}");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}: {err}");
        err
    }

    /// SIGKILL, and check it did not exit on its own first.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not finished");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
