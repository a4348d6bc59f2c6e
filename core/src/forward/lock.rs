//! Auto-lock (`tapelog forward --lock-*`, teleport-event-handler's rule): failed `user.login`
//! events are counted per login in a token bucket of `attempts` tokens that is refilled
//! whole every `period` (windows counted from the bucket's first use, as the Go handler's
//! `go-limiter` memory store does); the failed login that finds the bucket empty asks for a
//! lock of that user and login, named `event-handler-auto-lock-<user>-<login>`, with the
//! message upstream writes and an expiry `lock_for` after now (none: never).
//!
//! Time comes in as an argument (milliseconds since the Unix epoch); the driver sends the
//! lock (`UpsertLock` on a Teleport cluster).

use std::collections::HashMap;

/// The message of an auto-lock, as upstream writes it.
pub const LOCK_MESSAGE: &str = "User is locked due to too many failed login attempts";

/// Buckets kept at most; past this, buckets whose window has ended are dropped first.
const MAX_BUCKETS: usize = 100_000;

/// The settings of auto-lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockConfig {
    /// Failed logins allowed per login and period (`--lock-failed-attempts-count`, 3).
    pub attempts: u32,
    /// The period (`--lock-period`, 1 minute), in milliseconds.
    pub period_ms: u64,
    /// How long a lock lasts (`--lock-for`), in milliseconds; 0: for ever (upstream's default).
    pub lock_for_ms: u64,
}

/// A lock to upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// The lock's name: `event-handler-auto-lock-<user>-<login>`.
    pub name: String,
    /// The Teleport user.
    pub user: String,
    /// The login (OS user) that failed.
    pub login: String,
    /// The message shown to the locked user.
    pub message: &'static str,
    /// When the lock ends (ms since the Unix epoch); `None`: never.
    pub expires_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Start of the bucket's first window.
    origin_ms: u64,
    /// The window the tokens below belong to.
    window: u64,
    /// Tokens left in it.
    left: u32,
}

/// The per-login buckets.
#[derive(Debug, Clone)]
pub struct AutoLock {
    config: LockConfig,
    buckets: HashMap<String, Bucket>,
}

/// Whether an event's fields describe a failed login: `(user, login)` when they do.
pub fn failed_login(
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Option<(String, String)> {
    if fields.get("event").and_then(|v| v.as_str()) != Some("user.login") {
        return None;
    }
    if fields
        .get("success")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
    {
        return None;
    }
    let text = |k: &str| {
        fields
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    Some((text("user"), text("login")))
}

impl AutoLock {
    /// No failed logins counted yet.
    pub fn new(config: LockConfig) -> AutoLock {
        AutoLock {
            config,
            buckets: HashMap::new(),
        }
    }

    /// A failed login of `user` as `login` at `now_ms`: a lock to upsert when the login's
    /// bucket is empty.
    pub fn failed_login(&mut self, user: &str, login: &str, now_ms: u64) -> Option<LockRequest> {
        let period = self.config.period_ms.max(1);
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(login) {
            self.buckets
                .retain(|_, b| (now_ms.saturating_sub(b.origin_ms)) / period == b.window);
        }
        let attempts = self.config.attempts;
        let b = self.buckets.entry(login.to_string()).or_insert(Bucket {
            origin_ms: now_ms,
            window: 0,
            left: attempts,
        });
        let window = now_ms.saturating_sub(b.origin_ms) / period;
        if window != b.window {
            b.window = window;
            b.left = attempts;
        }
        if b.left > 0 {
            b.left -= 1;
            return None;
        }
        Some(LockRequest {
            name: format!("event-handler-auto-lock-{user}-{login}"),
            user: user.to_string(),
            login: login.to_string(),
            message: LOCK_MESSAGE,
            expires_ms: (self.config.lock_for_ms > 0)
                .then(|| now_ms.saturating_add(self.config.lock_for_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(lock_for_ms: u64) -> LockConfig {
        LockConfig {
            attempts: 3,
            period_ms: 60_000,
            lock_for_ms,
        }
    }

    #[test]
    fn the_failure_after_the_allowed_ones_in_a_period_locks() {
        let mut a = AutoLock::new(config(0));
        for t in [0, 10, 20] {
            assert_eq!(a.failed_login("alice", "root", t), None);
        }
        let lock = a.failed_login("alice", "root", 30).unwrap();
        assert_eq!(lock.name, "event-handler-auto-lock-alice-root");
        assert_eq!((lock.user.as_str(), lock.login.as_str()), ("alice", "root"));
        assert_eq!(lock.message, LOCK_MESSAGE);
        assert_eq!(lock.expires_ms, None, "--lock-for 0: for ever");
        // Another login has its own bucket.
        assert_eq!(a.failed_login("alice", "admin", 40), None);
    }

    #[test]
    fn a_new_period_refills_the_bucket_and_lock_for_sets_the_expiry() {
        let mut a = AutoLock::new(config(3_600_000));
        for t in [0, 1, 2] {
            assert_eq!(a.failed_login("bob", "ubuntu", t), None);
        }
        // The next window starts 60 s after the bucket's first use.
        for t in [60_000, 60_001, 60_002] {
            assert_eq!(a.failed_login("bob", "ubuntu", t), None, "{t}");
        }
        let lock = a.failed_login("bob", "ubuntu", 60_003).unwrap();
        assert_eq!(lock.expires_ms, Some(60_003 + 3_600_000));
    }

    #[test]
    fn failed_logins_are_read_from_the_fields() {
        let parse = |v: serde_json::Value| failed_login(v.as_object().unwrap());
        assert_eq!(
            parse(
                serde_json::json!({"event": "user.login", "user": "u", "login": "l", "success": false})
            ),
            Some(("u".into(), "l".into()))
        );
        assert_eq!(
            parse(serde_json::json!({"event": "user.login", "user": "u", "success": true})),
            None
        );
        assert_eq!(
            parse(serde_json::json!({"event": "session.start", "user": "u", "success": false})),
            None
        );
    }
}
