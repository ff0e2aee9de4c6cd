//! The wire contract of voipchat, and nothing else: signaling messages (JSON over WebSocket),
//! backend HTTP API bodies, error codes with their `errMsg`, and id newtypes. Every other crate
//! and the JS SDK speak through these types; `fixtures/` holds golden frames both test against.

pub mod backend;
pub mod error;
pub mod ids;
pub mod signal;
pub mod turn_url;

pub use error::{ErrorCode, Failure};
pub use ids::{AppId, GroupId, OpenId, RoomKey, Secret};
pub use signal::{
    ClientMsg, IceServer, JoinRequest, MuteConfig, RoomType, ServerMsg, Status, TrackKind,
    TrackSlot,
};
pub use turn_url::{TurnTransport, TurnUrl, TurnUrlError};
