//! The members' signaling, on one thread of its own (a tokio runtime) so that WebSocket
//! frames never cost the media threads anything. Each room joins its members one after the
//! other, each once the previous one is connected, so that every joiner but the first
//! finds others already talking: that is what "join → first remote audio" measures.
//! Rooms join in parallel.

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
    fn send(&self, index: usize, msg: FromSignal) {
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

/// Starts the signaling thread. `joined` gets the join outcome of all rooms once known (the
/// failures, if any); the thread then keeps serving offers until `stop` turns true.
pub fn spawn(
    backend: Backend,
    group_prefix: String,
    rooms: Vec<Vec<MemberSignal>>,
    joined: Sender<Result<(), Vec<String>>>,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signaling".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (r, members) in rooms.into_iter().enumerate() {
                    let group = format!("{group_prefix}-r{r}");
                    tasks.push(tokio::spawn(join_room(
                        backend.clone(),
                        group,
                        members,
                        stop.clone(),
                        late.clone(),
                    )));
                }
                let mut failures = Vec::new();
                for t in tasks {
                    match t.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => failures.push(e),
                        Err(e) => failures.push(format!("a room task failed: {e}")),
                    }
                }
                let ok = failures.is_empty();
                let _ = joined.send(if ok { Ok(()) } else { Err(failures) });
                let mut stop = stop;
                let _ = stop.wait_for(|s| *s).await;
                // Give the member tasks a moment to close their WebSockets.
                tokio::time::sleep(Duration::from_millis(100)).await;
            })
        })
}

/// Joins a room's members one by one, each after the previous one is connected.
async fn join_room(
    backend: Backend,
    group: String,
    members: Vec<MemberSignal>,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) -> Result<(), String> {
    for m in members {
        let who = m.member.open_id();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(member_task(
            backend.clone(),
            group.clone(),
            m,
            tx,
            stop.clone(),
            late.clone(),
        ));
        match tokio::time::timeout(JOIN_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("{who} in {group}: {e}")),
            Ok(Err(_)) => return Err(format!("{who} in {group}: its task ended")),
            Err(_) => {
                return Err(format!(
                    "{who} in {group}: not connected (ICE + DTLS) within {} s",
                    JOIN_TIMEOUT.as_secs()
                ))
            }
        }
    }
    Ok(())
}

async fn member_task(
    backend: Backend,
    group: String,
    m: MemberSignal,
    connected: oneshot::Sender<Result<(), String>>,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) {
    let who = m.member.open_id();
    let mut connected = Some(connected);
    let result = member_run(&backend, &group, m, &mut connected, stop).await;
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
    mut m: MemberSignal,
    connected: &mut Option<oneshot::Sender<Result<(), String>>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let open_id = m.member.open_id();
    let signed = backend
        .sign_join(&open_id, group)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("ws://{}/ws", backend.http);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|e| format!("websocket {url}: {e}"))?;
    let join = ClientMsg::Join(JoinRequest {
        app_id: AppId::new(backend.app_id.as_str()),
        open_id: OpenId::new(open_id.as_str()),
        group_id: GroupId::new(group),
        nonce_str: signed.nonce_str,
        time_stamp: signed.time_stamp,
        signature: signed.signature,
        room_type: RoomType::Voice,
        mute_config: MuteConfig::default(),
        sdp: std::mem::take(&mut m.offer),
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
                    Some(Err(e)) => return Err(format!("websocket: {e}")),
                };
                let msg = ServerMsg::parse(text.as_str())
                    .map_err(|e| format!("a server frame does not parse: {}", e.detail))?;
                match msg {
                    ServerMsg::JoinResult { status, sdp, .. } => {
                        if !status.is_ok() {
                            return Err(format!("join refused: {} ({})", status.err_msg, status.err_code));
                        }
                        let sdp = sdp.ok_or("joinResult ok without an sdp answer")?;
                        m.link.send(m.index, FromSignal::Joined { sdp, join_sent });
                    }
                    ServerMsg::Offer { sdp, tracks } => {
                        m.link.send(m.index, FromSignal::Offer { sdp, tracks });
                    }
                    ServerMsg::Tracks { tracks } => m.link.send(m.index, FromSignal::Tracks(tracks)),
                    ServerMsg::Interrupted { status } => {
                        return Err(format!("interrupted: {} ({})", status.err_msg, status.err_code));
                    }
                    ServerMsg::Error { status } => {
                        return Err(format!("server error: {} ({})", status.err_msg, status.err_code));
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
                Some(ToSignal::Failed(e)) => return Err(e),
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
