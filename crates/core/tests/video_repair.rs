//! Loss repair in video rooms, with real str0m peers on the in-memory network: packets lost
//! on the way in (publisher → server) are NACKed by the server's receive side and forwarded,
//! once repaired, under the slot's own sequence numbers; packets lost on the way out (server
//! → receiver) are resent by the server from the slot's RTX cache. Loss is random but seeded
//! (`Link::with_loss`), so every run drops the same packets.
//!
//! str0m 0.25 in RTP mode gives the server no word of a receiver's NACK (its `StreamTx`
//! answers from its cache or silently not at all), so a NACK for a packet the server never
//! had cannot be passed on; these tests show it need not be: the server NACKs upstream
//! itself, and the repair reaches the receiver as a regular packet.

mod common;

use common::{Frame, Link, Net};
use std::time::Duration;
use str0m::format::Codec;

/// Frames of this many bytes take three RTP packets each.
const FRAME_BYTES: usize = 3_000;

/// A VP8 frame that names its number: a key frame (lowest bit of the first byte 0, with the
/// key-frame start code) or a delta frame, padded to `FRAME_BYTES`.
fn vp8(n: u32, key: bool) -> Vec<u8> {
    let mut v = if key {
        vec![0x50, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
    } else {
        vec![0x51, 0x00, 0x00]
    };
    v.extend_from_slice(&n.to_be_bytes());
    // Bytes that differ from frame to frame, so a frame put together from the packets of
    // two frames cannot pass for either.
    v.extend((0..FRAME_BYTES - v.len()).map(|i| (i as u32 ^ n.wrapping_mul(2_654_435_761)) as u8));
    v
}

/// A camera without simulcast: a key frame first and whenever the server asked, else delta
/// frames; it keeps what it sent.
struct Camera {
    idx: usize,
    answered: usize,
    sent: Vec<Vec<u8>>,
    /// The first packet of the next key frame is lost on the camera's uplink.
    lose_next_key_start: bool,
}

impl Camera {
    fn new(idx: usize) -> Camera {
        Camera {
            idx,
            answered: 0,
            sent: Vec::new(),
            lose_next_key_start: false,
        }
    }

    /// One frame per 33 ms for `d`.
    fn run(&mut self, net: &mut Net, d: Duration) {
        let end = net.now + d;
        while net.now < end {
            let asked = net.peers[self.idx].keyframe_requests;
            let key = self.sent.is_empty() || asked > self.answered;
            self.answered = asked;
            if key && std::mem::take(&mut self.lose_next_key_start) {
                let p = &mut net.peers[self.idx];
                let pt = p.rtc.codec_config().find(|c| c.spec().codec == Codec::Vp8);
                let pt = *pt.expect("VP8").pt();
                p.uplink.as_mut().expect("an uplink").drop_next_rtp = Some(pt);
            }
            let frame = vp8(self.sent.len() as u32, key);
            net.send_video(self.idx, &frame);
            self.sent.push(frame);
            net.advance(Duration::from_millis(33));
        }
    }
}

fn frames_from(net: &Net, receiver: usize, from: &str) -> Vec<Frame> {
    net.peers[receiver]
        .frames
        .iter()
        .filter(|f| f.from.as_ref().map(|o| o.as_str()) == Some(from))
        .cloned()
        .collect()
}

/// Every frame the camera sent from the receiver's first one up to frame `upto` reached it,
/// byte for byte, in order, complete (str0m says no packet is missing), with the slot's
/// sequence numbers running on without a gap from frame to frame; the first is a key frame
/// and among the first `first_within` frames sent. Returns how many frames it got of those.
fn assert_every_frame(
    net: &Net,
    receiver: usize,
    cam: &Camera,
    first_within: usize,
    upto: usize,
) -> usize {
    let what = &net.peers[receiver].open_id;
    let all = frames_from(net, receiver, "pub");
    // The one exception: a receiver cannot NACK the first packets of a stream, as nothing
    // before them tells it they exist. The frames before its first key frame are of no use
    // to its decoder, which asks for a key frame (see `common`).
    let got: Vec<Frame> = all.into_iter().skip_while(|f| !f.keyframe).collect();
    assert!(!got.is_empty(), "{what}: no key frame received");
    let start = cam
        .sent
        .iter()
        .position(|f| *f == got[0].data)
        .unwrap_or_else(|| panic!("{what}: a frame nobody sent"));
    assert!(
        start < first_within,
        "{what}: the first frame is frame {start}"
    );
    assert!(
        start + got.len() >= upto,
        "{what}: {} frames up to frame {upto}",
        got.len()
    );
    let got = &got[..upto - start];
    for (i, f) in got.iter().enumerate() {
        let n = start + i;
        assert!(
            cam.sent.get(n) == Some(&f.data),
            "{what}: frame {i} received is not frame {n} sent (a frame lost or broken): \
             {} bytes, number {:?}, seq {}..={}, contiguous {}",
            f.data.len(),
            f.data.get(3..7),
            f.first_seq,
            f.last_seq,
            f.contiguous
        );
    }
    for w in got.windows(2) {
        assert_eq!(
            w[1].first_seq,
            w[0].last_seq + 1,
            "{what}: sequence numbers"
        );
        assert!(w[1].contiguous, "{what}: str0m saw a packet missing");
    }
    got.len()
}

/// A publisher and two receivers, connected, before any camera frame; every link takes
/// `DELAY` each way and loses nothing (a test makes some lossy).
fn room() -> (Net, usize, usize, usize) {
    let mut net = Net::new(10);
    let p = net.join_video("pub", "g");
    let r1 = net.join_video("r1", "g");
    let r2 = net.join_video("r2", "g");
    for peer in &mut net.peers {
        peer.uplink = Some(Link::clear().with_delay(DELAY));
        peer.downlink = Some(Link::clear().with_delay(DELAY));
    }
    net.connect();
    net.advance(Duration::from_millis(500));
    (net, p, r1, r2)
}

/// One-way delay of every link: a real path's, giving each side a round-trip time, which
/// spaces its NACK retries.
const DELAY: Duration = Duration::from_millis(20);

/// Sends five seconds of frames, and three more: the frames of the first five must all
/// arrive by then. The camera keeps sending because str0m stops resending toward a receiver
/// whose resends make more than 15 % of what it sent in the last second (so a camera that
/// stops leaves its last losses unrepaired), and because str0m's estimate toward a lossy
/// receiver falls (its loss-based part) and its pacer then holds video back, up to a second.
/// Returns the number of frames that must have arrived.
fn five_seconds(net: &mut Net, cam: &mut Camera) -> usize {
    cam.run(net, Duration::from_secs(5));
    let upto = cam.sent.len();
    cam.run(net, Duration::from_secs(3));
    upto
}

/// The receivers' first key frame is among the first frames sent: the first, unless its
/// first packet is lost (a camera asked at once, the server's 250 ms throttle), so at most
/// half a second of frames.
const FIRST_WITHIN: usize = 15;

/// A link that loses 5 % of its packets.
fn lossy(seed: u64) -> Link {
    Link::clear().with_loss(5, seed).with_delay(DELAY)
}

/// Twenty loss patterns per test: with three, the one that lost the last tries of a
/// receiver for a packet (see `engine/slots.rs`, `RTX_RATIO_CAP`) would have been missed.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=20;

#[test]
fn loss_on_the_way_in_is_nacked_by_the_server_and_every_receiver_gets_every_frame() {
    for seed in SEEDS {
        let (mut net, p, r1, r2) = room();
        net.peers[p].uplink = Some(lossy(seed));
        let mut cam = Camera::new(p);
        let upto = five_seconds(&mut net, &mut cam);
        let lost = net.peers[p].uplink.as_ref().unwrap().lost;
        let pubr = net.peers[p].repairs;
        let (n1, n2) = (
            assert_every_frame(&net, r1, &cam, FIRST_WITHIN, upto),
            assert_every_frame(&net, r2, &cam, FIRST_WITHIN, upto),
        );
        println!(
            "seed {seed:#x}: uplink lost {lost} datagrams; publisher got {} NACKs, resent {} \
             packets; r1 {n1} frames, r2 {n2} frames of {} sent",
            pubr.nacks_in,
            pubr.rtx_out,
            cam.sent.len()
        );
        assert!(lost > 0, "the link lost packets");
        assert!(pubr.nacks_in > 0, "the server NACKed the publisher");
        assert!(pubr.rtx_out > 0, "the publisher resent");
        // The receivers saw the gaps too and NACKed the server, which did not have the
        // packets yet: the repair reached them as regular packets.
        println!(
            "  r1 sent {} NACKs, r2 {}",
            net.peers[r1].repairs.nacks_out, net.peers[r2].repairs.nacks_out
        );
    }
}

#[test]
fn loss_on_one_downlink_is_repaired_from_the_servers_cache_and_the_others_see_nothing() {
    for seed in SEEDS {
        let (mut net, p, r1, r2) = room();
        net.peers[r1].downlink = Some(lossy(seed));
        let mut cam = Camera::new(p);
        let upto = five_seconds(&mut net, &mut cam);
        let lost = net.peers[r1].downlink.as_ref().unwrap().lost;
        let (rep1, rep2, pubr) = (
            net.peers[r1].repairs,
            net.peers[r2].repairs,
            net.peers[p].repairs,
        );
        let n1 = assert_every_frame(&net, r1, &cam, FIRST_WITHIN, upto);
        let n2 = assert_every_frame(&net, r2, &cam, FIRST_WITHIN, upto);
        println!(
            "seed {seed:#x}: r1's downlink lost {lost} datagrams; r1 sent {} NACKs, got {} \
             resent packets, {n1} frames; r2 {n2} frames, {} NACKs; the publisher got {} NACKs",
            rep1.nacks_out, rep1.rtx_in, rep2.nacks_out, pubr.nacks_in
        );
        assert!(lost > 0, "the link lost packets");
        assert!(rep1.nacks_out > 0, "r1 NACKed");
        assert!(rep1.rtx_in > 0, "the server resent to r1");
        assert_eq!(rep2.nacks_out, 0, "r2 saw no loss");
        assert_eq!(
            pubr.nacks_in, 0,
            "a downlink loss is repaired by the server, not the publisher"
        );
    }
}

#[test]
fn loss_on_both_legs_is_repaired_on_each() {
    for seed in SEEDS {
        let (mut net, p, r1, r2) = room();
        net.peers[p].uplink = Some(lossy(seed));
        net.peers[r1].downlink = Some(lossy(seed ^ 0x9e37_79b9));
        let mut cam = Camera::new(p);
        let upto = five_seconds(&mut net, &mut cam);
        let n1 = assert_every_frame(&net, r1, &cam, FIRST_WITHIN, upto);
        let n2 = assert_every_frame(&net, r2, &cam, FIRST_WITHIN, upto);
        let (rep1, pubr) = (net.peers[r1].repairs, net.peers[p].repairs);
        println!(
            "seed {seed:#x}: publisher got {} NACKs; r1 sent {} NACKs, got {} resent packets; \
             r1 {n1} frames, r2 {n2} frames of {}",
            pubr.nacks_in,
            rep1.nacks_out,
            rep1.rtx_in,
            cam.sent.len()
        );
        assert!(pubr.nacks_in > 0 && rep1.nacks_out > 0 && rep1.rtx_in > 0);
    }
}

#[test]
fn a_keyframe_whose_first_packet_comes_late_is_not_started_on() {
    let (mut net, p, _r1, _r2) = room();
    let mut cam = Camera::new(p);
    cam.run(&mut net, Duration::from_secs(1));
    // A late joiner: the server asks for a key frame, whose first packet is lost on the way
    // in and repaired after the packets that follow it. The joiner's slot, which dropped
    // those while it waited, must not start on the repair.
    let r3 = net.join_video("r3", "g");
    net.peers[r3].uplink = Some(Link::clear().with_delay(DELAY));
    net.peers[r3].downlink = Some(Link::clear().with_delay(DELAY));
    net.connect();
    cam.lose_next_key_start = true;
    let from = cam.sent.len();
    let upto = five_seconds(&mut net, &mut cam);
    assert!(!cam.lose_next_key_start, "the key frame was sent");
    assert_eq!(net.peers[p].uplink.as_ref().unwrap().lost, 1);
    let got = frames_from(&net, r3, "pub");
    assert!(
        got[0].keyframe && got.iter().all(|f| f.contiguous),
        "r3 starts on a whole key frame: {:?}",
        got.iter()
            .take(3)
            .map(|f| (f.keyframe, f.contiguous))
            .collect::<Vec<_>>()
    );
    let n = assert_every_frame(&net, r3, &cam, from + FIRST_WITHIN, upto);
    println!("r3 got {n} frames from frame {}", upto - n);
}

/// The video slot of `receiver` that `from` occupies.
fn slot_mid(net: &Net, receiver: usize, from: &str) -> String {
    let p = &net.peers[receiver];
    p.tracks
        .iter()
        .find(|(m, o)| {
            p.track_kinds.get(*m) == Some(&voipchat_proto::TrackKind::Video)
                && o.as_ref().map(|o| o.as_str()) == Some(from)
        })
        .map(|(m, _)| m.clone())
        .expect("a video slot")
}

/// A receiver whose decoder keeps asking for keyframes (a PLI every 50 ms, as on a very bad
/// link) gets the publisher asked about once a second, not at the 250 ms pace of the
/// server's own requests: every keyframe is many times a delta frame, and the other
/// receivers of that camera would pay for them.
#[test]
fn a_receiver_asking_for_keyframes_over_and_over_is_passed_on_once_a_second() {
    let (mut net, p, r1, r2) = room();
    let mut cam = Camera::new(p);
    cam.run(&mut net, Duration::from_secs(1));
    let mid = slot_mid(&net, r1, "pub");
    let before = net.peers[p].keyframe_requests;
    let end = net.now + Duration::from_secs(3);
    while net.now < end {
        let r = &mut net.peers[r1];
        r.rtc
            .direct_api()
            .stream_rx_by_mid(mid.as_str().into(), None)
            .expect("r1 receives on the slot")
            .request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        cam.run(&mut net, Duration::from_millis(50));
    }
    let passed = net.peers[p].keyframe_requests - before;
    println!("60 PLIs from r1 in 3 s: the publisher was asked {passed} times");
    assert!((2..=4).contains(&passed), "asked {passed} times");
    // r1 still gets the whole stream, as r2 does.
    let (n1, n2) = (
        frames_from(&net, r1, "pub").len(),
        frames_from(&net, r2, "pub").len(),
    );
    assert!(n2 > 80 && n1 == n2, "r1 {n1} frames, r2 {n2}");
}
