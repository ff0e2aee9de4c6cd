//! Every error code a client can see, in one place. docs/errors.md lists the same table;
//! a test checks that the two agree.

use serde::{Deserialize, Serialize};

/// A failure reported on the wire as `{errCode, errMsg}`.
///
/// -1, -2, -3 and -1000 keep the meaning they have in `wx.joinVoIPChat`; -13000 is the
/// daily room quota as WeChat reports it. All other codes are ours, grouped by range:
/// -10001.. join refusals, -11001.. interruptions, -12001.. malformed traffic and the
/// backend HTTP API, -13001.. the server's capacity (admission control).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i32", try_from = "i32")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The connection is already in a room (wx -1).
    AlreadyInRoom,
    /// The microphone could not be opened (wx -2; raised by client SDKs, never by the server).
    MicrophoneBusy,
    /// The client exited while its join was still in progress (wx -3).
    ExitedWhileJoining,
    /// An internal failure (wx -1000).
    SystemError,
    /// The app has created its daily number of rooms (WeChat's -13000).
    RoomQuotaExceeded,
    /// The signature does not match the user's current session key.
    InvalidSignature,
    /// `timeStamp` is outside the accepted window around the server's clock.
    StaleTimestamp,
    /// This `nonceStr` was already used inside the timestamp window.
    ReplayedNonce,
    /// No app with this `appId` exists.
    UnknownApp,
    /// The app exists but VoIP has not been enabled for it.
    VoipNotEnabled,
    /// The user has no session key (the backend never asked for one).
    UnknownSession,
    /// A field is missing, of the wrong type, empty or too long.
    InvalidField,
    /// The room already holds its maximum number of members.
    RoomFull,
    /// The request needs a room, and the connection is not in one.
    NotInRoom,
    /// The SDP offer or answer could not be used.
    InvalidSdp,
    /// The room type is not one this server offers.
    UnsupportedRoomType,
    /// The room exists with the other `roomType`: a room's type is fixed by the join that
    /// created it.
    RoomTypeMismatch,
    /// Client SDKs only: a `<voip-room>` cannot show the member's video (not in the room,
    /// camera off, or not among the videos this client receives).
    VideoNotShown,
    /// `updateMuteConfig` would unmute a microphone the game backend muted
    /// (`POST /api/v1/rooms/{groupId}/mute`); it stays muted until the backend allows it.
    ServerMuted,
    /// The room is held by another node of the cluster: the joinResult's `redirect` names
    /// that node's signaling URL, where the same signed join is to be sent (clients follow
    /// it by themselves).
    RoomElsewhere,
    /// Interrupted: an operator or the backend removed the member.
    Kicked,
    /// Interrupted: the same openId joined the room on another connection.
    Replaced,
    /// Interrupted: no media and no signaling arrived for too long.
    MediaTimeout,
    /// Interrupted: the server is shutting down.
    ServerShutdown,
    /// Interrupted: the game backend closed the room (`POST /api/v1/rooms/{groupId}/close`).
    RoomClosed,
    /// The frame is not JSON, not an object, or has an unknown `type`.
    MalformedMessage,
    /// The frame is larger than the server accepts.
    MessageTooLarge,
    /// The message is valid but not allowed in the connection's current state.
    UnexpectedMessage,
    /// Backend API: the appId and appSecret do not match an app, or are missing.
    BadCredentials,
    /// HTTP: no route has this path.
    UnknownRoute,
    /// HTTP: the route exists, but not for this method.
    MethodNotAllowed,
    /// Backend API: the app has no open room with this groupId.
    UnknownRoom,
    /// HTTP: the request body is larger than the server reads.
    BodyTooLarge,
    /// HTTP: the server holds its most connections (`max_connections`); try again later.
    TooManyConnections,
    /// HTTP: this address holds its most connections (`max_connections_per_ip`).
    TooManyConnectionsFromAddress,
    /// Signaling: frames arrive faster than `ws_frames_per_sec`; the connection is closed.
    RateLimited,
    /// Signaling: no join arrived within `ws_join_timeout_ms` of the connection opening.
    JoinTimeout,
    /// HTTP: the request's headers or body did not arrive within their timeout.
    RequestTimeout,
    /// Disconnected: the client did not read its messages and its queue filled up.
    OutboxFull,
    /// Disconnected: the client did not answer the server's WebSocket pings in time.
    PingTimeout,
    /// Several nodes: another node holds this room now (this node was cut off from the room
    /// directory and its claim lapsed); the member is to join again, and lands there.
    RoomMoved,
    /// The media server is at capacity (its measured load is above `media_max_busy_share`):
    /// the join is refused so that the rooms it carries keep their media whole.
    MediaOverloaded,
}

impl ErrorCode {
    /// Every code, for documentation checks and exhaustive tests.
    pub const ALL: [ErrorCode; 42] = [
        ErrorCode::AlreadyInRoom,
        ErrorCode::MicrophoneBusy,
        ErrorCode::ExitedWhileJoining,
        ErrorCode::SystemError,
        ErrorCode::RoomQuotaExceeded,
        ErrorCode::InvalidSignature,
        ErrorCode::StaleTimestamp,
        ErrorCode::ReplayedNonce,
        ErrorCode::UnknownApp,
        ErrorCode::VoipNotEnabled,
        ErrorCode::UnknownSession,
        ErrorCode::InvalidField,
        ErrorCode::RoomFull,
        ErrorCode::NotInRoom,
        ErrorCode::InvalidSdp,
        ErrorCode::UnsupportedRoomType,
        ErrorCode::RoomTypeMismatch,
        ErrorCode::VideoNotShown,
        ErrorCode::ServerMuted,
        ErrorCode::RoomElsewhere,
        ErrorCode::Kicked,
        ErrorCode::Replaced,
        ErrorCode::MediaTimeout,
        ErrorCode::ServerShutdown,
        ErrorCode::RoomClosed,
        ErrorCode::MalformedMessage,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnexpectedMessage,
        ErrorCode::BadCredentials,
        ErrorCode::UnknownRoute,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnknownRoom,
        ErrorCode::BodyTooLarge,
        ErrorCode::TooManyConnections,
        ErrorCode::TooManyConnectionsFromAddress,
        ErrorCode::RateLimited,
        ErrorCode::JoinTimeout,
        ErrorCode::RequestTimeout,
        ErrorCode::OutboxFull,
        ErrorCode::PingTimeout,
        ErrorCode::RoomMoved,
        ErrorCode::MediaOverloaded,
    ];

    /// The number sent as `errCode`.
    pub const fn code(self) -> i32 {
        match self {
            ErrorCode::AlreadyInRoom => -1,
            ErrorCode::MicrophoneBusy => -2,
            ErrorCode::ExitedWhileJoining => -3,
            ErrorCode::SystemError => -1000,
            ErrorCode::RoomQuotaExceeded => -13000,
            ErrorCode::MediaOverloaded => -13001,
            ErrorCode::InvalidSignature => -10001,
            ErrorCode::StaleTimestamp => -10002,
            ErrorCode::ReplayedNonce => -10003,
            ErrorCode::UnknownApp => -10004,
            ErrorCode::VoipNotEnabled => -10005,
            ErrorCode::UnknownSession => -10006,
            ErrorCode::InvalidField => -10007,
            ErrorCode::RoomFull => -10008,
            ErrorCode::NotInRoom => -10009,
            ErrorCode::InvalidSdp => -10010,
            ErrorCode::UnsupportedRoomType => -10011,
            ErrorCode::RoomTypeMismatch => -10012,
            ErrorCode::VideoNotShown => -10013,
            ErrorCode::ServerMuted => -10014,
            ErrorCode::RoomElsewhere => -10015,
            ErrorCode::Kicked => -11001,
            ErrorCode::Replaced => -11002,
            ErrorCode::MediaTimeout => -11003,
            ErrorCode::ServerShutdown => -11004,
            ErrorCode::RoomClosed => -11005,
            ErrorCode::MalformedMessage => -12001,
            ErrorCode::MessageTooLarge => -12002,
            ErrorCode::UnexpectedMessage => -12003,
            ErrorCode::BadCredentials => -12004,
            ErrorCode::UnknownRoute => -12005,
            ErrorCode::MethodNotAllowed => -12006,
            ErrorCode::UnknownRoom => -12007,
            ErrorCode::BodyTooLarge => -12008,
            ErrorCode::TooManyConnections => -12009,
            ErrorCode::TooManyConnectionsFromAddress => -12010,
            ErrorCode::RateLimited => -12011,
            ErrorCode::JoinTimeout => -12012,
            ErrorCode::RequestTimeout => -12013,
            ErrorCode::OutboxFull => -11006,
            ErrorCode::PingTimeout => -11007,
            ErrorCode::RoomMoved => -11008,
        }
    }

    /// The default reason, the text after `fail ` in `errMsg`.
    pub const fn reason(self) -> &'static str {
        match self {
            ErrorCode::AlreadyInRoom => "already in a room",
            ErrorCode::MicrophoneBusy => "microphone is busy or not allowed",
            ErrorCode::ExitedWhileJoining => "exited while joining",
            ErrorCode::SystemError => "system error",
            ErrorCode::RoomQuotaExceeded => "daily room quota of this app is used up",
            ErrorCode::MediaOverloaded => "media server is at capacity, try again later",
            ErrorCode::InvalidSignature => "invalid signature",
            ErrorCode::StaleTimestamp => "timeStamp is outside the accepted window",
            ErrorCode::ReplayedNonce => "nonceStr was already used",
            ErrorCode::UnknownApp => "unknown appId",
            ErrorCode::VoipNotEnabled => "voip is not enabled for this app",
            ErrorCode::UnknownSession => "no session key for this openId",
            ErrorCode::InvalidField => "invalid field",
            ErrorCode::RoomFull => "room is full",
            ErrorCode::NotInRoom => "not in a room",
            ErrorCode::InvalidSdp => "invalid sdp",
            ErrorCode::UnsupportedRoomType => "unsupported roomType",
            ErrorCode::RoomTypeMismatch => "the room has the other roomType",
            ErrorCode::VideoNotShown => "the member's video is not received",
            ErrorCode::ServerMuted => "the microphone was muted by the server",
            ErrorCode::RoomElsewhere => "the room is on another node, join there",
            ErrorCode::Kicked => "removed from the room",
            ErrorCode::Replaced => "replaced by a new connection of the same openId",
            ErrorCode::MediaTimeout => "no media for too long",
            ErrorCode::ServerShutdown => "server is shutting down",
            ErrorCode::RoomClosed => "room closed by the server",
            ErrorCode::MalformedMessage => "malformed message",
            ErrorCode::MessageTooLarge => "message too large",
            ErrorCode::UnexpectedMessage => "message not allowed now",
            ErrorCode::BadCredentials => "appId and appSecret do not match",
            ErrorCode::UnknownRoute => "no such route",
            ErrorCode::MethodNotAllowed => "method not allowed on this route",
            ErrorCode::UnknownRoom => "no such room is open",
            ErrorCode::BodyTooLarge => "request body too large",
            ErrorCode::TooManyConnections => "too many connections to the server",
            ErrorCode::TooManyConnectionsFromAddress => "too many connections from this address",
            ErrorCode::RateLimited => "too many messages",
            ErrorCode::JoinTimeout => "no join in time",
            ErrorCode::RequestTimeout => "request not received in time",
            ErrorCode::OutboxFull => "disconnected: messages were not read",
            ErrorCode::PingTimeout => "disconnected: no answer to ping",
            ErrorCode::RoomMoved => "the room moved to another node, join again",
        }
    }

    pub fn from_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl From<ErrorCode> for i32 {
    fn from(c: ErrorCode) -> i32 {
        c.code()
    }
}

impl TryFrom<i32> for ErrorCode {
    type Error = String;
    fn try_from(v: i32) -> Result<Self, Self::Error> {
        ErrorCode::from_code(v).ok_or_else(|| format!("unknown errCode {v}"))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.code())
    }
}

/// A failure with its code and, where useful, a more precise reason than the default.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Failure {
    pub code: ErrorCode,
    pub detail: String,
}

impl Failure {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            detail: code.reason().to_string(),
        }
    }

    pub fn with_detail(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// `errMsg` in the wx form: `"<api>:fail <reason>"`.
    pub fn err_msg(&self, api: &str) -> String {
        format!("{api}:fail {}", self.detail)
    }
}

impl From<ErrorCode> for Failure {
    fn from(code: ErrorCode) -> Self {
        Failure::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// Lists every variant twice from one list: as an exhaustive `match` (a new variant fails to
    /// compile until it is listed here) and as an array compared with `ErrorCode::ALL`. This
    /// lives inside the crate because `#[non_exhaustive]` forbids exhaustive matches elsewhere.
    macro_rules! every_variant {
        ($($v:ident),* $(,)?) => {{
            fn _exhaustive(c: ErrorCode) {
                match c {
                    $(ErrorCode::$v => {})*
                }
            }
            [$(ErrorCode::$v),*]
        }};
    }

    #[test]
    fn all_lists_every_variant_exactly_once() {
        let listed = every_variant!(
            AlreadyInRoom,
            MicrophoneBusy,
            ExitedWhileJoining,
            SystemError,
            RoomQuotaExceeded,
            InvalidSignature,
            StaleTimestamp,
            ReplayedNonce,
            UnknownApp,
            VoipNotEnabled,
            UnknownSession,
            InvalidField,
            RoomFull,
            NotInRoom,
            InvalidSdp,
            UnsupportedRoomType,
            RoomTypeMismatch,
            VideoNotShown,
            ServerMuted,
            RoomElsewhere,
            Kicked,
            Replaced,
            MediaTimeout,
            ServerShutdown,
            RoomClosed,
            MalformedMessage,
            MessageTooLarge,
            UnexpectedMessage,
            BadCredentials,
            UnknownRoute,
            MethodNotAllowed,
            UnknownRoom,
            BodyTooLarge,
            TooManyConnections,
            TooManyConnectionsFromAddress,
            RateLimited,
            JoinTimeout,
            RequestTimeout,
            OutboxFull,
            PingTimeout,
            RoomMoved,
            MediaOverloaded,
        );
        assert_eq!(listed.len(), ErrorCode::ALL.len());
        for c in listed {
            let n = ErrorCode::ALL.iter().filter(|a| **a == c).count();
            assert_eq!(n, 1, "{c:?} is in ErrorCode::ALL {n} times");
        }
    }
}
