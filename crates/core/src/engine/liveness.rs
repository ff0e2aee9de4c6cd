//! Is a member's media path still alive? Sans-IO: fed the arrival time of each datagram and
//! asked at each tick, so the rule is tested with made-up instants.
//!
//! Audio packets are no liveness signal: with DTX a silent, healthy client sends none. What
//! every connected WebRTC client does send is ICE consent (STUN binding requests on the
//! selected pair, RFC 7675): Chromium every 2.5 s, str0m every 3 s at most, Firefox about
//! every 5 s; plus RTCP. So any datagram counts as a sign of life, and a member is dead when
//! none came for longer than its own keepalive rhythm allows:
//!
//! - before its session connected (ICE and DTLS), `connect_timeout` (the `media_timeout`
//!   that has always applied): joining takes an offer/answer round and ICE checks;
//! - once connected, `max(floor, interval + grace)`, at most `connect_timeout`, where
//!   `interval` is the longest of the member's last few gaps between binding requests.
//!   A client that checks every 3 s is thus declared dead about 4.5 s after its last
//!   datagram; one that checks every 5 s gets 6.5 s instead of being removed for its rhythm.
//! - once connected but before its first keepalive gap is seen, the slowest rhythm RFC 7675
//!   allows (6 s) plus the grace: a member that goes silent as soon as it connected (muted,
//!   DTX) has not shown its rhythm yet. Firefox, whose checks come 4-6 s apart, was removed
//!   by the 4 s floor in that case (tests/browser/firefox.test.mjs).

use std::time::{Duration, Instant};

/// How many binding-request gaps the interval is taken over.
const GAPS: usize = 4;
/// A gap this long or longer is a lost request or a pause, not the client's rhythm.
const MAX_GAP: Duration = Duration::from_secs(10);
/// RFC 7675's longest consent interval: 1.2 × its 5 s base. The rhythm assumed until the
/// member's own is seen.
const SLOWEST_CONSENT: Duration = Duration::from_secs(6);

/// The timeouts, from the engine's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Before the session connected: nothing for this long removes the member. Also the
    /// ceiling of the connected timeout.
    pub connect_timeout: Duration,
    /// Once connected: the shortest timeout, whatever the keepalive rhythm.
    pub floor: Duration,
    /// Once connected: how much longer than its keepalive interval a member may stay silent.
    pub grace: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(8),
            floor: Duration::from_secs(4),
            grace: Duration::from_millis(1500),
        }
    }
}

/// One member's liveness.
#[derive(Clone, Debug)]
pub struct Liveness {
    last_rx: Instant,
    last_binding: Option<Instant>,
    /// The last few gaps between binding requests, newest last.
    gaps: [Duration; GAPS],
    gap_count: usize,
    connected: bool,
}

impl Liveness {
    pub fn new(now: Instant) -> Self {
        Self {
            last_rx: now,
            last_binding: None,
            gaps: [Duration::ZERO; GAPS],
            gap_count: 0,
            connected: false,
        }
    }

    /// A datagram from the member arrived; `binding_request` when it is a STUN binding
    /// request (ICE consent).
    pub fn received(&mut self, now: Instant, binding_request: bool) {
        self.last_rx = now;
        if !binding_request {
            return;
        }
        if let Some(prev) = self.last_binding {
            let gap = now.saturating_duration_since(prev);
            // Only a connected session's checks have the keepalive rhythm: while connecting
            // clients check many times a second.
            if self.connected && gap < MAX_GAP {
                self.gaps.rotate_left(1);
                self.gaps[GAPS - 1] = gap;
                self.gap_count = (self.gap_count + 1).min(GAPS);
            }
        }
        self.last_binding = Some(now);
    }

    /// The session connected (ICE and DTLS).
    pub fn connected(&mut self) {
        self.connected = true;
    }

    /// The keepalive interval seen since the session connected, if any.
    pub fn interval(&self) -> Option<Duration> {
        self.gaps[GAPS - self.gap_count..].iter().max().copied()
    }

    /// How long the member may stay silent now.
    pub fn timeout(&self, config: &LivenessConfig) -> Duration {
        if !self.connected {
            return config.connect_timeout;
        }
        let rhythm = self.interval().unwrap_or(SLOWEST_CONSENT) + config.grace;
        rhythm.max(config.floor).min(config.connect_timeout)
    }

    /// Nothing arrived for longer than the member's timeout.
    pub fn expired(&self, now: Instant, config: &LivenessConfig) -> bool {
        now.saturating_duration_since(self.last_rx) > self.timeout(config)
    }
}

/// Whether a datagram is a STUN binding request (its first two bytes and the magic cookie).
pub fn is_binding_request(bytes: &[u8]) -> bool {
    bytes.len() >= 20 && bytes[0..2] == [0x00, 0x01] && bytes[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A connected member whose client sends a binding request every `every` until `until`.
    fn keepalives(start: Instant, every: Duration, until: Duration) -> Liveness {
        let mut l = Liveness::new(start);
        // Connecting: checks many times a second, which must not set the rhythm.
        for i in 0..10 {
            l.received(start + ms(50 * i), true);
        }
        l.connected();
        let mut t = ms(500);
        while t <= until {
            l.received(start + t, true);
            t += every;
        }
        l
    }

    #[test]
    fn not_connected_gets_the_connect_timeout() {
        let c = LivenessConfig::default();
        let t0 = Instant::now();
        let l = Liveness::new(t0);
        assert!(!l.expired(t0 + ms(7_900), &c));
        assert!(l.expired(t0 + ms(8_100), &c));
    }

    #[test]
    fn a_three_second_keepalive_dies_within_five_seconds_of_its_last_datagram() {
        let c = LivenessConfig::default();
        let t0 = Instant::now();
        let l = keepalives(t0, ms(3_000), ms(15_000));
        assert_eq!(l.interval(), Some(ms(3_000)));
        let last = t0 + ms(500 + 3_000 * 4);
        assert!(!l.expired(last + ms(4_400), &c));
        assert!(l.expired(last + ms(4_600), &c));
    }

    #[test]
    fn a_silent_member_whose_ice_is_alive_is_never_expired() {
        // DTX: no audio at all for 15 s, only consent checks (Chromium's 2.5 s), checked
        // every 100 ms as the engine's tick does.
        let c = LivenessConfig::default();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        l.connected();
        let mut next_check = ms(0);
        let mut t = ms(0);
        while t <= ms(15_000) {
            if t >= next_check {
                l.received(t0 + t, true);
                next_check += ms(2_500);
            }
            assert!(!l.expired(t0 + t, &c), "expired at {t:?}");
            t += ms(100);
        }
    }

    #[test]
    fn a_slow_rhythm_gets_more_time_up_to_the_connect_timeout() {
        let c = LivenessConfig::default();
        let t0 = Instant::now();
        let l = keepalives(t0, ms(5_000), ms(20_000));
        assert_eq!(l.timeout(&c), ms(6_500));
        let l = keepalives(t0, ms(9_000), ms(40_000));
        assert_eq!(l.timeout(&c), c.connect_timeout);
    }

    #[test]
    fn a_member_silent_from_its_connection_gets_the_slowest_consent_rhythm() {
        // Firefox muted at once: its ICE checks while connecting, then nothing until its
        // first consent check 4-6 s later. Before that gap is seen, 6 s + grace applies.
        let c = LivenessConfig::default();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        for i in 0..5 {
            l.received(t0 + ms(20 * i), true);
        }
        l.connected();
        assert_eq!(l.interval(), None);
        assert_eq!(l.timeout(&c), ms(7_500));
        assert!(!l.expired(t0 + ms(80 + 5_900), &c));
        // Its first consent check, 5.9 s after the last: now its rhythm is known.
        l.received(t0 + ms(80 + 5_900), true);
        assert_eq!(l.timeout(&c), ms(7_400));
        assert!(!l.expired(t0 + ms(80 + 5_900 + 7_300), &c));
        assert!(l.expired(t0 + ms(80 + 5_900 + 7_500), &c));
    }

    #[test]
    fn a_fast_rhythm_keeps_the_floor() {
        let c = LivenessConfig::default();
        let t0 = Instant::now();
        let l = keepalives(t0, ms(1_000), ms(10_000));
        assert_eq!(l.timeout(&c), c.floor);
    }

    #[test]
    fn other_datagrams_keep_the_member_alive_but_set_no_rhythm() {
        let c = LivenessConfig::default();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        l.connected();
        for i in 0..100 {
            l.received(t0 + ms(20 * i), false);
        }
        // No rhythm seen: the slowest consent interval plus the grace.
        assert_eq!(l.interval(), None);
        assert_eq!(l.timeout(&c), ms(7_500));
        assert!(!l.expired(t0 + ms(1_980 + 7_400), &c));
        assert!(l.expired(t0 + ms(1_980 + 7_600), &c));
    }

    #[test]
    fn binding_requests_are_recognised_by_their_header() {
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        req.extend([0u8; 12]);
        assert!(is_binding_request(&req));
        let mut response = req.clone();
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert!(!is_binding_request(&response));
        assert!(!is_binding_request(&req[..19]));
        // An RTP packet (version 2) never looks like one.
        assert!(!is_binding_request(&[0x80; 40]));
    }
}
