//! The sans-IO engine fed what the network and the signaling can bring: arbitrary datagrams
//! (alone, and mixed into a real str0m peer's session), and arbitrary sequences of joins,
//! exits, mutes, answers, subscriptions, quota answers, kicks and time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input as RtcInput, Output as RtcOutput, Rtc};
use voipchat_core::{ConnId, Engine, EngineConfig, Output, QuotaAnswer};
use voipchat_proto::{
    AppId, ClientMsg, GroupId, JoinRequest, MuteConfig, OpenId, RoomKey, RoomType, ServerMsg,
};

use crate::Input;

const SERVER: &str = "127.0.0.1:3478";
const CLIENT: &str = "127.0.0.1:40000";

/// Most steps one input drives (a longer input is cut): bounds the time per input.
const MAX_STEPS: usize = 400;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

/// A join as the server hands it to the engine (already authenticated).
fn request(open_id: &str, group: &str, kind: RoomType, sdp: String) -> JoinRequest {
    JoinRequest {
        app_id: AppId::new("app"),
        open_id: OpenId::new(open_id),
        group_id: GroupId::new(group),
        nonce_str: "n".into(),
        time_stamp: 1,
        signature: "0".repeat(64),
        room_type: kind,
        mute_config: MuteConfig::default(),
        sdp,
    }
}

fn key(group: &str) -> RoomKey {
    RoomKey::new(AppId::new("app"), GroupId::new(group))
}

/// A real offer of each room type, made once by a str0m peer.
fn offers() -> &'static (String, String) {
    static OFFERS: OnceLock<(String, String)> = OnceLock::new();
    OFFERS.get_or_init(|| {
        let make = |video: bool| {
            let mut rtc = Rtc::builder().build(Instant::now());
            rtc.add_local_candidate(Candidate::host(addr(CLIENT), "udp").expect("candidate"));
            let mut api = rtc.sdp_api();
            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            if video {
                api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            }
            let (offer, _) = api.apply().expect("an offer");
            offer.to_sdp_string()
        };
        (make(false), make(true))
    })
}

/// Datagrams: an engine with one member whose real str0m peer connects to it (ICE, DTLS),
/// and the input's datagrams between the peer's packets: from the member's address, from
/// strangers (by UDP and as ICE-over-TCP frames), and real packets of the peer with bytes changed. None of it may panic, and
/// none of it may cost the member its place (time stays well inside the media timeout),
/// except a changed handshake record, which fails the handshake as DTLS requires.
pub fn datagrams(data: &[u8]) {
    datagrams_run(data);
}

/// What a run of [`datagrams`] reached, so tests can see that it reaches the connected
/// session and not only the gate in front of it.
#[derive(Debug, Default)]
pub struct DatagramRun {
    /// The peer's ICE and DTLS completed (its `Connected` event).
    pub connected: bool,
}

/// [`datagrams`], telling what the run reached.
pub fn datagrams_run(data: &[u8]) -> DatagramRun {
    let mut run = DatagramRun::default();
    let mut input = Input::new(data);
    let mut now = Instant::now();
    let start = now;
    // With ICE over TCP on: strangers' bytes also come in as TCP frames.
    let mut config = EngineConfig::new(addr(SERVER));
    config.ice_tcp = true;
    let mut engine = Engine::new(config, now);
    let mut rtc = Rtc::builder().build(now);
    rtc.add_local_candidate(Candidate::host(addr(CLIENT), "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");
    let conn = ConnId(1);
    engine.handle_join(
        now,
        conn,
        request("member", "room", RoomType::Voice, offer.to_sdp_string()),
    );
    let mut pending = Some(pending);
    let mut to_peer: Vec<Vec<u8>> = Vec::new();
    drain_engine(&mut engine, now, &mut to_peer, |msg| {
        if let ServerMsg::JoinResult { sdp: Some(sdp), .. } = msg {
            let answer = SdpAnswer::from_sdp_string(&sdp).expect("the engine's answer parses");
            if let Some(p) = pending.take() {
                rtc.sdp_api()
                    .accept_answer(p, answer)
                    .expect("the answer fits the offer");
            }
        }
    });
    assert_eq!(engine.member_count(), 1, "the member joined");

    let mut told: Vec<String> = Vec::new();
    let mut handshake_broken = false;
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        steps += 1;
        match input.u8() % 5 {
            0 => engine.handle_datagram(now, addr(CLIENT), input.bytes(1500)),
            1 => {
                let port = 1024 + input.u16() % 60000;
                let from = SocketAddr::from(([127, 0, 0, 2], port));
                // Odd ports: one frame of a TCP connection (ICE over TCP), else UDP.
                if port % 2 == 1 {
                    engine.handle_tcp_frame(now, from, input.bytes(1500));
                } else {
                    engine.handle_datagram(now, from, input.bytes(1500));
                }
            }
            2 => {
                // The peer's next real packet, with bytes changed.
                if let Some(mut packet) = next_transmit(&mut rtc) {
                    for _ in 0..=input.u8() % 4 {
                        let i = input.u16() as usize % packet.len().max(1);
                        if let Some(b) = packet.get_mut(i) {
                            *b ^= input.u8() | 1;
                        }
                    }
                    // A DTLS record (first byte 20 to 63) of the handshake, changed: the
                    // handshake fails (DTLS checks its whole transcript in Finished), as it
                    // would with any peer, and the member is told -11003.
                    let dtls = packet.first().is_some_and(|b| (20..=63).contains(b));
                    handshake_broken |= dtls && !rtc.is_connected();
                    engine.handle_datagram(now, addr(CLIENT), &packet);
                }
            }
            3 => {
                // The peer and the engine talk for a while.
                for _ in 0..=input.u8() % 8 {
                    now += Duration::from_millis(20);
                    exchange(&mut engine, &mut rtc, now, &mut to_peer, &mut told);
                }
            }
            _ => {
                // The engine's packets reach the peer with bytes changed (a hostile path
                // must not hurt the server through the peer's replies).
                now += Duration::from_millis(5);
                exchange(&mut engine, &mut rtc, now, &mut to_peer, &mut told);
            }
        }
        engine.handle_timeout(now);
        drain_engine(&mut engine, now, &mut to_peer, |msg| note(&mut told, msg));
        if engine.member_count() == 0 {
            told.push(format!("gone after step {steps} at {:?}", now - start));
            break;
        }
    }
    assert!(
        now - start < Duration::from_secs(4),
        "time stayed inside the media timeout"
    );
    if handshake_broken && engine.member_count() == 0 {
        assert!(
            told.iter().any(|t| t.contains("-11003")),
            "a member whose handshake broke is told why: {told:?}"
        );
        return run;
    }
    assert_eq!(
        engine.member_count(),
        1,
        "hostile datagrams cost the member its place: {told:?}"
    );
    run.connected = connected(&mut rtc);
    run
}

/// Whether the peer has connected, from the events it has left.
fn connected(rtc: &mut Rtc) -> bool {
    let mut yes = false;
    for _ in 0..64 {
        match rtc.poll_output() {
            Ok(RtcOutput::Event(Event::Connected)) => yes = true,
            Ok(RtcOutput::Timeout(_)) | Err(_) => break,
            _ => {}
        }
    }
    yes || rtc.is_connected()
}

/// Keeps what the member is told when it leaves, for the failure message.
fn note(told: &mut Vec<String>, msg: ServerMsg) {
    if matches!(msg, ServerMsg::Interrupted { .. }) {
        told.push(msg.to_json());
    }
}

/// The peer's next datagram, if it has one now.
fn next_transmit(rtc: &mut Rtc) -> Option<Vec<u8>> {
    for _ in 0..32 {
        match rtc.poll_output() {
            Ok(RtcOutput::Transmit(t)) => return Some(t.contents.to_vec()),
            Ok(RtcOutput::Event(_)) => continue,
            Ok(RtcOutput::Timeout(_)) | Err(_) => return None,
        }
    }
    None
}

/// One round of traffic both ways at `now`.
fn exchange(
    engine: &mut Engine,
    rtc: &mut Rtc,
    now: Instant,
    to_peer: &mut Vec<Vec<u8>>,
    told: &mut Vec<String>,
) {
    if rtc.handle_input(RtcInput::Timeout(now)).is_err() {
        return;
    }
    for _ in 0..64 {
        match rtc.poll_output() {
            Ok(RtcOutput::Transmit(t)) => engine.handle_datagram(now, addr(CLIENT), &t.contents),
            Ok(RtcOutput::Event(Event::IceConnectionStateChange(_))) | Ok(RtcOutput::Event(_)) => {}
            Ok(RtcOutput::Timeout(_)) | Err(_) => break,
        }
    }
    engine.handle_timeout(now);
    drain_engine(engine, now, to_peer, |msg| note(told, msg));
    for packet in to_peer.drain(..) {
        let Ok(contents) = packet.as_slice().try_into() else {
            continue;
        };
        let receive = Receive {
            proto: Protocol::Udp,
            source: addr(SERVER),
            destination: addr(CLIENT),
            contents,
        };
        let _ = rtc.handle_input(RtcInput::Receive(now, receive));
    }
}

/// Runs the engine's outputs until it waits: datagrams are kept for the peer, signaling
/// goes to `on_signal`, quota requests are granted.
fn drain_engine(
    engine: &mut Engine,
    now: Instant,
    to_peer: &mut Vec<Vec<u8>>,
    mut on_signal: impl FnMut(ServerMsg),
) {
    for _ in 0..10_000 {
        match engine.poll_output() {
            Output::Transmit(t) => to_peer.push(t.contents.to_vec()),
            Output::Signal(_, msg) => on_signal(msg),
            Output::NeedRoomQuota(k) => engine.handle_room_quota(now, &k, QuotaAnswer::Granted),
            Output::Timeout(_) => return,
            _ => {}
        }
    }
    panic!("the engine kept producing output");
}

/// Signaling: six connections, three groups, eight openIds, in any order of joins (real
/// offers of either type, or edited ones), exits, disconnects, mutes, answers, video
/// subscriptions, quota answers, kicks and time. After every step the room rules hold: no
/// room above its cap, no openId twice in a room, every member in exactly one room; and the
/// room and member events (what webhooks are made of) agree with the rooms.
pub fn signaling(data: &[u8]) {
    signaling_run(data);
}

/// What a run of [`signaling`] reached.
#[derive(Debug, Default)]
pub struct SignalingRun {
    /// The most members the engine held at once.
    pub most_members: usize,
    /// Whether a room was ever full.
    pub full: bool,
}

/// [`signaling`], telling what the run reached.
pub fn signaling_run(data: &[u8]) -> SignalingRun {
    let mut run = SignalingRun::default();
    const CAP: usize = 3;
    const GROUPS: [&str; 3] = ["g0", "g1", "g2"];
    let mut input = Input::new(data);
    let mut now = Instant::now();
    let mut config = EngineConfig::new(addr(SERVER));
    config.room_cap = CAP;
    let mut engine = Engine::new(config, now);
    let mut quota: Vec<RoomKey> = Vec::new();
    let mut open: HashSet<RoomKey> = HashSet::new();
    let mut tally: HashMap<RoomKey, usize> = HashMap::new();
    let (voice, video) = offers();
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        steps += 1;
        let conn = ConnId(u64::from(input.u8() % 6));
        match input.u8() % 10 {
            0 | 1 => {
                let open_id = format!("u{}", input.u8() % 8);
                let group = GROUPS[usize::from(input.u8()) % GROUPS.len()];
                let kind = if input.bool() {
                    RoomType::Video
                } else {
                    RoomType::Voice
                };
                let sdp = match input.u8() % 4 {
                    0 => voice.clone(),
                    1 => video.clone(),
                    2 => input.text(4096),
                    _ => {
                        // A real offer with a slice of it replaced.
                        let base = if input.bool() { voice } else { video };
                        let at = usize::from(input.u16()) % base.len();
                        let mut s = base.clone();
                        let end = (at + usize::from(input.u8())).min(s.len());
                        if s.is_char_boundary(at) && s.is_char_boundary(end) {
                            s.replace_range(at..end, &input.text(64));
                        }
                        s
                    }
                };
                let mut req = request(&open_id, group, kind, sdp);
                req.mute_config = MuteConfig {
                    mute_microphone: input.bool(),
                    mute_earphone: input.bool(),
                    mute_camera: input.bool(),
                };
                engine.handle_join(now, conn, req);
            }
            2 => engine.handle_exit(now, conn),
            3 => engine.handle_disconnect(now, conn),
            4 => engine.handle_mute(
                now,
                conn,
                MuteConfig {
                    mute_microphone: input.bool(),
                    mute_earphone: input.bool(),
                    mute_camera: input.bool(),
                },
            ),
            5 => engine.handle_answer(now, conn, &input.text(4096)),
            6 => {
                let list = (0..input.u8() % 12)
                    .map(|_| OpenId::new(format!("u{}", input.u8() % 10)))
                    .collect();
                // Through the parser, as the server does it: a list it refuses never
                // reaches the engine.
                let frame = ClientMsg::SubscribeVideoMembers { open_id_list: list }.to_json();
                if let Ok(ClientMsg::SubscribeVideoMembers { open_id_list }) =
                    ClientMsg::parse(&frame)
                {
                    engine.handle_subscribe_video(now, conn, open_id_list);
                }
            }
            7 => {
                if !quota.is_empty() {
                    let k = quota.remove(usize::from(input.u8()) % quota.len());
                    let answer = match input.u8() % 3 {
                        0 => QuotaAnswer::Granted,
                        1 => QuotaAnswer::Exhausted,
                        _ => QuotaAnswer::Failed("store down".into()),
                    };
                    engine.handle_room_quota(now, &k, answer);
                }
            }
            8 => {
                let group = GROUPS[usize::from(input.u8()) % GROUPS.len()];
                let open_id = OpenId::new(format!("u{}", input.u8() % 8));
                engine.kick(now, &key(group), &open_id);
            }
            _ => now += Duration::from_millis(u64::from(input.u16()) % 10_000),
        }
        engine.handle_timeout(now);
        for _ in 0..100_000 {
            match engine.poll_output() {
                Output::NeedRoomQuota(k) => {
                    assert!(!quota.contains(&k), "one quota request per room at a time");
                    quota.push(k);
                }
                // The events a backend's webhooks are made of tell the same story as the
                // engine's own state: a room opens once, members come and go inside it,
                // and it closes empty.
                Output::RoomOpened(k, _) => assert!(open.insert(k), "a room opened twice"),
                Output::RoomClosed(k, _) => {
                    assert_eq!(
                        tally.get(&k).copied().unwrap_or(0),
                        0,
                        "closed with members"
                    );
                    assert!(open.remove(&k), "a room closed that was not open");
                }
                Output::MemberJoined(c) => {
                    assert!(open.contains(&c.room), "a member joined a room not open");
                    let n = tally.entry(c.room.clone()).or_insert(0);
                    *n += 1;
                    assert_eq!(c.members, *n, "members after a join");
                }
                Output::MemberLeft(c, _) => {
                    let n = tally.entry(c.room.clone()).or_insert(0);
                    assert!(*n > 0, "a member left an empty room");
                    *n -= 1;
                    assert_eq!(c.members, *n, "members after a leave");
                }
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        let mut members = 0;
        for group in GROUPS {
            let list = engine.room_members(&key(group));
            let told = tally.get(&key(group)).copied().unwrap_or(0);
            assert_eq!(told, list.len(), "joins minus leaves told for {group}");
            assert!(list.len() <= CAP, "{group} holds {} > {CAP}", list.len());
            let mut unique = list.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                list.len(),
                "an openId twice in {group}: {list:?}"
            );
            members += list.len();
        }
        assert_eq!(
            engine.member_count(),
            members,
            "every member is in one room"
        );
        assert!(engine.room_count() <= GROUPS.len());
        run.most_members = run.most_members.max(members);
        run.full |= GROUPS
            .iter()
            .any(|g| engine.room_members(&key(g)).len() == CAP);
    }
    run
}
