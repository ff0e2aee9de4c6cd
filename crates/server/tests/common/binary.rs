//! The real `voipchat` binary for end-to-end tests: its CLI, `serve` on ephemeral ports, and
//! real signaling clients for it.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use voipchat_proto::{AppId, Secret, ServerMsg};

/// Runs `voipchat` with `args` in `dir`; returns its stdout (it must succeed).
pub fn cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("VOIPCHAT_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts `voipchat serve` on ephemeral ports; returns the child, its HTTP address and
/// the stderr lines up to "voipchat serving".
pub async fn serve(
    dir: &std::path::Path,
    extra: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr, Vec<String>) {
    let (child, http, seen, _) = serve_logged(dir, extra).await;
    (child, http, seen)
}

/// [`serve`], also returning every later stderr line as it comes (plain text).
pub async fn serve_logged(
    dir: &std::path::Path,
    extra: &[&str],
) -> (
    tokio::process::Child,
    std::net::SocketAddr,
    Vec<String>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let Started {
        child,
        http,
        seen,
        mut lines,
    } = start(dir, extra, "info,voipchat_server::quota=debug").await;
    let later = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = later.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push(super::plain(&l));
        }
    });
    (child, http, seen, later)
}

/// A started `voipchat serve`.
pub struct Started {
    pub child: tokio::process::Child,
    pub http: std::net::SocketAddr,
    /// Its stderr lines up to "voipchat serving", colours taken out.
    pub seen: Vec<String>,
    /// The stderr lines after it, as they come (read them, or the server blocks on a full pipe).
    pub lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

/// Starts `voipchat serve` in `dir` with `args`, logging at `rust_log`: on ephemeral ports
/// (HTTP too, unless `args` give `--http-addr`), and waits for the "voipchat serving" line,
/// text or JSON (`log_format`).
pub async fn start(dir: &std::path::Path, args: &[&str], rust_log: &str) -> Started {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_voipchat"));
    command
        .args(["--data-dir", dir.to_str().unwrap(), "serve"])
        .args(["--media-addr", "127.0.0.1:0"]);
    if !args.contains(&"--http-addr") {
        command.args(["--http-addr", "127.0.0.1:0"]);
    }
    let mut child = command
        .args(args)
        .env("RUST_LOG", rust_log)
        .env_remove("VOIPCHAT_CONFIG")
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
        let line = super::plain(&line);
        let serving = line.contains("voipchat serving");
        seen.push(line);
        if serving {
            break;
        }
    }
    let line = seen.last().unwrap();
    // Text: `http=127.0.0.1:N`; JSON: `"http":"127.0.0.1:N"`.
    let http = line
        .split("http")
        .nth(1)
        .unwrap()
        .trim_start_matches(['=', '"', ':'])
        .split(['"', ' '])
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    Started {
        child,
        http,
        seen,
        lines,
    }
}

pub async fn session_key(
    http: std::net::SocketAddr,
    app: &AppId,
    secret: &Secret,
    user: &str,
) -> Secret {
    let (status, body) = super::http_request(
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

pub async fn rooms_created(http: std::net::SocketAddr, app: &AppId, secret: &Secret) -> u64 {
    let (status, body) = super::http_request(
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
pub fn offer() -> String {
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
pub async fn create_room(
    http: std::net::SocketAddr,
    app: AppId,
    user: String,
    key: Secret,
    sdp: String,
) -> Option<i32> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .ok()?;
    let nonce = voipchat_client::random_nonce();
    let ts = super::unix_now();
    let group = format!("room-{user}");
    let signature = voipchat_auth::sign(app.as_str(), &group, &nonce, ts, &key);
    let frame = serde_json::json!({
        "type": "join", "appId": app, "openId": user, "groupId": group,
        "nonceStr": nonce, "timeStamp": ts, "signature": signature, "sdp": sdp,
    });
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .ok()?;
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
