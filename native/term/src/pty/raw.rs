//! [`RawMode`]: a terminal in raw mode for as long as the guard lives, restored on drop,
//! including while unwinding from a panic, and by a panic hook ([`restore_on_panic`]) that
//! also covers panics on other threads; and [`quit_on_signals`], which turns SIGINT, SIGTERM
//! and SIGHUP into a flag so that a program in raw mode ends through its normal path.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use rustix::termios::{OptionalActions, Termios, tcsetattr};

use super::{PtyError, attributes, setting};

/// Terminals in raw mode (a duplicate of each descriptor, so that the panic hook never
/// writes to a number that was closed and reused) and their saved attributes.
static SAVED: Mutex<Vec<(RawFd, OwnedFd, Termios)>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

fn restore(fd: BorrowedFd<'_>, t: &Termios) {
    // A terminal gone meanwhile just fails; there is nothing else to do about it.
    let _ = tcsetattr(fd, OptionalActions::Flush, t);
}

/// Installs (once) a panic hook that puts every terminal in raw mode back as it was before
/// the previous hook prints the panic. [`RawMode::enable`] calls it.
pub fn restore_on_panic() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(saved) = SAVED.try_lock() {
                for (_, fd, t) in saved.iter() {
                    restore(fd.as_fd(), t);
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
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode; it must stay open while the guard lives.
    pub fn enable(fd: BorrowedFd<'_>) -> Result<RawMode, PtyError> {
        let saved = attributes(fd)?;
        restore_on_panic();
        let mut raw = saved.clone();
        raw.make_raw();
        let copy = fd
            .try_clone_to_owned()
            .map_err(|source| PtyError::Setting {
                what: "dup",
                source,
            })?;
        SAVED.lock().unwrap_or_else(PoisonError::into_inner).push((
            fd.as_raw_fd(),
            copy,
            saved.clone(),
        ));
        if let Err(e) =
            tcsetattr(fd, OptionalActions::Flush, &raw).map_err(setting("tcsetattr(raw)"))
        {
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
    if let Some(i) = saved.iter().rposition(|(f, _, _)| *f == fd) {
        saved.remove(i);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // The terminal must stay open while the guard lives (see `enable`), so its copy in
        // SAVED is still the same terminal: restore through that.
        let mut saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = saved.iter().rposition(|(f, _, _)| *f == self.fd) {
            let (_, copy, _) = saved.remove(i);
            restore(copy.as_fd(), &self.saved);
        }
    }
}

static QUIT: AtomicBool = AtomicBool::new(false);

/// From now on SIGINT, SIGTERM and SIGHUP only set the flag that [`quit_requested`] reads
/// (the program polls it and ends normally, restoring the terminal on its way out).
pub fn quit_on_signals() {
    crate::sys::flag_on_quit_signals(&QUIT);
}

/// Whether one of the signals of [`quit_on_signals`] arrived.
pub fn quit_requested() -> bool {
    QUIT.load(Ordering::Acquire)
}
