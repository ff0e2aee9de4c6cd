//! A real server on ephemeral ports with a real SQLite file, and small real clients for it
//! (raw HTTP/1.1 and WebSocket), for the integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use voipchat_proto::{AppId, Secret, ServerMsg};
use voipchat_server::{Config, Listeners};
use voipchat_store::{AppRecord, SqliteStore, Store};

pub struct TestServer {
    pub http: SocketAddr,
    pub media: SocketAddr,
    /// `/metrics` on its own address, when `metrics_addr` is set.
    pub metrics: Option<SocketAddr>,
    pub config: Config,
    pub store: Arc<SqliteStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

impl TestServer {
    /// A server with default rules on 127.0.0.1, its data in `dir`.
    pub async fn start(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> TestServer {
        // RUST_LOG=debug shows the server's log in a failing test.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        }
        let mut config = Config {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            media_addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: PathBuf::from(dir),
            ..Config::default()
        };
        // VOIPCHAT_TEST_MEDIA_SHARDS=N runs every test server with N media shards (a check
        // that nothing depends on there being one).
        if let Some(n) = std::env::var("VOIPCHAT_TEST_MEDIA_SHARDS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.media_shards = n;
        }
        tweak(&mut config);
        config.validate().expect("valid test config");
        let store = Arc::new(SqliteStore::open(&config.sqlite_path()).expect("open sqlite"));
        let listeners = Listeners::bind(&config).await.expect("bind");
        let http = listeners.http.local_addr().unwrap();
        let media = listeners.media[0].local_addr().unwrap();
        let metrics = listeners.metrics.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let dyn_store: Arc<dyn Store> = store.clone();
        let cfg = config.clone();
        let task = tokio::spawn(async move {
            voipchat_server::run(listeners, cfg, dyn_store, async move {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            http,
            media,
            metrics,
            config,
            store,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The signaling URL: `wss://` when the server has a TLS certificate.
    pub fn ws_url(&self) -> String {
        let scheme = if self.config.tls_files().is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws", self.http)
    }

    /// Stops the server the way SIGTERM does and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("server stops within 10 s")
                .expect("server task");
        }
    }

    /// A new app with VoIP enabled (or not).
    pub fn create_app(&self, voip: bool) -> (AppId, Secret) {
        let app = AppRecord {
            app_id: voipchat_auth::new_app_id(),
            name: "test".into(),
            secret: voipchat_auth::new_app_secret(),
            voip_enabled: voip,
            created_at: 0,
            settings: Default::default(),
        };
        self.store.create_app(&app).expect("create app");
        (app.app_id, app.secret)
    }

    /// A session key from the backend API.
    pub async fn session_key(&self, app: &AppId, secret: &Secret, open_id: &str) -> Secret {
        let (status, body) = self
            .http_request(
                "POST",
                "/api/v1/session-key",
                Some((app, secret)),
                Some(&serde_json::json!({ "openId": open_id }).to_string()),
            )
            .await;
        assert_eq!(status, 200, "session key: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        Secret::new(v["sessionKey"].as_str().unwrap())
    }

    pub async fn rooms_created(&self, app: &AppId, secret: &Secret) -> u64 {
        let (status, body) = self
            .http_request("GET", "/api/v1/quota", Some((app, secret)), None)
            .await;
        assert_eq!(status, 200, "quota: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["roomsCreated"].as_u64().unwrap()
    }

    /// The members of an open room in join order; empty when no such room is open.
    pub async fn members(&self, app: &AppId, secret: &Secret, group: &str) -> Vec<String> {
        let (status, body) = self
            .http_request(
                "GET",
                &format!("/api/v1/rooms/{group}"),
                Some((app, secret)),
                None,
            )
            .await;
        if status == 404 && api_failure(&body).0 == -12007 {
            return Vec::new(); // no such room is open
        }
        assert_eq!(status, 200, "rooms: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["openIdList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    /// One HTTP/1.1 request; returns status and body.
    pub async fn http_request(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&AppId, &Secret)>,
        body: Option<&str>,
    ) -> (u16, String) {
        http_request(
            self.http,
            method,
            path,
            auth.map(|(a, s)| (a.to_string(), s.expose().to_string())),
            body,
        )
        .await
    }
}

pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(String, String)>,
    body: Option<&str>,
) -> (u16, String) {
    let s = TcpStream::connect(addr).await.expect("connect http");
    request_over(s, addr, method, path, auth, body).await
}

/// One HTTP/1.1 request over an open connection (plain TCP, or a TLS stream); returns
/// status and body.
pub async fn request_over(
    mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(String, String)>,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((user, pass)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
        .await
        .expect("http response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&resp).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A bare WebSocket connection speaking raw frames.
pub struct RawWs {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    /// The connection's first message, read by `connect`.
    pub hello: ServerMsg,
}

impl RawWs {
    /// Connects and reads the server's `hello`, which always comes first.
    pub async fn connect(url: &str) -> RawWs {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        let mut raw = RawWs {
            ws,
            hello: ServerMsg::Pong,
        };
        raw.hello = raw.recv().await;
        assert!(
            matches!(raw.hello, ServerMsg::Hello { .. }),
            "the first message is a hello: {:?}",
            raw.hello
        );
        raw
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("ws send");
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws
            .send(Message::Binary(data.into()))
            .await
            .expect("ws send");
    }

    /// The next server message, within 5 s.
    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a server message within 5 s")
                .expect("stream open")
                .expect("ws frame");
            if let Message::Text(t) = msg {
                return ServerMsg::parse(t.as_str()).expect("server sends valid messages");
            }
        }
    }

    /// Sends a frame and returns the errCode of the reply.
    pub async fn roundtrip_code(&mut self, text: &str) -> i32 {
        self.send_text(text).await;
        match self.recv().await {
            ServerMsg::JoinResult { status, .. }
            | ServerMsg::Error { status }
            | ServerMsg::ExitResult { status }
            | ServerMsg::MuteConfigResult { status } => status.err_code,
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

/// A signed voice `join` frame of openId "u1" with the given offer.
#[allow(dead_code)] // not every test binary uses it
pub fn join_frame(app: &AppId, group: &str, nonce: &str, key: &Secret, sdp: &str) -> String {
    let ts = unix_now();
    let signature = voipchat_auth::sign(app.as_str(), group, nonce, ts, key);
    serde_json::json!({
        "type": "join", "appId": app, "openId": "u1", "groupId": group,
        "nonceStr": nonce, "timeStamp": ts, "signature": signature,
        "roomType": "voice", "muteConfig": {"muteMicrophone": false, "muteEarphone": false},
        "sdp": sdp
    })
    .to_string()
}

pub fn unix_now() -> u64 {
    voipchat_server::clock::unix_now()
}

pub mod binary;
pub mod peers;
pub mod redis;

/// The `{errCode, errMsg}` of a backend API refusal (nothing else in the body).
pub fn api_failure(body: &str) -> (i64, String) {
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{{errCode, errMsg}} JSON ({e}): {body}"));
    assert_eq!(v.as_object().unwrap().len(), 2, "{body}");
    (
        v["errCode"].as_i64().unwrap(),
        v["errMsg"].as_str().unwrap().to_string(),
    )
}

/// Drops ANSI colour sequences from a log line.
pub fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
