//! Terminals: pseudo-terminals ([`Pty`]: `openpty`, a child on the PTY with it as its
//! controlling terminal), window sizes, raw mode with a guaranteed restore ([`RawMode`]), and
//! the keys a player reads ([`keys`]).
//!
//! Everything here is a thin, checked wrapper over libc calls; the terminal rules (sizes,
//! timing) are in `tapelog_core::export`.

pub mod keys;
mod raw;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use tapelog_core::export::TerminalSize;
use thiserror::Error;

pub use raw::{RawMode, quit_on_signals, quit_requested, restore_on_panic};

/// Why a terminal operation failed.
#[derive(Debug, Error)]
pub enum PtyError {
    /// `openpty` failed (no PTYs left, /dev/pts not mounted, ...).
    #[error("opening a pseudo-terminal failed: {0}")]
    Open(#[source] io::Error),
    /// The command could not be started.
    #[error("starting {command:?} failed: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A terminal setting could not be read or changed.
    #[error("{what} failed: {source}")]
    Setting {
        /// The operation.
        what: &'static str,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

fn check(what: &'static str, rc: libc::c_int) -> Result<libc::c_int, PtyError> {
    if rc < 0 {
        Err(PtyError::Setting {
            what,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(rc)
    }
}

fn set_cloexec(fd: BorrowedFd<'_>) -> Result<(), PtyError> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let flags = check("fcntl(F_GETFD)", unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_GETFD)
    })?;
    // SAFETY: as above.
    check("fcntl(F_SETFD)", unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC)
    })?;
    Ok(())
}

fn winsize(size: TerminalSize) -> libc::winsize {
    libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A pseudo-terminal: the master side (what a recorder reads and writes) and the slave side
/// (the child's terminal). Both descriptors are close-on-exec.
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    /// Opens a pseudo-terminal of `size`.
    pub fn open(size: TerminalSize) -> Result<Pty, PtyError> {
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        let ws = winsize(size);
        // SAFETY: openpty writes two descriptors into the ints we pass; name and termios are
        // null (allowed), the winsize pointer is valid for the call.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        if rc != 0 {
            return Err(PtyError::Open(io::Error::last_os_error()));
        }
        // SAFETY: openpty succeeded: both are open descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        set_cloexec(master.as_fd())?;
        set_cloexec(slave.as_fd())?;
        Ok(Pty { master, slave })
    }

    /// The master side.
    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// The slave side (the child's terminal).
    pub fn slave(&self) -> BorrowedFd<'_> {
        self.slave.as_fd()
    }

    /// Starts `cmd` on the slave side: its standard input, output and error are the terminal,
    /// it runs in a new session (`setsid`) and the terminal is its controlling terminal
    /// (`TIOCSCTTY`), so job control, `/dev/tty`, SIGWINCH and SIGHUP work as in a real login.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child, PtyError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let spawn_err = |source| PtyError::Spawn {
            command: program.clone(),
            source,
        };
        let stdio = || self.slave.try_clone().map(Stdio::from);
        cmd.stdin(stdio().map_err(spawn_err)?)
            .stdout(stdio().map_err(spawn_err)?)
            .stderr(stdio().map_err(spawn_err)?);
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // async-signal-safe functions (setsid, ioctl). The standard streams are already the
        // slave when it runs.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().map_err(spawn_err)
    }

    /// Keeps the master side only (the parent must close its copy of the slave once the
    /// child has it, or reads of the master never see the end of the session).
    pub fn into_master(self) -> OwnedFd {
        self.master
    }
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// The window size of the terminal `fd`, if it is one and its size is set.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<TerminalSize> {
    let mut ws = winsize(TerminalSize::DEFAULT);
    // SAFETY: TIOCGWINSZ writes a winsize into the valid pointer we pass.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if rc < 0 {
        return None;
    }
    TerminalSize::new(ws.ws_col, ws.ws_row)
}

/// Sets the window size of the terminal `fd` (on a PTY master: the kernel sends SIGWINCH to
/// the foreground process group of the slave).
pub fn set_window_size(fd: BorrowedFd<'_>, size: TerminalSize) -> Result<(), PtyError> {
    let ws = winsize(size);
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer we pass.
    check("ioctl(TIOCSWINSZ)", unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws)
    })?;
    Ok(())
}

/// The terminal attributes of `fd` (`tcgetattr`).
pub fn attributes(fd: BorrowedFd<'_>) -> Result<libc::termios, PtyError> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for the call.
    check("tcgetattr", unsafe {
        libc::tcgetattr(fd.as_raw_fd(), &mut t)
    })?;
    Ok(t)
}

/// The foreground process group of the terminal `fd` (on a PTY master: the slave's), if any.
pub fn foreground_group(fd: BorrowedFd<'_>) -> Option<libc::pid_t> {
    // SAFETY: tcgetpgrp only inspects the descriptor.
    let pg = unsafe { libc::tcgetpgrp(fd.as_raw_fd()) };
    (pg > 0).then_some(pg)
}

/// Waits up to `timeout_ms` for `fd` to be readable (or closed: then a read tells which).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(rc > 0)
}

/// One `read(2)` from `fd` into `buf`, retried on EINTR.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Writes all of `data` to `fd`, retrying on EINTR and short writes.
pub fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: data is valid for data.len() bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n as usize..];
    }
    Ok(())
}
