//! Admission control: the media task's measured load, and the rule that refuses new joins
//! while it is too high, so that rooms already admitted keep their media whole instead of
//! every room losing packets once the core is saturated. Sans-IO: the caller passes the
//! time, the busy spans it measured and its count of forwarded copies.
//!
//! The measure lags: a join admitted now is seen in the busy share only once its member is
//! connected and talking, a second or more later. Joins arriving faster than that (a burst
//! of 40 rooms filling at once) would all be admitted on a stale share and overload the core
//! before the first refusal. So each admitted join adds its expected load at once: the
//! copies per second it will add (its room's size times a member's packet rate, both ways)
//! times the busy time one copy costs, measured. That expectation stands until the windows
//! measured after the join include it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use voipchat_proto::RoomType;

/// Packets per second one member sends: Opus in 20 ms frames, and for a video room a
/// camera's share on top (about 150 packets/s for three simulcast layers at 30 fps). Only
/// sizes a join's load until it is measured.
fn packets_per_member_sec(room_type: RoomType) -> f64 {
    match room_type {
        RoomType::Voice => 50.0,
        RoomType::Video => 200.0,
    }
}

/// The busy time a forwarded copy is taken to cost before one was measured (the first
/// second after a start, when a burst of rejoins may come): about what the bench measured
/// per copy at 5-20 rooms on a 2-vCPU machine (8.6-11.7 µs of the whole process,
/// docs/benchmark.md), which the media task's share of it does not exceed.
const DEFAULT_COST_PER_COPY: Duration = Duration::from_micros(12);

/// A window with fewer forwarded copies than this does not update the cost per copy: its
/// busy time is mostly not forwarding (handshakes, timers).
const MIN_COPIES_TO_MEASURE: u64 = 1_000;

/// The share of wall time the media task spent working (not waiting for input) over the
/// last whole window, and the load of the joins admitted since. Working time that another
/// process took the core from counts as busy: the core is what is short either way.
#[derive(Debug, Default)]
pub struct LoadMeter {
    window_start: Option<Instant>,
    busy_in_window: Duration,
    copies_at_window_start: u64,
    /// The busy share of the last whole window; None before the first one ends.
    last: Option<f64>,
    /// Busy time per forwarded copy in the last window that forwarded enough to tell.
    cost_per_copy: Option<Duration>,
    /// Joins admitted lately: when, and the copies per second each is expected to add.
    pending: VecDeque<(Instant, f64)>,
}

impl LoadMeter {
    /// The window the share is measured over.
    pub const WINDOW: Duration = Duration::from_secs(1);
    /// How long an admitted join's expected load counts on top of the measured share: the
    /// time to connect and start talking (well under a second on a working link), then a
    /// whole window that measured it.
    pub const PENDING: Duration = Duration::from_secs(2);

    /// The task worked for `busy`, ending at `now`, and has forwarded `copies` in all.
    pub fn record(&mut self, now: Instant, busy: Duration, copies: u64) {
        let start = *self.window_start.get_or_insert(now);
        self.busy_in_window += busy;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            let share = self.busy_in_window.as_secs_f64() / elapsed.as_secs_f64();
            self.last = Some(share.min(1.0));
            let forwarded = copies.saturating_sub(self.copies_at_window_start);
            if forwarded >= MIN_COPIES_TO_MEASURE {
                self.cost_per_copy =
                    Some(self.busy_in_window / forwarded.min(u64::from(u32::MAX)) as u32);
            }
            self.window_start = Some(now);
            self.busy_in_window = Duration::ZERO;
            self.copies_at_window_start = copies;
        }
        while self
            .pending
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= Self::PENDING)
        {
            self.pending.pop_front();
        }
    }

    /// The busy share of the last whole window, 0.0 to 1.0.
    pub fn busy_share(&self) -> Option<f64> {
        self.last
    }

    /// What one forwarded copy costs, measured or (before any measure) assumed.
    pub fn cost_per_copy(&self) -> Duration {
        self.cost_per_copy.unwrap_or(DEFAULT_COST_PER_COPY)
    }

    /// The share expected once the joins admitted lately are measured too.
    pub fn projected_share(&self) -> f64 {
        let pending: f64 = self.pending.iter().map(|(_, c)| c).sum();
        self.last.unwrap_or(0.0) + pending * self.cost_per_copy().as_secs_f64()
    }

    /// A join was admitted at `now`; it is expected to add `copies_per_sec`.
    pub fn admitted(&mut self, now: Instant, copies_per_sec: f64) {
        self.pending.push_back((now, copies_per_sec));
    }
}

/// The copies per second a member joining a room that holds `others` adds: it receives
/// each of theirs and each of them receives its own.
pub fn join_copies_per_sec(room_type: RoomType, others: usize) -> f64 {
    2.0 * others as f64 * packets_per_member_sec(room_type)
}

/// Whether the media task takes a new join, from its load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Admission {
    /// Joins are refused (-13001) while the busy share of the last second, plus what the
    /// joins admitted since and this one are expected to add, is above this.
    pub max_busy_share: f64,
}

impl Admission {
    /// A join expected to add `copies_per_sec` is admitted unless the projected share with
    /// it is above the threshold. Before the first window ends nothing is measured; the
    /// joins' expected load still counts.
    pub fn admits(&self, meter: &LoadMeter, copies_per_sec: f64) -> bool {
        if self.max_busy_share >= 1.0 {
            return true;
        }
        let with_join =
            meter.projected_share() + copies_per_sec * meter.cost_per_copy().as_secs_f64();
        // A join into an empty room adds no copies: it is refused only when the core is
        // already past the threshold, not for a projection it does not change.
        with_join <= self.max_busy_share
            || (copies_per_sec == 0.0 && meter.projected_share() <= self.max_busy_share)
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
        m.record(t0, ms(0), 0);
        m.record(t0 + ms(500), ms(490), 0);
        assert_eq!(m.busy_share(), None);
        let a = Admission {
            max_busy_share: 0.8,
        };
        assert!(a.admits(&m, 0.0));
    }

    #[test]
    fn the_share_of_the_last_window_decides() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        let a = Admission {
            max_busy_share: 0.8,
        };
        m.record(t0, ms(0), 0);
        // 900 ms of work in the first second: refused.
        for i in 1..=10 {
            m.record(t0 + ms(100 * i), ms(90), 0);
        }
        assert!((m.busy_share().unwrap() - 0.9).abs() < 1e-9);
        assert!(!a.admits(&m, 0.0));
        // Half of the next second: admitted again.
        for i in 11..=20 {
            m.record(t0 + ms(100 * i), ms(50), 0);
        }
        assert!((m.busy_share().unwrap() - 0.5).abs() < 1e-9);
        assert!(a.admits(&m, 0.0));
    }

    #[test]
    fn a_threshold_of_one_admits_everything() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        m.record(t0, ms(0), 0);
        m.record(t0 + ms(1000), ms(1000), 0);
        let a = Admission {
            max_busy_share: 1.0,
        };
        assert!(a.admits(&m, 1e9));
    }

    #[test]
    fn a_long_idle_stretch_counts_as_idle() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        m.record(t0, ms(0), 0);
        m.record(t0 + ms(4000), ms(400), 0);
        assert!((m.busy_share().unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn the_share_never_exceeds_one() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        m.record(t0, ms(0), 0);
        m.record(t0 + ms(1000), ms(1500), 0);
        assert_eq!(m.busy_share(), Some(1.0));
    }

    #[test]
    fn the_cost_of_a_copy_is_measured_from_a_window_that_forwarded_enough() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        assert_eq!(m.cost_per_copy(), DEFAULT_COST_PER_COPY);
        m.record(t0, ms(0), 0);
        // 100 copies in a second: too few to tell, the assumption stays.
        m.record(t0 + ms(1000), ms(300), 100);
        assert_eq!(m.cost_per_copy(), DEFAULT_COST_PER_COPY);
        // 20,000 copies in 200 ms of work: 10 µs each.
        m.record(t0 + ms(2000), ms(200), 20_100);
        assert_eq!(m.cost_per_copy(), Duration::from_micros(10));
    }

    /// The burst the bench's overload run makes: the measured share is low, but the joins
    /// admitted in the same second would, once talking, take the core past the threshold.
    #[test]
    fn joins_admitted_since_the_last_window_count_before_they_are_measured() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        let a = Admission {
            max_busy_share: 0.8,
        };
        m.record(t0, ms(0), 0);
        // 40 % busy forwarding 40,000 copies a second: 10 µs a copy.
        m.record(t0 + ms(1000), ms(400), 40_000);
        // Each join into a room of 9 adds 900 copies/s, 0.9 % of the core: 44 fit under
        // 0.8, the 45th does not.
        let per_join = join_copies_per_sec(RoomType::Voice, 9);
        assert_eq!(per_join, 900.0);
        let mut admitted = 0;
        for i in 0..100 {
            if !a.admits(&m, per_join) {
                break;
            }
            m.admitted(t0 + ms(1000) + ms(i), per_join);
            admitted += 1;
        }
        assert_eq!(admitted, 44);
        // Once measured windows include them (the expectations lapse), the measure decides:
        // a quiet core admits again.
        m.record(t0 + ms(3100), ms(100), 40_000);
        assert!(m.busy_share().unwrap() < 0.1);
        assert!(a.admits(&m, per_join));
    }

    #[test]
    fn a_first_member_is_refused_only_on_a_core_already_past_the_threshold() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        let a = Admission {
            max_busy_share: 0.8,
        };
        m.record(t0, ms(0), 0);
        // 79 % busy, 10,000 copies: 79 µs a copy, so a join into a room of 9 (900 copies/s)
        // would add 7 % and is refused, while a first member (no copies) is not.
        m.record(t0 + ms(1000), ms(790), 10_000);
        assert!(a.admits(&m, 0.0));
        assert!(!a.admits(&m, join_copies_per_sec(RoomType::Voice, 9)));
        m.record(t0 + ms(2000), ms(850), 20_000);
        assert!(!a.admits(&m, 0.0));
    }
}
