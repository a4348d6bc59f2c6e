//! The real `tapelog serve` binary as a child process on loopback, for the end-to-end tests
//! (`daemon.rs`, `forward.rs`): started, its `listening on URL` line read, killed when
//! dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `tapelog serve` child process; killed when dropped.
pub struct ServeProcess {
    /// The process.
    pub child: Child,
    /// Its base URL (`http://127.0.0.1:PORT` or `https://…`), no trailing slash.
    pub url: String,
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapelog"));
        cmd.arg("serve");
        args(&mut cmd);
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {} // keep the pipe drained
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
        Ok(ServeProcess { child, url })
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
