//! ICE over TCP for the client (`MediaTransport::Tcp`): the client's one candidate is an
//! active TCP one, so it opens an RFC 4571-framed connection (each packet preceded by its
//! length, 2 bytes big-endian) to a server address the first time str0m sends there.
//!
//! Each connection is one task that connects, writes the framed packets queued for it and
//! reads frames into a channel the driver waits on; the driver never awaits the network
//! here. A connection that fails or ends is forgotten, and str0m's next packet to that
//! address (its ICE checks are retried) opens a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a connect may take before the attempt is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write the server does not take within this long ends the connection.
const WRITE_STALL: Duration = Duration::from_secs(5);
/// Packets waiting per connection (also while it connects); more are dropped.
const QUEUE: usize = 128;
/// The largest frame read, as the driver's UDP buffer; a longer one ends the connection.
pub(crate) const MAX_FRAME: usize = 2048;
/// At most this many server addresses at once (the server announces one TCP candidate).
const MAX_CONNECTIONS: usize = 4;

/// The client's TCP connections by server address, and the frames read from all of them.
pub(crate) struct TcpLink {
    conns: HashMap<SocketAddr, (mpsc::Sender<Vec<u8>>, JoinHandle<()>)>,
    frames_tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    frames: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
}

impl TcpLink {
    pub(crate) fn new() -> TcpLink {
        let (frames_tx, frames) = mpsc::channel(QUEUE);
        TcpLink {
            conns: HashMap::new(),
            frames_tx,
            frames,
        }
    }

    /// Queues `packet` for `destination`, connecting first if no connection is open.
    pub(crate) fn send(&mut self, destination: SocketAddr, packet: &[u8]) {
        let Ok(len) = u16::try_from(packet.len()) else {
            tracing::debug!(%destination, "tcp: a packet too long for a frame");
            return;
        };
        let mut framed = Vec::with_capacity(2 + packet.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(packet);
        let alive = self
            .conns
            .get(&destination)
            .is_some_and(|(queue, _)| !queue.is_closed());
        if !alive {
            if let Some((_, task)) = self.conns.remove(&destination) {
                task.abort();
            }
            if self.conns.len() >= MAX_CONNECTIONS {
                tracing::debug!(%destination, "tcp: too many connections, packet dropped");
                return;
            }
            let (queue, queued) = mpsc::channel(QUEUE);
            let task = tokio::spawn(connection(destination, queued, self.frames_tx.clone()));
            self.conns.insert(destination, (queue, task));
        }
        if let Some((queue, _)) = self.conns.get(&destination) {
            if queue.try_send(framed).is_err() {
                tracing::debug!(%destination, "tcp: queue full or closed, packet dropped");
            }
        }
    }

    /// The next frame from any connection: (the server address, the packet). Cancel-safe.
    pub(crate) async fn recv(&mut self) -> (SocketAddr, Vec<u8>) {
        match self.frames.recv().await {
            Some(frame) => frame,
            // `self` holds a sender: the channel never closes.
            None => std::future::pending().await,
        }
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        for (_, task) in self.conns.values() {
            task.abort();
        }
    }
}

/// One connection: connect, then write what is queued and read frames until either side
/// fails, the server closes, or the queue's sender is gone.
async fn connection(
    server: SocketAddr,
    mut queue: mpsc::Receiver<Vec<u8>>,
    frames: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::debug!(%server, "tcp connect: {e}"),
        Err(_) => return tracing::debug!(%server, "tcp connect: timed out"),
    };
    // Each packet goes out as it comes: Nagle's delay would hold audio back.
    let _ = stream.set_nodelay(true);
    tracing::debug!(%server, "tcp connected");
    let (rd, mut wr) = stream.into_split();
    let reader = async move {
        let mut rd = BufReader::new(rd);
        loop {
            let mut len = [0u8; 2];
            rd.read_exact(&mut len).await?;
            let len = usize::from(u16::from_be_bytes(len));
            if len > MAX_FRAME {
                return Err(std::io::Error::other(format!("a {len}-byte frame")));
            }
            let mut packet = vec![0u8; len];
            rd.read_exact(&mut packet).await?;
            if !packet.is_empty() && frames.send((server, packet)).await.is_err() {
                return Ok(()); // the driver is gone
            }
        }
    };
    let writer = async move {
        while let Some(frame) = queue.recv().await {
            match tokio::time::timeout(WRITE_STALL, wr.write_all(&frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::other("a write stalled")),
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let ended: std::io::Result<()> = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    tracing::debug!(%server, "tcp connection ended: {ended:?}");
}
