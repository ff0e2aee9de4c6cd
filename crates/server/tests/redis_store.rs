//! `store = "redis://…"`: the real binary on a private redis-server (started here, on a free
//! port of 127.0.0.1, with an append-only file so it keeps its data across a restart). Apps
//! made by `voipchat app` land in Redis, joins work; with Redis stopped a join gets -1000
//! saying the store is unavailable, within the store's timeout (no hang); once Redis is back,
//! joins work again.

mod common;

use std::time::{Duration, Instant};

use common::binary::{cli, create_room, offer, serve, session_key};
use common::redis::Redis;
use voipchat_proto::{AppId, Secret, ServerMsg};

/// The next joinResult's errCode and errMsg on a fresh connection.
async fn join_failure(http: std::net::SocketAddr, app: &AppId, key: &Secret) -> (i32, String) {
    use futures_util::{SinkExt, StreamExt};
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .unwrap();
    let nonce = voipchat_client::random_nonce();
    let ts = common::unix_now();
    let sig = voipchat_auth::sign(app.as_str(), "r2", &nonce, ts, key);
    let frame = serde_json::json!({
        "type": "join", "appId": app, "openId": "alice", "groupId": "r2",
        "nonceStr": nonce, "timeStamp": ts, "signature": sig, "sdp": offer(),
    });
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        frame.to_string().into(),
    ))
    .await
    .unwrap();
    loop {
        let msg = ws.next().await.unwrap().unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            if let Ok(ServerMsg::JoinResult { status, .. }) = ServerMsg::parse(t.as_str()) {
                return (status.err_code, status.err_msg);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_on_redis_fail_clearly_while_it_is_down_and_work_again_after() {
    let dir = common::data_dir();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let mut redis = Redis::start_free(&redis_dir);
    let port = redis.port;
    let config = dir.path().join("voipchat.toml");
    std::fs::write(
        &config,
        format!("store = \"redis://127.0.0.1:{port}/0\"\ndemo = false\n"),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let created: serde_json::Value = serde_json::from_str(&cli(
        dir.path(),
        &["app", "--config", cfg, "create", "--name", "on redis"],
    ))
    .unwrap();
    let app = AppId::new(created["appId"].as_str().unwrap());
    let secret = Secret::new(created["appSecret"].as_str().unwrap());
    cli(
        dir.path(),
        &["app", "--config", cfg, "enable-voip", app.as_str()],
    );
    assert!(
        !std::path::Path::new(&dir.path().join("voipchat.sqlite3")).exists(),
        "no SQLite file: the app is in Redis"
    );

    let (mut server, http, _) = serve(dir.path(), &["--config", cfg]).await;
    let key = session_key(http, &app, &secret, "alice").await;
    assert_eq!(
        create_room(http, app.clone(), "alice".into(), key.clone(), offer()).await,
        Some(0)
    );

    redis.stop();
    let started = Instant::now();
    let (code, msg) = join_failure(http, &app, &key).await;
    let took = started.elapsed();
    eprintln!("join with Redis down: {code} {msg:?} after {took:?}");
    assert_eq!(code, -1000);
    assert!(msg.contains("the store is unavailable"), "{msg}");
    assert!(took < Duration::from_secs(5), "no hang: {took:?}");
    let (status, body) = common::http_request(http, "GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{body}");

    let mut redis = Redis::start(&redis.dir.clone(), redis.port);
    let key = session_key(http, &app, &secret, "alice").await;
    assert_eq!(
        create_room(http, app.clone(), "alice".into(), key, offer()).await,
        Some(0),
        "joins work again once Redis is back"
    );
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    redis.stop();
}
