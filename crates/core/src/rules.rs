//! The room rules in one place: who is admitted, who replaces whom, and what is forwarded
//! to whom. Pure functions; the engine applies them.

use voipchat_proto::{MuteConfig, OpenId};

/// What the rules say about a join to an open room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission<M> {
    /// Admit; if `replaces` is set, that member (same openId, older connection) leaves first.
    Admit { replaces: Option<M> },
    /// The room holds `cap` members and none of them is replaced.
    Full,
}

/// Decides a join to a room whose members are `members` (id and openId, in join order).
///
/// A join by an openId already in the room replaces that member, so a client that
/// reconnects never leaves a ghost and never finds its own ghost filling the room; it is
/// admitted whatever the cap, which may have been lowered below the room's size since (the
/// room does not grow).
pub fn admit<M: Copy>(members: &[(M, &OpenId)], joining: &OpenId, cap: usize) -> Admission<M> {
    let replaces = members
        .iter()
        .find(|(_, open_id)| *open_id == joining)
        .map(|(id, _)| *id);
    if replaces.is_none() && members.len() >= cap {
        Admission::Full
    } else {
        Admission::Admit { replaces }
    }
}

/// The forwarding rule: a sender's media reaches a receiver unless the sender muted its
/// microphone or the receiver muted its earphone. Nobody receives their own media.
pub fn forwards(sender: MuteConfig, receiver: MuteConfig, same_member: bool) -> bool {
    !same_member && !sender.mute_microphone && !receiver.mute_earphone
}

/// How many videos a member of a video room receives by default, as wx does it.
pub const DEFAULT_VIDEOS: usize = 2;

/// The video rule: whose video `receiver` gets. `members` are the room's members in join
/// order that publish video (id and openId). With a `subscription`, those of its openIds
/// that are in the room; without one, the first `DEFAULT_VIDEOS` members other than the
/// receiver itself (so one of the first two gets the other one and the third). Nobody gets
/// its own video. The result is in join order.
pub fn video_senders<M: Copy + PartialEq>(
    members: &[(M, &OpenId)],
    receiver: M,
    subscription: Option<&[OpenId]>,
) -> Vec<M> {
    let others = members.iter().filter(|(id, _)| *id != receiver);
    match subscription {
        Some(list) => others
            .filter(|(_, open_id)| list.contains(open_id))
            .map(|(id, _)| *id)
            .collect(),
        None => others.take(DEFAULT_VIDEOS).map(|(id, _)| *id).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<OpenId> {
        (0..n).map(|i| OpenId::new(format!("u{i}"))).collect()
    }

    #[test]
    fn admits_until_cap() {
        let users = ids(10);
        for n in 0..10 {
            let members: Vec<_> = users[..n].iter().enumerate().collect();
            assert_eq!(
                admit(&members, &OpenId::from("new"), 10),
                Admission::Admit { replaces: None }
            );
        }
        let members: Vec<_> = users.iter().enumerate().collect();
        assert_eq!(admit(&members, &OpenId::from("new"), 10), Admission::Full);
    }

    #[test]
    fn same_open_id_replaces_even_when_full() {
        let users = ids(10);
        let members: Vec<_> = users.iter().enumerate().collect();
        assert_eq!(
            admit(&members, &OpenId::from("u3"), 10),
            Admission::Admit { replaces: Some(3) }
        );
        // A cap lowered below the room's size keeps newcomers out, not its members.
        assert_eq!(
            admit(&members, &OpenId::from("u3"), 2),
            Admission::Admit { replaces: Some(3) }
        );
        assert_eq!(admit(&members, &OpenId::from("new"), 2), Admission::Full);
    }

    #[test]
    fn default_videos_are_the_first_two_others() {
        let users = ids(4);
        let members: Vec<_> = users.iter().enumerate().collect();
        assert_eq!(video_senders(&members, 3, None), vec![0, 1]);
        assert_eq!(video_senders(&members, 0, None), vec![1, 2]);
        assert_eq!(video_senders(&members, 1, None), vec![0, 2]);
        let sub = [
            OpenId::from("u3"),
            OpenId::from("u0"),
            OpenId::from("nobody"),
        ];
        assert_eq!(video_senders(&members, 1, Some(&sub)), vec![0, 3]);
        assert_eq!(
            video_senders(&members, 3, Some(&sub)),
            vec![0],
            "never its own"
        );
        assert!(video_senders(&members, 2, Some(&[])).is_empty());
    }

    #[test]
    fn forwarding_respects_both_mutes() {
        let open = MuteConfig::default();
        let mic = MuteConfig {
            mute_microphone: true,
            mute_earphone: false,
            mute_camera: false,
        };
        let ear = MuteConfig {
            mute_microphone: false,
            mute_earphone: true,
            mute_camera: false,
        };
        assert!(forwards(open, open, false));
        assert!(!forwards(open, open, true));
        assert!(!forwards(mic, open, false));
        assert!(!forwards(open, ear, false));
        assert!(
            forwards(ear, mic, false),
            "own mutes only affect own direction"
        );
    }
}
