//! The room directory of [`SqliteStore`](crate::SqliteStore) ([`crate::directory`]): one
//! table of node registrations, one of room claims. A single node only ever finds its own
//! claims here; the tables make it follow the same rules as a cluster on Redis (and would
//! let processes sharing the file do so too).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use voipchat_proto::RoomKey;

use crate::directory::{Heartbeat, NodeInfo, RoomDirectory, RoomOwner};
use crate::sqlite::time_arg;
use crate::{SqliteStore, StoreError};

/// Schema version 6.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE nodes (
        node       TEXT    NOT NULL PRIMARY KEY,
        url        TEXT    NOT NULL,
        expires_ms INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE room_claims (
        app_id     TEXT    NOT NULL,
        group_id   TEXT    NOT NULL,
        node       TEXT    NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (app_id, group_id)
    ) STRICT;
    CREATE INDEX room_claims_by_node ON room_claims (node);";

/// The live node holding `room` at `now` (its claim and its registration unexpired).
fn live_owner(conn: &Connection, room: &RoomKey, now: i64) -> Result<Option<NodeInfo>, StoreError> {
    let owner = conn
        .prepare_cached(
            "SELECT c.node, n.url FROM room_claims c JOIN nodes n ON n.node = c.node
             WHERE c.app_id = ?1 AND c.group_id = ?2 AND c.expires_ms > ?3 AND n.expires_ms > ?3",
        )?
        .query_row(
            params![room.app_id.as_str(), room.group_id.as_str(), now],
            |r| {
                Ok(NodeInfo {
                    id: r.get(0)?,
                    url: r.get(1)?,
                })
            },
        )
        .optional()?;
    Ok(owner)
}

fn set_claim(
    conn: &Connection,
    room: &RoomKey,
    node: &str,
    expires: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO room_claims (app_id, group_id, node, expires_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app_id, group_id) DO UPDATE SET node = excluded.node,
             expires_ms = excluded.expires_ms",
    )?
    .execute(params![
        room.app_id.as_str(),
        room.group_id.as_str(),
        node,
        expires
    ])?;
    Ok(())
}

impl RoomDirectory for SqliteStore {
    fn claim_room(
        &self,
        room: &RoomKey,
        node: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<RoomOwner, StoreError> {
        let now = time_arg(now_ms);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(owner) = live_owner(&tx, room, now)? {
            if owner.id != node {
                return Ok(RoomOwner::Other(owner));
            }
        }
        set_claim(&tx, room, node, time_arg(now_ms.saturating_add(ttl_ms)))?;
        tx.commit()?;
        Ok(RoomOwner::This)
    }

    fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<Vec<RoomKey>, StoreError> {
        let now = time_arg(beat.now_ms);
        let node = beat.node.id.as_str();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO nodes (node, url, expires_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (node) DO UPDATE SET url = excluded.url, expires_ms = excluded.expires_ms",
            params![
                node,
                beat.node.url,
                time_arg(beat.now_ms.saturating_add(beat.node_ttl_ms))
            ],
        )?;
        let mut lost = Vec::new();
        let claim_until = time_arg(beat.now_ms.saturating_add(beat.claim_ttl_ms));
        for room in beat.keep {
            match live_owner(&tx, room, now)? {
                Some(owner) if owner.id != node => lost.push(room.clone()),
                _ => set_claim(&tx, room, node, claim_until)?,
            }
        }
        for room in beat.release {
            tx.prepare_cached(
                "DELETE FROM room_claims WHERE app_id = ?1 AND group_id = ?2 AND node = ?3",
            )?
            .execute(params![room.app_id.as_str(), room.group_id.as_str(), node])?;
        }
        // Bounded housekeeping: claims and registrations long expired.
        tx.execute(
            "DELETE FROM room_claims WHERE rowid IN
                (SELECT rowid FROM room_claims WHERE expires_ms <= ?1 LIMIT 256)",
            params![now],
        )?;
        tx.execute("DELETE FROM nodes WHERE expires_ms <= ?1", params![now])?;
        tx.commit()?;
        Ok(lost)
    }

    fn leave(&self, node: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM room_claims WHERE node = ?1", params![node])?;
        tx.execute("DELETE FROM nodes WHERE node = ?1", params![node])?;
        tx.commit()?;
        Ok(())
    }

    fn room_owner(&self, room: &RoomKey, now_ms: u64) -> Result<Option<NodeInfo>, StoreError> {
        live_owner(&self.conn(), room, time_arg(now_ms))
    }

    fn nodes(&self, now_ms: u64) -> Result<Vec<NodeInfo>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT node, url FROM nodes WHERE expires_ms > ?1 ORDER BY node")?;
        let nodes = stmt
            .query_map(params![time_arg(now_ms)], |r| {
                Ok(NodeInfo {
                    id: r.get(0)?,
                    url: r.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(nodes)
    }
}
