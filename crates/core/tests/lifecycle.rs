//! The room and member events a backend hears about (the server turns them into webhooks):
//! each room opens once and closes once, each admitted member joins and leaves once, with
//! the member count after the change and the reason it left, in the order they happened.

mod common;

use common::Net;
use std::time::Duration;
use voipchat_core::QuotaAnswer;
use voipchat_proto::{ErrorCode, RoomType};

#[test]
fn join_exit_disconnect_and_the_room_closes_after_its_last_member() {
    let mut net = Net::new(10);
    let a = net.join("alice", "g");
    let b = net.join("bob", "g");
    net.connect();
    let conn = net.peers[a].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    let conn = net.peers[b].conn;
    net.engine.handle_disconnect(net.now, conn);
    net.settle();
    assert_eq!(
        net.lifecycle,
        [
            "opened g voice",
            "joined g alice 1",
            "joined g bob 2",
            "left g alice 1 exit",
            "left g bob 0 connection closed",
            "closed g voice",
        ]
    );
}

#[test]
fn a_kick_a_media_timeout_and_a_shutdown_each_say_why() {
    let mut net = Net::new(10);
    let a = net.join("alice", "g");
    net.join("bob", "g");
    net.join("carol", "g");
    net.connect();
    assert!(net.engine.kick(
        net.now,
        &Net::key("g"),
        &voipchat_proto::OpenId::from("bob")
    ));
    net.settle();
    net.peers[a].online = false;
    net.advance(Duration::from_secs(7));
    net.engine.handle_shutdown(net.now);
    net.settle();
    let kicked = ErrorCode::Kicked.to_string();
    let timeout = ErrorCode::MediaTimeout.to_string();
    let shutdown = ErrorCode::ServerShutdown.to_string();
    assert_eq!(
        net.lifecycle,
        [
            "opened g voice".to_string(),
            "joined g alice 1".into(),
            "joined g bob 2".into(),
            "joined g carol 3".into(),
            format!("left g bob 2 {kicked}"),
            format!("left g alice 1 {timeout}"),
            format!("left g carol 0 {shutdown}"),
            "closed g voice".into(),
        ]
    );
}

#[test]
fn a_replacement_is_a_leave_then_a_join_and_the_room_stays_open() {
    let mut net = Net::new(10);
    net.join("alice", "g");
    net.join("bob", "g");
    net.connect();
    net.join("alice", "g");
    let replaced = ErrorCode::Replaced.to_string();
    assert_eq!(
        net.lifecycle,
        [
            "opened g voice".to_string(),
            "joined g alice 1".into(),
            "joined g bob 2".into(),
            format!("left g alice 1 {replaced}"),
            "joined g alice 2".into(),
        ]
    );
}

#[test]
fn a_refused_room_creation_tells_nothing_and_a_video_room_says_its_type() {
    let mut net = Net::new(10);
    net.auto_quota = Some(QuotaAnswer::Exhausted);
    let a = net.join("alice", "g");
    assert_eq!(net.join_code(a), Some(ErrorCode::RoomQuotaExceeded.code()));
    assert!(net.lifecycle.is_empty(), "{:?}", net.lifecycle);

    net.auto_quota = Some(QuotaAnswer::Granted);
    let v = net.join_video("vera", "cinema");
    assert_eq!(net.join_code(v), Some(0));
    assert_eq!(
        net.lifecycle,
        ["opened cinema video", "joined cinema vera 1"]
    );
    assert_eq!(RoomType::Video.as_str(), "video");
}
