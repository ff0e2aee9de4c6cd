//! Which videos each member of a video room receives, and who has a camera on.
//!
//! The rule is `rules::video_senders` (the first two other members in join order, or the
//! member's own `subscribeVideoMembers` list); this keeps each member's video slots equal to
//! it after every change: a join, a leave, a replacement, a subscription. Keyframes are
//! asked of a publisher whenever a receiver starts on its stream, throttled per publisher.

use std::collections::HashSet;

use super::*;

impl Engine {
    /// `subscribeVideoMembers`: replaces whose video the member receives.
    pub fn handle_subscribe_video(&mut self, now: Instant, conn: ConnId, list: Vec<OpenId>) {
        let fail = |code, detail: &str| {
            Status::fail(api::SUBSCRIBE_VIDEO, &Failure::with_detail(code, detail))
        };
        let status = match self.conns.get(&conn) {
            Some(ConnState::Member(id)) => {
                let id = *id;
                match self
                    .members
                    .get_mut(&id)
                    .map(|m| (&mut m.video, m.room.clone()))
                {
                    Some((Some(video), room)) => {
                        let mut seen = HashSet::new();
                        let list: Vec<OpenId> = list
                            .into_iter()
                            .filter(|o| seen.insert(o.clone()))
                            .collect();
                        video.subscription = Some(list);
                        self.sync_video(now, id, &room);
                        Status::ok(api::SUBSCRIBE_VIDEO)
                    }
                    _ => fail(
                        ErrorCode::UnexpectedMessage,
                        "subscribeVoIPVideoMembers needs a video room",
                    ),
                }
            }
            _ => fail(ErrorCode::NotInRoom, "not in a room"),
        };
        let member = match self.conns.get(&conn) {
            Some(ConnState::Member(id)) => Some(*id),
            _ => None,
        };
        self.signal(conn, ServerMsg::SubscribeVideoMembersResult { status });
        if let Some(id) = member {
            self.flush_negotiation(id);
        }
    }

    /// The members with a camera on, in join order: they publish video and did not mute it.
    pub(super) fn video_members_now(&self, key: &RoomKey) -> Vec<OpenId> {
        let Some(room) = self.rooms.get(key) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| camera_on(m))
            .map(|m| m.open_id.clone())
            .collect()
    }

    /// Tells the room `videoMembersChanged` if the list differs from what it was last told.
    pub(super) fn announce_video_members(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if room.room_type != RoomType::Video {
            return;
        }
        let list = self.video_members_now(key);
        if list == room.video_members {
            return;
        }
        let conns: Vec<ConnId> = room
            .members
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| m.conn))
            .collect();
        if let Some(room) = self.rooms.get_mut(key) {
            room.video_members.clone_from(&list);
        }
        for c in conns {
            self.signal(c, ServerMsg::video_members_changed(list.clone()));
        }
    }

    /// Brings every member's video slots in line with the video rule.
    pub(super) fn sync_video_room(&mut self, now: Instant, key: &RoomKey) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if room.room_type != RoomType::Video {
            return;
        }
        for id in room.members.clone() {
            self.sync_video(now, id, key);
        }
    }

    /// Brings `receiver`'s video slots in line with the video rule: slots for senders it
    /// should no longer see are freed, senders it should see get one.
    fn sync_video(&mut self, now: Instant, receiver: MemberId, key: &RoomKey) {
        let wanted = {
            let (Some(room), Some(r)) = (self.rooms.get(key), self.members.get(&receiver)) else {
                return;
            };
            let Some(video) = &r.video else {
                return;
            };
            let publishers: Vec<(MemberId, &OpenId)> = room
                .members
                .iter()
                .filter_map(|id| self.members.get(id).map(|m| (*id, m)))
                .filter(|(_, m)| m.video.as_ref().is_some_and(|v| v.mid.is_some()))
                .map(|(id, m)| (id, &m.open_id))
                .collect();
            rules::video_senders(&publishers, receiver, video.subscription.as_deref())
        };
        let Some(r) = self.members.get(&receiver) else {
            return;
        };
        let current: Vec<MemberId> = r
            .slots
            .iter()
            .filter(|s| s.kind == TrackKind::Video)
            .filter_map(|s| s.occupant)
            .chain(
                r.wants_slots
                    .iter()
                    .filter(|(k, _)| *k == TrackKind::Video)
                    .map(|(_, s)| *s),
            )
            .collect();
        for gone in current.iter().filter(|s| !wanted.contains(s)) {
            self.take_slot(receiver, TrackKind::Video, *gone);
        }
        for new in wanted.iter().filter(|s| !current.contains(s)) {
            self.give_slot(now, receiver, TrackKind::Video, *new);
        }
    }

    /// A member's camera mute changed: the room is told, and receivers restart its video on
    /// a keyframe when it comes back.
    pub(super) fn camera_changed(&mut self, now: Instant, id: MemberId, key: &RoomKey) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let mut layers: Vec<Option<usize>> = Vec::new();
        for other in room.members.clone() {
            if let Some(o) = self.members.get_mut(&other) {
                for slot in o
                    .slots
                    .iter_mut()
                    .filter(|s| s.kind == TrackKind::Video && s.occupant == Some(id))
                {
                    slot.wait_keyframe = true;
                    let layer = slot.target.layer.or(slot.layer);
                    if !layers.contains(&layer) {
                        layers.push(layer);
                    }
                }
            }
        }
        // The layers its receivers will restart on (every layer for one not chosen yet).
        for layer in layers {
            self.ask_keyframe(now, id, layer);
        }
        self.announce_video_members(key);
    }

    /// Reused video slots whose mapping has settled: their occupant is asked for the keyframe
    /// they start on (once the receiver is connected: else its Connected asks).
    pub(super) fn end_slot_settles(&mut self, now: Instant) {
        let mut settled = Vec::new();
        for m in self.members.values_mut() {
            let connected = m.connected;
            for slot in &mut m.slots {
                if slot.settle_until.is_some_and(|t| t <= now) {
                    slot.settle_until = None;
                    if let Some(o) = slot.occupant.filter(|_| connected) {
                        slot.asked_at = Some(now);
                        settled.push((o, slot.target.layer));
                    }
                }
            }
        }
        for (publisher, layer) in settled {
            self.ask_keyframe(now, publisher, layer);
        }
    }

    /// A receiver's PLI or FIR on one of its video slots goes to the slot's occupant.
    pub(super) fn on_keyframe_request(&mut self, now: Instant, receiver: MemberId, mid: Mid) {
        // The layer the receiver decodes (or the one it waits for), and whether the slot is
        // only starting on it: waiting for its keyframe, or on it for less than a second.
        let occupant = self.members.get(&receiver).and_then(|r| {
            r.slots
                .iter()
                .find(|s| s.mid == mid && s.kind == TrackKind::Video)
                .and_then(|s| {
                    let starting = s.wait_keyframe
                        || s.target.layer != s.layer
                        || s.switched_at
                            .is_none_or(|t| now.saturating_duration_since(t) < STARTING);
                    s.occupant
                        .map(|o| (o, s.layer.or(s.target.layer), starting))
                })
        });
        match occupant {
            Some((publisher, layer, true)) => self.ask_keyframe(now, publisher, layer),
            Some((publisher, layer, false)) => {
                self.ask_keyframe_for_receiver(now, publisher, layer)
            }
            None => {}
        }
    }
}

/// A slot this recently started (or switched) on a keyframe is still starting: its
/// receiver's keyframe requests are asks for a first picture, passed on at once.
const STARTING: Duration = Duration::from_millis(1000);

/// The member publishes video and has not muted its camera.
pub(super) fn camera_on(m: &Member) -> bool {
    m.video.as_ref().is_some_and(|v| v.mid.is_some()) && !m.mute.mute_camera
}
