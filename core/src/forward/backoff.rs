//! Decorrelated-jitter backoff ("exponential backoff and jitter", the decorrelated variant):
//! each wait is drawn uniformly from `[base, 3 × previous wait]`, capped. Randomness comes in
//! as an argument, so the sequence is deterministic under test.

use std::time::Duration;

/// The exporter's retry waits: base 1 s, cap 10 s by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    previous: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(10))
    }
}

impl Backoff {
    /// Waits between `base` and `cap` (a cap below the base is raised to it).
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            previous: base,
        }
    }

    /// The next wait; `unit` is a uniform random number in `[0, 1)` (values outside are
    /// clamped).
    pub fn next_wait(&mut self, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let low = self.base.as_secs_f64();
        let high = (self.previous.as_secs_f64() * 3.0).max(low);
        let wait = Duration::from_secs_f64(low + (high - low) * unit).min(self.cap);
        self.previous = wait;
        wait
    }

    /// Back to the base after a success.
    pub fn reset(&mut self) {
        self.previous = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_between_base_and_cap_and_grows() {
        let mut b = Backoff::default();
        assert_eq!(b.next_wait(0.0), Duration::from_secs(1));
        // The top of the range triples until the cap.
        assert_eq!(b.next_wait(1.0), Duration::from_secs(3));
        assert_eq!(b.next_wait(1.0), Duration::from_secs(9));
        assert_eq!(b.next_wait(1.0), Duration::from_secs(10));
        assert_eq!(b.next_wait(1.0), Duration::from_secs(10));
        for i in 0..100 {
            let w = b.next_wait(f64::from(i) / 100.0);
            assert!(w >= Duration::from_secs(1) && w <= Duration::from_secs(10));
        }
        b.reset();
        assert_eq!(b.next_wait(0.5), Duration::from_secs(2));
        assert_eq!(b.next_wait(f64::NAN), Duration::from_secs(1));
    }
}
