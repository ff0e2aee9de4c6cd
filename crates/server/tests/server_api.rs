//! The backend API that runs rooms, with real clients in them: the Rust client (str0m, real
//! ICE/DTLS-SRTP) against the real server on loopback, state in a real SQLite file. Listing
//! and looking at rooms, server mute (with the forwarding checked), closing a room, the
//! app's settings (room cap, daily quota) and its quota usage by day, and bad input.

mod common;

use std::time::Duration;

use common::peers::{payload, peer, setup, warm_up, TestPeer};
use common::TestServer;
use serde_json::{json, Value};
use voipchat_client::{ClientError, ClientEvent};
use voipchat_proto::{AppId, ErrorCode, MuteConfig, Secret};

/// One backend call with the app's credentials: status and JSON body.
async fn call(
    server: &TestServer,
    (app, secret): (&AppId, &Secret),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = server
        .http_request(method, path, Some((app, secret)), body.as_deref())
        .await;
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, v)
}

/// The `(status, errCode)` of a refused call.
async fn refusal(
    server: &TestServer,
    creds: (&AppId, &Secret),
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, i64) {
    let (status, text) = server.http_request(method, path, Some(creds), body).await;
    let (code, msg) = common::api_failure(&text);
    assert!(msg.starts_with("api:fail "), "{method} {path}: {msg}");
    (status, code)
}

fn code(c: ErrorCode) -> i64 {
    i64::from(c.code())
}

fn refused_code(r: Result<TestPeer, ClientError>) -> i32 {
    match r {
        Err(ClientError::Refused { err_code, .. }) => err_code,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(p) => panic!("expected a refusal, {} was admitted", p.open_id),
    }
}

/// The numbered (non-warm-up) payloads `p` got from `from`, sent with sender index `idx`.
fn numbered_from(p: &TestPeer, from: &str, idx: u8) -> usize {
    p.audio_from(from).iter().filter(|d| d[1] == idx).count()
}

fn events(p: &TestPeer) -> Vec<ClientEvent> {
    p.events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| !matches!(e, ClientEvent::Audio { .. }))
        .cloned()
        .collect()
}

fn server_mutes(p: &TestPeer) -> Vec<bool> {
    events(p)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::ServerMuteChanged(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn mute_lists(p: &TestPeer) -> Vec<Vec<String>> {
    events(p)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::MuteChanged(l) => Some(l.iter().map(|o| o.to_string()).collect()),
            _ => None,
        })
        .collect()
}

/// `sender` sends `n` numbered packets (index `idx`, from `first`), 20 ms apart.
async fn talk(sender: &TestPeer, idx: u8, first: u32, n: u32) {
    for seq in first..first + n {
        sender.send(idx, seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_get_show_each_rooms_type_members_and_mutes() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let creds = (&app, &secret);
    let before = common::unix_now();
    let alice = peer(&server, &app, &secret, "alice", "lobby").await;
    let key = server.session_key(&app, &secret, "bob").await;
    let bob = TestPeer::join_with(&server, &app, &key, "bob", "lobby", |o| {
        o.mute_config.mute_microphone = true
    })
    .await
    .expect("bob joins muted");
    let carol = TestPeer::join_video(&server, &app, &secret, "carol", "arena").await;
    let dave = TestPeer::join_video(&server, &app, &secret, "dave", "arena").await;
    // Another app's room is not this app's business.
    let (other, other_secret) = server.create_app(true);
    let stranger = peer(&server, &other, &other_secret, "eve", "elsewhere").await;
    for p in [&alice, &bob, &carol, &dave] {
        p.wait_connected().await;
    }

    let (status, list) = call(&server, creds, "GET", "/api/v1/rooms", None).await;
    assert_eq!(status, 200, "{list}");
    let rooms = list["rooms"].as_array().unwrap();
    let groups: Vec<&str> = rooms
        .iter()
        .map(|r| r["groupId"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["arena", "lobby"], "this app's rooms, by groupId");
    assert_eq!(list["nextAfter"], Value::Null);
    let (arena, lobby) = (&rooms[0], &rooms[1]);
    assert_eq!(arena["roomType"], "video");
    assert_eq!(lobby["roomType"], "voice");
    assert_eq!(lobby["openIdList"], json!(["alice", "bob"]));
    let member = |room: &Value, i: usize, field: &str| room["members"][i][field].clone();
    assert_eq!(member(lobby, 0, "openId"), "alice");
    assert_eq!(member(lobby, 0, "muted"), false);
    assert_eq!(member(lobby, 1, "openId"), "bob");
    assert_eq!(member(lobby, 1, "muted"), true, "bob joined muted");
    assert_eq!(member(lobby, 1, "serverMuted"), false);
    assert_eq!(
        member(lobby, 0, "cameraOn"),
        false,
        "a voice room has no camera"
    );
    assert_eq!(
        member(arena, 0, "cameraOn"),
        true,
        "carol publishes her camera"
    );
    assert_eq!(arena["openIdList"], json!(["carol", "dave"]));
    let now = common::unix_now();
    for room in rooms {
        let created = room["createdAt"].as_u64().unwrap();
        assert!((before..=now).contains(&created), "{room}");
        assert!(room["ageSecs"].as_u64().unwrap() <= now - before);
        let joined = room["members"][0]["joinedAt"].as_u64().unwrap();
        assert!(created <= joined && joined <= now, "{room}");
    }
    let alice_joined = member(lobby, 0, "joinedAt").as_u64().unwrap();
    assert!(alice_joined <= member(lobby, 1, "joinedAt").as_u64().unwrap());

    // Pages of one room.
    let (_, page) = call(&server, creds, "GET", "/api/v1/rooms?limit=1", None).await;
    assert_eq!(page["rooms"][0]["groupId"], "arena");
    assert_eq!(page["nextAfter"], "arena");
    let (_, page) = call(
        &server,
        creds,
        "GET",
        "/api/v1/rooms?limit=1&after=arena",
        None,
    )
    .await;
    assert_eq!(page["rooms"][0]["groupId"], "lobby");
    assert_eq!(page["nextAfter"], Value::Null);
    let (_, page) = call(&server, creds, "GET", "/api/v1/rooms?after=lobby", None).await;
    assert_eq!(page, json!({"rooms": [], "nextAfter": null}));

    // One room: the same as in the list.
    let (status, one) = call(&server, creds, "GET", "/api/v1/rooms/lobby", None).await;
    assert_eq!(status, 200);
    assert_eq!(one["members"], lobby["members"]);
    assert_eq!(one["groupId"], "lobby");
    // The other app's room does not exist for this app, and the other way round.
    assert_eq!(
        refusal(&server, creds, "GET", "/api/v1/rooms/elsewhere", None).await,
        (404, code(ErrorCode::UnknownRoom))
    );
    let (_, theirs) = call(
        &server,
        (&other, &other_secret),
        "GET",
        "/api/v1/rooms",
        None,
    )
    .await;
    assert_eq!(theirs["rooms"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["rooms"][0]["groupId"], "elsewhere");

    // A member who leaves is gone from the room; a room whose last member left is gone.
    bob.exit().await;
    dave.exit().await;
    carol.exit().await;
    let (_, one) = call(&server, creds, "GET", "/api/v1/rooms/lobby", None).await;
    assert_eq!(one["openIdList"], json!(["alice"]));
    assert_eq!(
        refusal(&server, creds, "GET", "/api/v1/rooms/arena", None).await,
        (404, code(ErrorCode::UnknownRoom))
    );
    let _ = (alice, stranger);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mute_stops_forwarding_and_the_member_cannot_unmute_until_allowed() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let creds = (&app, &secret);
    let alice = peer(&server, &app, &secret, "alice", "g").await;
    let bob = peer(&server, &app, &secret, "bob", "g").await;
    warm_up(&[&alice, &bob]).await;
    talk(&bob, 1, 0, 20).await;
    assert!(
        alice
            .wait_until(Duration::from_secs(5), || numbered_from(&alice, "bob", 1)
                == 20)
            .await,
        "alice hears bob before the mute"
    );

    let (status, body) = call(
        &server,
        creds,
        "POST",
        "/api/v1/rooms/g/mute",
        Some(json!({"openId": "bob", "muted": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"openId": "bob", "serverMuted": true}));
    assert!(
        bob.wait_until(Duration::from_secs(2), || server_mutes(&bob) == [true])
            .await,
        "bob is told: {:?}",
        events(&bob)
    );
    for p in [&alice, &bob] {
        assert!(
            p.wait_until(Duration::from_secs(2), || mute_lists(p).last()
                == Some(&vec!["bob".to_string()]))
                .await,
            "{} sees bob muted",
            p.open_id
        );
    }
    let (_, room) = call(&server, creds, "GET", "/api/v1/rooms/g", None).await;
    assert_eq!(room["members"][1]["muted"], true);
    assert_eq!(room["members"][1]["serverMuted"], true);

    // bob keeps talking: nothing reaches alice.
    talk(&bob, 1, 20, 25).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(numbered_from(&alice, "bob", 1), 20, "muted by the server");

    // bob cannot unmute itself; muting its earphone too is allowed.
    let refused = bob.sender.update_mute(MuteConfig::default()).await;
    match refused {
        Err(ClientError::Refused { err_code, err_msg }) => {
            assert_eq!(err_code, ErrorCode::ServerMuted.code());
            assert_eq!(
                err_msg,
                "updateVoIPChatMuteConfig:fail the microphone was muted by the server"
            );
        }
        other => panic!("bob's unmute: {other:?}"),
    }
    let ear = MuteConfig {
        mute_microphone: true,
        mute_earphone: true,
        mute_camera: false,
    };
    bob.sender
        .update_mute(ear)
        .await
        .expect("still muted: fine");
    talk(&bob, 1, 45, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(numbered_from(&alice, "bob", 1), 20);

    // Allowed again: bob is told, and stays muted until it unmutes itself.
    let (status, body) = call(
        &server,
        creds,
        "POST",
        "/api/v1/rooms/g/mute",
        Some(json!({"openId": "bob", "muted": false})),
    )
    .await;
    assert_eq!((status, body["serverMuted"].clone()), (200, json!(false)));
    assert!(
        bob.wait_until(Duration::from_secs(2), || server_mutes(&bob)
            == [true, false])
            .await
    );
    talk(&bob, 1, 55, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        numbered_from(&alice, "bob", 1),
        20,
        "the server never switches a microphone on"
    );
    bob.sender
        .update_mute(MuteConfig::default())
        .await
        .expect("bob may unmute now");
    talk(&bob, 1, 65, 20).await;
    assert!(
        alice
            .wait_until(Duration::from_secs(5), || numbered_from(&alice, "bob", 1)
                == 40)
            .await,
        "alice hears bob again: {} numbered packets",
        numbered_from(&alice, "bob", 1)
    );
    assert!(mute_lists(&alice).last().unwrap().is_empty());

    // Refusals: unknown room, openId not in the room; muting twice is no error.
    assert_eq!(
        refusal(
            &server,
            creds,
            "POST",
            "/api/v1/rooms/nope/mute",
            Some(r#"{"openId":"bob","muted":true}"#)
        )
        .await,
        (404, code(ErrorCode::UnknownRoom))
    );
    assert_eq!(
        refusal(
            &server,
            creds,
            "POST",
            "/api/v1/rooms/g/mute",
            Some(r#"{"openId":"zed","muted":true}"#)
        )
        .await,
        (404, code(ErrorCode::NotInRoom))
    );
    for _ in 0..2 {
        let (status, _) = call(
            &server,
            creds,
            "POST",
            "/api/v1/rooms/g/mute",
            Some(json!({"openId": "alice", "muted": true})),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert!(
        alice
            .wait_until(Duration::from_secs(2), || server_mutes(&alice) == [true])
            .await,
        "told once"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_muted_member_rejoining_is_muted_again() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let creds = (&app, &secret);
    let alice = peer(&server, &app, &secret, "alice", "g").await;
    let bob = peer(&server, &app, &secret, "bob", "g").await;
    let (status, _) = call(
        &server,
        creds,
        "POST",
        "/api/v1/rooms/g/mute",
        Some(json!({"openId": "bob", "muted": true})),
    )
    .await;
    assert_eq!(status, 200);
    bob.exit().await;
    let bob = peer(&server, &app, &secret, "bob", "g").await;
    assert!(
        bob.wait_until(Duration::from_secs(2), || server_mutes(&bob) == [true])
            .await,
        "told right after its join: {:?}",
        events(&bob)
    );
    let refused = bob.sender.update_mute(MuteConfig::default()).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrorCode::ServerMuted)
    );
    let (_, room) = call(&server, creds, "GET", "/api/v1/rooms/g", None).await;
    assert_eq!(room["members"][1]["serverMuted"], true);
    let _ = alice;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_room_interrupts_every_member_and_the_next_join_makes_a_new_room() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let creds = (&app, &secret);
    let names = ["alice", "bob", "carol"];
    let mut peers = Vec::new();
    for n in names {
        peers.push(peer(&server, &app, &secret, n, "g").await);
    }
    let neighbour = peer(&server, &app, &secret, "dave", "other").await;
    assert_eq!(server.rooms_created(&app, &secret).await, 2);

    let (status, body) = call(&server, creds, "POST", "/api/v1/rooms/g/close", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"closed": true, "openIdList": ["alice", "bob", "carol"]})
    );
    for p in &peers {
        assert!(
            p.wait_until(Duration::from_secs(3), || p.interrupted().is_some())
                .await,
            "{} is interrupted",
            p.open_id
        );
        assert_eq!(p.interrupted(), Some(ErrorCode::RoomClosed.code()));
        let msg = events(p).into_iter().find_map(|e| match e {
            ClientEvent::Interrupted { err_msg, .. } => Some(err_msg),
            _ => None,
        });
        assert_eq!(
            msg.as_deref(),
            Some("onVoIPChatInterrupted:fail room closed by the server")
        );
        assert!(
            p.wait_until(Duration::from_secs(3), || events(p)
                .last()
                .is_some_and(|e| *e == ClientEvent::Closed))
                .await,
            "{}'s connection is closed",
            p.open_id
        );
        // Nobody was told of the others leaving one by one.
        let after_join: Vec<Vec<String>> = p.members_changed();
        assert!(
            after_join.iter().all(|l| l.len() >= 2),
            "{}: {after_join:?}",
            p.open_id
        );
    }
    assert_eq!(
        refusal(&server, creds, "GET", "/api/v1/rooms/g", None).await,
        (404, code(ErrorCode::UnknownRoom))
    );
    assert_eq!(
        refusal(&server, creds, "POST", "/api/v1/rooms/g/close", None).await,
        (404, code(ErrorCode::UnknownRoom)),
        "closed once"
    );
    // The other room is untouched.
    assert_eq!(server.members(&app, &secret, "other").await, ["dave"]);
    assert_eq!(neighbour.interrupted(), None);

    // A later join creates a new room, counted by the quota.
    let again = peer(&server, &app, &secret, "alice", "g").await;
    assert_eq!(server.members(&app, &secret, "g").await, ["alice"]);
    assert_eq!(server.rooms_created(&app, &secret).await, 3);
    let _ = again;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_set_the_apps_room_cap_and_daily_quota() {
    let (_dir, server, app, secret) = setup(|c| c.daily_room_quota = 50).await;
    let creds = (&app, &secret);
    let (status, s) = call(&server, creds, "GET", "/api/v1/settings", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        s,
        json!({"roomCap": null, "dailyRoomQuota": null,
               "effective": {"roomCap": 10, "dailyRoomQuota": 50}})
    );

    let (status, s) = call(
        &server,
        creds,
        "PATCH",
        "/api/v1/settings",
        Some(json!({"roomCap": 2})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["roomCap"], 2);
    assert_eq!(s["dailyRoomQuota"], Value::Null, "left out: unchanged");
    assert_eq!(s["effective"], json!({"roomCap": 2, "dailyRoomQuota": 50}));

    // roomCap 2: the third join gets room full, naming the cap.
    let a = peer(&server, &app, &secret, "a", "g").await;
    let b = peer(&server, &app, &secret, "b", "g").await;
    let third = TestPeer::join(&server, &app, &secret, "c", "g").await;
    match third {
        Err(ClientError::Refused { err_code, err_msg }) => {
            assert_eq!(err_code, ErrorCode::RoomFull.code());
            assert_eq!(err_msg, "joinVoIPChat:fail room is full (2 members)");
        }
        other => panic!("third join: {:?}", other.map(|p| p.open_id)),
    }
    // A higher cap applies to the open room's next join.
    call(
        &server,
        creds,
        "PATCH",
        "/api/v1/settings",
        Some(json!({"roomCap": 3})),
    )
    .await;
    let c = peer(&server, &app, &secret, "c", "g").await;
    assert_eq!(server.members(&app, &secret, "g").await, ["a", "b", "c"]);

    // dailyRoomQuota 1, with one room already created today: no new room.
    let (status, s) = call(
        &server,
        creds,
        "PATCH",
        "/api/v1/settings",
        Some(json!({"dailyRoomQuota": 1})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s["roomCap"], 3, "kept");
    assert_eq!(s["effective"]["dailyRoomQuota"], 1);
    let (_, q) = call(&server, creds, "GET", "/api/v1/quota", None).await;
    assert_eq!(
        (q["roomsCreated"].clone(), q["dailyLimit"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        refused_code(TestPeer::join(&server, &app, &secret, "d", "g2").await),
        ErrorCode::RoomQuotaExceeded.code()
    );
    call(
        &server,
        creds,
        "PATCH",
        "/api/v1/settings",
        Some(json!({"dailyRoomQuota": 2})),
    )
    .await;
    let d = peer(&server, &app, &secret, "d", "g2").await;
    assert_eq!(
        refused_code(TestPeer::join(&server, &app, &secret, "e", "g3").await),
        ErrorCode::RoomQuotaExceeded.code(),
        "the second new room of the day was the last"
    );

    // null: back to the server's defaults. The settings survive a restart.
    let (_, s) = call(
        &server,
        creds,
        "PATCH",
        "/api/v1/settings",
        Some(json!({"roomCap": null})),
    )
    .await;
    assert_eq!(s["roomCap"], Value::Null);
    assert_eq!(s["effective"]["roomCap"], 10);
    assert_eq!(s["dailyRoomQuota"], 2);
    let _ = (a, b, c, d);
    let dir = _dir;
    server.stop().await;
    let server = TestServer::start(dir.path(), |c| c.daily_room_quota = 50).await;
    let (_, s) = call(&server, creds, "GET", "/api/v1/settings", None).await;
    assert_eq!(
        s,
        json!({"roomCap": null, "dailyRoomQuota": 2,
               "effective": {"roomCap": 10, "dailyRoomQuota": 2}})
    );
    // Another app keeps the defaults.
    let (other, other_secret) = server.create_app(true);
    let (_, s) = call(
        &server,
        (&other, &other_secret),
        "GET",
        "/api/v1/settings",
        None,
    )
    .await;
    assert_eq!(s["effective"], json!({"roomCap": 10, "dailyRoomQuota": 50}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_by_day_lists_the_rooms_created() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let creds = (&app, &secret);
    // Rooms created today, by real joins: two rooms, one created twice.
    let a = peer(&server, &app, &secret, "a", "g1").await;
    a.exit().await;
    let a = peer(&server, &app, &secret, "a", "g1").await;
    let b = peer(&server, &app, &secret, "b", "g2").await;
    let today = voipchat_server::clock::day_key(common::unix_now(), 0);
    // Earlier days, as the store counted them then.
    for (day, n) in [("2026-01-01", 2), ("2026-01-03", 5)] {
        for _ in 0..n {
            use voipchat_store::Store as _;
            assert!(
                server
                    .store
                    .take_room_quota(&app, day, 100)
                    .unwrap()
                    .granted
            );
        }
    }
    let (status, u) = call(
        &server,
        creds,
        "GET",
        "/api/v1/quota/usage?from=2025-12-31&to=2026-01-04",
        None,
    )
    .await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(
        u,
        json!({"from": "2025-12-31", "to": "2026-01-04", "days": [
            {"day": "2025-12-31", "roomsCreated": 0},
            {"day": "2026-01-01", "roomsCreated": 2},
            {"day": "2026-01-02", "roomsCreated": 0},
            {"day": "2026-01-03", "roomsCreated": 5},
            {"day": "2026-01-04", "roomsCreated": 0},
        ]})
    );
    // The default range: the 30 days up to today, today's count last.
    let (_, u) = call(&server, creds, "GET", "/api/v1/quota/usage", None).await;
    let days = u["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(u["to"], today.as_str());
    assert_eq!(days[29], json!({"day": today, "roomsCreated": 3}));
    let (_, q) = call(&server, creds, "GET", "/api/v1/quota", None).await;
    assert_eq!(q["roomsCreated"], 3, "the same count as the quota");
    // One day, and the longest range.
    let path = format!("/api/v1/quota/usage?from={today}&to={today}");
    let (_, u) = call(&server, creds, "GET", &path, None).await;
    assert_eq!(u["days"], json!([{"day": today, "roomsCreated": 3}]));
    let (status, u) = call(
        &server,
        creds,
        "GET",
        "/api/v1/quota/usage?from=2024-01-01&to=2024-12-31",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(u["days"].as_array().unwrap().len(), 366, "a leap year");
    // Another app's rooms are not counted.
    let (other, other_secret) = server.create_app(true);
    let (_, u) = call(
        &server,
        (&other, &other_secret),
        "GET",
        "/api/v1/quota/usage?from=2026-01-01&to=2026-01-03",
        None,
    )
    .await;
    assert!(u["days"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["roomsCreated"] == 0));
    let _ = (a, b);
    server.stop().await;
}

/// A call and the `(status, errCode)` it must get: method, path, body.
type Case = (&'static str, String, Option<String>, (u16, i64));

/// Malformed and out-of-range input gets its documented code (400 / -10007, 404 / -12007 or
/// -10009, 413 / -12008), never a 5xx, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_documented_codes_never_a_server_error() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let creds = (&app, &secret);
    let alice = peer(&server, &app, &secret, "alice", "g").await;
    let invalid = (400, code(ErrorCode::InvalidField));
    let long = "x".repeat(129);
    let cases: Vec<Case> = vec![
        // Settings: not JSON, wrong types, out of range, unknown fields.
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some("not json".into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some("[]".into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some("null".into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomCap":0}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomCap":11}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomCap":-1}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomCap":2.5}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomCap":"2"}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomCap":99999999999}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"dailyRoomQuota":1000000001}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"dailyRoomQuota":-5}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"dailyRoomQuota":18446744073709551616}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomcap":2}"#.into()),
            invalid,
        ),
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(r#"{"roomCap":2,"roomCap":3}"#.into()),
            invalid,
        ),
        // Mute and kick: bodies, unknown room and member.
        (
            "POST",
            "/api/v1/rooms/g/mute".into(),
            Some("{".into()),
            invalid,
        ),
        (
            "POST",
            "/api/v1/rooms/g/mute".into(),
            Some(r#"{"openId":"alice"}"#.into()),
            invalid,
        ),
        (
            "POST",
            "/api/v1/rooms/g/mute".into(),
            Some(r#"{"openId":"alice","muted":"yes"}"#.into()),
            invalid,
        ),
        (
            "POST",
            "/api/v1/rooms/g/mute".into(),
            Some(r#"{"openId":"","muted":true}"#.into()),
            invalid,
        ),
        (
            "POST",
            "/api/v1/rooms/g/mute".into(),
            Some(format!(r#"{{"openId":"{long}","muted":true}}"#)),
            invalid,
        ),
        (
            "POST",
            "/api/v1/rooms/g/mute".into(),
            Some(r#"{"openId":"a\u0000b","muted":true}"#.into()),
            invalid,
        ),
        (
            "POST",
            "/api/v1/rooms/g/mute".into(),
            Some(r#"{"openId":"nobody","muted":true}"#.into()),
            (404, code(ErrorCode::NotInRoom)),
        ),
        (
            "POST",
            "/api/v1/rooms/none/mute".into(),
            Some(r#"{"openId":"alice","muted":true}"#.into()),
            (404, code(ErrorCode::UnknownRoom)),
        ),
        (
            "POST",
            "/api/v1/rooms/g/kick".into(),
            Some(r#"{"openId":"nobody"}"#.into()),
            (404, code(ErrorCode::NotInRoom)),
        ),
        (
            "POST",
            "/api/v1/rooms/none/close".into(),
            None,
            (404, code(ErrorCode::UnknownRoom)),
        ),
        (
            "GET",
            "/api/v1/rooms/none".into(),
            None,
            (404, code(ErrorCode::UnknownRoom)),
        ),
        // Path ids: too long, control characters, not UTF-8.
        ("GET", format!("/api/v1/rooms/{long}"), None, invalid),
        ("POST", format!("/api/v1/rooms/{long}/close"), None, invalid),
        ("GET", "/api/v1/rooms/a%01b".into(), None, invalid),
        ("GET", "/api/v1/rooms/%FF%FE".into(), None, invalid),
        // List and usage queries.
        ("GET", "/api/v1/rooms?limit=0".into(), None, invalid),
        ("GET", "/api/v1/rooms?limit=101".into(), None, invalid),
        ("GET", "/api/v1/rooms?limit=ten".into(), None, invalid),
        ("GET", "/api/v1/rooms?limit=-1".into(), None, invalid),
        ("GET", format!("/api/v1/rooms?after={long}"), None, invalid),
        ("GET", "/api/v1/rooms?after=".into(), None, invalid),
        ("GET", "/api/v1/rooms?page=2".into(), None, invalid),
        (
            "GET",
            "/api/v1/quota/usage?from=2026-02-30&to=2026-03-01".into(),
            None,
            invalid,
        ),
        (
            "GET",
            "/api/v1/quota/usage?from=2026-03-02&to=2026-03-01".into(),
            None,
            invalid,
        ),
        (
            "GET",
            "/api/v1/quota/usage?from=2025-01-01&to=2026-01-02".into(),
            None,
            invalid,
        ),
        (
            "GET",
            "/api/v1/quota/usage?from=yesterday".into(),
            None,
            invalid,
        ),
        (
            "GET",
            "/api/v1/quota/usage?from=1969-12-31&to=1970-01-01".into(),
            None,
            invalid,
        ),
        (
            "GET",
            "/api/v1/quota/usage?to=99999-01-01".into(),
            None,
            invalid,
        ),
        (
            "GET",
            "/api/v1/quota/usage?day=2026-01-01".into(),
            None,
            invalid,
        ),
        // voip-sign: a timestamp no join accepts.
        (
            "POST",
            "/api/v1/voip-sign".into(),
            Some(r#"{"openId":"alice","groupId":"g","timestamp":9007199254740992}"#.into()),
            invalid,
        ),
        // A body beyond 64 KiB.
        (
            "PATCH",
            "/api/v1/settings".into(),
            Some(format!(r#"{{"roomCap":2,"x":"{}"}}"#, "y".repeat(70_000))),
            (413, code(ErrorCode::BodyTooLarge)),
        ),
        (
            "POST",
            "/api/v1/session-key".into(),
            Some(format!(r#"{{"openId":"{}"}}"#, "y".repeat(70_000))),
            (413, code(ErrorCode::BodyTooLarge)),
        ),
    ];
    for (method, path, body, want) in cases {
        let got = refusal(&server, creds, method, &path, body.as_deref()).await;
        let shown = body.as_deref().map(|b| &b[..b.len().min(80)]);
        assert_eq!(
            got,
            want,
            "{method} {} {shown:?}",
            &path[..path.len().min(80)]
        );
    }
    // Nothing changed.
    let (_, s) = call(&server, creds, "GET", "/api/v1/settings", None).await;
    assert_eq!(
        (s["roomCap"].clone(), s["dailyRoomQuota"].clone()),
        (Value::Null, Value::Null)
    );
    let (_, room) = call(&server, creds, "GET", "/api/v1/rooms/g", None).await;
    assert_eq!(room["members"][0]["serverMuted"], false);
    // Every new route authenticates.
    for (method, path) in [
        ("GET", "/api/v1/rooms"),
        ("GET", "/api/v1/rooms/g"),
        ("POST", "/api/v1/rooms/g/mute"),
        ("POST", "/api/v1/rooms/g/close"),
        ("GET", "/api/v1/settings"),
        ("PATCH", "/api/v1/settings"),
        ("GET", "/api/v1/quota/usage"),
    ] {
        let wrong = Secret::new("wrong");
        let (status, text) = server
            .http_request(method, path, Some((&app, &wrong)), Some("{}"))
            .await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(
            common::api_failure(&text).0,
            code(ErrorCode::BadCredentials)
        );
    }
    assert_eq!(server.members(&app, &secret, "g").await, ["alice"]);
    let _ = alice;
    server.stop().await;
}

/// The daily quota a join is checked against is the app's own, read when the room is
/// created: a backend that lowers it mid-day stops new rooms at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_quota_stops_new_rooms_but_not_joins_into_open_ones() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let creds = (&app, &secret);
    let a = peer(&server, &app, &secret, "a", "g").await;
    let (status, _) = call(
        &server,
        creds,
        "PATCH",
        "/api/v1/settings",
        Some(json!({"dailyRoomQuota": 0})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        refused_code(TestPeer::join(&server, &app, &secret, "b", "new").await),
        ErrorCode::RoomQuotaExceeded.code()
    );
    let b = peer(&server, &app, &secret, "b", "g").await;
    assert_eq!(server.members(&app, &secret, "g").await, ["a", "b"]);
    let _ = (a, b, payload(0, 0));
    server.stop().await;
}
