//! The browser-facing routes of `web.rs`: the embedded SDK, demo mode (and that its signer
//! can never sign for another app), and the test hooks. Self-contained: a real server on
//! ephemeral ports, raw HTTP/1.1 and WebSocket clients.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use voipchat_proto::{AppId, OpenId, Secret};
use voipchat_server::web::DEMO_APP_ID;
use voipchat_server::{Config, Listeners};
use voipchat_store::{AppRecord, SqliteStore, Store};

struct Server {
    http: SocketAddr,
    config: Config,
    store: Arc<SqliteStore>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            media_addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        let store = Arc::new(SqliteStore::open(&config.sqlite_path()).unwrap());
        let listeners = Listeners::bind(&config).await.unwrap();
        let http = listeners.http.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let dyn_store: Arc<dyn Store> = store.clone();
        let cfg = config.clone();
        let task = tokio::spawn(async move {
            voipchat_server::run(listeners, cfg, dyn_store, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let server = Server {
            http,
            config,
            store,
            stop: Some(stop),
            task,
        };
        // The demo app is ensured before requests are served: after one, it is there.
        let (status, _, _) = server.request("GET", "/healthz", None).await;
        assert_eq!(status, 200);
        server
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }

    /// One request; returns status, content type and body.
    async fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
        let mut s = TcpStream::connect(self.http).await.unwrap();
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.http,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&resp).to_string();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        assert!(
            !head.to_ascii_lowercase().contains("chunked"),
            "bodies here have a length"
        );
        (status, content_type, body.to_string())
    }

    async fn ws(&self, query: &str) -> Ws {
        let url = format!("ws://{}/ws{query}", self.http);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        // Every connection starts with the server's hello (no TURN configured here).
        let hello = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            hello,
            Message::Text(r#"{"type":"hello","iceServers":[]}"#.into())
        );
        ws
    }

    fn create_app(&self) -> AppId {
        let app = AppRecord {
            app_id: voipchat_auth::new_app_id(),
            name: "other".into(),
            secret: voipchat_auth::new_app_secret(),
            voip_enabled: true,
            created_at: 0,
            settings: Default::default(),
        };
        self.store.create_app(&app).unwrap();
        app.app_id
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Sends a join with a placeholder SDP and returns the joinResult's errCode. A signature
/// that verifies gets past authentication and fails on the SDP (-10010); one that does not
/// gets -10001.
async fn join_code(ws: &mut Ws, app_id: &str, signed: &serde_json::Value) -> i64 {
    let join = serde_json::json!({
        "type": "join",
        "appId": app_id,
        "openId": signed["openId"],
        "groupId": signed["groupId"],
        "nonceStr": signed["nonceStr"],
        "timeStamp": signed["timeStamp"],
        "signature": signed["signature"],
        "sdp": "v=0\r\n",
    });
    ws.send(Message::Text(join.to_string().into()))
        .await
        .unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "joinResult" {
                return v["errCode"].as_i64().unwrap();
            }
        }
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn serves_the_sdk_and_the_demo_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), |_| {}).await;
    let (status, ty, body) = server.request("GET", "/sdk/voipchat.js", None).await;
    assert_eq!(status, 200);
    assert!(ty.starts_with("text/javascript"), "{ty}");
    assert!(body.contains("export function createVoIPClient"));
    assert!(body.contains("from './voip-room.js'"));
    let (status, ty, body) = server.request("GET", "/sdk/voip-room.js", None).await;
    assert_eq!(status, 200);
    assert!(ty.starts_with("text/javascript"), "{ty}");
    assert!(body.contains("export class VoIPRoomElement"));
    let (status, ty, body) = server.request("GET", "/sdk/voipchat.d.ts", None).await;
    assert_eq!(status, 200);
    assert!(ty.starts_with("application/typescript"), "{ty}");
    assert!(body.contains("joinVoIPChat(options: JoinVoIPChatOptions)"));
    let (status, ty, body) = server.request("GET", "/sdk/wx.js", None).await;
    assert_eq!(status, 200);
    assert!(ty.starts_with("text/javascript"), "{ty}");
    assert!(body.contains("export function installWx"));
    let (status, ty, body) = server.request("GET", "/sdk/wx.d.ts", None).await;
    assert_eq!(status, 200);
    assert!(ty.starts_with("application/typescript"), "{ty}");
    assert!(body.contains("export declare function installWx"));
    // Every file of the package is served: what `npm pack` ships is what the server has.
    let package: serde_json::Value =
        serde_json::from_str(include_str!("../../../sdk/js/package.json")).unwrap();
    for file in package["files"].as_array().unwrap() {
        let path = format!("/sdk/{}", file.as_str().unwrap());
        let (status, _, _) = server.request("GET", &path, None).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, ty, body) = server.request("GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(ty.starts_with("text/html"), "{ty}");
    assert!(body.contains("/sdk/voipchat.js") && body.contains("/demo/sign"));
    server.stop().await;
}

#[tokio::test]
async fn the_demo_signs_for_the_demo_app_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), |_| {}).await;
    let demo = AppId::new(DEMO_APP_ID);
    let app = server
        .store
        .app(&demo)
        .unwrap()
        .expect("the demo app exists");
    assert!(app.voip_enabled);

    // Another app whose user "u" has a session key of its own.
    let other = server.create_app();
    let user = OpenId::new("u");
    let other_key = Secret::new("the-other-apps-key");
    server
        .store
        .put_session_key(&other, &user, &other_key, 0)
        .unwrap();

    let (status, _, body) = server
        .request(
            "POST",
            "/demo/sign",
            Some(r#"{"openId":"u","groupId":"g"}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let signed = json(&body);
    assert_eq!(signed["appId"], DEMO_APP_ID);
    assert_eq!(signed["openId"], "u");
    assert_eq!(signed["groupId"], "g");
    // The store keeps it encrypted (docs/security.md): open it with the server's key.
    let (keys, _) = voipchat_server::secrets::keyring(&server.config).unwrap();
    let open = |stored: Secret| keys.open(&demo, &user, stored.expose()).unwrap();
    let stored = server
        .store
        .session_key(&demo, &user)
        .unwrap()
        .expect("a demo session key was issued");
    assert!(stored.expose().starts_with("s1$"), "sealed at rest");
    let demo_key = open(stored);
    let expected = voipchat_auth::sign(
        DEMO_APP_ID,
        "g",
        signed["nonceStr"].as_str().unwrap(),
        signed["timeStamp"].as_u64().unwrap(),
        &demo_key,
    );
    assert_eq!(signed["signature"], expected.as_str());
    // The other app's key is untouched, and the signature is no good there.
    assert_eq!(
        server.store.session_key(&other, &user).unwrap(),
        Some(other_key)
    );
    let mut ws = server.ws("").await;
    assert_eq!(join_code(&mut ws, other.as_str(), &signed).await, -10001);
    // It is good for the demo app (authentication passes; the placeholder SDP does not).
    assert_eq!(join_code(&mut ws, DEMO_APP_ID, &signed).await, -10010);

    // The key is kept: a second signature for the user verifies with the same key.
    let (_, _, body) = server
        .request(
            "POST",
            "/demo/sign",
            Some(r#"{"openId":"u","groupId":"g"}"#),
        )
        .await;
    let again = json(&body);
    assert_eq!(
        server.store.session_key(&demo, &user).unwrap().map(open),
        Some(demo_key)
    );
    assert_ne!(again["nonceStr"], signed["nonceStr"]);

    // There is no way to name another app.
    for body in [
        format!(r#"{{"appId":"{other}","openId":"u","groupId":"g"}}"#),
        r#"{"openId":"u"}"#.to_string(),
        r#"{"openId":"","groupId":"g"}"#.to_string(),
        "not json".to_string(),
    ] {
        let (status, _, reply) = server.request("POST", "/demo/sign", Some(&body)).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert_eq!(json(&reply)["errCode"], -10007);
    }
    server.stop().await;
}

#[tokio::test]
async fn without_demo_mode_there_is_no_signer_and_demo_signatures_stop_working() {
    let dir = tempfile::tempdir().unwrap();
    // A first run in demo mode hands out a signature …
    let server = Server::start(dir.path(), |_| {}).await;
    let (_, _, body) = server
        .request(
            "POST",
            "/demo/sign",
            Some(r#"{"openId":"u","groupId":"g"}"#),
        )
        .await;
    let signed = json(&body);
    server.stop().await;

    // … then the server runs with demo = false.
    let server = Server::start(dir.path(), |c| c.demo = false).await;
    for (method, path) in [("POST", "/demo/sign"), ("GET", "/")] {
        let (status, _, _) = server
            .request(method, path, Some(r#"{"openId":"u","groupId":"g"}"#))
            .await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (status, _, _) = server.request("GET", "/sdk/voipchat.js", None).await;
    assert_eq!(status, 200, "the SDK is served either way");
    let app = server.store.app(&AppId::new(DEMO_APP_ID)).unwrap().unwrap();
    assert!(!app.voip_enabled);
    let mut ws = server.ws("").await;
    assert_eq!(join_code(&mut ws, DEMO_APP_ID, &signed).await, -10005);
    server.stop().await;

    // A fresh data dir without demo mode has no demo app at all.
    let fresh = tempfile::tempdir().unwrap();
    let server = Server::start(fresh.path(), |c| c.demo = false).await;
    assert!(server
        .store
        .app(&AppId::new(DEMO_APP_ID))
        .unwrap()
        .is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_drop_ws_hook_exists_only_with_test_hooks_and_drops_only_matching_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), |_| {}).await;
    let (status, _, _) = server
        .request("POST", "/api/v1/test/drop-ws", Some("{}"))
        .await;
    assert_eq!(status, 404, "no test hooks by default");
    server.stop().await;

    let server = Server::start(dir.path(), |c| c.test_hooks = true).await;
    let mut a = server.ws("?tag=a").await;
    let mut b = server.ws("?tag=b").await;
    // Both answer pings.
    for ws in [&mut a, &mut b] {
        ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply, Message::Text(r#"{"type":"pong"}"#.into()));
    }
    let (status, _, body) = server
        .request("POST", "/api/v1/test/drop-ws", Some(r#"{"query":"tag=a"}"#))
        .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["dropped"], 1);
    // a's connection ends without a close frame; b's goes on.
    let end = tokio::time::timeout(Duration::from_secs(5), a.next())
        .await
        .expect("a is dropped at once");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "a got {end:?} instead of the end of its connection"
    );
    b.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), b.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::Text(r#"{"type":"pong"}"#.into()));
    server.stop().await;
}
