//! One measured run: R rooms × M members against voipchat or the floor. Members join, a
//! warm-up lets every stream settle, then the window opens: CPU and RSS are read at its two
//! edges, and only packets sent inside it count (so each sender's count is what each of
//! its receivers should have got). After the window a short drain lets the last packets land.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::janus::{Half, Janus, JanusMember};
use crate::media::{Control, MediaThread, ThreadResult};
use crate::payload;
use crate::peer::{Member, Peer, PeerStats, Session};
use crate::relay::Relay;
use crate::server::Target;
use crate::signaling::{self, MediaLink, MemberSignal};
use crate::sys::{self, EventFd};
use crate::BenchError;
use voipchat_proto::RoomType;

/// Where the generator's members live against voipchat and the floor.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Time after the window for packets still in flight.
const DRAIN: Duration = Duration::from_millis(500);
/// How long the floor's members may take to register.
const FLOOR_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Voipchat,
    Floor,
    Janus,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Voipchat => "voipchat",
            System::Floor => "floor",
            System::Janus => "janus",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub rooms: usize,
    pub members: usize,
    pub seconds: f64,
    pub warmup: f64,
    pub gen_threads: usize,
    /// voipchat receivers decrypt one packet in this many (1: all).
    pub decrypt_every: u64,
    /// CPU of the system under test (the server, or the relay thread), if pinning.
    pub system_cpu: Option<usize>,
    /// `--overload`: joins refused as at capacity are counted, and the figures are those of
    /// the members admitted.
    pub overload: bool,
    /// `--video`: video rooms, every member with a camera.
    pub video: bool,
}

/// Everything measured in one run; `report` turns it into figures.
pub struct RunOutput {
    pub system: System,
    pub config: RunConfig,
    pub window: Duration,
    pub peers: Vec<(Member, PeerStats)>,
    pub latency_ns: Vec<u32>,
    pub video_latency_ns: Vec<u32>,
    pub send_lag_ns: Vec<u32>,
    /// CPU of the system under test over the window.
    pub system_cpu: Option<Duration>,
    /// CPU of the generator (this process without the relay thread) over the window.
    pub gen_cpu: Duration,
    /// CPU used on the machine by neither the system under test nor the generator.
    pub other_cpu: Duration,
    pub rss_before_kib: Option<u64>,
    pub rss_with_kib: Option<u64>,
    /// Joins that failed; the run then has no window.
    pub join_failures: Vec<String>,
    /// Members still refused as at capacity after their retries (`--overload`); their rooms
    /// ran without them.
    pub refused: Vec<String>,
    /// Every -13001 answer, retried joins included.
    pub refusals: u64,
    /// Members that failed after joining.
    pub late_errors: Vec<String>,
}

/// CPU readings at one instant.
struct Snapshot {
    system: Option<Duration>,
    process: Duration,
    relay: Option<Duration>,
    machine: Duration,
}

fn snapshot(server_pid: Option<u32>, relay_tid: Option<i32>) -> Result<Snapshot, BenchError> {
    let process = sys::cpu_time("/proc/self/stat")
        .map_err(|e| BenchError::new(format!("reading our own CPU time: {e}")))?;
    let relay = match relay_tid {
        Some(t) => Some(
            sys::thread_cpu(t)
                .map_err(|e| BenchError::new(format!("reading the relay's CPU time: {e}")))?,
        ),
        None => None,
    };
    let system = match server_pid {
        Some(pid) => Some(sys::process_cpu(pid).map_err(|e| {
            BenchError::new(format!("reading the server's CPU time (pid {pid}): {e}"))
        })?),
        None => relay,
    };
    let machine =
        sys::machine_busy().map_err(|e| BenchError::new(format!("reading /proc/stat: {e}")))?;
    Ok(Snapshot {
        system,
        process,
        relay,
        machine,
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Threads of one run and how to end them.
struct Threads {
    control: Arc<Control>,
    handles: Vec<JoinHandle<std::io::Result<ThreadResult>>>,
}

impl Threads {
    fn spawn(threads: Vec<MediaThread>, control: Arc<Control>) -> Result<Threads, BenchError> {
        let mut handles = Vec::new();
        for (i, t) in threads.into_iter().enumerate() {
            let h = std::thread::Builder::new()
                .name(format!("gen-media-{i}"))
                .spawn(move || t.run())
                .map_err(|e| BenchError::new(format!("starting a media thread: {e}")))?;
            handles.push(h);
        }
        Ok(Threads { control, handles })
    }

    /// Waits for every thread (they end at `control.stop`); their results merged.
    fn join(mut self) -> Result<ThreadResult, BenchError> {
        let mut all = ThreadResult {
            peers: Vec::new(),
            recorder: Default::default(),
        };
        let mut first_err = None;
        for h in self.handles.drain(..) {
            match h.join() {
                Ok(Ok(r)) => {
                    all.peers.extend(r.peers);
                    all.recorder.latency_ns.extend(r.recorder.latency_ns);
                    all.recorder
                        .video_latency_ns
                        .extend(r.recorder.video_latency_ns);
                    all.recorder.send_lag_ns.extend(r.recorder.send_lag_ns);
                }
                Ok(Err(e)) => first_err = first_err.or(Some(format!("a media thread failed: {e}"))),
                Err(_) => first_err = first_err.or(Some("a media thread panicked".to_string())),
            }
        }
        match first_err {
            Some(e) => Err(BenchError::new(e)),
            None => Ok(all),
        }
    }
}

impl Drop for Threads {
    /// On an error path, the threads still end (and their sockets close).
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            self.control.stop_now();
            for h in self.handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}

/// Opens the window after the warm-up and reads CPU (and RSS) at both edges.
fn measure(
    cfg: &RunConfig,
    control: &Control,
    server_pid: Option<u32>,
    relay_tid: Option<i32>,
) -> Result<(Duration, Snapshot, Snapshot, Option<u64>), BenchError> {
    let start = Instant::now() + Duration::from_secs_f64(cfg.warmup);
    let end = start + Duration::from_secs_f64(cfg.seconds);
    control
        .window_start
        .store(payload::ns(start), Ordering::Relaxed);
    control
        .window_end
        .store(payload::ns(end), Ordering::Relaxed);
    control
        .stop
        .store(payload::ns(end + DRAIN), Ordering::Relaxed);
    sleep_until(start);
    let t0 = Instant::now();
    let s0 = snapshot(server_pid, relay_tid)?;
    sleep_until(end);
    let t1 = Instant::now();
    let s1 = snapshot(server_pid, relay_tid)?;
    let rss = server_pid.and_then(|p| sys::rss_kib(p).ok());
    Ok((t1 - t0, s0, s1, rss))
}

fn cpu_delta(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    Some(b?.saturating_sub(a?))
}

/// One DTLS certificate for all sessions: generating one per session costs milliseconds.
fn certificate() -> Result<str0m::config::DtlsCert, BenchError> {
    let provider = str0m::crypto::from_feature_flags();
    provider.clone().install_process_default();
    provider
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| BenchError::new("str0m's crypto provider made no DTLS certificate"))
}

/// What the sessions of `member` are made of in this run.
fn session<'a>(
    ip: Ipv4Addr,
    member: Member,
    members_per_room: u32,
    cert: &'a str0m::config::DtlsCert,
    cfg: &RunConfig,
) -> Session<'a> {
    Session {
        ip,
        member,
        members_per_room,
        cert,
        decrypt_every: cfg.decrypt_every,
    }
}

/// The generator's media threads (their peers still to add) and the links signaling
/// reaches them by.
fn media_threads(
    threads: usize,
    control: &Arc<Control>,
) -> Result<(Vec<MediaLink>, Vec<MediaThread>), BenchError> {
    let mut links = Vec::new();
    let mut media = Vec::new();
    for _ in 0..threads.max(1) {
        let (tx, rx) = mpsc::channel();
        let wake = Arc::new(EventFd::new().map_err(|e| BenchError::new(format!("eventfd: {e}")))?);
        links.push(MediaLink {
            tx,
            wake: wake.clone(),
        });
        media.push(MediaThread {
            peers: Vec::new(),
            signals: Some((rx, wake)),
            control: control.clone(),
        });
    }
    Ok((links, media))
}

/// Stops a signaling thread on every way out of a run.
struct StopSignaling(tokio::sync::watch::Sender<bool>, Option<JoinHandle<()>>);

impl Drop for StopSignaling {
    fn drop(&mut self) {
        let _ = self.0.send(true);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// The part of a run after its signaling started, the same for voipchat and Janus: wait
/// for the joins, open the window, collect what the members counted.
struct Signaled {
    system: System,
    control: Arc<Control>,
    threads: Threads,
    joined: mpsc::Receiver<Result<signaling::Joined, Vec<String>>>,
    stop: StopSignaling,
    late: signaling::LateErrors,
    /// The process under test, for CPU and RSS.
    pid: Option<u32>,
    rss_before: Option<u64>,
}

impl Signaled {
    fn finish(self, cfg: &RunConfig) -> Result<RunOutput, BenchError> {
        let Signaled {
            system,
            control,
            threads,
            joined,
            stop,
            late,
            pid,
            rss_before,
        } = self;
        let join_wait = signaling::JOIN_TIMEOUT * cfg.members as u32 + Duration::from_secs(10);
        let joined = joined.recv_timeout(join_wait).unwrap_or_else(|_| {
            Err(vec![format!(
                "the joins did not finish within {} s",
                join_wait.as_secs()
            )])
        });
        let mut out = RunOutput {
            system,
            config: cfg.clone(),
            window: Duration::ZERO,
            peers: Vec::new(),
            latency_ns: Vec::new(),
            video_latency_ns: Vec::new(),
            send_lag_ns: Vec::new(),
            system_cpu: None,
            gen_cpu: Duration::ZERO,
            other_cpu: Duration::ZERO,
            rss_before_kib: rss_before,
            rss_with_kib: None,
            join_failures: Vec::new(),
            refused: Vec::new(),
            refusals: 0,
            late_errors: Vec::new(),
        };
        match joined {
            Ok(j) => {
                out.refused = j.refused;
                out.refusals = j.refusals;
            }
            Err(failures) => {
                control.stop_now();
                out.peers = threads.join()?.peers;
                out.join_failures = failures;
                drop(stop);
                out.late_errors = late.lock().map(|l| l.clone()).unwrap_or_default();
                return Ok(out);
            }
        }
        let (window, s0, s1, rss) = measure(cfg, &control, pid, None)?;
        let result = threads.join()?;
        drop(stop);
        out.window = window;
        out.peers = result.peers;
        out.latency_ns = result.recorder.latency_ns;
        out.video_latency_ns = result.recorder.video_latency_ns;
        out.send_lag_ns = result.recorder.send_lag_ns;
        out.system_cpu = cpu_delta(s0.system, s1.system);
        out.gen_cpu = s1.process.saturating_sub(s0.process);
        out.other_cpu = s1
            .machine
            .saturating_sub(s0.machine)
            .saturating_sub(out.gen_cpu)
            .saturating_sub(out.system_cpu.unwrap_or_default());
        out.rss_with_kib = rss;
        out.late_errors = late.lock().map(|l| l.clone()).unwrap_or_default();
        Ok(out)
    }
}

/// A run against a voipchat server.
pub fn run_voipchat(
    cfg: &RunConfig,
    target: &Target,
    group_prefix: &str,
) -> Result<RunOutput, BenchError> {
    let cert = certificate()?;
    let control = Arc::new(Control::default());
    let threads = cfg.gen_threads.max(1);
    let (links, mut media) = media_threads(threads, &control)?;
    let now = Instant::now();
    let m = cfg.members as u32;
    let mut rooms = Vec::new();
    for r in 0..cfg.rooms as u32 {
        let mut signals = Vec::new();
        for p in 0..m {
            let member = Member::new(r, p, m);
            let t = member.gid as usize % threads;
            let (to_sig, from_media) = tokio::sync::mpsc::unbounded_channel();
            let of = session(LOOPBACK, member, m, &cert, cfg);
            let (peer, offer) = Peer::webrtc(now, &of, to_sig, cfg.video)?;
            signals.push(MemberSignal {
                member,
                offer,
                link: links[t].clone(),
                index: media[t].peers.len(),
                from_media,
            });
            media[t].peers.push(peer);
        }
        rooms.push(signals);
    }
    drop(links);
    let rss_before = target.pid.and_then(|p| sys::rss_kib(p).ok());
    let threads = Threads::spawn(media, control.clone())?;
    let backend = crate::http::Backend {
        http: target.http,
        app_id: target.app_id.clone(),
        app_secret: target.app_secret.clone(),
    };
    let (joined_tx, joined) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let late = signaling::LateErrors::default();
    let sig = signaling::spawn(
        backend,
        group_prefix.to_string(),
        rooms,
        signaling::JoinHow {
            room_type: if cfg.video {
                RoomType::Video
            } else {
                RoomType::Voice
            },
            overload: cfg.overload,
        },
        joined_tx,
        stop_rx,
        late.clone(),
    )
    .map_err(|e| BenchError::new(format!("starting the signaling thread: {e}")))?;
    Signaled {
        system: System::Voipchat,
        control,
        threads,
        joined,
        stop: StopSignaling(stop_tx, Some(sig)),
        late,
        pid: target.pid,
        rss_before,
    }
    .finish(cfg)
}

/// A run against Janus's VideoRoom: each member a publisher session and a subscriber
/// session, on the same generator thread.
pub fn run_janus(cfg: &RunConfig, janus: &Janus) -> Result<RunOutput, BenchError> {
    let cert = certificate()?;
    let control = Arc::new(Control::default());
    let threads = cfg.gen_threads.max(1);
    let (links, mut media) = media_threads(threads, &control)?;
    let now = Instant::now();
    let m = cfg.members as u32;
    let mut rooms = Vec::new();
    for r in 0..cfg.rooms as u32 {
        let mut members = Vec::new();
        for p in 0..m {
            let member = Member::new(r, p, m);
            let t = member.gid as usize % threads;
            let (to_pub, pub_news) = tokio::sync::mpsc::unbounded_channel();
            let of = session(janus.peer_ip, member, m, &cert, cfg);
            let (publisher, offer) = Peer::webrtc(now, &of, to_pub, false)?;
            let publisher = Half {
                link: links[t].clone(),
                index: media[t].peers.len(),
                news: pub_news,
            }
            .with(&mut media[t], publisher.publisher());
            let (to_sub, sub_news) = tokio::sync::mpsc::unbounded_channel();
            let subscriber = Peer::webrtc_subscriber(now, &of, to_sub)?;
            let subscriber = Half {
                link: links[t].clone(),
                index: media[t].peers.len(),
                news: sub_news,
            }
            .with(&mut media[t], subscriber);
            members.push(JanusMember {
                member,
                offer,
                publisher,
                subscriber,
            });
        }
        rooms.push(members);
    }
    drop(links);
    let rss_before = sys::rss_kib(janus.pid).ok();
    let threads = Threads::spawn(media, control.clone())?;
    let (joined_tx, joined) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let late = signaling::LateErrors::default();
    let sig = crate::janus::spawn_signaling(janus.http, rooms, joined_tx, stop_rx, late.clone())
        .map_err(|e| BenchError::new(format!("starting the Janus signaling thread: {e}")))?;
    Signaled {
        system: System::Janus,
        control,
        threads,
        joined,
        stop: StopSignaling(stop_tx, Some(sig)),
        late,
        pid: Some(janus.pid),
        rss_before,
    }
    .finish(cfg)
}

impl Half {
    /// Puts `peer` in `thread` at this half's index.
    fn with(self, thread: &mut MediaThread, peer: Peer) -> Half {
        debug_assert_eq!(self.index, thread.peers.len());
        thread.peers.push(peer);
        self
    }
}

/// A run against the built-in relay, with the same generator.
pub fn run_floor(cfg: &RunConfig) -> Result<RunOutput, BenchError> {
    let relay = Relay::start(cfg.system_cpu, cfg.members)?;
    let control = Arc::new(Control::default());
    let threads = cfg.gen_threads.max(1);
    let mut media: Vec<MediaThread> = (0..threads)
        .map(|_| MediaThread {
            peers: Vec::new(),
            signals: None,
            control: control.clone(),
        })
        .collect();
    let now = Instant::now();
    let m = cfg.members as u32;
    let total = cfg.rooms * cfg.members;
    for r in 0..cfg.rooms as u32 {
        for p in 0..m {
            let member = Member::new(r, p, m);
            let peer = Peer::plain(now, LOOPBACK, (member, m), relay.addr, cfg.video)?;
            media[member.gid as usize % threads].peers.push(peer);
        }
    }
    let threads = Threads::spawn(media, control.clone())?;
    let deadline = Instant::now() + FLOOR_JOIN_TIMEOUT;
    while control.connected.load(Ordering::Relaxed) < total {
        if Instant::now() > deadline {
            return Err(BenchError::new(format!(
                "only {} of {total} members registered with the floor relay within {} s",
                control.connected.load(Ordering::Relaxed),
                FLOOR_JOIN_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let tid = relay.tid.load(Ordering::Relaxed);
    let (window, s0, s1, _) = measure(cfg, &control, None, Some(tid))?;
    let result = threads.join()?;
    relay.stop();
    let relay_cpu = cpu_delta(s0.relay, s1.relay);
    let process = s1.process.saturating_sub(s0.process);
    Ok(RunOutput {
        system: System::Floor,
        config: cfg.clone(),
        window,
        peers: result.peers,
        latency_ns: result.recorder.latency_ns,
        video_latency_ns: result.recorder.video_latency_ns,
        send_lag_ns: result.recorder.send_lag_ns,
        system_cpu: relay_cpu,
        gen_cpu: process.saturating_sub(relay_cpu.unwrap_or_default()),
        other_cpu: s1
            .machine
            .saturating_sub(s0.machine)
            .saturating_sub(process),
        rss_before_kib: None,
        rss_with_kib: None,
        join_failures: Vec::new(),
        refused: Vec::new(),
        refusals: 0,
        late_errors: Vec::new(),
    })
}
