//! A generator media thread: it owns a share of the members and nothing else. One epoll
//! wait covers all their sockets and the signaling wake-up, a timer set to the earliest
//! deadline runs the send schedule and the sessions' timers, and no WebSocket is ever touched here (the issue's
//! measurement: polling a WebSocket next to the UDP socket cost 30 % of a generator).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::payload;
use crate::peer::{FromSignal, Peer, PeerStats, Recorder};
use crate::sys::{Epoll, EventFd, TimerFd};

/// Bounds of the sleep between two timer rounds: the earliest deadline of all peers, but
/// never a busy loop and never so long that the stop or the window goes unnoticed.
const MIN_SLEEP: Duration = Duration::from_micros(50);
const MAX_SLEEP: Duration = Duration::from_millis(10);

/// Run-wide control shared by all threads: the measurement window and the end, in ns since
/// the epoch (0: not set yet), and how many members are connected.
#[derive(Debug, Default)]
pub struct Control {
    pub window_start: AtomicU64,
    pub window_end: AtomicU64,
    pub stop: AtomicU64,
    pub connected: AtomicUsize,
}

impl Control {
    fn window(&self) -> (u64, u64) {
        let get = |a: &AtomicU64| match a.load(Ordering::Relaxed) {
            0 => u64::MAX,
            v => v,
        };
        (get(&self.window_start), get(&self.window_end))
    }

    /// Ends the run now (on an error elsewhere).
    pub fn stop_now(&self) {
        self.stop
            .store(payload::ns(Instant::now()).max(1), Ordering::Relaxed);
    }
}

/// What a media thread hands back when the run ends.
pub struct ThreadResult {
    pub peers: Vec<(crate::peer::Member, PeerStats)>,
    pub recorder: Recorder,
}

/// Signaling news for a thread's members (by index) and the eventfd that announces it.
pub type Signals = (Receiver<(usize, FromSignal)>, Arc<EventFd>);

/// A media thread's inputs.
pub struct MediaThread {
    pub peers: Vec<Peer>,
    pub signals: Option<Signals>,
    pub control: Arc<Control>,
}

const WAKE_TOKEN: u64 = u64::MAX;
const TIMER_TOKEN: u64 = u64::MAX - 1;

impl MediaThread {
    pub fn run(mut self) -> std::io::Result<ThreadResult> {
        let mut epoll = Epoll::new()?;
        for (i, p) in self.peers.iter().enumerate() {
            epoll.add(p.socket(), i as u64)?;
        }
        if let Some((_, wake)) = &self.signals {
            epoll.add(wake.as_ref(), WAKE_TOKEN)?;
        }
        let timer = TimerFd::new()?;
        epoll.add(&timer, TIMER_TOKEN)?;
        let mut rec = Recorder {
            window: (u64::MAX, u64::MAX),
            ..Recorder::default()
        };
        let mut buf = vec![0u8; 2048];
        let mut ready = Vec::new();
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                let stop = self.control.stop.load(Ordering::Relaxed);
                if stop != 0 && payload::ns(now) >= stop {
                    break;
                }
                rec.window = self.control.window();
                // Wake next for the earliest peer that needs it, within [MIN_SLEEP, MAX_SLEEP].
                let mut earliest = now + MAX_SLEEP;
                for p in &mut self.peers {
                    if p.next_due().is_some_and(|d| d <= now) {
                        let was = p.is_connected();
                        p.on_tick(now, &mut rec);
                        if !was && p.is_connected() {
                            self.control.connected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(d) = p.next_due() {
                        earliest = earliest.min(d);
                    }
                }
                next_tick = earliest.max(now + MIN_SLEEP);
                timer.arm(next_tick.saturating_duration_since(Instant::now()))?;
            }
            // The timer wakes us; epoll's own timeout is only a backstop.
            epoll.wait(Duration::from_millis(50), &mut ready)?;
            for &token in &ready {
                if token == TIMER_TOKEN {
                    timer.clear();
                    continue;
                }
                if token == WAKE_TOKEN {
                    self.on_signals(&mut rec);
                    continue;
                }
                if let Some(p) = self.peers.get_mut(token as usize) {
                    if p.read_one(&mut buf, &mut rec) {
                        self.control.connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(ThreadResult {
            peers: self
                .peers
                .into_iter()
                .map(|p| (p.member, p.stats))
                .collect(),
            recorder: rec,
        })
    }

    fn on_signals(&mut self, rec: &mut Recorder) {
        let Some((rx, wake)) = &self.signals else {
            return;
        };
        wake.clear();
        while let Ok((i, msg)) = rx.try_recv() {
            if let Some(p) = self.peers.get_mut(i) {
                let was = p.is_connected();
                p.on_signal(Instant::now(), msg, rec);
                if !was && p.is_connected() {
                    self.control.connected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
