//! Others see a member's microphone mute (extension): `mutedOpenIdList` in joinResult and
//! membersChanged, and `muteChanged` when it changes without anyone joining or leaving.

mod common;

use common::{ids, Net};
use voipchat_proto::{MuteConfig, OpenId, ServerMsg};

const MIC_OFF: MuteConfig = MuteConfig {
    mute_microphone: true,
    mute_earphone: false,
    mute_camera: false,
};

fn mute_events(net: &Net, idx: usize) -> Vec<Vec<OpenId>> {
    net.peers[idx]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::MuteChanged {
                muted_open_id_list, ..
            } => Some(muted_open_id_list.clone()),
            _ => None,
        })
        .collect()
}

fn muted_in_join_result(net: &Net, idx: usize) -> Vec<OpenId> {
    net.peers[idx]
        .messages
        .iter()
        .find_map(|m| match m {
            ServerMsg::JoinResult {
                muted_open_id_list, ..
            } => Some(muted_open_id_list.clone()),
            _ => None,
        })
        .unwrap()
}

fn muted_in_members_changed(net: &Net, idx: usize) -> Vec<Vec<OpenId>> {
    net.peers[idx]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::MembersChanged {
                muted_open_id_list, ..
            } => Some(muted_open_id_list.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn everyone_learns_who_muted_their_microphone() {
    let mut net = Net::new(10);
    let a = net.join_with("a", "g", MIC_OFF);
    assert_eq!(muted_in_join_result(&net, a), ids(&["a"]));
    let b = net.join("b", "g");
    assert_eq!(
        muted_in_join_result(&net, b),
        ids(&["a"]),
        "a newcomer learns it"
    );
    assert_eq!(muted_in_members_changed(&net, a), vec![ids(&["a"])]);

    let conn = net.peers[b].conn;
    net.engine.handle_mute(net.now, conn, MIC_OFF);
    net.settle();
    assert_eq!(mute_events(&net, a), vec![ids(&["a", "b"])]);
    assert_eq!(mute_events(&net, b), vec![ids(&["a", "b"])]);
    // b's own result comes before the room's event.
    let order: Vec<&str> = net.peers[b]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMsg::MuteConfigResult { .. } => Some("result"),
            ServerMsg::MuteChanged { .. } => Some("event"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["result", "event"]);

    // The same setting again, or an earphone-only change, tells nobody anything.
    net.engine.handle_mute(net.now, conn, MIC_OFF);
    let ear_only = MuteConfig {
        mute_microphone: true,
        mute_earphone: true,
        mute_camera: false,
    };
    net.engine.handle_mute(net.now, conn, ear_only);
    net.settle();
    assert_eq!(mute_events(&net, a).len(), 1);

    let conn = net.peers[a].conn;
    net.engine.handle_mute(net.now, conn, MuteConfig::default());
    net.settle();
    assert_eq!(mute_events(&net, b).last(), Some(&ids(&["b"])));

    // A muted member leaving: the membersChanged carries the list, no separate event.
    let events_before = mute_events(&net, a).len();
    let conn = net.peers[b].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    assert_eq!(muted_in_members_changed(&net, a).last(), Some(&ids(&[])));
    assert_eq!(mute_events(&net, a).len(), events_before);
}

#[test]
fn a_replacement_with_other_mutes_is_told_as_a_mute_change() {
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    net.join("b", "g");
    net.join_with("b", "g", MIC_OFF);
    assert_eq!(mute_events(&net, a), vec![ids(&["b"])]);
}

/// A microphone (or an earphone) unmuted after the member kept sending through the mute:
/// the receiver hears the next packets at once. The packets not forwarded meanwhile leave
/// no hole in the slot's sequence numbers, which a receiver would hold its audio back for
/// as loss (str0m's receive buffer does).
#[test]
fn audio_flows_again_at_once_after_a_mute_with_traffic() {
    use std::time::Duration;
    let frame = |n: u32| {
        let mut v = vec![0x78, 9];
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&[0xAB; 40]);
        v
    };
    let mut net = Net::new(10);
    let a = net.join("a", "g");
    let b = net.join("b", "g");
    net.connect();
    net.advance(Duration::from_millis(200));
    let mut n = 0;
    let mut talk = |net: &mut Net, frames: u32| {
        for _ in 0..frames {
            net.speak(b, &frame(n), -20);
            n += 1;
            net.advance(Duration::from_millis(20));
        }
        net.advance(Duration::from_millis(60));
    };
    talk(&mut net, 10);
    assert_eq!(net.peers[a].received.len(), 10);
    for (who, off) in [
        (b, MIC_OFF),
        (
            a,
            MuteConfig {
                mute_earphone: true,
                ..MuteConfig::default()
            },
        ),
    ] {
        let conn = net.peers[who].conn;
        net.engine.handle_mute(net.now, conn, off);
        net.settle();
        let before = net.peers[a].received.len();
        talk(&mut net, 30);
        assert_eq!(
            net.peers[a].received.len(),
            before,
            "nothing through the mute"
        );
        net.engine.handle_mute(net.now, conn, MuteConfig::default());
        net.settle();
        talk(&mut net, 5);
        assert_eq!(
            net.peers[a].received.len(),
            before + 5,
            "the five frames after the unmute arrive at once"
        );
    }
}
