//! One generated member: a UDP socket of its own (its address is its identity to the server
//! or the relay), what it sends every 20 ms, and what it counts of what it receives.
//!
//! Against voipchat the transport is a real str0m session (RTP mode, controlling ICE agent,
//! DTLS client, SRTP), driven sans-IO by the media thread; its signaling runs elsewhere
//! (`crate::signaling`) and reaches it as [`FromSignal`] messages. Against the floor the
//! transport is plain RTP with no crypto and a one-datagram hello.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc::UnboundedSender;
use voipchat_proto::TrackSlot;

use crate::payload::{self, Stamp};
use crate::BenchError;

/// A member speaks every 20 ms, as an Opus encoder does.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// RTP clock advance per packet: 20 ms at 48 kHz.
const SAMPLES_PER_PACKET: u32 = 960;
/// RFC 6464 level sent: -30 dBov, voice. Loud enough to make the member a speaker.
const AUDIO_LEVEL: i8 = -30;
/// A camera (`--video`) sends 30 frames/s, each of `PACKETS_PER_FRAME` packets of about
/// 1 KB (≈ 500 kbit/s, a 640x360 VP8 stream), and a keyframe every `KEYFRAME_EVERY` frames
/// or when asked for one.
pub const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
const PACKETS_PER_FRAME: u32 = 2;
const KEYFRAME_EVERY: u32 = 60;
/// RTP clock advance per video frame: 1/30 s at 90 kHz.
const TICKS_PER_FRAME: u32 = 3000;
/// Payload types of the floor's plain RTP: what its relay tells audio from video by.
pub const PLAIN_PT_AUDIO: u8 = 111;
pub const PLAIN_PT_VIDEO: u8 = 96;

/// The floor's join and its acknowledgement.
pub const HELLO: &[u8; 4] = b"HELO";
pub const WELCOME: &[u8; 4] = b"OKAY";

/// Who a member is. `gid = room * members_per_room + pos`, and its openId is `m<gid>`, so
/// any receiver can tell from a stamp whether the sender belongs to its room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub gid: u32,
    pub room: u32,
    pub pos: u32,
}

impl Member {
    pub fn new(room: u32, pos: u32, members_per_room: u32) -> Member {
        Member {
            gid: room * members_per_room + pos,
            room,
            pos,
        }
    }

    pub fn open_id(&self) -> String {
        format!("m{}", self.gid)
    }
}

/// Whether the member at room position `receiver` gets the video of the one at `sender`
/// when nobody subscribes otherwise: the first two other members in join order, which is
/// position order here (each room joins its members one after the other).
pub fn receives_video(receiver: u32, sender: u32) -> bool {
    sender != receiver && sender < if receiver < 2 { 3 } else { 2 }
}

/// The gid of an openId this bench made.
pub fn gid_of(open_id: &str) -> Option<u32> {
    open_id.strip_prefix('m')?.parse().ok()
}

/// Signaling news for a member's session, from the signaling thread.
#[derive(Debug)]
pub enum FromSignal {
    /// `joinResult` ok: the answer to the join offer, and when the join was sent.
    /// `answered`: when the signaling thread read the joinResult.
    Joined {
        sdp: String,
        join_sent: Instant,
        answered: Instant,
    },
    /// A server `offer` with the slot mapping after it.
    Offer { sdp: String, tracks: Vec<TrackSlot> },
    /// A new slot mapping without renegotiation.
    Tracks(Vec<TrackSlot>),
    /// A subscriber session's join was sent (Janus): the start of its join → first audio.
    JoinSent(Instant),
}

/// What a session tells its signaling task.
#[derive(Debug)]
pub enum ToSignal {
    /// Send this answer to the server's last offer.
    Answer(String),
    /// ICE and DTLS are up.
    Connected,
    /// The session cannot go on.
    Failed(String),
}

/// What one receiver counted of one sender of its room: the set of the sender's sequence
/// numbers that arrived, so that the report can count exactly those of the window.
#[derive(Clone, Debug, Default)]
pub struct Pair {
    seen: Vec<u64>,
    max_seq: Option<u32>,
    /// Arrived after a later packet of the same sender.
    pub reordered: u32,
    pub duplicates: u32,
}

impl Pair {
    /// Marks `seq` as arrived; false if it had arrived before.
    fn mark(&mut self, seq: u32) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        if !fresh {
            self.duplicates += 1;
        } else if self.max_seq.is_some_and(|m| seq < m) {
            self.reordered += 1;
        } else {
            self.max_seq = Some(seq);
        }
        fresh
    }

    /// How many of `range` arrived.
    pub fn count_in(&self, range: std::ops::Range<u32>) -> u32 {
        range
            .filter(|&q| {
                self.seen
                    .get((q / 64) as usize)
                    .is_some_and(|w| w & (1 << (q % 64)) != 0)
            })
            .count() as u32
    }
}

/// What a generated session carries of its member. A voipchat member sends and receives on
/// one session; Janus's VideoRoom splits a member into a publisher session and a subscriber
/// session, so the report takes the sends of one and the receptions of the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    #[default]
    Both,
    Publisher,
    Subscriber,
}

impl Role {
    pub fn sends(self) -> bool {
        self != Role::Subscriber
    }

    pub fn receives(self) -> bool {
        self != Role::Publisher
    }
}

/// Everything a member counted; the report adds these up.
#[derive(Clone, Debug, Default)]
pub struct PeerStats {
    pub role: Role,
    /// By sender position in the room: audio, and video (`--video`).
    pub from: Vec<Pair>,
    pub from_video: Vec<Pair>,
    /// Own packets sent with a send time inside the window, and the first one's number:
    /// the window is `first_in_window..first_in_window + sent_in_window`.
    pub sent_in_window: u32,
    pub first_in_window: Option<u32>,
    /// The same of its video packets.
    pub video_sent_in_window: u32,
    pub video_first_in_window: Option<u32>,
    /// Packets this member decrypted and read the stamp of, and those accounted from their
    /// clear RTP header alone (see `--decrypt-every`).
    pub decrypted: u64,
    pub header_only: u64,
    /// Decrypted packets whose stamp disagreed with what the header accounting predicted:
    /// the cross-check of the sampling, 0 when the accounting is right.
    pub sample_mismatches: u64,
    /// Stamped packets from a member of another room, or from itself.
    pub misrouted: u64,
    /// Packets on a slot that the last `offer`/`tracks` gave to another member.
    pub mislabelled: u64,
    /// Media that carries no stamp of this bench.
    pub unstamped: u64,
    pub join_sent: Option<Instant>,
    /// The join's phases: its joinResult read, then ICE and DTLS up, then `first_audio`.
    pub answered: Option<Instant>,
    pub connected_at: Option<Instant>,
    pub first_audio: Option<Instant>,
    /// Datagrams the socket refused to send (full buffer).
    pub send_errors: u64,
}

/// Per media thread: the latency samples and the send schedule slip of all its members.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Window bounds in ns since the epoch (`u64::MAX` until set).
    pub window: (u64, u64),
    /// Hop latency of every audio packet of the window, in ns.
    pub latency_ns: Vec<u32>,
    /// The same of video packets.
    pub video_latency_ns: Vec<u32>,
    /// How late each send of the window left after its schedule, in ns.
    pub send_lag_ns: Vec<u32>,
}

impl Recorder {
    fn in_window(&self, t_ns: u64) -> bool {
        t_ns >= self.window.0 && t_ns < self.window.1
    }
}

/// One sendonly m-line of a session: its codec, the payload type negotiated for it (found
/// at the first send) and its next RTP sequence number.
struct Track {
    mid: Mid,
    codec: Codec,
    pt: Option<Pt>,
    rtp_seq: u64,
}

impl Track {
    fn new(mid: Mid, codec: Codec) -> Track {
        Track {
            mid,
            codec,
            pt: None,
            rtp_seq: u64::from(rand::random::<u16>() % 20_000),
        }
    }

    /// Writes one RTP packet on the track (video packets may be resent on a NACK); false if
    /// the session cannot send it yet (no payload type or send stream negotiated).
    fn write(
        &mut self,
        rtc: &mut Rtc,
        now: Instant,
        time: u32,
        payload: &[u8],
        marker: bool,
        ext: ExtensionValues,
    ) -> bool {
        let codec = self.codec;
        let Some(pt) = self.pt.or_else(|| {
            rtc.codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        }) else {
            return false;
        };
        self.pt = Some(pt);
        let mut direct = rtc.direct_api();
        let Some(tx) = direct.stream_tx_by_mid(self.mid, None) else {
            return false;
        };
        let seq: SeqNo = self.rtp_seq.into();
        self.rtp_seq += 1;
        tx.write_rtp(
            RtpWrite::new(pt, seq, time, now, payload)
                .marker(marker)
                .nackable(codec.is_video())
                .ext_vals(ext),
        );
        true
    }
}

/// Who a generated session belongs to and what every session of the run shares.
pub struct Session<'a> {
    /// The loopback address its socket binds.
    pub ip: Ipv4Addr,
    pub member: Member,
    pub members_per_room: u32,
    pub cert: &'a DtlsCert,
    /// Decrypt one RTP packet in this many (`--decrypt-every`).
    pub decrypt_every: u64,
}

struct WebrtcState {
    rtc: Rtc,
    /// The microphone and (`--video`) the camera; neither on a subscriber session (Janus).
    audio: Option<Track>,
    video: Option<Track>,
    /// Receive slots that carry video.
    video_slots: std::collections::HashSet<Mid>,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    /// Receive slot → gid of the member it carries.
    owners: HashMap<Mid, Option<u32>>,
    /// Receive streams by SSRC: their mid and how their (rewritten) RTP sequence numbers
    /// map to the sender's stamps.
    streams: HashMap<u32, RxStream>,
    /// Decrypt one RTP packet in this many; account the rest from the clear header.
    decrypt_every: u64,
    to_signal: UnboundedSender<ToSignal>,
}

impl WebrtcState {
    /// A session that sends nothing yet and has no pending offer.
    fn new(
        now: Instant,
        rtc: Rtc,
        of: &Session,
        to_signal: UnboundedSender<ToSignal>,
    ) -> WebrtcState {
        WebrtcState {
            rtc,
            audio: None,
            video: None,
            video_slots: Default::default(),
            pending: None,
            next_timeout: now,
            owners: HashMap::new(),
            streams: HashMap::new(),
            decrypt_every: of.decrypt_every.max(1),
            to_signal,
        }
    }
}

/// A receive slot as the header accounting sees it.
struct RxStream {
    mid: Mid,
    video: bool,
    /// Highest extended RTP sequence number seen (str0m's numbering: ROC 0 at the start).
    last_ext: u64,
    /// Sender's stamp seq minus extended RTP seq, learned from a decrypted packet: the server
    /// forwards each sender's packets on its slot with consecutive numbers.
    offset: Option<i64>,
}

impl RxStream {
    /// Extends a 16-bit sequence number to the one nearest the last seen.
    fn extend(&mut self, seq: u16) -> u64 {
        let last = self.last_ext as i64;
        let base = last & !0xffff;
        let mut ext = base | i64::from(seq);
        if ext - last > 0x8000 {
            ext -= 0x1_0000;
        } else if last - ext > 0x8000 {
            ext += 0x1_0000;
        }
        let ext = ext.max(0) as u64;
        self.last_ext = self.last_ext.max(ext);
        ext
    }
}

/// SSRC and sequence number of a clear RTP header; None for RTCP, STUN, DTLS.
fn rtp_ssrc_seq(d: &[u8]) -> Option<(u32, u16)> {
    // RFC 5761: RTP has version 2 and a second byte outside the RTCP types 192..=223.
    if d.len() < 12 || d[0] >> 6 != 2 || (192..=223).contains(&d[1]) {
        return None;
    }
    Some((
        u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        u16::from_be_bytes([d[2], d[3]]),
    ))
}

enum Transport {
    Webrtc(Box<WebrtcState>),
    Plain {
        relay: SocketAddr,
        ssrc: u32,
        rtp_seq: u16,
        video_rtp_seq: u16,
        hello_at: Instant,
    },
}

pub struct Peer {
    pub member: Member,
    members_per_room: u32,
    socket: UdpSocket,
    local: SocketAddr,
    transport: Transport,
    connected: bool,
    next_send: Option<Instant>,
    seq: u32,
    rtp_time: u32,
    /// The camera (`--video`): its next frame, counters, and whether a keyframe was asked for.
    video: bool,
    next_frame: Option<Instant>,
    video_seq: u32,
    video_time: u32,
    frames: u32,
    keyframe_wanted: bool,
    pub stats: PeerStats,
}

impl Peer {
    /// A socket on `ip` (a loopback address), port chosen by the kernel.
    fn bind(ip: Ipv4Addr) -> Result<(UdpSocket, SocketAddr), BenchError> {
        let socket = UdpSocket::bind((ip, 0))
            .map_err(|e| BenchError::new(format!("binding a UDP socket on {ip}: {e}")))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| BenchError::new(format!("non-blocking UDP: {e}")))?;
        let local = socket
            .local_addr()
            .map_err(|e| BenchError::new(format!("UDP local address: {e}")))?;
        Ok((socket, local))
    }

    fn with(
        (member, members_per_room): (Member, u32),
        socket: UdpSocket,
        local: SocketAddr,
        transport: Transport,
        video: bool,
    ) -> Peer {
        Peer {
            member,
            members_per_room,
            socket,
            local,
            transport,
            connected: false,
            next_send: None,
            seq: 0,
            rtp_time: rand::random(),
            video,
            next_frame: None,
            video_seq: 0,
            video_time: rand::random(),
            frames: 0,
            keyframe_wanted: true,
            stats: PeerStats {
                from: vec![Pair::default(); members_per_room as usize],
                from_video: vec![Pair::default(); members_per_room as usize],
                ..PeerStats::default()
            },
        }
    }

    /// A str0m session with one sendonly Opus m-line (audio level and mid header
    /// extensions, as the server negotiates) and, with `video`, a sendonly VP8 camera
    /// m-line; and its join offer.
    pub fn webrtc(
        now: Instant,
        of: &Session,
        to_signal: UnboundedSender<ToSignal>,
        video: bool,
    ) -> Result<(Peer, String), BenchError> {
        let (socket, local, mut rtc) = Self::session(now, of, video)?;
        let mut change = rtc.sdp_api();
        let send_mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = video
            .then(|| change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| BenchError::new("str0m made no offer for one m-line"))?;
        let state = WebrtcState {
            audio: Some(Track::new(send_mid, Codec::Opus)),
            video: video_mid.map(|mid| Track::new(mid, Codec::Vp8)),
            pending: Some(pending),
            ..WebrtcState::new(now, rtc, of, to_signal)
        };
        let who = (of.member, of.members_per_room);
        let peer = Self::with(
            who,
            socket,
            local,
            Transport::Webrtc(Box::new(state)),
            video,
        );
        Ok((peer, offer.to_sdp_string()))
    }

    /// A receive-only str0m session that answers the offer of an SFU (Janus's subscriber
    /// side): no m-line of its own, nothing sent but what the session needs.
    pub fn webrtc_subscriber(
        now: Instant,
        of: &Session,
        to_signal: UnboundedSender<ToSignal>,
    ) -> Result<Peer, BenchError> {
        let (socket, local, rtc) = Self::session(now, of, false)?;
        let state = WebrtcState::new(now, rtc, of, to_signal);
        let who = (of.member, of.members_per_room);
        let mut peer = Self::with(
            who,
            socket,
            local,
            Transport::Webrtc(Box::new(state)),
            false,
        );
        peer.stats.role = Role::Subscriber;
        Ok(peer)
    }

    /// A socket on the member's address and a session whose one host candidate it is.
    fn session(
        now: Instant,
        of: &Session,
        video: bool,
    ) -> Result<(UdpSocket, SocketAddr, Rtc), BenchError> {
        let (socket, local) = Self::bind(of.ip)?;
        let mut rtc = Self::rtc_builder(of.cert, video).build(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| BenchError::new(format!("host candidate {local}: {e}")))?;
        if rtc.add_local_candidate(candidate).is_none() {
            return Err(BenchError::new(format!(
                "{local} is not usable as a host candidate"
            )));
        }
        Ok((socket, local, rtc))
    }

    /// What a session of this bench negotiates: Opus with the audio level and mid header
    /// extensions, RTP mode (the payload is ours, not a codec's), no periodic stats; with
    /// `video` also VP8 and transport-wide sequence numbers, whose feedback a browser sends
    /// and the server's bandwidth estimate reads.
    fn rtc_builder(cert: &DtlsCert, video: bool) -> str0m::RtcConfig {
        let config = Rtc::builder()
            .set_rtp_mode(true)
            .set_dtls_cert(cert.clone())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(video)
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(4, Extension::RtpMid)
            .set_stats_interval(None);
        if video {
            config.set_extension(3, Extension::TransportSequenceNumber)
        } else {
            config
        }
    }

    /// Marks a member's session as its publisher half (Janus).
    pub fn publisher(mut self) -> Peer {
        self.stats.role = Role::Publisher;
        self
    }

    /// A plain-RTP member of the floor relay at `relay`.
    pub fn plain(
        now: Instant,
        ip: Ipv4Addr,
        (member, members_per_room): (Member, u32),
        relay: SocketAddr,
        video: bool,
    ) -> Result<Peer, BenchError> {
        let (socket, local) = Self::bind(ip)?;
        let transport = Transport::Plain {
            relay,
            ssrc: rand::random::<u32>() & !1,
            rtp_seq: rand::random(),
            video_rtp_seq: rand::random(),
            hello_at: now,
        };
        Ok(Self::with(
            (member, members_per_room),
            socket,
            local,
            transport,
            video,
        ))
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Reads one datagram: epoll is level-triggered, so it reports the socket again while
    /// more wait, and this saves the extra `recvfrom` that would only say "empty". Returns
    /// true if the peer just connected.
    pub fn read_one(&mut self, buf: &mut [u8], rec: &mut Recorder) -> bool {
        let was = self.connected;
        if let Ok((n, source)) = self.socket.recv_from(buf) {
            let now = Instant::now();
            self.on_datagram(now, source, n, buf, rec);
        }
        // WouldBlock, or an ICMP error from a gone server: nothing to read now.
        !was && self.connected
    }

    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        n: usize,
        buf: &mut [u8],
        rec: &mut Recorder,
    ) {
        match &mut self.transport {
            Transport::Webrtc(w) => {
                if w.decrypt_every > 1 {
                    if let Some((ssrc, seq)) = rtp_ssrc_seq(&buf[..n]) {
                        if let Some(st) = w.streams.get_mut(&ssrc) {
                            let ext = st.extend(seq);
                            if let Some(offset) = st.offset.filter(|_| ext % w.decrypt_every != 0) {
                                let owner = w.owners.get(&st.mid).copied().flatten();
                                self.stats.header_only += 1;
                                let stamp_seq = (ext as i64 + offset).clamp(0, i64::from(u32::MAX));
                                let video = st.video;
                                self.on_header_only(now, owner, stamp_seq as u32, video);
                                return;
                            }
                        }
                    }
                }
                let Ok(contents) = (&buf[..n]).try_into() else {
                    return;
                };
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents,
                    },
                );
                if w.rtc.handle_input(input).is_ok() {
                    self.drain(now, rec);
                }
            }
            Transport::Plain { .. } => {
                let data = &buf[..n];
                if data == WELCOME {
                    if !self.connected {
                        self.connected = true;
                        self.schedule_first_send(now);
                    }
                    return;
                }
                // 12-byte RTP header, no CSRC, no extension: what our plain senders write.
                if n < 12 || data[0] >> 6 != 2 {
                    self.stats.unstamped += 1;
                    return;
                }
                let stamp = payload::decode(&data[12..]);
                self.on_media(now, None, stamp, rec);
            }
        }
    }

    /// One media packet for this member: who sent it, whether it belongs here, and if it was
    /// sent inside the window, its hop latency.
    fn on_media(
        &mut self,
        now: Instant,
        slot_owner: Option<Option<u32>>,
        stamp: Option<Stamp>,
        rec: &mut Recorder,
    ) {
        let Some(stamp) = stamp else {
            self.stats.unstamped += 1;
            return;
        };
        let m = self.members_per_room;
        // Video from a camera this member does not get by default is misrouted too.
        if stamp.sender / m != self.member.room
            || stamp.sender == self.member.gid
            || (stamp.video && !receives_video(self.member.pos, stamp.sender % m))
        {
            self.stats.misrouted += 1;
            return;
        }
        if let Some(owner) = slot_owner {
            if owner != Some(stamp.sender) {
                self.stats.mislabelled += 1;
            }
        }
        let (pairs, latency) = if stamp.video {
            (&mut self.stats.from_video, &mut rec.video_latency_ns)
        } else {
            if self.stats.first_audio.is_none() {
                self.stats.first_audio = Some(now);
            }
            (&mut self.stats.from, &mut rec.latency_ns)
        };
        let fresh = pairs[(stamp.sender % m) as usize].mark(stamp.seq);
        if fresh && rec.window.0 <= stamp.send_ns && stamp.send_ns < rec.window.1 {
            let lat = payload::ns(now).saturating_sub(stamp.send_ns);
            latency.push(lat.min(u64::from(u32::MAX)) as u32);
        }
    }

    /// A packet not decrypted: its sender is the slot's member, its number follows from
    /// the slot's mapping; no latency (the send time is inside the ciphertext).
    fn on_header_only(&mut self, now: Instant, owner: Option<u32>, stamp_seq: u32, video: bool) {
        let m = self.members_per_room;
        let Some(sender) = owner.filter(|g| g / m == self.member.room && *g != self.member.gid)
        else {
            self.stats.misrouted += 1;
            return;
        };
        if video {
            if !receives_video(self.member.pos, sender % m) {
                self.stats.misrouted += 1;
                return;
            }
            self.stats.from_video[(sender % m) as usize].mark(stamp_seq);
            return;
        }
        if self.stats.first_audio.is_none() {
            self.stats.first_audio = Some(now);
        }
        self.stats.from[(sender % m) as usize].mark(stamp_seq);
    }

    /// Runs the peer's timers: its session's timeout, the floor hello, and its next send.
    pub fn on_tick(&mut self, now: Instant, rec: &mut Recorder) {
        match &mut self.transport {
            Transport::Webrtc(w) => {
                if now >= w.next_timeout {
                    if w.rtc.handle_input(Input::Timeout(now)).is_ok() {
                        self.drain(now, rec);
                    } else {
                        w.next_timeout = now + Duration::from_millis(100);
                    }
                }
            }
            Transport::Plain {
                relay, hello_at, ..
            } => {
                if !self.connected && now >= *hello_at {
                    let mut hello = [0u8; 12];
                    hello[..4].copy_from_slice(HELLO);
                    hello[4..8].copy_from_slice(&self.member.room.to_le_bytes());
                    hello[8..12].copy_from_slice(&self.member.pos.to_le_bytes());
                    if self.socket.send_to(&hello, *relay).is_err() {
                        self.stats.send_errors += 1;
                    }
                    *hello_at = now + Duration::from_millis(200);
                }
            }
        }
        if let Some(due) = self.next_send.filter(|d| now >= *d) {
            self.send_packet(now, due, rec);
            // Keep the schedule: a late send does not shift the ones after it.
            self.next_send = Some(due + PACKET_INTERVAL);
        }
        if let Some(due) = self.next_frame.filter(|d| now >= *d) {
            self.send_frame(now, rec);
            self.next_frame = Some(due + FRAME_INTERVAL);
        }
    }

    /// When this peer next needs [`Peer::on_tick`]: its next send or its session's timeout.
    pub fn next_due(&self) -> Option<Instant> {
        let timer = match &self.transport {
            Transport::Webrtc(w) => Some(w.next_timeout),
            Transport::Plain { hello_at, .. } => (!self.connected).then_some(*hello_at),
        };
        [timer, self.next_send, self.next_frame]
            .into_iter()
            .flatten()
            .min()
    }

    fn schedule_first_send(&mut self, now: Instant) {
        // Spread the members over the 20 ms so that they do not all send at once.
        let offset = Duration::from_micros(rand::random::<u64>() % 20_000);
        self.next_send = Some(now + offset);
        if self.video {
            let offset = Duration::from_micros(rand::random::<u64>() % 33_333);
            self.next_frame = Some(now + offset);
        }
    }

    /// One camera frame: `PACKETS_PER_FRAME` packets back to back, the first one starting
    /// a keyframe every `KEYFRAME_EVERY` frames or after a keyframe request.
    fn send_frame(&mut self, now: Instant, rec: &mut Recorder) {
        let keyframe = self.keyframe_wanted || self.frames.is_multiple_of(KEYFRAME_EVERY);
        self.keyframe_wanted = false;
        self.frames += 1;
        let time = self.video_time;
        self.video_time = self.video_time.wrapping_add(TICKS_PER_FRAME);
        let mut buf = [0u8; 12 + payload::VIDEO_MAX_LEN];
        for i in 0..PACKETS_PER_FRAME {
            let stamp = self.next_stamp(now, true, rec);
            let last = i + 1 == PACKETS_PER_FRAME;
            match &mut self.transport {
                Transport::Webrtc(w) => {
                    let n = payload::encode_video(stamp, i == 0, keyframe, &mut buf);
                    let Some(track) = w.video.as_mut() else {
                        return;
                    };
                    if !track.write(
                        &mut w.rtc,
                        now,
                        time,
                        &buf[..n],
                        last,
                        ExtensionValues::default(),
                    ) {
                        self.stats.send_errors += 1;
                        return;
                    }
                }
                Transport::Plain {
                    relay,
                    ssrc,
                    video_rtp_seq,
                    ..
                } => {
                    buf[0] = 0x80;
                    buf[1] = PLAIN_PT_VIDEO | if last { 0x80 } else { 0 };
                    buf[2..4].copy_from_slice(&video_rtp_seq.to_be_bytes());
                    buf[4..8].copy_from_slice(&time.to_be_bytes());
                    buf[8..12].copy_from_slice(&(*ssrc | 1).to_be_bytes());
                    *video_rtp_seq = video_rtp_seq.wrapping_add(1);
                    let n = payload::encode_video(stamp, i == 0, keyframe, &mut buf[12..]);
                    if self.socket.send_to(&buf[..12 + n], *relay).is_err() {
                        self.stats.send_errors += 1;
                    }
                }
            }
        }
        self.drain(now, rec);
    }

    /// The stamp of the member's next audio or video packet, counted if it is sent inside
    /// the window.
    fn next_stamp(&mut self, now: Instant, video: bool, rec: &Recorder) -> Stamp {
        let (seq, first, sent) = if video {
            let s = &mut self.stats;
            (
                &mut self.video_seq,
                &mut s.video_first_in_window,
                &mut s.video_sent_in_window,
            )
        } else {
            let s = &mut self.stats;
            (&mut self.seq, &mut s.first_in_window, &mut s.sent_in_window)
        };
        let stamp = Stamp {
            sender: self.member.gid,
            seq: *seq,
            send_ns: payload::ns(now),
            video,
        };
        *seq += 1;
        if rec.in_window(stamp.send_ns) {
            first.get_or_insert(stamp.seq);
            *sent += 1;
        }
        stamp
    }

    fn send_packet(&mut self, now: Instant, due: Instant, rec: &mut Recorder) {
        let stamp = self.next_stamp(now, false, rec);
        if rec.in_window(stamp.send_ns) {
            let lag = now.saturating_duration_since(due).as_nanos();
            rec.send_lag_ns.push(lag.min(u128::from(u32::MAX)) as u32);
        }
        let time = self.rtp_time;
        self.rtp_time = self.rtp_time.wrapping_add(SAMPLES_PER_PACKET);
        let mut buf = [0u8; 12 + payload::MAX_LEN];
        match &mut self.transport {
            Transport::Webrtc(w) => {
                let n = payload::encode(stamp, &mut buf);
                let ext = ExtensionValues {
                    audio_level: Some(AUDIO_LEVEL),
                    voice_activity: Some(true),
                    ..Default::default()
                };
                let sent = w
                    .audio
                    .as_mut()
                    .is_some_and(|t| t.write(&mut w.rtc, now, time, &buf[..n], false, ext));
                if !sent {
                    self.stats.send_errors += 1;
                    return;
                }
                self.drain(now, rec);
            }
            Transport::Plain {
                relay,
                ssrc,
                rtp_seq,
                ..
            } => {
                buf[0] = 0x80;
                buf[1] = PLAIN_PT_AUDIO;
                buf[2..4].copy_from_slice(&rtp_seq.to_be_bytes());
                buf[4..8].copy_from_slice(&time.to_be_bytes());
                buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
                *rtp_seq = rtp_seq.wrapping_add(1);
                let n = payload::encode(stamp, &mut buf[12..]);
                if self.socket.send_to(&buf[..12 + n], *relay).is_err() {
                    self.stats.send_errors += 1;
                }
            }
        }
    }

    /// Polls the session until its next timeout: datagrams out, events handled.
    fn drain(&mut self, now: Instant, rec: &mut Recorder) {
        loop {
            let Transport::Webrtc(w) = &mut self.transport else {
                return;
            };
            let out = match w.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    let _ = w.to_signal.send(ToSignal::Failed(format!("webrtc: {e}")));
                    w.rtc.disconnect();
                    w.next_timeout = now + Duration::from_secs(3600);
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    w.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    if self.socket.send_to(&t.contents, t.destination).is_err() {
                        self.stats.send_errors += 1;
                    }
                }
                Output::Event(Event::Connected) => {
                    let _ = w.to_signal.send(ToSignal::Connected);
                    self.connected = true;
                    self.stats.connected_at = Some(now);
                    if self.stats.role.sends() {
                        self.schedule_first_send(now);
                    }
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let ssrc = *p.header.ssrc;
                    let ext = *p.seq_no;
                    if !w.streams.contains_key(&ssrc) {
                        if let Some(mid) = w
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid())
                        {
                            w.streams.insert(
                                ssrc,
                                RxStream {
                                    mid,
                                    video: w.video_slots.contains(&mid),
                                    last_ext: ext,
                                    offset: None,
                                },
                            );
                        }
                    }
                    let stamp = payload::decode(&p.payload);
                    self.stats.decrypted += 1;
                    let st = w.streams.get_mut(&ssrc);
                    let owner = st
                        .as_ref()
                        .map(|st| w.owners.get(&st.mid).copied().flatten());
                    if let (Some(st), Some(stamp)) = (st, stamp) {
                        st.last_ext = st.last_ext.max(ext);
                        let offset = i64::from(stamp.seq) - ext as i64;
                        if st.offset.is_some_and(|o| o != offset) {
                            self.stats.sample_mismatches += 1;
                        }
                        st.offset = Some(offset);
                    }
                    self.on_media(now, owner, stamp, rec);
                }
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_wanted = true,
                Output::Event(_) => {}
            }
        }
    }

    /// Applies signaling news to the session.
    pub fn on_signal(&mut self, now: Instant, msg: FromSignal, rec: &mut Recorder) {
        let Transport::Webrtc(w) = &mut self.transport else {
            return;
        };
        let result = match msg {
            FromSignal::Joined {
                sdp,
                join_sent,
                answered,
            } => {
                self.stats.join_sent = Some(join_sent);
                self.stats.answered = Some(answered);
                match (SdpAnswer::from_sdp_string(&sdp), w.pending.take()) {
                    (Ok(answer), Some(pending)) => w
                        .rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| format!("the join answer was refused: {e}")),
                    (Err(e), _) => Err(format!("the join answer does not parse: {e}")),
                    (_, None) => Err("a second joinResult".to_string()),
                }
            }
            FromSignal::Offer { sdp, tracks } => {
                set_owners(&mut w.owners, &mut w.video_slots, &tracks);
                match SdpOffer::from_sdp_string(&sdp) {
                    Ok(offer) => match w.rtc.sdp_api().accept_offer(offer) {
                        Ok(answer) => {
                            let _ = w.to_signal.send(ToSignal::Answer(answer.to_sdp_string()));
                            Ok(())
                        }
                        Err(e) => Err(format!("the server's offer was refused: {e}")),
                    },
                    Err(e) => Err(format!("the server's offer does not parse: {e}")),
                }
            }
            FromSignal::Tracks(tracks) => {
                set_owners(&mut w.owners, &mut w.video_slots, &tracks);
                Ok(())
            }
            FromSignal::JoinSent(at) => {
                self.stats.join_sent = Some(at);
                Ok(())
            }
        };
        if let Err(e) = result {
            let _ = w.to_signal.send(ToSignal::Failed(e));
        }
        self.drain(now, rec);
    }
}

fn set_owners(
    owners: &mut HashMap<Mid, Option<u32>>,
    video_slots: &mut std::collections::HashSet<Mid>,
    tracks: &[TrackSlot],
) {
    for slot in tracks {
        let gid = slot.open_id.as_ref().and_then(|o| gid_of(o.as_str()));
        let mid = Mid::from(slot.mid.as_str());
        owners.insert(mid, gid);
        if slot.kind == voipchat_proto::TrackKind::Video {
            video_slots.insert(mid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::receives_video;

    #[test]
    fn each_member_gets_the_first_two_other_cameras() {
        let got = |r: u32| {
            (0..10)
                .filter(|&s| receives_video(r, s))
                .collect::<Vec<_>>()
        };
        assert_eq!(got(0), [1, 2]);
        assert_eq!(got(1), [0, 2]);
        assert_eq!(got(2), [0, 1]);
        assert_eq!(got(9), [0, 1]);
    }
}
