//! Test helpers for programs that run on a terminal: the real `tapelog` binary started on a
//! PTY that the test opens (through `tapelog_term::pty`), its output collected by a reader thread,
//! and bounded waits on it.
#![allow(dead_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tapelog_core::export::TerminalSize;
use tapelog_term::pty::{Pty, read_fd, wait_readable, write_all_fd};

pub use super::tapelog_bin;

/// A command running on a test PTY.
pub struct OnPty {
    pub pty: Arc<Pty>,
    pub child: Child,
    pub output: Arc<Mutex<Vec<u8>>>,
    /// The PTY's attributes before the command started (it may change them at once).
    pub initial: libc::termios,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl OnPty {
    /// Starts `cmd` on a new PTY of `cols`×`rows`.
    pub fn start(cmd: &mut Command, cols: u16, rows: u16) -> OnPty {
        let pty = Arc::new(Pty::open(TerminalSize::new(cols, rows).unwrap()).unwrap());
        let initial = tcgetattr(pty.slave());
        let child = pty.spawn(cmd).unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (pty, output, stop) = (pty.clone(), output.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while !stop.load(Ordering::Acquire) {
                    if !wait_readable(pty.master(), 50).unwrap_or(false) {
                        continue;
                    }
                    match read_fd(pty.master(), &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => output.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            })
        };
        OnPty {
            pty,
            child,
            output,
            initial,
            stop,
            reader: Some(reader),
        }
    }

    pub fn send(&self, bytes: &[u8]) {
        write_all_fd(self.pty.master(), bytes).unwrap();
    }

    pub fn output(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    pub fn output_len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Waits up to `limit` for `check` on the output to hold; panics with the output if not.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&[u8]) -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if check(&self.output()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no {what} within {limit:?}; output so far: {:?}",
            String::from_utf8_lossy(&self.output())
        );
    }

    /// Waits up to `limit` for the command to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader take the last output.
                std::thread::sleep(Duration::from_millis(150));
                return s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the command did not exit within {limit:?}; output: {:?}",
                    String::from_utf8_lossy(&self.output())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The test PTY's terminal attributes, as the command sees them.
    pub fn attributes(&self) -> libc::termios {
        tcgetattr(self.pty.slave().as_fd())
    }
}

impl Drop for OnPty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The attributes of the terminal `fd`, read with libc's own `tcgetattr` (independent of the
/// crate's wrapper).
pub fn tcgetattr(fd: BorrowedFd<'_>) -> libc::termios {
    // SAFETY: termios is plain data that tcgetattr fills; the pointer is valid for the call.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) };
    assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    t
}

/// The fields of two `termios` that matter, side by side, for an equality check.
pub fn termios_fields(t: &libc::termios) -> (u32, u32, u32, u32, Vec<u8>) {
    (t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc.to_vec())
}
