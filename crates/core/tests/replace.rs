//! Replacement: the same openId joining on a new connection takes the old member's place.
//! It must work the same whether or not anyone else is in the room: the new connection is
//! admitted at once, the room stays the same room (no new quota), and nobody sees the member
//! leave and come back.

mod common;

use common::{ids, Net};
use std::time::Duration;
use voipchat_proto::{ErrorCode, ServerMsg};

fn frame(tag: u8, n: u32) -> Vec<u8> {
    let mut v = vec![0x78, tag];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0xCD; 40]);
    v
}

/// Payloads `idx` received from `from`, in order.
fn heard(net: &Net, idx: usize, from: &str) -> Vec<Vec<u8>> {
    net.peers[idx]
        .received
        .iter()
        .filter(|(f, _)| f.as_ref().map(|o| o.as_str()) == Some(from))
        .map(|(_, p)| p.clone())
        .collect()
}

fn talk(net: &mut Net, idx: usize, tag: u8, n: u32) {
    for i in 0..n {
        net.speak(idx, &frame(tag, i), -30);
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(100));
}

#[test]
fn the_only_member_rejoining_is_admitted_and_the_room_stays() {
    let mut net = Net::new(10);
    let old = net.join("a", "g");
    net.connect();
    assert_eq!(net.opened.len(), 1);

    let new = net.join("a", "g");
    assert_eq!(
        net.join_code(new),
        Some(0),
        "the new connection is admitted at once"
    );
    assert_eq!(net.interrupted_code(old), Some(ErrorCode::Replaced.code()));
    assert!(
        net.closed.is_empty(),
        "the room never closed: {:?}",
        net.closed
    );
    assert_eq!(net.engine.room_count(), 1);
    assert_eq!(net.engine.room_members(&Net::key("g")), ids(&["a"]));
    let seen_by_old = net.peers[old].messages.len();

    // A third user joins the same room: no second room, no second unit of quota.
    let b = net.join("b", "g");
    assert_eq!(net.join_code(b), Some(0));
    assert_eq!(net.opened.len(), 1, "no new room was created");
    let ServerMsg::JoinResult { open_id_list, .. } = net.peers[b]
        .messages
        .iter()
        .find(|m| matches!(m, ServerMsg::JoinResult { .. }))
        .unwrap()
        .clone()
    else {
        unreachable!()
    };
    assert_eq!(open_id_list, ids(&["a", "b"]));
    assert_eq!(net.members_seen(new), vec![ids(&["a", "b"])]);

    // The new connection and b talk to each other; the old connection hears nothing more.
    net.connect();
    net.advance(Duration::from_millis(200));
    talk(&mut net, new, 1, 10);
    talk(&mut net, b, 2, 10);
    assert_eq!(
        heard(&net, b, "a"),
        (0..10).map(|i| frame(1, i)).collect::<Vec<_>>()
    );
    assert_eq!(
        heard(&net, new, "b"),
        (0..10).map(|i| frame(2, i)).collect::<Vec<_>>()
    );
    assert_eq!(
        net.peers[old].messages.len(),
        seen_by_old,
        "the replaced connection gets nothing after its interruption"
    );
}

#[test]
fn others_never_see_the_member_leave_and_come_back() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let old_b = net.join("b", "g");
    let c = net.join("c", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    talk(&mut net, old_b, 1, 5);
    let members_before = (net.members_seen(a).len(), net.members_seen(c).len());
    let tracks_before = net.peers[a].tracks.clone();

    let new_b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    assert_eq!(net.join_code(new_b), Some(0));
    assert_eq!(
        net.interrupted_code(old_b),
        Some(ErrorCode::Replaced.code())
    );
    assert_eq!(
        (net.members_seen(a).len(), net.members_seen(c).len()),
        members_before,
        "no membersChanged for a replacement"
    );
    assert_eq!(
        net.engine.room_members(&Net::key("g")),
        ids(&["a", "b", "c"]),
        "b keeps its place in the join order"
    );
    assert_eq!(net.peers[a].tracks, tracks_before, "b is on the same slot");

    // The new b is heard on that slot from its first packet, and hears the others.
    talk(&mut net, new_b, 2, 10);
    let want: Vec<Vec<u8>> = (0..5)
        .map(|i| frame(1, i))
        .chain((0..10).map(|i| frame(2, i)))
        .collect();
    assert_eq!(heard(&net, a, "b"), want);
    assert_eq!(heard(&net, c, "b"), want);
    talk(&mut net, a, 3, 5);
    assert_eq!(heard(&net, new_b, "a").len(), 5);
    assert_eq!(net.opened.len(), 1);
    assert!(net.closed.is_empty());
}

#[test]
fn a_replaced_member_that_was_speaking_is_dropped_from_the_speakers() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let old_b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    talk(&mut net, old_b, 1, 10);
    assert_eq!(net.speakers_seen(a).last(), Some(&ids(&["b"])));
    net.join("b", "g");
    assert_eq!(
        net.speakers_seen(a).last(),
        Some(&ids(&[])),
        "the new connection has not spoken yet"
    );
}
