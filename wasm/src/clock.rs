//! [`PlayClock`]: the core's player clock (`export::PlayClock`, the one `tapelog play` uses)
//! for the web player. The page passes the time in, as milliseconds from
//! `performance.now()`; nothing here reads a clock.

use std::time::Duration;

use tapelog_core::export::PlayClock as CoreClock;
use wasm_bindgen::prelude::*;

/// `now` in milliseconds (any monotonic origin, `performance.now()` in the page) as the
/// core's `Duration`; negative or not-a-number times count as 0.
fn at(now_ms: f64) -> Duration {
    if now_ms.is_nan() || now_ms <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(now_ms / 1000.0).unwrap_or(Duration::MAX)
}

/// Where playback is, in milliseconds of the timeline played, at a given `now`: speed, pause
/// and seek. Made paused at position 0; every method takes `nowMs`, the caller's clock.
#[wasm_bindgen]
pub struct PlayClock {
    inner: CoreClock,
}

#[wasm_bindgen]
impl PlayClock {
    /// A paused clock at position 0 that plays at `speed` (≤ 0 or not finite: 1).
    #[wasm_bindgen(constructor)]
    pub fn new(speed: f64, now_ms: f64) -> PlayClock {
        let mut inner = CoreClock::new(speed, at(now_ms));
        inner.set_paused(true, at(now_ms));
        PlayClock { inner }
    }

    /// The position at `nowMs`, in timeline milliseconds.
    pub fn position(&self, now_ms: f64) -> f64 {
        self.inner.position(at(now_ms))
    }

    /// The speed.
    #[wasm_bindgen(getter)]
    pub fn speed(&self) -> f64 {
        self.inner.speed()
    }

    /// Changes the speed from `nowMs` on (≤ 0 or not finite: 1).
    #[wasm_bindgen(js_name = setSpeed)]
    pub fn set_speed(&mut self, speed: f64, now_ms: f64) {
        self.inner.set_speed(speed, at(now_ms));
    }

    /// Whether the clock is paused.
    #[wasm_bindgen(getter)]
    pub fn paused(&self) -> bool {
        self.inner.is_paused()
    }

    /// Starts (or keeps) the clock running from its position at `nowMs`.
    pub fn play(&mut self, now_ms: f64) {
        self.inner.set_paused(false, at(now_ms));
    }

    /// Stops (or keeps) the clock at its position at `nowMs`.
    pub fn pause(&mut self, now_ms: f64) {
        self.inner.set_paused(true, at(now_ms));
    }

    /// Moves the position to `toMs` at `nowMs`, paused or not. The position is kept in whole
    /// milliseconds (frame times are whole milliseconds), never below 0.
    pub fn jump(&mut self, to_ms: f64, now_ms: f64) {
        // `as` saturates (and takes NaN to 0).
        self.inner.jump(to_ms.floor() as i64, at(now_ms));
    }
}
