//! ICE over TCP (RFC 6544) for the media task: the listener on the UDP media port's number,
//! RFC 4571 framing (each packet preceded by its length, 2 bytes big-endian) and the table of
//! open connections, one per TCP peer address.
//!
//! The media task owns a [`TcpMedia`]. It waits on [`TcpMedia::next`] beside its UDP socket
//! and gives each frame to the engine as a packet from the connection's peer address; it
//! hands the engine's TCP `Transmit`s to [`TcpMedia::send`]; and it calls
//! [`TcpMedia::sweep`] after every wake-up, with the engine's word on which peer addresses
//! reach a member. Accepting, reading and writing happen in small tasks per connection, so
//! nothing here awaits a peer: a slow reader fills its own bounded queue, and its packets are
//! dropped (media is real-time), never the media loop held up.
//!
//! What a peer can make the server hold is bounded ([`Limits`]): connections, frame size,
//! queued packets per connection, and time: a connection that has not carried an accepted
//! ICE check for a member within `unverified_for` of opening (or of its member leaving) is
//! closed, as is one that does not take a write within `write_stall`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::metrics::{DirectionLabel, Metrics};

/// Bounds on what TCP peers can make the server hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// The largest frame taken; a longer length prefix closes the connection. The same bound
    /// as the UDP socket's receive buffer: no WebRTC packet is larger.
    pub max_frame: usize,
    /// A connection that carried no accepted ICE check for a member this long after it
    /// opened, or this long after its member left, is closed.
    pub unverified_for: Duration,
    /// Packets waiting to be written, per connection; beyond it new packets are dropped.
    pub write_queue: usize,
    /// A write the peer does not take within this long closes the connection.
    pub write_stall: Duration,
}

impl Limits {
    /// The documented bounds, with `max_connections` from the configuration.
    pub fn with_max_connections(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            max_frame: crate::media::MAX_PACKET,
            unverified_for: Duration::from_secs(5),
            // About a second of a video room's downlink (≈ 130 packets/s); 128 frames of at
            // most ~1.2 kB each is what one slow reader can make the server hold.
            write_queue: 128,
            write_stall: Duration::from_secs(5),
        }
    }
}

/// How often `sweep` looks at every connection.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// After a failed accept (say, out of file descriptors) the listener rests this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most this many bytes of queued frames go out in one write.
const WRITE_BATCH: usize = 16 * 1024;
/// Frames read by all connections and not yet taken by the media task: a reader waits
/// when it is full (TCP's own flow control then slows the peer).
const EVENT_QUEUE: usize = 1024;

/// Why a connection ended: the `reason` label of `voipchat_media_tcp_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// The peer closed it (EOF), also in the middle of a frame.
    PeerClosed,
    /// A read or write failed (reset).
    Error,
    /// A length prefix above `max_frame`.
    OversizeFrame,
    /// No accepted ICE check for a member within `unverified_for`.
    Unverified,
    /// A write was not taken within `write_stall`.
    WriteStalled,
    /// Accepted while `max_connections` were open.
    OverLimit,
}

impl Close {
    fn reason(self) -> &'static str {
        match self {
            Close::PeerClosed => "peer_closed",
            Close::Error => "error",
            Close::OversizeFrame => "oversize_frame",
            Close::Unverified => "unverified",
            Close::WriteStalled => "write_stalled",
            Close::OverLimit => "over_limit",
        }
    }
}

/// What a connection's tasks tell the media task. `id` tells a connection from a later one
/// of the same peer address.
enum ConnEvent {
    Frame {
        id: u64,
        peer: SocketAddr,
        packet: Vec<u8>,
    },
    Ended {
        id: u64,
        peer: SocketAddr,
        why: Close,
    },
}

/// One open connection. Dropping it ends both of its tasks, which closes the socket.
struct Conn {
    id: u64,
    /// Framed packets for the writer task.
    queue: mpsc::Sender<Vec<u8>>,
    /// Since when it has not reached a member (from its accept, or from its member
    /// leaving); None while it reaches one.
    unverified_since: Option<Instant>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// The counters bumped per frame, taken out of their families once (see `metrics::Hot`).
struct FrameCounters {
    frames_in: Counter,
    frames_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl FrameCounters {
    fn of(metrics: &Metrics) -> FrameCounters {
        // One statement per lookup, as in `metrics::Hot`: the guard `get_or_create` returns
        // must be gone before the next lookup creates its entry.
        let take = |family: &Family<DirectionLabel, Counter>, direction| {
            family.get_or_create(&DirectionLabel { direction }).clone()
        };
        let frames_in = take(&metrics.tcp_frames, "in");
        let frames_out = take(&metrics.tcp_frames, "out");
        let bytes_in = take(&metrics.tcp_bytes, "in");
        let bytes_out = take(&metrics.tcp_bytes, "out");
        FrameCounters {
            frames_in,
            frames_out,
            bytes_in,
            bytes_out,
        }
    }
}

/// What woke `next`.
enum Wake {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Event(ConnEvent),
}

/// The ICE-TCP side of the media task. Without a listener (`media_tcp = false`) `next`
/// never returns and `send` has nowhere to send.
pub struct TcpMedia {
    listener: Option<TcpListener>,
    limits: Limits,
    conns: HashMap<SocketAddr, Conn>,
    next_id: u64,
    /// Given to every connection's tasks.
    events_tx: mpsc::Sender<ConnEvent>,
    events: mpsc::Receiver<ConnEvent>,
    /// When the listener may accept again after a failed accept.
    accept_after: Option<Instant>,
    next_sweep: Instant,
    metrics: Arc<Metrics>,
    counters: FrameCounters,
}

impl TcpMedia {
    pub fn new(listener: Option<TcpListener>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let counters = FrameCounters::of(&metrics);
        TcpMedia {
            listener,
            limits,
            conns: HashMap::new(),
            next_id: 1,
            events_tx,
            events,
            accept_after: None,
            next_sweep: Instant::now(),
            metrics,
            counters,
        }
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The next packet from a TCP peer: (its address, the packet). Accepts connections and
    /// closes ended ones on the way. Cancel-safe: it may be one branch of a `select!`.
    pub async fn next(&mut self) -> (SocketAddr, Vec<u8>) {
        loop {
            let (listener, accept_after) = (self.listener.as_ref(), self.accept_after);
            let accept = async move {
                let Some(listener) = listener else {
                    return std::future::pending().await;
                };
                if let Some(t) = accept_after {
                    tokio::time::sleep_until(t.into()).await;
                }
                listener.accept().await
            };
            let events = &mut self.events;
            let wake = tokio::select! {
                accepted = accept => Wake::Accepted(accepted),
                // Never None: `self` holds a sender.
                Some(ev) = events.recv() => Wake::Event(ev),
            };
            match wake {
                Wake::Accepted(accepted) => self.on_accept(accepted),
                Wake::Event(ConnEvent::Frame { id, peer, packet }) => {
                    if self.conns.get(&peer).is_some_and(|c| c.id == id) {
                        self.counters.frames_in.inc();
                        self.counters.bytes_in.inc_by(packet.len() as u64);
                        return (peer, packet);
                    }
                    // A frame read just before its connection was closed here.
                }
                Wake::Event(ConnEvent::Ended { id, peer, why }) => {
                    if self.conns.get(&peer).is_some_and(|c| c.id == id) {
                        self.close(peer, why);
                    }
                }
            }
        }
    }

    /// Queues `packet` for the connection of `destination`. Never waits: a full queue drops
    /// the packet (counted as `tcp_queue_full`), a connection that is gone counts as a send
    /// error.
    pub fn send(&mut self, destination: SocketAddr, packet: &[u8]) {
        let Some(conn) = self.conns.get(&destination) else {
            debug!(%destination, "tcp send: no connection");
            self.metrics.send_error();
            return;
        };
        let Ok(len) = u16::try_from(packet.len()) else {
            // str0m's packets fit a UDP datagram, far below 64 kB.
            self.metrics.send_error();
            return;
        };
        let mut framed = Vec::with_capacity(2 + packet.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(packet);
        match conn.queue.try_send(framed) {
            Ok(()) => {
                self.counters.frames_out.inc();
                self.counters.bytes_out.inc_by(packet.len() as u64);
            }
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.tcp_queue_full(),
            // The writer ended; its `Ended` event is on the way.
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.send_error(),
        }
    }

    /// Closes the connections that have not reached a member for `unverified_for`.
    /// `reaches` says whether a peer address reaches a member now (the engine knows it from
    /// an accepted ICE check, and the member is still there). Cheap to call often: it looks
    /// at the table every `SWEEP_EVERY`.
    pub fn sweep(&mut self, now: Instant, reaches: impl Fn(SocketAddr) -> bool) {
        if now < self.next_sweep || self.conns.is_empty() {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let limit = self.limits.unverified_for;
        let mut stale = Vec::new();
        for (peer, conn) in &mut self.conns {
            if reaches(*peer) {
                conn.unverified_since = None;
                continue;
            }
            let since = *conn.unverified_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= limit {
                stale.push(*peer);
            }
        }
        for peer in stale {
            self.close(peer, Close::Unverified);
        }
    }

    fn on_accept(&mut self, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
        let (stream, peer) = match accepted {
            Ok(a) => {
                self.accept_after = None;
                a
            }
            Err(e) => {
                // Out of descriptors and the like: rest, rather than spin on the error.
                warn!("ice-tcp accept: {e}");
                self.accept_after = Some(Instant::now() + ACCEPT_BACKOFF);
                return;
            }
        };
        if self.conns.len() >= self.limits.max_connections {
            debug!(%peer, "ice-tcp connection refused: {} open", self.conns.len());
            self.metrics.tcp_closed(Close::OverLimit.reason());
            return; // dropping the stream closes it
        }
        // Each packet is sent as it comes: Nagle's delay would hold audio back.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "ice-tcp set_nodelay: {e}");
        }
        let id = self.next_id;
        self.next_id += 1;
        let (rd, wr) = stream.into_split();
        let (queue, queued) = mpsc::channel(self.limits.write_queue);
        let reader = tokio::spawn(read_frames(
            id,
            peer,
            rd,
            self.limits.max_frame,
            self.events_tx.clone(),
        ));
        let writer = tokio::spawn(write_frames(
            id,
            peer,
            wr,
            queued,
            self.limits.write_stall,
            self.events_tx.clone(),
        ));
        let conn = Conn {
            id,
            queue,
            unverified_since: Some(Instant::now()),
            reader,
            writer,
        };
        debug!(%peer, "ice-tcp connection accepted");
        // The same peer address again means the old connection is gone (its end not yet seen).
        if self.conns.insert(peer, conn).is_some() {
            self.metrics.tcp_closed(Close::PeerClosed.reason());
        }
        self.metrics.tcp_connections.set(self.conns.len() as i64);
    }

    fn close(&mut self, peer: SocketAddr, why: Close) {
        if self.conns.remove(&peer).is_some() {
            debug!(%peer, reason = why.reason(), "ice-tcp connection closed");
            self.metrics.tcp_closed(why.reason());
            self.metrics.tcp_connections.set(self.conns.len() as i64);
        }
    }
}

/// Reads RFC 4571 frames until the peer closes, a read fails or a frame is too long.
async fn read_frames(
    id: u64,
    peer: SocketAddr,
    rd: OwnedReadHalf,
    max_frame: usize,
    events: mpsc::Sender<ConnEvent>,
) {
    let mut rd = BufReader::with_capacity(2 * max_frame.max(1024), rd);
    let ended = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Close::PeerClosed,
        _ => Close::Error,
    };
    let why = loop {
        let mut len = [0u8; 2];
        if let Err(e) = rd.read_exact(&mut len).await {
            break ended(e);
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len > max_frame {
            break Close::OversizeFrame;
        }
        if len == 0 {
            continue; // an empty frame carries nothing
        }
        let mut packet = vec![0u8; len];
        if let Err(e) = rd.read_exact(&mut packet).await {
            break ended(e);
        }
        if events
            .send(ConnEvent::Frame { id, peer, packet })
            .await
            .is_err()
        {
            return; // the media task is gone
        }
    };
    let _ = events.send(ConnEvent::Ended { id, peer, why }).await;
}

/// Writes queued frames, several per write when they wait, until the queue closes (the
/// connection was dropped) or the peer does not take a write within `stall`.
async fn write_frames(
    id: u64,
    peer: SocketAddr,
    mut wr: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    stall: Duration,
    events: mpsc::Sender<ConnEvent>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        let why = match tokio::time::timeout(stall, wr.write_all(&batch)).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => Close::Error,
            Err(_) => Close::WriteStalled,
        };
        let _ = events.send(ConnEvent::Ended { id, peer, why }).await;
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `TcpMedia` on a real listener, and a client connected to it (accepted).
    async fn accepted(limits: Limits) -> (TcpMedia, TcpStream, Arc<Metrics>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let mut tcp = TcpMedia::new(Some(listener), limits, metrics.clone());
        let client = TcpStream::connect(addr).await.unwrap();
        // `next` accepts on the way to a frame; none comes.
        let _ = tokio::time::timeout(Duration::from_millis(300), tcp.next()).await;
        assert_eq!(tcp.connection_count(), 1);
        (tcp, client, metrics)
    }

    /// Drives `next` until the table is empty or `limit` passes.
    async fn until_closed(tcp: &mut TcpMedia, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while tcp.connection_count() > 0 && Instant::now() < end {
            let _ = tokio::time::timeout(Duration::from_millis(50), tcp.next()).await;
        }
        tcp.connection_count() == 0
    }

    #[tokio::test]
    async fn a_peer_that_never_reads_loses_packets_then_its_connection() {
        let limits = Limits {
            write_stall: Duration::from_millis(500),
            ..Limits::with_max_connections(4)
        };
        let (mut tcp, client, metrics) = accepted(limits).await;
        let peer = client.local_addr().unwrap();
        // 9.6 MB: far more than the socket buffers and the write queue hold.
        let packet = vec![0x80; 1200];
        for i in 0..8000 {
            tcp.send(peer, &packet);
            if i % 64 == 0 {
                tokio::task::yield_now().await; // let the writer fill the socket
            }
        }
        let full = metrics
            .dropped
            .get_or_create(&crate::metrics::CauseLabel {
                cause: "tcp_queue_full",
            })
            .get();
        assert!(full > 0, "a full queue drops packets");
        assert!(
            until_closed(&mut tcp, Duration::from_secs(3)).await,
            "the stalled connection is closed"
        );
        let stalled = metrics
            .tcp_closed
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: "write_stalled",
            })
            .get();
        assert_eq!(stalled, 1);
        // Sending to it now is a counted error, not a panic.
        tcp.send(peer, &packet);
        drop(client);
    }

    #[tokio::test]
    async fn a_connection_that_reaches_a_member_stays_and_one_that_stops_goes() {
        let (mut tcp, client, _metrics) = accepted(Limits::with_max_connections(4)).await;
        let peer = client.local_addr().unwrap();
        let start = Instant::now();
        // Time is an argument: a minute of sweeps while the engine knows the peer.
        for s in 0..240 {
            tcp.sweep(start + Duration::from_millis(250 * s), |_| true);
        }
        assert_eq!(tcp.connection_count(), 1, "verified: kept");
        // Its member left: closed once `unverified_for` has passed since, not before.
        let gone = start + Duration::from_secs(61);
        tcp.sweep(gone, |p| p != peer);
        tcp.sweep(gone + Duration::from_millis(4_800), |p| p != peer);
        assert_eq!(tcp.connection_count(), 1, "not yet");
        tcp.sweep(gone + Duration::from_millis(5_100), |p| p != peer);
        assert_eq!(tcp.connection_count(), 0, "closed");
    }

    #[tokio::test]
    async fn frames_come_out_as_sent_and_a_long_one_closes() {
        let (mut tcp, mut client, _metrics) = accepted(Limits::with_max_connections(4)).await;
        let peer = client.local_addr().unwrap();
        // Two frames in one write, split oddly: framing, not reads, decides.
        let mut bytes = vec![0, 3, 1, 2, 3, 0, 0, 0, 2];
        bytes.extend_from_slice(&[9, 9]);
        client.write_all(&bytes[..4]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(&bytes[4..]).await.unwrap();
        let a = tokio::time::timeout(Duration::from_secs(2), tcp.next()).await;
        assert_eq!(a.unwrap(), (peer, vec![1, 2, 3]));
        // The empty frame in between carries nothing.
        let b = tokio::time::timeout(Duration::from_secs(2), tcp.next()).await;
        assert_eq!(b.unwrap(), (peer, vec![9, 9]));
        // And the server's packets arrive framed.
        tcp.send(peer, &[7, 7, 7]);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0, 3, 7, 7, 7]);
        // One byte over the bound closes the connection.
        let over = (crate::media::MAX_PACKET + 1) as u16;
        client.write_all(&over.to_be_bytes()).await.unwrap();
        assert!(until_closed(&mut tcp, Duration::from_secs(2)).await);
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut rest)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "the client sees the close"
        );
    }
}
