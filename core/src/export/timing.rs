//! Playback timing: idle gaps capped ([`IdleCap`]) and a player's clock with speed, pause and
//! seek ([`PlayClock`]). Time comes in as an argument (`now`, from any monotonic origin the
//! caller chooses); nothing here reads a clock or sleeps.

use std::time::Duration;

/// How far one seek key moves the playback, in milliseconds of the (idle-capped) timeline.
pub const SEEK_STEP_MS: i64 = 5_000;

/// Maps session times to a timeline where no gap between two frames is longer than a limit
/// (asciinema's `--idle-time-limit`). Times must come in order.
#[derive(Debug, Clone)]
pub struct IdleCap {
    max_idle_ms: Option<i64>,
    last_in: Option<i64>,
    out: i64,
}

impl IdleCap {
    /// Gaps longer than `max_idle_ms` are cut to it; `None` keeps every gap.
    pub fn new(max_idle_ms: Option<i64>) -> IdleCap {
        IdleCap {
            max_idle_ms: max_idle_ms.map(|m| m.max(0)),
            last_in: None,
            out: 0,
        }
    }

    /// The capped time of a frame at session time `time_ms`. The first frame keeps at most
    /// the limit too (a session that waits before its first output).
    pub fn map(&mut self, time_ms: i64) -> i64 {
        let gap = (time_ms - self.last_in.unwrap_or(0)).max(0);
        let gap = match self.max_idle_ms {
            Some(m) => gap.min(m),
            None => gap,
        };
        self.last_in = Some(time_ms.max(self.last_in.unwrap_or(0)));
        self.out = self.out.saturating_add(gap);
        self.out
    }
}

/// A speed a clock can run at: finite and positive, else 1.
fn valid_speed(speed: f64) -> f64 {
    if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    }
}

/// A player's clock: where playback is (in milliseconds of the timeline it plays) at a given
/// `now`, at a speed, paused or not. Seeking sets the position.
#[derive(Debug, Clone)]
pub struct PlayClock {
    speed: f64,
    /// Position at `anchor`.
    position_ms: f64,
    anchor: Duration,
    paused: bool,
}

impl PlayClock {
    /// A clock at position 0 at `now`, playing at `speed` (values ≤ 0 or not finite mean 1).
    pub fn new(speed: f64, now: Duration) -> PlayClock {
        PlayClock {
            speed: valid_speed(speed),
            position_ms: 0.0,
            anchor: now,
            paused: false,
        }
    }

    /// The speed.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Changes the speed from `now` on (the position up to `now` keeps the old speed); values
    /// ≤ 0 or not finite mean 1.
    pub fn set_speed(&mut self, speed: f64, now: Duration) {
        self.position_ms = self.position(now);
        self.anchor = now;
        self.speed = valid_speed(speed);
    }

    /// Whether playback is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The position at `now`, in timeline milliseconds.
    pub fn position(&self, now: Duration) -> f64 {
        if self.paused {
            return self.position_ms;
        }
        let real_ms = now.saturating_sub(self.anchor).as_secs_f64() * 1000.0;
        self.position_ms + real_ms * self.speed
    }

    /// How long to wait from `now` until timeline time `at_ms` comes: zero when it is due,
    /// `None` while paused (wait for a key instead).
    pub fn wait_for(&self, at_ms: i64, now: Duration) -> Option<Duration> {
        if self.paused {
            return None;
        }
        let ahead_ms = at_ms as f64 - self.position(now);
        if ahead_ms <= 0.0 {
            return Some(Duration::ZERO);
        }
        Some(Duration::from_secs_f64(ahead_ms / self.speed / 1000.0))
    }

    /// Pauses or resumes; returns whether it is now paused.
    pub fn toggle_pause(&mut self, now: Duration) -> bool {
        self.set_paused(!self.paused, now);
        self.paused
    }

    /// Pauses (`true`) or plays (`false`) from `now` on; the position up to `now` is kept.
    pub fn set_paused(&mut self, paused: bool, now: Duration) {
        self.position_ms = self.position(now);
        self.anchor = now;
        self.paused = paused;
    }

    /// Moves playback to `to_ms` (at least 0) at `now`, paused or not.
    pub fn jump(&mut self, to_ms: i64, now: Duration) {
        self.position_ms = to_ms.max(0) as f64;
        self.anchor = now;
    }

    /// Where a seek by `steps` of [`SEEK_STEP_MS`] (negative: back) lands from `now`'s
    /// position, in whole milliseconds, never below 0.
    pub fn seek_target(&self, steps: i64, now: Duration) -> i64 {
        let here = self.position(now).floor() as i64;
        here.saturating_add(steps.saturating_mul(SEEK_STEP_MS))
            .max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn idle_cap_cuts_long_gaps_only() {
        let mut c = IdleCap::new(Some(500));
        let got: Vec<i64> = [0, 100, 10_100, 10_200, 60_000]
            .iter()
            .map(|&t| c.map(t))
            .collect();
        assert_eq!(got, vec![0, 100, 600, 700, 1200]);
        let mut none = IdleCap::new(None);
        assert_eq!(none.map(3000), 3000);
        assert_eq!(none.map(9000), 9000);
        // A late first frame is capped too.
        assert_eq!(IdleCap::new(Some(200)).map(5000), 200);
    }

    #[test]
    fn clock_speed_pause_and_seek() {
        let mut c = PlayClock::new(2.0, ms(1000));
        assert_eq!(c.position(ms(1500)), 1000.0);
        // 3 s of timeline at speed 2 from position 1000: 1 s of real time.
        assert_eq!(c.wait_for(3000, ms(1500)), Some(ms(1000)));
        assert_eq!(c.wait_for(500, ms(1500)), Some(Duration::ZERO));
        assert!(c.toggle_pause(ms(2000)));
        assert_eq!(c.position(ms(9000)), 2000.0);
        assert_eq!(c.wait_for(3000, ms(9000)), None);
        assert!(!c.toggle_pause(ms(9000)));
        assert_eq!(c.position(ms(9500)), 3000.0);
        assert_eq!(c.seek_target(1, ms(9500)), 3000 + SEEK_STEP_MS);
        assert_eq!(c.seek_target(-1, ms(9500)), 0);
        c.jump(20_000, ms(9500));
        assert_eq!(c.position(ms(10_000)), 21_000.0);
        // A new speed counts from the moment it is set.
        c.set_speed(0.5, ms(10_000));
        assert_eq!(c.position(ms(12_000)), 22_000.0);
        c.toggle_pause(ms(12_000));
        c.set_speed(4.0, ms(13_000));
        assert_eq!(c.position(ms(14_000)), 22_000.0);
        c.toggle_pause(ms(14_000));
        assert_eq!(c.position(ms(14_500)), 24_000.0);
        c.set_speed(f64::INFINITY, ms(14_500));
        assert_eq!(c.speed(), 1.0);
        assert_eq!(PlayClock::new(f64::NAN, ms(0)).speed(), 1.0);
        assert_eq!(PlayClock::new(-3.0, ms(0)).speed(), 1.0);
    }

    #[test]
    fn set_paused_is_idempotent() {
        let mut c = PlayClock::new(1.0, ms(0));
        c.set_paused(false, ms(500));
        assert_eq!(c.position(ms(1000)), 1000.0);
        c.set_paused(true, ms(1000));
        c.set_paused(true, ms(3000));
        assert!(c.is_paused());
        assert_eq!(c.position(ms(5000)), 1000.0);
        c.set_paused(false, ms(5000));
        assert_eq!(c.position(ms(5500)), 1500.0);
    }
}
