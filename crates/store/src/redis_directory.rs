//! The room directory of [`RedisStore`](crate::RedisStore) ([`crate::directory`]).
//!
//! Keys (under the store's prefix): `nodes` (hash node → "expires_ms\nurl"), `c:{room}`
//! (string "node\nexpires_ms", the claim) and `cn:{node}` (set of the rooms it claimed, so a
//! node that leaves finds its claims). `{room}` is the appId length-prefixed, then the
//! groupId, so no pair of ids reads as another. Expiry is decided by the callers' `now`,
//! like everything in the store; each claim key also gets a Redis expiry well past its own,
//! only so that claims of vanished nodes do not pile up.

use voipchat_proto::RoomKey;

use crate::directory::{Heartbeat, NodeInfo, RoomDirectory, RoomOwner};
use crate::{RedisStore, StoreError};

/// A claim key lives this much longer in Redis than its expiry (housekeeping only).
const CLAIM_GC_MS: u64 = 60_000;

/// Helpers of the directory scripts: whether a claim value names a live owner other than
/// `me`, and taking a claim for `me`.
const LIB: &str = r#"
local function live_other(cur, me, now)
  if not cur then return nil end
  local owner, exp = split2(cur)
  if owner == me or tonumber(exp) <= now then return nil end
  local n = redis.call('HGET', P .. 'nodes', owner)
  if not n then return nil end
  local nexp, url = split2(n)
  if tonumber(nexp) <= now then return nil end
  return {owner, url}
end
local function take(room, cur, me, untl, gc)
  if cur then
    local owner = split2(cur)
    if owner ~= me then redis.call('SREM', P .. 'cn:' .. owner, room) end
  end
  redis.call('SET', P .. 'c:' .. room, me .. "\n" .. untl, 'PX', gc)
  redis.call('SADD', P .. 'cn:' .. me, room)
end
"#;

/// ARGV: prefix, room, node, now, until, gc.
const CLAIM: &str = r#"
local room, me, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local cur = redis.call('GET', P .. 'c:' .. room)
local other = live_other(cur, me, now)
if other then return other end
take(room, cur, me, ARGV[5], ARGV[6])
return {}
"#;

/// ARGV: prefix, node, url, now, node_until, claim_until, gc, keep count, keep rooms…,
/// release rooms…
const HEARTBEAT: &str = r#"
local me, now = ARGV[2], tonumber(ARGV[4])
redis.call('HSET', P .. 'nodes', me, ARGV[5] .. "\n" .. ARGV[3])
local nkeep = tonumber(ARGV[8])
local lost = {}
local kept = {}
for i = 1, nkeep do
  local room = ARGV[8 + i]
  kept[room] = true
  local cur = redis.call('GET', P .. 'c:' .. room)
  if live_other(cur, me, now) then
    lost[#lost + 1] = i - 1
  else
    take(room, cur, me, ARGV[6], ARGV[7])
  end
end
for i = 9 + nkeep, #ARGV do
  local room = ARGV[i]
  local cur = redis.call('GET', P .. 'c:' .. room)
  if cur and split2(cur) == me then redis.call('DEL', P .. 'c:' .. room) end
  redis.call('SREM', P .. 'cn:' .. me, room)
end
-- Rooms listed under this node whose claim is gone or another's.
for _, room in ipairs(redis.call('SMEMBERS', P .. 'cn:' .. me)) do
  if not kept[room] then
    local cur = redis.call('GET', P .. 'c:' .. room)
    if not cur or split2(cur) ~= me then redis.call('SREM', P .. 'cn:' .. me, room) end
  end
end
-- Registrations long expired.
local all = redis.call('HGETALL', P .. 'nodes')
for i = 1, #all, 2 do
  local exp = split2(all[i + 1])
  if tonumber(exp) + 60000 <= now then redis.call('HDEL', P .. 'nodes', all[i]) end
end
return lost
"#;

/// ARGV: prefix, node.
const LEAVE: &str = r#"
local me = ARGV[2]
for _, room in ipairs(redis.call('SMEMBERS', P .. 'cn:' .. me)) do
  local cur = redis.call('GET', P .. 'c:' .. room)
  if cur and split2(cur) == me then redis.call('DEL', P .. 'c:' .. room) end
end
redis.call('DEL', P .. 'cn:' .. me)
redis.call('HDEL', P .. 'nodes', me)
return 1
"#;

/// ARGV: prefix, room, now.
const OWNER: &str = r#"
local other = live_other(redis.call('GET', P .. 'c:' .. ARGV[2]), '', tonumber(ARGV[3]))
if other then return other end
return {}
"#;

/// A room as the directory's keys name it.
fn room_field(room: &RoomKey) -> String {
    let app = room.app_id.as_str();
    format!("{}:{app}{}", app.len(), room.group_id.as_str())
}

fn node_from(v: Vec<String>) -> Option<NodeInfo> {
    let mut it = v.into_iter();
    match (it.next(), it.next()) {
        (Some(id), Some(url)) => Some(NodeInfo { id, url }),
        _ => None,
    }
}

fn script(body: &str) -> String {
    format!("{LIB}\n{body}")
}

impl RoomDirectory for RedisStore {
    fn claim_room(
        &self,
        room: &RoomKey,
        node: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<RoomOwner, StoreError> {
        let until = now_ms.saturating_add(ttl_ms);
        let owner: Vec<String> = self.script(
            &script(CLAIM),
            &[
                room_field(room),
                node.to_string(),
                now_ms.to_string(),
                until.to_string(),
                (ttl_ms + CLAIM_GC_MS).to_string(),
            ],
        )?;
        Ok(match node_from(owner) {
            Some(other) => RoomOwner::Other(other),
            None => RoomOwner::This,
        })
    }

    fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<Vec<RoomKey>, StoreError> {
        let mut args = vec![
            beat.node.id.clone(),
            beat.node.url.clone(),
            beat.now_ms.to_string(),
            beat.now_ms.saturating_add(beat.node_ttl_ms).to_string(),
            beat.now_ms.saturating_add(beat.claim_ttl_ms).to_string(),
            (beat.claim_ttl_ms + CLAIM_GC_MS).to_string(),
            beat.keep.len().to_string(),
        ];
        args.extend(beat.keep.iter().map(room_field));
        args.extend(beat.release.iter().map(room_field));
        let lost: Vec<i64> = self.script(&script(HEARTBEAT), &args)?;
        Ok(lost
            .into_iter()
            .filter_map(|i| beat.keep.get(usize::try_from(i).ok()?).cloned())
            .collect())
    }

    fn leave(&self, node: &str) -> Result<(), StoreError> {
        let _: i64 = self.script(LEAVE, &[node.to_string()])?;
        Ok(())
    }

    fn room_owner(&self, room: &RoomKey, now_ms: u64) -> Result<Option<NodeInfo>, StoreError> {
        let owner: Vec<String> =
            self.script(&script(OWNER), &[room_field(room), now_ms.to_string()])?;
        Ok(node_from(owner))
    }

    fn nodes(&self, now_ms: u64) -> Result<Vec<NodeInfo>, StoreError> {
        let key = self.key(&["nodes"]);
        let all: Vec<(String, String)> = self.with(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        let mut nodes: Vec<NodeInfo> = all
            .into_iter()
            .filter_map(|(id, v)| {
                let (exp, url) = v.split_once('\n')?;
                (exp.parse::<u64>().ok()? > now_ms).then(|| NodeInfo {
                    id,
                    url: url.to_string(),
                })
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }
}
