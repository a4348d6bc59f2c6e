//! Where native code reads time: a [`Clock`] gives the wall time (event stamps, file dates,
//! ages) and the monotonic time (timers, deadlines). [`SystemClock`] reads the system's;
//! [`ManualClock`] stands still until a test moves it. Components take a [`SharedClock`] in
//! their constructor or options and default to the system clock.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapelog_core::proto::Timestamp;
use tokio::time::Instant;

/// A source of wall and monotonic time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The wall time (may jump).
    fn now_wall(&self) -> SystemTime;
    /// The monotonic time (never goes back; tokio's, so paused test time moves it too).
    fn now_mono(&self) -> Instant;

    /// The wall time in milliseconds since the Unix epoch (0 before it).
    fn unix_ms(&self) -> u64 {
        self.now_wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// The wall time as an event timestamp, to the nanosecond.
    fn timestamp(&self) -> Timestamp {
        let nanos = self
            .now_wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Timestamp::from_unix_nanos(nanos)
    }
}

/// A clock shared by the parts of one component.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn now_mono(&self) -> Instant {
        Instant::now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told: [`advance`](ManualClock::advance) moves both times,
/// [`set_wall`](ManualClock::set_wall) the wall time alone.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(SystemTime, Instant)>,
}

impl ManualClock {
    /// A clock at the wall time `wall` (its monotonic time starts at the present instant).
    pub fn new(wall: SystemTime) -> ManualClock {
        ManualClock {
            state: Mutex::new((wall, Instant::now())),
        }
    }

    /// A clock at `ms` milliseconds after the Unix epoch, shared.
    pub fn at_unix_ms(ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_millis(ms)))
    }

    /// Moves both times forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 += d;
        s.1 += d;
    }

    /// Sets the wall time (a jump, either way); the monotonic time stays.
    pub fn set_wall(&self, wall: SystemTime) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = wall;
    }
}

impl Clock for ManualClock {
    fn now_wall(&self) -> SystemTime {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    fn now_mono(&self) -> Instant {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at_unix_ms(1_700_000_000_123);
        let (w, m) = (c.unix_ms(), c.now_mono());
        assert_eq!(w, 1_700_000_000_123);
        assert_eq!(c.unix_ms(), w);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.unix_ms(), w + 1500);
        assert_eq!(c.now_mono() - m, Duration::from_millis(1500));
        c.set_wall(UNIX_EPOCH);
        assert_eq!(
            (c.unix_ms(), c.now_mono() - m),
            (0, Duration::from_millis(1500))
        );
        assert_eq!(c.timestamp(), Timestamp::from_unix_nanos(0));
    }

    #[test]
    fn system_clock_is_now() {
        let before = SystemTime::now();
        let c = system();
        assert!(c.now_wall() >= before);
        assert!(c.unix_ms() >= 1_700_000_000_000);
    }
}
