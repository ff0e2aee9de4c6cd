//! An in-memory network for the engine: str0m peers as clients, datagrams routed by address,
//! time moved by hand. No sockets, no threads.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::format::CodecExtra;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::{RawPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use voipchat_core::{ConnId, Engine, EngineConfig, JoinPolicy, Output, QuotaAnswer};
use voipchat_proto::{
    AppId, GroupId, JoinRequest, MuteConfig, OpenId, RoomKey, RoomType, ServerMsg, TrackKind,
    TrackSlot,
};

pub const SERVER: &str = "127.0.0.1:7882";

/// A client: a str0m session in frame mode and what it has seen.
pub struct Peer {
    pub conn: ConnId,
    pub open_id: OpenId,
    /// Where its packets come from: its UDP socket, or its end of the TCP connection.
    pub addr: SocketAddr,
    /// UDP, or TCP for a peer whose only candidate is an active TCP one (ICE-TCP).
    pub proto: Protocol,
    /// Its ICE host candidate's address (what it receives on, for its str0m): `addr` for
    /// UDP; for TCP the discard port 9, as browsers announce active candidates.
    pub candidate: SocketAddr,
    pub rtc: Rtc,
    pub send_mid: Option<Mid>,
    /// The camera m-line of a video-room peer.
    pub video_mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    pub messages: Vec<ServerMsg>,
    pub tracks: HashMap<String, Option<OpenId>>,
    /// (from, payload) of every audio frame received, in order.
    pub received: Vec<(Option<OpenId>, Vec<u8>)>,
    /// (from, frame) of every video frame received, in order.
    pub received_video: Vec<(Option<OpenId>, Vec<u8>)>,
    /// The kind of each receive slot, by mid.
    pub track_kinds: HashMap<String, TrackKind>,
    /// Keyframe requests (PLI/FIR) the server sent this peer's camera.
    pub keyframe_requests: usize,
    /// The same, by the layer (rid) they asked for.
    pub keyframe_requests_by_rid: HashMap<Option<Rid>, usize>,
    /// The simulcast layers this peer's camera offers (empty: no simulcast).
    pub simulcast_rids: Vec<String>,
    /// Every video frame received, with its numbering, in order.
    pub frames: Vec<Frame>,
    /// The video slots (mids) that got a key frame (their decoder could start).
    pub decoding: HashSet<String>,
    /// The SDP of the last offer this peer sent (its join) and the answer it got.
    pub last_offer: Option<String>,
    pub last_answer: Option<String>,
    /// Rewrites the server's SDP (the joinResult's answer and later offers) before the peer
    /// applies it: tests that make a peer believe in more layers than the server accepted.
    pub sdp_rewrite: Option<fn(&str) -> String>,
    /// A bottleneck on the way from the server to this peer.
    pub downlink: Option<Link>,
    /// A link on the way from this peer to the server.
    pub uplink: Option<Link>,
    /// Repairs on this peer's wire, from str0m's raw packet events (video peers only).
    pub repairs: Repairs,
    /// The codec its camera writes.
    pub video_codec: Codec,
    /// Video RTP packets with a payload received, repairs and padding aside (video peers).
    pub video_rtp_in: usize,
    /// Every other RTP packet received with a payload, as it came on the wire: its mid
    /// extension, payload type and payload (peers whose session records raw packets).
    pub audio_rtp_in: Vec<(Option<String>, u8, Vec<u8>)>,
    video_time: u64,
    rtp_time: u64,
    /// RTP mode: the next sequence number and the last timestamp written, per rid.
    rtp_layers: HashMap<String, (u64, u32)>,
    pub connected: bool,
    /// When its session said Connected (ICE and DTLS up: it can decrypt media).
    pub connected_at: Option<Instant>,
    /// When false the peer's packets are dropped (a vanished client).
    pub online: bool,
}

/// NACKs and retransmissions (RTX packets that carry a payload: str0m's blank padding does
/// not count, its padding by resending old packets does) a peer sent and received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    pub nacks_in: usize,
    pub nacks_out: usize,
    pub rtx_in: usize,
    pub rtx_out: usize,
}

/// One video frame as a receiver's str0m gave it.
#[derive(Clone, Debug)]
pub struct Frame {
    pub from: Option<OpenId>,
    pub mid: String,
    pub data: Vec<u8>,
    pub first_seq: u64,
    pub last_seq: u64,
    /// RTP time (90 kHz), extended.
    pub time: u64,
    /// str0m's word that no packet is missing since the previous frame.
    pub contiguous: bool,
    /// str0m's word that it is a key frame.
    pub keyframe: bool,
    /// The VP8 PictureID and TL0PICIDX of its payload descriptor, extended by str0m (None
    /// without).
    pub picture_id: Option<u64>,
    pub tl0_pic_idx: Option<u64>,
    /// When it was complete.
    pub at: Instant,
}

/// A link: packets leave at `rate` one after another; a packet that would wait longer than
/// `max_queue` is dropped (a router's full buffer). Each packet then takes `delay` to arrive,
/// and `loss` drops a share of them at random (deterministic: a seeded xorshift).
pub struct Link {
    pub rate: Bitrate,
    pub max_queue: Duration,
    /// One-way propagation delay, on top of the time a packet waits for the rate.
    pub delay: Duration,
    loss: Option<Loss>,
    /// Drops the next RTP packet of this payload type (the RTP header travels in clear).
    pub drop_next_rtp: Option<u8>,
    busy_until: Option<Instant>,
    queue: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    /// Dropped by the full buffer.
    pub dropped: usize,
    /// Dropped by random loss.
    pub lost: usize,
    pub passed: usize,
}

/// Random loss of `percent` of the packets, the same packets for the same seed.
struct Loss {
    percent: u64,
    state: u64,
}

impl Loss {
    fn drops(&mut self) -> bool {
        // xorshift64
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x % 100 < self.percent
    }
}

impl Link {
    pub fn new(rate: Bitrate, max_queue: Duration) -> Link {
        Link {
            rate,
            max_queue,
            delay: Duration::ZERO,
            loss: None,
            drop_next_rtp: None,
            busy_until: None,
            queue: VecDeque::new(),
            dropped: 0,
            lost: 0,
            passed: 0,
        }
    }

    /// A link with no bottleneck (10 Gbps), no delay and no loss, for `with_*` to shape.
    pub fn clear() -> Link {
        Link::new(Bitrate::gbps(10), Duration::from_secs(1))
    }

    /// Drops `percent` of the packets at random, from a seeded sequence.
    pub fn with_loss(mut self, percent: u64, seed: u64) -> Link {
        self.loss = Some(Loss {
            percent,
            state: seed.max(1),
        });
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Link {
        self.delay = delay;
        self
    }

    fn push(&mut self, now: Instant, source: SocketAddr, bytes: Vec<u8>) {
        let pt = bytes.get(1).map(|b| b & 0x7f);
        if self.drop_next_rtp.is_some() && self.drop_next_rtp == pt && bytes[0] >> 6 == 2 {
            self.drop_next_rtp = None;
            self.lost += 1;
            return;
        }
        if self.loss.as_mut().is_some_and(Loss::drops) {
            self.lost += 1;
            return;
        }
        let start = self.busy_until.map_or(now, |b| b.max(now));
        if start.saturating_duration_since(now) > self.max_queue {
            self.dropped += 1;
            return;
        }
        let bits = (bytes.len() as u64 + 28) * 8;
        let micros = bits * 1_000_000 / self.rate.as_u64().max(1);
        let done = start + Duration::from_micros(micros);
        self.busy_until = Some(done);
        self.queue.push_back((done + self.delay, source, bytes));
    }

    fn pop_due(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.queue.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, src, bytes) = self.queue.pop_front()?;
            self.passed += 1;
            return Some((src, bytes));
        }
        None
    }
}

pub struct Net {
    pub engine: Engine,
    pub peers: Vec<Peer>,
    pub now: Instant,
    /// Quota requests not answered yet, when `auto_quota` is off.
    pub quota_requests: Vec<RoomKey>,
    /// Answer quota requests at once with this.
    pub auto_quota: Option<QuotaAnswer>,
    pub opened: Vec<RoomKey>,
    pub closed: Vec<RoomKey>,
    /// The engine's room and member events in order, as text: "opened g voice",
    /// "joined g alice 1", "left g alice 0 exit", "closed g voice".
    pub lifecycle: Vec<String>,
    next_conn: u64,
    /// The step `advance` moves time by (10 ms unless a test needs finer timing, as
    /// bandwidth estimation does).
    pub step: Duration,
    /// The app limits joins are sent with; None: the engine's own cap.
    pub join_policy: Option<JoinPolicy>,
}

impl Net {
    pub fn new(cap: usize) -> Net {
        Net::with_config(|cfg| {
            cfg.room_cap = cap;
            cfg.media_timeout = Duration::from_secs(5);
        })
    }

    pub fn with_config(tweak: impl FnOnce(&mut EngineConfig)) -> Net {
        let now = Instant::now();
        let mut cfg = EngineConfig::new(SERVER.parse().unwrap());
        tweak(&mut cfg);
        Net {
            engine: Engine::new(cfg, now),
            peers: Vec::new(),
            now,
            quota_requests: Vec::new(),
            auto_quota: Some(QuotaAnswer::Granted),
            opened: Vec::new(),
            closed: Vec::new(),
            lifecycle: Vec::new(),
            next_conn: 1,
            step: Duration::from_millis(10),
            join_policy: None,
        }
    }

    /// Adds a peer and sends its join for `group`. Returns its index.
    pub fn join(&mut self, open_id: &str, group: &str) -> usize {
        self.join_with(open_id, group, MuteConfig::default())
    }

    pub fn join_with(&mut self, open_id: &str, group: &str, mute: MuteConfig) -> usize {
        let idx = self.add_peer(open_id);
        self.send_join(idx, group, mute);
        idx
    }

    pub fn add_peer(&mut self, open_id: &str) -> usize {
        self.add_peer_with(open_id, false)
    }

    /// A peer for a video room: Opus and VP8.
    pub fn add_video_peer(&mut self, open_id: &str) -> usize {
        self.add_peer_with(open_id, true)
    }

    fn add_peer_with(&mut self, open_id: &str, video: bool) -> usize {
        let codecs: &[Codec] = if video { &[Codec::Vp8] } else { &[] };
        self.add_peer_mode(open_id, codecs, false)
    }

    /// A peer for a video room with these video codecs (str0m's defaults for each: H.264
    /// offers its seven profiles, as a browser does); its camera sends the first.
    pub fn add_video_peer_codecs(&mut self, open_id: &str, codecs: &[Codec]) -> usize {
        self.add_peer_mode(open_id, codecs, false)
    }

    /// A voice peer that can only use TCP: one active TCP host candidate, no UDP at all.
    /// Its packets reach the engine as `handle_tcp_frame` from its connection's address.
    pub fn add_tcp_peer(&mut self, open_id: &str) -> usize {
        self.add_peer_on(open_id, &[], false, Protocol::Tcp)
    }

    fn add_peer_mode(&mut self, open_id: &str, codecs: &[Codec], rtp_mode: bool) -> usize {
        self.add_peer_on(open_id, codecs, rtp_mode, Protocol::Udp)
    }

    fn add_peer_on(
        &mut self,
        open_id: &str,
        codecs: &[Codec],
        rtp_mode: bool,
        proto: Protocol,
    ) -> usize {
        let idx = self.peers.len();
        let addr: SocketAddr = format!("127.0.0.1:{}", 20000 + idx).parse().unwrap();
        let video = !codecs.is_empty();
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(codecs.contains(&Codec::Vp8))
            .enable_h264(codecs.contains(&Codec::H264))
            .enable_raw_packets(video)
            .set_rtp_mode(rtp_mode)
            .build(self.now);
        let candidate = match proto {
            Protocol::Tcp => {
                let c = Candidate::builder()
                    .tcp()
                    .host("127.0.0.1:9".parse().unwrap())
                    .tcptype(TcpType::Active)
                    .build()
                    .unwrap();
                rtc.add_local_candidate(c).unwrap().addr()
            }
            _ => {
                rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
                addr
            }
        };
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.peers.push(Peer {
            conn,
            open_id: OpenId::from(open_id),
            addr,
            proto,
            candidate,
            rtc,
            send_mid: None,
            video_mid: None,
            pending: None,
            messages: Vec::new(),
            tracks: HashMap::new(),
            received: Vec::new(),
            received_video: Vec::new(),
            track_kinds: HashMap::new(),
            keyframe_requests: 0,
            keyframe_requests_by_rid: HashMap::new(),
            simulcast_rids: Vec::new(),
            frames: Vec::new(),
            decoding: HashSet::new(),
            last_offer: None,
            last_answer: None,
            sdp_rewrite: None,
            downlink: None,
            uplink: None,
            repairs: Repairs::default(),
            video_codec: codecs.first().copied().unwrap_or(Codec::Vp8),
            video_rtp_in: 0,
            audio_rtp_in: Vec::new(),
            video_time: 0,
            rtp_time: 0,
            rtp_layers: HashMap::new(),
            connected: false,
            connected_at: None,
            online: true,
        });
        idx
    }

    pub fn send_join(&mut self, idx: usize, group: &str, mute: MuteConfig) {
        self.send_join_typed(idx, group, mute, RoomType::Voice)
    }

    /// A video-room peer joins: a microphone and a camera m-line.
    pub fn join_video(&mut self, open_id: &str, group: &str) -> usize {
        let idx = self.add_video_peer(open_id);
        self.send_join_typed(idx, group, MuteConfig::default(), RoomType::Video);
        idx
    }

    /// A join as the tests send it (the engine gets joins already authenticated).
    pub fn request(open_id: &str, group: &str, kind: RoomType, sdp: String) -> JoinRequest {
        JoinRequest {
            app_id: AppId::from("app"),
            open_id: OpenId::from(open_id),
            group_id: GroupId::from(group),
            nonce_str: "n".into(),
            time_stamp: 1,
            signature: "0".repeat(64),
            room_type: kind,
            mute_config: MuteConfig::default(),
            sdp,
        }
    }

    /// Peer `idx` joins `group` with an offer of its own making (no answer is applied).
    pub fn join_with_offer(&mut self, idx: usize, group: &str, kind: RoomType, sdp: String) {
        let p = &self.peers[idx];
        let req = Net::request(p.open_id.as_str(), group, kind, sdp);
        let conn = p.conn;
        self.engine.handle_join(self.now, conn, req);
        self.settle();
    }

    /// A video-room peer whose camera publishes simulcast layers with these rids.
    pub fn join_simulcast(&mut self, open_id: &str, group: &str, rids: &[&str]) -> usize {
        let idx = self.add_video_peer(open_id);
        self.peers[idx].simulcast_rids = rids.iter().map(|r| r.to_string()).collect();
        self.send_join_typed(idx, group, MuteConfig::default(), RoomType::Video);
        idx
    }

    /// A video-room peer whose session runs in RTP mode, so that the test writes its
    /// camera's RTP packets itself (payload descriptors and all), with simulcast layers of
    /// these rids.
    pub fn join_simulcast_rtp(&mut self, open_id: &str, group: &str, rids: &[&str]) -> usize {
        let idx = self.add_peer_mode(open_id, &[Codec::Vp8], true);
        self.peers[idx].simulcast_rids = rids.iter().map(|r| r.to_string()).collect();
        self.send_join_typed(idx, group, MuteConfig::default(), RoomType::Video);
        idx
    }

    /// Writes one VP8 frame on layer `rid` of an RTP-mode peer's camera: `packets` are
    /// whole RTP payloads (descriptor first), sent with one timestamp, a frame time (3000)
    /// after the layer's last, the marker on the last. Each layer numbers its packets from
    /// its own base (`first_seq`, taken at its first frame).
    pub fn send_rtp_frame(&mut self, idx: usize, rid: &str, first_seq: u64, packets: &[Vec<u8>]) {
        let now = self.now;
        let p = &mut self.peers[idx];
        let mid = p.video_mid.expect("a video-room peer");
        let pt = p
            .rtc
            .codec_config()
            .find(|c| c.spec().codec == Codec::Vp8)
            .unwrap()
            .pt();
        let (seq, time) = p
            .rtp_layers
            .entry(rid.to_string())
            .or_insert((first_seq, 90_000));
        *time = time.wrapping_add(3000);
        let mut direct = p.rtc.direct_api();
        let tx = direct
            .stream_tx_by_mid(mid, Some(rid.into()))
            .expect("a send stream for the rid");
        for (i, payload) in packets.iter().enumerate() {
            tx.write_rtp(
                RtpWrite::new(pt, (*seq).into(), *time, now, payload.clone())
                    .marker(i + 1 == packets.len())
                    .nackable(true),
            );
            *seq += 1;
        }
        self.settle();
    }

    /// Peer `idx`'s own join offer (its pending change takes the answer), rewritten by
    /// `edit` before it goes to the server.
    pub fn send_join_edited(
        &mut self,
        idx: usize,
        group: &str,
        kind: RoomType,
        edit: impl FnOnce(String) -> String,
    ) {
        self.send_join_inner(idx, group, MuteConfig::default(), kind, edit)
    }

    pub fn send_join_typed(&mut self, idx: usize, group: &str, mute: MuteConfig, kind: RoomType) {
        self.send_join_inner(idx, group, mute, kind, |s| s)
    }

    fn send_join_inner(
        &mut self,
        idx: usize,
        group: &str,
        mute: MuteConfig,
        kind: RoomType,
        edit: impl FnOnce(String) -> String,
    ) {
        let p = &mut self.peers[idx];
        let simulcast = (!p.simulcast_rids.is_empty()).then(|| {
            let mut s = Simulcast::new();
            for rid in &p.simulcast_rids {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let mut api = p.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = (kind == RoomType::Video)
            .then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast));
        let (offer, pending) = api.apply().unwrap();
        p.send_mid = Some(mid);
        p.video_mid = video_mid;
        p.pending = Some(pending);
        let sdp = edit(offer.to_sdp_string());
        p.last_offer = Some(sdp.clone());
        let mut req = Net::request(p.open_id.as_str(), group, kind, sdp);
        req.mute_config = mute;
        let conn = p.conn;
        match self.join_policy {
            Some(policy) => self.engine.handle_join_with(self.now, conn, req, policy),
            None => self.engine.handle_join(self.now, conn, req),
        }
        self.settle();
    }

    pub fn key(group: &str) -> RoomKey {
        RoomKey::new(AppId::from("app"), GroupId::from(group))
    }

    /// Routes everything until nobody has anything to say.
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            loop {
                match self.engine.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => {
                        busy = true;
                        let now = self.now;
                        if let Some(p) = self
                            .peers
                            .iter_mut()
                            .find(|p| p.addr == t.destination && p.proto == t.proto)
                        {
                            if let Some(link) = &mut p.downlink {
                                link.push(now, t.source, t.contents.to_vec());
                            } else if p.online {
                                deliver_datagram(p, now, t.source, &t.contents);
                            }
                        }
                    }
                    Output::Signal(conn, msg) => {
                        busy = true;
                        self.deliver(conn, msg);
                    }
                    Output::NeedRoomQuota(key) => {
                        busy = true;
                        match self.auto_quota.clone() {
                            Some(a) => self.engine.handle_room_quota(self.now, &key, a),
                            None => self.quota_requests.push(key),
                        }
                    }
                    Output::RoomOpened(k, t) => {
                        self.lifecycle
                            .push(format!("opened {} {}", k.group_id, t.as_str()));
                        self.opened.push(k)
                    }
                    Output::RoomClosed(k, t) => {
                        self.lifecycle
                            .push(format!("closed {} {}", k.group_id, t.as_str()));
                        self.closed.push(k)
                    }
                    Output::MemberJoined(c) => self.lifecycle.push(format!(
                        "joined {} {} {}",
                        c.room.group_id, c.open_id, c.members
                    )),
                    Output::MemberLeft(c, why) => self.lifecycle.push(format!(
                        "left {} {} {} {why}",
                        c.room.group_id, c.open_id, c.members
                    )),
                }
            }
            let now = self.now;
            for p in &mut self.peers {
                while let Some((src, bytes)) = p.downlink.as_mut().and_then(|l| l.pop_due(now)) {
                    busy = true;
                    if p.online {
                        deliver_datagram(p, now, src, &bytes);
                    }
                }
            }
            for i in 0..self.peers.len() {
                while let Some((src, bytes)) =
                    self.peers[i].uplink.as_mut().and_then(|l| l.pop_due(now))
                {
                    busy = true;
                    if self.peers[i].online {
                        let proto = self.peers[i].proto;
                        to_engine(&mut self.engine, now, proto, src, &bytes);
                    }
                }
            }
            for i in 0..self.peers.len() {
                busy |= self.drain_peer(i);
            }
            if !busy {
                return;
            }
        }
        panic!("network did not settle");
    }

    fn deliver(&mut self, conn: ConnId, msg: ServerMsg) {
        let Some(idx) = self.peers.iter().position(|p| p.conn == conn) else {
            return;
        };
        let now = self.now;
        let p = &mut self.peers[idx];
        p.messages.push(msg.clone());
        match msg {
            ServerMsg::JoinResult { sdp: Some(sdp), .. } => {
                p.last_answer = Some(sdp.clone());
                let sdp = match p.sdp_rewrite {
                    Some(rewrite) => rewrite(&sdp),
                    None => sdp,
                };
                let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                let pending = p.pending.take().unwrap();
                p.rtc.sdp_api().accept_answer(pending, answer).unwrap();
            }
            ServerMsg::JoinResult { sdp: None, .. } => {
                p.pending = None;
            }
            ServerMsg::Offer { sdp, tracks } => {
                set_tracks(p, &tracks);
                let sdp = match p.sdp_rewrite {
                    Some(rewrite) => rewrite(&sdp),
                    None => sdp,
                };
                let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                let answer = p.rtc.sdp_api().accept_offer(offer).unwrap();
                let conn = p.conn;
                self.engine
                    .handle_answer(now, conn, &answer.to_sdp_string());
            }
            ServerMsg::Tracks { tracks } => set_tracks(p, &tracks),
            _ => {}
        }
    }

    fn drain_peer(&mut self, idx: usize) -> bool {
        let mut busy = false;
        let now = self.now;
        loop {
            let p = &mut self.peers[idx];
            match p.rtc.poll_output().unwrap() {
                RtcOutput::Timeout(_) => return busy,
                RtcOutput::Transmit(t) => {
                    busy = true;
                    if p.online {
                        let from = p.addr;
                        assert_eq!(t.proto, p.proto, "a peer sends only on its own transport");
                        match &mut p.uplink {
                            Some(link) => link.push(now, from, t.contents.to_vec()),
                            None => to_engine(&mut self.engine, now, p.proto, from, &t.contents),
                        }
                    }
                }
                RtcOutput::Event(e) => match e {
                    Event::Connected => {
                        p.connected = true;
                        p.connected_at = Some(now);
                    }
                    Event::MediaData(d) => {
                        let mid = d.mid.to_string();
                        let from = p.tracks.get(&mid).cloned().flatten();
                        match p.track_kinds.get(&mid) {
                            Some(TrackKind::Video) => {
                                let keyframe = d.is_keyframe();
                                // A decoder asks for a keyframe when the first frame it
                                // gets is none (its first packets were lost), as
                                // browsers do.
                                if keyframe {
                                    p.decoding.insert(mid.clone());
                                } else if !p.decoding.contains(&mid) {
                                    let m = d.mid;
                                    if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(m, None) {
                                        rx.request_keyframe(KeyframeRequestKind::Pli);
                                    }
                                }
                                let (picture_id, tl0_pic_idx) = match d.codec_extra {
                                    CodecExtra::Vp8(e) => (e.picture_id, e.tl0_picture_id),
                                    _ => (None, None),
                                };
                                p.frames.push(Frame {
                                    from: from.clone(),
                                    mid,
                                    data: d.data.to_vec(),
                                    first_seq: **d.seq_range.start(),
                                    last_seq: **d.seq_range.end(),
                                    time: d.time.numer(),
                                    contiguous: d.contiguous,
                                    keyframe,
                                    picture_id,
                                    tl0_pic_idx,
                                    at: now,
                                });
                                p.received_video.push((from, d.data.to_vec()))
                            }
                            _ => p.received.push((from, d.data.to_vec())),
                        }
                    }
                    Event::RawPacket(raw) => count_repairs(p, &raw),
                    Event::KeyframeRequest(r) => {
                        p.keyframe_requests += 1;
                        *p.keyframe_requests_by_rid.entry(r.rid).or_default() += 1;
                    }
                    _ => {}
                },
            }
        }
    }

    /// Moves time forward in steps of `step`, driving everyone.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += self.step;
            let now = self.now;
            self.engine.handle_timeout(now);
            for p in &mut self.peers {
                p.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
            self.settle();
        }
    }

    /// Connects everything: ICE and DTLS take a few round trips.
    pub fn connect(&mut self) {
        for _ in 0..300 {
            if self
                .peers
                .iter()
                .filter(|p| p.pending.is_none() && p.send_mid.is_some())
                .all(|p| p.connected || !p.online)
            {
                break;
            }
            self.advance(Duration::from_millis(10));
        }
    }

    /// One 20 ms Opus frame from a peer, with the given audio level, delivered.
    pub fn speak(&mut self, idx: usize, payload: &[u8], level: i8) {
        self.write_frame(idx, payload, level);
        self.settle();
    }

    /// Writes one 20 ms frame at peer `idx` and returns the datagrams it would send to the
    /// server, without delivering them (for benchmarks that time the engine alone).
    pub fn capture(&mut self, idx: usize, payload: &[u8], level: i8) -> Vec<Vec<u8>> {
        self.write_frame(idx, payload, level);
        let now = self.now;
        let p = &mut self.peers[idx];
        p.rtc.handle_input(Input::Timeout(now)).unwrap();
        let mut out = Vec::new();
        loop {
            match p.rtc.poll_output().unwrap() {
                RtcOutput::Timeout(_) => return out,
                RtcOutput::Transmit(t) => out.push(t.contents.to_vec()),
                RtcOutput::Event(_) => {}
            }
        }
    }

    /// Hands one 20 ms Opus frame to peer `idx`'s session (not yet sent anywhere).
    fn write_frame(&mut self, idx: usize, payload: &[u8], level: i8) {
        let now = self.now;
        let p = &mut self.peers[idx];
        let mid = p.send_mid.unwrap();
        let pt = p
            .rtc
            .codec_config()
            .find(|c| c.spec().codec == Codec::Opus)
            .unwrap()
            .pt();
        p.rtp_time += 960;
        let time =
            str0m::media::MediaTime::new(p.rtp_time, str0m::media::Frequency::FORTY_EIGHT_KHZ);
        p.rtc
            .writer(mid)
            .unwrap()
            .audio_level(level, level > -50)
            .write(pt, now, time, payload.to_vec())
            .unwrap();
    }

    /// Writes one frame of the peer's codec (the bytes of a frame, as an encoder would hand
    /// them over: VP8, or H.264 in Annex B) from peer `idx`'s camera and delivers it.
    pub fn send_video(&mut self, idx: usize, frame: &[u8]) {
        let now = self.now;
        let p = &mut self.peers[idx];
        let mid = p.video_mid.expect("a video-room peer");
        let codec = p.video_codec;
        let pt = p
            .rtc
            .writer(mid)
            .unwrap()
            .payload_params()
            .find(|c| c.spec().codec == codec)
            .expect("the camera's codec negotiated")
            .pt();
        p.video_time += 3000;
        let time = str0m::media::MediaTime::new(p.video_time, str0m::media::Frequency::NINETY_KHZ);
        p.rtc
            .writer(mid)
            .unwrap()
            .write(pt, now, time, frame.to_vec())
            .unwrap();
        self.settle();
    }

    /// Writes one frame per simulcast layer (the same picture time on every layer) from
    /// peer `idx`'s camera and delivers them.
    pub fn send_layers(&mut self, idx: usize, frames: &[(&str, Vec<u8>)]) {
        let now = self.now;
        let p = &mut self.peers[idx];
        let mid = p.video_mid.expect("a video-room peer");
        let pt = p
            .rtc
            .codec_config()
            .find(|c| c.spec().codec == Codec::Vp8)
            .unwrap()
            .pt();
        p.video_time += 3000;
        let time = str0m::media::MediaTime::new(p.video_time, str0m::media::Frequency::NINETY_KHZ);
        for (rid, frame) in frames {
            p.rtc
                .writer(mid)
                .unwrap()
                .rid((*rid).into())
                .write(pt, now, time, frame.clone())
                .unwrap();
        }
        self.settle();
    }

    /// Peer `idx` tells the server, by REMB on its video slots, that it can receive at most
    /// `bitrate`.
    pub fn send_remb(&mut self, idx: usize, bitrate: Bitrate) {
        let p = &mut self.peers[idx];
        let video: Vec<Mid> = p
            .track_kinds
            .iter()
            .filter(|(_, k)| **k == TrackKind::Video)
            .map(|(m, _)| m.as_str().into())
            .collect();
        for mid in video {
            if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, None) {
                rx.request_remb(bitrate);
            }
        }
        self.settle();
    }

    pub fn members_seen(&self, idx: usize) -> Vec<Vec<OpenId>> {
        self.peers[idx]
            .messages
            .iter()
            .filter_map(|m| match m {
                ServerMsg::MembersChanged { open_id_list, .. } => Some(open_id_list.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn speakers_seen(&self, idx: usize) -> Vec<Vec<OpenId>> {
        self.peers[idx]
            .messages
            .iter()
            .filter_map(|m| match m {
                ServerMsg::SpeakersChanged { open_id_list, .. } => Some(open_id_list.clone()),
                _ => None,
            })
            .collect()
    }

    /// The errCode of the peer's last joinResult.
    pub fn join_code(&self, idx: usize) -> Option<i32> {
        self.peers[idx].messages.iter().rev().find_map(|m| match m {
            ServerMsg::JoinResult { status, .. } => Some(status.err_code),
            _ => None,
        })
    }

    pub fn interrupted_code(&self, idx: usize) -> Option<i32> {
        self.peers[idx].messages.iter().find_map(|m| match m {
            ServerMsg::Interrupted { status } => Some(status.err_code),
            _ => None,
        })
    }
}

/// A packet from a peer into the engine, by the peer's transport.
fn to_engine(engine: &mut Engine, now: Instant, proto: Protocol, from: SocketAddr, bytes: &[u8]) {
    match proto {
        Protocol::Tcp => engine.handle_tcp_frame(now, from, bytes),
        _ => engine.handle_datagram(now, from, bytes),
    }
}

fn deliver_datagram(p: &mut Peer, now: Instant, source: SocketAddr, bytes: &[u8]) {
    let input = Input::Receive(
        now,
        Receive {
            proto: p.proto,
            source,
            destination: p.candidate,
            contents: bytes.try_into().unwrap(),
        },
    );
    p.rtc.handle_input(input).unwrap();
}

fn count_repairs(p: &mut Peer, raw: &RawPacket) {
    let is_rtx = |pt| p.rtc.codec_config().iter().any(|c| c.resend() == Some(pt));
    let is_nack = |r: &Rtcp| matches!(r, Rtcp::Nack(_));
    let is_video = |pt| {
        p.rtc
            .codec_config()
            .iter()
            .any(|c| c.pt() == pt && c.spec().codec.is_video())
    };
    if let RawPacket::RtpRx(h, data) = raw {
        if is_video(h.payload_type) && !data.is_empty() {
            p.video_rtp_in += 1;
        }
    }
    let audio = match raw {
        RawPacket::RtpRx(h, data) if !data.is_empty() => {
            !is_video(h.payload_type) && !is_rtx(h.payload_type)
        }
        _ => false,
    };
    match raw {
        RawPacket::RtpRx(h, data) if is_rtx(h.payload_type) && !data.is_empty() => {
            p.repairs.rtx_in += 1
        }
        RawPacket::RtpTx(h, _) if is_rtx(h.payload_type) && !h.has_padding => {
            p.repairs.rtx_out += 1
        }
        RawPacket::RtcpRx(r) if is_nack(r) => p.repairs.nacks_in += 1,
        RawPacket::RtcpTx(r) if is_nack(r) => p.repairs.nacks_out += 1,
        _ => {}
    }
    if let (true, RawPacket::RtpRx(h, data)) = (audio, raw) {
        // The mid extension rides only on a stream's first packets: the SSRC tells the rest.
        let ssrc = h.ssrc;
        let mid = h
            .ext_vals
            .mid
            .or_else(|| p.rtc.direct_api().stream_rx(&ssrc).map(|rx| rx.mid()));
        p.audio_rtp_in
            .push((mid.map(|m| m.to_string()), *h.payload_type, data.clone()));
    }
}

fn set_tracks(p: &mut Peer, tracks: &[TrackSlot]) {
    for t in tracks {
        p.tracks.insert(t.mid.clone(), t.open_id.clone());
        p.track_kinds.insert(t.mid.clone(), t.kind);
    }
}

pub fn ids(v: &[&str]) -> Vec<OpenId> {
    v.iter().map(|s| OpenId::from(*s)).collect()
}
