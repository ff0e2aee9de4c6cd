//! Who is in a room and what the room is told: admission (the rules say whether, this says
//! how), replacement by a new connection of the same openId, leaving, and the member lists,
//! mute lists and speakers announced to the others.

use super::*;

/// Why a member left its room: what it is told, what the log says, and what a backend's
/// webhook hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Leave {
    /// It sent `exit`.
    Exited,
    /// Its signaling connection closed.
    Disconnected,
    /// The server removed it and tells it `interrupted` with this code.
    Interrupted(ErrorCode),
}

impl std::fmt::Display for Leave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leave::Exited => f.write_str("exit"),
            Leave::Disconnected => f.write_str("connection closed"),
            Leave::Interrupted(code) => write!(f, "{code}"),
        }
    }
}

impl Engine {
    /// Admits a join to an open room (the room exists and is `Open`).
    pub(super) fn admit(
        &mut self,
        now: Instant,
        conn: ConnId,
        key: RoomKey,
        req: JoinRequest,
        policy: JoinPolicy,
    ) {
        let offer = match parse_offer(&req.sdp) {
            Ok(o) => o,
            Err(f) => return self.reply_join_fail(conn, f),
        };
        let decision = {
            let Some(room) = self.rooms.get(&key) else {
                return self.reply_join_fail(conn, Failure::new(ErrorCode::SystemError));
            };
            let present: Vec<(MemberId, &OpenId)> = room
                .members
                .iter()
                .filter_map(|id| self.members.get(id).map(|m| (*id, &m.open_id)))
                .collect();
            rules::admit(&present, &req.open_id, policy.room_cap)
        };
        let replaces = match decision {
            Admission::Full => {
                return self.reply_join_fail(
                    conn,
                    Failure::with_detail(
                        ErrorCode::RoomFull,
                        format!("room is full ({} members)", policy.room_cap),
                    ),
                );
            }
            Admission::Admit { replaces } => replaces,
        };

        let room_type = self.rooms[&key].room_type;
        let mut rtc = self.new_rtc(now, room_type);
        if let Err(e) = self.add_candidates(&mut rtc) {
            warn!("announce address unusable as candidate: {e}");
            return self.reply_join_fail(conn, Failure::new(ErrorCode::SystemError));
        }
        let answer = match rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                return self.reply_join_fail(
                    conn,
                    Failure::with_detail(ErrorCode::InvalidSdp, sdp::refused("offer", &e)),
                );
            }
        };
        let answer_sdp = self.outgoing_sdp(answer.to_sdp_string());
        if room_type == RoomType::Video
            && sdp::media_sections(&req.sdp)
                .iter()
                .any(|(k, _)| *k == "video")
        {
            let codecs = sdp::section_codecs(&answer_sdp, "video");
            if !codecs
                .iter()
                .any(|c| c.eq_ignore_ascii_case("VP8") || c.eq_ignore_ascii_case("H264"))
            {
                return self.reply_join_fail(
                    conn,
                    Failure::with_detail(
                        ErrorCode::InvalidSdp,
                        "the offer's camera has no codec this server forwards: offer VP8 or \
                         H.264 constrained baseline (profile-level-id 42e01f, packetization-mode 1)",
                    ),
                );
            }
        }
        let opus = rtc.codec_config().find(|p| p.spec().codec == Codec::Opus);
        let (opus_pt, red_pt) = (opus.map(|p| p.pt()), opus.and_then(|p| p.red()));
        let video = (room_type == RoomType::Video).then(|| {
            let mid = sdp::media_sections(&req.sdp)
                .into_iter()
                .find(|(kind, _)| *kind == "video")
                .and_then(|(_, mid)| mid)
                .map(Mid::from);
            MemberVideo {
                mid,
                subscription: None,
                layers: simulcast::camera_layers(&rtc, mid),
                ssrc_layers: Vec::new(),
                downlink: Downlink::default(),
            }
        });

        let id = MemberId(self.next_member);
        self.next_member += 1;
        // The backend's mute holds for the openId, whichever connection it joins with.
        let server_muted = self.rooms[&key].server_muted.contains(&req.open_id);
        let mut mute = req.mute_config;
        mute.mute_microphone |= server_muted;
        let joined_at = replaces
            .and_then(|old| self.members.get(&old))
            .map_or(now, |m| m.joined_at);
        // The members whose media the newcomer will receive: everyone but its old self.
        let others: Vec<MemberId> = self
            .rooms
            .get(&key)
            .map(|r| {
                r.members
                    .iter()
                    .copied()
                    .filter(|m| Some(*m) != replaces)
                    .collect()
            })
            .unwrap_or_default();
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        self.members.insert(
            id,
            Member {
                ufrag: ufrag.clone(),
                conn,
                open_id: req.open_id.clone(),
                room: key.clone(),
                joined_at,
                rtc,
                mute,
                opus_pt,
                red_pt,
                slots: Vec::new(),
                pending_offer: None,
                wants_slots: others.iter().map(|o| (TrackKind::Audio, *o)).collect(),
                video,
                tracks_dirty: false,
                addrs: Vec::new(),
                connected: false,
                liveness: super::liveness::Liveness::new(now),
                next_timeout: now,
                speaker: SpeakerState::default(),
            },
        );
        self.conns.insert(conn, ConnState::Member(id));
        self.by_ufrag.insert(ufrag.clone(), id);
        match replaces {
            Some(old) => self.replace_member(now, old, id),
            None => {
                if let Some(room) = self.rooms.get_mut(&key) {
                    room.members.push(id);
                }
            }
        }
        self.confirm_if_new(&key);
        let list = self.open_ids(&self.rooms[&key].members);
        let muted = self.muted_now(&key);
        info!(room = %key, open_id = %req.open_id, members = list.len(),
              replaced = replaces.is_some(), "member joined");
        self.outputs.push_back(Output::MemberJoined(MemberChange {
            room: key.clone(),
            room_type,
            open_id: req.open_id.clone(),
            members: list.len(),
        }));

        self.signal(
            conn,
            ServerMsg::JoinResult {
                status: Status::ok(api::JOIN),
                open_id_list: list.clone(),
                muted_open_id_list: muted.clone(),
                sdp: Some(answer_sdp),
                ice_servers: Vec::new(),
                redirect: None,
            },
        );
        if server_muted {
            self.signal(conn, ServerMsg::server_mute_changed(true));
        }
        // Speakers are announced on change only: a newcomer learns who already speaks.
        let speaking = self.rooms[&key].speakers.clone();
        if !speaking.is_empty() {
            self.signal(conn, ServerMsg::speakers_changed(speaking));
        }
        match replaces {
            None => {
                self.note_muted(&key);
                for other in &others {
                    self.give_slot(now, *other, TrackKind::Audio, id);
                }
            }
            // The new connection may come with other mutes than the old one had.
            Some(_) => self.announce_mutes(&key),
        }
        if room_type == RoomType::Video {
            // A changed list goes to everyone, the joiner included; else the joiner alone
            // still needs it.
            let told = self.rooms[&key].video_members.clone();
            self.announce_video_members(&key);
            if self.rooms[&key].video_members == told {
                self.signal(conn, ServerMsg::video_members_changed(told));
            }
            self.sync_video_room(now, &key);
        }
        for other in &others {
            // A replacement is the same member to the others: their list did not change.
            if replaces.is_none() {
                if let Some(m) = self.members.get(other) {
                    let c = m.conn;
                    self.signal(c, ServerMsg::members_changed(list.clone(), muted.clone()));
                }
            }
            self.flush_negotiation(*other);
        }
        self.flush_negotiation(id);
        self.drain(now, id);
    }

    /// Puts member `new` (same openId, new connection) where `old` was: same place in the
    /// join order, same receive slots at the others (a slot keeps its SSRC; only the
    /// numbering restarts). The room neither closes nor sees anyone leave.
    pub(super) fn replace_member(&mut self, now: Instant, old: MemberId, new: MemberId) {
        let Some(m) = self.detach_member(old, Leave::Interrupted(ErrorCode::Replaced)) else {
            return;
        };
        info!(room = %m.room, open_id = %m.open_id, "member replaced by a new connection");
        let Some(room) = self.rooms.get_mut(&m.room) else {
            return;
        };
        for slot in room.members.iter_mut().filter(|x| **x == old) {
            *slot = new;
        }
        // To a backend, the old connection left and the new one joins (`admit` says so).
        let left = MemberChange {
            room: m.room.clone(),
            room_type: room.room_type,
            open_id: m.open_id.clone(),
            members: room.members.len().saturating_sub(1),
        };
        self.outputs.push_back(Output::MemberLeft(
            left,
            Leave::Interrupted(ErrorCode::Replaced),
        ));
        let Some(room) = self.rooms.get(&m.room) else {
            return;
        };
        let members = room.members.clone();
        for other in members.iter().filter(|x| **x != new) {
            if let Some(o) = self.members.get_mut(other) {
                for wanted in o.wants_slots.iter_mut().filter(|(_, s)| *s == old) {
                    wanted.1 = new;
                }
                for slot in o.slots.iter_mut().filter(|s| s.occupant == Some(old)) {
                    slot.occupy(now, new);
                }
            }
        }
        if m.speaker.is_speaking() {
            self.announce_speakers(&m.room);
        }
    }

    /// The server's candidates: UDP at the announced address and, with `ice_tcp`, a passive
    /// TCP one with the same address and port number (the client connects to it; str0m
    /// gives TCP host candidates a lower priority, so a client that reaches both uses UDP).
    fn add_candidates(&self, rtc: &mut Rtc) -> Result<(), str0m::error::IceError> {
        let udp = Candidate::host(self.config.announce, "udp")?;
        rtc.add_local_candidate(udp);
        if self.config.ice_tcp {
            let tcp = Candidate::builder()
                .tcp()
                .host(self.config.announce)
                .tcptype(TcpType::Passive)
                .build()?;
            rtc.add_local_candidate(tcp);
        }
        Ok(())
    }

    /// Takes a member out of the engine: its session, addresses and connection, telling it
    /// why if the server removed it. Its room is left to the caller.
    pub(super) fn detach_member(&mut self, id: MemberId, why: Leave) -> Option<Member> {
        let mut m = self.members.remove(&id)?;
        self.timers.remove(&(m.next_timeout, id));
        m.rtc.disconnect();
        for a in &m.addrs {
            self.by_addr.remove(a);
        }
        self.by_ufrag.remove(&m.ufrag);
        self.conns.remove(&m.conn);
        if let Leave::Interrupted(code) = why {
            self.signal(m.conn, ServerMsg::interrupted(code));
        }
        Some(m)
    }

    pub(super) fn remove_member(&mut self, now: Instant, id: MemberId, why: Leave) {
        let Some(m) = self.detach_member(id, why) else {
            return;
        };
        info!(room = %m.room, open_id = %m.open_id, reason = %why, "member left");
        let Some(room) = self.rooms.get_mut(&m.room) else {
            return;
        };
        room.members.retain(|x| *x != id);
        if room.closing {
            // Everyone is leaving: nobody is told about the others, nothing is renegotiated.
            self.close_if_empty(&m.room);
            return;
        }
        let remaining = room.members.clone();
        let left = MemberChange {
            room: m.room.clone(),
            room_type: room.room_type,
            open_id: m.open_id.clone(),
            members: remaining.len(),
        };
        self.outputs.push_back(Output::MemberLeft(left, why));
        for other in &remaining {
            if let Some(o) = self.members.get_mut(other) {
                o.wants_slots.retain(|(_, s)| *s != id);
                for slot in o.slots.iter_mut().filter(|s| s.occupant == Some(id)) {
                    slot.vacate();
                    o.tracks_dirty = true;
                }
            }
        }
        let list = self.open_ids(&remaining);
        let muted = self.note_muted(&m.room);
        // The next member in join order may now be among someone's default videos.
        self.sync_video_room(now, &m.room);
        self.announce_video_members(&m.room);
        for other in &remaining {
            if let Some(c) = self.members.get(other).map(|o| o.conn) {
                self.signal(c, ServerMsg::members_changed(list.clone(), muted.clone()));
            }
            self.flush_negotiation(*other);
        }
        if m.speaker.is_speaking() {
            self.announce_speakers(&m.room);
        }
        self.close_if_empty(&m.room);
    }

    pub(super) fn close_if_empty(&mut self, key: &RoomKey) {
        if let Some(room) = self.rooms.get(key) {
            if matches!(room.state, RoomState::Open) && room.members.is_empty() {
                let room_type = room.room_type;
                if matches!(room.quota, RoomQuota::Granted) {
                    self.outputs
                        .push_back(Output::ReleaseRoomQuota(key.clone()));
                }
                self.rooms.remove(key);
                self.outputs
                    .push_back(Output::RoomClosed(key.clone(), room_type));
            }
        }
    }

    /// The room's microphone-muted members, in join order.
    pub(super) fn muted_now(&self, key: &RoomKey) -> Vec<OpenId> {
        let Some(room) = self.rooms.get(key) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| m.mute.mute_microphone)
            .map(|m| m.open_id.clone())
            .collect()
    }

    /// `muted_now`, remembered as told to the room (the caller tells it).
    pub(super) fn note_muted(&mut self, key: &RoomKey) -> Vec<OpenId> {
        let muted = self.muted_now(key);
        if let Some(room) = self.rooms.get_mut(key) {
            room.muted.clone_from(&muted);
        }
        muted
    }

    /// Tells the room `muteChanged` if its muted members differ from what it was last told.
    pub(super) fn announce_mutes(&mut self, key: &RoomKey) {
        let before = match self.rooms.get(key) {
            Some(room) => room.muted.clone(),
            None => return,
        };
        let muted = self.note_muted(key);
        if muted == before {
            return;
        }
        let conns: Vec<ConnId> = self.rooms[key]
            .members
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| m.conn))
            .collect();
        for c in conns {
            self.signal(c, ServerMsg::mute_changed(muted.clone()));
        }
    }

    /// Announces the room's speakers if they changed.
    pub(super) fn announce_speakers(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let now_speaking: Vec<OpenId> = room
            .members
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| m.speaker.is_speaking() && !m.mute.mute_microphone)
            .map(|m| m.open_id.clone())
            .collect();
        if now_speaking == room.speakers {
            return;
        }
        let conns: Vec<ConnId> = room
            .members
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| m.conn))
            .collect();
        if let Some(room) = self.rooms.get_mut(key) {
            room.speakers = now_speaking.clone();
        }
        for c in conns {
            self.signal(c, ServerMsg::speakers_changed(now_speaking.clone()));
        }
    }
}
