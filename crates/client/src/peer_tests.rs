//! The peer driven in memory with virtual time against a stand-in server: a str0m `Rtc`
//! configured as ours will be (ICE-lite, Opus only, frame mode). No sockets, no tokio.

use super::*;
use str0m::change::SdpApi;
use voipchat_proto::signal::api;
use voipchat_proto::{Failure, TrackKind};

const CLIENT: &str = "127.0.0.1:40000";
const SERVER: &str = "127.0.0.1:7881";

fn client_addr() -> SocketAddr {
    CLIENT.parse().unwrap()
}
fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

fn oid(s: &str) -> OpenId {
    OpenId::new(s)
}

fn new_peer(now: Instant) -> (Peer, String, Arc<SharedStats>) {
    let stats = Arc::new(SharedStats::default());
    let (peer, sdp) = Peer::new(
        now,
        MediaTransport::Udp,
        client_addr(),
        stats.clone(),
        false,
        None,
    )
    .unwrap();
    (peer, sdp, stats)
}

/// Everything the peer produced while being drained.
#[derive(Default)]
struct Collected {
    events: Vec<ClientEvent>,
    signals: Vec<ClientMsg>,
    replies: Vec<Reply>,
    transmits: Vec<Transmit>,
}

fn drain(peer: &mut Peer, out: &mut Collected) -> Instant {
    loop {
        match peer.poll_output() {
            PeerOutput::Timeout(t) => return t,
            PeerOutput::Transmit(t) => out.transmits.push(t),
            PeerOutput::Signal(m) => out.signals.push(m),
            PeerOutput::Event(e) => out.events.push(e),
            PeerOutput::Reply(r) => out.replies.push(r),
        }
    }
}

/// The stand-in server: one ICE-lite `Rtc` in frame mode.
struct Server {
    rtc: Rtc,
    /// Datagrams for the client.
    transmits: Vec<Transmit>,
    events: Vec<Event>,
}

impl Server {
    fn new(now: Instant) -> Server {
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        rtc.add_local_candidate(Candidate::host(server_addr(), "udp").unwrap())
            .unwrap();
        Server {
            rtc,
            transmits: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(_) => return,
                Output::Transmit(t) => self.transmits.push(t),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn sdp_api(&mut self) -> SdpApi<'_> {
        self.rtc.sdp_api()
    }
}

/// Client and server exchanging datagrams in memory; time moves only in `step`.
struct Net {
    now: Instant,
    peer: Peer,
    server: Server,
    out: Collected,
}

impl Net {
    fn step(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        self.peer.handle_timeout(now);
        drain(&mut self.peer, &mut self.out);
        self.server.rtc.handle_input(Input::Timeout(now)).unwrap();
        self.server.drain();
        // Deliver until both sides are quiet.
        for _ in 0..100 {
            let to_server: Vec<Transmit> = std::mem::take(&mut self.out.transmits);
            let to_client: Vec<Transmit> = std::mem::take(&mut self.server.transmits);
            if to_server.is_empty() && to_client.is_empty() {
                break;
            }
            for t in to_server {
                assert_eq!(t.destination, server_addr());
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: t.source,
                        destination: t.destination,
                        contents: (&*t.contents).try_into().unwrap(),
                    },
                );
                self.server.rtc.handle_input(input).unwrap();
                self.server.drain();
            }
            for t in to_client {
                assert_eq!(t.destination, client_addr());
                self.peer
                    .handle_packet(now, t.source, t.destination, &t.contents);
                drain(&mut self.peer, &mut self.out);
            }
        }
    }

    fn run_until(&mut self, what: &str, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..5_000 {
            if done(self) {
                return;
            }
            self.step(Duration::from_millis(5));
        }
        panic!("timed out waiting for {what}");
    }

    fn frame(&mut self, msg: &ServerMsg) {
        self.peer.handle_frame(&msg.to_json());
        drain(&mut self.peer, &mut self.out);
    }

    fn audio(&self) -> Vec<(Option<OpenId>, String, Vec<u8>, u64)> {
        self.out
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Audio {
                    from,
                    mid,
                    payload,
                    rtp_time,
                } => Some((from.clone(), mid.clone(), payload.clone(), *rtp_time)),
                _ => None,
            })
            .collect()
    }

    fn server_media(&self) -> Vec<&str0m::media::MediaData> {
        self.server
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MediaData(d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

/// Joins: the server answers the peer's offer, and the `joinResult` carries the answer.
fn joined_net() -> Net {
    let now = Instant::now();
    let (peer, offer, _) = new_peer(now);
    let mut server = Server::new(now);
    let answer = server
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
        .unwrap();
    server.drain();
    let mut net = Net {
        now,
        peer,
        server,
        out: Collected::default(),
    };
    net.frame(&ServerMsg::JoinResult {
        status: Status::ok(api::JOIN),
        open_id_list: vec![oid("alice"), oid("bob")],
        muted_open_id_list: vec![],
        sdp: Some(answer.to_sdp_string()),
        ice_servers: Vec::new(),
        redirect: None,
    });
    assert!(matches!(
        net.out.replies.as_slice(),
        [Reply::Joined(Ok(list))] if list == &[oid("alice"), oid("bob")]
    ));
    assert_eq!(
        net.out.events,
        vec![ClientEvent::Joined {
            open_id_list: vec![oid("alice"), oid("bob")]
        }]
    );
    net
}

#[test]
fn join_offer_has_one_sendonly_opus_audio_line_with_audio_level() {
    let (_peer, sdp, _) = new_peer(Instant::now());
    let lines: Vec<&str> = sdp.lines().collect();
    let m_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m_lines.len(), 1, "{sdp}");
    assert!(m_lines[0].starts_with("m=audio "), "{sdp}");
    assert!(lines.contains(&"a=sendonly"), "{sdp}");
    assert!(!lines
        .iter()
        .any(|l| *l == "a=sendrecv" || *l == "a=recvonly"));
    let rtpmaps: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("a=rtpmap:"))
        .collect();
    assert_eq!(rtpmaps.len(), 1, "only Opus: {sdp}");
    assert!(rtpmaps[0].ends_with(" opus/48000/2"), "{sdp}");
    assert!(
        lines.contains(&"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
        "{sdp}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("a=candidate:") && l.contains(" 127.0.0.1 40000 typ host")),
        "{sdp}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("a=fingerprint:sha-256 ")));
    assert!(lines.contains(&"a=setup:actpass"), "{sdp}");
    // The offer parses as our server will parse it.
    SdpOffer::from_sdp_string(&sdp).unwrap();
}

#[test]
fn a_tcp_peer_offers_one_active_tcp_candidate_and_no_udp() {
    let stats = Arc::new(SharedStats::default());
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (_peer, sdp) = Peer::new(
        Instant::now(),
        MediaTransport::Tcp,
        addr,
        stats,
        false,
        None,
    )
    .unwrap();
    let candidates: Vec<&str> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert_eq!(candidates.len(), 1, "{sdp}");
    let fields: Vec<&str> = candidates[0].split_whitespace().collect();
    assert_eq!(fields[2].to_ascii_lowercase(), "tcp", "{sdp}");
    assert_eq!(
        &fields[4..10],
        &["127.0.0.1", "9", "typ", "host", "tcptype", "active"]
    );
    SdpOffer::from_sdp_string(&sdp).unwrap();
}

#[test]
fn unusable_bind_address_is_refused() {
    let stats = Arc::new(SharedStats::default());
    let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
    assert!(matches!(
        Peer::new(Instant::now(), MediaTransport::Udp, any, stats, false, None),
        Err(ClientError::InvalidOptions(_))
    ));
}

#[test]
fn media_flows_both_ways_and_slots_map_to_members() {
    let mut net = joined_net();

    // Before ICE and DTLS: packets are dropped and counted.
    let now = net.now;
    net.peer
        .send_opus(now, vec![0xf8, 1, 2, 3], Duration::from_millis(20), None);
    assert_eq!(
        net.peer.stats.dropped_unconnected.load(Ordering::Relaxed),
        1
    );

    net.run_until("connected", |n| {
        n.peer.is_connected() && n.server.rtc.is_connected()
    });
    assert!(net.out.events.contains(&ClientEvent::Connected));

    // Client → server: payload unchanged, audio level and voice activity in the extension,
    // RTP time advancing 960 per 20 ms packet.
    let sent: Vec<Vec<u8>> = (0..10u8)
        .map(|i| {
            let mut p = vec![0xf8];
            p.extend(std::iter::repeat_n(i, 40 + usize::from(i)));
            p
        })
        .collect();
    for (i, p) in sent.iter().enumerate() {
        let now = net.now;
        let level = if i % 2 == 0 { (30, true) } else { (127, false) };
        net.peer
            .send_opus(now, p.clone(), Duration::from_millis(20), Some(level));
        net.step(Duration::from_millis(20));
    }
    net.step(Duration::from_millis(100));
    let got = net.server_media();
    assert_eq!(got.len(), sent.len());
    for (i, (d, p)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(&*d.data, p.as_slice());
        let (level, voice) = if i % 2 == 0 {
            (-30, true)
        } else {
            (-127, false)
        };
        assert_eq!(d.ext_vals.audio_level, Some(level), "packet {i}");
        assert_eq!(d.ext_vals.voice_activity, Some(voice), "packet {i}");
    }
    for w in got.windows(2) {
        assert_eq!(w[1].time.numer() - w[0].time.numer(), 960);
    }
    assert_eq!(net.peer.stats.sent.load(Ordering::Relaxed), 10);

    // Server renegotiates to add a receive slot carrying bob.
    let (mid, pending) = {
        let mut change = net.server.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        net.server.drain();
        net.frame(&ServerMsg::Offer {
            sdp: offer.to_sdp_string(),
            tracks: vec![TrackSlot {
                mid: mid.to_string(),
                kind: TrackKind::Audio,
                open_id: Some(oid("bob")),
            }],
        });
        (mid, pending)
    };
    let answer = match net.out.signals.pop() {
        Some(ClientMsg::Answer { sdp }) => sdp,
        other => panic!("expected an answer, got {other:?}"),
    };
    assert_eq!(
        answer.lines().filter(|l| l.starts_with("m=audio")).count(),
        2
    );
    net.server
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    net.server.drain();
    assert_eq!(net.peer.track_owner(&mid.to_string()), Some(&oid("bob")));
    assert!(net
        .out
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Tracks(t) if t.len() == 1)));

    // Server → client on that slot: payload identical, attributed to bob, then to carol
    // after a `tracks` update.
    let pt = net
        .server
        .rtc
        .writer(mid)
        .unwrap()
        .payload_params()
        .next()
        .unwrap()
        .pt();
    let write = |net: &mut Net, i: u64, payload: &[u8]| {
        let now = net.now;
        net.server
            .rtc
            .writer(mid)
            .unwrap()
            .write(
                pt,
                now,
                MediaTime::new(1_000 + i * 960, Frequency::FORTY_EIGHT_KHZ),
                payload.to_vec(),
            )
            .unwrap();
        net.server.drain();
        net.step(Duration::from_millis(20));
    };
    for i in 0..5u64 {
        write(&mut net, i, &[0xf8, 0xb0, i as u8, 7, 7, 7]);
    }
    net.frame(&ServerMsg::Tracks {
        tracks: vec![TrackSlot {
            mid: mid.to_string(),
            kind: TrackKind::Audio,
            open_id: Some(oid("carol")),
        }],
    });
    for i in 5..8u64 {
        write(&mut net, i, &[0xf8, 0xc0, i as u8]);
    }
    net.step(Duration::from_millis(200));
    let audio = net.audio();
    assert_eq!(audio.len(), 8, "{audio:?}");
    for (i, (from, m, payload, rtp_time)) in audio.iter().enumerate() {
        assert_eq!(m, &mid.to_string());
        let who = if i < 5 { "bob" } else { "carol" };
        assert_eq!(from.as_ref(), Some(&oid(who)));
        assert_eq!(payload[2], i as u8);
        assert_eq!(*rtp_time % (1u64 << 32), 1_000 + i as u64 * 960);
    }
    assert_eq!(net.peer.stats.received.load(Ordering::Relaxed), 8);
    assert_eq!(net.peer.stats.queued_audio.load(Ordering::Relaxed), 8);

    // Results of requests come back as replies; exit closes the Rtc.
    net.frame(&ServerMsg::MuteConfigResult {
        status: Status::ok(api::UPDATE_MUTE),
    });
    net.frame(&ServerMsg::ExitResult {
        status: Status::ok(api::EXIT),
    });
    assert!(matches!(
        &net.out.replies[1..],
        [Reply::MuteConfig(a), Reply::Exit(b)] if a.is_ok() && b.is_ok()
    ));
    net.peer.close();
    drain(&mut net.peer, &mut net.out);
    net.step(Duration::from_millis(50));
    assert!(!net.peer.is_alive());
}

#[test]
fn refused_join_is_a_refusal_and_ends_the_peer() {
    let now = Instant::now();
    let (mut peer, _, _) = new_peer(now);
    let msg = ServerMsg::join_failed(&Failure::new(ErrorCode::RoomQuotaExceeded));
    peer.handle_frame(&msg.to_json());
    let mut out = Collected::default();
    drain(&mut peer, &mut out);
    match out.replies.as_slice() {
        [Reply::Joined(Err(e @ ClientError::Refused { err_code, err_msg }))] => {
            assert_eq!(*err_code, -13000);
            assert!(err_msg.starts_with("joinVoIPChat:fail "), "{err_msg}");
            assert_eq!(e.code(), Some(ErrorCode::RoomQuotaExceeded));
        }
        other => panic!("{other:?}"),
    }
    assert!(out.events.is_empty());
    assert!(!peer.is_alive());
}

#[test]
fn join_result_ok_without_or_with_bad_sdp_fails_the_join() {
    for sdp in [None, Some("v=0 garbage".to_string()), Some(String::new())] {
        let (mut peer, _, _) = new_peer(Instant::now());
        peer.handle_frame(
            &ServerMsg::JoinResult {
                status: Status::ok(api::JOIN),
                open_id_list: vec![],
                muted_open_id_list: vec![],
                sdp: sdp.clone(),
                ice_servers: Vec::new(),
                redirect: None,
            }
            .to_json(),
        );
        let mut out = Collected::default();
        drain(&mut peer, &mut out);
        assert!(
            matches!(
                out.replies.as_slice(),
                [Reply::Joined(Err(
                    ClientError::Protocol(_) | ClientError::Sdp(_)
                ))]
            ),
            "{sdp:?}: {:?}",
            out.replies
        );
        assert!(!peer.is_alive());
    }
}

/// Every server message, in every phase, and garbage: no panic, and each lands where it
/// should (event, reply, or an `Error` event).
#[test]
fn every_server_message_and_garbage_is_handled_without_panic() {
    let slot = |open_id: Option<&str>| TrackSlot {
        mid: "1".into(),
        kind: TrackKind::Audio,
        open_id: open_id.map(oid),
    };
    let messages = vec![
        ServerMsg::Hello {
            ice_servers: vec![],
        },
        ServerMsg::join_failed(&Failure::new(ErrorCode::InvalidSignature)),
        ServerMsg::JoinResult {
            status: Status::ok(api::JOIN),
            open_id_list: vec![oid("a")],
            muted_open_id_list: vec![oid("a")],
            sdp: Some("not sdp".into()),
            ice_servers: Vec::new(),
            redirect: None,
        },
        ServerMsg::ExitResult {
            status: Status::ok(api::EXIT),
        },
        ServerMsg::MuteConfigResult {
            status: Status::fail(api::UPDATE_MUTE, &Failure::new(ErrorCode::NotInRoom)),
        },
        ServerMsg::Offer {
            sdp: "v=0\r\nnonsense".into(),
            tracks: vec![slot(Some("b"))],
        },
        ServerMsg::Offer {
            sdp: String::new(),
            tracks: vec![],
        },
        ServerMsg::Tracks {
            tracks: vec![slot(None), slot(Some("c"))],
        },
        ServerMsg::members_changed(vec![oid("a"), oid("b")], vec![oid("b")]),
        ServerMsg::mute_changed(vec![oid("a")]),
        ServerMsg::server_mute_changed(true),
        ServerMsg::video_members_changed(vec![oid("a")]),
        ServerMsg::SubscribeVideoMembersResult {
            status: Status::ok(api::SUBSCRIBE_VIDEO),
        },
        ServerMsg::speakers_changed(vec![oid("b")]),
        ServerMsg::interrupted(ErrorCode::Kicked),
        ServerMsg::error(&Failure::new(ErrorCode::MalformedMessage)),
        ServerMsg::Pong,
    ];
    let garbage = [
        "",
        " ",
        "{",
        "null",
        "[]",
        "42",
        "\"joinResult\"",
        "{}",
        "{\"type\":null}",
        "{\"type\":\"unknown\"}",
        "{\"type\":\"offer\"}",
        "{\"type\":\"offer\",\"sdp\":5,\"tracks\":[]}",
        "{\"type\":\"tracks\",\"tracks\":[{\"mid\":1}]}",
        "{\"type\":\"joinResult\",\"errCode\":\"x\",\"errMsg\":1}",
        "{\"type\":\"membersChanged\",\"errCode\":0,\"errMsg\":\"ok\",\"openIdList\":[1,2]}",
        "{\"type\":\"interrupted\"}",
        "\u{0}\u{1}\u{ffff}",
    ];

    type MakePeer = fn() -> Peer;
    let phases: [(&str, MakePeer); 2] = [
        ("joining", || new_peer(Instant::now()).0),
        ("joined", || joined_net().peer),
    ];
    for (phase, make) in &phases {
        // One peer takes everything in a row...
        let mut peer = make();
        let mut out = Collected::default();
        for m in &messages {
            peer.handle_frame(&m.to_json());
            drain(&mut peer, &mut out);
        }
        for g in garbage {
            peer.handle_frame(g);
            drain(&mut peer, &mut out);
        }
        let mut bytes = 0u32;
        for len in 0..200usize {
            // Pseudo-random printable junk, and truncations of a valid offer message.
            let junk: String = (0..len)
                .map(|_| {
                    bytes = bytes.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    char::from(b' ' + (bytes >> 16) as u8 % 95)
                })
                .collect();
            peer.handle_frame(&junk);
            let offer = messages[4].to_json();
            peer.handle_frame(&offer[..len.min(offer.len())]);
            drain(&mut peer, &mut out);
        }
        peer.handle_unusable_frame("binary");
        drain(&mut peer, &mut out);
        peer.handle_packet(
            Instant::now(),
            server_addr(),
            client_addr(),
            b"\x00\x01garbage",
        );
        peer.handle_packet(Instant::now(), server_addr(), client_addr(), &[]);
        drain(&mut peer, &mut out);

        // ...and each message alone lands where it belongs.
        let malformed = ErrorCode::MalformedMessage.code();
        let errors = out
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Error { err_code, .. } if *err_code == malformed))
            .count();
        assert!(errors >= garbage.len() - 1, "{phase}: {errors}");
        for m in &messages {
            let mut peer = make();
            let mut out = Collected::default();
            peer.handle_frame(&m.to_json());
            drain(&mut peer, &mut out);
            let events = &out.events;
            match m {
                ServerMsg::MembersChanged { open_id_list, .. } => {
                    assert_eq!(events, &[ClientEvent::MembersChanged(open_id_list.clone())])
                }
                ServerMsg::SpeakersChanged { open_id_list, .. } => {
                    assert_eq!(
                        events,
                        &[ClientEvent::SpeakersChanged(open_id_list.clone())]
                    )
                }
                ServerMsg::MuteChanged {
                    muted_open_id_list, ..
                } => {
                    assert_eq!(
                        events,
                        &[ClientEvent::MuteChanged(muted_open_id_list.clone())]
                    )
                }
                ServerMsg::ServerMuteChanged { server_muted, .. } => {
                    assert_eq!(events, &[ClientEvent::ServerMuteChanged(*server_muted)])
                }
                ServerMsg::Interrupted { status } => assert_eq!(
                    events,
                    &[ClientEvent::Interrupted {
                        err_code: status.err_code,
                        err_msg: status.err_msg.clone()
                    }]
                ),
                ServerMsg::Error { status } => assert_eq!(
                    events,
                    &[ClientEvent::Error {
                        err_code: status.err_code,
                        err_msg: status.err_msg.clone()
                    }]
                ),
                ServerMsg::Tracks { tracks } => {
                    assert_eq!(events, &[ClientEvent::Tracks(tracks.clone())]);
                    assert_eq!(peer.track_owner("1"), Some(&oid("c")));
                }
                ServerMsg::Offer { .. } => {
                    // Unusable offers (bad sdp, or before the join) are errors, not answers.
                    assert!(out.signals.is_empty(), "{phase}");
                    assert!(
                        matches!(events.as_slice(), [ClientEvent::Error { .. }]),
                        "{phase}: {events:?}"
                    );
                }
                ServerMsg::ExitResult { .. } => {
                    assert!(matches!(out.replies.as_slice(), [Reply::Exit(_)]))
                }
                ServerMsg::MuteConfigResult { .. } => {
                    assert!(matches!(out.replies.as_slice(), [Reply::MuteConfig(s)] if !s.is_ok()))
                }
                ServerMsg::JoinResult { .. } if *phase == "joined" => assert!(
                    matches!(events.as_slice(), [ClientEvent::Error { err_code, .. }] if *err_code == ErrorCode::UnexpectedMessage.code())
                ),
                ServerMsg::JoinResult { .. } => {
                    assert!(matches!(out.replies.as_slice(), [Reply::Joined(Err(_))]))
                }
                ServerMsg::Pong | ServerMsg::Hello { .. } => {
                    assert!(events.is_empty() && out.replies.is_empty())
                }
                ServerMsg::VideoMembersChanged { open_id_list, .. } => assert_eq!(
                    events,
                    &[ClientEvent::VideoMembersChanged(open_id_list.clone())]
                ),
                ServerMsg::SubscribeVideoMembersResult { .. } => {
                    assert!(matches!(out.replies.as_slice(), [Reply::Subscribe(s)] if s.is_ok()))
                }
            }
        }
    }
}

#[test]
fn send_clock_follows_packets_then_the_wall_clock_after_a_pause() {
    let t0 = Instant::now();
    let mut clock = SendClock {
        rtp_base: 1_000,
        samples: 0,
        started: None,
    };
    let ms = Duration::from_millis;
    assert_eq!(
        clock.stamp(t0, 960),
        (MediaTime::new(1_000, Frequency::FORTY_EIGHT_KHZ), true)
    );
    assert_eq!(clock.stamp(t0 + ms(20), 960).0.numer(), 1_960);
    // A burst faster than real time keeps advancing by the packets' durations.
    assert_eq!(clock.stamp(t0 + ms(21), 960).0.numer(), 2_920);
    assert_eq!(
        clock.stamp(t0 + ms(22), 960),
        (MediaTime::new(3_880, Frequency::FORTY_EIGHT_KHZ), false)
    );
    // A pause of a second: the clock jumps to the wall clock and marks a talkspurt.
    assert_eq!(
        clock.stamp(t0 + ms(1_080), 960),
        (
            MediaTime::new(1_000 + 1_080 * 48, Frequency::FORTY_EIGHT_KHZ),
            true
        )
    );
}
