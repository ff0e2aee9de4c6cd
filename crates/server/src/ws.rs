//! WebSocket signaling: one task per connection. Frames are parsed into `ClientMsg` at this
//! edge; joins are checked here (app, session key, signature, nonce) before the media task
//! sees them, so the engine only ever gets authenticated joins.
//!
//! Each connection is bounded (docs/security.md#limits): its outbox holds at most
//! `ws_outbox_messages` (a client that lets it fill is disconnected, and whoever sends to it,
//! the media task included, never waits), its frames are rate limited (a token bucket), it
//! must be admitted to a room within `ws_join_timeout_ms`, and it must answer the server's
//! pings: one that goes silent for `ws_pong_timeout_ms` is disconnected, so a member whose
//! network died leaves its room within seconds even while its TCP connection looks open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, info, warn};
use voipchat_auth::{verify, VerifyPolicy};
use voipchat_core::{ConnId, JoinPolicy};
use voipchat_proto::signal::MAX_FRAME_BYTES;
use voipchat_proto::{ClientMsg, ErrorCode, Failure, JoinRequest, RoomKey, ServerMsg};

use crate::conn_limits::TokenBucket;
use crate::media::Command;
use crate::{clock, AppState};

/// tungstenite's read buffer per connection (its default is 128 KiB). A join frame with a
/// video offer is a few KiB; a larger frame still arrives whole (the buffer grows for it).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Most bytes tungstenite buffers for a client whose socket takes no more; past it the
/// connection fails (with `ws_outbox_messages`, the bound on what a slow client costs).
pub const MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// How long the last frame (an error or interruption) and the Close may take to write.
const FINAL_WRITE: Duration = Duration::from_secs(1);
/// WebSocket close code for a connection closed for a limit (RFC 6455: policy violation).
const CLOSE_POLICY: u16 = 1008;

/// Where a connection's messages go: a bounded queue that never waits. A full queue means
/// the client stopped reading: the send fails and the connection is told to end.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<ServerMsg>,
    overflow: Arc<Notify>,
}

/// Why [`Outbox::send`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxError {
    /// The client did not read: its connection is being closed (-11006).
    Full,
    /// The connection is gone.
    Closed,
}

impl Outbox {
    /// An outbox of `capacity` messages, the connection's end of it, and what it is told
    /// when the queue overflows.
    pub fn new(capacity: usize) -> (Outbox, mpsc::Receiver<ServerMsg>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Notify::new());
        (
            Outbox {
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Queues `msg` without waiting.
    pub fn send(&self, msg: ServerMsg) -> Result<(), OutboxError> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.notify_one();
                Err(OutboxError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(OutboxError::Closed),
        }
    }
}

/// A connection the server ends for a limit: its code and the metric label.
struct Limit {
    code: ErrorCode,
    label: &'static str,
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// How long a connection keeps reading after the server started to stop, for the client's
/// answer to the server's Close.
const SHUTDOWN_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    // Accept somewhat more than MAX_FRAME_BYTES so an oversize frame gets a typed error
    // instead of a dropped connection.
    ws.max_message_size(MAX_FRAME_BYTES * 4)
        .max_frame_size(MAX_FRAME_BYTES * 4)
        .read_buffer_size(READ_BUFFER_BYTES)
        // Each message is written out at once (the writer flushes every send anyway).
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(state, socket))
}

async fn connection(state: AppState, socket: WebSocket) {
    let _live = state.connections.clone();
    let conn = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
    let (mut sink, mut stream) = socket.split();
    let config = state.config.clone();
    let (outbox, mut inbox, overflow) = Outbox::new(config.ws_outbox_messages);
    // Set by the writer once a join is admitted: the join deadline no longer applies.
    let admitted = Arc::new(AtomicBool::new(false));
    // The last frame of a connection ended for a limit, written ahead of anything queued.
    let (last_tx, mut last_rx) = oneshot::channel::<(ServerMsg, &'static str)>();
    let ping_every = Duration::from_millis(config.ws_ping_interval_ms);
    // The connection's TURN credentials as of now: always the same name (what ties the
    // TURN server's log to the member), each time a fresh expiry. The hello goes first,
    // ahead of anything the media task sends once it knows the connection: the client
    // creates its peer connection with these servers.
    let turn = state.turn.clone();
    let turn_name = crate::turn::connection_name();
    let ice_servers = move || match &turn {
        Some(turn) => turn.ice_servers(&turn_name, clock::unix_now()),
        None => Vec::new(),
    };
    let hello_servers = ice_servers();
    let turn_username = hello_servers.first().map(|s| s.username.clone());
    let _ = outbox.send(ServerMsg::Hello {
        ice_servers: hello_servers,
    });
    // Every shard knows where the connection's messages go: its joins may land on any.
    if state
        .media
        .send_all(|| Command::Connect(conn, outbox.clone()))
        .is_err()
    {
        return;
    }
    // The shard of the connection's last join: where its other frames go.
    let mut shard: Option<usize> = None;
    // Ends after an `interrupted` (the member is out of its room and its session is gone:
    // the client reconnects afresh) or when every sender is gone (the connection closed, or
    // the server stopped); either way the client is sent a Close.
    // When each join still unanswered arrived, oldest first (the join latency metric).
    let joins_waiting =
        std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let metrics = state.metrics.clone();
    let waiting = joins_waiting.clone();
    let joined = admitted.clone();
    let mut writer = tokio::spawn(async move {
        let mut last_open = true;
        let mut ping = (!ping_every.is_zero()).then(|| {
            let mut i =
                tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            let mut msg = tokio::select! {
                biased;
                last = &mut last_rx, if last_open => {
                    last_open = false;
                    let Ok((msg, reason)) = last else { continue };
                    let _ = tokio::time::timeout(FINAL_WRITE, async {
                        sink.send(Message::Text(msg.to_json().into())).await?;
                        sink.send(Message::Close(Some(CloseFrame {
                            code: CLOSE_POLICY,
                            reason: reason.into(),
                        })))
                        .await
                    })
                    .await;
                    return;
                }
                msg = inbox.recv() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                _ = async { ping.as_mut().expect("guarded").tick().await }, if ping.is_some() => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if let ServerMsg::JoinResult {
                status,
                ice_servers: repeated,
                ..
            } = &mut msg
            {
                let since = waiting.lock().ok().and_then(|mut w| w.pop_front());
                metrics.join_result(status.code().map_or(0, |c| i64::from(c.code())), since);
                if status.is_ok() {
                    // Fresh: a join may come long after the hello on the same connection.
                    *repeated = ice_servers();
                    joined.store(true, Ordering::Relaxed);
                }
            }
            let interrupted = matches!(msg, ServerMsg::Interrupted { .. });
            if sink
                .send(Message::Text(msg.to_json().into()))
                .await
                .is_err()
            {
                return;
            }
            if interrupted {
                break;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });

    let mut shutdown = state.shutdown.clone();
    let mut server_stopping = false;
    let linger_end = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger_end);
    let join_deadline = tokio::time::sleep(Duration::from_millis(config.ws_join_timeout_ms));
    tokio::pin!(join_deadline);
    let mut join_deadline_on = true;
    // The pong deadline is checked as often as pings go out.
    let mut liveness_check = (!ping_every.is_zero()).then(|| tokio::time::interval(ping_every));
    let pong_timeout = Duration::from_millis(config.ws_pong_timeout_ms);
    let mut last_heard = tokio::time::Instant::now();
    let mut bucket = TokenBucket::new(
        config.ws_frames_per_sec,
        config.ws_frame_burst,
        std::time::Instant::now(),
    );
    let mut limit: Option<Limit> = None;
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = shutdown.wait_for(|stop| *stop), if !server_stopping => {
                server_stopping = true;
                linger_end
                    .as_mut()
                    .reset(tokio::time::Instant::now() + SHUTDOWN_LINGER);
                continue;
            }
            _ = &mut linger_end, if server_stopping => break,
            _ = overflow.notified(), if !server_stopping => {
                limit = Some(Limit { code: ErrorCode::OutboxFull, label: "outbox_full" });
                break;
            }
            _ = &mut join_deadline, if join_deadline_on && !server_stopping => {
                join_deadline_on = false;
                if admitted.load(Ordering::Relaxed) {
                    continue;
                }
                limit = Some(Limit { code: ErrorCode::JoinTimeout, label: "join_timeout" });
                break;
            }
            _ = async { liveness_check.as_mut().expect("guarded").tick().await },
                if liveness_check.is_some() && !server_stopping =>
            {
                if last_heard.elapsed() > pong_timeout {
                    limit = Some(Limit { code: ErrorCode::PingTimeout, label: "ping_timeout" });
                    break;
                }
                continue;
            }
        };
        let Some(Ok(frame)) = frame else { break };
        last_heard = tokio::time::Instant::now();
        if !server_stopping && !bucket.take(std::time::Instant::now()) {
            limit = Some(Limit {
                code: ErrorCode::RateLimited,
                label: "rate_limited",
            });
            break;
        }
        if server_stopping {
            // Still read, and drop, what the client sends until its Close answers ours: a
            // socket closed with unread input is reset, and the reset can destroy the last
            // frames (the interruption) before the client has read them.
            if matches!(frame, Message::Close(_)) {
                break;
            }
            continue;
        }
        let text = match frame {
            Message::Text(t) => t,
            Message::Binary(_) => {
                let f =
                    Failure::with_detail(ErrorCode::MalformedMessage, "binary frames are not used");
                let _ = outbox.send(ServerMsg::error(&f));
                continue;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let arrived = std::time::Instant::now();
        // A join frame: its answer's latency is measured from now. Bounded: a client whose
        // joins are never answered cannot make it grow.
        let join_arrived = || {
            if let Ok(mut w) = joins_waiting.lock() {
                if w.len() < 16 {
                    w.push_back(arrived);
                }
            }
        };
        let msg = match ClientMsg::parse(text.as_str()) {
            Ok(m) => m,
            Err(f) => {
                // A join that does not parse is answered as a failed join, so a client
                // waiting for its joinResult gets one.
                let reply = if looks_like_join(text.as_str()) {
                    join_arrived();
                    info!(?conn, code = f.code.code(), "join refused: {}", f.detail);
                    ServerMsg::join_failed(&f)
                } else {
                    debug!(?conn, code = f.code.code(), "frame refused: {}", f.detail);
                    ServerMsg::error(&f)
                };
                let _ = outbox.send(reply);
                continue;
            }
        };
        let cmd = match msg {
            ClientMsg::Join(req) => {
                join_arrived();
                match authenticate(&state, &req).await {
                    Ok(policy) => {
                        if let Some(turn_username) = &turn_username {
                            // What ties the TURN server's log of this connection to a member.
                            info!(
                                ?conn,
                                app_id = %req.app_id,
                                open_id = %req.open_id,
                                %turn_username,
                                "join authenticated"
                            );
                        }
                        let key = RoomKey::new(req.app_id.clone(), req.group_id.clone());
                        let target = state.media.of_room(&key);
                        if let Some(old) = shard.filter(|&s| s != target) {
                            if state.media.holds(old, conn).await {
                                // In a room (or joining one) of another shard: the answer
                                // the engine gives a second join, and the nonce back.
                                refuse_second_join(&state, &req, &outbox);
                                continue;
                            }
                        }
                        shard = Some(target);
                        Command::Join(conn, req.into(), policy)
                    }
                    Err(Refusal::Failed(f)) => {
                        info!(
                            ?conn,
                            app_id = %req.app_id,
                            open_id = %req.open_id,
                            group_id = %req.group_id,
                            code = f.code.code(),
                            "join refused: {}",
                            f.detail
                        );
                        let _ = outbox.send(ServerMsg::join_failed(&f));
                        continue;
                    }
                    Err(Refusal::Elsewhere(owner)) => {
                        info!(
                            ?conn,
                            app_id = %req.app_id,
                            group_id = %req.group_id,
                            node = %owner.id,
                            "join redirected to the room's node"
                        );
                        let _ = outbox.send(ServerMsg::join_redirected(&owner.url));
                        continue;
                    }
                }
            }
            ClientMsg::Exit => Command::Exit(conn),
            ClientMsg::UpdateMuteConfig { mute_config } => Command::Mute(conn, mute_config),
            ClientMsg::Answer { sdp } => Command::Answer(conn, sdp),
            ClientMsg::SubscribeVideoMembers { open_id_list } => {
                Command::SubscribeVideo(conn, open_id_list)
            }
            ClientMsg::Ping => {
                let _ = outbox.send(ServerMsg::Pong);
                continue;
            }
        };
        if state.media.send(shard.unwrap_or(0), cmd).is_err() {
            break;
        }
    }
    if let Some(limit) = &limit {
        state.metrics.ws_closed(limit.label);
        let failure = Failure::new(limit.code);
        info!(
            ?conn,
            code = limit.code.code(),
            "connection closed: {}",
            failure.detail
        );
        // A member is told it is out of its room; any other connection gets an error.
        let last = match limit.code {
            ErrorCode::OutboxFull | ErrorCode::PingTimeout if admitted.load(Ordering::Relaxed) => {
                ServerMsg::interrupted(limit.code)
            }
            _ => ServerMsg::error(&failure),
        };
        let _ = last_tx.send((last, limit.code.reason()));
    }
    // When the server stops, the media task interrupts every member (-11004) itself; a
    // disconnect sent now could reach it first and make the member leave untold.
    if !server_stopping {
        let _ = state.media.send_all(|| Command::Disconnect(conn));
    }
    drop(outbox);
    if limit.is_some() {
        // Read, and drop, what the client still sends until its Close answers ours (at most
        // FINAL_WRITE): a socket closed with unread input is reset, and the reset can
        // destroy the last frame (the error saying why) before the client has read it.
        let _ = tokio::time::timeout(FINAL_WRITE, async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    // Let queued messages (an interruption, a last result) reach the client; a client that
    // does not read (or whose network is gone) is cut off after that.
    let linger = if limit.is_some() {
        FINAL_WRITE * 2
    } else {
        Duration::from_secs(2)
    };
    if tokio::time::timeout(linger, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// A join while the connection is in a room (or joining one) of another media shard: the
/// same -1 the engine answers a second join with, and its nonce given back, as the media
/// task gives back the nonce of every join it refuses.
fn refuse_second_join(state: &AppState, req: &JoinRequest, outbox: &Outbox) {
    crate::media::give_back_nonce(
        &state.store,
        req.app_id.clone(),
        req.open_id.clone(),
        req.nonce_str.clone(),
    );
    let _ = outbox.send(ServerMsg::join_failed(&Failure::new(
        ErrorCode::AlreadyInRoom,
    )));
}

fn looks_like_join(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(|t| t == "join"))
        .unwrap_or(false)
}

/// Why a join does not go on to the engine.
enum Refusal {
    Failed(Failure),
    /// Another node holds the room: the client joins there (with the same, unspent nonce).
    Elsewhere(voipchat_store::NodeInfo),
}

impl From<Failure> for Refusal {
    fn from(f: Failure) -> Refusal {
        Refusal::Failed(f)
    }
}

/// The join checks that need the store, in an order that spends nothing on a bad request:
/// app, VoIP switch, session key, timestamp and signature, then (several nodes) the room's
/// claim, and only then the nonce. An admitted join comes back with its app's limits.
async fn authenticate(state: &AppState, req: &JoinRequest) -> Result<JoinPolicy, Refusal> {
    let store = state.store.clone();
    let cluster = state.cluster.clone();
    let req = req.clone();
    let window = state.config.timestamp_window_secs;
    let default_cap = state.config.room_cap;
    let result = tokio::task::spawn_blocking(move || -> Result<JoinPolicy, Refusal> {
        let system = |e: voipchat_store::StoreError| {
            warn!("store error during join: {e}");
            crate::http::store_failure(&e)
        };
        let app = store.app(&req.app_id).map_err(system)?;
        let Some(app) = app else {
            return Err(Failure::new(ErrorCode::UnknownApp).into());
        };
        if !app.voip_enabled {
            return Err(Failure::new(ErrorCode::VoipNotEnabled).into());
        }
        let Some(key) = store
            .session_key(&req.app_id, &req.open_id)
            .map_err(system)?
        else {
            return Err(Failure::new(ErrorCode::UnknownSession).into());
        };
        let now = clock::unix_now();
        verify(
            &req,
            &key,
            now,
            &VerifyPolicy {
                window_secs: window,
            },
        )
        .map_err(|e| e.failure())?;
        if let Some(cluster) = &cluster {
            let room = voipchat_proto::RoomKey::new(req.app_id.clone(), req.group_id.clone());
            if let voipchat_store::RoomOwner::Other(owner) = cluster.claim(&room).map_err(system)? {
                // The owner spends the nonce; a replay is still refused here.
                if store
                    .nonce_used(&req.app_id, &req.open_id, &req.nonce_str, now)
                    .map_err(system)?
                {
                    return Err(Failure::new(ErrorCode::ReplayedNonce).into());
                }
                return Err(Refusal::Elsewhere(owner));
            }
        }
        // The nonce lives as long as its timestamp is acceptable.
        let expires = req.time_stamp.saturating_add(window).max(now);
        let fresh = store
            .consume_nonce(&req.app_id, &req.open_id, &req.nonce_str, expires, now)
            .map_err(system)?;
        if !fresh {
            return Err(Failure::new(ErrorCode::ReplayedNonce).into());
        }
        Ok(JoinPolicy {
            room_cap: app
                .settings
                .room_cap
                .map_or(default_cap, |cap| cap as usize),
        })
    })
    .await;
    result.unwrap_or_else(|e| {
        warn!("join check task failed: {e}");
        Err(Failure::new(ErrorCode::SystemError).into())
    })
}
