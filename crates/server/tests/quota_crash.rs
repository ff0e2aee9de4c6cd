//! The room quota is exact across a crash: the real binary, 50 real signaling clients each
//! creating its own room at once, `kill -9` while they do, a restart, and then the quota
//! count equals the rooms whose creating member got joinResult 0: never fewer, and more
//! only by a room confirmed in the instant before the kill (see the assertions). Units
//! reserved for rooms not yet admitted are given back at the start.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use voipchat_proto::{AppId, Secret, ServerMsg};

const ROOMS: usize = 50;

/// Runs `voipchat` with `args` in `dir`; returns its stdout (it must succeed).
fn cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("VOIPCHAT_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Starts `voipchat serve` on ephemeral ports; returns the child, its HTTP address and
/// the stderr lines up to "voipchat serving".
async fn serve(dir: &std::path::Path) -> (tokio::process::Child, std::net::SocketAddr, Vec<String>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args(["--data-dir", dir.to_str().unwrap(), "serve"])
        .args(["--http-addr", "127.0.0.1:0", "--media-addr", "127.0.0.1:0"])
        .args(["--daily-room-quota", "1000", "--no-demo"])
        .env("RUST_LOG", "info")
        .env_remove("VOIPCHAT_CONFIG")
        .env_remove("VOIPCHAT_SECRETS_KEY")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("server starts")
            .unwrap()
            .unwrap_or_else(|| panic!("server exited: {seen:#?}"));
        seen.push(common::plain(&line));
        if line.contains("voipchat serving") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let line = seen.last().unwrap().clone();
    let http = line
        .split("http=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    (child, http, seen)
}

async fn session_key(http: std::net::SocketAddr, app: &AppId, secret: &Secret, user: &str) -> Secret {
    let (status, body) = common::http_request(
        http,
        "POST",
        "/api/v1/session-key",
        Some((app.to_string(), secret.expose().to_string())),
        Some(&serde_json::json!({ "openId": user }).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    Secret::new(v["sessionKey"].as_str().unwrap())
}

async fn rooms_created(http: std::net::SocketAddr, app: &AppId, secret: &Secret) -> u64 {
    let (status, body) = common::http_request(
        http,
        "GET",
        "/api/v1/quota",
        Some((app.to_string(), secret.expose().to_string())),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["roomsCreated"].as_u64().unwrap()
}

/// A real offer (one sendonly audio m-line), as the Rust client makes it.
fn offer() -> String {
    let mut rtc = str0m::Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(
        str0m::Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap(),
    );
    let mut change = rtc.sdp_api();
    change.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

/// One client: connects, sends its signed join for its own room and waits for the
/// joinResult. Returns its errCode, or None if the server died first.
async fn create_room(
    http: std::net::SocketAddr,
    app: AppId,
    user: String,
    key: Secret,
    sdp: String,
) -> Option<i32> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await.ok()?;
    let nonce = voipchat_client::random_nonce();
    let ts = common::unix_now();
    let group = format!("room-{user}");
    let signature = voipchat_auth::sign(app.as_str(), &group, &nonce, ts, &key);
    let frame = serde_json::json!({
        "type": "join", "appId": app, "openId": user, "groupId": group,
        "nonceStr": nonce, "timeStamp": ts, "signature": signature, "sdp": sdp,
    });
    ws.send(Message::Text(frame.to_string().into())).await.ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await.ok()? {
            None | Some(Err(_)) => return None,
            Some(Ok(m)) => m,
        };
        if let Message::Text(t) = msg {
            if let Ok(ServerMsg::JoinResult { status, .. }) = ServerMsg::parse(t.as_str()) {
                return Some(status.err_code);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_count_equals_rooms_told_after_kill_9_during_creations() {
    let dir = common::data_dir();
    let created: serde_json::Value =
        serde_json::from_str(&cli(dir.path(), &["app", "create", "--name", "crash"])).unwrap();
    let app = AppId::new(created["appId"].as_str().unwrap());
    let secret = Secret::new(created["appSecret"].as_str().unwrap());
    cli(dir.path(), &["app", "enable-voip", app.as_str()]);

    let (mut server, http, _) = serve(dir.path()).await;
    let mut keys = Vec::new();
    for i in 0..ROOMS {
        keys.push(session_key(http, &app, &secret, &format!("u{i}")).await);
    }
    let offers: Vec<String> = (0..ROOMS).map(|_| offer()).collect();

    // 50 creations at once; kill -9 as soon as the 10th creator is told it joined, while
    // the others are somewhere between their join and their joinResult.
    let told = Arc::new(AtomicU64::new(0));
    let tenth = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for (i, (key, sdp)) in keys.into_iter().zip(offers).enumerate() {
        let (app, told, tenth) = (app.clone(), told.clone(), tenth.clone());
        tasks.push(tokio::spawn(async move {
            let code = create_room(http, app, format!("u{i}"), key, sdp).await;
            if code == Some(0) && told.fetch_add(1, Ordering::SeqCst) + 1 == 10 {
                tenth.notify_one();
            }
            code
        }));
    }
    tokio::time::timeout(Duration::from_secs(30), tenth.notified())
        .await
        .expect("10 rooms created within 30 s");
    server.start_kill().expect("kill -9");
    server.wait().await.unwrap();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let told = told.load(Ordering::SeqCst);
    let answered_other = codes.iter().filter(|c| matches!(c, Some(c) if *c != 0)).count();
    let unanswered = codes.iter().filter(|c| c.is_none()).count();

    // What the crash left in the file: every unit granted, confirmed or not.
    let granted = {
        let store = voipchat_store::SqliteStore::open(&dir.path().join("voipchat.sqlite3")).unwrap();
        let day = voipchat_server::clock::day_key(common::unix_now(), 0);
        voipchat_store::Store::rooms_created(&store, &app, &day).unwrap()
    };

    let (mut server, http, log) = serve(dir.path()).await;
    let counted = rooms_created(http, &app, &secret).await;
    eprintln!(
        "quota after kill -9: {ROOMS} creations, told joinResult 0: {told}, other answers: \
         {answered_other}, no answer: {unanswered}; units in the file after the crash \
         (granted): {granted}; counted after restart: {counted}"
    );
    assert_eq!(answered_other, 0, "no creation was refused: {codes:?}");
    // No client is told of a room that is not counted: the unit is confirmed before the
    // joinResult leaves. The other way, a room confirmed in the instant before the kill whose
    // joinResult was still between the commit and the socket is counted without its client
    // having heard of it: a commit and a socket write cannot be one atomic step. That window
    // is a channel send and a task wake-up long (docs/security.md, "Room quota and
    // crashes"); every unit reserved for a room not yet admitted is given back.
    assert!(counted >= told, "a room a client was told of is not counted");
    assert!(
        counted <= told + 2,
        "only rooms confirmed in the last instant before the kill may be counted untold"
    );
    assert!(granted >= told);
    if granted > counted {
        let released = granted - counted;
        assert!(
            log.iter().any(|l| l.contains("gave back room reservations")
                && l.contains(&format!("released={released}"))),
            "the start says it gave back {released}: {log:#?}"
        );
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();
}
