//! Which node holds which room, for nodes that share one store (docs/cluster.md).
//!
//! A room lives on exactly one node: its members must meet in one engine, and media never
//! crosses nodes. The first node that gets a join for a room *claims* it; a claim lasts
//! until its expiry, which the owner pushes forward with each heartbeat while the room (or
//! a join that is creating it) is alive. A node's heartbeat also registers it, with the
//! signaling URL that others redirect clients to, until a shorter expiry: a node that dies
//! stops beating, and its claims can be taken over as soon as its registration lapses,
//! without waiting for each claim to expire. A claim is therefore held only while both the
//! claim and its owner's registration are unexpired.
//!
//! As everywhere in the store, times are the caller's (Unix milliseconds), never the
//! backend's clock: the nodes' clocks must agree (NTP), as the signature window needs.
//!
//! Atomicity: [`claim_room`](RoomDirectory::claim_room) and
//! [`heartbeat`](RoomDirectory::heartbeat) each run as one step (one Lua script on Redis,
//! one `BEGIN IMMEDIATE` transaction on SQLite), so two nodes that claim a free room at
//! once cannot both get it.

use voipchat_proto::RoomKey;

use crate::StoreError;

/// A node as the directory knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id (`node_id`).
    pub id: String,
    /// Its signaling WebSocket URL (`ws://…/ws` or `wss://…/ws`), from its `public_url`.
    pub url: String,
}

/// Who holds a room, as [`RoomDirectory::claim_room`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomOwner {
    /// The calling node: it holds the claim now (taken, renewed or taken over).
    This,
    /// Another live node holds it: joins for the room belong there.
    Other(NodeInfo),
}

/// What one heartbeat does (see [`RoomDirectory::heartbeat`]).
#[derive(Clone, Debug)]
pub struct Heartbeat<'a> {
    pub node: &'a NodeInfo,
    pub now_ms: u64,
    /// The node's registration lasts until `now_ms + node_ttl_ms`.
    pub node_ttl_ms: u64,
    /// Each kept claim lasts until `now_ms + claim_ttl_ms`.
    pub claim_ttl_ms: u64,
    /// Rooms the node still has (or is creating): their claims are renewed, or taken again
    /// if they expired meanwhile.
    pub keep: &'a [RoomKey],
    /// Rooms the node no longer has: their claims are given up, if still the node's.
    pub release: &'a [RoomKey],
}

/// Room claims and node registrations. Implemented by both backends; a single node on
/// SQLite uses it too (it always owns every room), so one code path serves both.
pub trait RoomDirectory: Send + Sync {
    /// Atomically: if another node holds an unexpired claim on `room` and that node's
    /// registration is unexpired, answers [`RoomOwner::Other`] with that node and changes
    /// nothing. Otherwise the claim becomes `node`'s until `now_ms + ttl_ms` (a new claim,
    /// a renewal, or a takeover of an expired or orphaned one) and the answer is
    /// [`RoomOwner::This`].
    fn claim_room(
        &self,
        room: &RoomKey,
        node: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<RoomOwner, StoreError>;

    /// One atomic step: registers the node, renews (or retakes) the `keep` claims, gives up
    /// the `release` claims that are still the node's. Returns the rooms of `keep` that
    /// another node holds now (it took them over while this node's claims or registration
    /// had lapsed): the caller should close its copy of each.
    fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<Vec<RoomKey>, StoreError>;

    /// A node that stops cleanly: its registration and every claim it holds are removed at
    /// once, so its rooms can be created elsewhere without waiting for an expiry.
    fn leave(&self, node: &str) -> Result<(), StoreError>;

    /// The live node holding `room`, if any (an unexpired claim of a registered node).
    fn room_owner(&self, room: &RoomKey, now_ms: u64) -> Result<Option<NodeInfo>, StoreError>;

    /// Every node whose registration is unexpired, by id.
    fn nodes(&self, now_ms: u64) -> Result<Vec<NodeInfo>, StoreError>;
}
