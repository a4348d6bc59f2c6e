//! [`RawMode`]: a terminal in raw mode for as long as the guard lives, restored on drop,
//! including while unwinding from a panic, and by a panic hook ([`restore_on_panic`]) that
//! also covers panics on other threads; and [`quit_on_signals`], which turns SIGINT, SIGTERM
//! and SIGHUP into a flag so that a program in raw mode ends through its normal path.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use super::{PtyError, attributes, check};

/// Terminals in raw mode and their saved attributes, for the panic hook.
static SAVED: Mutex<Vec<(RawFd, libc::termios)>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

fn restore(fd: RawFd, t: &libc::termios) {
    // SAFETY: tcsetattr reads the valid termios; a closed fd just fails.
    unsafe {
        libc::tcsetattr(fd, libc::TCSAFLUSH, t);
    }
}

/// Installs (once) a panic hook that puts every terminal in raw mode back as it was before
/// the previous hook prints the panic. [`RawMode::enable`] calls it.
pub fn restore_on_panic() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(saved) = SAVED.try_lock() {
                for (fd, t) in saved.iter() {
                    restore(*fd, t);
                }
            }
            previous(info);
        }));
    });
}

/// A terminal in raw mode (`cfmakeraw`: no echo, no line editing, no signals from keys, no
/// output processing) until this guard is dropped.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode; it must stay open while the guard lives.
    pub fn enable(fd: BorrowedFd<'_>) -> Result<RawMode, PtyError> {
        let saved = attributes(fd)?;
        restore_on_panic();
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the valid termios in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        SAVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((fd.as_raw_fd(), saved));
        // SAFETY: the pointer is valid for the call.
        if let Err(e) = check("tcsetattr(raw)", unsafe {
            libc::tcsetattr(fd.as_raw_fd(), libc::TCSAFLUSH, &raw)
        }) {
            forget(fd.as_raw_fd());
            return Err(e);
        }
        Ok(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

fn forget(fd: RawFd) {
    let mut saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = saved.iter().rposition(|(f, _)| *f == fd) {
        saved.remove(i);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore(self.fd, &self.saved);
        forget(self.fd);
    }
}

static QUIT: AtomicBool = AtomicBool::new(false);

extern "C" fn note_quit(_: libc::c_int) {
    // An atomic store is async-signal-safe.
    QUIT.store(true, Ordering::Release);
}

/// From now on SIGINT, SIGTERM and SIGHUP only set the flag that [`quit_requested`] reads
/// (the program polls it and ends normally, restoring the terminal on its way out).
pub fn quit_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                sig,
                note_quit as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Whether one of the signals of [`quit_on_signals`] arrived.
pub fn quit_requested() -> bool {
    QUIT.load(Ordering::Acquire)
}
