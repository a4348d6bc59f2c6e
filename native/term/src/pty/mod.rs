//! Terminals: pseudo-terminals ([`Pty`]: `openpty`, a child on the PTY with it as its
//! controlling terminal), window sizes, raw mode with a guaranteed restore ([`RawMode`]), and
//! the keys a player reads ([`keys`]).
//!
//! Everything here is a thin, checked wrapper over `rustix`'s safe calls (the one call it
//! has no safe form of is in `crate::sys`); the terminal rules (sizes, timing) are in
//! `tapelog_core::export`.

pub mod keys;
mod raw;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::Pid;
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcgetattr, tcgetpgrp, tcgetwinsize, tcsetwinsize};

use tapelog_core::export::TerminalSize;
use thiserror::Error;

pub use rustix::termios::{LocalModes, SpecialCodeIndex, Termios};

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

fn setting(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> PtyError {
    move |e| PtyError::Setting {
        what,
        source: e.into(),
    }
}

fn winsize(size: TerminalSize) -> Winsize {
    Winsize {
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
        // What glibc's openpty does: a master from /dev/ptmx, its slave granted, unlocked and
        // opened by name, then the window size set on the slave. Neither side becomes this
        // process's controlling terminal.
        let open = |e: rustix::io::Errno| PtyError::Open(e.into());
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).map_err(open)?;
        grantpt(&master).map_err(open)?;
        unlockpt(&master).map_err(open)?;
        let name = ptsname(&master, Vec::new()).map_err(open)?;
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(open)?;
        tcsetwinsize(&slave, winsize(size)).map_err(open)?;
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
        crate::sys::session_leader_on_stdin(cmd);
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
    rustix::termios::isatty(fd)
}

/// The window size of the terminal `fd`, if it is one and its size is set.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<TerminalSize> {
    let ws = tcgetwinsize(fd).ok()?;
    TerminalSize::new(ws.ws_col, ws.ws_row)
}

/// Sets the window size of the terminal `fd` (on a PTY master: the kernel sends SIGWINCH to
/// the foreground process group of the slave).
pub fn set_window_size(fd: BorrowedFd<'_>, size: TerminalSize) -> Result<(), PtyError> {
    tcsetwinsize(fd, winsize(size)).map_err(setting("ioctl(TIOCSWINSZ)"))
}

/// The terminal attributes of `fd` (`tcgetattr`).
pub fn attributes(fd: BorrowedFd<'_>) -> Result<Termios, PtyError> {
    tcgetattr(fd).map_err(setting("tcgetattr"))
}

/// The foreground process group of the terminal `fd` (on a PTY master: the slave's), if any.
pub fn foreground_group(fd: BorrowedFd<'_>) -> Option<Pid> {
    tcgetpgrp(fd).ok()
}

/// Waits up to `timeout_ms` for `fd` to be readable (or closed: then a read tells which).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ms = i64::from(timeout_ms.max(0));
    let timeout = Timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    };
    match poll(&mut fds, (timeout_ms >= 0).then_some(&timeout)) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One `read(2)` from `fd` into `buf`, retried on EINTR.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `data` to `fd`, retrying on EINTR and short writes.
pub fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
