//! Room rules and media with real peers: the Rust client (str0m, real ICE/DTLS-SRTP) against
//! the real server on loopback, state in a real SQLite file.

mod common;

use std::time::Duration;

use common::peers::{payload, peer, setup, warm_up, warm_up_marked, TestPeer};
use common::TestServer;
use voipchat_client::ClientError;
use voipchat_proto::ErrorCode;

/// Payloads of the numbered (non-warm-up) sequence from sender index `idx`.
fn numbered(got: Vec<Vec<u8>>, idx: u8) -> Vec<Vec<u8>> {
    got.into_iter().filter(|p| p[1] == idx).collect()
}

fn refused_code(r: Result<TestPeer, ClientError>) -> i32 {
    match r {
        Err(ClientError::Refused { err_code, .. }) => err_code,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(p) => panic!("expected a refusal, {} was admitted", p.open_id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_hear_each_other_byte_for_byte_in_order_never_themselves() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let names = ["alice", "bob", "carol"];
    let mut peers = Vec::new();
    for n in names {
        peers.push(peer(&server, &app, &secret, n, "room").await);
    }
    warm_up(&peers.iter().collect::<Vec<_>>()).await;

    const N: u32 = 100;
    for seq in 0..N {
        for (i, p) in peers.iter().enumerate() {
            p.send(i as u8, seq);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (r, receiver) in peers.iter().enumerate() {
        for (s, sender) in peers.iter().enumerate() {
            if r == s {
                continue;
            }
            let ok = receiver
                .wait_until(Duration::from_secs(5), || {
                    numbered(receiver.audio_from(&sender.open_id), s as u8).len() >= N as usize
                })
                .await;
            assert!(
                ok,
                "{} did not get all of {}'s packets",
                receiver.open_id, sender.open_id
            );
            let want: Vec<Vec<u8>> = (0..N).map(|q| payload(s as u8, q)).collect();
            assert_eq!(
                numbered(receiver.audio_from(&sender.open_id), s as u8),
                want,
                "{} from {}: byte for byte, in order",
                receiver.open_id,
                sender.open_id
            );
        }
        let own = receiver
            .all_audio()
            .into_iter()
            .filter(|(_, p)| p[1] == r as u8 || p[1] == 100 + r as u8)
            .count();
        assert_eq!(own, 0, "{} received its own audio", receiver.open_id);
    }
    assert_eq!(
        peers[0].members_changed(),
        vec![vec!["alice", "bob"], vec!["alice", "bob", "carol"]]
    );
    assert_eq!(
        peers[1].members_changed(),
        vec![vec!["alice", "bob", "carol"]]
    );

    // carol leaves: the others see it, in order.
    let carol = peers.pop().unwrap();
    carol.exit().await;
    for p in &peers {
        assert!(
            p.wait_until(Duration::from_secs(2), || p
                .members_changed()
                .last()
                .map(|l| l.len())
                == Some(2))
                .await,
            "{} saw carol leave",
            p.open_id
        );
    }
    assert_eq!(
        peers[0].members_changed().last().unwrap(),
        &vec!["alice", "bob"]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleventh_peer_is_refused_while_the_ten_keep_talking() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let mut peers = Vec::new();
    for i in 0..10 {
        peers.push(peer(&server, &app, &secret, &format!("p{i}"), "full").await);
    }
    warm_up(&peers.iter().collect::<Vec<_>>()).await;
    let code = refused_code(TestPeer::join(&server, &app, &secret, "p10", "full").await);
    assert_eq!(code, ErrorCode::RoomFull.code());
    assert_eq!(server.members(&app, &secret, "full").await.len(), 10);

    for seq in 0..20 {
        peers[0].send(0, seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in &peers[1..] {
        assert!(
            p.wait_until(Duration::from_secs(5), || numbered(p.audio_from("p0"), 0)
                .len()
                == 20)
                .await,
            "{} still hears p0 after the refusal",
            p.open_id
        );
    }
    assert_eq!(server.rooms_created(&app, &secret).await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_simultaneous_joins_create_one_room_and_admit_exactly_ten() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let mut keys = Vec::new();
    for i in 0..50 {
        keys.push(server.session_key(&app, &secret, &format!("u{i}")).await);
    }
    let joins = keys.iter().enumerate().map(|(i, key)| {
        let (server, app) = (&server, &app);
        async move { TestPeer::join_with_key(server, app, key, &format!("u{i}"), "rush").await }
    });
    let results = futures_util::future::join_all(joins).await;
    let mut admitted = Vec::new();
    let mut full = 0;
    for r in results {
        match r {
            Ok(p) => admitted.push(p),
            Err(ClientError::Refused { err_code, .. })
                if err_code == ErrorCode::RoomFull.code() =>
            {
                full += 1
            }
            Err(e) => panic!("unexpected join failure: {e}"),
        }
    }
    assert_eq!(admitted.len(), 10, "exactly ten admitted");
    assert_eq!(full, 40, "the rest get room full");
    assert_eq!(
        server.rooms_created(&app, &secret).await,
        1,
        "exactly one room counted"
    );
    assert_eq!(server.members(&app, &secret, "rush").await.len(), 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_quota_is_exact_counts_recreation_and_survives_restart() {
    let (dir, server, app, secret) = setup(|c| c.daily_room_quota = 3).await;

    // Room 1, destroyed by its last leave, then created again: two rooms counted.
    let a = peer(&server, &app, &secret, "a", "g1").await;
    a.exit().await;
    assert!(server.members(&app, &secret, "g1").await.is_empty());
    let a = peer(&server, &app, &secret, "a", "g1").await;
    assert_eq!(server.rooms_created(&app, &secret).await, 2);
    let b = peer(&server, &app, &secret, "b", "g2").await;
    assert_eq!(server.rooms_created(&app, &secret).await, 3);

    // The fourth creation is refused with WeChat's -13000 …
    let code = refused_code(TestPeer::join(&server, &app, &secret, "c", "g3").await);
    assert_eq!(code, -13000);
    // … while joining an existing room still works.
    let c = peer(&server, &app, &secret, "c", "g2").await;
    assert_eq!(server.members(&app, &secret, "g2").await, vec!["b", "c"]);
    assert_eq!(server.rooms_created(&app, &secret).await, 3);
    let _ = (a, b, c);
    server.stop().await;

    // After a restart the count is still there.
    let server = TestServer::start(dir.path(), |c| c.daily_room_quota = 3).await;
    assert_eq!(server.rooms_created(&app, &secret).await, 3);
    let code = refused_code(TestPeer::join(&server, &app, &secret, "d", "g4").await);
    assert_eq!(code, -13000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_side_by_side_never_cross() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let r1 = [
        peer(&server, &app, &secret, "a", "one").await,
        peer(&server, &app, &secret, "b", "one").await,
    ];
    let r2 = [
        peer(&server, &app, &secret, "c", "two").await,
        peer(&server, &app, &secret, "d", "two").await,
    ];
    warm_up_marked(&r1.iter().collect::<Vec<_>>(), 100).await;
    warm_up_marked(&r2.iter().collect::<Vec<_>>(), 110).await;
    let all: Vec<&TestPeer> = r1.iter().chain(r2.iter()).collect();
    for seq in 0..50 {
        for (i, p) in all.iter().enumerate() {
            p.send(i as u8, seq);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, p) in all.iter().enumerate() {
        let got = p.all_audio();
        let mate = i ^ 1; // a<->b, c<->d
        assert_eq!(
            numbered(p.audio_from(&all[mate].open_id), mate as u8).len(),
            50
        );
        for (from, data) in &got {
            // Warm-up packets carry 100 (room one) or 110 (room two) + the index within
            // the room; numbered ones carry the index in `all`.
            assert_eq!(
                from.as_ref().map(|o| o.as_str()),
                Some(all[mate].open_id.as_str()),
                "{} got a packet from outside its room",
                p.open_id
            );
            assert!(
                data[1] as usize == mate || data[1] as usize == 100 + (mate / 2) * 10 + mate % 2,
                "{} got numbered packet of sender #{}",
                p.open_id,
                data[1]
            );
        }
        let others = all
            .iter()
            .filter(|o| o.open_id != p.open_id && o.open_id != all[mate].open_id);
        for o in others {
            assert!(p.audio_from(&o.open_id).is_empty());
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_the_same_open_id_replaces_the_ghost() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let a1 = peer(&server, &app, &secret, "a", "g").await;
    let b = peer(&server, &app, &secret, "b", "g").await;
    let a2 = peer(&server, &app, &secret, "a", "g").await;
    assert!(
        a1.wait_until(Duration::from_secs(2), || a1.interrupted().is_some())
            .await
    );
    assert_eq!(a1.interrupted(), Some(ErrorCode::Replaced.code()));
    assert_eq!(server.members(&app, &secret, "g").await, vec!["a", "b"]);
    warm_up(&[&b, &a2]).await;
    assert!(
        b.members_changed().iter().all(|l| l.len() == 2),
        "b never saw a leave and come back: {:?}",
        b.members_changed()
    );
    server.stop().await;
}

/// The demo's two tabs with one name, a reload while alone, the SDK's own rejoin: the only
/// member reconnecting is admitted at once into the same room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_member_reconnecting_keeps_its_room() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let a1 = peer(&server, &app, &secret, "a", "g").await;
    a1.wait_connected().await;
    let a2 = tokio::time::timeout(
        Duration::from_secs(3),
        peer(&server, &app, &secret, "a", "g"),
    )
    .await
    .expect("the new connection gets its joinResult at once");
    assert!(
        a1.wait_until(Duration::from_secs(2), || a1.interrupted().is_some())
            .await
    );
    assert_eq!(a1.interrupted(), Some(ErrorCode::Replaced.code()));
    assert_eq!(server.members(&app, &secret, "g").await, vec!["a"]);
    let b = peer(&server, &app, &secret, "b", "g").await;
    assert_eq!(server.members(&app, &secret, "g").await, vec!["a", "b"]);
    assert_eq!(
        server.rooms_created(&app, &secret).await,
        1,
        "one room, one unit of quota"
    );
    warm_up(&[&a2, &b]).await;
    assert_eq!(a2.members_changed(), vec![vec!["a", "b"]]);
    server.stop().await;
}

/// SIGTERM's promise: every member is told -11004 before its connection closes, every time,
/// and the stop does not wait longer than its connections need.
/// (The connection's own shutdown used to reach the engine first now and then, as a plain
/// disconnect.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_every_member_every_time() {
    const ROUNDS: usize = 15;
    for round in 0..ROUNDS {
        let (_dir, server, app, secret) = setup(|_| {}).await;
        let mut peers = Vec::new();
        for name in ["a", "b", "c", "d"] {
            peers.push(peer(&server, &app, &secret, name, "g").await);
        }
        for p in &peers {
            p.wait_connected().await;
        }
        let stopping = std::time::Instant::now();
        server.stop().await;
        // Every member answers the Close at once, so nothing is left to wait for (the stop
        // used to sit out a 3 s bound every time: a handle of the state outlived the routers).
        assert!(
            stopping.elapsed() < Duration::from_millis(2500),
            "round {round}: the stop took {:?}",
            stopping.elapsed()
        );
        for p in &peers {
            assert!(
                p.wait_until(Duration::from_secs(3), || p.interrupted().is_some())
                    .await,
                "round {round}: {} got no interruption",
                p.open_id
            );
            assert_eq!(
                p.interrupted(),
                Some(ErrorCode::ServerShutdown.code()),
                "round {round}: {}",
                p.open_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_removed_and_shutdown_interrupts_everyone() {
    let (_dir, server, app, secret) = setup(|c| c.media_timeout_secs = 2).await;
    let a = peer(&server, &app, &secret, "a", "g").await;
    let b = peer(&server, &app, &secret, "b", "g").await;
    warm_up(&[&a, &b]).await;
    let silent = b.into_client().await.go_silent();
    assert!(
        a.wait_until(Duration::from_secs(5), || a.members_changed().last()
            == Some(&vec!["a".to_string()]))
            .await,
        "the silent member is removed within the media timeout"
    );
    drop(silent);
    server.stop().await;
    assert!(
        a.wait_until(Duration::from_secs(3), || a.interrupted().is_some())
            .await
    );
    assert_eq!(a.interrupted(), Some(ErrorCode::ServerShutdown.code()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speakers_and_mutes_over_the_wire() {
    use voipchat_client::ClientEvent;
    use voipchat_proto::MuteConfig;
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let a = peer(&server, &app, &secret, "loud", "g").await;
    let b = peer(&server, &app, &secret, "quiet", "g").await;
    warm_up(&[&a, &b]).await;
    let speakers = |p: &TestPeer| -> Vec<Vec<String>> {
        p.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ClientEvent::SpeakersChanged(l) => Some(l.iter().map(|o| o.to_string()).collect()),
                _ => None,
            })
            .collect()
    };
    // Let the warm-up's speech end: everyone silent.
    for seq in 0..50 {
        a.sender
            .send_opus(
                payload(0, seq),
                Duration::from_millis(20),
                Some((127, false)),
            )
            .unwrap();
        b.sender
            .send_opus(
                payload(1, seq),
                Duration::from_millis(20),
                Some((127, false)),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        speakers(&b).last().map_or(0, |l| l.len()),
        0,
        "silence: no speakers"
    );
    let before = speakers(&b).len();
    // "loud" talks, "quiet" stays silent: only "loud" is announced.
    for seq in 50..100 {
        a.sender
            .send_opus(payload(0, seq), Duration::from_millis(20), Some((20, true)))
            .unwrap();
        b.sender
            .send_opus(
                payload(1, seq),
                Duration::from_millis(20),
                Some((127, false)),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = speakers(&b)[before..].to_vec();
    assert_eq!(
        seen,
        vec![vec!["loud".to_string()]],
        "exactly one change: loud speaks"
    );
    assert_eq!(speakers(&a).last(), Some(&vec!["loud".to_string()]));

    // Mute loud's microphone: quiet stops receiving, and loud is no longer a speaker.
    let a_client = a.into_client().await;
    a_client
        .update_mute(MuteConfig {
            mute_microphone: true,
            mute_earphone: false,
            mute_camera: false,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got_before = numbered(b.audio_from("loud"), 0).len();
    for seq in 100..130 {
        a_client
            .send_opus(payload(0, seq), Duration::from_millis(20), Some((20, true)))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        numbered(b.audio_from("loud"), 0).len(),
        got_before,
        "muted mic is not forwarded"
    );
    assert_eq!(
        speakers(&b).last(),
        Some(&vec![]),
        "muted member is no speaker"
    );

    // Quiet mutes its earphone: unmuted loud's audio no longer reaches it.
    a_client.update_mute(MuteConfig::default()).await.unwrap();
    let b_client = b.into_client().await;
    b_client
        .update_mute(MuteConfig {
            mute_microphone: false,
            mute_earphone: true,
            mute_camera: false,
        })
        .await
        .unwrap();
    for seq in 130..160 {
        a_client
            .send_opus(payload(0, seq), Duration::from_millis(20), Some((20, true)))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut heard = 0;
    let mut b_client = b_client;
    while let Some(ev) = b_client.try_next_event() {
        if let ClientEvent::Audio { payload: p, .. } = ev {
            if p[1] == 0 && u32::from_be_bytes([p[2], p[3], p[4], p[5]]) >= 130 {
                heard += 1;
            }
        }
    }
    assert_eq!(heard, 0, "muted earphone receives nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_kicks_a_member() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let a = peer(&server, &app, &secret, "a", "g").await;
    let b = peer(&server, &app, &secret, "b", "g").await;
    let (status, body) = server
        .http_request(
            "POST",
            "/api/v1/rooms/g/kick",
            Some((&app, &secret)),
            Some(r#"{"openId":"b"}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        b.wait_until(Duration::from_secs(2), || b.interrupted().is_some())
            .await
    );
    assert_eq!(b.interrupted(), Some(ErrorCode::Kicked.code()));
    assert!(
        a.wait_until(Duration::from_secs(2), || a.members_changed().last()
            == Some(&vec!["a".to_string()]))
            .await
    );
    let (status, _) = server
        .http_request(
            "POST",
            "/api/v1/rooms/g/kick",
            Some((&app, &secret)),
            Some(r#"{"openId":"b"}"#),
        )
        .await;
    assert_eq!(status, 404, "kicking someone not in the room");
    server.stop().await;
}
