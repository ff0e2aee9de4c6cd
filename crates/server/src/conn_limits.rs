//! How many HTTP/WebSocket connections may be open: in total and per client IP. A permit is
//! taken when a connection is accepted and given back when its socket is dropped (for a
//! WebSocket, when the WebSocket ends, not when the HTTP upgrade finishes).
//!
//! The IP is the TCP peer's. A reverse proxy in front makes every client share its address,
//! so peers listed in `trusted_proxies` count only toward the total; the proxy is where
//! per-client limits belong then (docs/security.md#limits). `X-Forwarded-For` is not read
//! for limits: counting happens before any request has been read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use voipchat_proto::ErrorCode;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_ip` are open from this IP.
    PerIp,
}

impl Refusal {
    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::Total => ErrorCode::TooManyConnections,
            Refusal::PerIp => ErrorCode::TooManyConnectionsFromAddress,
        }
    }

    /// The metric label (the config key that refused it).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The counts, shared by the accept loop and every permit.
#[derive(Clone)]
pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    trusted: Arc<Vec<IpAddr>>,
    counts: Arc<Mutex<Counts>>,
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_ip: usize, trusted: Vec<IpAddr>) -> Self {
        Self {
            max_total,
            max_per_ip,
            trusted: Arc::new(trusted),
            counts: Arc::default(),
        }
    }

    /// A permit for one more connection from `ip` (None: the peer's IP is unknown, counted
    /// in the total only), or why not.
    pub fn acquire(&self, ip: Option<IpAddr>) -> Result<Permit, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        let ip = ip
            .map(|ip| ip.to_canonical())
            .filter(|ip| !self.trusted.contains(ip));
        if let Some(ip) = ip {
            let n = counts.per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        counts.total += 1;
        Ok(Permit {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// One open connection's place in the counts, given back on drop.
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// The client IP of a listener's peer address.
pub trait PeerIp {
    fn peer_ip(&self) -> Option<IpAddr>;
}

impl PeerIp for std::net::SocketAddr {
    fn peer_ip(&self) -> Option<IpAddr> {
        Some(self.ip())
    }
}

impl PeerIp for crate::web::ConnTag {
    fn peer_ip(&self) -> Option<IpAddr> {
        Some(self.peer.ip())
    }
}

/// A connection's signaling rate: `rate` frames a second on average, `burst` at once.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: std::time::Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token for a frame arriving `now`; false when none is left.
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 30, t0);
        assert_eq!((0..100).filter(|_| b.take(t0)).count(), 30);
        // One second later: ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.take(t1)).count(), 10);
        // A steady 10 a second for a minute never runs out.
        let mut t = t1;
        for _ in 0..600 {
            t += Duration::from_millis(100);
            assert!(b.take(t));
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn per_ip_and_total_limits_and_permits_give_back() {
        let limits = ConnLimits::new(3, 2, vec![]);
        let a1 = limits.acquire(ip("10.0.0.1")).unwrap();
        let _a2 = limits.acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(limits.acquire(ip("10.0.0.1")).err(), Some(Refusal::PerIp));
        // The IPv4-mapped form is the same client.
        assert_eq!(
            limits.acquire(ip("::ffff:10.0.0.1")).err(),
            Some(Refusal::PerIp)
        );
        let _b = limits.acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(limits.acquire(ip("10.0.0.3")).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _a3 = limits.acquire(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn a_trusted_proxy_counts_only_toward_the_total() {
        let limits = ConnLimits::new(5, 1, vec!["127.0.0.1".parse().unwrap()]);
        let held: Vec<Permit> = (0..5)
            .map(|_| limits.acquire(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(limits.acquire(ip("127.0.0.1")).err(), Some(Refusal::Total));
        drop(held);
        assert_eq!(limits.open(), 0);
        assert!(limits.counts.lock().unwrap().per_ip.is_empty());
    }
}
