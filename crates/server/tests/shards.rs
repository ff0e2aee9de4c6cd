//! Media shards (`media_shards`): rooms spread over several engines, each on its own media
//! port; every room's members still meet and hear each other, the backend API finds every
//! room wherever it lives, and a connection in a room of one shard cannot also join a room
//! of another.

mod common;

use std::time::Duration;

use common::binary::offer;
use common::peers::{peer, setup, warm_up_marked, TestPeer};
use common::RawWs;
use voipchat_proto::{AppId, GroupId, RoomKey, Secret, ServerMsg};
use voipchat_server::shards::shard_of;

/// The first groupIds (g0, g1, …) whose rooms live in shard 0 and in shard 1 of 2.
fn one_group_per_shard(app: &AppId) -> [String; 2] {
    let mut found: [Option<String>; 2] = [None, None];
    for i in 0.. {
        let g = format!("g{i}");
        let s = shard_of(&RoomKey::new(app.clone(), GroupId::new(&g)), 2);
        found[s].get_or_insert(g);
        if let [Some(a), Some(b)] = &found {
            return [a.clone(), b.clone()];
        }
    }
    unreachable!()
}

/// Sends a frame and returns the errCode of the join or exit result that answers it (the
/// events a member gets meanwhile are skipped).
async fn result_code(ws: &mut RawWs, frame: &str) -> i32 {
    ws.send_text(frame).await;
    loop {
        match ws.recv().await {
            ServerMsg::JoinResult { status, .. } | ServerMsg::ExitResult { status } => {
                return status.err_code
            }
            _ => continue,
        }
    }
}

fn join_frame(app: &AppId, group: &str, nonce: &str, key: &Secret) -> String {
    common::join_frame(app, group, nonce, key, &offer())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_two_shards_carry_their_own_media_and_the_api_sees_them_all() {
    let (_dir, server, app, secret) = setup(|c| c.media_shards = 2).await;
    let [g0, g1] = one_group_per_shard(&app);
    let r0 = [
        peer(&server, &app, &secret, "a", &g0).await,
        peer(&server, &app, &secret, "b", &g0).await,
    ];
    let r1 = [
        peer(&server, &app, &secret, "c", &g1).await,
        peer(&server, &app, &secret, "d", &g1).await,
    ];
    // Each room's members hear each other: shard 1's members reached shard 1's port (its
    // engine alone knows their ICE credentials).
    warm_up_marked(&r0.iter().collect::<Vec<_>>(), 100).await;
    warm_up_marked(&r1.iter().collect::<Vec<_>>(), 110).await;
    let all: Vec<&TestPeer> = r0.iter().chain(r1.iter()).collect();
    for seq in 0..20 {
        for (i, p) in all.iter().enumerate() {
            p.send(i as u8, seq);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, p) in all.iter().enumerate() {
        let mate = all[i ^ 1];
        assert!(
            !p.audio_from(&mate.open_id).is_empty(),
            "{} heard {}",
            p.open_id,
            mate.open_id
        );
        for o in all
            .iter()
            .filter(|o| o.open_id != p.open_id && o.open_id != mate.open_id)
        {
            assert!(
                p.audio_from(&o.open_id).is_empty(),
                "{} heard {} of the other room",
                p.open_id,
                o.open_id
            );
        }
    }

    // One room's call reaches its own shard, whichever it is.
    assert_eq!(server.members(&app, &secret, &g0).await, ["a", "b"]);
    assert_eq!(server.members(&app, &secret, &g1).await, ["c", "d"]);
    // The list has both, in groupId order, and pages across the shards.
    let list = |query: &'static str| {
        let (server, app, secret) = (&server, &app, &secret);
        async move {
            let (status, body) = server
                .http_request(
                    "GET",
                    &format!("/api/v1/rooms{query}"),
                    Some((app, secret)),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let groups: Vec<String> = v["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["groupId"].as_str().unwrap().to_string())
                .collect();
            (groups, v["nextAfter"].as_str().map(str::to_string))
        }
    };
    let mut both = vec![g0.clone(), g1.clone()];
    both.sort();
    assert_eq!(list("").await, (both.clone(), None));
    assert_eq!(
        list("?limit=1").await,
        (vec![both[0].clone()], Some(both[0].clone()))
    );
    let after = format!("?limit=1&after={}", both[0]);
    let after: &'static str = Box::leak(after.into_boxed_str());
    assert_eq!(list(after).await, (vec![both[1].clone()], None));
    // A kick in shard 1's room.
    let (status, body) = server
        .http_request(
            "POST",
            &format!("/api/v1/rooms/{g1}/kick"),
            Some((&app, &secret)),
            Some(r#"{"openId":"d"}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        r1[1]
            .wait_until(Duration::from_secs(5), || r1[1].interrupted().is_some())
            .await,
        "d was told"
    );
    assert_eq!(server.members(&app, &secret, &g1).await, ["c"]);
    // Both shards' rooms count for the quota, once each.
    assert_eq!(server.rooms_created(&app, &secret).await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_a_room_of_one_shard_cannot_join_a_room_of_another() {
    let (_dir, server, app, secret) = setup(|c| c.media_shards = 2).await;
    let [g0, g1] = one_group_per_shard(&app);
    let key = server.session_key(&app, &secret, "u1").await;
    let mut ws = RawWs::connect(&server.ws_url()).await;
    assert_eq!(
        result_code(&mut ws, &join_frame(&app, &g0, "n1", &key)).await,
        0
    );
    // In g0 (shard 0) now: a join for g1 (shard 1) is the second join -1 refuses.
    assert_eq!(
        result_code(&mut ws, &join_frame(&app, &g1, "n2", &key)).await,
        -1
    );
    assert!(server.members(&app, &secret, &g1).await.is_empty());
    // Its nonce was given back: a join with the same nonce works once the connection is
    // out of its room.
    assert_eq!(result_code(&mut ws, r#"{"type":"exit"}"#).await, 0);
    assert_eq!(
        result_code(&mut ws, &join_frame(&app, &g1, "n2", &key)).await,
        0
    );
    assert_eq!(server.members(&app, &secret, &g1).await, ["u1"]);
    assert!(server.members(&app, &secret, &g0).await.is_empty());
    server.stop().await;
}
