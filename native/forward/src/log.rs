//! The exporter's log lines on standard error (`tapelog forward: LEVEL message`); debug
//! lines only with `--debug`.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns debug lines on or off (process-wide).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether debug lines are printed.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// A debug line.
pub fn debug(msg: &str) {
    if debug_enabled() {
        eprintln!("tapelog forward: DEBUG {msg}");
    }
}

/// An informational line.
pub fn info(msg: &str) {
    eprintln!("tapelog forward: INFO {msg}");
}

/// A warning.
pub fn warn(msg: &str) {
    eprintln!("tapelog forward: WARN {msg}");
}
