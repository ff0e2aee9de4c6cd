//! Signaling messages: JSON text frames on the WebSocket, one message per frame, each an
//! object with a `type`. docs/protocol.md shows every one; `fixtures/` holds golden copies.

use crate::error::{ErrorCode, Failure};
use crate::ids::{AppId, GroupId, OpenId, Secret};
use serde::{Deserialize, Serialize};

/// Largest frame the server reads; an SDP offer with ten m-lines is about 10 KiB.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest SDP accepted in a join or answer.
pub const MAX_SDP_BYTES: usize = 48 * 1024;
/// `nonceStr` must be shorter than this many characters (the seeds: "length < 128").
pub const NONCE_MAX_CHARS: usize = 128;
/// Longest `groupId`, `openId` and `appId`, in characters.
pub const ID_MAX_CHARS: usize = 128;

/// Room type, as `wx.joinVoIPChat`'s `roomType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RoomType {
    #[default]
    Voice,
    Video,
}

impl RoomType {
    /// The wire name, as `roomType` has it.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomType::Voice => "voice",
            RoomType::Video => "video",
        }
    }
}

/// A member's own mute settings. muteMicrophone: the server forwards nothing the member
/// says; muteEarphone: the server forwards nothing to the member; muteCamera (extension,
/// video rooms): the server forwards none of the member's video and the room no longer
/// lists it as a video member. All default to false; an unknown key is refused, so that a
/// misspelt flag never leaves a member unmuted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MuteConfig {
    pub mute_microphone: bool,
    pub mute_earphone: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub mute_camera: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The fields of `MuteConfig` as the wire has them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
#[derive(Default)]
struct MuteConfigFields {
    mute_microphone: bool,
    mute_earphone: bool,
    mute_camera: bool,
}

/// Only a JSON object is a `MuteConfig`: serde's derive would also read a struct from an
/// array (`[true, false]`), a shape protocol.md does not have.
impl<'de> Deserialize<'de> for MuteConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = MuteConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object {\"muteMicrophone\": bool, \"muteEarphone\": bool, \"muteCamera\": bool}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<MuteConfig, A::Error> {
                let f = MuteConfigFields::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(MuteConfig {
                    mute_microphone: f.mute_microphone,
                    mute_earphone: f.mute_earphone,
                    mute_camera: f.mute_camera,
                })
            }
        }
        d.deserialize_map(ObjectOnly)
    }
}

/// Media kind of a track slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Audio,
    Video,
}

/// One receive slot of a member's peer connection: the m-line `mid` carries the media of
/// `openId` (or nothing while `openId` is null, after its member left).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackSlot {
    pub mid: String,
    pub kind: TrackKind,
    pub open_id: Option<OpenId>,
}

/// The join request, the fields of `wx.joinVoIPChat` plus who is joining and the SDP offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    pub app_id: AppId,
    pub open_id: OpenId,
    pub group_id: GroupId,
    pub nonce_str: String,
    /// Unix seconds; signed as its decimal string.
    pub time_stamp: u64,
    /// 64 lowercase (or uppercase) hex characters.
    pub signature: String,
    #[serde(default)]
    pub room_type: RoomType,
    #[serde(default)]
    pub mute_config: MuteConfig,
    /// The client's SDP offer: one send m-line per kind it publishes.
    pub sdp: String,
}

impl JoinRequest {
    /// Checks sizes and shapes; the signature itself is checked by `voipchat-auth`.
    pub fn validate(&self) -> Result<(), Failure> {
        check_id("appId", self.app_id.as_str())?;
        check_id("openId", self.open_id.as_str())?;
        check_id("groupId", self.group_id.as_str())?;
        let nonce_chars = self.nonce_str.chars().count();
        if nonce_chars == 0 || nonce_chars >= NONCE_MAX_CHARS {
            return Err(invalid(format!(
                "nonceStr must be 1 to {} characters",
                NONCE_MAX_CHARS - 1
            )));
        }
        if self.signature.len() != 64 || !self.signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("signature must be 64 hex characters"));
        }
        if self.time_stamp > MAX_SAFE_INTEGER {
            return Err(invalid("timeStamp is too large"));
        }
        check_sdp(&self.sdp)
    }
}

/// JavaScript's Number.MAX_SAFE_INTEGER: a timeStamp above it cannot come from a JS client
/// and would not print as the same decimal string there.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Most characters of a parser's message kept in an errMsg.
const DETAIL_MAX_CHARS: usize = 200;

/// A JSON parser's message as an errMsg reason: one line and short. serde quotes the
/// sender's own field names and values in it, and those may hold line breaks or be long.
fn one_line(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == DETAIL_MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn invalid(detail: impl Into<String>) -> Failure {
    Failure::with_detail(ErrorCode::InvalidField, detail)
}

fn check_id(name: &str, value: &str) -> Result<(), Failure> {
    let n = value.chars().count();
    if n == 0 || n > ID_MAX_CHARS {
        return Err(invalid(format!(
            "{name} must be 1 to {ID_MAX_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{name} must not contain control characters"
        )));
    }
    Ok(())
}

fn check_sdp(sdp: &str) -> Result<(), Failure> {
    if sdp.is_empty() || sdp.len() > MAX_SDP_BYTES {
        return Err(Failure::with_detail(
            ErrorCode::InvalidSdp,
            format!("sdp must be 1 to {MAX_SDP_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Messages from a client to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ClientMsg {
    /// `wx.joinVoIPChat`.
    Join(JoinRequest),
    /// `wx.exitVoIPChat`.
    Exit,
    /// `wx.updateVoIPChatMuteConfig`.
    #[serde(rename_all = "camelCase")]
    UpdateMuteConfig { mute_config: MuteConfig },
    /// The client's answer to a server `offer` (a renegotiation that adds receive slots).
    Answer { sdp: String },
    /// Keeps the connection alive through proxies; answered by `pong`.
    Ping,
    /// `wx.subscribeVoIPVideoMembers`: receive the video of these members (video rooms).
    #[serde(rename_all = "camelCase")]
    SubscribeVideoMembers { open_id_list: Vec<OpenId> },
}

/// Most openIds in one `subscribeVideoMembers`: everyone else in a full room.
pub const MAX_SUBSCRIBED: usize = 9;

impl ClientMsg {
    /// Parses one text frame. Never panics; every refusal is a typed failure to send back.
    pub fn parse(frame: &str) -> Result<ClientMsg, Failure> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(Failure::with_detail(
                ErrorCode::MessageTooLarge,
                format!("frame larger than {MAX_FRAME_BYTES} bytes"),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(frame).map_err(|e| {
            Failure::with_detail(
                ErrorCode::MalformedMessage,
                format!("not JSON: {}", one_line(&e)),
            )
        })?;
        let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
            return Err(Failure::with_detail(
                ErrorCode::MalformedMessage,
                "expected an object with a string \"type\"",
            ));
        };
        if !matches!(
            kind,
            "join" | "exit" | "updateMuteConfig" | "answer" | "ping" | "subscribeVideoMembers"
        ) {
            return Err(Failure::with_detail(
                ErrorCode::MalformedMessage,
                format!("unknown message type {kind:?}"),
            ));
        }
        let msg: ClientMsg = serde_json::from_value(value)
            .map_err(|e| Failure::with_detail(ErrorCode::InvalidField, one_line(&e)))?;
        match &msg {
            ClientMsg::Join(join) => join.validate()?,
            ClientMsg::Answer { sdp } => check_sdp(sdp)?,
            ClientMsg::SubscribeVideoMembers { open_id_list } => {
                if open_id_list.len() > MAX_SUBSCRIBED {
                    return Err(invalid(format!(
                        "openIdList names at most {MAX_SUBSCRIBED} members"
                    )));
                }
                for o in open_id_list {
                    check_id("openIdList entry", o.as_str())?;
                }
            }
            _ => {}
        }
        Ok(msg)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data to a String cannot fail.
        serde_json::to_string(self).expect("ClientMsg serializes")
    }
}

/// The `{errCode, errMsg}` pair every result and event carries, flattened into it; alone,
/// the body of every failed backend API call (`errMsg` is then `api:fail <reason>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ApiError))]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub err_code: i32,
    pub err_msg: String,
}

impl Status {
    /// `{errCode: 0, errMsg: "<api>:ok"}`.
    pub fn ok(api: &str) -> Self {
        Self {
            err_code: 0,
            err_msg: format!("{api}:ok"),
        }
    }

    pub fn fail(api: &str, failure: &Failure) -> Self {
        Self {
            err_code: failure.code.code(),
            err_msg: failure.err_msg(api),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.err_code == 0
    }

    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.err_code)
    }
}

/// wx API names used in `errMsg`.
pub mod api {
    pub const JOIN: &str = "joinVoIPChat";
    pub const EXIT: &str = "exitVoIPChat";
    pub const UPDATE_MUTE: &str = "updateVoIPChatMuteConfig";
    pub const MEMBERS_CHANGED: &str = "onVoIPChatMembersChanged";
    pub const SPEAKERS_CHANGED: &str = "onVoIPChatSpeakersChanged";
    /// Extension: who has muted their microphone.
    pub const MUTE_CHANGED: &str = "onVoIPChatMuteChanged";
    /// Extension: the game backend muted this member's microphone, or allowed it again.
    pub const SERVER_MUTE_CHANGED: &str = "onVoIPChatServerMuteChanged";
    pub const SUBSCRIBE_VIDEO: &str = "subscribeVoIPVideoMembers";
    pub const VIDEO_MEMBERS_CHANGED: &str = "onVoIPVideoMembersChanged";
    pub const INTERRUPTED: &str = "onVoIPChatInterrupted";
    pub const SIGNALING: &str = "signaling";
}

/// One entry of `iceServers`, shaped as WebRTC's `RTCIceServer` so that a browser can pass
/// the list to `new RTCPeerConnection({iceServers})` as it is. The server only hands out TURN
/// servers with time-limited credentials (see docs/protocol.md, `hello`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `turn:` / `turns:` URLs of one TURN server (see [`crate::turn_url`]).
    pub urls: Vec<String>,
    /// `EXPIRY:NAME`: the Unix second the credential stops being accepted, and whom the
    /// server gave it to.
    pub username: String,
    /// base64(HMAC-SHA1(shared secret, username)); kept out of `Debug` output and logs.
    pub credential: Secret,
}

/// Messages from the server to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMsg {
    /// The first message of every connection, sent as soon as the WebSocket opens and before
    /// anything else: the ICE servers the client should give its peer connection, which it
    /// must create (and gather candidates for) before it can send `join`. Empty when the
    /// server has no TURN server configured.
    #[serde(rename_all = "camelCase")]
    Hello {
        ice_servers: Vec<IceServer>,
    },
    /// The result of `join`. On success `sdp` is the answer to the join's offer; it has no
    /// receive slots (an answer cannot add m-lines): they arrive by `offer`, for the members
    /// already present right after this result, and as other members appear.
    #[serde(rename_all = "camelCase")]
    JoinResult {
        #[serde(flatten)]
        status: Status,
        #[serde(default)]
        open_id_list: Vec<OpenId>,
        /// Extension: the members whose microphone is muted (see `MuteChanged`).
        #[serde(default)]
        muted_open_id_list: Vec<OpenId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp: Option<String>,
        /// On success, the `hello`'s ICE servers again (for a client that creates a new peer
        /// connection later); absent on failure and when the server has no TURN server. The
        /// engine leaves it empty; the connection's signaling task fills it in.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
        /// With errCode -10015 only: the signaling URL of the node that holds the room,
        /// where the client sends the same join again (docs/cluster.md).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redirect: Option<String>,
    },
    /// The result of `exit`.
    ExitResult {
        #[serde(flatten)]
        status: Status,
    },
    /// The result of `updateMuteConfig`.
    MuteConfigResult {
        #[serde(flatten)]
        status: Status,
    },
    /// The result of `subscribeVideoMembers`.
    SubscribeVideoMembersResult {
        #[serde(flatten)]
        status: Status,
    },
    /// A renegotiation from the server: answer with `answer`. `tracks` is every receive slot
    /// after this offer, mid by mid.
    Offer {
        sdp: String,
        tracks: Vec<TrackSlot>,
    },
    /// Which member each receive slot carries now, when that changes without renegotiation.
    Tracks {
        tracks: Vec<TrackSlot>,
    },
    /// `onVoIPChatMembersChanged`: everyone in the room now, in order of joining, and
    /// (extension) those of them whose microphone is muted.
    #[serde(rename_all = "camelCase")]
    MembersChanged {
        #[serde(flatten)]
        status: Status,
        open_id_list: Vec<OpenId>,
        #[serde(default)]
        muted_open_id_list: Vec<OpenId>,
    },
    /// Extension (no wx counterpart): the members whose microphone is muted changed without
    /// anyone joining or leaving. Sent to every member, the one who muted included.
    #[serde(rename_all = "camelCase")]
    MuteChanged {
        #[serde(flatten)]
        status: Status,
        muted_open_id_list: Vec<OpenId>,
    },
    /// Extension (no wx counterpart), to one member only: the game backend muted its
    /// microphone (`serverMuted: true`; its `muteMicrophone` is now true and an
    /// `updateMuteConfig` that unmutes is refused with -10014) or allowed it again
    /// (`serverMuted: false`; the microphone stays muted until the member unmutes it).
    #[serde(rename_all = "camelCase")]
    ServerMuteChanged {
        #[serde(flatten)]
        status: Status,
        server_muted: bool,
    },
    /// `onVoIPChatSpeakersChanged`: who is speaking now.
    #[serde(rename_all = "camelCase")]
    SpeakersChanged {
        #[serde(flatten)]
        status: Status,
        open_id_list: Vec<OpenId>,
    },
    /// `onVoIPVideoMembersChanged`: the members of a video room whose camera is on, in order
    /// of joining. Sent to every member when it changes, and to a joiner after its result.
    #[serde(rename_all = "camelCase")]
    VideoMembersChanged {
        #[serde(flatten)]
        status: Status,
        open_id_list: Vec<OpenId>,
    },
    /// `onVoIPChatInterrupted`: the member is no longer in the room, for the reason given.
    Interrupted {
        #[serde(flatten)]
        status: Status,
    },
    /// A frame that could not be handled (malformed, unexpected); the connection stays open.
    Error {
        #[serde(flatten)]
        status: Status,
    },
    Pong,
}

impl ServerMsg {
    pub fn to_json(&self) -> String {
        // Serializing plain data to a String cannot fail.
        serde_json::to_string(self).expect("ServerMsg serializes")
    }

    pub fn parse(frame: &str) -> Result<ServerMsg, Failure> {
        serde_json::from_str(frame)
            .map_err(|e| Failure::with_detail(ErrorCode::MalformedMessage, one_line(&e)))
    }

    pub fn interrupted(code: ErrorCode) -> ServerMsg {
        ServerMsg::Interrupted {
            status: Status::fail(api::INTERRUPTED, &Failure::new(code)),
        }
    }

    pub fn members_changed(
        open_id_list: Vec<OpenId>,
        muted_open_id_list: Vec<OpenId>,
    ) -> ServerMsg {
        ServerMsg::MembersChanged {
            status: Status::ok(api::MEMBERS_CHANGED),
            open_id_list,
            muted_open_id_list,
        }
    }

    pub fn video_members_changed(open_id_list: Vec<OpenId>) -> ServerMsg {
        ServerMsg::VideoMembersChanged {
            status: Status::ok(api::VIDEO_MEMBERS_CHANGED),
            open_id_list,
        }
    }

    pub fn mute_changed(muted_open_id_list: Vec<OpenId>) -> ServerMsg {
        ServerMsg::MuteChanged {
            status: Status::ok(api::MUTE_CHANGED),
            muted_open_id_list,
        }
    }

    pub fn server_mute_changed(server_muted: bool) -> ServerMsg {
        ServerMsg::ServerMuteChanged {
            status: Status::ok(api::SERVER_MUTE_CHANGED),
            server_muted,
        }
    }

    pub fn speakers_changed(open_id_list: Vec<OpenId>) -> ServerMsg {
        ServerMsg::SpeakersChanged {
            status: Status::ok(api::SPEAKERS_CHANGED),
            open_id_list,
        }
    }

    pub fn join_failed(failure: &Failure) -> ServerMsg {
        ServerMsg::JoinResult {
            status: Status::fail(api::JOIN, failure),
            open_id_list: Vec::new(),
            muted_open_id_list: Vec::new(),
            sdp: None,
            ice_servers: Vec::new(),
            redirect: None,
        }
    }

    /// A join refused because another node holds the room: the client joins at `url`.
    pub fn join_redirected(url: &str) -> ServerMsg {
        let failure = Failure::new(ErrorCode::RoomElsewhere);
        ServerMsg::JoinResult {
            status: Status::fail(api::JOIN, &failure),
            open_id_list: Vec::new(),
            muted_open_id_list: Vec::new(),
            sdp: None,
            ice_servers: Vec::new(),
            redirect: Some(url.to_string()),
        }
    }

    pub fn error(failure: &Failure) -> ServerMsg {
        ServerMsg::Error {
            status: Status::fail(api::SIGNALING, failure),
        }
    }
}
