//! What the game backend does to rooms (the server's backend API): look at them, kick a
//! member, mute a member's microphone, close a room. Only open rooms are seen: a room still
//! waiting for its quota decision is not there yet.

use super::*;
use voipchat_proto::{AppId, GroupId};

/// An open room as the backend sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSnapshot {
    pub group_id: GroupId,
    pub room_type: RoomType,
    /// When the room opened (its quota was granted).
    pub opened_at: Instant,
    /// In join order.
    pub members: Vec<MemberSnapshot>,
}

/// A member of an open room as the backend sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub open_id: OpenId,
    /// When its openId joined (a replacing connection keeps the first time).
    pub joined_at: Instant,
    /// Its microphone is muted, by itself or by the backend: its audio is not forwarded.
    pub mic_muted: bool,
    /// The backend muted it: it cannot unmute itself.
    pub server_muted: bool,
    /// Its camera is on, as the room was last told (video rooms).
    pub camera_on: bool,
}

/// Why a server mute was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerMuteError {
    #[error("no such room is open")]
    NoRoom,
    #[error("the openId is not a member of the room")]
    NotInRoom,
}

impl Engine {
    /// One open room, or `None`.
    pub fn room(&self, key: &RoomKey) -> Option<RoomSnapshot> {
        let room = self.rooms.get(key)?;
        if !matches!(room.state, RoomState::Open) {
            return None;
        }
        let cameras = self.video_members_now(key);
        let members = room
            .members
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| MemberSnapshot {
                open_id: m.open_id.clone(),
                joined_at: m.joined_at,
                mic_muted: m.mute.mute_microphone,
                server_muted: room.server_muted.contains(&m.open_id),
                camera_on: cameras.contains(&m.open_id),
            })
            .collect();
        Some(RoomSnapshot {
            group_id: key.group_id.clone(),
            room_type: room.room_type,
            opened_at: room.opened_at,
            members,
        })
    }

    /// The app's open rooms whose groupId sorts after `after`, by groupId, at most `limit`;
    /// and whether more follow.
    pub fn rooms_of_app(
        &self,
        app_id: &AppId,
        after: Option<&GroupId>,
        limit: usize,
    ) -> (Vec<RoomSnapshot>, bool) {
        let mut keys: Vec<&RoomKey> = self
            .rooms
            .iter()
            .filter(|(k, r)| {
                &k.app_id == app_id
                    && matches!(r.state, RoomState::Open)
                    && after.is_none_or(|a| &k.group_id > a)
            })
            .map(|(k, _)| k)
            .collect();
        keys.sort_unstable_by(|a, b| a.group_id.cmp(&b.group_id));
        let more = keys.len() > limit;
        let rooms = keys
            .into_iter()
            .take(limit)
            .filter_map(|k| self.room(k))
            .collect();
        (rooms, more)
    }

    /// Removes the member with this openId from a room (it is told -11001). Returns whether
    /// it was there.
    pub fn kick(&mut self, now: Instant, key: &RoomKey, open_id: &OpenId) -> bool {
        let Some(id) = self.find_member(key, open_id) else {
            return false;
        };
        self.remove_member(now, id, Leave::Interrupted(ErrorCode::Kicked));
        true
    }

    /// Mutes (or allows again) the microphone of the member with this openId. Muting sets
    /// its `muteMicrophone`, tells it `serverMuteChanged` and the room `muteChanged`, and
    /// keeps any connection of that openId from unmuting itself while the room is open.
    /// Allowing it again lifts only that lock: the microphone stays muted until the member
    /// unmutes it, so the server never switches a microphone on. Returns whether anything
    /// changed (muting twice is not an error).
    pub fn server_mute(
        &mut self,
        key: &RoomKey,
        open_id: &OpenId,
        muted: bool,
    ) -> Result<bool, ServerMuteError> {
        if !self
            .rooms
            .get(key)
            .is_some_and(|r| matches!(r.state, RoomState::Open))
        {
            return Err(ServerMuteError::NoRoom);
        }
        let id = self
            .find_member(key, open_id)
            .ok_or(ServerMuteError::NotInRoom)?;
        let Some(room) = self.rooms.get_mut(key) else {
            return Err(ServerMuteError::NoRoom);
        };
        let was = room.server_muted.contains(open_id);
        if was == muted {
            return Ok(false);
        }
        if muted {
            room.server_muted.push(open_id.clone());
        } else {
            room.server_muted.retain(|o| o != open_id);
        }
        let Some(m) = self.members.get_mut(&id) else {
            return Ok(true);
        };
        let conn = m.conn;
        let stopped_speaking = muted && m.speaker.reset();
        if muted {
            m.mute.mute_microphone = true;
        }
        info!(room = %key, %open_id, muted, "server mute changed");
        // The member learns of it before the room's view of it, as with its own mutes.
        self.signal(conn, ServerMsg::server_mute_changed(muted));
        if stopped_speaking {
            self.announce_speakers(key);
        }
        self.announce_mutes(key);
        Ok(true)
    }

    /// Closes an open room: every member is interrupted with -11005 (the others are not told
    /// of each one leaving) and the room is destroyed, so the next join creates a new one.
    /// Returns the openIds interrupted, in join order; `None` if no such room is open.
    pub fn close_room(&mut self, now: Instant, key: &RoomKey) -> Option<Vec<OpenId>> {
        self.end_room(now, key, ErrorCode::RoomClosed)
    }

    /// Ends an open room because another node holds it now (a cluster whose directory
    /// gave the room away while this node was cut off): every member is interrupted with
    /// -11008, and their clients join again, which sends them to that node.
    pub fn room_moved(&mut self, now: Instant, key: &RoomKey) -> Option<Vec<OpenId>> {
        self.end_room(now, key, ErrorCode::RoomMoved)
    }

    fn end_room(&mut self, now: Instant, key: &RoomKey, why: ErrorCode) -> Option<Vec<OpenId>> {
        let room = self.rooms.get_mut(key)?;
        if !matches!(room.state, RoomState::Open) {
            return None;
        }
        room.closing = true;
        let ids = room.members.clone();
        let open_ids = self.open_ids(&ids);
        info!(room = %key, members = ids.len(), code = why.code(), "room ended: {}", why.reason());
        for id in ids {
            self.remove_member(now, id, Leave::Interrupted(why));
        }
        // The last member's leaving destroyed the room; an open room is never empty, but if
        // one were, it must not stay behind marked as closing.
        self.close_if_empty(key);
        Some(open_ids)
    }
}
