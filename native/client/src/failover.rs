//! Failing over between replicas of `tapelog serve` (servers that share one storage and act
//! as one service): the rules, without I/O. [`Client`](super::Client) applies them.
//!
//! - A call goes to the server that answered last (the first one given, at the start).
//! - How it failed there ([`Failure`]) decides whether it goes on to the next server
//!   ([`moves_on`]): a request that surely was not applied (the connection could not be made,
//!   or the server answered 503, which `tapelog serve` does before handling anything) goes
//!   on, whatever the call; a request that went out and got no answer (the connection closed
//!   or reset, a timeout) goes on only when it is idempotent ([`Replay::Safe`]); an answer
//!   (any other status) or a TLS failure ends the call there.
//! - A server that failed in any way but an answer is passed over: the next call starts at
//!   the one after it ([`Rotation::failed`]); a server that answers is kept
//!   ([`Rotation::answered`]).
//! - The resume of a recording stream starts at the server the stream was open on (its
//!   holder), and a 503 from the holder ends it: a server shutting down closes its streams,
//!   uploading what they hold, before it exits, and resuming the upload elsewhere meanwhile
//!   would race that last part. (The session writer retries within its recovery budget
//!   meanwhile.) This covers the requests that reach the holder while it shuts down; it
//!   does not cover a holder that already refuses new connections while it still flushes
//!   (`tapelog serve` stops accepting before it closes its streams): see docs/api.md,
//!   "Replicas and failover", for that window.
//! - With several servers, a call makes up to [`Failover::rounds`] passes over the list,
//!   pausing [`Failover::backoff`] (doubled each time, at most [`Failover::max_backoff`])
//!   between passes; every attempt is bounded by the client's connect and request timeouts.
//!   With one server there is one attempt, as without failover.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Whether a request may be sent again when the connection it went out on closed before
/// the answer: on a new connection to the same server, or to the next server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Idempotent: a second copy has the effect the first would have had alone.
    Safe,
    /// A second copy could be applied on top of the first: never sent twice.
    Never,
}

/// How a client goes through its servers when it has several (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failover {
    /// Passes over the server list before a call gives up (at least 1). Ignored with one
    /// server: one attempt.
    pub rounds: u32,
    /// The pause before the second pass.
    pub backoff: Duration,
    /// The longest pause between passes.
    pub max_backoff: Duration,
}

impl Default for Failover {
    /// Two passes, 250 ms apart.
    fn default() -> Failover {
        Failover {
            rounds: 2,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Failover {
    /// The passes a call makes over `servers` servers.
    pub(crate) fn rounds_for(&self, servers: usize) -> u32 {
        if servers <= 1 { 1 } else { self.rounds.max(1) }
    }

    /// The pause before pass `round` (0-based; none before the first).
    pub(crate) fn pause_before(&self, round: u32) -> Duration {
        if round == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(round - 1).unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// How a request failed on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection could be made (refused, connect timeout, no route): nothing was sent.
    NotSent,
    /// The server answered 503: it is shutting down and handled nothing.
    Unavailable,
    /// The request went out and no answer came (closed, reset, timed out): it may or may not
    /// have been applied.
    Lost,
    /// An answer, or a failure another server would not cure (TLS, a bad URL).
    Final,
}

/// Whether a call that failed on one server this way goes on to the next.
pub(crate) fn moves_on(failure: Failure, replay: Replay) -> bool {
    match failure {
        Failure::NotSent | Failure::Unavailable => true,
        Failure::Lost => replay == Replay::Safe,
        Failure::Final => false,
    }
}

/// Which server a call starts at: the one that answered last.
#[derive(Debug)]
pub(crate) struct Rotation {
    servers: usize,
    current: AtomicUsize,
}

impl Rotation {
    /// `servers` servers (at least 1), starting at the first.
    pub(crate) fn new(servers: usize) -> Rotation {
        Rotation {
            servers: servers.max(1),
            current: AtomicUsize::new(0),
        }
    }

    /// The server a call starts at.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// The servers in the order a pass tries them: from the current one round the list.
    pub(crate) fn order(&self) -> impl Iterator<Item = usize> + use<> {
        self.order_from(self.current())
    }

    /// The servers from `start` round the list.
    pub(crate) fn order_from(&self, start: usize) -> impl Iterator<Item = usize> + use<> {
        let n = self.servers;
        let start = start % n;
        (0..n).map(move |k| (start + k) % n)
    }

    /// Server `i` answered: calls start there from now on.
    pub(crate) fn answered(&self, i: usize) {
        self.current.store(i % self.servers, Ordering::Relaxed);
    }

    /// Server `i` failed without an answer: if calls start there, they start at the next one
    /// from now on (unless another call moved them meanwhile).
    pub(crate) fn failed(&self, i: usize) {
        let next = (i + 1) % self.servers;
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_moves_on() {
        for replay in [Replay::Safe, Replay::Never] {
            assert!(moves_on(Failure::NotSent, replay));
            assert!(moves_on(Failure::Unavailable, replay));
            assert!(!moves_on(Failure::Final, replay));
        }
        assert!(moves_on(Failure::Lost, Replay::Safe));
        assert!(!moves_on(Failure::Lost, Replay::Never));
    }

    #[test]
    fn sticks_to_the_server_that_answered() {
        let r = Rotation::new(3);
        assert_eq!(r.order().collect::<Vec<_>>(), [0, 1, 2]);
        r.failed(0);
        assert_eq!(r.order().collect::<Vec<_>>(), [1, 2, 0]);
        // A failure of a server calls no longer start at changes nothing.
        r.failed(0);
        assert_eq!(r.current(), 1);
        r.answered(2);
        assert_eq!(r.order().collect::<Vec<_>>(), [2, 0, 1]);
        r.failed(2);
        assert_eq!(r.current(), 0);
        assert_eq!(r.order_from(1).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(r.order_from(4).collect::<Vec<_>>(), [1, 2, 0]);
        let one = Rotation::new(1);
        one.failed(0);
        assert_eq!(one.order().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn passes_and_pauses() {
        let f = Failover {
            rounds: 4,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        assert_eq!(f.rounds_for(1), 1);
        assert_eq!(f.rounds_for(2), 4);
        let pauses: Vec<u128> = (0..5).map(|r| f.pause_before(r).as_millis()).collect();
        assert_eq!(pauses, [0, 100, 200, 300, 300]);
        assert_eq!(f.pause_before(200), Duration::from_millis(300));
        let zero = Failover {
            rounds: 0,
            ..Failover::default()
        };
        assert_eq!(zero.rounds_for(3), 1);
    }
}
