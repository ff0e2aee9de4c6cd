//! What the server's SDP says and what a client is told when its SDP is unusable.

mod common;

use common::Net;
use std::time::Duration;
use str0m::media::Mid;
use voipchat_core::ConnId;
use voipchat_proto::{RoomType, ServerMsg};

fn sdps(net: &Net, idx: usize) -> Vec<String> {
    net.peers[idx]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::JoinResult { sdp: Some(s), .. } | ServerMsg::Offer { sdp: s, .. } => {
                Some(s.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn voice_negotiates_no_transport_cc() {
    let mut net = Net::new(10);
    let a = net.add_peer("a");
    // The client offers transport-cc (str0m's defaults do, as browsers do) ...
    let offer = {
        let mut api = net.peers[a].rtc.sdp_api();
        api.add_media(
            str0m::media::MediaKind::Audio,
            str0m::media::Direction::SendOnly,
            None,
            None,
            None,
        );
        api.apply().unwrap().0.to_sdp_string()
    };
    assert!(offer.contains("transport-cc"), "the offer asks for it");
    // ... (a fresh peer joins with the same kind of offer) and the server answers without it,
    // in the join's answer and in its own later offers.
    let a = net.join("a", "g");
    net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(100));
    let all = sdps(&net, a);
    assert!(all.len() >= 2, "an answer and an offer: {}", all.len());
    for sdp in all {
        assert!(!sdp.contains("transport-cc"), "{sdp}");
        assert!(!sdp.contains("transport-wide-cc"), "{sdp}");
    }
}

fn join_with_sdp(net: &mut Net, conn: u64, sdp: &str) -> (i32, String) {
    let req = Net::request(&format!("u{conn}"), "g", RoomType::Voice, sdp.into());
    net.engine.handle_join(net.now, ConnId(1000 + conn), req);
    loop {
        match net.engine.poll_output() {
            voipchat_core::Output::Signal(_, ServerMsg::JoinResult { status, .. }) => {
                return (status.err_code, status.err_msg)
            }
            voipchat_core::Output::NeedRoomQuota(key) => {
                let now = net.now;
                net.engine
                    .handle_room_quota(now, &key, voipchat_core::QuotaAnswer::Granted)
            }
            voipchat_core::Output::Timeout(_) => panic!("no joinResult"),
            _ => {}
        }
    }
}

#[test]
fn an_unusable_offer_is_refused_in_one_plain_line() {
    let mut net = Net::new(10);
    let cases = [
        "hello",
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nthis is not sdp\r\n",
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        "v=0\r\nm=audio x y\r\na=\u{0}\u{1}\r\n",
    ];
    for (i, sdp) in cases.iter().enumerate() {
        let (code, msg) = join_with_sdp(&mut net, i as u64, sdp);
        assert_eq!(code, -10010, "{sdp:?}: {msg}");
        assert!(msg.starts_with("joinVoIPChat:fail the offer "), "{msg}");
        assert!(
            !msg.contains('\n') && !msg.contains('\r'),
            "one line: {msg:?}"
        );
        assert!(
            !msg.contains("0x") && !msg.contains("PointerOffset"),
            "{msg}"
        );
        assert!(msg.len() < 300, "short: {msg}");
    }
    let (_, msg) = join_with_sdp(&mut net, 10, cases[3]);
    assert!(msg.contains("lacks a=mid"), "says what is missing: {msg}");
    assert_eq!(net.engine.room_count(), 0);
}

/// The `a=ssrc` of the m-section with this mid.
fn announced_ssrc(sdp: &str, mid: &str) -> Option<u32> {
    let section = sdp
        .split("m=")
        .find(|s| s.contains(&format!("a=mid:{mid}\r\n")))?;
    let line = section.lines().find(|l| l.starts_with("a=ssrc:"))?;
    line["a=ssrc:".len()..].split(' ').next()?.parse().ok()
}

#[test]
fn a_slot_keeps_its_ssrc_when_its_occupant_changes() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    let (mid, _) = net.peers[a]
        .tracks
        .iter()
        .find(|(_, o)| o.as_ref().map(|o| o.as_str()) == Some("b"))
        .map(|(m, o)| (m.clone(), o.clone()))
        .unwrap();
    let offer = sdps(&net, a)
        .into_iter()
        .nth(1)
        .expect("the offer adding b's slot");
    let ssrc = announced_ssrc(&offer, &mid).expect("the slot's ssrc is announced");

    let conn = net.peers[b].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    let c = net.join("c", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    assert_eq!(
        net.peers[a]
            .tracks
            .get(&mid)
            .cloned()
            .flatten()
            .map(|o| o.to_string()),
        Some("c".into()),
        "c took b's slot"
    );
    for n in 0..5u8 {
        net.speak(c, &[0x78, n, 1, 2, 3], -30);
        net.advance(Duration::from_millis(20));
    }
    let mid_id: Mid = mid.as_str().into();
    let rx = net.peers[a]
        .rtc
        .direct_api()
        .stream_rx_by_mid(mid_id, None)
        .map(|s| *s.ssrc());
    assert_eq!(
        rx,
        Some(ssrc),
        "c's packets arrive with the slot's announced ssrc"
    );
    assert!(net.peers[a]
        .received
        .iter()
        .any(|(f, _)| f.as_ref().map(|o| o.as_str()) == Some("c")));
}
