//! Media shards: the media engine split across cores. Each shard is one thread with its own
//! engine, UDP socket (and ICE-over-TCP listener) on its own port, and command queue; a room
//! lives in exactly one shard, chosen by a hash of its key, and its members' candidates name
//! that shard's port, so a packet never crosses shards. Signaling and the HTTP API reach a
//! shard through [`Shards`]: room commands by the room's key, connection commands by the
//! shard of the connection's last join, a few (connect, disconnect, the room list) to all.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use voipchat_core::ConnId;
use voipchat_proto::RoomKey;

use crate::media::Command;

/// The shards' command queues; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shards {
    queues: Arc<[mpsc::UnboundedSender<Command>]>,
}

/// A shard's media task has stopped (the server is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardGone;

impl Shards {
    pub fn new(queues: Vec<mpsc::UnboundedSender<Command>>) -> Shards {
        assert!(!queues.is_empty(), "at least one media shard");
        Shards {
            queues: queues.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The shard a room lives in: a fixed hash of its key (the same in every run of the
    /// same build), so every join and call for one room reaches the same engine.
    pub fn of_room(&self, key: &RoomKey) -> usize {
        shard_of(key, self.queues.len())
    }

    /// Sends to one shard.
    pub fn send(&self, shard: usize, cmd: Command) -> Result<(), ShardGone> {
        self.queues
            .get(shard)
            .ok_or(ShardGone)?
            .send(cmd)
            .map_err(|_| ShardGone)
    }

    /// Sends a room's command to the room's shard.
    pub fn send_room(&self, key: &RoomKey, cmd: Command) -> Result<(), ShardGone> {
        self.send(self.of_room(key), cmd)
    }

    /// Sends a command made by `make` to every shard.
    pub fn send_all(&self, mut make: impl FnMut() -> Command) -> Result<(), ShardGone> {
        let mut result = Ok(());
        for q in self.queues.iter() {
            if q.send(make()).is_err() {
                result = Err(ShardGone);
            }
        }
        result
    }

    /// Whether a shard's engine still knows `conn` (it is in a room there, or joining one).
    pub async fn holds(&self, shard: usize, conn: ConnId) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.send(shard, Command::Holds(conn, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Whether any shard's media task has stopped.
    pub fn is_closed(&self) -> bool {
        self.queues.iter().any(|q| q.is_closed())
    }
}

/// What one shard's thread runs on.
pub struct ShardParts {
    pub shard: usize,
    pub engine: voipchat_core::Engine,
    pub udp: std::net::UdpSocket,
    /// ICE over TCP on the UDP socket's port number, when on.
    pub tcp: Option<std::net::TcpListener>,
    pub tcp_max_connections: usize,
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// The shard's own queue, for answers it posts to itself (the store's quota decisions).
    pub queue: mpsc::UnboundedSender<Command>,
    pub quota: crate::media::QuotaPolicy,
    pub admission: crate::media_load::Admission,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Starts a shard on a thread of its own, with a single-threaded runtime (its sockets are
/// registered there): the shard's work never waits for a signaling task, nor they for it.
/// The returned receiver completes when the shard has stopped.
pub fn spawn(parts: ShardParts) -> std::io::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("media-{}", parts.shard))
        .spawn(move || {
            runtime.block_on(async move {
                let ShardParts {
                    shard,
                    engine,
                    udp,
                    tcp,
                    tcp_max_connections,
                    commands,
                    queue,
                    quota,
                    admission,
                    shutdown,
                    metrics,
                } = parts;
                let udp = match tokio::net::UdpSocket::from_std(udp) {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::error!(shard, "media socket: {e}");
                        return;
                    }
                };
                let tcp = tcp.and_then(|l| match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::error!(shard, "media TCP listener: {e}");
                        None
                    }
                });
                let tcp = crate::media_tcp::TcpMedia::new(
                    tcp,
                    crate::media_tcp::Limits::with_max_connections(tcp_max_connections),
                    metrics.clone(),
                );
                crate::media::run(
                    shard, engine, udp, tcp, commands, queue, quota, admission, shutdown, metrics,
                )
                .await;
            });
            // Dropping the runtime waits for the store calls it started (nonces given back,
            // quota decisions) to finish.
            drop(runtime);
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}

/// The shard of a room among `n`. The standard SipHash with its fixed keys
/// (`DefaultHasher::new`, not a random seed): stable for a build. A groupId chosen to land
/// on a given shard only loads that shard, which admission control bounds like any load.
pub fn shard_of(key: &RoomKey, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h = std::hash::DefaultHasher::new();
    key.app_id.as_str().hash(&mut h);
    key.group_id.as_str().hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// How many shards `media_shards` asks for: 0 is one per core this process may use.
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use voipchat_proto::{AppId, GroupId};

    fn key(g: &str) -> RoomKey {
        RoomKey::new(AppId::new("wx1"), GroupId::new(g))
    }

    #[test]
    fn one_shard_takes_every_room() {
        assert_eq!(shard_of(&key("a"), 1), 0);
        assert_eq!(shard_of(&key("a"), 0), 0);
    }

    #[test]
    fn a_room_always_lands_on_the_same_shard_and_rooms_spread() {
        let mut per_shard = [0usize; 4];
        for i in 0..4000 {
            let k = key(&format!("room-{i}"));
            let s = shard_of(&k, 4);
            assert_eq!(s, shard_of(&k, 4));
            per_shard[s] += 1;
        }
        // Each of 4 shards gets close to a quarter (1000 ± 15 %).
        for n in per_shard {
            assert!((850..=1150).contains(&n), "{per_shard:?}");
        }
    }

    #[test]
    fn the_app_is_part_of_the_key() {
        // Over 64 groups, the same groupId of two apps lands on different shards of 8 for
        // some of them: the shard follows the room, not the groupId alone.
        let differ = (0..64)
            .filter(|i| {
                let g = GroupId::new(format!("g{i}"));
                shard_of(&RoomKey::new(AppId::new("wx1"), g.clone()), 8)
                    != shard_of(&RoomKey::new(AppId::new("wx2"), g), 8)
            })
            .count();
        assert!(differ > 0);
    }

    #[test]
    fn zero_means_one_per_core() {
        assert!(count(0) >= 1);
        assert_eq!(count(3), 3);
    }
}
