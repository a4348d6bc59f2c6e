//! The only `unsafe` code of this crate: the three things `rustix` has no safe form of.
//!
//! - [`session_leader_on_stdin`]: std's `CommandExt::pre_exec` is itself `unsafe` (its
//!   closure runs between `fork` and `exec`); the closure only makes raw system calls through
//!   rustix (`setsid`, `TIOCSCTTY`), which are async-signal-safe.
//! - [`flag_on_quit_signals`]: installing a signal handler (rustix has none outside its
//!   `runtime` feature, which is unsafe too); the handler only stores to an atomic.
//! - [`user_name`]: the password database (`getpwuid_r`, which goes through NSS); rustix has
//!   no user lookup.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// Makes the child of `cmd` a session leader (`setsid`) whose controlling terminal is its
/// standard input (`TIOCSCTTY`), which must already be the terminal when it runs.
pub(crate) fn session_leader_on_stdin(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec. It allocates nothing,
    // takes no lock and only makes two system calls, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            Ok(())
        });
    }
}

/// The flag that [`flag_on_quit_signals`]'s handler sets (one per process, like handlers).
static QUIT_FLAG: std::sync::OnceLock<&'static AtomicBool> = std::sync::OnceLock::new();

extern "C" fn note_quit(_: libc::c_int) {
    // OnceLock::get and an atomic store are lock-free loads and stores: async-signal-safe.
    if let Some(flag) = QUIT_FLAG.get() {
        flag.store(true, Ordering::Release);
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP only set `flag` (the first flag passed stays the
/// one set).
pub(crate) fn flag_on_quit_signals(flag: &'static AtomicBool) {
    let _ = QUIT_FLAG.set(flag);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only reads an initialised OnceLock and stores to an atomic.
        unsafe {
            libc::signal(
                sig,
                note_quit as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// The password database's name for `uid`, if it has one.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    // SAFETY: passwd is plain data; getpwuid_r fills it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the name points into `buf`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name is a NUL-terminated string inside `buf`, which
    // lives until the end of this function.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str()
        .ok()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}
