//! The sans-IO engine: rooms, members and their WebRTC sessions, driven by the caller.
//!
//! Call order, like str0m's `Rtc`: feed input with `handle_*` (each takes `now`), then drain
//! `poll_output` until it returns `Output::Timeout`; call `handle_timeout` at that instant or
//! when the next input arrives, whichever is first. The engine owns no socket, no clock and
//! no store: room creation asks the caller for a unit of quota (`Output::NeedRoomQuota`) and
//! continues when `handle_room_quota` brings the answer.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::rtp::{Extension, ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, warn};
use voipchat_proto::signal::api;
use voipchat_proto::{
    ErrorCode, Failure, JoinRequest, MuteConfig, OpenId, RoomKey, RoomType, ServerMsg, Status,
    TrackKind, TrackSlot,
};

use crate::rules::{self, Admission};
use crate::sdp;
pub use counters::{Counters, Drops};

mod audio_red;
mod counters;
mod forward;
mod liveness;
mod membership;
mod operator;
mod simulcast;
mod slots;
mod stun_gate;
mod subscriptions;

use crate::speakers::{SpeakerConfig, SpeakerState};
pub use membership::Leave;
pub use operator::{MemberSnapshot, RoomSnapshot, ServerMuteError};
use simulcast::{Downlink, Layer};
use slots::Slot;

/// A signaling connection, numbered by the caller. One connection is in at most one room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A member: one admitted join. A reconnect of the same openId is a new member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u64);

/// Settings of the engine; the server fills them from its configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Address announced as the UDP ICE candidate; packets are accepted as sent to it.
    pub announce: SocketAddr,
    /// Also announce a passive TCP candidate (RFC 6544) at the same address and port
    /// number, for clients whose network blocks UDP: the caller then feeds the frames of its
    /// TCP connections to `handle_tcp_frame` and sends `Transmit`s whose `proto` is TCP on
    /// the connection of their destination.
    pub ice_tcp: bool,
    /// Most members in one room at once.
    pub room_cap: usize,
    /// A member from whom no media packet (UDP or TCP) arrives for this long is removed;
    /// once its session connected, the shorter `media_liveness` rule applies (`liveness`).
    pub media_timeout: Duration,
    /// A connected member is removed once nothing arrived for the longer of this and its
    /// ICE keepalive interval plus 1.5 s (at most `media_timeout`).
    pub media_liveness: Duration,
    pub speakers: SpeakerConfig,
    /// Negotiate RED (RFC 2198 redundant audio) with clients that offer it: each packet of
    /// theirs then carries the previous frame too, and receivers that negotiated it get it.
    pub audio_red: bool,
    /// Ask clients for Opus in-band FEC (`useinbandfec=1` in the answer's Opus fmtp); off,
    /// the parameter is taken out, and their encoders add none.
    pub opus_fec: bool,
    /// Confirm each new room before its first member is told: the first admitted join asks
    /// for `Output::ConfirmRoomQuota`, and every message to the room's members is held until
    /// `handle_room_confirmed`. The server sets it so that a crash can never leave a room
    /// counted that no client was told of, nor one told of that is not counted (the store
    /// gives back unconfirmed reservations at the next start). Off: rooms need no confirm.
    pub confirm_rooms: bool,
}

impl EngineConfig {
    pub fn new(announce: SocketAddr) -> Self {
        Self {
            announce,
            ice_tcp: false,
            room_cap: 10,
            media_timeout: Duration::from_secs(8),
            media_liveness: Duration::from_secs(4),
            speakers: SpeakerConfig::default(),
            audio_red: true,
            opus_fec: true,
            confirm_rooms: false,
        }
    }
}

/// What the caller decided for one join besides the request itself: the limits of its app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinPolicy {
    /// Most members in the room, this join included. Each join is admitted against its own
    /// policy, so a changed app setting applies to the next join into an open room too.
    pub room_cap: usize,
}

/// The answer of the store to `Output::NeedRoomQuota`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaAnswer {
    Granted,
    Exhausted,
    /// The store failed; the joins get -1000.
    Failed(String),
}

/// What the engine asks of its caller.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram.
    Transmit(Transmit),
    /// Send this message on this connection.
    Signal(ConnId, ServerMsg),
    /// A join wants to create this room: take one unit of the app's daily quota and call
    /// `handle_room_quota`. At most one request per room is outstanding.
    NeedRoomQuota(RoomKey),
    /// (With `confirm_rooms`.) The room's first members are admitted: make its quota unit
    /// count for good, then send these messages (their joinResults, in order), then call
    /// `handle_room_confirmed`. Until then the engine holds every further message to the
    /// room's members, so the order is kept. The caller sends this batch itself, right after
    /// the store's commit, so that as little as possible happens between the two.
    ConfirmRoomQuota(RoomKey, Vec<(ConnId, ServerMsg)>),
    /// (With `confirm_rooms`.) A room whose quota was granted closed before any member was
    /// admitted: give its unit back.
    ReleaseRoomQuota(RoomKey),
    /// A room was created (quota taken) or destroyed (its last member left), with its type.
    RoomOpened(RoomKey, RoomType),
    RoomClosed(RoomKey, RoomType),
    /// A member was admitted to a room (after its `RoomOpened`, if it created the room).
    MemberJoined(MemberChange),
    /// A member left its room, and why (before the room's `RoomClosed`, if it was the last).
    /// A replacement by a new connection of the same openId is a `MemberLeft` with
    /// `Leave::Interrupted(ErrorCode::Replaced)` followed by a `MemberJoined`.
    MemberLeft(MemberChange, Leave),
    /// Nothing more now; call `handle_timeout` at this instant.
    Timeout(Instant),
}

/// A member entering or leaving a room, as the server's webhooks tell a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChange {
    pub room: RoomKey,
    pub room_type: RoomType,
    pub open_id: OpenId,
    /// Members in the room after the change.
    pub members: usize,
}

/// Where a connection stands.
#[derive(Clone, Debug)]
enum ConnState {
    /// Waiting for the room it wants to be created.
    Joining(RoomKey),
    Member(MemberId),
}

enum RoomState {
    /// The quota request is out; these joins wait for its answer.
    Creating {
        waiting: Vec<(ConnId, JoinRequest, JoinPolicy)>,
    },
    Open,
}

struct Room {
    state: RoomState,
    /// Fixed by the join that created the room.
    room_type: RoomType,
    /// Members in join order.
    members: Vec<MemberId>,
    /// The speakers last announced.
    speakers: Vec<OpenId>,
    /// The microphone-muted members last told to the room.
    muted: Vec<OpenId>,
    /// The members with their camera on, last told to the room (video rooms).
    video_members: Vec<OpenId>,
    /// When the join that created it asked for it; when it opened, once open.
    opened_at: Instant,
    /// The openIds whose microphone the game backend muted: a member of this openId cannot
    /// unmute itself, whichever connection it joins with, while the room is open.
    server_muted: Vec<OpenId>,
    /// The room is being closed by the backend: members leaving now are not announced to
    /// the others, who are leaving too.
    closing: bool,
    /// Where its quota unit is (with `confirm_rooms`).
    quota: RoomQuota,
}

/// The quota unit of a room, with `EngineConfig::confirm_rooms`.
#[derive(Debug)]
enum RoomQuota {
    /// Nothing to do: confirmed, or confirmation not asked for.
    Settled,
    /// Granted; no member admitted yet. Closing now gives the unit back.
    Granted,
    /// The first member is admitted and the confirmation asked; messages to the room's
    /// members wait here, in order, until it comes.
    Confirming { held: Vec<(ConnId, ServerMsg)> },
}

struct Member {
    /// The session's local ICE ufrag (its key in `Engine::by_ufrag`).
    ufrag: String,
    conn: ConnId,
    open_id: OpenId,
    room: RoomKey,
    /// When its openId joined the room (a replacing connection keeps the first time).
    joined_at: Instant,
    rtc: Rtc,
    mute: MuteConfig,
    /// Payload type of Opus in this member's session (what we write with).
    opus_pt: Option<Pt>,
    /// Payload type of RED wrapping Opus, when the session negotiated it.
    red_pt: Option<Pt>,
    slots: Vec<Slot>,
    pending_offer: Option<SdpPendingOffer>,
    /// Slots wanted but not yet in a negotiation: a kind and the member it will carry.
    wants_slots: Vec<(TrackKind, MemberId)>,
    /// Video publishing and receiving; None in a voice room.
    video: Option<MemberVideo>,
    tracks_dirty: bool,
    /// The transport addresses ICE accepted for it (`by_addr` keys), removed with it.
    addrs: Vec<(Protocol, SocketAddr)>,
    /// ICE and DTLS completed at least once; a member removed before that never reached
    /// the announced address, which the operator needs to hear about.
    connected: bool,
    /// When it was last heard from, and its keepalive rhythm.
    liveness: liveness::Liveness,
    next_timeout: Instant,
    speaker: SpeakerState,
}

/// A member of a video room: its camera and what it asked to see.
struct MemberVideo {
    /// The member's own camera m-line; None when its offer had none (no camera).
    mid: Option<Mid>,
    /// The members whose video it asked for (`subscribeVideoMembers`); None: the default,
    /// the first two other members in join order.
    subscription: Option<Vec<OpenId>>,
    /// The camera's layers: one per rid with simulcast, else one (rid None). Each has its
    /// measured bitrate and its own keyframe-request throttle.
    layers: Vec<Layer>,
    /// Which layer each of the camera's SSRCs carries, learned from str0m's streams (the
    /// rid header extension only comes with a stream's first packets), and the newest
    /// sequence number seen on it.
    ssrc_layers: Vec<simulcast::SsrcLayer>,
    /// What this member can receive: its bandwidth estimates (transport-cc, REMB).
    downlink: Downlink,
}

/// The engine. See the module documentation for the call order.
pub struct Engine {
    config: EngineConfig,
    cert: DtlsCert,
    rooms: HashMap<RoomKey, Room>,
    members: HashMap<MemberId, Member>,
    conns: HashMap<ConnId, ConnState>,
    /// Source address to member, learned from ICE. A TCP peer address and a UDP one may
    /// share ip:port (separate port spaces), so the protocol is part of the key.
    by_addr: HashMap<(Protocol, SocketAddr), MemberId>,
    /// Each session's local ICE ufrag, which a connectivity check from a new address names.
    by_ufrag: HashMap<String, MemberId>,
    next_member: u64,
    outputs: VecDeque<Output>,
    /// Events drained from sessions, handled after the drain (no recursion).
    events: VecDeque<(MemberId, Event)>,
    /// A reused list of member ids, so the hot paths do not allocate.
    scratch: Vec<MemberId>,
    /// When each session wants to be driven next (`Member::next_timeout`, kept by `drain`),
    /// ordered by time: `handle_timeout` takes the due ones off the front instead of
    /// looking at every session, and the first entry is the engine's own next timeout.
    /// `detach_member` takes a removed member's entry out.
    timers: BTreeSet<(Instant, MemberId)>,
    next_tick: Instant,
    counters: Counters,
}

const TICK: Duration = Duration::from_millis(100);

impl Engine {
    pub fn new(config: EngineConfig, now: Instant) -> Self {
        let provider = str0m::crypto::from_feature_flags();
        provider.clone().install_process_default();
        // One certificate for all sessions: generating a key per join costs milliseconds.
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("the built-in crypto provider generates certificates");
        Self {
            config,
            cert,
            rooms: HashMap::new(),
            members: HashMap::new(),
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            next_member: 1,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            timers: BTreeSet::new(),
            next_tick: now + TICK,
            counters: Counters::default(),
        }
    }

    /// What the engine forwarded and dropped since it started (the server's metrics).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Members of a room in join order (empty if no such room is open).
    pub fn room_members(&self, key: &RoomKey) -> Vec<OpenId> {
        self.rooms
            .get(key)
            .map(|r| self.open_ids(&r.members))
            .unwrap_or_default()
    }

    /// Whether a connection is in a room here or joining one.
    pub fn knows_conn(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// How many members a room holds now, counting those still joining it (0 if no such
    /// room): what admission control sizes a join's load by.
    pub fn room_size(&self, key: &RoomKey) -> usize {
        self.rooms.get(key).map_or(0, |r| match &r.state {
            RoomState::Creating { waiting } => waiting.len(),
            RoomState::Open => r.members.len(),
        })
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    // ----- input -----

    /// A join that the caller has already validated and authenticated, under the engine's
    /// own room cap.
    pub fn handle_join(&mut self, now: Instant, conn: ConnId, req: JoinRequest) {
        let policy = JoinPolicy {
            room_cap: self.config.room_cap,
        };
        self.handle_join_with(now, conn, req, policy)
    }

    /// A join that the caller has already validated and authenticated, under its app's
    /// limits.
    pub fn handle_join_with(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: JoinRequest,
        policy: JoinPolicy,
    ) {
        if self.conns.contains_key(&conn) {
            self.reply_join_fail(conn, Failure::new(ErrorCode::AlreadyInRoom));
            return;
        }
        if req.room_type == RoomType::Video {
            if let Err(f) = sdp::check_video_offer(&req.sdp) {
                self.reply_join_fail(conn, Failure::with_detail(ErrorCode::InvalidSdp, f));
                return;
            }
        }
        let key = RoomKey::new(req.app_id.clone(), req.group_id.clone());
        if let Some(room) = self.rooms.get(&key) {
            if room.room_type != req.room_type {
                let detail = format!(
                    "room {} is a {} room: join it with roomType \"{}\"",
                    req.group_id,
                    room.room_type.as_str(),
                    room.room_type.as_str()
                );
                self.reply_join_fail(
                    conn,
                    Failure::with_detail(ErrorCode::RoomTypeMismatch, detail),
                );
                return;
            }
        }
        match self.rooms.get_mut(&key) {
            Some(Room {
                state: RoomState::Creating { waiting },
                ..
            }) => {
                waiting.push((conn, req, policy));
                self.conns.insert(conn, ConnState::Joining(key));
            }
            Some(Room {
                state: RoomState::Open,
                ..
            }) => {
                self.admit(now, conn, key, req, policy);
            }
            None => {
                // Check the offer before asking for quota: a refused join takes no quota.
                if let Err(f) = parse_offer(&req.sdp) {
                    self.reply_join_fail(conn, f);
                    return;
                }
                let room_type = req.room_type;
                self.rooms.insert(
                    key.clone(),
                    Room {
                        state: RoomState::Creating {
                            waiting: vec![(conn, req, policy)],
                        },
                        room_type,
                        members: Vec::new(),
                        speakers: Vec::new(),
                        muted: Vec::new(),
                        video_members: Vec::new(),
                        opened_at: now,
                        server_muted: Vec::new(),
                        closing: false,
                        quota: RoomQuota::Settled,
                    },
                );
                self.conns.insert(conn, ConnState::Joining(key.clone()));
                self.outputs.push_back(Output::NeedRoomQuota(key));
            }
        }
    }

    /// The store's answer to `Output::NeedRoomQuota`.
    pub fn handle_room_quota(&mut self, now: Instant, key: &RoomKey, answer: QuotaAnswer) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let RoomState::Creating { waiting } = &mut room.state else {
            return;
        };
        let waiting = std::mem::take(waiting);
        match answer {
            QuotaAnswer::Granted => {
                room.state = RoomState::Open;
                room.opened_at = now;
                if self.config.confirm_rooms {
                    room.quota = RoomQuota::Granted;
                }
                let room_type = room.room_type;
                self.outputs
                    .push_back(Output::RoomOpened(key.clone(), room_type));
                for (conn, req, policy) in waiting {
                    self.conns.remove(&conn);
                    self.admit(now, conn, key.clone(), req, policy);
                }
                self.ask_confirmation(key);
                self.close_if_empty(key);
            }
            QuotaAnswer::Exhausted | QuotaAnswer::Failed(_) => {
                let failure = match answer {
                    QuotaAnswer::Failed(why) => {
                        warn!(room = %key, "room quota check failed: {why}");
                        Failure::new(ErrorCode::SystemError)
                    }
                    _ => Failure::new(ErrorCode::RoomQuotaExceeded),
                };
                self.rooms.remove(key);
                for (conn, _, _) in waiting {
                    self.conns.remove(&conn);
                    self.reply_join_fail(conn, failure.clone());
                }
            }
        }
    }

    /// `exit`: leave the room, or abandon a join still waiting (that join gets -3).
    pub fn handle_exit(&mut self, now: Instant, conn: ConnId) {
        let status = match self.conns.get(&conn).cloned() {
            Some(ConnState::Joining(key)) => {
                self.abandon_join(conn, &key, Failure::new(ErrorCode::ExitedWhileJoining));
                Status::ok(api::EXIT)
            }
            Some(ConnState::Member(id)) => {
                self.remove_member(now, id, Leave::Exited);
                Status::ok(api::EXIT)
            }
            None => Status::fail(api::EXIT, &Failure::new(ErrorCode::NotInRoom)),
        };
        self.signal(conn, ServerMsg::ExitResult { status });
    }

    /// The connection is gone: leave silently.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        match self.conns.get(&conn).cloned() {
            Some(ConnState::Joining(key)) => {
                self.abandon_join(conn, &key, Failure::new(ErrorCode::ExitedWhileJoining));
            }
            Some(ConnState::Member(id)) => self.remove_member(now, id, Leave::Disconnected),
            None => {}
        }
    }

    /// `updateMuteConfig`.
    pub fn handle_mute(&mut self, now: Instant, conn: ConnId, mute: MuteConfig) {
        let member = match self.conns.get(&conn) {
            Some(ConnState::Member(id)) => self.members.get_mut(id),
            _ => None,
        };
        let Some(m) = member else {
            let status = Status::fail(api::UPDATE_MUTE, &Failure::new(ErrorCode::NotInRoom));
            self.signal(conn, ServerMsg::MuteConfigResult { status });
            return;
        };
        if !mute.mute_microphone
            && self
                .rooms
                .get(&m.room)
                .is_some_and(|r| r.server_muted.contains(&m.open_id))
        {
            let status = Status::fail(api::UPDATE_MUTE, &Failure::new(ErrorCode::ServerMuted));
            self.signal(conn, ServerMsg::MuteConfigResult { status });
            return;
        }
        let camera_toggled = m.mute.mute_camera != mute.mute_camera;
        let mic_resumed = m.mute.mute_microphone && !mute.mute_microphone;
        let ear_resumed = m.mute.mute_earphone && !mute.mute_earphone;
        m.mute = mute;
        let room = m.room.clone();
        let stopped_speaking = mute.mute_microphone && m.speaker.reset();
        // The result first: the member learns its own change before the room's view of it.
        let status = Status::ok(api::UPDATE_MUTE);
        self.signal(conn, ServerMsg::MuteConfigResult { status });
        if mic_resumed || ear_resumed {
            if let Some(ConnState::Member(id)) = self.conns.get(&conn).cloned() {
                self.resume_audio(now, id, mic_resumed, ear_resumed);
            }
        }
        if stopped_speaking {
            self.announce_speakers(&room);
        }
        self.announce_mutes(&room);
        if camera_toggled {
            if let Some(ConnState::Member(id)) = self.conns.get(&conn).cloned() {
                self.camera_changed(now, id, &room);
            }
        }
    }

    /// The client's answer to our last `offer`.
    pub fn handle_answer(&mut self, now: Instant, conn: ConnId, sdp: &str) {
        let Some(ConnState::Member(id)) = self.conns.get(&conn).cloned() else {
            self.signal(
                conn,
                ServerMsg::error(&Failure::with_detail(
                    ErrorCode::NotInRoom,
                    "answer without a room",
                )),
            );
            return;
        };
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let Some(pending) = m.pending_offer.take() else {
            self.signal(
                conn,
                ServerMsg::error(&Failure::with_detail(
                    ErrorCode::UnexpectedMessage,
                    "no offer is waiting for an answer",
                )),
            );
            return;
        };
        let accepted = SdpAnswer::from_sdp_string(sdp)
            .map_err(|_| sdp::unparsable("answer", sdp))
            .and_then(|a| {
                m.rtc
                    .sdp_api()
                    .accept_answer(pending, a)
                    .map_err(|e| sdp::refused("answer", &e))
            });
        if let Err(why) = accepted {
            // The session no longer matches what the client believes: it must rejoin.
            warn!(member = ?id, "answer refused: {why}");
            self.signal(
                conn,
                ServerMsg::error(&Failure::with_detail(ErrorCode::InvalidSdp, why)),
            );
            self.remove_member(now, id, Leave::Interrupted(ErrorCode::InvalidSdp));
            return;
        }
        self.drain(now, id);
        self.process_events(now);
        self.flush_negotiation(id);
        // Slots the answer just made writable start on a fresh keyframe (once connected).
        self.ask_keyframes_for_waiting_slots(now, id);
    }

    /// Asks the occupant of each of `receiver`'s video slots still waiting for a keyframe.
    /// Not before the receiver is connected: a keyframe asked for earlier would come before
    /// its session can send media, and the next ask is throttled.
    fn ask_keyframes_for_waiting_slots(&mut self, now: Instant, receiver: MemberId) {
        let mut waiting: Vec<(MemberId, Option<usize>)> = Vec::new();
        if let Some(r) = self.members.get_mut(&receiver).filter(|r| r.connected) {
            for s in r.slots.iter_mut().filter(|s| s.wait_keyframe) {
                if let Some(o) = s.occupant {
                    // A slot with no layer chosen yet asks every layer; its choice
                    // follows at the next tick.
                    s.asked_at = Some(now);
                    waiting.push((o, s.target.layer));
                }
            }
        }
        for (publisher, layer) in waiting {
            self.ask_keyframe(now, publisher, layer);
        }
    }

    /// One UDP datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) {
        self.receive(now, Protocol::Udp, source, bytes);
    }

    /// One packet from a TCP connection whose peer is `source` (the payload of one RFC 4571
    /// frame). Only meaningful with `EngineConfig::ice_tcp`; without it nothing is accepted.
    pub fn handle_tcp_frame(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) {
        if !self.config.ice_tcp {
            self.counters.dropped.unknown_source += 1;
            return;
        }
        self.receive(now, Protocol::Tcp, source, bytes);
    }

    /// Whether packets from this transport address reach a member: its ICE check was
    /// accepted and the member is still there. The TCP shell closes connections for which
    /// this stays false.
    pub fn knows_source(&self, proto: Protocol, source: SocketAddr) -> bool {
        self.by_addr.contains_key(&(proto, source))
    }

    fn receive(&mut self, now: Instant, proto: Protocol, source: SocketAddr, bytes: &[u8]) {
        let key = (proto, source);
        let known = self.by_addr.get(&key).copied();
        // A new address: only an ICE check naming a session's ufrag may open it
        // (`stun_gate`); anything else is dropped before it is parsed, without visiting
        // any session.
        let candidate = match known {
            Some(_) => None,
            None => {
                let member = stun_gate::binding_request_ufrag(bytes)
                    .and_then(|ufrag| self.by_ufrag.get(ufrag).copied());
                if member.is_none() {
                    debug!(%source, ?proto, "packet from an unknown address dropped");
                    self.counters.dropped.unknown_source += 1;
                    return;
                }
                member
            }
        };
        let Ok(contents) = bytes.try_into() else {
            self.counters.dropped.unrecognized += 1;
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                // The TCP candidate has the UDP one's address: same IP, same port number.
                destination: self.config.announce,
                contents,
            },
        );
        let id = match (known, candidate) {
            (Some(id), _) => id,
            (None, Some(id)) => {
                // The session itself checks the request's integrity.
                if !self.members.get(&id).is_some_and(|m| m.rtc.accepts(&input)) {
                    debug!(%source, ?proto, "ICE check from an unknown address refused");
                    self.counters.dropped.unknown_source += 1;
                    return;
                }
                self.by_addr.insert(key, id);
                if let Some(m) = self.members.get_mut(&id) {
                    m.addrs.push(key);
                }
                id
            }
            (None, None) => return,
        };
        let Some(m) = self.members.get_mut(&id) else {
            self.by_addr.remove(&key);
            return;
        };
        m.liveness
            .received(now, liveness::is_binding_request(bytes));
        if let Err(e) = m.rtc.handle_input(input) {
            debug!(member = ?id, "input refused: {e}");
            self.counters.dropped.refused += 1;
        }
        self.drain(now, id);
        self.process_events(now);
    }

    /// Time passed: drive the sessions that are due, expire silent members, settle speakers.
    /// Only the due sessions are visited (`timers`), so a wake-up costs the same at any
    /// number of members.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.scratch);
        due.clear();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if self.members.contains_key(&id) {
                due.push(id);
            }
        }
        for &id in &due {
            if let Some(m) = self.members.get_mut(&id) {
                if let Err(e) = m.rtc.handle_input(Input::Timeout(now)) {
                    debug!(member = ?id, "timeout refused: {e}");
                }
            }
            self.drain(now, id);
        }
        self.scratch = due;
        self.process_events(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(now);
        }
    }

    /// The server is stopping: every member and every waiting join is told so.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let waiting: Vec<(ConnId, RoomKey)> = self
            .conns
            .iter()
            .filter_map(|(c, s)| match s {
                ConnState::Joining(k) => Some((*c, k.clone())),
                _ => None,
            })
            .collect();
        for (conn, key) in waiting {
            self.abandon_join(conn, &key, Failure::new(ErrorCode::ServerShutdown));
        }
        let ids: Vec<MemberId> = self.members.keys().copied().collect();
        for id in ids {
            self.remove_member(now, id, Leave::Interrupted(ErrorCode::ServerShutdown));
        }
    }

    // ----- output -----

    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.outputs.pop_front() {
            return o;
        }
        let first = self.timers.first().map_or(self.next_tick, |(at, _)| *at);
        Output::Timeout(first.min(self.next_tick))
    }

    // ----- internals -----

    fn signal(&mut self, conn: ConnId, msg: ServerMsg) {
        if self.config.confirm_rooms {
            if let Some(ConnState::Member(id)) = self.conns.get(&conn) {
                let room = self.members.get(id).map(|m| &m.room);
                if let Some(Room {
                    quota: RoomQuota::Confirming { held },
                    ..
                }) = room.and_then(|key| self.rooms.get_mut(key))
                {
                    held.push((conn, msg));
                    return;
                }
            }
        }
        self.outputs.push_back(Output::Signal(conn, msg));
    }

    /// The answer to `Output::ConfirmRoomQuota`: the messages held for the room's members go
    /// out, in order. Whether the store managed to confirm or not, the room stays open (a
    /// unit the store failed to confirm is given back at its next start).
    pub fn handle_room_confirmed(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if let RoomQuota::Confirming { held } =
            std::mem::replace(&mut room.quota, RoomQuota::Settled)
        {
            self.outputs.extend(
                held.into_iter()
                    .map(|(conn, msg)| Output::Signal(conn, msg)),
            );
        }
    }

    /// Called as the first member of a room is admitted, before anything is signaled to it:
    /// from now on the room's messages are held.
    fn confirm_if_new(&mut self, key: &RoomKey) {
        if let Some(room) = self.rooms.get_mut(key) {
            if matches!(room.quota, RoomQuota::Granted) {
                room.quota = RoomQuota::Confirming { held: Vec::new() };
            }
        }
    }

    /// After the joins waiting for a new room were admitted: asks for the confirmation,
    /// handing over what was held for them so far.
    fn ask_confirmation(&mut self, key: &RoomKey) {
        if let Some(Room {
            quota: RoomQuota::Confirming { held },
            ..
        }) = self.rooms.get_mut(key)
        {
            let batch = std::mem::take(held);
            self.outputs
                .push_back(Output::ConfirmRoomQuota(key.clone(), batch));
        }
    }

    fn reply_join_fail(&mut self, conn: ConnId, failure: Failure) {
        info!(
            ?conn,
            code = failure.code.code(),
            "join refused: {}",
            failure.detail
        );
        self.signal(conn, ServerMsg::join_failed(&failure));
    }

    fn open_ids(&self, ids: &[MemberId]) -> Vec<OpenId> {
        ids.iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| m.open_id.clone())
            .collect()
    }

    fn find_member(&self, key: &RoomKey, open_id: &OpenId) -> Option<MemberId> {
        let room = self.rooms.get(key)?;
        room.members
            .iter()
            .copied()
            .find(|id| self.members.get(id).is_some_and(|m| &m.open_id == open_id))
    }

    /// Drops a join still waiting for its room, answering it with `failure`.
    fn abandon_join(&mut self, conn: ConnId, key: &RoomKey, failure: Failure) {
        self.conns.remove(&conn);
        if let Some(Room {
            state: RoomState::Creating { waiting },
            ..
        }) = self.rooms.get_mut(key)
        {
            waiting.retain(|(c, _, _)| *c != conn);
        }
        self.reply_join_fail(conn, failure);
    }

    /// An SDP the server sends (a join's answer, a slot offer) as the config wants it:
    /// without Opus in-band FEC when `opus_fec` is off (str0m's Opus always asks for it).
    fn outgoing_sdp(&self, sdp: String) -> String {
        if self.config.opus_fec {
            sdp
        } else {
            sdp::without_inband_fec(&sdp)
        }
    }

    fn new_rtc(&self, now: Instant, room_type: RoomType) -> Rtc {
        let mut config = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .clear_codecs()
            .enable_opus(true, self.config.audio_red);
        if room_type == RoomType::Video {
            // VP8 first (preferred), then H.264 constrained baseline, packetization-mode 1:
            // the one H.264 profile every browser decodes. Both with RTX for NACK repairs.
            config = config.enable_vp8(true);
            config
                .codec_config()
                .add_h264(108.into(), Some(109.into()), true, 0x42e01f);
        }
        // Voice needs the level for speakers and the mid for BUNDLE; no transport-cc:
        // audio runs without bandwidth estimation, so neither the header extension nor
        // the codec's feedback is negotiated.
        let mut config = config
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(4, Extension::RtpMid)
            .set_stats_interval(None);
        if room_type == RoomType::Video {
            // Simulcast: the rid of each layer and of its repairs. Bandwidth estimation
            // toward the receivers (str0m's BWE on transport-cc feedback) chooses their
            // layers. str0m's extension map is per session, so the transport-wide sequence
            // number rides on a video room's audio too; the feedback is asked for video only.
            // Stats (every STATS_INTERVAL) give the loss toward each receiver.
            config = config
                .set_extension(3, Extension::TransportSequenceNumber)
                .set_extension(10, Extension::RtpStreamId)
                .set_extension(11, Extension::RepairedRtpStreamId)
                .enable_bwe(Some(simulcast::INITIAL_ESTIMATE))
                .set_stats_interval(Some(simulcast::STATS_INTERVAL));
        }
        for params in config.codec_config().iter_mut() {
            let video = params.spec().codec.is_video();
            params.set_fb_transport_cc(video && room_type == RoomType::Video);
        }
        config.build(now)
    }

    fn tick(&mut self, now: Instant) {
        let liveness = liveness::LivenessConfig {
            connect_timeout: self.config.media_timeout,
            floor: self.config.media_liveness,
            ..Default::default()
        };
        let expired: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, m)| m.liveness.expired(now, &liveness) || !m.rtc.is_alive())
            .map(|(id, _)| *id)
            .collect();
        self.end_slot_settles(now);
        self.choose_layers(now);
        self.send_owed_keyframe_requests(now);
        for id in expired {
            if let Some(m) = self.members.get(&id).filter(|m| !m.connected) {
                warn!(
                    room = %m.room,
                    open_id = %m.open_id,
                    announced = %self.config.announce,
                    "member removed: its media never connected to the announced address; \
                     clients on other machines need public_ip (or media_addr) set to an \
                     address they can reach"
                );
            }
            self.remove_member(now, id, Leave::Interrupted(ErrorCode::MediaTimeout));
        }
        let cfg = self.config.speakers;
        let mut changed: Vec<RoomKey> = Vec::new();
        for m in self.members.values_mut() {
            if m.speaker.on_tick(&cfg, now) && !changed.contains(&m.room) {
                changed.push(m.room.clone());
            }
        }
        for key in changed {
            self.announce_speakers(&key);
        }
    }

    /// Drains a session's output: datagrams to the queue, events for `process_events`.
    /// A session that wants to be driven at once (a timeout not after `now`, as str0m asks
    /// after `write_rtp`: its pacer releases a packet only on a timeout) is driven here and
    /// drained again, so a forwarded copy is in the queue when the packet's `handle_*`
    /// returns, not at the engine's next timeout.
    fn drain(&mut self, now: Instant, id: MemberId) {
        self.drain_session(now, id, false);
    }

    /// `drain` after a `write_rtp` to this session: str0m's pacer releases the packet only
    /// on a timeout, so the session is driven first, without the poll that would only say
    /// so (that poll computes every timer of the session: a tenth of a copy's cost).
    pub(super) fn drain_written(&mut self, now: Instant, id: MemberId) {
        self.drain_session(now, id, true);
    }

    fn drain_session(&mut self, now: Instant, id: MemberId, written: bool) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let before = m.next_timeout;
        // str0m yields a bounded amount per call; the bound guards against a bug looping
        // (then the session is driven again at once).
        m.next_timeout = now;
        let mut driven = false;
        if written {
            driven = true;
            if let Err(e) = m.rtc.handle_input(Input::Timeout(now)) {
                debug!(member = ?id, "timeout refused: {e}");
            }
        }
        for _ in 0..10_000 {
            match m.rtc.poll_output() {
                Ok(RtcOutput::Transmit(t)) => self.outputs.push_back(Output::Transmit(t)),
                Ok(RtcOutput::Event(e)) => self.events.push_back((id, e)),
                Ok(RtcOutput::Timeout(t)) if t <= now && !driven => {
                    // Once per drain: a session still due after that waits for
                    // `handle_timeout`, so a session can never keep the engine here.
                    driven = true;
                    if let Err(e) = m.rtc.handle_input(Input::Timeout(now)) {
                        debug!(member = ?id, "timeout refused: {e}");
                        break;
                    }
                }
                Ok(RtcOutput::Timeout(t)) => {
                    m.next_timeout = t.max(now);
                    break;
                }
                Err(e) => {
                    debug!(member = ?id, "session failed: {e}");
                    m.rtc.disconnect();
                    m.next_timeout = now;
                    break;
                }
            }
        }
        self.timers.remove(&(before, id));
        self.timers.insert((m.next_timeout, id));
    }

    fn process_events(&mut self, now: Instant) {
        while let Some((id, event)) = self.events.pop_front() {
            match event {
                Event::RtpPacket(packet) => self.forward(now, id, packet),
                Event::IceConnectionStateChange(state) => {
                    debug!(member = ?id, ?state, "ice state");
                    if state == IceConnectionState::Disconnected {
                        // ICE-lite: the client stopped checking; the media timeout decides.
                    }
                }
                Event::Connected => {
                    if let Some(m) = self.members.get_mut(&id) {
                        m.connected = true;
                        m.liveness.connected();
                    }
                    // The member can receive media now: its videos start on fresh keyframes.
                    self.ask_keyframes_for_waiting_slots(now, id);
                }
                Event::Closed => {
                    self.remove_member(now, id, Leave::Interrupted(ErrorCode::MediaTimeout));
                }
                Event::KeyframeRequest(req) => self.on_keyframe_request(now, id, req.mid),
                Event::EgressBitrateEstimate(kind) => self.on_estimate(id, kind),
                Event::PeerStats(stats) => self.on_peer_stats(id, stats.egress_loss_fraction),
                _ => {}
            }
        }
    }
}

fn parse_offer(text: &str) -> Result<SdpOffer, Failure> {
    SdpOffer::from_sdp_string(text)
        .map_err(|_| Failure::with_detail(ErrorCode::InvalidSdp, sdp::unparsable("offer", text)))
}
