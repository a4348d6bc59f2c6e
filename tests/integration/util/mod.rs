//! What the integration tests share: [`TestCommand`] (the real `tapelog` binary with a clean
//! environment), bounded waits, and the servers the tests talk to — object stores
//! ([`stores`]: s3s-fs and azurite), `tapelog serve` ([`serve`]: in process, or the binary as
//! a child), a Fluentd look-alike ([`fluentd`]), PostgreSQL 15 ([`postgres`]) — and programs on
//! a test PTY ([`pty`]).

#![allow(dead_code)]

pub mod azproxy;
pub mod fluentd;
pub mod gcs;
pub mod parts;
pub mod postgres;
pub mod pty;
pub mod serve;
pub mod stores;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The `tapelog` binary under test.
pub fn tapelog_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tapelog"))
}

/// The root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `cond` every 20 ms until it holds (true) or `limit` has passed (false).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The real `tapelog` binary, run as a user would but isolated: an empty environment (only
/// `PATH`, and `HOME` set to a fresh directory), in a fresh working directory; both are
/// removed when this value is dropped. Set what a test needs with [`env`](Self::env).
///
/// [`run`](Self::run) expects success and [`run_fail`](Self::run_fail) a failure; on any
/// other outcome they panic with the command line, the exit status, stdout and stderr.
pub struct TestCommand {
    cmd: Command,
    line: Vec<String>,
    stdin: Option<Vec<u8>>,
    _home: TempDir,
}

impl TestCommand {
    /// `tapelog` with no arguments yet.
    pub fn new() -> TestCommand {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(tapelog_bin());
        cmd.env_clear()
            .env("HOME", home.path())
            .current_dir(home.path())
            .stdin(Stdio::null());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        TestCommand {
            cmd,
            line: vec!["tapelog".into()],
            stdin: None,
            _home: home,
        }
    }

    /// The directory that is `HOME` and the working directory.
    pub fn home(&self) -> &Path {
        self._home.path()
    }

    /// Adds an argument.
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.line.push(a.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(a);
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    /// Runs in `dir` instead of the fresh directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Feeds `bytes` to standard input.
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command itself, for what the methods above do not cover.
    pub fn cmd(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Starts it (standard streams as set on [`cmd`](Self::cmd); stdin is null unless
    /// changed there).
    pub fn spawn(&mut self) -> Child {
        self.cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.line()))
    }

    /// Runs it to the end and returns what it did, whatever the outcome (stdout and stderr
    /// captured unless set otherwise on [`cmd`](Self::cmd)).
    pub fn output(&mut self) -> Output {
        let Some(input) = self.stdin.clone() else {
            return self
                .cmd
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.line()));
        };
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawn();
        let mut pipe = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            // An early exit of the child closes the pipe: not this helper's error to report.
            let _ = pipe.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out
    }

    /// Runs it and expects exit status 0; returns its output.
    pub fn run(&mut self) -> Output {
        let out = self.output();
        if !out.status.success() {
            panic!("{}", self.report("expected success", &out));
        }
        out
    }

    /// Runs it and expects a failure (a non-zero status or a signal); returns its output.
    pub fn run_fail(&mut self) -> Output {
        let out = self.output();
        if out.status.success() {
            panic!("{}", self.report("expected failure", &out));
        }
        out
    }

    /// [`run`](Self::run)'s standard output as UTF-8.
    pub fn stdout(&mut self) -> String {
        String::from_utf8(self.run().stdout).unwrap()
    }

    /// The command line, quoted where needed.
    pub fn line(&self) -> String {
        self.line
            .iter()
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
                {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn report(&self, expected: &str, out: &Output) -> String {
        format!(
            "{expected}: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Default for TestCommand {
    fn default() -> Self {
        Self::new()
    }
}

/// `tapelog ARGS…` as a [`TestCommand`].
pub fn tapelog<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> TestCommand {
    let mut c = TestCommand::new();
    c.args(args);
    c
}
