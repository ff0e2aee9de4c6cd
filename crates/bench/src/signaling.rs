//! The members' signaling, on one thread of its own (a tokio runtime) so that WebSocket
//! frames never cost the media threads anything. Each room joins its members one after the
//! other, each once the previous one is connected, so that every joiner but the first
//! finds others already talking: that is what "join → first remote audio" measures.
//! Rooms join in parallel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use voipchat_proto::{
    AppId, ClientMsg, GroupId, JoinRequest, MuteConfig, OpenId, RoomType, ServerMsg,
};

use crate::http::Backend;
use crate::peer::{FromSignal, Member, ToSignal};
use crate::sys::EventFd;

/// How long one member may take from its session key to ICE and DTLS up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The way to one media thread: its queue and the eventfd that wakes it.
#[derive(Clone)]
pub struct MediaLink {
    pub tx: Sender<(usize, FromSignal)>,
    pub wake: Arc<EventFd>,
}

impl MediaLink {
    pub fn send(&self, index: usize, msg: FromSignal) {
        if self.tx.send((index, msg)).is_ok() {
            self.wake.wake();
        }
    }
}

/// One member's signaling: its join offer and where its session lives.
pub struct MemberSignal {
    pub member: Member,
    pub offer: String,
    pub link: MediaLink,
    /// The member's index in its media thread.
    pub index: usize,
    pub from_media: UnboundedReceiver<ToSignal>,
}

/// Failures of members after they joined (interrupted, a refused offer, a closed socket).
pub type LateErrors = Arc<Mutex<Vec<String>>>;

/// The code the server refuses a join with while its media engine is at capacity.
pub const AT_CAPACITY: i32 = -13001;

/// A member refused as at capacity tries again after this long (as a client told "try again
/// later" would), for at most `RETRY_FOR` after the run's first join.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// How the joins of a run went, when none failed.
#[derive(Debug, Default)]
pub struct Joined {
    /// Members still refused as at capacity when `RETRY_FOR` ran out (`--overload` only:
    /// otherwise that is a failure). Their rooms go on with the members admitted before;
    /// the members after them do not try.
    pub refused: Vec<String>,
    /// Every -13001 answer, the retried ones included.
    pub refusals: u64,
}

/// Why a member did not get connected.
enum JoinError {
    /// The server answered the join with this code.
    Refused(i32, String),
    Other(String),
}

impl From<String> for JoinError {
    fn from(e: String) -> JoinError {
        JoinError::Other(e)
    }
}

impl From<&str> for JoinError {
    fn from(e: &str) -> JoinError {
        JoinError::Other(e.to_string())
    }
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Refused(code, msg) => write!(f, "join refused: {msg} ({code})"),
            JoinError::Other(e) => f.write_str(e),
        }
    }
}

/// How a run's members join: the rooms' type, and whether a refusal as at capacity that
/// outlasts its retries ends the room's joins and is counted (`--overload`) or fails the run.
#[derive(Clone, Copy, Debug)]
pub struct JoinHow {
    pub room_type: RoomType,
    pub overload: bool,
}

/// Starts the signaling thread. `joined` gets the join outcome of all rooms once known (the
/// failures, if any); the thread then keeps serving offers until `stop` turns true.
pub fn spawn(
    backend: Backend,
    group_prefix: String,
    rooms: Vec<Vec<MemberSignal>>,
    how: JoinHow,
    joined: Sender<Result<Joined, Vec<String>>>,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    thread("signaling", async move {
        let mut tasks = Vec::new();
        let refusals = Arc::new(AtomicU64::new(0));
        let retry = Retry {
            until: Instant::now() + RETRY_FOR,
            refusals: refusals.clone(),
            room_type: how.room_type,
        };
        for (r, members) in rooms.into_iter().enumerate() {
            let group = format!("{group_prefix}-r{r}");
            tasks.push(tokio::spawn(join_room(
                backend.clone(),
                group,
                members,
                retry.clone(),
                how.overload,
                stop.clone(),
                late.clone(),
            )));
        }
        let mut failures = Vec::new();
        let mut outcome = Joined::default();
        for t in tasks {
            match t.await {
                Ok(Ok(Some(refused))) => outcome.refused.push(refused),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("a room task failed: {e}")),
            }
        }
        outcome.refusals = refusals.load(Ordering::Relaxed);
        let ok = failures.is_empty();
        let _ = joined.send(if ok { Ok(outcome) } else { Err(failures) });
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
        // Give the member tasks a moment to close their WebSockets.
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
}

/// Runs `work` on a thread of its own, on a current-thread tokio runtime: signaling never
/// shares a thread with the media it drives.
pub fn thread(
    name: &str,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || rt.block_on(work))
}

/// Joins refused as at capacity are tried again until `until`, and counted.
#[derive(Clone)]
struct Retry {
    until: Instant,
    refusals: Arc<AtomicU64>,
    /// The run's rooms are of this type (`--video`); carried with the joins' other settings.
    room_type: RoomType,
}

/// Joins a room's members one by one, each after the previous one is connected. With
/// `overload`, a join still refused as at capacity when the retries ran out ends the room's
/// joins: Ok(Some(who)).
async fn join_room(
    backend: Backend,
    group: String,
    members: Vec<MemberSignal>,
    retry: Retry,
    overload: bool,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) -> Result<Option<String>, String> {
    for m in members {
        let who = m.member.open_id();
        let (tx, rx) = oneshot::channel();
        // Retries get their time on top of a join's own.
        let timeout = JOIN_TIMEOUT + retry.until.saturating_duration_since(Instant::now());
        tokio::spawn(member_task(
            backend.clone(),
            group.clone(),
            m,
            tx,
            retry.clone(),
            stop.clone(),
            late.clone(),
        ));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(JoinError::Refused(AT_CAPACITY, _)))) if overload => {
                return Ok(Some(format!("{who} in {group}")))
            }
            Ok(Ok(Err(e))) => return Err(format!("{who} in {group}: {e}")),
            Ok(Err(_)) => return Err(format!("{who} in {group}: its task ended")),
            Err(_) => {
                return Err(format!(
                    "{who} in {group}: not connected (ICE + DTLS) within {} s",
                    timeout.as_secs()
                ))
            }
        }
    }
    Ok(None)
}

async fn member_task(
    backend: Backend,
    group: String,
    mut m: MemberSignal,
    connected: oneshot::Sender<Result<(), JoinError>>,
    retry: Retry,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) {
    let who = m.member.open_id();
    let mut connected = Some(connected);
    let result = loop {
        let result = member_run(
            &backend,
            &group,
            retry.room_type,
            &mut m,
            &mut connected,
            stop.clone(),
        )
        .await;
        match &result {
            Err(JoinError::Refused(AT_CAPACITY, _)) => {
                retry.refusals.fetch_add(1, Ordering::Relaxed);
                if Instant::now() + RETRY_AFTER >= retry.until {
                    break result;
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
            _ => break result,
        }
    };
    if let Err(e) = result {
        match connected.take() {
            Some(tx) => {
                let _ = tx.send(Err(e));
            }
            None => {
                if let Ok(mut l) = late.lock() {
                    l.push(format!("{who} in {group}: {e}"));
                }
            }
        }
    }
}

async fn member_run(
    backend: &Backend,
    group: &str,
    room_type: RoomType,
    m: &mut MemberSignal,
    connected: &mut Option<oneshot::Sender<Result<(), JoinError>>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), JoinError> {
    let open_id = m.member.open_id();
    let signed = backend
        .sign_join(&open_id, group)
        .await
        .map_err(|e| JoinError::Other(e.to_string()))?;
    let url = format!("ws://{}/ws", backend.http);
    // Nagle off, as browsers have it for their WebSockets.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, None, true)
        .await
        .map_err(|e| format!("websocket {url}: {e}"))?;
    let join = ClientMsg::Join(JoinRequest {
        app_id: AppId::new(backend.app_id.as_str()),
        open_id: OpenId::new(open_id.as_str()),
        group_id: GroupId::new(group),
        nonce_str: signed.nonce_str,
        time_stamp: signed.time_stamp,
        signature: signed.signature,
        room_type,
        mute_config: MuteConfig::default(),
        // Kept: a join the server refused is sent again with the same offer.
        sdp: m.offer.clone(),
    });
    let join_sent = Instant::now();
    ws.send(Message::text(join.to_json()))
        .await
        .map_err(|e| format!("sending join: {e}"))?;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => {
                        return Err("the server closed the WebSocket".into());
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("websocket: {e}").into()),
                };
                let msg = ServerMsg::parse(text.as_str())
                    .map_err(|e| format!("a server frame does not parse: {}", e.detail))?;
                match msg {
                    ServerMsg::JoinResult { status, sdp, .. } => {
                        if !status.is_ok() {
                            return Err(JoinError::Refused(status.err_code, status.err_msg));
                        }
                        let sdp = sdp.ok_or("joinResult ok without an sdp answer")?;
                        let answered = Instant::now();
                        m.link.send(m.index, FromSignal::Joined { sdp, join_sent, answered });
                    }
                    ServerMsg::Offer { sdp, tracks } => {
                        m.link.send(m.index, FromSignal::Offer { sdp, tracks });
                    }
                    ServerMsg::Tracks { tracks } => m.link.send(m.index, FromSignal::Tracks(tracks)),
                    ServerMsg::Interrupted { status } => {
                        return Err(format!("interrupted: {} ({})", status.err_msg, status.err_code).into());
                    }
                    ServerMsg::Error { status } => {
                        return Err(format!("server error: {} ({})", status.err_msg, status.err_code).into());
                    }
                    _ => {}
                }
            }
            news = m.from_media.recv() => match news {
                Some(ToSignal::Answer(sdp)) => {
                    ws.send(Message::text(ClientMsg::Answer { sdp }.to_json()))
                        .await
                        .map_err(|e| format!("sending an answer: {e}"))?;
                }
                Some(ToSignal::Connected) => {
                    if let Some(tx) = connected.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Some(ToSignal::Failed(e)) => return Err(e.into()),
                // The media thread ended: the run is over.
                None => break,
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
