//! Video rooms with real peers: the Rust client (str0m, real ICE/DTLS-SRTP, VP8) against the
//! real server on loopback. Frames go in as an IVF file would hold them and must come out
//! byte for byte, from a keyframe on, only to the members that receive that video.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::peers::{setup, TestPeer};
use voipchat_client::{AudioSender, ClientEvent};
use voipchat_proto::{MuteConfig, OpenId};

/// A VP8 frame naming its sender and number: a key frame (lowest bit 0, with the start
/// code) or a delta frame.
fn vp8(tag: u8, n: u32, key: bool) -> Vec<u8> {
    let mut v = if key {
        vec![0x50, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
    } else {
        vec![0x51, 0x00, 0x00]
    };
    v.push(tag);
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0x33; 200]);
    v
}

/// A camera: 30 frames a second for `frames` frames, a key frame every 60 or when the server
/// asked for one. Returns what it sent.
async fn camera(
    sender: AudioSender,
    events: Arc<Mutex<Vec<ClientEvent>>>,
    tag: u8,
    frames: u32,
) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    let mut answered = 0;
    for n in 0..frames {
        let asked = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, ClientEvent::KeyframeRequested))
            .count();
        let key = asked > answered || n % 60 == 0;
        answered = asked;
        let frame = vp8(tag, n, key);
        sender
            .send_vp8(frame.clone(), Duration::from_millis(33))
            .expect("send");
        sent.push(frame);
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    sent
}

fn video_from(p: &TestPeer, from: &str) -> Vec<Vec<u8>> {
    p.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Video {
                from: Some(f),
                frame,
                ..
            } if f.as_str() == from => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

fn video_members(p: &TestPeer) -> Vec<Vec<String>> {
    p.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::VideoMembersChanged(l) => Some(l.iter().map(|o| o.to_string()).collect()),
            _ => None,
        })
        .collect()
}

/// What arrived is a run of what was sent, starting at a key frame, byte for byte.
fn assert_run_from_keyframe(got: &[Vec<u8>], sent: &[Vec<u8>], what: &str) {
    assert!(!got.is_empty(), "{what}: nothing received");
    assert_eq!(got[0][0] & 1, 0, "{what}: starts on a key frame");
    let start = sent
        .iter()
        .position(|f| *f == got[0])
        .unwrap_or_else(|| panic!("{what}: a frame nobody sent"));
    let end = (start + got.len()).min(sent.len());
    assert_eq!(got, &sent[start..end], "{what}: byte for byte, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_members_see_the_first_two_then_what_they_subscribe() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let names = ["a", "b", "c", "d"];
    let mut peers = Vec::new();
    for n in names {
        peers.push(TestPeer::join_video(&server, &app, &secret, n, "v").await);
    }
    for p in &peers {
        p.wait_connected().await;
    }
    // Two seconds of video from everyone.
    let cams: Vec<_> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| tokio::spawn(camera(p.sender.clone(), p.events.clone(), i as u8, 60)))
        .collect();
    let mut sent = Vec::new();
    for c in cams {
        sent.push(c.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sees: [&[usize]; 4] = [&[1, 2], &[0, 2], &[0, 1], &[0, 1]];
    for (r, wanted) in sees.iter().enumerate() {
        for s in 0..4 {
            let got = video_from(&peers[r], names[s]);
            let what = format!("{} from {}", names[r], names[s]);
            if wanted.contains(&s) {
                assert_run_from_keyframe(&got, &sent[s], &what);
                assert!(got.len() >= 30, "{what}: only {} frames", got.len());
            } else if s != r {
                assert!(got.is_empty(), "{what}: an unsubscribed video arrived");
            }
        }
    }
    assert_eq!(
        video_members(&peers[3]).last(),
        Some(&vec!["a".to_string(), "b".into(), "c".into(), "d".into()])
    );

    // d subscribes to c only: c's frames arrive within a second, a's stop.
    let d = &peers[3];
    d.sender
        .subscribe_video(vec![OpenId::from("c")])
        .await
        .expect("subscribe");
    let from_a = video_from(d, "a").len();
    let cam_c = tokio::spawn(camera(
        peers[2].sender.clone(),
        peers[2].events.clone(),
        2,
        45,
    ));
    let cam_a = tokio::spawn(camera(
        peers[0].sender.clone(),
        peers[0].events.clone(),
        0,
        45,
    ));
    let start = tokio::time::Instant::now();
    assert!(
        d.wait_until(Duration::from_secs(1), || !video_from(d, "c").is_empty())
            .await,
        "c's video reaches d within 1 s of subscribing"
    );
    println!(
        "subscription → first frame of c at d: {} ms",
        start.elapsed().as_millis()
    );
    let sent_c = cam_c.await.unwrap();
    cam_a.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_run_from_keyframe(&video_from(d, "c"), &sent_c, "d from c");
    assert!(
        video_from(d, "a").len() <= from_a + 2,
        "a's video to d stopped: {} then {}",
        from_a,
        video_from(d, "a").len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_promotes_the_next_and_mute_camera_stops_the_frames() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let a = TestPeer::join_video(&server, &app, &secret, "a", "v").await;
    let b = TestPeer::join_video(&server, &app, &secret, "b", "v").await;
    let c = TestPeer::join_video(&server, &app, &secret, "c", "v").await;
    let d = TestPeer::join_video(&server, &app, &secret, "d", "v").await;
    for p in [&a, &b, &c, &d] {
        p.wait_connected().await;
    }
    a.exit().await;
    let cam_b = tokio::spawn(camera(b.sender.clone(), b.events.clone(), 1, 45));
    let cam_c = tokio::spawn(camera(c.sender.clone(), c.events.clone(), 2, 45));
    let sent_c = cam_c.await.unwrap();
    cam_b.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_run_from_keyframe(&video_from(&d, "c"), &sent_c, "c promoted for d");
    assert_eq!(
        video_members(&d).last(),
        Some(&vec!["b".to_string(), "c".into(), "d".into()])
    );

    // b turns its camera off: the room is told, its frames stop.
    let client_b = b.into_client().await;
    client_b
        .update_mute(MuteConfig {
            mute_camera: true,
            ..MuteConfig::default()
        })
        .await
        .expect("mute camera");
    assert!(
        d.wait_until(Duration::from_secs(2), || video_members(&d).last()
            == Some(&vec!["c".to_string(), "d".into()]))
            .await,
        "video members without b: {:?}",
        video_members(&d)
    );
    let before = video_from(&d, "b").len();
    let sender_b = client_b.audio_sender();
    for n in 0..20 {
        sender_b
            .send_vp8(vp8(1, 1000 + n, n == 0), Duration::from_millis(33))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        video_from(&d, "b").len(),
        before,
        "no frame of a muted camera"
    );
    server.stop().await;
}
