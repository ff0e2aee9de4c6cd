//! What the game backend does to rooms, through the engine: server mute, close, per-app room
//! caps and the room snapshots the API lists. Real str0m peers, virtual time.

mod common;

use std::time::Duration;

use common::{ids, Net};
use voipchat_core::{JoinPolicy, ServerMuteError};
use voipchat_proto::{AppId, ErrorCode, GroupId, MuteConfig, OpenId, ServerMsg};

fn frame(peer: usize, n: u32) -> Vec<u8> {
    let mut v = vec![0x78, peer as u8];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0xAB; 40]);
    v
}

const MIC_ON: MuteConfig = MuteConfig {
    mute_microphone: false,
    mute_earphone: false,
    mute_camera: false,
};
const MIC_OFF: MuteConfig = MuteConfig {
    mute_microphone: true,
    mute_earphone: false,
    mute_camera: false,
};

/// The frames `to` received from `from` so far.
fn heard(net: &Net, to: usize, from: usize) -> usize {
    let from = &net.peers[from].open_id;
    net.peers[to]
        .received
        .iter()
        .filter(|(f, _)| f.as_ref() == Some(from))
        .count()
}

/// `a` speaks `n` frames, numbered from `first`.
fn talk(net: &mut Net, a: usize, first: u32, n: u32) {
    for i in first..first + n {
        net.speak(a, &frame(a, i), -20);
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(100));
}

/// The server messages of peer `idx` that this test is about, as short names.
fn mute_story(net: &Net, idx: usize) -> Vec<String> {
    net.peers[idx]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::ServerMuteChanged { server_muted, .. } => {
                Some(format!("serverMuted={server_muted}"))
            }
            ServerMsg::MuteChanged {
                muted_open_id_list, ..
            } => Some(format!("muteChanged{:?}", names(muted_open_id_list))),
            ServerMsg::MuteConfigResult { status } => Some(format!("result {}", status.err_code)),
            _ => None,
        })
        .collect()
}

fn names(list: &[OpenId]) -> Vec<&str> {
    list.iter().map(|o| o.as_str()).collect()
}

fn update_mute(net: &mut Net, idx: usize, mute: MuteConfig) {
    let conn = net.peers[idx].conn;
    net.engine.handle_mute(net.now, conn, mute);
    net.settle();
}

#[test]
fn server_mute_stops_forwarding_and_locks_the_member_until_allowed() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    talk(&mut net, b, 0, 10);
    assert_eq!(heard(&net, a, b), 10, "b is heard before the mute");

    let key = Net::key("g");
    assert_eq!(
        net.engine.server_mute(&key, &OpenId::from("b"), true),
        Ok(true)
    );
    net.settle();
    assert_eq!(
        mute_story(&net, b),
        ["serverMuted=true", "muteChanged[\"b\"]"],
        "b learns of it first, then the room's view"
    );
    assert_eq!(mute_story(&net, a), ["muteChanged[\"b\"]"]);
    talk(&mut net, b, 10, 10);
    assert_eq!(heard(&net, a, b), 10, "nothing more of b is forwarded");
    assert!(net.engine.counters().dropped.muted >= 10);
    // Muting again changes nothing and tells nobody.
    assert_eq!(
        net.engine.server_mute(&key, &OpenId::from("b"), true),
        Ok(false)
    );
    net.settle();
    assert_eq!(mute_story(&net, a).len(), 1);

    // b cannot unmute itself; a change that keeps the microphone muted is fine.
    update_mute(&mut net, b, MIC_ON);
    assert_eq!(
        mute_story(&net, b).last().unwrap(),
        &format!("result {}", ErrorCode::ServerMuted.code())
    );
    talk(&mut net, b, 20, 5);
    assert_eq!(heard(&net, a, b), 10, "the refused unmute changed nothing");
    let ear_too = MuteConfig {
        mute_earphone: true,
        ..MIC_OFF
    };
    update_mute(&mut net, b, ear_too);
    assert_eq!(mute_story(&net, b).last().unwrap(), "result 0");

    // Allowed again: the lock goes, the microphone stays muted until b unmutes it.
    assert_eq!(
        net.engine.server_mute(&key, &OpenId::from("b"), false),
        Ok(true)
    );
    net.settle();
    assert_eq!(mute_story(&net, b).last().unwrap(), "serverMuted=false");
    assert_eq!(
        mute_story(&net, a).len(),
        1,
        "b is still muted: no muteChanged"
    );
    talk(&mut net, b, 25, 5);
    assert_eq!(
        heard(&net, a, b),
        10,
        "the server never switches a microphone on"
    );
    update_mute(&mut net, b, MIC_ON);
    assert_eq!(
        &mute_story(&net, b)[mute_story(&net, b).len() - 2..],
        ["result 0", "muteChanged[]"]
    );
    talk(&mut net, b, 30, 10);
    assert_eq!(heard(&net, a, b), 20, "b is heard again, at once");
}

#[test]
fn server_mute_holds_for_the_open_id_across_rejoins_until_the_room_ends() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    let key = Net::key("g");
    assert_eq!(
        net.engine.server_mute(&key, &OpenId::from("b"), true),
        Ok(true)
    );
    net.settle();

    // b leaves and joins again with its microphone on: it is muted again and told so
    // right after its joinResult.
    let conn = net.peers[b].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    let b2 = net.join_with("b", "g", MIC_ON);
    let after_join: Vec<&str> = net.peers[b2]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::JoinResult { .. } => Some("joinResult"),
            ServerMsg::ServerMuteChanged {
                server_muted: true, ..
            } => Some("serverMuted"),
            _ => None,
        })
        .collect();
    assert_eq!(after_join, ["joinResult", "serverMuted"]);
    let muted_in_result = net.peers[b2].messages.iter().find_map(|m| match m {
        ServerMsg::JoinResult {
            muted_open_id_list, ..
        } => Some(muted_open_id_list.clone()),
        _ => None,
    });
    assert_eq!(muted_in_result, Some(ids(&["b"])));
    assert_eq!(net.members_seen(a).last(), Some(&ids(&["a", "b"])));
    update_mute(&mut net, b2, MIC_ON);
    assert_eq!(
        mute_story(&net, b2).last().unwrap(),
        &format!("result {}", ErrorCode::ServerMuted.code())
    );

    // A replacing connection of b is muted as well.
    let b3 = net.join_with("b", "g", MIC_ON);
    assert_eq!(
        net.peers[b2]
            .messages
            .iter()
            .filter(|m| matches!(m, ServerMsg::Interrupted { .. }))
            .count(),
        1
    );
    assert!(mute_story(&net, b3).contains(&"serverMuted=true".to_string()));
    let snap = net.engine.room(&key).expect("open");
    assert!(snap.members[1].server_muted && snap.members[1].mic_muted);

    // The room ends; a new room of the same groupId starts with nobody muted.
    for p in [a, b3] {
        let conn = net.peers[p].conn;
        net.engine.handle_exit(net.now, conn);
        net.settle();
    }
    assert!(net.engine.room(&key).is_none());
    let b4 = net.join_with("b", "g", MIC_ON);
    assert!(!mute_story(&net, b4)
        .iter()
        .any(|s| s.starts_with("serverMuted")));
    update_mute(&mut net, b4, MIC_ON);
    assert_eq!(mute_story(&net, b4).last().unwrap(), "result 0");
}

#[test]
fn server_mute_refusals() {
    let mut net = Net::new(10);
    net.join("a", "g");
    assert_eq!(
        net.engine
            .server_mute(&Net::key("nope"), &OpenId::from("a"), true),
        Err(ServerMuteError::NoRoom)
    );
    assert_eq!(
        net.engine
            .server_mute(&Net::key("g"), &OpenId::from("zed"), true),
        Err(ServerMuteError::NotInRoom)
    );
    // A room still waiting for its quota is not open yet.
    net.auto_quota = None;
    net.join("c", "pending");
    assert_eq!(
        net.engine
            .server_mute(&Net::key("pending"), &OpenId::from("c"), true),
        Err(ServerMuteError::NoRoom)
    );
    assert!(net.engine.room(&Net::key("pending")).is_none());
    assert!(net
        .engine
        .close_room(net.now, &Net::key("pending"))
        .is_none());
}

#[test]
fn closing_interrupts_everyone_with_its_own_code_and_a_later_join_makes_a_new_room() {
    let mut net = Net::new(10);
    let peers: Vec<usize> = ["a", "b", "c"].iter().map(|n| net.join(n, "g")).collect();
    net.connect();
    let seen_before: Vec<usize> = peers.iter().map(|&p| net.members_seen(p).len()).collect();
    let key = Net::key("g");
    assert_eq!(
        net.engine.close_room(net.now, &key),
        Some(ids(&["a", "b", "c"]))
    );
    net.settle();
    for (i, &p) in peers.iter().enumerate() {
        assert_eq!(net.interrupted_code(p), Some(ErrorCode::RoomClosed.code()));
        assert_eq!(
            net.members_seen(p).len(),
            seen_before[i],
            "{p} is told only that the room closed, not of the others leaving"
        );
    }
    assert_eq!(net.closed, vec![key.clone()]);
    assert_eq!(net.engine.room_count(), 0);
    assert_eq!(net.engine.member_count(), 0);
    assert!(
        net.engine.close_room(net.now, &key).is_none(),
        "closed once"
    );

    let d = net.join("d", "g");
    assert_eq!(net.join_code(d), Some(0));
    assert_eq!(
        net.opened.len(),
        2,
        "a new room, which asked for quota again"
    );
    assert_eq!(net.engine.room(&key).expect("open").members.len(), 1);
}

#[test]
fn each_join_is_admitted_against_its_own_room_cap() {
    let mut net = Net::new(10);
    net.join_policy = Some(JoinPolicy { room_cap: 2 });
    net.join("a", "g");
    net.join("b", "g");
    let c = net.join("c", "g");
    assert_eq!(net.join_code(c), Some(ErrorCode::RoomFull.code()));
    let refusal = net.peers[c].messages.iter().find_map(|m| match m {
        ServerMsg::JoinResult { status, .. } => Some(status.err_msg.clone()),
        _ => None,
    });
    assert_eq!(
        refusal.as_deref(),
        Some("joinVoIPChat:fail room is full (2 members)")
    );
    // The app's cap goes up: the next join into the open room follows it.
    net.join_policy = Some(JoinPolicy { room_cap: 3 });
    let d = net.join("d", "g");
    assert_eq!(net.join_code(d), Some(0));
    // And down: nobody already in is removed, newcomers are refused.
    net.join_policy = Some(JoinPolicy { room_cap: 1 });
    let e = net.join("e", "g");
    assert_eq!(net.join_code(e), Some(ErrorCode::RoomFull.code()));
    assert_eq!(net.engine.room_members(&Net::key("g")).len(), 3);
    // A replacement is never refused for the cap.
    let a2 = net.join("a", "g");
    assert_eq!(net.join_code(a2), Some(0));
}

#[test]
fn snapshots_list_the_apps_open_rooms_in_pages() {
    let mut net = Net::new(10);
    for g in ["r3", "r1", "r2"] {
        net.join(&format!("{g}-x"), g);
    }
    net.advance(Duration::from_secs(2));
    let late = net.join_with("r1-y", "r1", MIC_OFF);
    let app = AppId::from("app");
    let (page, more) = net.engine.rooms_of_app(&app, None, 2);
    let groups: Vec<&str> = page.iter().map(|r| r.group_id.as_str()).collect();
    assert_eq!((groups, more), (vec!["r1", "r2"], true));
    let r1 = &page[0];
    assert_eq!(
        names(
            &r1.members
                .iter()
                .map(|m| m.open_id.clone())
                .collect::<Vec<_>>()
        ),
        ["r1-x", "r1-y"]
    );
    assert!(r1.members[1].joined_at >= r1.members[0].joined_at + Duration::from_secs(2));
    assert!(r1.members[1].mic_muted && !r1.members[1].server_muted);
    assert!(!r1.members[0].mic_muted);
    assert!(!r1.members[0].camera_on, "a voice room has no cameras");
    let _ = late;
    let (page, more) = net.engine.rooms_of_app(&app, Some(&GroupId::from("r2")), 2);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].group_id.as_str(), "r3");
    assert!(!more);
    let (page, more) = net.engine.rooms_of_app(&AppId::from("other"), None, 100);
    assert!(page.is_empty() && !more, "rooms are per app");
}

#[test]
fn video_rooms_show_whose_camera_is_on() {
    let mut net = Net::new(10);
    let a = net.join_video("a", "v");
    net.join_video("b", "v");
    net.connect();
    let conn = net.peers[a].conn;
    net.engine.handle_mute(
        net.now,
        conn,
        MuteConfig {
            mute_camera: true,
            ..MIC_ON
        },
    );
    net.settle();
    let snap = net.engine.room(&Net::key("v")).expect("open");
    assert_eq!(snap.room_type, voipchat_proto::RoomType::Video);
    let cameras: Vec<(&str, bool)> = snap
        .members
        .iter()
        .map(|m| (m.open_id.as_str(), m.camera_on))
        .collect();
    assert_eq!(cameras, [("a", false), ("b", true)]);
}
