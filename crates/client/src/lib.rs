//! The Rust client of voipchat: a real WebRTC peer (str0m, frame mode) that joins a room
//! over the signaling WebSocket, sends Opus packets (and in a video room VP8 frames) and
//! receives the other members'.
//! It is also the CLI peer (`voipchat-client join ...`) and the load generator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), voipchat_client::ClientError> {
//! use voipchat_client::{Client, ClientEvent, JoinOptions};
//! use voipchat_proto::Secret;
//! let opts = JoinOptions::signed("ws://127.0.0.1:7880/ws", "app", "alice", "room1",
//!                                &Secret::new("session-key"), 1_700_000_000);
//! let (mut client, members) = Client::join(opts).await?;
//! client.wait_connected(std::time::Duration::from_secs(5)).await?;
//! client.send_opus(vec![0xf8, 0xff, 0xfe], std::time::Duration::from_millis(20), Some((127, false)))?;
//! while let Some(event) = client.next_event().await {
//!     if let ClientEvent::Audio { from, payload, .. } = event { /* decode or record */ }
//! }
//! # Ok(()) }
//! ```
//!
//! The media contract with the server: the join offer has exactly one audio m-line,
//! `sendonly`, Opus only (payload type from str0m's defaults, 111), with str0m's standard
//! header extensions (RFC 6464 audio level is `a=extmap:1`, abs-send-time 2, transport-cc 3,
//! sdes:mid 4). The client is the controlling full ICE agent with one host candidate: UDP,
//! or with [`MediaTransport::Tcp`] an active TCP one (ICE over TCP, for networks that block
//! UDP); over UDP also a relayed one when the server's `hello` names a TURN server it can
//! reach over UDP (see [`turn`]; allocated before the offer, within [`TURN_TIMEOUT`]). Receive
//! slots arrive as server `offer`s with `sendonly` m-lines; the client answers each.
//!
//! A `wss://` server is reached over TLS (rustls) and must show a certificate from a public
//! root, or from a CA in [`JoinOptions::ca_file`] (see [`tls`]).

mod client;
pub mod ivf;
pub mod ogg_opus;
pub mod opus;
mod peer;
pub mod record;
mod tcp_link;
pub mod tls;
pub mod turn;

pub use client::{
    random_nonce, AudioSender, Client, ClientError, ClientEvent, ClientStats, JoinOptions,
    MediaTransport, SilentClient, HELLO_TIMEOUT, JOIN_TIMEOUT, PING_INTERVAL, REQUEST_TIMEOUT,
    TURN_TIMEOUT,
};
pub use ivf::{read_ivf, IvfFrame, IvfHeader, IvfWriter};
pub use ogg_opus::{read_ogg_opus, OggOpusError, OggOpusWriter, OpusPacket};
pub use opus::file_audio_level;
pub use record::{Recording, RoomRecorder, VideoRecorder, VideoRecording};
