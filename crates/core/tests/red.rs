//! Redundant audio (RED, RFC 2198) and Opus FEC through the engine, with str0m peers: RED is
//! negotiated with peers that offer it, a RED receiver gets a RED publisher's packets as
//! sent, a receiver without RED gets exactly the primary block as plain Opus, a plain
//! publisher reaches everyone as plain Opus, and the config switches both off.

mod common;

use std::time::{Duration, Instant};

use common::*;
use str0m::format::Codec;
use str0m::media::{MediaKind, Pt};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Rtc};
use voipchat_core::red::{encode, Red};
use voipchat_proto::MuteConfig;

const GROUP: &str = "lossy";

/// A voice peer whose session offers RED (`red`) or not, records its raw packets, and runs
/// in RTP mode when it writes its own payloads (`rtp_mode`).
fn peer(net: &mut Net, open_id: &str, red: bool, rtp_mode: bool) -> usize {
    let idx = net.add_peer(open_id);
    let p = &mut net.peers[idx];
    let mut rtc: Rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, red)
        .enable_raw_packets(true)
        .set_rtp_mode(rtp_mode)
        .build(net.now);
    rtc.add_local_candidate(Candidate::host(p.addr, "udp").unwrap());
    p.rtc = rtc;
    net.send_join(idx, GROUP, MuteConfig::default());
    idx
}

/// Opus and RED payload types of a peer's session (RED None: not negotiated).
fn pts(net: &Net, idx: usize) -> (Pt, Option<Pt>) {
    let opus = net.peers[idx]
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .expect("opus");
    (opus.pt(), opus.red())
}

/// The raw audio packets `idx` received from `from`: (payload type, payload).
fn heard_from(net: &Net, idx: usize, from: &str) -> Vec<(u8, Vec<u8>)> {
    let p = &net.peers[idx];
    p.audio_rtp_in
        .iter()
        .filter(|(mid, _, _)| {
            mid.as_ref()
                .and_then(|m| p.tracks.get(m))
                .is_some_and(|o| o.as_ref().is_some_and(|o| o.as_str() == from))
        })
        .map(|(_, pt, data)| (*pt, data.clone()))
        .collect()
}

/// 40 distinct Opus-sized frames.
fn frames() -> Vec<Vec<u8>> {
    (0..40u8)
        .map(|i| (0..30 + i % 7).map(|j| i.wrapping_mul(31) ^ j).collect())
        .collect()
}

fn speak_all(net: &mut Net, idx: usize, frames: &[Vec<u8>]) {
    for f in frames {
        net.speak(idx, f, -20);
        net.advance(Duration::from_millis(20));
    }
}

#[test]
fn a_red_receiver_gets_red_and_a_plain_one_exactly_the_primary() {
    let mut net = Net::new(10);
    let alice = peer(&mut net, "alice", true, false);
    let bob = peer(&mut net, "bob", true, false);
    let carol = peer(&mut net, "carol", false, false);
    net.connect();
    net.advance(Duration::from_millis(500));
    assert!(net.peers[alice]
        .last_answer
        .as_ref()
        .unwrap()
        .contains("red/48000/2"));
    assert!(!net.peers[carol]
        .last_answer
        .as_ref()
        .unwrap()
        .contains("red/"));
    let (opus_b, red_b) = pts(&net, bob);
    let red_b = red_b.expect("bob negotiated RED");
    let (opus_c, red_c) = pts(&net, carol);
    assert_eq!(red_c, None, "carol did not offer RED");

    let frames = frames();
    speak_all(&mut net, alice, &frames);

    // bob: RED as alice's session sent it, each primary one of her frames in order, each
    // redundant block the frame before.
    let got = heard_from(&net, bob, "alice");
    assert!(
        got.len() >= frames.len() - 2,
        "bob got {} packets",
        got.len()
    );
    let mut primaries = Vec::new();
    let mut with_redundancy = 0;
    for (pt, payload) in &got {
        assert_eq!(*pt, *red_b, "bob gets RED");
        let red = Red::parse(payload).expect("a RED payload");
        assert!(red.all_of_type(*opus_b));
        let primary = red.primary().data.to_vec();
        let at = frames.iter().position(|f| *f == primary).expect("a frame");
        for older in red.redundant() {
            assert_eq!(older.data, &frames[at - 1][..], "the previous frame");
            assert_eq!(older.timestamp_offset, 960);
            with_redundancy += 1;
        }
        primaries.push(primary);
    }
    assert!(
        with_redundancy >= got.len() - 1,
        "every packet but the first carries the one before"
    );
    // carol: plain Opus, byte for byte the primaries bob got, in the same order.
    let plain = heard_from(&net, carol, "alice");
    assert_eq!(plain.len(), got.len());
    for ((pt, payload), primary) in plain.iter().zip(&primaries) {
        assert_eq!(*pt, *opus_c, "carol gets plain Opus");
        assert_eq!(payload, primary);
    }
    assert!(primaries.windows(2).all(|w| {
        let a = frames.iter().position(|f| *f == w[0]).unwrap();
        let b = frames.iter().position(|f| *f == w[1]).unwrap();
        b == a + 1
    }));

    // A plain publisher reaches a RED receiver as plain Opus.
    speak_all(&mut net, carol, &frames[..10]);
    let from_carol = heard_from(&net, bob, "carol");
    assert!(from_carol.len() >= 8, "{}", from_carol.len());
    for (pt, payload) in &from_carol {
        assert_eq!(*pt, *opus_b);
        assert!(frames.contains(payload));
    }
}

#[test]
fn hostile_red_from_a_publisher_reaches_nobody_and_good_red_still_does() {
    let mut net = Net::new(10);
    let alice = peer(&mut net, "alice", true, true);
    let bob = peer(&mut net, "bob", true, false);
    let carol = peer(&mut net, "carol", false, false);
    net.connect();
    net.advance(Duration::from_millis(500));
    let (opus, red) = pts(&net, alice);
    let red = red.expect("alice negotiated RED");
    let mid = net.peers[alice]
        .rtc
        .media(net.peers[alice].send_mid.unwrap())
        .map(|m| (m.mid(), m.kind()))
        .unwrap();
    assert_eq!(mid.1, MediaKind::Audio);
    let good = encode(&[(*opus, 960, b"older")], *opus, b"newer");
    let payloads: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80 | *opus, 0, 0],
        {
            let mut lying = encode(&[(*opus, 960, b"abc")], *opus, b"d");
            lying[3] = 250;
            lying
        },
        encode(&[], 9, b"not opus"),
        vec![0xff; 64],
        good.clone(),
    ];
    let start = Instant::now();
    for (i, payload) in payloads.iter().enumerate() {
        let now = net.now;
        let mut api = net.peers[alice].rtc.direct_api();
        let tx = api
            .stream_tx_by_mid(mid.0, None)
            .expect("alice's send stream");
        let seq = (1000 + i as u64).into();
        let time = 48_000 + 960 * i as u32;
        tx.write_rtp(RtpWrite::new(red, seq, time, now, payload.clone()));
        net.advance(Duration::from_millis(20));
    }
    assert!(start.elapsed() < Duration::from_secs(30));
    let (_, red_b) = pts(&net, bob);
    let to_bob = heard_from(&net, bob, "alice");
    assert_eq!(
        to_bob,
        vec![(*red_b.unwrap(), good.clone())],
        "only the good one"
    );
    let (opus_c, _) = pts(&net, carol);
    let to_carol = heard_from(&net, carol, "alice");
    assert_eq!(to_carol, vec![(*opus_c, b"newer".to_vec())]);
}

#[test]
fn with_audio_red_off_nobody_negotiates_it() {
    let mut net = Net::with_config(|c| c.audio_red = false);
    let alice = peer(&mut net, "alice", true, false);
    let bob = peer(&mut net, "bob", true, false);
    net.connect();
    net.advance(Duration::from_millis(500));
    assert!(!net.peers[alice]
        .last_answer
        .as_ref()
        .unwrap()
        .contains("red/"));
    assert_eq!(pts(&net, alice).1, None);
    assert_eq!(pts(&net, bob).1, None);
    let frames = frames();
    speak_all(&mut net, alice, &frames[..10]);
    let got = heard_from(&net, bob, "alice");
    assert!(got.len() >= 8);
    let (opus_b, _) = pts(&net, bob);
    for (pt, payload) in &got {
        assert_eq!(*pt, *opus_b);
        assert!(frames.contains(payload));
    }
}

#[test]
fn opus_fec_is_asked_for_unless_switched_off() {
    for fec in [true, false] {
        let mut net = Net::with_config(|c| c.opus_fec = fec);
        let alice = peer(&mut net, "alice", true, false);
        let bob = peer(&mut net, "bob", true, false);
        net.connect();
        net.advance(Duration::from_millis(200));
        let answer = net.peers[alice].last_answer.clone().unwrap();
        let fmtp = answer
            .lines()
            .find(|l| l.starts_with(&format!("a=fmtp:{} ", *pts(&net, alice).0)))
            .unwrap_or("")
            .to_string();
        assert_eq!(fmtp.contains("useinbandfec=1"), fec, "{fmtp}");
        assert!(fmtp.contains("minptime=10"), "the rest stays: {fmtp}");
        // The slot offers say the same.
        let offers: Vec<&String> = net.peers[bob]
            .messages
            .iter()
            .filter_map(|m| match m {
                voipchat_proto::ServerMsg::Offer { sdp, .. } => Some(sdp),
                _ => None,
            })
            .collect();
        assert!(!offers.is_empty());
        for sdp in offers {
            assert_eq!(sdp.contains("useinbandfec=1"), fec);
        }
        assert!(answer.contains("red/48000/2"), "RED is its own switch");
    }
}
