//! The token bucket of upstream's `SearchEventsLimiter` (`ratelimit.NewBucketWithQuantum`):
//! `refill_amount` tokens are added every `refill_time`, up to `burst`; the bucket starts full
//! and each search takes one token. Time comes in as an argument.

use std::time::Duration;

use thiserror::Error;

use crate::proto::Timestamp;

/// A limiter configuration that can't work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimiterError {
    /// `burst` is 0.
    #[error("search limiter burst must be at least 1")]
    Burst,
    /// `refill_amount` is 0.
    #[error("search limiter refill amount must be at least 1")]
    RefillAmount,
    /// `refill_time` is 0.
    #[error("search limiter refill time must be more than 0")]
    RefillTime,
}

/// The limiter's settings (upstream's `SearchEventsLimiterConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// How often tokens are added.
    pub refill_time: Duration,
    /// How many tokens are added each time.
    pub refill_amount: u64,
    /// The bucket's capacity (and its content at the start).
    pub burst: u64,
}

/// A token bucket with quantum refills.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    config: LimiterConfig,
    start_ns: i128,
    tick: i128,
    available: u64,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(config: LimiterConfig, now: Timestamp) -> Result<TokenBucket, LimiterError> {
        if config.burst == 0 {
            return Err(LimiterError::Burst);
        }
        if config.refill_amount == 0 {
            return Err(LimiterError::RefillAmount);
        }
        if config.refill_time.is_zero() {
            return Err(LimiterError::RefillTime);
        }
        Ok(TokenBucket {
            config,
            start_ns: now.unix_nanos(),
            tick: 0,
            available: config.burst,
        })
    }

    fn refill(&mut self, now: Timestamp) {
        let interval = self.config.refill_time.as_nanos() as i128;
        let tick = (now.unix_nanos() - self.start_ns).div_euclid(interval);
        // A clock that went back adds nothing.
        if tick > self.tick {
            let ticks = (tick - self.tick).min(i128::from(u64::MAX)) as u64;
            let added = ticks.saturating_mul(self.config.refill_amount);
            self.available = self.available.saturating_add(added).min(self.config.burst);
            self.tick = tick;
        }
    }

    /// Takes one token if there is one (upstream's `TakeAvailable(1) == 1`).
    pub fn try_take(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        if self.available == 0 {
            return false;
        }
        self.available -= 1;
        true
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: Timestamp) -> u64 {
        self.refill(now);
        self.available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn burst_refusal_refill() {
        let cfg = LimiterConfig {
            refill_time: Duration::from_millis(100),
            refill_amount: 2,
            burst: 3,
        };
        let mut b = TokenBucket::new(cfg, at(0)).unwrap();
        assert!(b.try_take(at(0)));
        assert!(b.try_take(at(10)));
        assert!(b.try_take(at(20)));
        assert!(!b.try_take(at(99)));
        // One refill at 100 ms: two tokens.
        assert!(b.try_take(at(100)));
        assert!(b.try_take(at(150)));
        assert!(!b.try_take(at(199)));
        // Long idle: capped at the burst.
        assert_eq!(b.available(at(10_000)), 3);
        // A clock that goes back adds nothing.
        assert!(b.try_take(at(5)));
        assert_eq!(b.available(at(5)), 2);
    }

    #[test]
    fn bad_config() {
        let ok = LimiterConfig {
            refill_time: Duration::from_secs(1),
            refill_amount: 1,
            burst: 1,
        };
        for (cfg, err) in [
            (LimiterConfig { burst: 0, ..ok }, LimiterError::Burst),
            (
                LimiterConfig {
                    refill_amount: 0,
                    ..ok
                },
                LimiterError::RefillAmount,
            ),
            (
                LimiterConfig {
                    refill_time: Duration::ZERO,
                    ..ok
                },
                LimiterError::RefillTime,
            ),
        ] {
            assert_eq!(TokenBucket::new(cfg, at(0)).unwrap_err(), err);
        }
    }
}
