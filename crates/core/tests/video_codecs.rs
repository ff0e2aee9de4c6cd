//! Video codecs in a video room, with real str0m peers on the in-memory network: H.264
//! (constrained baseline, packetization-mode 1) is negotiated when a camera offers it, VP8
//! is preferred when both are offered, H.264 is forwarded between members that both have it
//! (frames byte for byte from a keyframe on, keyframe requests passed), and a member without
//! H.264 gets none of an H.264 camera's packets.

mod common;

use common::Net;
use std::time::Duration;
use str0m::format::Codec;
use voipchat_proto::{MuteConfig, RoomType, ServerMsg, TrackKind};

/// An H.264 access unit in Annex B (4-byte start codes, as str0m's depacketizer gives it
/// back): SPS, PPS and a large IDR slice (fragmented as FU-A) for a key frame, one non-IDR
/// slice otherwise. Each names its sender and number.
fn h264(tag: u8, n: u32, key: bool) -> Vec<u8> {
    let start = [0, 0, 0, 1];
    let mut v = Vec::new();
    // No two zero bytes in a row inside a NAL unit (an encoder's emulation prevention sees
    // to that): the number goes in seven bits a byte, with the top bit set.
    let slice = |nal: u8, len: usize| {
        let mut s = vec![nal, 0x88, tag | 0x80];
        s.extend([14, 7, 0].map(|shift| (n >> shift) as u8 | 0x80));
        s.extend((0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(n) as u8 | 1));
        s
    };
    if key {
        v.extend_from_slice(&start);
        v.extend_from_slice(&[0x67, 0x42, 0xe0, 0x1f, 0x8d, 0x68, 0x05]);
        v.extend_from_slice(&start);
        v.extend_from_slice(&[0x68, 0xce, 0x3c, 0x80]);
        v.extend_from_slice(&start);
        v.extend(slice(0x65, 2_500));
    } else {
        v.extend_from_slice(&start);
        v.extend(slice(0x41, 700));
    }
    v
}

/// True for an access unit made by `h264` as a key frame.
fn is_key(frame: &[u8]) -> bool {
    frame.get(4) == Some(&0x67)
}

/// A video-room member with these codecs, joined to `group`.
fn join(net: &mut Net, name: &str, codecs: &[Codec]) -> usize {
    let idx = net.add_video_peer_codecs(name, codecs);
    net.send_join_typed(idx, "g", MuteConfig::default(), RoomType::Video);
    idx
}

/// The m=video section of the joinResult's answer.
fn answer_video(net: &Net, idx: usize) -> String {
    let answer = net.peers[idx].last_answer.clone().expect("an answer");
    answer
        .split("m=")
        .find(|s| s.starts_with("video"))
        .expect("a video m-line")
        .to_string()
}

/// The payload types of an m-line, in order, and the codec name each `a=rtpmap` gives.
fn codecs_in(section: &str) -> Vec<String> {
    let order: Vec<&str> = section
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(3)
        .collect();
    order
        .iter()
        .filter_map(|pt| {
            section
                .lines()
                .find_map(|l| l.strip_prefix(&format!("a=rtpmap:{pt} ")))
                .map(|m| m.split('/').next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn h264_is_negotiated_for_an_h264_camera_and_vp8_preferred_over_it() {
    let mut net = Net::new(10);
    let h = join(&mut net, "h", &[Codec::H264]);
    assert_eq!(net.join_code(h), Some(0));
    let video = answer_video(&net, h);
    let names = codecs_in(&video);
    assert_eq!(names.first().map(String::as_str), Some("H264"), "{video}");
    assert!(!names.iter().any(|n| n == "VP8"), "{video}");
    let fmtp = video
        .lines()
        .find(|l| l.starts_with("a=fmtp:") && l.contains("profile-level-id"))
        .expect("an H.264 fmtp");
    assert!(fmtp.contains("profile-level-id=42e01f"), "{fmtp}");
    assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");

    let both = join(&mut net, "both", &[Codec::H264, Codec::Vp8]);
    assert_eq!(net.join_code(both), Some(0));
    let video = answer_video(&net, both);
    assert_eq!(
        codecs_in(&video).first().map(String::as_str),
        Some("VP8"),
        "VP8 first though the camera listed H.264 first: {video}"
    );
}

/// An H.264 camera sending for `d`: a key frame first and whenever the server asked, else
/// delta frames. Returns what it sent.
fn run_camera(
    net: &mut Net,
    cam: usize,
    sent: &mut Vec<Vec<u8>>,
    answered: &mut usize,
    d: Duration,
) {
    let end = net.now + d;
    while net.now < end {
        let asked = net.peers[cam].keyframe_requests;
        let key = sent.is_empty() || asked > *answered;
        *answered = asked;
        let frame = h264(cam as u8, sent.len() as u32, key);
        net.send_video(cam, &frame);
        sent.push(frame);
        net.advance(Duration::from_millis(33));
    }
}

fn frames_from(net: &Net, receiver: usize, from: &str) -> Vec<Vec<u8>> {
    net.peers[receiver]
        .frames
        .iter()
        .filter(|f| f.from.as_ref().map(|o| o.as_str()) == Some(from))
        .map(|f| f.data.clone())
        .collect()
}

#[test]
fn h264_reaches_h264_members_byte_for_byte_and_nothing_of_it_a_vp8_member() {
    let mut net = Net::new(10);
    let h = join(&mut net, "h", &[Codec::H264]);
    let r = join(&mut net, "r", &[Codec::H264]);
    let v = join(&mut net, "v", &[Codec::Vp8]);
    net.connect();
    net.advance(Duration::from_millis(300));
    let (mut sent, mut answered) = (Vec::new(), 0);
    run_camera(
        &mut net,
        h,
        &mut sent,
        &mut answered,
        Duration::from_secs(2),
    );

    let got = frames_from(&net, r, "h");
    assert!(
        got.len() >= 45,
        "r got {} frames of {}",
        got.len(),
        sent.len()
    );
    assert!(is_key(&got[0]), "r starts on a key frame");
    let start = sent
        .iter()
        .position(|f| *f == got[0])
        .expect("r's first frame was sent");
    assert_eq!(
        got,
        &sent[start..start + got.len()],
        "byte for byte, in order"
    );
    assert!(net.peers[r].frames.iter().all(|f| f.contiguous));

    // v has a slot for h (the first two others) but no H.264: nothing of h reaches it.
    assert!(
        net.peers[v]
            .tracks
            .values()
            .any(|o| o.as_ref().map(|o| o.as_str()) == Some("h")),
        "v has a slot for h"
    );
    assert!(frames_from(&net, v, "h").is_empty());
    assert_eq!(net.peers[v].video_rtp_in, 0, "no video packet reached v");

    // A keyframe request of r's reaches h, and r's stream goes on from the key frame.
    let before = net.peers[h].keyframe_requests;
    let video = |m: &String| net.peers[r].track_kinds.get(m) == Some(&TrackKind::Video);
    let mid = net.peers[r]
        .tracks
        .iter()
        .find(|(m, o)| video(m) && o.as_ref().map(|o| o.as_str()) == Some("h"))
        .map(|(m, _)| m.clone())
        .expect("r's video slot for h");
    let p = &mut net.peers[r];
    p.rtc
        .direct_api()
        .stream_rx_by_mid(mid.as_str().into(), None)
        .expect("r receives on the slot")
        .request_keyframe(str0m::media::KeyframeRequestKind::Pli);
    net.settle();
    run_camera(
        &mut net,
        h,
        &mut sent,
        &mut answered,
        Duration::from_millis(500),
    );
    assert!(net.peers[h].keyframe_requests > before, "r's PLI reached h");
    let got = frames_from(&net, r, "h");
    assert!(
        got.iter().skip(1).any(|f| is_key(f)),
        "the asked-for key frame reached r"
    );
    assert_eq!(got, &sent[start..start + got.len()]);
    let n = net.peers[h].keyframe_requests;
    println!(
        "h was asked for {n} key frames; r got {} frames of {}",
        got.len(),
        sent.len()
    );
    assert!(n <= 4, "a request per start and per PLI, not a storm: {n}");
}

#[test]
fn the_offer_slots_of_a_receiver_negotiate_its_codecs() {
    // A VP8-only member's receive slots offer VP8 (and the server's H.264, which it
    // declines); the slot for an H.264 camera stays silent, as protocol.md says.
    let mut net = Net::new(10);
    let _h = join(&mut net, "h", &[Codec::H264]);
    let v = join(&mut net, "v", &[Codec::Vp8]);
    net.connect();
    let offers: Vec<&String> = net.peers[v]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Offer { sdp, .. } => Some(sdp),
            _ => None,
        })
        .collect();
    assert!(!offers.is_empty());
    for sdp in offers {
        for s in sdp.split("m=").filter(|s| s.starts_with("video")) {
            let names = codecs_in(s);
            assert_eq!(names.first().map(String::as_str), Some("VP8"), "{s}");
        }
    }
}
