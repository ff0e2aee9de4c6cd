//! Video rooms with real str0m peers (VP8) on the in-memory network: who sees whom, frames
//! byte for byte from a keyframe on, subscriptions, promotion on leave, camera mute, and
//! the room-type rules.

mod common;

use common::{ids, Net};
use std::time::Duration;
use voipchat_proto::{ErrorCode, MuteConfig, OpenId, ServerMsg};

/// A VP8 frame that names its sender and number; a key frame (lowest bit of the first byte
/// 0, with the key-frame start code) or a delta frame.
fn vp8(tag: u8, n: u32, key: bool) -> Vec<u8> {
    let mut v = if key {
        vec![0x50, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
    } else {
        vec![0x51, 0x00, 0x00]
    };
    v.push(tag);
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0x77; 30]);
    v
}

/// Every camera sends one frame: a key frame when the server asked for one (or every 30th),
/// else a delta frame. Returns what each sent, by peer.
struct Cameras {
    sent: Vec<Vec<Vec<u8>>>,
    answered: Vec<usize>,
    n: u32,
}

impl Cameras {
    fn new(peers: usize) -> Cameras {
        Cameras {
            sent: vec![Vec::new(); peers],
            answered: vec![0; peers],
            n: 0,
        }
    }

    fn run(&mut self, net: &mut Net, who: &[usize], frames: u32) {
        for _ in 0..frames {
            for &p in who {
                let asked = net.peers[p].keyframe_requests > self.answered[p];
                self.answered[p] = net.peers[p].keyframe_requests;
                let frame = vp8(p as u8, self.n, asked || self.n.is_multiple_of(30));
                net.send_video(p, &frame);
                self.sent[p].push(frame);
            }
            self.n += 1;
            net.advance(Duration::from_millis(33));
        }
    }
}

fn video_from(net: &Net, receiver: usize, from: &str) -> Vec<Vec<u8>> {
    net.peers[receiver]
        .received_video
        .iter()
        .filter(|(f, _)| f.as_ref().map(|o| o.as_str()) == Some(from))
        .map(|(_, d)| d.clone())
        .collect()
}

/// What `receiver` got from `sender` is a run of what `sender` sent, starting at a key
/// frame, byte for byte and in order.
fn assert_contiguous_from_a_keyframe(got: &[Vec<u8>], sent: &[Vec<u8>], what: &str) {
    assert!(!got.is_empty(), "{what}: nothing received");
    assert_eq!(got[0][0] & 1, 0, "{what}: the first frame is a key frame");
    let start = sent
        .iter()
        .position(|f| *f == got[0])
        .unwrap_or_else(|| panic!("{what}: a frame nobody sent"));
    assert_eq!(
        got,
        &sent[start..start + got.len()],
        "{what}: byte for byte, in order"
    );
}

fn video_members(net: &Net, idx: usize) -> Vec<Vec<OpenId>> {
    net.peers[idx]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::VideoMembersChanged { open_id_list, .. } => Some(open_id_list.clone()),
            _ => None,
        })
        .collect()
}

fn four(net: &mut Net) -> [usize; 4] {
    let a = net.join_video("a", "g");
    let b = net.join_video("b", "g");
    let c = net.join_video("c", "g");
    let d = net.join_video("d", "g");
    net.connect();
    net.advance(Duration::from_millis(300));
    [a, b, c, d]
}

#[test]
fn by_default_each_member_sees_the_first_two_others() {
    let mut net = Net::new(10);
    let [a, b, c, d] = four(&mut net);
    let mut cams = Cameras::new(4);
    cams.run(&mut net, &[a, b, c, d], 60);
    let names = ["a", "b", "c", "d"];
    // receiver -> the senders it must see
    let sees: [&[usize]; 4] = [&[b, c], &[a, c], &[a, b], &[a, b]];
    for (r, wanted) in sees.iter().enumerate() {
        for s in [a, b, c, d] {
            let got = video_from(&net, r, names[s]);
            let what = format!("{} from {}", names[r], names[s]);
            if wanted.contains(&s) {
                assert_contiguous_from_a_keyframe(&got, &cams.sent[s], &what);
                assert!(got.len() >= 40, "{what}: {} frames", got.len());
            } else {
                assert!(
                    got.is_empty(),
                    "{what}: an unsubscribed video was forwarded"
                );
            }
        }
    }
    // Audio still reaches everyone (the fourth member too).
    assert_eq!(video_members(&net, d), vec![ids(&["a", "b", "c", "d"])]);
    assert_eq!(
        video_members(&net, a).last(),
        Some(&ids(&["a", "b", "c", "d"]))
    );
}

#[test]
fn a_subscription_moves_frames_within_a_second() {
    let mut net = Net::new(10);
    let [a, b, c, d] = four(&mut net);
    let mut cams = Cameras::new(4);
    cams.run(&mut net, &[a, b, c, d], 20);
    assert!(video_from(&net, d, "c").is_empty());
    let conn = net.peers[d].conn;
    net.engine
        .handle_subscribe_video(net.now, conn, ids(&["c", "nobody", "c"]));
    net.settle();
    assert!(net.peers[d].messages.iter().any(|m| matches!(m,
        ServerMsg::SubscribeVideoMembersResult { status } if status.is_ok())));
    let from_a_before = video_from(&net, d, "a").len();
    // One second of frames (30 at 33 ms).
    cams.run(&mut net, &[a, b, c, d], 30);
    let from_c = video_from(&net, d, "c");
    assert!(
        from_c.len() >= 20,
        "c's video reaches d within 1 s: {}",
        from_c.len()
    );
    assert_contiguous_from_a_keyframe(&from_c, &cams.sent[c], "d from c");
    assert!(
        video_from(&net, d, "a").len() <= from_a_before + 1,
        "a's video to d stopped"
    );
    // An empty subscription: no video at all.
    net.engine.handle_subscribe_video(net.now, conn, vec![]);
    net.settle();
    let total = net.peers[d].received_video.len();
    cams.run(&mut net, &[a, b, c], 10);
    assert!(net.peers[d].received_video.len() <= total + 3);
}

#[test]
fn a_leave_of_one_of_the_first_two_promotes_the_next() {
    let mut net = Net::new(10);
    let [a, b, c, d] = four(&mut net);
    let mut cams = Cameras::new(4);
    cams.run(&mut net, &[a, b, c, d], 10);
    assert!(video_from(&net, d, "c").is_empty());
    let conn = net.peers[a].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    cams.run(&mut net, &[b, c, d], 30);
    let from_c = video_from(&net, d, "c");
    assert!(from_c.len() >= 20, "c promoted for d: {}", from_c.len());
    assert_contiguous_from_a_keyframe(&from_c, &cams.sent[c], "d from c");
    assert_eq!(video_members(&net, d).last(), Some(&ids(&["b", "c", "d"])));
}

#[test]
fn mute_camera_stops_the_frames_and_tells_the_room() {
    let mut net = Net::new(10);
    let [a, b, c, d] = four(&mut net);
    let mut cams = Cameras::new(4);
    cams.run(&mut net, &[a, b, c, d], 10);
    let conn = net.peers[b].conn;
    let off = MuteConfig {
        mute_camera: true,
        ..MuteConfig::default()
    };
    net.engine.handle_mute(net.now, conn, off);
    net.settle();
    for p in [a, c, d] {
        assert_eq!(video_members(&net, p).last(), Some(&ids(&["a", "c", "d"])));
    }
    let before = video_from(&net, d, "b").len();
    cams.run(&mut net, &[a, b, c, d], 20);
    assert_eq!(
        video_from(&net, d, "b").len(),
        before,
        "no frame of a muted camera"
    );
    net.engine.handle_mute(net.now, conn, MuteConfig::default());
    net.settle();
    assert_eq!(
        video_members(&net, d).last(),
        Some(&ids(&["a", "b", "c", "d"]))
    );
    cams.run(&mut net, &[a, b, c, d], 20);
    let after = video_from(&net, d, "b");
    assert!(after.len() >= before + 10, "b's video is back");
    assert_eq!(after[before][0] & 1, 0, "and restarts on a key frame");
}

#[test]
fn room_type_is_fixed_and_video_offers_are_checked() {
    let mut net = Net::new(10);
    let a = net.join_video("a", "g");
    assert_eq!(net.join_code(a), Some(0));
    let v = net.join("voice-user", "g");
    assert_eq!(net.join_code(v), Some(ErrorCode::RoomTypeMismatch.code()));
    net.join("x", "voice-room");
    let w = net.join_video("video-user", "voice-room");
    assert_eq!(net.join_code(w), Some(ErrorCode::RoomTypeMismatch.code()));
    assert_eq!(net.engine.room_members(&Net::key("g")), ids(&["a"]));

    // Two cameras in one offer.
    let two = net.add_video_peer("two-cams");
    let offer = {
        let mut api = net.peers[two].rtc.sdp_api();
        use str0m::media::{Direction, MediaKind};
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.apply().unwrap().0.to_sdp_string()
    };
    net.join_with_offer(two, "g", voipchat_proto::RoomType::Video, offer);
    assert_eq!(net.join_code(two), Some(ErrorCode::InvalidSdp.code()));
    assert_eq!(net.engine.room_members(&Net::key("g")), ids(&["a"]));
    // Subscribing in a voice room is refused with its own code.
    let conn = net.peers[v + 1].conn;
    net.engine
        .handle_subscribe_video(net.now, conn, ids(&["a"]));
    net.settle();
    assert!(net.peers[v + 1].messages.iter().any(|m| matches!(m,
        ServerMsg::SubscribeVideoMembersResult { status }
            if status.err_code == ErrorCode::UnexpectedMessage.code())));
}

#[test]
fn a_camera_without_a_codec_the_server_forwards_is_refused() {
    let mut net = Net::new(10);
    let a = net.add_peer("vp9-only");
    let offer = {
        let p = &mut net.peers[a];
        p.rtc = str0m::Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp9(true)
            .build(net.now);
        let mut api = p.rtc.sdp_api();
        use str0m::media::{Direction, MediaKind};
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.apply().unwrap().0.to_sdp_string()
    };
    net.join_with_offer(a, "g", voipchat_proto::RoomType::Video, offer);
    assert_eq!(net.join_code(a), Some(ErrorCode::InvalidSdp.code()));
    let msg = net.peers[a]
        .messages
        .iter()
        .find_map(|m| match m {
            ServerMsg::JoinResult { status, .. } => Some(status.err_msg.clone()),
            _ => None,
        })
        .unwrap();
    assert!(msg.contains("VP8") && msg.contains("H.264"), "{msg}");
    assert_eq!(
        net.engine.room_count(),
        0,
        "the refused creator leaves no room"
    );
}
