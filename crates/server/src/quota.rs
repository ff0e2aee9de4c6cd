//! Room quota reservations: a room's unit is reserved when its creating join asks, confirmed
//! when its first member is admitted (before that member is told), and given back when the
//! room closes unopened or, for whatever a crash left pending, at this node's next start.
//! So after any crash the count equals the rooms that clients were told exist.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::RngCore;
use tracing::{debug, info, warn};
use voipchat_proto::RoomKey;
use voipchat_store::{QuotaDecision, Reservation, Store, StoreError};

use crate::Config;

/// The pending reservations of this process, by room (at most one per room: the engine asks
/// for a room's quota once while it is being created).
pub struct Reservations {
    store: Arc<dyn Store>,
    node: String,
    /// Tokens are `<run>-<n>`: `run` is random per process start, so a token is never reused.
    run: String,
    next: AtomicU64,
    pending: Mutex<HashMap<RoomKey, Reservation>>,
}

impl Reservations {
    pub fn new(store: Arc<dyn Store>, node: String) -> Arc<Reservations> {
        let mut run = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut run);
        Arc::new(Reservations {
            store,
            node,
            run: hex::encode(run),
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<RoomKey, Reservation>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves one unit for `room` (blocking). A grant is remembered until confirmed or
    /// released.
    pub fn reserve(
        &self,
        room: &RoomKey,
        day: &str,
        limit: u64,
    ) -> Result<QuotaDecision, StoreError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let r = Reservation {
            node: self.node.clone(),
            token: format!("{}-{n}", self.run),
        };
        let decision = self
            .store
            .reserve_room_quota(&room.app_id, day, limit, &r)?;
        if decision.granted {
            if let Some(stale) = self.pending().insert(room.clone(), r) {
                // Cannot happen while the engine asks once per room; give it back anyway.
                self.settle(stale, false);
            }
        }
        Ok(decision)
    }

    /// The room's first members are admitted: confirm in the background, then send them
    /// `told` (their joinResults) at once, then `done` (which lets the engine send the rest).
    /// Nothing but a channel send lies between the commit and the telling, so a crash can
    /// hardly fall between them.
    pub fn confirm(
        self: &Arc<Self>,
        room: &RoomKey,
        told: Vec<(crate::media::Outbox, voipchat_proto::ServerMsg)>,
        done: impl FnOnce(RoomKey) + Send + 'static,
    ) {
        let r = self.pending().remove(room);
        let this = self.clone();
        let room = room.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(r) = r {
                // Both lines bound what a crash can leave: the store's count after it lies
                // between the rooms logged "confirmed" and those logged "confirming".
                debug!(room = %room, token = %r.token, "room quota confirming");
                this.settle(r, true);
                debug!(room = %room, "room quota confirmed");
            }
            for (outbox, msg) in told {
                let _ = outbox.send(msg);
            }
            done(room);
        });
    }

    /// The room closed before any member was admitted: give its unit back (background).
    pub fn release(self: &Arc<Self>, room: &RoomKey) {
        if let Some(r) = self.pending().remove(room) {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.settle(r, false));
        }
    }

    fn settle(&self, r: Reservation, confirm: bool) {
        let result = if confirm {
            self.store.confirm_room_quota(&r)
        } else {
            self.store.release_room_quota(&r)
        };
        match result {
            Ok(true) => {}
            Ok(false) => warn!(token = %r.token, confirm, "room reservation was no longer pending"),
            // Still pending in the store: given back at the next start.
            Err(e) => warn!(token = %r.token, confirm, "room reservation not settled: {e}"),
        }
    }

    /// At start: gives back what the last run of this node left pending (blocking).
    pub fn release_leftovers(&self) -> Result<u64, StoreError> {
        let n = self.store.release_node_reservations(&self.node)?;
        if n > 0 {
            info!(node = %self.node, released = n, "gave back room reservations an earlier run left unconfirmed");
        }
        Ok(n)
    }
}

/// This server's node id: `node_id` from the config, else the one kept in the data
/// directory (`node-id`, created at the first start). Two servers sharing one store need
/// different ids (different data directories give that).
pub fn node_id(config: &Config) -> std::io::Result<String> {
    if let Some(id) = &config.node_id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join("node-id");
    read_or_create_node_id(&path)
}

fn read_or_create_node_id(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        // Empty (a crash while it was first written): write one now.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut id = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let id = format!("node-{}", hex::encode(id));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(id)
}
