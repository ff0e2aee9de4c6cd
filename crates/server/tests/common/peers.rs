//! Rust client peers (real WebRTC over loopback) with their events recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use voipchat_client::{AudioSender, Client, ClientError, ClientEvent, JoinOptions};
use voipchat_proto::{AppId, OpenId, Secret};

use super::{data_dir, unix_now, TestServer};

/// A joined client whose events are collected in the background.
pub struct TestPeer {
    pub open_id: String,
    pub sender: AudioSender,
    pub events: Arc<Mutex<Vec<ClientEvent>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Client>>,
}

/// An Opus-shaped payload naming its sender and sequence number.
pub fn payload(sender: u8, seq: u32) -> Vec<u8> {
    let mut v = vec![0x78, sender];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend(std::iter::repeat_n(0x5A, 60));
    v
}

impl TestPeer {
    pub async fn join(
        server: &TestServer,
        app: &AppId,
        secret: &Secret,
        open_id: &str,
        group: &str,
    ) -> Result<TestPeer, ClientError> {
        let key = server.session_key(app, secret, open_id).await;
        Self::join_with_key(server, app, &key, open_id, group).await
    }

    pub async fn join_with_key(
        server: &TestServer,
        app: &AppId,
        key: &Secret,
        open_id: &str,
        group: &str,
    ) -> Result<TestPeer, ClientError> {
        Self::join_with(server, app, key, open_id, group, |_| {}).await
    }

    /// A member of a video room: microphone and camera.
    pub async fn join_video(
        server: &TestServer,
        app: &AppId,
        secret: &Secret,
        open_id: &str,
        group: &str,
    ) -> TestPeer {
        let key = server.session_key(app, secret, open_id).await;
        Self::join_with(server, app, &key, open_id, group, |o| {
            o.room_type = voipchat_proto::RoomType::Video
        })
        .await
        .unwrap_or_else(|e| panic!("{open_id} joins video room {group}: {e}"))
    }

    pub async fn join_with(
        server: &TestServer,
        app: &AppId,
        key: &Secret,
        open_id: &str,
        group: &str,
        tweak: impl FnOnce(&mut JoinOptions),
    ) -> Result<TestPeer, ClientError> {
        let mut opts = JoinOptions::signed(
            server.ws_url(),
            app.clone(),
            open_id,
            group,
            key,
            unix_now(),
        );
        tweak(&mut opts);
        Self::from_join(opts, open_id).await
    }

    /// Joins with `opts` as they are (any server URL; redirects are followed).
    pub async fn from_join(opts: JoinOptions, open_id: &str) -> Result<TestPeer, ClientError> {
        let (mut client, _list) = Client::join(opts).await?;
        let sender = client.audio_sender();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = client.next_event() => match ev {
                        Some(ev) => sink.lock().unwrap().push(ev),
                        None => break,
                    },
                    _ = &mut stopped => break,
                }
            }
            client
        });
        Ok(TestPeer {
            open_id: open_id.to_string(),
            sender,
            events,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub async fn wait_connected(&self) {
        self.sender
            .wait_connected(Duration::from_secs(10))
            .await
            .expect("ICE and DTLS up within 10 s");
    }

    pub fn send(&self, sender_idx: u8, seq: u32) {
        self.sender
            .send_opus(
                payload(sender_idx, seq),
                Duration::from_millis(20),
                Some((30, true)),
            )
            .expect("send");
    }

    /// Payloads received from `from`, in arrival order.
    pub fn audio_from(&self, from: &str) -> Vec<Vec<u8>> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Audio {
                    from: Some(f),
                    payload,
                    ..
                } if f.as_str() == from => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn all_audio(&self) -> Vec<(Option<OpenId>, Vec<u8>)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Audio { from, payload, .. } => Some((from.clone(), payload.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn members_changed(&self) -> Vec<Vec<String>> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ClientEvent::MembersChanged(l) => Some(l.iter().map(|o| o.to_string()).collect()),
                _ => None,
            })
            .collect()
    }

    pub fn interrupted(&self) -> Option<i32> {
        self.events.lock().unwrap().iter().find_map(|e| match e {
            ClientEvent::Interrupted { err_code, .. } => Some(*err_code),
            _ => None,
        })
    }

    /// Waits (up to `limit`) until `pred` holds.
    pub async fn wait_until(&self, limit: Duration, pred: impl Fn() -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if pred() {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops collecting and gives the client back.
    pub async fn into_client(mut self) -> Client {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap().await.expect("collector task")
    }

    pub async fn exit(self) {
        self.into_client().await.exit().await.expect("exit");
    }
}

/// Sends numbered warm-up packets from every sender until each receiver has heard each
/// other sender once, so that slot negotiation is known to be complete.
pub async fn warm_up(peers: &[&TestPeer]) {
    warm_up_marked(peers, 100).await
}

/// `warm_up`, the warm-up packets marked `mark + index` in their second byte.
pub async fn warm_up_marked(peers: &[&TestPeer], mark: u8) {
    for p in peers {
        p.wait_connected().await;
    }
    for round in 0..250u32 {
        for (i, p) in peers.iter().enumerate() {
            p.send(mark + i as u8, round);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = peers.iter().all(|r| {
            peers
                .iter()
                .filter(|s| s.open_id != r.open_id)
                .all(|s| !r.audio_from(&s.open_id).is_empty())
        });
        if done {
            return;
        }
    }
    panic!("warm-up audio did not reach every member within 5 s");
}

/// A peer that must be admitted.
pub async fn peer(
    server: &TestServer,
    app: &AppId,
    secret: &Secret,
    open_id: &str,
    group: &str,
) -> TestPeer {
    TestPeer::join(server, app, secret, open_id, group)
        .await
        .unwrap_or_else(|e| panic!("{open_id} joins {group}: {e}"))
}

/// The usual start of a room test: a server on a fresh data dir (returned so it lives as
/// long as the test) with one VoIP-enabled app.
pub async fn setup(
    tweak: impl FnOnce(&mut voipchat_server::Config),
) -> (tempfile::TempDir, TestServer, AppId, Secret) {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), tweak).await;
    let (app, secret) = server.create_app(true);
    (dir, server, app, secret)
}
