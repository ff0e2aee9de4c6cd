//! The events a backend hears about, and the JSON body each is sent as.

use serde::Serialize;
use voipchat_core::{Leave, MemberChange};
use voipchat_proto::{AppId, ErrorCode, GroupId, OpenId, RoomKey, RoomType};

/// Something that happened, as the media task and the quota check report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    RoomStarted(RoomKey, RoomType),
    RoomFinished(RoomKey, RoomType),
    MemberJoined(MemberChange),
    MemberLeft(MemberChange, Leave),
    /// A join was refused -13000: creating its room would pass the app's daily quota.
    QuotaExhausted {
        app_id: AppId,
        /// The room the refused join wanted to create.
        group_id: GroupId,
        /// The quota day, "YYYY-MM-DD" in `quota_utc_offset`.
        day: String,
        daily_limit: u64,
        rooms_created: u64,
    },
}

/// Why a member left, as the `reason` field says it, and the errCode the member was told
/// when the server removed it.
pub fn leave_reason(why: Leave) -> (&'static str, Option<i32>) {
    match why {
        Leave::Exited => ("exit", None),
        Leave::Disconnected => ("disconnect", None),
        Leave::Interrupted(code) => {
            let reason = match code {
                ErrorCode::Kicked => "kicked",
                ErrorCode::Replaced => "replaced",
                ErrorCode::MediaTimeout => "media_timeout",
                ErrorCode::ServerShutdown => "server_shutdown",
                ErrorCode::InvalidSdp => "invalid_sdp",
                // A removal this list does not name yet: errCode says which.
                _ => "interrupted",
            };
            (reason, Some(code.code()))
        }
        // `Leave` is non-exhaustive: a new kind of leave is reported, not hidden.
        _ => ("other", None),
    }
}

/// The body of a delivery: the common fields, then the event's own.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    id: &'a str,
    event: &'static str,
    created_at: u64,
    app_id: &'a AppId,
    group_id: &'a GroupId,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_id: Option<&'a OpenId>,
    /// Members in the room after the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    err_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    daily_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms_created: Option<u64>,
}

impl Event {
    /// The event's name: the `event` field and the `X-Voipchat-Event` header.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RoomStarted(..) => "room_started",
            Event::RoomFinished(..) => "room_finished",
            Event::MemberJoined(..) => "member_joined",
            Event::MemberLeft(..) => "member_left",
            Event::QuotaExhausted { .. } => "quota_exhausted",
        }
    }

    pub fn app_id(&self) -> &AppId {
        match self {
            Event::RoomStarted(k, _) | Event::RoomFinished(k, _) => &k.app_id,
            Event::MemberJoined(c) | Event::MemberLeft(c, _) => &c.room.app_id,
            Event::QuotaExhausted { app_id, .. } => app_id,
        }
    }

    /// The stream the event is ordered in: its room's groupId, or "" for app-wide events
    /// (a refused room is not a room: its quota event must not wait behind a real room's).
    pub fn stream(&self) -> &str {
        match self {
            Event::RoomStarted(k, _) | Event::RoomFinished(k, _) => k.group_id.as_str(),
            Event::MemberJoined(c) | Event::MemberLeft(c, _) => c.room.group_id.as_str(),
            Event::QuotaExhausted { .. } => "",
        }
    }

    /// The JSON body of the delivery `id`, for an event that happened at `created_at`.
    pub fn body(&self, id: &str, created_at: u64) -> String {
        let (app_id, group_id) = match self {
            Event::RoomStarted(k, _) | Event::RoomFinished(k, _) => (&k.app_id, &k.group_id),
            Event::MemberJoined(c) | Event::MemberLeft(c, _) => (&c.room.app_id, &c.room.group_id),
            Event::QuotaExhausted {
                app_id, group_id, ..
            } => (app_id, group_id),
        };
        let mut body = Body {
            id,
            event: self.name(),
            created_at,
            app_id,
            group_id,
            room_type: None,
            open_id: None,
            members: None,
            reason: None,
            err_code: None,
            day: None,
            daily_limit: None,
            rooms_created: None,
        };
        match self {
            Event::RoomStarted(_, t) | Event::RoomFinished(_, t) => {
                body.room_type = Some(t.as_str());
            }
            Event::MemberJoined(c) => {
                body.room_type = Some(c.room_type.as_str());
                body.open_id = Some(&c.open_id);
                body.members = Some(c.members);
            }
            Event::MemberLeft(c, why) => {
                let (reason, code) = leave_reason(*why);
                body.room_type = Some(c.room_type.as_str());
                body.open_id = Some(&c.open_id);
                body.members = Some(c.members);
                body.reason = Some(reason);
                body.err_code = code;
            }
            Event::QuotaExhausted {
                day,
                daily_limit,
                rooms_created,
                ..
            } => {
                body.day = Some(day);
                body.daily_limit = Some(*daily_limit);
                body.rooms_created = Some(*rooms_created);
            }
        }
        // Serializing strings and numbers into a String cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_the_documented_fields() {
        let room = RoomKey::new(AppId::new("wx1"), GroupId::new("room-42"));
        let change = MemberChange {
            room: room.clone(),
            room_type: RoomType::Voice,
            open_id: OpenId::new("player-1"),
            members: 1,
        };
        let left = Event::MemberLeft(change, Leave::Interrupted(ErrorCode::Kicked));
        assert_eq!(left.stream(), "room-42");
        assert_eq!(
            left.body("d1", 7),
            r#"{"id":"d1","event":"member_left","createdAt":7,"appId":"wx1","groupId":"room-42","roomType":"voice","openId":"player-1","members":1,"reason":"kicked","errCode":-11001}"#
        );
        let started = Event::RoomStarted(room, RoomType::Video);
        assert_eq!(
            started.body("d2", 8),
            r#"{"id":"d2","event":"room_started","createdAt":8,"appId":"wx1","groupId":"room-42","roomType":"video"}"#
        );
        let quota = Event::QuotaExhausted {
            app_id: AppId::new("wx1"),
            group_id: GroupId::new("g"),
            day: "2026-12-02".into(),
            daily_limit: 1,
            rooms_created: 1,
        };
        assert_eq!(quota.stream(), "");
        assert_eq!(
            quota.body("d3", 9),
            r#"{"id":"d3","event":"quota_exhausted","createdAt":9,"appId":"wx1","groupId":"g","day":"2026-12-02","dailyLimit":1,"roomsCreated":1}"#
        );
        assert_eq!(leave_reason(Leave::Exited), ("exit", None));
        assert_eq!(leave_reason(Leave::Disconnected), ("disconnect", None));
        assert_eq!(
            leave_reason(Leave::Interrupted(ErrorCode::MediaTimeout)),
            ("media_timeout", Some(-11003))
        );
    }
}
