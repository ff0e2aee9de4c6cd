//! The media task: owns the engine, the UDP socket and the ICE-over-TCP connections
//! (`media_tcp`), and is the only place the engine is touched. Signaling handlers talk to it by `Command`; it answers them through each
//! connection's outbox. Room creation's quota check runs on a blocking thread and comes back
//! as a command, so the media loop never waits for the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use str0m::net::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};
use voipchat_core::{
    ConnId, Engine, JoinPolicy, Output, QuotaAnswer, RoomSnapshot, ServerMuteError,
};
use voipchat_proto::{
    AppId, ErrorCode, Failure, GroupId, JoinRequest, MuteConfig, OpenId, RoomKey, ServerMsg, Status,
};
use voipchat_store::Store;

use crate::clock;
use crate::media_load::{Admission, LoadMeter};
use crate::media_tcp::TcpMedia;
use crate::metrics::{EngineSync, Metrics};
use crate::udp_batch::SendBatch;
use crate::webhooks::{self, Event};

/// The largest packet the media task takes in, by UDP or in one TCP frame: no WebRTC packet
/// comes near it (browsers keep theirs under about 1,200 bytes).
pub const MAX_PACKET: usize = 2048;

/// Most datagrams read in one wake-up of the media task before it looks at its other
/// inputs (commands, TCP, the timer) again.
const RECV_BATCH: usize = 32;

/// Where a connection's messages go; the connection task writes them to its WebSocket.
/// Bounded and never waits (`ws::Outbox`): a client that does not read is disconnected.
pub type Outbox = crate::ws::Outbox;

/// What the signaling side asks of the media task.
#[derive(Debug)]
pub enum Command {
    /// A new connection and where its messages go.
    Connect(ConnId, Outbox),
    /// An authenticated, validated join, with its app's limits.
    Join(ConnId, Box<JoinRequest>, JoinPolicy),
    Exit(ConnId),
    Mute(ConnId, MuteConfig),
    Answer(ConnId, String),
    SubscribeVideo(ConnId, Vec<OpenId>),
    /// The connection closed.
    Disconnect(ConnId),
    /// The quota decision for a room being created.
    Quota(RoomKey, QuotaAnswer),
    /// One open room, or None.
    Room(RoomKey, oneshot::Sender<Option<RoomSnapshot>>),
    /// A page of an app's open rooms: those after a groupId, at most this many, and
    /// whether more follow.
    Rooms(RoomPage, oneshot::Sender<(Vec<RoomSnapshot>, bool)>),
    /// Remove a member (it is told "kicked"); the reply says whether it was there.
    Kick(RoomKey, OpenId, oneshot::Sender<bool>),
    /// Mute a member's microphone on the server (true) or allow it again (false); the reply
    /// says whether anything changed.
    ServerMute(
        RoomKey,
        OpenId,
        bool,
        oneshot::Sender<Result<bool, ServerMuteError>>,
    ),
    /// The store confirmed a new room's quota unit (`Output::ConfirmRoomQuota`).
    RoomConfirmed(RoomKey),
    /// Close an open room; the reply names the members interrupted (None: no such room).
    Close(RoomKey, oneshot::Sender<Option<Vec<OpenId>>>),
    /// Another node holds this open room now (the cluster's heartbeat found its claim
    /// taken): end it here with -11008, so that its members join again and land there.
    RoomMoved(RoomKey),
    /// Whether this shard's engine knows the connection (it is in a room here or joining
    /// one): a join for a room of another shard is refused (-1) while it does.
    Holds(ConnId, oneshot::Sender<bool>),
}

/// Which of an app's rooms `Command::Rooms` asks for.
#[derive(Debug)]
pub struct RoomPage {
    pub app_id: AppId,
    pub after: Option<GroupId>,
    pub limit: usize,
}

/// The quota settings the media task needs to ask the store.
#[derive(Clone)]
pub struct QuotaPolicy {
    pub store: Arc<dyn Store>,
    /// The limit of an app that has no `dailyRoomQuota` of its own.
    pub daily_limit: u64,
    pub utc_offset_secs: i64,
    /// Told when a join is refused for the quota (`quota_exhausted`).
    pub webhooks: webhooks::Sink,
    /// Grants are reservations until the room's first member is admitted (crate::quota).
    pub reservations: Arc<crate::quota::Reservations>,
    /// Several nodes: the room directory is told which rooms are open (crate::cluster).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl QuotaPolicy {
    /// Takes one unit of the app's quota for today, under the app's own limit if it has
    /// one (read now, so a changed setting applies to the next room). Blocking.
    fn take(&self, key: &RoomKey) -> QuotaAnswer {
        let app_id = &key.app_id;
        let day = clock::day_key(clock::unix_now(), self.utc_offset_secs);
        let decision = self.store.app(app_id).and_then(|app| {
            let limit = app
                .and_then(|a| a.settings.daily_room_quota)
                .unwrap_or(self.daily_limit);
            self.reservations
                .reserve(key, &day, limit)
                .map(|d| (d, limit))
        });
        match decision {
            Ok((d, _)) if d.granted => QuotaAnswer::Granted,
            Ok((d, limit)) => {
                self.webhooks
                    .quota_exhausted(app_id, &key.group_id, &day, limit, d.used);
                QuotaAnswer::Exhausted
            }
            Err(e) => {
                warn!(app = %app_id, "quota store error: {e}");
                QuotaAnswer::Failed(e.to_string())
            }
        }
    }
}

/// Runs shard `shard` until `shutdown` turns true; then interrupts every member and returns.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    shard: usize,
    engine: Engine,
    socket: UdpSocket,
    tcp: TcpMedia,
    mut commands: mpsc::UnboundedReceiver<Command>,
    command_tx: mpsc::UnboundedSender<Command>,
    quota: QuotaPolicy,
    admission: Admission,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let mut task = Task {
        engine,
        socket,
        tcp,
        outboxes: HashMap::new(),
        nonces: SpentNonces::default(),
        command_tx,
        webhooks: quota.webhooks.clone(),
        quota,
        metrics,
        admission,
        load: LoadMeter::default(),
        out: SendBatch::default(),
    };
    let mut sync = EngineSync::new(shard);
    // When the task last woke from its wait: from then until it waits again is work (the
    // busy ratio and admission control), the wait itself is not.
    let mut woke: Option<Instant> = None;
    let mut buf = vec![0u8; MAX_PACKET];
    // One timer for the task's life, moved only when the engine's deadline moves: a new
    // `sleep_until` per wake-up would register with tokio's timer wheel every time.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now().into()));
    loop {
        let deadline = task.flush().await;
        let wake_at = tokio::time::Instant::from_std(deadline);
        if timer.deadline() != wake_at {
            timer.as_mut().reset(wake_at);
        }
        // Work ends here: the wake-up's input handled, its output sent.
        let idle_from = Instant::now();
        if let Some(w) = woke {
            let busy = idle_from.saturating_duration_since(w);
            sync.busy(busy);
            let c = task.engine.counters();
            let copies = c.forwarded_audio_packets + c.forwarded_video_packets;
            task.load.record(idle_from, busy, copies);
        }
        // The select only says what woke the task; the work is done after it, so that it
        // is measured as work.
        let wake = tokio::select! {
            biased;
            _ = shutdown.changed() => Wake::Shutdown,
            cmd = commands.recv() => match cmd {
                Some(cmd) => Wake::Command(cmd),
                None => break,
            },
            received = task.socket.recv_from(&mut buf) => Wake::Datagram(received),
            (source, packet) = task.tcp.next() => Wake::Tcp(source, packet),
            _ = &mut timer => Wake::Timer,
        };
        let now = Instant::now();
        woke = Some(now);
        match wake {
            Wake::Shutdown => {
                if *shutdown.borrow() {
                    break;
                }
            }
            Wake::Command(cmd) => task.apply(cmd),
            Wake::Datagram(Ok((n, source))) => {
                task.datagram(source, &buf[..n]);
                // Others may be waiting: take them without going back to the wait, each
                // one's copies sent before the next is read (so a copy never waits for
                // later datagrams), at most a batch so that commands and timeouts are not
                // kept waiting.
                for _ in 1..RECV_BATCH {
                    task.flush().await;
                    match task.socket.try_recv_from(&mut buf) {
                        Ok((n, source)) => task.datagram(source, &buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            // ICMP errors from a gone peer surface here on Linux; they are not fatal.
            Wake::Datagram(Err(e)) => debug!("udp receive: {e}"),
            Wake::Tcp(source, packet) => {
                task.engine
                    .handle_tcp_frame(Instant::now(), source, &packet);
            }
            Wake::Timer => {}
        }
        let now = Instant::now();
        if now >= deadline {
            task.engine.handle_timeout(now);
        }
        let engine = &task.engine;
        task.tcp
            .sweep(now, |peer| engine.knows_source(Protocol::Tcp, peer));
        if sync.due(now) {
            let e = &task.engine;
            sync.sync(
                &task.metrics,
                now,
                e.counters(),
                e.room_count(),
                e.member_count(),
            );
        }
    }
    // Joins that reached the queue but not the engine are refused as the engine refuses
    // those still waiting for their room; everything else queued no longer matters.
    commands.close();
    while let Ok(cmd) = commands.try_recv() {
        match cmd {
            Command::Connect(conn, outbox) => {
                task.outboxes.insert(conn, outbox);
            }
            Command::Join(conn, req, _) => {
                task.nonces.push(conn, &req);
                let refusal = ServerMsg::join_failed(&Failure::new(ErrorCode::ServerShutdown));
                task.deliver(conn, refusal);
            }
            _ => {}
        }
    }
    task.engine.handle_shutdown(Instant::now());
    task.flush().await;
    info!(shard, "media task stopped");
}

/// Sends `msg` to its connection; a refused join gives its nonce back first.
fn deliver(
    outboxes: &HashMap<ConnId, Outbox>,
    nonces: &mut SpentNonces,
    store: &Arc<dyn Store>,
    conn: ConnId,
    msg: ServerMsg,
) {
    if let ServerMsg::JoinResult { status, .. } = &msg {
        match nonces.take(conn, status) {
            Some((app, user, nonce)) if !status.is_ok() => give_back_nonce(store, app, user, nonce),
            _ => {}
        }
    }
    if let Some(outbox) = outboxes.get(&conn) {
        let _ = outbox.send(msg);
    }
}

/// A refused join leaves no trace: its nonce is given back to the store (on a blocking
/// thread, so the caller never waits for the store).
pub(crate) fn give_back_nonce(store: &Arc<dyn Store>, app: AppId, user: OpenId, nonce: String) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.release_nonce(&app, &user, &nonce) {
            warn!("releasing the nonce of a refused join: {e}");
        }
    });
}

/// What woke the media task from its wait.
enum Wake {
    Shutdown,
    Command(Command),
    Datagram(std::io::Result<(usize, std::net::SocketAddr)>),
    Tcp(std::net::SocketAddr, Vec<u8>),
    Timer,
}

/// What the media task owns: the engine, the socket, and where the engine's output goes.
struct Task {
    engine: Engine,
    socket: UdpSocket,
    tcp: TcpMedia,
    outboxes: HashMap<ConnId, Outbox>,
    nonces: SpentNonces,
    /// To post the store's quota answers back to this task.
    command_tx: mpsc::UnboundedSender<Command>,
    quota: QuotaPolicy,
    metrics: Arc<Metrics>,
    /// Where room and member events go for the apps' webhooks (never blocks).
    webhooks: webhooks::Sink,
    /// Refuses joins while `load` is too high.
    admission: Admission,
    load: LoadMeter,
    /// The datagrams of one drain of the engine, sent together.
    out: SendBatch,
}

/// Nonces of joins the engine has not answered yet, per connection in arrival order: a join
/// the engine refuses gives its nonce back, so a refused join leaves no trace.
#[derive(Default)]
struct SpentNonces(HashMap<ConnId, Vec<(AppId, OpenId, String)>>);

impl SpentNonces {
    fn push(&mut self, conn: ConnId, req: &JoinRequest) {
        let entry = (
            req.app_id.clone(),
            req.open_id.clone(),
            req.nonce_str.clone(),
        );
        self.0.entry(conn).or_default().push(entry);
    }

    /// The nonce a join result answers: -1 is the immediate answer to the newest join,
    /// every other result answers the oldest one still open.
    fn take(&mut self, conn: ConnId, status: &Status) -> Option<(AppId, OpenId, String)> {
        let list = self.0.get_mut(&conn)?;
        let item = if status.code() == Some(ErrorCode::AlreadyInRoom) {
            list.pop()
        } else if list.is_empty() {
            None
        } else {
            Some(list.remove(0))
        };
        if list.is_empty() {
            self.0.remove(&conn);
        }
        item
    }
}

impl Task {
    fn deliver(&mut self, conn: ConnId, msg: ServerMsg) {
        deliver(
            &self.outboxes,
            &mut self.nonces,
            &self.quota.store,
            conn,
            msg,
        );
    }

    /// One UDP datagram into the engine (its copies are then in the engine's output).
    fn datagram(&mut self, source: std::net::SocketAddr, bytes: &[u8]) {
        self.metrics.datagram_in(bytes.len());
        self.engine.handle_datagram(Instant::now(), source, bytes);
    }

    fn apply(&mut self, cmd: Command) {
        if let Command::Join(conn, req, policy) = &cmd {
            let key = RoomKey::new(req.app_id.clone(), req.group_id.clone());
            let others = self.engine.room_size(&key);
            let copies = crate::media_load::join_copies_per_sec(req.room_type, others);
            // A join the engine refuses as room full (-10008) adds no load: that answer
            // stands whatever the load.
            let full = others >= policy.room_cap;
            if !full && !self.admission.admits(&self.load, copies) {
                info!(
                    share = ?self.load.busy_share(),
                    projected = self.load.projected_share(),
                    "join refused: the media task is at capacity"
                );
                self.nonces.push(*conn, req);
                let refusal = ServerMsg::join_failed(&Failure::new(ErrorCode::MediaOverloaded));
                self.deliver(*conn, refusal);
                return;
            }
            debug!(
                share = ?self.load.busy_share(),
                projected = self.load.projected_share(),
                cost_ns = self.load.cost_per_copy().as_nanos() as u64,
                copies,
                "join admitted by the load"
            );
            if !full {
                self.load.admitted(Instant::now(), copies);
            }
        }
        let Task {
            engine,
            outboxes,
            nonces,
            ..
        } = self;
        let now = Instant::now();
        match cmd {
            Command::Connect(conn, outbox) => {
                outboxes.insert(conn, outbox);
            }
            Command::Join(conn, req, policy) => {
                nonces.push(conn, &req);
                engine.handle_join_with(now, conn, *req, policy)
            }
            Command::Exit(conn) => engine.handle_exit(now, conn),
            Command::Mute(conn, mute) => engine.handle_mute(now, conn, mute),
            Command::Answer(conn, sdp) => engine.handle_answer(now, conn, &sdp),
            Command::SubscribeVideo(conn, list) => engine.handle_subscribe_video(now, conn, list),
            Command::Disconnect(conn) => {
                engine.handle_disconnect(now, conn);
                outboxes.remove(&conn);
            }
            Command::Quota(key, answer) => engine.handle_room_quota(now, &key, answer),
            Command::RoomConfirmed(key) => engine.handle_room_confirmed(&key),
            Command::Room(key, reply) => {
                let _ = reply.send(engine.room(&key));
            }
            Command::Rooms(page, reply) => {
                let rooms = engine.rooms_of_app(&page.app_id, page.after.as_ref(), page.limit);
                let _ = reply.send(rooms);
            }
            Command::Kick(key, open_id, reply) => {
                let _ = reply.send(engine.kick(now, &key, &open_id));
            }
            Command::ServerMute(key, open_id, muted, reply) => {
                let _ = reply.send(engine.server_mute(&key, &open_id, muted));
            }
            Command::Close(key, reply) => {
                let _ = reply.send(engine.close_room(now, &key));
            }
            Command::RoomMoved(key) => {
                engine.room_moved(now, &key);
            }
            Command::Holds(conn, reply) => {
                let _ = reply.send(engine.knows_conn(conn));
            }
        }
    }

    /// Drains the engine's output; returns when it wants to be woken next.
    async fn flush(&mut self) -> Instant {
        let Task {
            engine,
            socket,
            tcp,
            outboxes,
            nonces,
            command_tx,
            quota,
            metrics,
            webhooks,
            out,
            ..
        } = self;
        loop {
            let output = engine.poll_output();
            // UDP datagrams wait for the next output that is not one (or a full batch), so
            // that the copies of a packet leave in one system call, still in this drain.
            if let Output::Transmit(t) = output {
                if t.proto != Protocol::Tcp {
                    out.push(t.destination, t.contents.into());
                    if out.is_full() {
                        send(out, socket, metrics).await;
                    }
                    continue;
                }
                tcp.send(t.destination, &t.contents);
                continue;
            }
            send(out, socket, metrics).await;
            match output {
                Output::Transmit(_) => {}
                Output::Signal(conn, msg) => deliver(outboxes, nonces, &quota.store, conn, msg),
                Output::NeedRoomQuota(key) => {
                    let quota = quota.clone();
                    let tx = command_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let answer = quota.take(&key);
                        let _ = tx.send(Command::Quota(key, answer));
                    });
                }
                Output::ConfirmRoomQuota(key, held) => {
                    // The joinResults go out from the confirming thread right after the
                    // commit (crate::quota); the engine holds what follows until told.
                    let batch: Vec<(Outbox, ServerMsg)> = held
                        .into_iter()
                        .filter_map(|(conn, msg)| {
                            if let ServerMsg::JoinResult { status, .. } = &msg {
                                nonces.take(conn, status);
                            }
                            outboxes.get(&conn).map(|o| (o.clone(), msg))
                        })
                        .collect();
                    let tx = command_tx.clone();
                    quota.reservations.confirm(&key, batch, move |k| {
                        let _ = tx.send(Command::RoomConfirmed(k));
                    });
                }
                Output::ReleaseRoomQuota(key) => quota.reservations.release(&key),
                Output::RoomOpened(key, room_type) => {
                    if let Some(c) = &quota.cluster {
                        c.room_opened(&key);
                    }
                    metrics.rooms_created.inc();
                    info!(room = %key, "room opened");
                    webhooks.emit(Event::RoomStarted(key, room_type));
                }
                Output::RoomClosed(key, room_type) => {
                    if let Some(c) = &quota.cluster {
                        c.room_closed(&key);
                    }
                    info!(room = %key, "room closed");
                    webhooks.emit(Event::RoomFinished(key, room_type));
                }
                Output::MemberJoined(change) => webhooks.emit(Event::MemberJoined(change)),
                Output::MemberLeft(change, why) => webhooks.emit(Event::MemberLeft(change, why)),
                Output::Timeout(t) => return t,
            }
        }
    }
}

/// Sends the batched datagrams, counted in the metrics.
async fn send(out: &mut SendBatch, socket: &UdpSocket, metrics: &Metrics) {
    out.send(socket, |to, len, sent| match sent {
        Ok(()) => metrics.datagram_out(len),
        Err(e) => {
            metrics.send_error();
            debug!("udp send to {to}: {e}");
        }
    })
    .await;
}
