//! The two byte pumps of a recorded session, each on its own thread (they block in `poll` and
//! `read`, at most [`POLL_MS`] at a time so that they notice the end of the session):
//! the child's output from the PTY master to our standard output and into the session writer,
//! and our standard input to the PTY master.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::pty::{LocalModes, SpecialCodeIndex, attributes, read_fd, wait_readable, write_all_fd};
use tapelog_session::SessionWriter;

/// Longest wait of one `poll` in a pump.
pub const POLL_MS: i32 = 100;

/// What a pump did.
#[derive(Debug, Default)]
pub struct Pumped {
    /// Bytes moved.
    pub bytes: u64,
    /// The first recording error (the pump goes on passing bytes through after it).
    pub error: Option<String>,
}

/// Copies the child's output to `out` and records it, until the PTY reports the end (every
/// copy of the slave closed) or, once `exited` is set, until no output came for [`POLL_MS`]
/// (a background process that keeps the terminal open does not hold the session).
pub fn output(
    master: Arc<OwnedFd>,
    mut out: impl Write,
    writer: Arc<SessionWriter>,
    exited: Arc<AtomicBool>,
) -> Pumped {
    let mut done = Pumped::default();
    let mut buf = vec![0u8; 32 * 1024];
    let mut out_ok = true;
    loop {
        let ready = match wait_readable(master.as_fd(), POLL_MS) {
            Ok(r) => r,
            Err(e) => {
                done.error
                    .get_or_insert(format!("polling the terminal: {e}"));
                break;
            }
        };
        if !ready {
            if exited.load(Ordering::Acquire) {
                break;
            }
            continue;
        }
        let n = match read_fd(master.as_fd(), &mut buf) {
            // EIO: the slave side is closed everywhere (Linux); 0: the same elsewhere.
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &buf[..n];
        done.bytes += n as u64;
        if out_ok && (out.write_all(data).is_err() || out.flush().is_err()) {
            // Our own output is gone (a closed pipe): keep recording.
            out_ok = false;
        }
        if let Err(e) = writer.write_blocking(data) {
            done.error.get_or_insert(e.to_string());
        }
    }
    done
}

/// Copies `input` to the PTY master until `stop` is set, input ends or fails, or the master
/// refuses. When input that is not a terminal ends, the terminal's end-of-file character is
/// sent if the child reads lines (canonical mode), so that `echo x | tapelog record -- cat`
/// ends as it does without a PTY.
pub fn input(
    input: impl AsFd,
    input_is_tty: bool,
    master: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
) -> Pumped {
    let mut done = Pumped::default();
    let mut buf = vec![0u8; 8 * 1024];
    while !stop.load(Ordering::Acquire) {
        match wait_readable(input.as_fd(), POLL_MS) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => break,
        }
        match read_fd(input.as_fd(), &mut buf) {
            Ok(0) => {
                if !input_is_tty
                    && let Ok(t) = attributes(master.as_fd())
                    && t.local_modes.contains(LocalModes::ICANON)
                {
                    let _ =
                        write_all_fd(master.as_fd(), &[t.special_codes[SpecialCodeIndex::VEOF]]);
                }
                break;
            }
            Ok(n) => {
                if write_all_fd(master.as_fd(), &buf[..n]).is_err() {
                    break;
                }
                done.bytes += n as u64;
            }
            Err(_) => break,
        }
    }
    done
}
