//! The async client: a tokio task that owns the WebSocket, the media transport (a UDP
//! socket, or ICE-over-TCP connections) and the [`Peer`], and a [`Client`] handle that talks
//! to it through channels.

use crate::peer::{Peer, PeerOutput, Reply};
use crate::tcp_link::TcpLink;
use crate::turn::{TurnClient, TurnState};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voipchat_proto::{
    AppId, ClientMsg, ErrorCode, GroupId, IceServer, JoinRequest, MuteConfig, OpenId, RoomType,
    Secret, ServerMsg, Status, TrackSlot, TurnTransport, TurnUrl,
};

/// How long [`Client::join`] waits for the WebSocket and then for `joinResult`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The WebSocket polled in the media loop reads into a small buffer. tungstenite zeroes
/// its whole free read buffer before each read (128 KiB by default), and the loop polls the
/// WebSocket on every media packet, so the default buffer was zeroed once per packet;
/// signaling frames are small (an SDP is a few KiB, and a larger frame grows the buffer).
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
}

/// What `ws_config` reads into.
const WS_READ_BUFFER: usize = 4096;

/// How long [`Client::update_mute`] and [`Client::exit`] wait for their result.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most redirects (-10015) one [`Client::join`] follows.
pub const MAX_REDIRECTS: usize = 3;
/// A `ping` goes to the server this often, so that idle signaling stays alive.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long [`Client::join`] waits for the server's `hello` (its TURN servers) before it
/// goes on without: servers older than the `hello` never send one.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`Client::join`] waits for a TURN allocation before it joins without a relay.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Everything a join needs: where, who, the signed fields of `wx.joinVoIPChat`, the
/// address of the UDP socket to bind (it is also the one ICE host candidate), and whether
/// media goes over UDP or TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOptions {
    /// WebSocket URL of the server's signaling endpoint, e.g. `ws://127.0.0.1:7880/ws`.
    pub server: String,
    pub app_id: AppId,
    pub open_id: OpenId,
    pub group_id: GroupId,
    pub nonce_str: String,
    /// Unix seconds.
    pub time_stamp: u64,
    /// Hex HMAC-SHA256, see `voipchat_auth::sign`.
    pub signature: String,
    pub room_type: RoomType,
    pub mute_config: MuteConfig,
    /// IP to bind the UDP socket to (port 0) and to announce as host candidate.
    pub bind_ip: IpAddr,
    /// For a `wss://` server: a PEM file of CA certificates to trust besides the public
    /// roots (a private CA, or the server's self-signed certificate).
    pub ca_file: Option<PathBuf>,
    /// UDP (the default), or ICE over TCP only, for networks that block UDP.
    pub transport: MediaTransport,
}

/// How the client's media travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MediaTransport {
    /// One UDP socket and a UDP host candidate.
    #[default]
    Udp,
    /// ICE over TCP (RFC 6544) only: an active TCP host candidate at `bind_ip`, no UDP
    /// socket at all; the client connects to the server's passive TCP candidate (the
    /// server's `media_tcp`). For networks that block UDP but let TCP out.
    Tcp,
}

impl JoinOptions {
    /// Options signed with the user's session key: a fresh random `nonceStr`, `timeStamp`
    /// = `now_unix`, voice room, nothing muted, UDP on 127.0.0.1.
    pub fn signed(
        server: impl Into<String>,
        app_id: impl Into<AppId>,
        open_id: impl Into<OpenId>,
        group_id: impl Into<GroupId>,
        session_key: &Secret,
        now_unix: u64,
    ) -> Self {
        let app_id = app_id.into();
        let group_id = group_id.into();
        let nonce_str = random_nonce();
        let signature = voipchat_auth::sign(
            app_id.as_str(),
            group_id.as_str(),
            &nonce_str,
            now_unix,
            session_key,
        );
        JoinOptions {
            server: server.into(),
            app_id,
            open_id: open_id.into(),
            group_id,
            nonce_str,
            time_stamp: now_unix,
            signature,
            room_type: RoomType::Voice,
            mute_config: MuteConfig::default(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            transport: MediaTransport::Udp,
            ca_file: None,
        }
    }

    /// The `join` message carrying `sdp` as offer.
    pub fn join_request(&self, sdp: String) -> JoinRequest {
        JoinRequest {
            app_id: self.app_id.clone(),
            open_id: self.open_id.clone(),
            group_id: self.group_id.clone(),
            nonce_str: self.nonce_str.clone(),
            time_stamp: self.time_stamp,
            signature: self.signature.clone(),
            room_type: self.room_type,
            mute_config: self.mute_config,
            sdp,
        }
    }
}

/// 32 random alphanumeric characters, a fresh `nonceStr`.
pub fn random_nonce() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// What happens to a joined client, in order. The first event is always `Joined`; the
/// last is always `Closed`, after which [`Client::next_event`] returns `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The join succeeded; everyone in the room, this member included.
    Joined { open_id_list: Vec<OpenId> },
    /// `onVoIPChatMembersChanged`.
    MembersChanged(Vec<OpenId>),
    /// `onVoIPChatSpeakersChanged`.
    SpeakersChanged(Vec<OpenId>),
    /// The members whose microphone is muted changed (the server's `muteChanged`).
    MuteChanged(Vec<OpenId>),
    /// The game backend muted this member's microphone (true: an unmuting `update_mute` is
    /// refused with -10014) or allowed it again (false: it stays muted until unmuted).
    ServerMuteChanged(bool),
    /// `onVoIPChatInterrupted`: the server removed this member; `Closed` follows when the
    /// server closes the connection.
    Interrupted { err_code: i32, err_msg: String },
    /// One Opus packet from another member, payload exactly as its sender wrote it.
    /// `from` is the member the slot `mid` carries per the last `offer`/`tracks` (None
    /// when unknown); `rtp_time` is the extended RTP timestamp at 48 kHz.
    Audio {
        from: Option<OpenId>,
        mid: String,
        payload: Vec<u8>,
        rtp_time: u64,
    },
    /// One VP8 frame from another member of a video room, as its sender wrote it (the
    /// frame an IVF file holds); `rtp_time` is the extended RTP timestamp at 90 kHz.
    Video {
        from: Option<OpenId>,
        mid: String,
        frame: Vec<u8>,
        rtp_time: u64,
    },
    /// `onVoIPVideoMembersChanged`: the members of the video room whose camera is on.
    VideoMembersChanged(Vec<OpenId>),
    /// The server asked for a keyframe of this member's camera (a receiver started on it):
    /// send one soon.
    KeyframeRequested,
    /// The receive slots changed (from an `offer` or a `tracks` message).
    Tracks(Vec<TrackSlot>),
    /// ICE and DTLS are up: from now on `send_opus` packets go out.
    Connected,
    /// An `error` message from the server, or a failure on this side: a malformed server
    /// frame (errCode -12001), an offer that could not be used (-10010), an unexpected
    /// message (-12003), a WebRTC failure (-1000). The connection stays up unless `Closed`
    /// follows.
    Error { err_code: i32, err_msg: String },
    /// The connection is over (exit, server close, network failure).
    Closed,
}

/// Failures of the client API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request: `joinResult`, `exitResult` or `muteConfigResult`
    /// with a non-zero errCode.
    #[error("refused: {err_msg} ({err_code})")]
    Refused { err_code: i32, err_msg: String },
    #[error("websocket: {0}")]
    WebSocket(String),
    /// TLS could not be set up for a `wss://` server (an unusable CA file).
    #[error("tls: {0}")]
    Tls(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server's SDP could not be used.
    #[error("sdp: {0}")]
    Sdp(String),
    #[error("webrtc: {0}")]
    Rtc(String),
    /// The server broke the signaling contract.
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The connection is closed (or closed before the answer came).
    #[error("connection closed")]
    Closed,
    /// The room is on another node (-10015): [`Client::join`] follows this itself and
    /// returns it only from a single attempt.
    #[error("the room is on another node: {url}")]
    Redirected { url: String },
}

impl ClientError {
    /// The wire error code of a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { err_code, .. } => ErrorCode::from_code(*err_code),
            _ => None,
        }
    }

    /// The server could not be reached at all (no WebSocket, or none in time): another node
    /// of a cluster may be. Everything else is an answer, or a failure after one.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::WebSocket(_) | ClientError::Timeout("the websocket connection")
        )
    }

    fn from_status(status: Status) -> Result<(), ClientError> {
        if status.is_ok() {
            Ok(())
        } else {
            Err(ClientError::Refused {
                err_code: status.err_code,
                err_msg: status.err_msg,
            })
        }
    }
}

/// Counters shared between the handle and its task.
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    pub(crate) sent: AtomicU64,
    pub(crate) dropped_unconnected: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) audio_events_dropped: AtomicU64,
    /// `Audio` and `Video` events in the queue, not yet taken by `next_event`.
    pub(crate) queued_audio: AtomicUsize,
}

/// A snapshot of a client's media counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Opus packets handed to WebRTC for sending.
    pub packets_sent: u64,
    /// Packets given to `send_opus` before ICE and DTLS were up, and dropped.
    pub packets_dropped_before_connected: u64,
    /// Packets that could not be written (no negotiated payload type, str0m refused).
    pub send_errors: u64,
    /// Opus packets received from the server.
    pub packets_received: u64,
    /// `Audio` events dropped because the application let the event queue fill up.
    pub audio_events_dropped: u64,
}

enum Command {
    SendOpus {
        payload: Vec<u8>,
        duration: Duration,
        audio_level: Option<(i8, bool)>,
    },
    SendVp8 {
        frame: Vec<u8>,
        duration: Duration,
    },
    UpdateMute(MuteConfig, oneshot::Sender<Result<(), ClientError>>),
    Subscribe(Vec<OpenId>, oneshot::Sender<Result<(), ClientError>>),
    Exit(oneshot::Sender<Result<(), ClientError>>),
    GoSilent,
}

/// A clonable handle that sends media (audio; in a video room also VP8 frames and
/// subscriptions) and mute changes, for a task that plays a file while another reads events.
#[derive(Clone)]
pub struct AudioSender {
    commands: mpsc::UnboundedSender<Command>,
    connected: watch::Receiver<bool>,
}

impl AudioSender {
    /// See [`Client::send_opus`].
    pub fn send_opus(
        &self,
        payload: Vec<u8>,
        duration: Duration,
        audio_level: Option<(i8, bool)>,
    ) -> Result<(), ClientError> {
        self.commands
            .send(Command::SendOpus {
                payload,
                duration,
                audio_level,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// In a video room: sends one VP8 frame (an IVF file's frame, say) lasting `duration`.
    /// Dropped, and counted, before ICE and DTLS are up or in a voice room.
    pub fn send_vp8(&self, frame: Vec<u8>, duration: Duration) -> Result<(), ClientError> {
        self.commands
            .send(Command::SendVp8 { frame, duration })
            .map_err(|_| ClientError::Closed)
    }

    /// See [`Client::update_mute`].
    pub async fn update_mute(&self, cfg: MuteConfig) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::UpdateMute(cfg, tx))
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Err(_) => Err(ClientError::Timeout("muteConfigResult")),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(result)) => result,
        }
    }

    /// See [`Client::subscribe_video`].
    pub async fn subscribe_video(&self, open_id_list: Vec<OpenId>) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(open_id_list, tx))
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Err(_) => Err(ClientError::Timeout("subscribeVideoMembersResult")),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(result)) => result,
        }
    }

    /// See [`Client::wait_connected`].
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        wait_connected(self.connected.clone(), timeout).await
    }
}

async fn wait_connected(
    mut rx: watch::Receiver<bool>,
    timeout: Duration,
) -> Result<(), ClientError> {
    match tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(ClientError::Closed),
        Err(_) => Err(ClientError::Timeout("ICE and DTLS")),
    }
}

/// A member in a room: a WebRTC peer of the server (str0m, frame mode) plus its signaling
/// WebSocket, both driven by one tokio task.
///
/// Events come from [`next_event`](Self::next_event); connectedness (ICE + DTLS up) is
/// the [`ClientEvent::Connected`] event, [`is_connected`](Self::is_connected), and
/// [`wait_connected`](Self::wait_connected). Dropping the handle ends the connection as
/// abruptly as [`close_abruptly`](Self::close_abruptly).
pub struct Client {
    open_id: OpenId,
    local_addr: SocketAddr,
    audio: AudioSender,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    stats: Arc<SharedStats>,
    /// `None` once handed to `exit`, `close_abruptly` or `go_silent`.
    task: Option<JoinHandle<()>>,
}

impl Client {
    /// Binds the UDP socket (with `MediaTransport::Tcp`, none), connects the WebSocket,
    /// sends `join` with an SDP offer (one sendonly Opus m-line) and waits for `joinResult`.
    /// A refusal is `Err(ClientError::Refused { err_code, err_msg })`. Returns the room's
    /// members.
    ///
    /// When several nodes share the room directory and another node holds the room, the
    /// server answers -10015 with that node's URL: the same signed join is sent there, at
    /// most [`MAX_REDIRECTS`] times, never from `wss://` to plain `ws://`.
    pub async fn join(opts: JoinOptions) -> Result<(Client, Vec<OpenId>), ClientError> {
        let mut opts = opts;
        let mut hops = 0;
        loop {
            match Self::join_once(opts.clone()).await {
                Err(ClientError::Redirected { url }) => {
                    let downgrade =
                        crate::tls::is_tls_url(&opts.server) && !crate::tls::is_tls_url(&url);
                    if hops == MAX_REDIRECTS || downgrade {
                        let why = if downgrade {
                            "a redirect from wss to ws"
                        } else {
                            "too many redirects"
                        };
                        return Err(ClientError::Refused {
                            err_code: ErrorCode::RoomElsewhere.code(),
                            err_msg: format!("joinVoIPChat:fail {why} (last: {url})"),
                        });
                    }
                    hops += 1;
                    tracing::info!(from = %opts.server, to = %url, "join redirected to the room's node");
                    opts.server = url;
                }
                other => return other,
            }
        }
    }

    /// Joins at the first of `servers` (the nodes of one cluster, signaling URLs) that can be
    /// reached, starting with `servers[first]` and trying each once, in order; a refusal or
    /// any other answer ends it there. `opts` makes each attempt's options for the URL it is
    /// given (a fresh signature, for one). Returns the index of the server that answered,
    /// the one to start from next time (a redirect followed from there is not a server of
    /// the list). With no servers, the answer is `InvalidOptions`.
    pub async fn join_any(
        servers: &[String],
        first: usize,
        mut opts: impl FnMut(&str) -> JoinOptions,
    ) -> Result<(Client, Vec<OpenId>, usize), ClientError> {
        let mut last = ClientError::InvalidOptions("no server to join at".into());
        for k in 0..servers.len() {
            let i = (first + k) % servers.len();
            match Self::join(opts(&servers[i])).await {
                Ok((client, members)) => return Ok((client, members, i)),
                Err(e) if e.is_unreachable() => {
                    tracing::info!(server = %servers[i], "join: unreachable ({e}); trying the next server");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// One join attempt at `opts.server`, without following a redirect.
    pub async fn join_once(opts: JoinOptions) -> Result<(Client, Vec<OpenId>), ClientError> {
        let (media, local_addr) = match opts.transport {
            MediaTransport::Udp => {
                let socket = UdpSocket::bind(SocketAddr::new(opts.bind_ip, 0)).await?;
                let addr = socket.local_addr()?;
                (Media::Udp(socket), addr)
            }
            // An active candidate announces the discard port: its real port is the
            // connection's, known only once connected (RFC 6544 §4.5).
            MediaTransport::Tcp => (Media::Tcp(TcpLink::new()), SocketAddr::new(opts.bind_ip, 9)),
        };
        let stats = Arc::new(SharedStats::default());
        let video = opts.room_type == RoomType::Video;

        let connector = if crate::tls::is_tls_url(&opts.server) {
            let config = crate::tls::client_config(opts.ca_file.as_deref())?;
            Some(tokio_tungstenite::Connector::Rustls(config))
        } else {
            None
        };
        // Nagle off: signaling frames are small and often back to back (an answer, a mute),
        // and the second would wait for the server's delayed acknowledgement of the first.
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            &opts.server,
            Some(ws_config()),
            true,
            connector,
        );
        let (mut ws, _response) = tokio::time::timeout(JOIN_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Timeout("the websocket connection"))?
            .map_err(|e| ClientError::WebSocket(e.to_string()))?;
        // The hello's TURN servers must be known before the offer: it carries the relayed
        // candidate. TURN runs on the UDP socket; ICE over TCP goes without.
        let (ice_servers, early) = read_hello(&mut ws).await?;
        let relay = match &media {
            Media::Udp(socket) => allocate_relay(socket, local_addr, &ice_servers).await,
            Media::Tcp(_) => {
                if !ice_servers.is_empty() {
                    tracing::info!("ICE over TCP: the hello's TURN servers are not used");
                }
                None
            }
        };
        let relayed = relay.as_ref().and_then(TurnClient::relayed);
        let (mut peer, sdp) = Peer::new(
            Instant::now(),
            opts.transport,
            local_addr,
            stats.clone(),
            video,
            relayed,
        )?;
        for frame in early {
            peer.handle_frame(&frame);
        }
        let join = ClientMsg::Join(opts.join_request(sdp));

        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (conn_tx, conn_rx) = watch::channel(false);
        let (join_tx, join_rx) = oneshot::channel();
        let driver = Driver {
            peer,
            media,
            relay,
            ws,
            commands: cmd_rx,
            events: ev_tx,
            connected: conn_tx,
            join_reply: Some(join_tx),
            mute_replies: VecDeque::new(),
            subscribe_replies: VecDeque::new(),
            exit_reply: None,
            finish: false,
        };
        let task = tokio::spawn(driver.run(join));
        let client = Client {
            open_id: opts.open_id,
            local_addr,
            audio: AudioSender {
                commands: cmd_tx,
                connected: conn_rx,
            },
            events: ev_rx,
            stats,
            task: Some(task),
        };
        match tokio::time::timeout(JOIN_TIMEOUT, join_rx).await {
            Err(_) => Err(ClientError::Timeout("joinResult")),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Ok(Ok(members))) => Ok((client, members)),
        }
    }

    /// The next event; `None` after [`ClientEvent::Closed`].
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.recv().await?;
        if matches!(event, ClientEvent::Audio { .. } | ClientEvent::Video { .. }) {
            self.stats.queued_audio.fetch_sub(1, Ordering::Relaxed);
        }
        Some(event)
    }

    /// An event if one is queued now.
    pub fn try_next_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.try_recv().ok()?;
        if matches!(event, ClientEvent::Audio { .. } | ClientEvent::Video { .. }) {
            self.stats.queued_audio.fetch_sub(1, Ordering::Relaxed);
        }
        Some(event)
    }

    /// Whether ICE and DTLS are up (they stay "up" for the handle once they were).
    pub fn is_connected(&self) -> bool {
        *self.audio.connected.borrow()
    }

    /// Waits until ICE and DTLS are up. `Err(Timeout)` after `timeout`, `Err(Closed)` if
    /// the connection ended first. Does not consume events: `Connected` is still queued.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        self.audio.wait_connected(timeout).await
    }

    /// Queues one Opus packet (typically 20 ms) for sending now. `audio_level` is RFC 6464's
    /// level in -dBov, 0..=127 (0 loudest, 127 silence), and the voice activity flag; it goes
    /// into the audio level header extension. The RTP timestamp advances by `duration` at
    /// 48 kHz (960 per 20 ms), and jumps to the wall clock after a pause of over 200 ms.
    /// Packets queued before ICE and DTLS are up are dropped and counted in
    /// [`ClientStats::packets_dropped_before_connected`]. `Err(Closed)` once the task ended.
    pub fn send_opus(
        &self,
        payload: Vec<u8>,
        duration: Duration,
        audio_level: Option<(i8, bool)>,
    ) -> Result<(), ClientError> {
        self.audio.send_opus(payload, duration, audio_level)
    }

    /// A handle for sending audio from another task.
    pub fn audio_sender(&self) -> AudioSender {
        self.audio.clone()
    }

    /// `wx.updateVoIPChatMuteConfig`: sends `updateMuteConfig` and waits for its result.
    pub async fn update_mute(&self, cfg: MuteConfig) -> Result<(), ClientError> {
        self.audio.update_mute(cfg).await
    }

    /// `wx.subscribeVoIPVideoMembers`: in a video room, receive the video of exactly these
    /// members from now on. Waits for the server's result.
    pub async fn subscribe_video(&self, open_id_list: Vec<OpenId>) -> Result<(), ClientError> {
        self.audio.subscribe_video(open_id_list).await
    }

    /// `wx.exitVoIPChat`: sends `exit`, waits for `exitResult`, then closes the peer
    /// connection and the WebSocket cleanly.
    pub async fn exit(mut self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.audio
            .commands
            .send(Command::Exit(tx))
            .map_err(|_| ClientError::Closed)?;
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Err(_) => return Err(ClientError::Timeout("exitResult")),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(result)) => result,
        };
        if let Some(task) = self.task.take() {
            // The task closes the WebSocket right after exitResult; give it a moment.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        result
    }

    /// Drops the WebSocket and the UDP socket at once, without `exit`, without a close
    /// frame and without DTLS close_notify: what the server sees of a crashed client.
    pub fn close_abruptly(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Stops all traffic (no media, no RTCP, no STUN, no signaling, WebSocket pings left
    /// unanswered) while keeping the TCP connection and UDP socket open: what the server
    /// sees of a frozen or vanished client whose connection did not close. Dropping the
    /// returned value closes everything.
    pub fn go_silent(mut self) -> SilentClient {
        let _ = self.audio.commands.send(Command::GoSilent);
        SilentClient {
            task: self.task.take(),
        }
    }

    pub fn open_id(&self) -> &OpenId {
        &self.open_id
    }

    /// The ICE host candidate's address: the UDP socket's, or with `MediaTransport::Tcp`
    /// the bind IP and the discard port 9 of an active TCP candidate.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> ClientStats {
        let s = &self.stats;
        ClientStats {
            packets_sent: s.sent.load(Ordering::Relaxed),
            packets_dropped_before_connected: s.dropped_unconnected.load(Ordering::Relaxed),
            send_errors: s.send_errors.load(Ordering::Relaxed),
            packets_received: s.received.load(Ordering::Relaxed),
            audio_events_dropped: s.audio_events_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A client made silent by [`Client::go_silent`]; dropping it closes its sockets.
pub struct SilentClient {
    task: Option<JoinHandle<()>>,
}

impl Drop for SilentClient {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Why the driver loop ended.
enum End {
    /// Close the WebSocket with a close frame (after exit, or a refused join).
    Graceful,
    /// The server closed the connection, or it broke.
    Gone,
    /// The handle is gone.
    Abandoned,
    /// Keep the sockets, send nothing, until aborted.
    Silent,
}

/// The media transport the driver reads and writes.
enum Media {
    Udp(UdpSocket),
    Tcp(TcpLink),
}

impl Media {
    /// The next packet into `buf`: its length and source. Cancel-safe.
    async fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        match self {
            Media::Udp(socket) => socket.recv_from(buf).await,
            Media::Tcp(link) => {
                let (source, packet) = link.recv().await;
                // The link reads no frame longer than the driver's buffer.
                let n = packet.len().min(buf.len());
                buf[..n].copy_from_slice(&packet[..n]);
                Ok((n, source))
            }
        }
    }

    async fn send(&mut self, t: &str0m::net::Transmit) {
        match self {
            Media::Udp(socket) => {
                if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                    tracing::debug!(destination = %t.destination, "udp send: {e}");
                }
            }
            Media::Tcp(link) => link.send(t.destination, &t.contents),
        }
    }
}

enum Wake {
    Media(std::io::Result<(usize, SocketAddr)>),
    Ws(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Command(Option<Command>),
    Timeout,
    Ping,
}

/// Reads frames until the server's `hello`; returns its ICE servers and the frames that came
/// before it (none from a server of this version). Waits [`HELLO_TIMEOUT`] at most, then
/// goes on without ICE servers, as with a server older than the `hello`.
async fn read_hello(ws: &mut Ws) -> Result<(Vec<IceServer>, Vec<String>), ClientError> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let mut early = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                tracing::warn!(
                    "no hello from the server within {HELLO_TIMEOUT:?}: joining without its \
                     TURN servers"
                );
                return Ok((Vec::new(), early));
            }
            Ok(frame) => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => match ServerMsg::parse(text.as_str()) {
                Ok(ServerMsg::Hello { ice_servers }) => return Ok((ice_servers, early)),
                _ => early.push(text.as_str().to_string()),
            },
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ClientError::WebSocket(e.to_string())),
        }
    }
}

/// The first `turn:` URL over UDP among `servers`, resolved to an address of the socket's
/// family, with that server's credentials.
async fn pick_turn(
    servers: &[IceServer],
    local: SocketAddr,
) -> Option<(SocketAddr, String, Secret)> {
    let mut other = Vec::new();
    for server in servers {
        for url in &server.urls {
            let parsed: TurnUrl = match url.parse() {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!("ignoring an ICE server URL: {e}");
                    continue;
                }
            };
            if parsed.secure || parsed.transport() != TurnTransport::Udp {
                other.push(url.as_str());
                continue;
            }
            let host = (parsed.host.as_str(), parsed.port());
            let found =
                match tokio::time::timeout(TURN_TIMEOUT, tokio::net::lookup_host(host)).await {
                    Ok(Ok(addrs)) => addrs.into_iter().find(|a| a.is_ipv4() == local.is_ipv4()),
                    Ok(Err(e)) => {
                        tracing::warn!("cannot resolve the TURN server of {url}: {e}");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("resolving the TURN server of {url} took too long");
                        None
                    }
                };
            if let Some(addr) = found {
                return Some((addr, server.username.clone(), server.credential.clone()));
            }
        }
    }
    if !other.is_empty() {
        tracing::warn!(
            urls = ?other,
            "the server offers TURN only over TCP or TLS, which this client does not speak: \
             joining without a relay"
        );
    }
    None
}

/// A TURN allocation for the socket when the server named a TURN server this client can
/// use, within [`TURN_TIMEOUT`]; `None` (and a log line why) otherwise: the join goes on
/// with the host candidate alone.
async fn allocate_relay(
    socket: &UdpSocket,
    local: SocketAddr,
    servers: &[IceServer],
) -> Option<TurnClient> {
    let (server, username, credential) = pick_turn(servers, local).await?;
    let deadline = Instant::now() + TURN_TIMEOUT;
    let mut turn = TurnClient::new(Instant::now(), server, &username, credential);
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(datagram) = turn.poll_transmit() {
            if let Err(e) = socket.send_to(&datagram, server).await {
                tracing::warn!(%server, "TURN: cannot send to the TURN server: {e}");
            }
        }
        match turn.state() {
            TurnState::Allocating => {}
            TurnState::Allocated { relayed, .. } => {
                tracing::info!(%relayed, turn = %server, "relay candidate {relayed} through the TURN server {server}");
                return Some(turn);
            }
            TurnState::Failed(why) => {
                tracing::warn!(turn = %server, "no TURN relay: {why}; joining without one");
                return None;
            }
            TurnState::Closed => return None,
        }
        let wake = turn.poll_timeout().unwrap_or(deadline).min(deadline);
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) if from == server => {
                    let _ = turn.handle_datagram(Instant::now(), &buf[..n]);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("udp receive: {e}"),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                if Instant::now() >= deadline {
                    tracing::warn!(turn = %server, "no TURN relay within {TURN_TIMEOUT:?}; joining without one");
                    return None;
                }
                turn.handle_timeout(Instant::now());
            }
        }
    }
}

/// The task: one loop that waits for the media transport, the WebSocket, a command, the
/// `Rtc`'s timeout or the ping timer; feeds that one input to the [`Peer`]; and drains the
/// peer's output until its next timeout.
struct Driver {
    peer: Peer,
    media: Media,
    /// The TURN allocation whose relayed address is one of the peer's candidates: what
    /// str0m sends from that address goes through it, and what it relays goes to str0m.
    relay: Option<TurnClient>,
    ws: Ws,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    connected: watch::Sender<bool>,
    join_reply: Option<oneshot::Sender<Result<Vec<OpenId>, ClientError>>>,
    /// `updateMuteConfig` requests in the order sent; results come back in that order.
    mute_replies: VecDeque<oneshot::Sender<Result<(), ClientError>>>,
    subscribe_replies: VecDeque<oneshot::Sender<Result<(), ClientError>>>,
    exit_reply: Option<oneshot::Sender<Result<(), ClientError>>>,
    /// End gracefully once the output is drained (after exitResult or a failed join).
    finish: bool,
}

impl Driver {
    async fn run(mut self, join: ClientMsg) {
        let end = self.run_loop(join).await;
        match end {
            End::Graceful => {
                if let Some(relay) = &mut self.relay {
                    relay.close(Instant::now());
                    self.flush_relay().await;
                }
                let closing = async {
                    let _ = self.ws.close(None).await;
                    // Read until the server's close frame (or the end).
                    while let Some(Ok(_)) = self.ws.next().await {}
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
            }
            End::Gone | End::Abandoned => {}
            End::Silent => {
                // Hold the sockets open and do nothing until the handle aborts the task.
                std::future::pending::<()>().await;
            }
        }
        let _ = self.events.send(ClientEvent::Closed);
    }

    async fn run_loop(&mut self, join: ClientMsg) -> End {
        if self.send_ws(&join).await.is_err() {
            return End::Gone;
        }
        let mut buf = vec![0u8; crate::tcp_link::MAX_FRAME];
        let start = tokio::time::Instant::now() + PING_INTERVAL;
        let mut ping = tokio::time::interval_at(start, PING_INTERVAL);
        loop {
            let deadline = match self.drain().await {
                Ok(deadline) => deadline,
                Err(end) => return end,
            };
            if self.finish || !self.peer.is_alive() {
                return End::Graceful;
            }
            let wake = tokio::select! {
                r = self.media.recv(&mut buf) => Wake::Media(r),
                m = self.ws.next() => Wake::Ws(m),
                c = self.commands.recv() => Wake::Command(c),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => Wake::Timeout,
                _ = ping.tick() => Wake::Ping,
            };
            match wake {
                Wake::Media(Ok((n, source))) => self.on_packet(source, &buf[..n]),
                Wake::Media(Err(e)) => tracing::debug!("media receive: {e}"),
                Wake::Ws(Some(Ok(Message::Text(text)))) => self.peer.handle_frame(text.as_str()),
                Wake::Ws(Some(Ok(Message::Binary(_)))) => self.peer.handle_unusable_frame("binary"),
                Wake::Ws(Some(Ok(Message::Close(frame)))) => {
                    tracing::debug!(?frame, "server closed the websocket");
                    return End::Gone;
                }
                Wake::Ws(Some(Ok(_))) => {} // ping, pong: tungstenite answers pings itself
                Wake::Ws(Some(Err(e))) => {
                    tracing::debug!("websocket: {e}");
                    return End::Gone;
                }
                Wake::Ws(None) => return End::Gone,
                Wake::Command(None) => return End::Abandoned,
                Wake::Command(Some(cmd)) => {
                    if let Some(end) = self.on_command(cmd).await {
                        return end;
                    }
                }
                Wake::Timeout => {
                    let now = Instant::now();
                    self.peer.handle_timeout(now);
                    if let Some(relay) = &mut self.relay {
                        relay.handle_timeout(now);
                    }
                }
                Wake::Ping => {
                    if self.send_ws(&ClientMsg::Ping).await.is_err() {
                        return End::Gone;
                    }
                }
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) -> Option<End> {
        match cmd {
            Command::SendOpus {
                payload,
                duration,
                audio_level,
            } => self
                .peer
                .send_opus(Instant::now(), payload, duration, audio_level),
            Command::SendVp8 { frame, duration } => {
                self.peer.send_vp8(Instant::now(), frame, duration)
            }
            Command::Subscribe(list, reply) => {
                let msg = ClientMsg::SubscribeVideoMembers { open_id_list: list };
                if self.send_ws(&msg).await.is_err() {
                    let _ = reply.send(Err(ClientError::Closed));
                    return Some(End::Gone);
                }
                self.subscribe_replies.push_back(reply);
            }
            Command::UpdateMute(cfg, reply) => {
                let msg = ClientMsg::UpdateMuteConfig { mute_config: cfg };
                if self.send_ws(&msg).await.is_err() {
                    let _ = reply.send(Err(ClientError::Closed));
                    return Some(End::Gone);
                }
                self.mute_replies.push_back(reply);
            }
            Command::Exit(reply) => {
                if self.send_ws(&ClientMsg::Exit).await.is_err() {
                    let _ = reply.send(Err(ClientError::Closed));
                    return Some(End::Gone);
                }
                self.exit_reply = Some(reply);
            }
            Command::GoSilent => return Some(End::Silent),
        }
        None
    }

    /// A packet from the media transport: the TURN server's go to the TURN client, and what
    /// it relays on to the peer as received on the relayed address.
    fn on_packet(&mut self, source: SocketAddr, packet: &[u8]) {
        let now = Instant::now();
        if let Some(relay) = self.relay.as_mut().filter(|r| r.server() == source) {
            if let (Some(relayed), Some((from, data))) =
                (relay.relayed(), relay.handle_datagram(now, packet))
            {
                self.peer.handle_packet(now, from, relayed, &data);
            }
            return;
        }
        let local = self.peer.local_addr();
        self.peer.handle_packet(now, source, local, packet);
    }

    /// Sends what the TURN client has for the TURN server (on the UDP socket it was
    /// allocated from).
    async fn flush_relay(&mut self) {
        let (Some(relay), Media::Udp(socket)) = (&mut self.relay, &self.media) else {
            return;
        };
        let server = relay.server();
        while let Some(datagram) = relay.poll_transmit() {
            if let Err(e) = socket.send_to(&datagram, server).await {
                tracing::debug!(%server, "udp send to the TURN server: {e}");
            }
        }
    }

    /// Polls the peer until its next timeout, doing what it asks on the way.
    async fn drain(&mut self) -> Result<Instant, End> {
        loop {
            match self.peer.poll_output() {
                PeerOutput::Timeout(t) => {
                    self.flush_relay().await;
                    let turn = self.relay.as_ref().and_then(TurnClient::poll_timeout);
                    return Ok(turn.map_or(t, |turn| turn.min(t)));
                }
                PeerOutput::Transmit(t) => {
                    let relayed = self.relay.as_ref().and_then(TurnClient::relayed);
                    match &mut self.relay {
                        Some(relay) if relayed == Some(t.source) => {
                            relay.send_to(Instant::now(), t.destination, &t.contents)
                        }
                        _ => self.media.send(&t).await,
                    }
                }
                PeerOutput::Signal(msg) => {
                    if self.send_ws(&msg).await.is_err() {
                        return Err(End::Gone);
                    }
                }
                PeerOutput::Event(event) => {
                    if event == ClientEvent::Connected {
                        self.connected.send_replace(true);
                    }
                    let _ = self.events.send(event);
                }
                PeerOutput::Reply(reply) => self.on_reply(reply),
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Joined(result) => {
                if result.is_err() {
                    self.finish = true;
                }
                match self.join_reply.take() {
                    Some(tx) => {
                        let _ = tx.send(result);
                    }
                    None => tracing::warn!("joinResult nobody waits for"),
                }
            }
            Reply::Subscribe(status) => match self.subscribe_replies.pop_front() {
                Some(tx) => {
                    let _ = tx.send(ClientError::from_status(status));
                }
                None => tracing::warn!(?status, "subscribeVideoMembersResult nobody waits for"),
            },
            Reply::MuteConfig(status) => match self.mute_replies.pop_front() {
                Some(tx) => {
                    let _ = tx.send(ClientError::from_status(status));
                }
                None => tracing::warn!(?status, "muteConfigResult nobody waits for"),
            },
            Reply::Exit(status) => match self.exit_reply.take() {
                Some(tx) => {
                    let _ = tx.send(ClientError::from_status(status));
                    // Out of the room: say goodbye on the media path too, then close.
                    self.peer.close();
                    self.finish = true;
                }
                None => tracing::warn!(?status, "exitResult nobody waits for"),
            },
        }
    }

    async fn send_ws(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.ws
            .send(Message::text(msg.to_json()))
            .await
            .map_err(|e| {
                tracing::debug!("websocket send: {e}");
                ClientError::WebSocket(e.to_string())
            })
    }
}
