//! Bodies of the backend HTTP API (docs/api.md). Requests authenticate with HTTP Basic
//! `appId:appSecret`; failures answer `{errCode, errMsg}` with a 4xx/5xx status.

use crate::ids::{GroupId, OpenId, Secret};
use crate::signal::RoomType;
use serde::{Deserialize, Deserializer, Serialize};

/// `POST /api/v1/session-key`: issue a new session key for a user, our `code2Session`.
/// Every call rotates the key; signatures made with the old key stop verifying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionKeyRequest {
    pub open_id: OpenId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionKeyResponse {
    pub open_id: OpenId,
    pub session_key: Secret,
}

/// `POST /api/v1/voip-sign`: sign a join on the server, our `cloud.getVoIPSign`; the
/// session key never leaves the server.
///
/// The nonce and the timestamp are optional: the server fills what is missing with a fresh
/// random nonce and its current Unix time, and answers with what it signed. They are accepted
/// under their join names (`nonceStr`, `timeStamp`) or under the older `nonce`, `timestamp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignRequest {
    pub open_id: OpenId,
    pub group_id: GroupId,
    /// Unix seconds to sign (also accepted as `timeStamp`); default: the server's clock.
    #[serde(default, alias = "timeStamp", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9_007_199_254_740_991_u64))]
    pub timestamp: Option<u64>,
    /// The nonce to sign (also accepted as `nonceStr`), 1 to 127 characters; default: 16
    /// random letters and digits.
    #[serde(default, alias = "nonceStr", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 127))]
    pub nonce: Option<String>,
}

/// The answer of `POST /api/v1/voip-sign`: what `joinVoIPChat` needs besides the groupId.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SignResponse {
    pub nonce_str: String,
    pub time_stamp: u64,
    pub signature: String,
}

/// `GET /api/v1/quota`: the app's rooms of the current quota day and its daily limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct QuotaResponse {
    /// The quota day, `YYYY-MM-DD` in the server's `quota_utc_offset`.
    pub day: String,
    pub rooms_created: u64,
    /// The app's `dailyRoomQuota` setting, or the server's default when it has none.
    pub daily_limit: u64,
}

/// `GET /api/v1/quota/usage`: which days to report, both inclusive. Either may be left out:
/// `to` is then today, `from` 29 days before `to` (30 days in all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageQuery {
    /// First day, `YYYY-MM-DD`.
    #[cfg_attr(
        feature = "openapi",
        param(format = Date, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    )]
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD`, not before `from` and at most 365 days after it.
    #[cfg_attr(
        feature = "openapi",
        param(format = Date, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    )]
    pub to: Option<String>,
}

/// Most days one `GET /api/v1/quota/usage` reports.
pub const USAGE_MAX_DAYS: u32 = 366;

/// The answer of `GET /api/v1/quota/usage`: every day of the range, oldest first, days
/// without rooms included (0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageResponse {
    pub from: String,
    pub to: String,
    pub days: Vec<DayUsage>,
}

/// Rooms the app created on one quota day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DayUsage {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub rooms_created: u64,
}

/// One member of an open room, as the backend API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    pub open_id: OpenId,
    /// When it joined, Unix seconds (a replacing connection keeps the first join's time).
    pub joined_at: u64,
    /// Its microphone is muted, by itself or by the server: nothing it says is forwarded.
    pub muted: bool,
    /// The game backend muted it (`POST /api/v1/rooms/{groupId}/mute`): it cannot unmute
    /// itself.
    pub server_muted: bool,
    /// Video rooms: its camera is on (it publishes video and has not muted it).
    pub camera_on: bool,
}

/// An open room of the app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    pub group_id: GroupId,
    pub room_type: RoomType,
    /// When the room was created (its quota taken), Unix seconds.
    pub created_at: u64,
    /// Seconds since then.
    pub age_secs: u64,
    /// The members' openIds in join order (the same order as `members`).
    pub open_id_list: Vec<OpenId>,
    pub members: Vec<MemberInfo>,
}

/// `GET /api/v1/rooms`: one page of the app's open rooms, ordered by groupId.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomListQuery {
    /// Most rooms in the answer, 1 to 100 (default 100).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<u32>,
    /// Only rooms whose groupId sorts after this one: the `nextAfter` of the previous page.
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 128))]
    pub after: Option<String>,
}

/// Most rooms one `GET /api/v1/rooms` answers.
pub const ROOM_PAGE_MAX: u32 = 100;

/// The answer of `GET /api/v1/rooms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoomList {
    pub rooms: Vec<RoomInfo>,
    /// More rooms follow: pass this as `after` for the next page. Null on the last page.
    pub next_after: Option<GroupId>,
}

/// `POST /api/v1/rooms/{groupId}/kick`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KickRequest {
    pub open_id: OpenId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KickResponse {
    pub kicked: bool,
}

/// `POST /api/v1/rooms/{groupId}/mute`: mute a member's microphone on the server, or allow
/// it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MuteRequest {
    pub open_id: OpenId,
    /// true: the server stops forwarding its microphone and it cannot unmute itself;
    /// false: it may unmute itself again (its microphone stays muted until it does).
    pub muted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MuteResponse {
    pub open_id: OpenId,
    pub server_muted: bool,
}

/// The answer of `POST /api/v1/rooms/{groupId}/close`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CloseResponse {
    pub closed: bool,
    /// The members interrupted with -11005, in join order.
    pub open_id_list: Vec<OpenId>,
}

/// Largest `roomCap` an app may set: the product's room size.
pub const ROOM_CAP_MAX: u32 = 10;
/// Largest `dailyRoomQuota` an app may set.
pub const DAILY_QUOTA_MAX: u64 = 1_000_000_000;

/// `GET /api/v1/settings`: the app's own settings (null: the server's default applies) and
/// what applies now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SettingsResponse {
    /// Most members in one of the app's rooms, 1 to 10.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub room_cap: Option<u32>,
    /// Rooms the app may create per quota day.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000_000_u64))]
    pub daily_room_quota: Option<u64>,
    /// The values in force: the app's, or the server's defaults.
    pub effective: EffectiveSettings,
}

/// The limits that apply to the app's joins now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSettings {
    pub room_cap: u32,
    pub daily_room_quota: u64,
}

/// `PATCH /api/v1/settings`, a JSON merge patch: a field left out is unchanged, `null` goes
/// back to the server's default, a value replaces the app's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    /// 1 to 10. Joins from now on are admitted against it; members already in a room stay.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<u32>, required = false, minimum = 1, maximum = 10)
    )]
    pub room_cap: Option<Option<u32>>,
    /// 0 to 1000000000. Counts from the rooms already created today.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<u64>, required = false, minimum = 0, maximum = 1_000_000_000_u64)
    )]
    pub daily_room_quota: Option<Option<u64>>,
}

/// A field that is present: `Some(None)` for `null`, `Some(Some(v))` for a value (absent
/// fields get `None` from `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
