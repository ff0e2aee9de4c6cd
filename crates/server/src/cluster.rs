//! Several nodes on one Redis (docs/cluster.md): each room lives on the node that claimed
//! it first ([`voipchat_store::RoomDirectory`]); a join that reaches another node is
//! redirected there (-10015 with the owner's URL), so media never crosses nodes.
//!
//! This node's side of it:
//! - a join claims its room before the nonce is spent ([`Cluster::claim`]); another
//!   node's live claim turns the join into a redirect, and the nonce stays unspent so that
//!   the same signed join is accepted at the owner;
//! - a heartbeat every [`HEARTBEAT`] registers the node (with its URL, for
//!   [`NODE_TTL`]) and renews the claims of its open rooms and of joins still creating
//!   theirs (for [`CLAIM_TTL`]); a node that dies stops beating, and its rooms can be
//!   claimed elsewhere once its registration lapses, within [`NODE_TTL`];
//! - a closed room's claim is not given back but left to expire: giving it back could race
//!   a join that claimed it again meanwhile, and a join redirected here until it expires
//!   simply creates the room here;
//! - a node that stops cleanly leaves the directory at once ([`Cluster::leave`]);
//! - an open room whose claim another node took (this node was cut off from the directory
//!   for longer than [`CLAIM_TTL`]) is ended here with -11008, so that its members join
//!   again and meet the others on that node: two copies of a room live at most until this
//!   node's next heartbeat after it reaches the directory again.
//!
//! A single node on SQLite has no cluster: it owns every room and claims nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};
use voipchat_proto::RoomKey;
use voipchat_store::{Heartbeat, NodeInfo, RoomOwner, Store, StoreError};

use crate::{clock, Config};

/// How often the node registers itself and renews its claims.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A registration lasts this long: a node that stopped beating is taken for dead after it.
pub const NODE_TTL: Duration = Duration::from_secs(3);
/// A claim lasts this long unless renewed (a join claims, the heartbeat renews).
pub const CLAIM_TTL: Duration = Duration::from_secs(5);

/// This node in the room directory.
pub struct Cluster {
    store: Arc<dyn Store>,
    node: NodeInfo,
    /// For backend calls passed to another node over `https` (crate::http::forward).
    tls: crate::webhooks::client::Tls,
    /// The rooms this node claimed: open (true), or claimed by a join at that instant.
    claims: Mutex<HashMap<RoomKey, Claim>>,
}

#[derive(Clone, Copy, Debug)]
struct Claim {
    open: bool,
    claimed_at: Instant,
}

impl Cluster {
    pub fn new(
        store: Arc<dyn Store>,
        node: NodeInfo,
        tls: crate::webhooks::client::Tls,
    ) -> Arc<Cluster> {
        Arc::new(Cluster {
            store,
            node,
            tls,
            claims: Mutex::new(HashMap::new()),
        })
    }

    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    pub fn tls(&self) -> &crate::webhooks::client::Tls {
        &self.tls
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, HashMap<RoomKey, Claim>> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `room` for a join (blocking): `This` if the join belongs here.
    pub fn claim(&self, room: &RoomKey) -> Result<RoomOwner, StoreError> {
        let owner = self.store.directory().claim_room(
            room,
            &self.node.id,
            clock::unix_now_ms(),
            CLAIM_TTL.as_millis() as u64,
        )?;
        if owner == RoomOwner::This {
            let now = Instant::now();
            self.claims()
                .entry(room.clone())
                .and_modify(|c| c.claimed_at = now)
                .or_insert(Claim {
                    open: false,
                    claimed_at: now,
                });
        }
        Ok(owner)
    }

    /// The engine opened `room`: its claim is renewed while it stays open.
    pub fn room_opened(&self, room: &RoomKey) {
        self.claims()
            .entry(room.clone())
            .or_insert(Claim {
                open: true,
                claimed_at: Instant::now(),
            })
            .open = true;
    }

    /// The engine closed `room`: its claim runs out unless a join claims it again.
    pub fn room_closed(&self, room: &RoomKey) {
        if let Some(c) = self.claims().get_mut(room) {
            c.open = false;
        }
    }

    /// One heartbeat (blocking). Returns the open rooms another node holds now (it took
    /// them while this node could not renew: a network split from Redis, a long pause).
    pub fn beat(&self) -> Result<Vec<RoomKey>, StoreError> {
        let keep: Vec<RoomKey> = {
            let mut claims = self.claims();
            claims.retain(|_, c| c.open || c.claimed_at.elapsed() < CLAIM_TTL);
            claims.keys().cloned().collect()
        };
        self.store.directory().heartbeat(&Heartbeat {
            node: &self.node,
            now_ms: clock::unix_now_ms(),
            node_ttl_ms: NODE_TTL.as_millis() as u64,
            claim_ttl_ms: CLAIM_TTL.as_millis() as u64,
            keep: &keep,
            release: &[],
        })
    }

    /// Leaves the directory (blocking): the node's claims and registration go at once.
    pub fn leave(&self) {
        match self.store.directory().leave(&self.node.id) {
            Ok(()) => info!(node = %self.node.id, "left the cluster: rooms handed back"),
            Err(e) => {
                warn!(node = %self.node.id, "could not leave the cluster (claims expire in {} s): {e}", NODE_TTL.as_secs())
            }
        }
    }
}

/// Beats every [`HEARTBEAT`] until `stop` turns true; open rooms another node took are
/// handed to the media task to end (`media`).
pub async fn run_heartbeat(
    cluster: Arc<Cluster>,
    mut stop: watch::Receiver<bool>,
    media: crate::shards::Shards,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let c = cluster.clone();
        match tokio::task::spawn_blocking(move || c.beat()).await {
            Ok(Ok(lost)) => {
                if failing {
                    info!("cluster heartbeat works again");
                    failing = false;
                }
                for room in lost {
                    // docs/cluster.md says when this can happen.
                    warn!(room = %room, "another node took over this open room's claim: its members are sent there (-11008)");
                    cluster.claims().remove(&room);
                    let _ = media.send_room(&room, crate::media::Command::RoomMoved(room.clone()));
                }
            }
            Ok(Err(e)) => {
                if !failing {
                    warn!("cluster heartbeat failed (retrying every second): {e}");
                    failing = true;
                }
            }
            Err(e) => warn!("cluster heartbeat task failed: {e}"),
        }
    }
}

/// The URL other nodes redirect this node's joins to: `public_url` made a WebSocket URL,
/// else the bound HTTP address. An unspecified bound address (0.0.0.0) is an error: no
/// client could use it.
pub fn public_url(
    config: &Config,
    http: std::net::SocketAddr,
    tls: bool,
) -> Result<String, String> {
    if let Some(url) = &config.public_url {
        return signaling_url(url);
    }
    if http.ip().is_unspecified() {
        return Err(format!(
            "http_addr {http} is not an address clients can use: set public_url (the URL \
             other nodes redirect this node's joins to)"
        ));
    }
    Ok(format!("{}://{http}/ws", if tls { "wss" } else { "ws" }))
}

/// `https://h` → `wss://h/ws`, `http://h/x` → `ws://h/x/ws`; `ws(s)://…` as it is.
pub fn signaling_url(url: &str) -> Result<String, String> {
    let bad = || format!("public_url {url:?} is not an http(s):// or ws(s):// URL");
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if rest.is_empty() || rest.starts_with('/') || rest.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    match scheme {
        "ws" | "wss" => Ok(url.to_string()),
        "http" | "https" => Ok(format!(
            "{}://{}/ws",
            if scheme == "https" { "wss" } else { "ws" },
            rest.trim_end_matches('/')
        )),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::signaling_url;

    #[test]
    fn public_urls_become_signaling_urls() {
        assert_eq!(
            signaling_url("https://v1.example.com").unwrap(),
            "wss://v1.example.com/ws"
        );
        assert_eq!(
            signaling_url("http://10.0.0.2:7880/").unwrap(),
            "ws://10.0.0.2:7880/ws"
        );
        assert_eq!(
            signaling_url("https://h/voice").unwrap(),
            "wss://h/voice/ws"
        );
        assert_eq!(signaling_url("wss://h/ws").unwrap(), "wss://h/ws");
        for bad in ["ftp://h", "h:7880", "https://", "https:///x", "https://a b"] {
            assert!(signaling_url(bad).is_err(), "{bad}");
        }
    }
}
