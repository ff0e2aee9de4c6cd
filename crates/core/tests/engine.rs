//! The engine with real str0m peers on an in-memory network and virtual time.

mod common;

use common::{ids, Net};
use std::time::Duration;
use voipchat_core::QuotaAnswer;
use voipchat_proto::{ErrorCode, MuteConfig, ServerMsg};

fn frame(peer: usize, n: u32) -> Vec<u8> {
    // An Opus TOC byte (SILK 20 ms) and a body that names the sender and the sequence.
    let mut v = vec![0x78, peer as u8];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0xAB; 40]);
    v
}

#[test]
fn three_members_hear_each_other_in_order_and_never_themselves() {
    let mut net = Net::new(10);
    let a = net.join("alice", "g");
    let b = net.join("bob", "g");
    let c = net.join("carol", "g");
    net.connect();
    assert_eq!(net.join_code(a), Some(0));
    assert_eq!(net.join_code(c), Some(0));
    // Let the renegotiations settle.
    net.advance(Duration::from_millis(200));
    for n in 0..50 {
        for p in [a, b, c] {
            net.speak(p, &frame(p, n), -30);
        }
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(200));
    for p in [a, b, c] {
        let got = &net.peers[p].received;
        for q in [a, b, c] {
            let from_q: Vec<&Vec<u8>> = got
                .iter()
                .filter(|(from, _)| from.as_ref() == Some(&net.peers[q].open_id))
                .map(|(_, d)| d)
                .collect();
            if p == q {
                assert!(from_q.is_empty(), "peer {p} received its own audio");
                continue;
            }
            let want: Vec<Vec<u8>> = (0..50).map(|n| frame(q, n)).collect();
            let got: Vec<Vec<u8>> = from_q.into_iter().cloned().collect();
            assert_eq!(
                got, want,
                "peer {p} from {q}: payloads byte for byte and in order"
            );
        }
        assert!(
            got.iter().all(|(from, _)| from.is_some()),
            "every frame arrived on a mapped slot"
        );
    }
    // alice saw bob then carol arrive, bob saw carol.
    assert_eq!(
        net.members_seen(a),
        vec![ids(&["alice", "bob"]), ids(&["alice", "bob", "carol"])]
    );
    assert_eq!(net.members_seen(b), vec![ids(&["alice", "bob", "carol"])]);
    assert!(
        net.members_seen(c).is_empty(),
        "the joiner learns the list from its joinResult"
    );
}

#[test]
fn room_lifecycle_create_cap_destroy_recreate() {
    let mut net = Net::new(3);
    let a = net.join("a", "g");
    net.join("b", "g");
    net.join("c", "g");
    let d = net.join("d", "g");
    assert_eq!(net.join_code(d), Some(ErrorCode::RoomFull.code()));
    assert_eq!(net.opened.len(), 1, "one room created");
    assert_eq!(net.engine.room_members(&Net::key("g")).len(), 3);

    for i in 0..3 {
        let conn = net.peers[i].conn;
        net.engine.handle_exit(net.now, conn);
        net.settle();
    }
    assert_eq!(
        net.closed,
        vec![Net::key("g")],
        "last leave destroys the room"
    );
    assert_eq!(net.engine.room_count(), 0);
    // Exit of a connection not in a room is refused with NotInRoom.
    let conn = net.peers[a].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    assert!(net.peers[a].messages.iter().any(|m| matches!(m,
        voipchat_proto::ServerMsg::ExitResult { status } if status.err_code == ErrorCode::NotInRoom.code())));

    net.join("e", "g");
    assert_eq!(
        net.opened.len(),
        2,
        "a later join creates (and counts) a new room"
    );
}

#[test]
fn joins_wait_for_quota_and_all_fail_with_13000_when_exhausted() {
    let mut net = Net::new(10);
    net.auto_quota = None;
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    assert_eq!(
        net.quota_requests.len(),
        1,
        "one quota request per room, not per join"
    );
    assert_eq!(net.join_code(a), None);
    let key = net.quota_requests.remove(0);
    net.engine
        .handle_room_quota(net.now, &key, QuotaAnswer::Exhausted);
    net.settle();
    assert_eq!(net.join_code(a), Some(-13000));
    assert_eq!(net.join_code(b), Some(-13000));
    assert_eq!(net.engine.room_count(), 0);
}

/// With `confirm_rooms`, the first member of a new room is told nothing until the store
/// confirmed the room: a crash before the confirmation leaves a room no client knows of (and
/// the store gives its unit back at the next start). Joins that come meanwhile wait too.
#[test]
fn a_new_room_is_confirmed_before_its_first_member_is_told() {
    let mut net = Net::with_config(|c| c.confirm_rooms = true);
    let a = net.join("a", "g");
    assert_eq!(
        net.confirm_requests.len(),
        1,
        "the first admit asks to confirm"
    );
    assert_eq!(net.join_code(a), None, "held until confirmed");
    let b = net.join("b", "g");
    assert_eq!(
        net.join_code(b),
        None,
        "a member of a room not confirmed waits too"
    );
    assert_eq!(net.confirm_requests.len(), 1, "one confirmation per room");
    let key = net.confirm_next();
    assert_eq!(net.join_code(a), Some(0));
    assert_eq!(net.join_code(b), Some(0));
    assert_eq!(net.engine.room_members(&key), ids(&["a", "b"]));
    // Messages kept their order: a's joinResult before it heard that b joined.
    let first = net.peers[a]
        .messages
        .iter()
        .position(|m| matches!(m, ServerMsg::JoinResult { .. }));
    assert_eq!(first, Some(0));
    assert!(net.released.is_empty());
    // An open room needs no confirmation for later joins.
    let c = net.join("c", "g");
    assert_eq!(net.join_code(c), Some(0));
    assert!(net.confirm_requests.is_empty());
}

/// With `confirm_rooms`, a room granted whose creating joins all went away closes without
/// a member and gives its unit back.
#[test]
fn a_granted_room_that_never_opens_gives_its_unit_back() {
    let mut net = Net::with_config(|c| c.confirm_rooms = true);
    net.auto_quota = None;
    let a = net.join("a", "g");
    net.engine.handle_exit(net.now, net.peers[a].conn);
    net.settle();
    assert_eq!(net.join_code(a), Some(-3));
    let key = net.quota_requests.remove(0);
    net.engine
        .handle_room_quota(net.now, &key, QuotaAnswer::Granted);
    net.settle();
    assert_eq!(net.released, vec![key]);
    assert!(net.confirm_requests.is_empty());
    assert_eq!(net.engine.room_count(), 0);
}

#[test]
fn exit_while_joining_gets_minus_3() {
    let mut net = Net::new(10);
    net.auto_quota = None;
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    let conn = net.peers[a].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    assert_eq!(net.join_code(a), Some(-3));
    let key = net.quota_requests.remove(0);
    net.engine
        .handle_room_quota(net.now, &key, QuotaAnswer::Granted);
    net.settle();
    assert_eq!(net.join_code(b), Some(0));
    assert_eq!(net.engine.room_members(&key), ids(&["b"]));
}

#[test]
fn same_connection_joining_twice_gets_minus_1() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    net.send_join(a, "other", MuteConfig::default());
    assert_eq!(net.join_code(a), Some(-1));
    assert_eq!(net.engine.room_count(), 1);
}

#[test]
fn same_open_id_on_a_new_connection_replaces_the_old_member() {
    let mut net = Net::new(2);
    let a1 = net.join("a", "g");
    net.join("b", "g");
    // The room is full, yet "a" reconnecting is admitted and its ghost removed; "a" keeps
    // its place in the join order (tests/replace.rs has the rest of replacement).
    let a2 = net.join("a", "g");
    assert_eq!(net.join_code(a2), Some(0));
    assert_eq!(net.interrupted_code(a1), Some(ErrorCode::Replaced.code()));
    assert_eq!(net.engine.room_members(&Net::key("g")), ids(&["a", "b"]));
}

#[test]
fn silent_member_is_removed_and_the_room_told() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.peers[b].online = false;
    net.advance(Duration::from_secs(7));
    assert_eq!(
        net.interrupted_code(b),
        Some(ErrorCode::MediaTimeout.code())
    );
    assert_eq!(net.members_seen(a).last().unwrap(), &ids(&["a"]));
    assert_eq!(net.engine.room_members(&Net::key("g")), ids(&["a"]));
}

#[test]
fn speakers_follow_audio_levels_and_mutes() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    // b is silent, a talks for half a second.
    for n in 0..25 {
        net.speak(a, &frame(a, n), -25);
        net.speak(b, &frame(b, n), -127);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(net.speakers_seen(b), vec![ids(&["a"])]);
    // a falls silent: after the hold time the list empties.
    for n in 25..75 {
        net.speak(a, &frame(a, n), -127);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(net.speakers_seen(b), vec![ids(&["a"]), ids(&[])]);

    // a muted: talking is neither forwarded nor announced.
    let conn = net.peers[a].conn;
    net.engine.handle_mute(
        net.now,
        conn,
        MuteConfig {
            mute_microphone: true,
            mute_earphone: false,
            mute_camera: false,
        },
    );
    net.settle();
    let before = net.peers[b].received.len();
    for n in 75..100 {
        net.speak(a, &frame(a, n), -20);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(
        net.peers[b].received.len(),
        before,
        "muted microphone is not forwarded"
    );
    assert_eq!(
        net.speakers_seen(b).len(),
        2,
        "muted member never becomes a speaker"
    );
}

#[test]
fn mute_earphone_stops_forwarding_to_that_member() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join_with(
        "b",
        "g",
        MuteConfig {
            mute_microphone: false,
            mute_earphone: true,
            mute_camera: false,
        },
    );
    net.connect();
    net.advance(Duration::from_millis(200));
    for n in 0..20 {
        net.speak(a, &frame(a, n), -30);
        net.speak(b, &frame(b, n), -30);
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(200));
    assert!(net.peers[b].received.is_empty(), "b muted its earphone");
    assert_eq!(
        net.peers[a].received.len(),
        20,
        "b's microphone still reaches a"
    );
}

#[test]
fn rooms_are_isolated() {
    let mut net = Net::new(10);
    let a = net.join("a", "g1");
    let b = net.join("b", "g1");
    let c = net.join("c", "g2");
    let d = net.join("d", "g2");
    net.connect();
    net.advance(Duration::from_millis(200));
    for n in 0..20 {
        for p in [a, b, c, d] {
            net.speak(p, &frame(p, n), -30);
        }
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(200));
    for (p, other_room) in [(a, [c, d]), (b, [c, d]), (c, [a, b]), (d, [a, b])] {
        let got = &net.peers[p].received;
        assert_eq!(got.len(), 20);
        for q in other_room {
            assert!(
                got.iter().all(|(_, data)| data[1] != q as u8),
                "peer {p} got a packet of peer {q} from the other room"
            );
        }
    }
}

#[test]
fn slots_are_reused_when_members_leave() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(100));
    let conn = net.peers[b].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    let c = net.join("c", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    // a's single receive slot now carries c, announced by a tracks message, no new offer.
    let offers = net.peers[a]
        .messages
        .iter()
        .filter(|m| matches!(m, voipchat_proto::ServerMsg::Offer { .. }))
        .count();
    assert_eq!(offers, 1, "the slot made for b is reused for c");
    for n in 0..10 {
        net.speak(c, &frame(c, n), -30);
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(100));
    let from_c: Vec<_> = net.peers[a]
        .received
        .iter()
        .filter(|(from, _)| from.as_ref().map(|o| o.as_str()) == Some("c"))
        .collect();
    assert_eq!(from_c.len(), 10);
}

#[test]
fn a_newcomer_learns_who_is_already_speaking() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    for n in 0..10 {
        net.speak(a, &frame(a, n), -25);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(net.speakers_seen(b), vec![ids(&["a"])]);
    let c = net.join("c", "g");
    assert_eq!(net.speakers_seen(c), vec![ids(&["a"])]);
    // Nobody else is told again: nothing changed for them.
    assert_eq!(net.speakers_seen(b), vec![ids(&["a"])]);
}

#[test]
fn hostile_datagrams_never_panic_and_lose_no_state() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    // A small xorshift generator: reproducible garbage.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let known = net.peers[a].addr;
    let stranger: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    for i in 0..20_000 {
        let len = (next() % 1500) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Steer the first byte into each demultiplexing range (STUN, DTLS, RTP/RTCP).
        if let Some(b0) = buf.first_mut() {
            *b0 = match i % 4 {
                0 => *b0 % 4,
                1 => 20 + *b0 % 44,
                2 => 128 + *b0 % 64,
                _ => *b0,
            };
        }
        let from = if i % 2 == 0 { known } else { stranger };
        net.engine.handle_datagram(net.now, from, &buf);
    }
    net.settle();
    assert_eq!(net.engine.room_members(&Net::key("g")), ids(&["a", "b"]));
    // And the room still works.
    for n in 0..10 {
        net.speak(b, &frame(b, n), -30);
        net.advance(Duration::from_millis(20));
    }
    let from_b = net.peers[a]
        .received
        .iter()
        .filter(|(f, _)| f.as_ref().map(|o| o.as_str()) == Some("b"))
        .count();
    assert_eq!(from_b, 10);
}

/// The counters the server's metrics read: one forwarded audio packet per copy, the bytes of
/// their payloads, and drops by cause (a stranger's datagram, garbage, a muted microphone).
#[test]
fn counters_count_forwarded_copies_and_drops_by_cause() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let _b = net.join("b", "g");
    let c = net.join("c", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    let before = *net.engine.counters();
    for n in 0..10 {
        net.speak(a, &frame(a, n), -30);
        net.advance(Duration::from_millis(20));
    }
    let after = *net.engine.counters();
    // Ten packets of a's, each copied to b and c.
    assert_eq!(
        after.forwarded_audio_packets - before.forwarded_audio_packets,
        20
    );
    let payload: u64 = (0..10).map(|n| frame(a, n).len() as u64).sum();
    assert_eq!(after.forwarded_bytes - before.forwarded_bytes, 2 * payload);
    assert_eq!(after.forwarded_video_packets, 0);
    assert_eq!(after.dropped, before.dropped);

    // An RTP-shaped datagram from a stranger's address, then one of no known kind from a
    // member.
    let stranger: std::net::SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let rtp = [0x80, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
    net.engine.handle_datagram(net.now, stranger, &rtp);
    net.engine
        .handle_datagram(net.now, net.peers[a].addr, &[250, 1, 2, 3]);
    // c mutes its microphone: its packets are dropped as muted.
    let conn = net.peers[c].conn;
    let mic_off = MuteConfig {
        mute_microphone: true,
        ..Default::default()
    };
    net.engine.handle_mute(net.now, conn, mic_off);
    net.advance(Duration::from_millis(50));
    for n in 0..5 {
        net.speak(c, &frame(c, n), -30);
        net.advance(Duration::from_millis(20));
    }
    let d = net.engine.counters().dropped;
    assert_eq!(d.unknown_source - after.dropped.unknown_source, 1);
    assert_eq!(d.unrecognized - after.dropped.unrecognized, 1);
    assert_eq!(d.muted - after.dropped.muted, 5);
}
