//! Admission control: the media task's measured load, and the rule that refuses new joins
//! while it is above a threshold, so that rooms already admitted keep their media whole
//! instead of every room losing packets once the core is saturated. Sans-IO: the caller
//! passes the time and the busy spans it measured.

use std::time::{Duration, Instant};

/// The share of wall time the media task spent working (not waiting for input) over the
/// last whole window. Working time that another process took the core from counts as
/// busy: the core is what is short either way.
#[derive(Debug, Default)]
pub struct LoadMeter {
    window_start: Option<Instant>,
    busy_in_window: Duration,
    /// The busy share of the last whole window; None before the first one ends.
    last: Option<f64>,
}

impl LoadMeter {
    /// The window the share is measured over.
    pub const WINDOW: Duration = Duration::from_secs(1);

    /// The task worked for `busy`, ending at `now`.
    pub fn record(&mut self, now: Instant, busy: Duration) {
        let start = *self.window_start.get_or_insert(now);
        self.busy_in_window += busy;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            let share = self.busy_in_window.as_secs_f64() / elapsed.as_secs_f64();
            self.last = Some(share.min(1.0));
            self.window_start = Some(now);
            self.busy_in_window = Duration::ZERO;
        }
    }

    /// The busy share of the last whole window, 0.0 to 1.0.
    pub fn busy_share(&self) -> Option<f64> {
        self.last
    }
}

/// Whether the media task takes a new join, from its load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Admission {
    /// Joins are refused (-13001) while the busy share of the last second is above this.
    pub max_busy_share: f64,
}

impl Admission {
    /// A join is admitted unless the last whole window was busier than the threshold
    /// (before the first window ends nothing is known, and everything is admitted).
    pub fn admits(&self, meter: &LoadMeter) -> bool {
        meter.busy_share().is_none_or(|b| b <= self.max_busy_share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_is_known_before_a_whole_window() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        m.record(t0, ms(0));
        m.record(t0 + ms(500), ms(490));
        assert_eq!(m.busy_share(), None);
        let strict = Admission {
            max_busy_share: 0.0,
        };
        assert!(strict.admits(&m));
    }

    #[test]
    fn the_share_of_the_last_window_decides() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        let a = Admission {
            max_busy_share: 0.8,
        };
        m.record(t0, ms(0));
        // 900 ms of work in the first second: refused.
        for i in 1..=10 {
            m.record(t0 + ms(100 * i), ms(90));
        }
        assert!((m.busy_share().unwrap() - 0.9).abs() < 1e-9);
        assert!(!a.admits(&m));
        // Half of the next second: admitted again.
        for i in 11..=20 {
            m.record(t0 + ms(100 * i), ms(50));
        }
        assert!((m.busy_share().unwrap() - 0.5).abs() < 1e-9);
        assert!(a.admits(&m));
    }

    #[test]
    fn a_long_idle_stretch_counts_as_idle() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        m.record(t0, ms(0));
        m.record(t0 + ms(4000), ms(400));
        assert!((m.busy_share().unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn the_share_never_exceeds_one() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        m.record(t0, ms(0));
        m.record(t0 + ms(1000), ms(1500));
        assert_eq!(m.busy_share(), Some(1.0));
    }
}
