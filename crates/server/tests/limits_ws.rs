//! WebSocket limits (docs/security.md#limits): the join deadline, the signaling rate limit
//! (a flood gets an error and a close, and the other member's pongs keep coming), the
//! bounded outbox (a client that never reads is disconnected, the others are not slowed),
//! and the connection limits on WebSocket upgrades. Each test is bounded in time and count.

mod common;

use std::time::{Duration, Instant};

use common::{unix_now, RawWs, TestServer};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use voipchat_client::JoinOptions;
use voipchat_proto::{AppId, ClientMsg, Secret, ServerMsg};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A real offer (one sendrecv audio m-line); the session never connects, which is fine for
/// tests shorter than `media_timeout_secs`.
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
        str0m::media::Direction::SendRecv,
        None,
        None,
        None,
    );
    let (offer, _pending) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

fn join_frame(
    server: &TestServer,
    app: &AppId,
    key: &Secret,
    open_id: &str,
    group: &str,
) -> String {
    let opts = JoinOptions::signed(
        server.ws_url(),
        app.clone(),
        open_id,
        group,
        key,
        unix_now(),
    );
    serde_json::to_string(&ClientMsg::Join(opts.join_request(offer()))).unwrap()
}

/// A raw WebSocket admitted to `group` as `open_id` (its joinResult read).
async fn raw_member(
    server: &TestServer,
    app: &AppId,
    secret: &Secret,
    open_id: &str,
    group: &str,
) -> Ws {
    let key = server.session_key(app, secret, open_id).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    ws.send(Message::Text(
        join_frame(server, app, &key, open_id, group).into(),
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, next_msg(&mut ws))
            .await
            .expect("joinResult within 5 s")
            .expect("open");
        if let ServerMsg::JoinResult { status, .. } = msg {
            assert_eq!(status.err_code, 0, "{open_id} joins: {}", status.err_msg);
            return ws;
        }
    }
}

/// The next server message (text frame); None when the connection closed.
async fn next_msg(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(ServerMsg::parse(t.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Polls `f` every 50 ms until it is true, at most `limit`.
async fn eventually<F, Fut>(limit: Duration, f: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let (_, body) = server.http_request("GET", "/metrics", None, None).await;
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_join_is_closed_with_an_error_first() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| c.ws_join_timeout_ms = 800).await;
    let opened = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = next_msg(&mut ws).await {
            seen.push(msg);
        }
    })
    .await;
    let after = opened.elapsed();
    assert!(closed.is_ok(), "closed within 5 s; got {seen:?}");
    println!("join deadline 800 ms: closed after {after:?}");
    assert!(
        after >= Duration::from_millis(800),
        "not before the deadline: {after:?}"
    );
    match seen.last() {
        Some(ServerMsg::Error { status }) => {
            assert_eq!(status.err_code, -12012);
            assert_eq!(status.err_msg, "signaling:fail no join in time");
        }
        other => panic!("the last frame is the -12012 error: {other:?} (all: {seen:?})"),
    }
    assert_eq!(
        metric(
            &server,
            "voipchat_ws_closed_by_server_total{reason=\"join_timeout\"}"
        )
        .await,
        1.0
    );

    // An admitted member is past the deadline: still there twice the deadline later.
    let (app, secret) = server.create_app(true);
    let mut member = raw_member(&server, &app, &secret, "o_a", "g1").await;
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    member
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match next_msg(&mut member).await {
                Some(ServerMsg::Pong) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(
        pong,
        Ok(true),
        "an admitted member is not closed by the join deadline"
    );
    server.stop().await;
}

/// A member floods pings as fast as it can; the other member of its room pings 10 times a
/// second. The flood gets -12011 and a close after about its burst, the other member gets
/// every pong, and stays in the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_an_error_and_a_close_and_never_slows_the_other_member() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| {
        c.ws_frames_per_sec = 20;
        c.ws_frame_burst = 60;
    })
    .await;
    let (app, secret) = server.create_app(true);
    let flooder = raw_member(&server, &app, &secret, "o_flood", "g1").await;
    let mut normal = raw_member(&server, &app, &secret, "o_normal", "g1").await;

    // The flood: up to 100,000 pings, stopping when the server closes the connection.
    const FLOOD_MAX: usize = 100_000;
    let (mut flood_tx, mut flood_rx) = flooder.split();
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = 0;
        while sent < FLOOD_MAX && started.elapsed() < Duration::from_secs(10) {
            if flood_tx
                .send(Message::Text(r#"{"type":"ping"}"#.into()))
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    });
    let flood_reader = tokio::spawn(async move {
        let (mut pongs, mut error) = (0, None);
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(frame) = flood_rx.next().await {
                match frame {
                    Ok(Message::Text(t)) => match ServerMsg::parse(t.as_str()).unwrap() {
                        ServerMsg::Pong => pongs += 1,
                        ServerMsg::Error { status } => error = Some(status.err_code),
                        _ => {}
                    },
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        (pongs, error, read.is_ok())
    });

    // Meanwhile the normal member: 30 pings, one every 100 ms, each answered.
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let sent = Instant::now();
        normal
            .send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match next_msg(&mut normal).await {
                    Some(ServerMsg::Pong) => return true,
                    Some(_) => continue,
                    None => return false,
                }
            }
        })
        .await;
        if got == Ok(true) {
            answered += 1;
            slowest = slowest.max(sent.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = flood.await.unwrap();
    let (flood_pongs, flood_error, flood_closed) = flood_reader.await.unwrap();
    println!(
        "flood: {sent} pings written before the server closed the connection, {flood_pongs} \
         pongs back, error {flood_error:?}; normal member: {answered}/30 pongs, slowest {slowest:?}"
    );
    assert!(flood_closed, "the flooder's connection is closed");
    assert_eq!(
        flood_error,
        Some(-12011),
        "the flood gets the rate-limit error first"
    );
    assert!(
        flood_pongs <= 60,
        "at most the burst is answered: {flood_pongs}"
    );
    assert!(
        sent < FLOOD_MAX,
        "the server closed the flood before it ended"
    );
    assert_eq!(answered, 30, "every ping of the other member is answered");
    let members = server.members(&app, &secret, "g1").await;
    assert_eq!(
        members,
        vec!["o_normal".to_string()],
        "the flooder left, the other stays"
    );
    assert_eq!(
        metric(
            &server,
            "voipchat_ws_closed_by_server_total{reason=\"rate_limited\"}"
        )
        .await,
        1.0
    );
    server.stop().await;
}

/// A client that never reads, with a small receive buffer, sends frames that each get an
/// answer (malformed frames: an error each). Its queue fills, and it is disconnected with
/// its room membership; the other member's pongs keep coming throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_when_its_queue_is_full() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| {
        // Only the outbox may stop this client, not the rate limit.
        c.ws_frames_per_sec = 1_000_000;
        c.ws_frame_burst = 1_000_000;
        c.ws_outbox_messages = 64;
    })
    .await;
    let (app, secret) = server.create_app(true);
    let mut normal = raw_member(&server, &app, &secret, "o_normal", "g1").await;

    // The never-reading client: a member too, on a socket with a 4 KiB receive buffer.
    let key = server.session_key(&app, &secret, "o_deaf").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.http).await.unwrap();
    let (deaf, _) = tokio_tungstenite::client_async(
        server.ws_url(),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .unwrap();
    let (mut deaf_tx, deaf_rx) = deaf.split();
    deaf_tx
        .send(Message::Text(
            join_frame(&server, &app, &key, "o_deaf", "g1").into(),
        ))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            server.members(&app, &secret, "g1").await.len() == 2
        })
        .await,
        "the never-reading client joined"
    );
    const FRAMES_MAX: usize = 200_000;
    let started = Instant::now();
    let pump = tokio::spawn(async move {
        let mut sent = 0;
        // Each answered with a ~100-byte error that nobody reads.
        while sent < FRAMES_MAX && started.elapsed() < Duration::from_secs(20) {
            if deaf_tx.send(Message::Text("{}".into())).await.is_err() {
                break;
            }
            sent += 1;
        }
        (sent, started.elapsed(), deaf_tx, deaf_rx)
    });

    let mut answered = 0;
    let mut asked = 0;
    let gone = loop {
        asked += 1;
        normal
            .send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match next_msg(&mut normal).await {
                    Some(ServerMsg::Pong) => return true,
                    Some(_) => continue,
                    None => return false,
                }
            }
        })
        .await;
        if got == Ok(true) {
            answered += 1;
        }
        let members = server.members(&app, &secret, "g1").await;
        if members == vec!["o_normal".to_string()] {
            break Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(20) || asked >= 400 {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (sent, pump_time, _tx, _rx) = pump.await.unwrap();
    println!(
        "never-reading client: removed after {gone:?}, {sent} frames written in {pump_time:?}; \
         other member: {answered}/{asked} pongs"
    );
    assert!(
        gone.is_some(),
        "the never-reading member left its room within 20 s"
    );
    assert_eq!(
        answered, asked,
        "every ping of the other member was answered"
    );
    assert_eq!(
        metric(
            &server,
            "voipchat_ws_closed_by_server_total{reason=\"outbox_full\"}"
        )
        .await,
        1.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_count_toward_the_connection_limits() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| {
        c.max_connections_per_ip = 3;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(RawWs::connect(&server.ws_url()).await);
    }
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            let (code, msg) = common::api_failure(&body);
            assert_eq!(code, -12010, "{msg}");
        }
        other => panic!(
            "the 4th WebSocket is refused with 429: {:?}",
            other.map(|_| ())
        ),
    }
    // A WebSocket's place is given back when it closes, not at the upgrade.
    drop(held.pop());
    let again = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if tokio_tungstenite::connect_async(server.ws_url())
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(again.is_ok(), "a closed WebSocket frees its place");
    server.stop().await;
}
