//! The sans-IO heart of voipchat: rooms, members, the room rules, speaker detection and the
//! forwarding of RTP between members' WebRTC sessions (one str0m `Rtc` per member).
//!
//! No runtime, no sockets, no store, no clock: every input carries `now`, every output is
//! polled. The server crate wraps it with a UDP socket and WebSocket signaling; the tests
//! drive it with virtual time and in-memory peers.

pub mod engine;
pub mod keyframe;
pub mod layers;
pub mod red;
pub mod rules;
pub mod sdp;
pub mod speakers;
pub mod vp8;

pub use engine::{
    ConnId, Counters, Drops, Engine, EngineConfig, JoinPolicy, Leave, MemberChange, MemberId,
    MemberSnapshot, Output, QuotaAnswer, RoomSnapshot, ServerMuteError,
};
pub use speakers::{SpeakerConfig, SpeakerState};
