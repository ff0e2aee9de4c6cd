//! The client's state machine, without sockets or clocks: one str0m `Rtc` (frame mode, the
//! client as controlling ICE agent and offerer), the signaling state around it, and the
//! clock that stamps outgoing Opus packets.
//!
//! Order of calls, as for str0m itself: one `handle_*` or command (`send_opus`, `close`),
//! then [`Peer::poll_output`] until it returns [`PeerOutput::Timeout`], then wait for the
//! next socket read, signaling frame, command or that timeout. `crate::client` is the tokio
//! shell that does exactly this; the tests drive it in memory with virtual time.

use crate::client::{ClientError, ClientEvent, MediaTransport, SharedStats};
use crate::opus;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::{Candidate, Event, Input, Output, Rtc};
use voipchat_proto::signal::api;
use voipchat_proto::{ClientMsg, ErrorCode, OpenId, ServerMsg, Status, TrackKind, TrackSlot};

/// At most this many `Audio` events wait in the event queue; beyond it new ones are
/// dropped (and counted) so that an application that never reads events cannot grow the
/// queue without bound. 5000 is ten seconds of nine talking members.
pub(crate) const MAX_QUEUED_AUDIO_EVENTS: usize = 5_000;

/// When a caller resumes sending after a pause longer than this, the RTP clock jumps
/// forward to the wall clock instead of continuing where the last packet ended, as a real
/// microphone's timestamps would.
const SEND_RESYNC_AFTER: Duration = Duration::from_millis(200);

/// What the peer wants its driver to do next.
#[derive(Debug)]
pub(crate) enum PeerOutput {
    /// Send a datagram on the UDP socket.
    Transmit(Transmit),
    /// Send a signaling message on the WebSocket.
    Signal(ClientMsg),
    /// Hand an event to the application.
    Event(ClientEvent),
    /// Resolve a request waiting for the server's answer.
    Reply(Reply),
    /// Nothing more until this instant (or until new input).
    Timeout(Instant),
}

/// Results the server sends for requests; the driver routes them to the waiting caller.
#[derive(Debug)]
pub(crate) enum Reply {
    Joined(Result<Vec<OpenId>, ClientError>),
    MuteConfig(Status),
    Subscribe(Status),
    Exit(Status),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The join offer is out; waiting for `joinResult`.
    Joining,
    /// In the room.
    Joined,
    /// Refused, or the join failed; nothing more will happen.
    Failed,
}

/// RTP clock of the one send track.
#[derive(Debug)]
struct SendClock {
    /// Random RTP timestamp of the first packet (RFC 3550 §5.1).
    rtp_base: u64,
    /// Samples sent since the first packet, at 48 kHz.
    samples: u64,
    /// When the first packet was sent.
    started: Option<Instant>,
}

impl SendClock {
    /// The RTP time for a packet sent at `now`, and whether it starts a talkspurt.
    fn stamp(&mut self, now: Instant, samples: u64) -> (MediaTime, bool) {
        let mut talkspurt = false;
        match self.started {
            None => {
                self.started = Some(now);
                talkspurt = true;
            }
            Some(start) => {
                let due = start + Duration::from_micros(self.samples.saturating_mul(1_000) / 48);
                if now > due + SEND_RESYNC_AFTER {
                    self.samples = opus::duration_to_samples(now - start);
                    talkspurt = true;
                }
            }
        }
        let t = MediaTime::new(
            self.rtp_base.wrapping_add(self.samples),
            Frequency::FORTY_EIGHT_KHZ,
        );
        self.samples = self.samples.saturating_add(samples);
        (t, talkspurt)
    }
}

pub(crate) struct Peer {
    rtc: Rtc,
    /// The address of our one host candidate: the UDP socket's, or for TCP the IP with the
    /// discard port 9 (an active candidate has no port of its own, RFC 6544).
    local_addr: SocketAddr,
    /// The protocol of that candidate, and of every packet in and out.
    proto: Protocol,
    /// The m-line we send on.
    send_mid: Mid,
    /// The camera m-line, in a video room.
    video_mid: Option<Mid>,
    /// RTP time of the camera at 90 kHz: a random base plus the frame durations given.
    video_time: u64,
    /// Our join offer, until the `joinResult` answers it.
    pending_offer: Option<SdpPendingOffer>,
    phase: Phase,
    /// ICE and DTLS are up (str0m's `Event::Connected`); packets are sent only then.
    connected: bool,
    /// Negotiated Opus payload type of the send m-line, found at the first send.
    send_pt: Option<Pt>,
    /// Receive slot mid → the member it carries now, and the slot's kind.
    tracks: HashMap<String, Option<OpenId>>,
    track_kinds: HashMap<String, TrackKind>,
    /// Outputs produced by signaling, before the `Rtc`'s own.
    queue: VecDeque<PeerOutput>,
    clock: SendClock,
    stats: Arc<SharedStats>,
}

impl Peer {
    /// Builds the `Rtc` (Opus, and VP8 for a video room; standard header extensions: audio
    /// level is id 1) with one host candidate at `local_addr` (UDP, or an active TCP one;
    /// over UDP also a relayed one at `relayed`, a TURN allocation made from `local_addr`),
    /// and the join offer: exactly one audio m-line, sendonly, and in a video room one video
    /// m-line, sendonly.
    pub(crate) fn new(
        now: Instant,
        transport: MediaTransport,
        local_addr: SocketAddr,
        stats: Arc<SharedStats>,
        video: bool,
        relayed: Option<SocketAddr>,
    ) -> Result<(Peer, String), ClientError> {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(video)
            .build(now);
        let (candidate, proto) = match transport {
            MediaTransport::Udp => (Candidate::host(local_addr, "udp"), Protocol::Udp),
            MediaTransport::Tcp => (
                Candidate::builder()
                    .tcp()
                    .host(local_addr)
                    .tcptype(TcpType::Active)
                    .build(),
                Protocol::Tcp,
            ),
        };
        let candidate = candidate.map_err(|e| {
            ClientError::InvalidOptions(format!("host candidate {local_addr}: {e}"))
        })?;
        if rtc.add_local_candidate(candidate).is_none() {
            return Err(ClientError::InvalidOptions(format!(
                "{local_addr} is not usable as a host candidate"
            )));
        }
        if let Some(relayed) = relayed {
            // str0m sends from this candidate with `Transmit::source == relayed`; the driver
            // hands those to the TURN client.
            let added = Candidate::relayed(relayed, local_addr, "udp")
                .ok()
                .and_then(|c| rtc.add_local_candidate(c));
            if added.is_none() {
                tracing::warn!(%relayed, "the relayed address is not usable as a candidate");
            }
        }
        let mut change = rtc.sdp_api();
        let send_mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = video
            .then(|| change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let Some((offer, pending)) = change.apply() else {
            // apply() returns None only when there are no changes; we just added a media.
            return Err(ClientError::Rtc(
                "no offer from a change with one m-line".into(),
            ));
        };
        let sdp = offer.to_sdp_string();
        let peer = Peer {
            rtc,
            local_addr,
            proto,
            send_mid,
            video_mid,
            video_time: u64::from(rand::random::<u32>()),
            pending_offer: Some(pending),
            phase: Phase::Joining,
            connected: false,
            send_pt: None,
            tracks: HashMap::new(),
            track_kinds: HashMap::new(),
            queue: VecDeque::new(),
            clock: SendClock {
                rtp_base: u64::from(rand::random::<u32>()),
                samples: 0,
                started: None,
            },
            stats,
        };
        Ok((peer, sdp))
    }

    #[cfg(test)]
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// Our UDP socket's address: the destination of every datagram read from it.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// False once the `Rtc` is closed or the join failed: the driver may stop.
    pub(crate) fn is_alive(&self) -> bool {
        self.phase != Phase::Failed && self.rtc.is_alive()
    }

    /// The member a receive slot carries now.
    #[cfg(test)]
    pub(crate) fn track_owner(&self, mid: &str) -> Option<&OpenId> {
        self.tracks.get(mid).and_then(Option::as_ref)
    }

    /// One text frame from the signaling WebSocket. Never panics on any input; what cannot
    /// be used becomes a [`ClientEvent::Error`].
    pub(crate) fn handle_frame(&mut self, frame: &str) {
        let msg = match ServerMsg::parse(frame) {
            Ok(msg) => msg,
            Err(failure) => {
                tracing::warn!("malformed server frame: {}", failure.detail);
                self.local_error(
                    ErrorCode::MalformedMessage,
                    format!("malformed server frame: {}", failure.detail),
                );
                return;
            }
        };
        tracing::debug!(msg = %loggable(&msg), "server message");
        match msg {
            ServerMsg::JoinResult {
                status,
                open_id_list,
                sdp,
                redirect,
                ..
            } => self.on_join_result(status, open_id_list, sdp, redirect),
            ServerMsg::ExitResult { status } => self.reply(Reply::Exit(status)),
            ServerMsg::MuteConfigResult { status } => self.reply(Reply::MuteConfig(status)),
            ServerMsg::Offer { sdp, tracks } => self.on_offer(&sdp, tracks),
            ServerMsg::Tracks { tracks } => {
                self.update_tracks(&tracks);
                self.emit(ClientEvent::Tracks(tracks));
            }
            ServerMsg::MembersChanged { open_id_list, .. } => {
                self.emit(ClientEvent::MembersChanged(open_id_list))
            }
            ServerMsg::SpeakersChanged { open_id_list, .. } => {
                self.emit(ClientEvent::SpeakersChanged(open_id_list))
            }
            ServerMsg::MuteChanged {
                muted_open_id_list, ..
            } => self.emit(ClientEvent::MuteChanged(muted_open_id_list)),
            ServerMsg::ServerMuteChanged { server_muted, .. } => {
                self.emit(ClientEvent::ServerMuteChanged(server_muted))
            }
            ServerMsg::Interrupted { status } => self.emit(ClientEvent::Interrupted {
                err_code: status.err_code,
                err_msg: status.err_msg,
            }),
            ServerMsg::Error { status } => self.emit(ClientEvent::Error {
                err_code: status.err_code,
                err_msg: status.err_msg,
            }),
            ServerMsg::Pong => {}
            // The driver reads the connection's hello before the peer exists; another one
            // would be a server bug with nothing to act on.
            ServerMsg::Hello { .. } => tracing::debug!("a second hello, ignored"),
            ServerMsg::VideoMembersChanged { open_id_list, .. } => {
                self.emit(ClientEvent::VideoMembersChanged(open_id_list))
            }
            ServerMsg::SubscribeVideoMembersResult { status } => {
                self.reply(Reply::Subscribe(status))
            }
        }
    }

    /// A binary (or otherwise unusable) WebSocket frame.
    pub(crate) fn handle_unusable_frame(&mut self, what: &str) {
        self.local_error(
            ErrorCode::MalformedMessage,
            format!("unexpected {what} frame"),
        );
    }

    /// One packet from the media transport, a UDP datagram or one TCP frame (`destination`:
    /// our socket's address), or a datagram relayed by TURN (`destination`: the relayed
    /// address).
    pub(crate) fn handle_packet(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        let Ok(contents) = contents.try_into() else {
            tracing::debug!(%source, len = contents.len(), "ignoring unknown packet");
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: self.proto,
                source,
                destination,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(%source, "packet refused: {e}");
        }
    }

    /// Time has reached the instant of the last [`PeerOutput::Timeout`].
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!("timeout handling: {e}");
        }
    }

    /// Sends one Opus packet now (or drops it, counted, before ICE and DTLS are up).
    /// `audio_level` is RFC 6464's -dBov (0 loudest, 127 silence) and voice activity.
    pub(crate) fn send_opus(
        &mut self,
        now: Instant,
        payload: Vec<u8>,
        duration: Duration,
        audio_level: Option<(i8, bool)>,
    ) {
        if !self.connected {
            self.stats
                .dropped_unconnected
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(pt) = self.opus_pt() else {
            tracing::warn!("no negotiated Opus payload type; packet dropped");
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (rtp_time, talkspurt) = self.clock.stamp(now, opus::duration_to_samples(duration));
        let Some(mut writer) = self.rtc.writer(self.send_mid) else {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some((level, voice)) = audio_level {
            // str0m takes the level as negative dB; the wire carries its magnitude.
            writer = writer.audio_level(-level.clamp(0, 127), voice);
        }
        match writer
            .start_of_talkspurt(talkspurt)
            .write(pt, now, rtp_time, payload)
        {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!("writing opus: {e}");
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends one VP8 frame (as an encoder or an IVF file gives it) that lasts `duration`,
    /// or drops it, counted, before ICE and DTLS are up or outside a video room.
    pub(crate) fn send_vp8(&mut self, now: Instant, frame: Vec<u8>, duration: Duration) {
        let Some(mid) = self.video_mid.filter(|_| self.connected) else {
            self.stats
                .dropped_unconnected
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let time = MediaTime::new(self.video_time, Frequency::NINETY_KHZ);
        self.video_time = self
            .video_time
            .wrapping_add((duration.as_micros() * 9 / 100) as u64);
        let Some(writer) = self.rtc.writer(mid) else {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
        else {
            tracing::warn!("no negotiated VP8 payload type; frame dropped");
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match writer.write(pt, now, time, frame) {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!("writing vp8: {e}");
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts closing the peer connection (RTCP BYE, DTLS close_notify); keep draining.
    pub(crate) fn close(&mut self) {
        if let Err(e) = self.rtc.close() {
            tracing::debug!("closing rtc: {e}");
        }
    }

    /// The next thing to do. Call until it returns [`PeerOutput::Timeout`].
    pub(crate) fn poll_output(&mut self) -> PeerOutput {
        loop {
            if let Some(out) = self.queue.pop_front() {
                return out;
            }
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!("webrtc failure, closing: {e}");
                    self.rtc.disconnect();
                    self.local_error(ErrorCode::SystemError, format!("webrtc failure: {e}"));
                    continue;
                }
            };
            match output {
                Output::Timeout(t) => return PeerOutput::Timeout(t),
                Output::Transmit(t) => return PeerOutput::Transmit(t),
                Output::Event(e) => self.on_rtc_event(e),
            }
        }
    }

    fn on_rtc_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                self.emit(ClientEvent::Connected);
            }
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(?state, "ice connection state");
            }
            Event::MediaAdded(m) => {
                tracing::debug!(mid = %m.mid, direction = ?m.direction, "media added");
            }
            Event::MediaData(data) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let mid = data.mid.to_string();
                let from = self.tracks.get(&mid).cloned().flatten();
                let video = self.track_kinds.get(&mid) == Some(&TrackKind::Video);
                if self.stats.queued_audio.load(Ordering::Relaxed) >= MAX_QUEUED_AUDIO_EVENTS {
                    self.stats
                        .audio_events_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.stats.queued_audio.fetch_add(1, Ordering::Relaxed);
                if video {
                    self.emit(ClientEvent::Video {
                        from,
                        mid,
                        frame: data.data.to_vec(),
                        rtp_time: data.time.rebase(Frequency::NINETY_KHZ).numer(),
                    });
                } else {
                    // Opus media time is at 48 kHz already; rebase is a no-op kept for safety.
                    let rtp_time = data.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer();
                    self.emit(ClientEvent::Audio {
                        from,
                        mid,
                        payload: data.data.to_vec(),
                        rtp_time,
                    });
                }
            }
            Event::KeyframeRequest(_) => self.emit(ClientEvent::KeyframeRequested),
            Event::Closed => tracing::debug!("rtc closed"),
            other => tracing::trace!(?other, "rtc event"),
        }
    }

    fn on_join_result(
        &mut self,
        status: Status,
        open_id_list: Vec<OpenId>,
        sdp: Option<String>,
        redirect: Option<String>,
    ) {
        if self.phase != Phase::Joining {
            self.local_error(
                ErrorCode::UnexpectedMessage,
                "joinResult after the join".into(),
            );
            return;
        }
        let result = if !status.is_ok() {
            match redirect {
                Some(url) if status.err_code == ErrorCode::RoomElsewhere.code() => {
                    Err(ClientError::Redirected { url })
                }
                _ => Err(ClientError::Refused {
                    err_code: status.err_code,
                    err_msg: status.err_msg,
                }),
            }
        } else {
            match sdp {
                None => Err(ClientError::Protocol(
                    "joinResult ok without an sdp answer".into(),
                )),
                Some(sdp) => self.accept_answer(&sdp).map(|()| open_id_list),
            }
        };
        match &result {
            Ok(list) => {
                self.phase = Phase::Joined;
                self.emit(ClientEvent::Joined {
                    open_id_list: list.clone(),
                });
            }
            Err(_) => self.phase = Phase::Failed,
        }
        self.reply(Reply::Joined(result));
    }

    fn accept_answer(&mut self, sdp: &str) -> Result<(), ClientError> {
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| ClientError::Sdp(format!("answer does not parse: {e}")))?;
        let Some(pending) = self.pending_offer.take() else {
            return Err(ClientError::Protocol(
                "no offer waiting for an answer".into(),
            ));
        };
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| ClientError::Sdp(format!("answer refused: {e}")))
    }

    fn on_offer(&mut self, sdp: &str, tracks: Vec<TrackSlot>) {
        if self.phase != Phase::Joined {
            self.local_error(
                ErrorCode::UnexpectedMessage,
                "offer before joinResult".into(),
            );
            return;
        }
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(o) => o,
            Err(e) => {
                self.local_error(ErrorCode::InvalidSdp, format!("offer does not parse: {e}"));
                return;
            }
        };
        match self.rtc.sdp_api().accept_offer(offer) {
            Ok(answer) => {
                self.update_tracks(&tracks);
                self.queue.push_back(PeerOutput::Signal(ClientMsg::Answer {
                    sdp: answer.to_sdp_string(),
                }));
                self.emit(ClientEvent::Tracks(tracks));
            }
            Err(e) => self.local_error(ErrorCode::InvalidSdp, format!("offer refused: {e}")),
        }
    }

    fn update_tracks(&mut self, tracks: &[TrackSlot]) {
        for slot in tracks {
            self.tracks.insert(slot.mid.clone(), slot.open_id.clone());
            self.track_kinds.insert(slot.mid.clone(), slot.kind);
        }
    }

    fn opus_pt(&mut self) -> Option<Pt> {
        if self.send_pt.is_none() {
            let writer = self.rtc.writer(self.send_mid)?;
            self.send_pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt());
        }
        self.send_pt
    }

    fn emit(&mut self, event: ClientEvent) {
        self.queue.push_back(PeerOutput::Event(event));
    }

    fn reply(&mut self, reply: Reply) {
        self.queue.push_back(PeerOutput::Reply(reply));
    }

    /// A failure found on this side, reported like the server's `error` messages.
    fn local_error(&mut self, code: ErrorCode, detail: String) {
        self.emit(ClientEvent::Error {
            err_code: code.code(),
            err_msg: format!("{}:fail {detail}", api::SIGNALING),
        });
    }
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;

/// A server message as the debug log shows it: its SDP, which holds the session's ICE
/// password, reduced to its size.
fn loggable(msg: &ServerMsg) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&msg.to_json()).unwrap_or_default();
    if let Some(sdp) = v.get_mut("sdp") {
        if let Some(text) = sdp.as_str() {
            *sdp = format!("<{} bytes>", text.len()).into();
        }
    }
    v.to_string()
}
