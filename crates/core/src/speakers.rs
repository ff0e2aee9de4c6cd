//! Who is speaking, from the RFC 6464 audio level each sender puts on its RTP packets.
//!
//! A level alone flickers: speech has gaps between syllables and a cough is one loud packet.
//! So a member starts speaking only after `start_after` of continuous loud packets (gaps
//! shorter than `gap` do not break a run), and stops only after `hold` without one.

use std::time::{Duration, Instant};

/// Tuning of speaker detection. The defaults follow what conferencing services use:
/// ~60 ms to start, ~600 ms to stop.
#[derive(Clone, Copy, Debug)]
pub struct SpeakerConfig {
    /// A packet is loud when its level (dBov, 0 loudest, -127 silence) is at or above this.
    pub loud_dbov: i8,
    /// Continuous loudness needed before a member counts as speaking.
    pub start_after: Duration,
    /// A pause shorter than this does not break a loud run.
    pub gap: Duration,
    /// Quiet time after which a speaker stops speaking.
    pub hold: Duration,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            loud_dbov: -50,
            start_after: Duration::from_millis(60),
            gap: Duration::from_millis(120),
            hold: Duration::from_millis(600),
        }
    }
}

/// Speaking state of one member. Feed it packets with `on_level` and the clock with
/// `on_tick`; both return true when `is_speaking` changed.
#[derive(Clone, Debug, Default)]
pub struct SpeakerState {
    run_start: Option<Instant>,
    last_loud: Option<Instant>,
    speaking: bool,
}

impl SpeakerState {
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// One packet's audio level arrived at `now` (None: the sender sends no level; such a
    /// member is never a speaker).
    pub fn on_level(&mut self, cfg: &SpeakerConfig, now: Instant, level: Option<i8>) -> bool {
        let Some(level) = level else {
            return false;
        };
        if level < cfg.loud_dbov {
            return self.on_tick(cfg, now);
        }
        let continues = self
            .last_loud
            .is_some_and(|t| now.saturating_duration_since(t) <= cfg.gap);
        if !continues {
            self.run_start = Some(now);
        }
        self.last_loud = Some(now);
        let run = now.saturating_duration_since(self.run_start.unwrap_or(now));
        if !self.speaking && run >= cfg.start_after {
            self.speaking = true;
            return true;
        }
        false
    }

    /// Time passed; a speaker quiet for `hold` stops speaking.
    pub fn on_tick(&mut self, cfg: &SpeakerConfig, now: Instant) -> bool {
        if self.speaking
            && self
                .last_loud
                .is_none_or(|t| now.saturating_duration_since(t) > cfg.hold)
        {
            self.speaking = false;
            self.run_start = None;
            return true;
        }
        false
    }

    /// Forget everything (the member muted its microphone).
    pub fn reset(&mut self) -> bool {
        let was = self.speaking;
        *self = SpeakerState::default();
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(20);

    fn feed(
        s: &mut SpeakerState,
        cfg: &SpeakerConfig,
        t: &mut Instant,
        n: usize,
        level: i8,
    ) -> usize {
        let mut flips = 0;
        for _ in 0..n {
            *t += P;
            if s.on_level(cfg, *t, Some(level)) {
                flips += 1;
            }
        }
        flips
    }

    #[test]
    fn starts_after_a_loud_run_and_stops_after_hold() {
        let cfg = SpeakerConfig::default();
        let mut t = Instant::now();
        let mut s = SpeakerState::default();
        // 40 ms loud is not enough.
        feed(&mut s, &cfg, &mut t, 2, -20);
        assert!(!s.is_speaking());
        // Keep going: from 60 ms on the member speaks, and flips exactly once.
        assert_eq!(feed(&mut s, &cfg, &mut t, 10, -20), 1);
        assert!(s.is_speaking());
        // Silence packets shorter than hold keep the state.
        feed(&mut s, &cfg, &mut t, 20, -127);
        assert!(s.is_speaking(), "400 ms pause must not stop a speaker");
        // Past hold it stops.
        assert_eq!(feed(&mut s, &cfg, &mut t, 15, -127), 1);
        assert!(!s.is_speaking());
    }

    #[test]
    fn a_single_loud_packet_is_not_speech() {
        let cfg = SpeakerConfig::default();
        let mut t = Instant::now();
        let mut s = SpeakerState::default();
        for _ in 0..20 {
            feed(&mut s, &cfg, &mut t, 1, -10);
            feed(&mut s, &cfg, &mut t, 10, -127);
        }
        assert!(!s.is_speaking());
    }

    #[test]
    fn tick_alone_ends_speech_when_packets_stop() {
        let cfg = SpeakerConfig::default();
        let mut t = Instant::now();
        let mut s = SpeakerState::default();
        feed(&mut s, &cfg, &mut t, 10, -30);
        assert!(s.is_speaking());
        assert!(!s.on_tick(&cfg, t + Duration::from_millis(500)));
        assert!(s.on_tick(&cfg, t + Duration::from_millis(700)));
        assert!(!s.is_speaking());
    }

    #[test]
    fn no_level_extension_never_speaks() {
        let cfg = SpeakerConfig::default();
        let mut s = SpeakerState::default();
        let t = Instant::now();
        for i in 0..100 {
            s.on_level(&cfg, t + P * i, None);
        }
        assert!(!s.is_speaking());
    }
}
