//! The client over real sockets against a minimal stand-in for the voipchat server (one
//! WebSocket, one ICE-lite str0m `Rtc` on a UDP socket), so that the tokio driver is tested
//! before and apart from the real server. The real end-to-end tests live with the server.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use voipchat_client::{Client, ClientError, ClientEvent, JoinOptions};
use voipchat_proto::signal::api;
use voipchat_proto::{
    ClientMsg, ErrorCode, Failure, MuteConfig, OpenId, Secret, ServerMsg, Status, TrackKind,
    TrackSlot,
};

/// What the stand-in observed, reported to the test.
#[derive(Debug)]
enum Seen {
    /// Payload and RFC 6464 level of a packet from the client.
    Media(Vec<u8>, Option<i8>, Option<bool>),
    Mute(MuteConfig),
    Exit,
    /// The WebSocket ended; `true` if a close frame came first.
    WsEnded {
        close_frame: bool,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    Refuse,
    /// Accept, as a server older than the `hello` message: it never sends one.
    AcceptWithoutHello,
}

/// Packets the stand-in sends on the receive slot, one per 20 ms, once connected.
const SERVER_PACKETS: u8 = 50;

async fn start(mode: Mode) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        serve(ws, mode, tx).await;
    });
    (url, rx)
}

async fn serve(
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    mode: Mode,
    seen: mpsc::UnboundedSender<Seen>,
) {
    let send = |m: ServerMsg| Message::text(m.to_json());
    if mode != Mode::AcceptWithoutHello {
        let hello = ServerMsg::Hello {
            ice_servers: vec![],
        };
        ws.send(send(hello)).await.unwrap();
    }
    let first = ws.next().await.unwrap().unwrap();
    let join = match ClientMsg::parse(first.to_text().unwrap()).unwrap() {
        ClientMsg::Join(j) => j,
        other => panic!("expected join, got {other:?}"),
    };
    assert_eq!(join.open_id.as_str(), "alice");
    if mode == Mode::Refuse {
        let f = Failure::new(ErrorCode::InvalidSignature);
        ws.send(send(ServerMsg::join_failed(&f))).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                break;
            }
        }
        return;
    }

    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let offer = SdpOffer::from_sdp_string(&join.sdp).unwrap();
    let answer = rtc.sdp_api().accept_offer(offer).unwrap();
    ws.send(send(ServerMsg::JoinResult {
        status: Status::ok(api::JOIN),
        open_id_list: vec![OpenId::new("bob"), OpenId::new("alice")],
        muted_open_id_list: vec![],
        sdp: Some(answer.to_sdp_string()),
        ice_servers: Vec::new(),
        redirect: None,
    }))
    .await
    .unwrap();
    // Garbage the client must survive, then a normal event.
    ws.send(Message::text("this is not json")).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(send(ServerMsg::members_changed(
        vec![OpenId::new("bob"), OpenId::new("alice")],
        vec![],
    )))
    .await
    .unwrap();

    let mut buf = vec![0u8; 2000];
    let mut slot: Option<(Mid, Option<SdpPendingOffer>)> = None;
    let mut ready = false;
    let mut written = 0u8;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        // Drain.
        let deadline = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = udp.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::Connected) => {
                    // Add a receive slot carrying bob.
                    let mut change = rtc.sdp_api();
                    let mid =
                        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
                    let (offer, pending) = change.apply().unwrap();
                    slot = Some((mid, Some(pending)));
                    let tracks = vec![TrackSlot {
                        mid: mid.to_string(),
                        kind: TrackKind::Audio,
                        open_id: Some(OpenId::new("bob")),
                    }];
                    let msg = send(ServerMsg::Offer {
                        sdp: offer.to_sdp_string(),
                        tracks,
                    });
                    ws.send(msg).await.unwrap();
                }
                Output::Event(Event::MediaData(d)) => {
                    let _ = seen.send(Seen::Media(
                        d.data.to_vec(),
                        d.ext_vals.audio_level,
                        d.ext_vals.voice_activity,
                    ));
                }
                Output::Event(_) => {}
            }
        };
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let (n, source) = r.unwrap();
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive {
                    proto: Protocol::Udp, source, destination: addr, contents,
                });
                let _ = rtc.handle_input(input);
            }
            m = ws.next() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(_)) | None => {
                        let _ = seen.send(Seen::WsEnded { close_frame: false });
                        return;
                    }
                };
                let text = match m {
                    Message::Text(t) => t,
                    Message::Close(_) => {
                        let _ = seen.send(Seen::WsEnded { close_frame: true });
                        return;
                    }
                    _ => continue,
                };
                match ClientMsg::parse(text.as_str()).unwrap() {
                    ClientMsg::Answer { sdp } => {
                        let (_, pending) = slot.as_mut().expect("answer to our offer");
                        let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                        rtc.sdp_api().accept_answer(pending.take().unwrap(), answer).unwrap();
                        ready = true;
                    }
                    ClientMsg::UpdateMuteConfig { mute_config } => {
                        let _ = seen.send(Seen::Mute(mute_config));
                        ws.send(send(ServerMsg::MuteConfigResult {
                            status: Status::ok(api::UPDATE_MUTE),
                        })).await.unwrap();
                    }
                    ClientMsg::Exit => {
                        let _ = seen.send(Seen::Exit);
                        ws.send(send(ServerMsg::ExitResult { status: Status::ok(api::EXIT) }))
                            .await
                            .unwrap();
                    }
                    ClientMsg::Ping => ws.send(send(ServerMsg::Pong)).await.unwrap(),
                    ClientMsg::Join(_) => panic!("second join"),
                    ClientMsg::SubscribeVideoMembers { .. } => panic!("a voice client subscribed"),
                }
            }
            _ = tick.tick() => {
                if let (true, Some((mid, _))) = (ready, &slot) {
                    if written < SERVER_PACKETS {
                        let mut w = rtc.writer(*mid).unwrap();
                        let pt = w.payload_params().next().unwrap().pt();
                        w = w.audio_level(-40, true);
                        let t = MediaTime::new(u64::from(written) * 960, Frequency::FORTY_EIGHT_KHZ);
                        w.write(pt, Instant::now(), t, vec![0xf8, written, 0xaa, 0xbb]).unwrap();
                        written += 1;
                    }
                }
            }
            _ = sleep => { let _ = rtc.handle_input(Input::Timeout(Instant::now())); }
        }
    }
}

fn options(url: &str) -> JoinOptions {
    JoinOptions::signed(
        url,
        "app",
        "alice",
        "room",
        &Secret::new("key"),
        1_700_000_000,
    )
}

async fn next(client: &mut Client) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), client.next_event())
        .await
        .expect("an event within 10 s")
        .expect("the client is still open")
}

#[tokio::test]
async fn join_exchange_media_mute_and_exit() {
    let (url, mut seen) = start(Mode::Accept).await;
    let (mut client, members) = Client::join(options(&url)).await.unwrap();
    assert_eq!(members, vec![OpenId::new("bob"), OpenId::new("alice")]);
    assert_eq!(client.open_id().as_str(), "alice");
    assert!(matches!(
        next(&mut client).await,
        ClientEvent::Joined { .. }
    ));
    // The two garbage frames become errors, and the connection stays up.
    let malformed = ErrorCode::MalformedMessage.code();
    let mut errors = 0;
    let mut saw_connected = false;
    loop {
        match next(&mut client).await {
            ClientEvent::Error { err_code, .. } if err_code == malformed => errors += 1,
            ClientEvent::Connected => saw_connected = true,
            ClientEvent::MembersChanged(m) => {
                assert_eq!(m.len(), 2);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, 2);

    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(client.is_connected());

    // Send 25 packets in real time while collecting what bob "says".
    let sender = client.audio_sender();
    let send_task = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for i in 0..25u8 {
            tokio::time::sleep_until(start + Duration::from_millis(20) * u32::from(i)).await;
            let payload = vec![0xf8, i, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
            sender
                .send_opus(payload, Duration::from_millis(20), Some((30, true)))
                .unwrap();
        }
    });
    let mut from_bob = Vec::new();
    let mut saw_tracks = false;
    while from_bob.len() < usize::from(SERVER_PACKETS) {
        match next(&mut client).await {
            ClientEvent::Connected => saw_connected = true,
            ClientEvent::Tracks(t) => {
                assert_eq!(t.len(), 1);
                saw_tracks = true;
            }
            ClientEvent::Audio { from, payload, .. } => {
                assert_eq!(from, Some(OpenId::new("bob")));
                from_bob.push(payload);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_connected && saw_tracks);
    for (i, p) in from_bob.iter().enumerate() {
        assert_eq!(p, &vec![0xf8, i as u8, 0xaa, 0xbb]);
    }
    send_task.await.unwrap();

    client
        .update_mute(MuteConfig {
            mute_microphone: true,
            mute_earphone: false,
            mute_camera: false,
        })
        .await
        .unwrap();
    let stats = client.stats();
    assert_eq!(stats.packets_sent, 25);
    assert_eq!(stats.packets_received, u64::from(SERVER_PACKETS));
    client.exit().await.unwrap();

    let mut media = Vec::new();
    let mut order = Vec::new();
    while let Some(s) = seen.recv().await {
        match s {
            Seen::Media(p, level, voice) => media.push((p, level, voice)),
            Seen::Mute(m) => order.push(format!("mute {}", m.mute_microphone)),
            Seen::Exit => order.push("exit".into()),
            Seen::WsEnded { close_frame } => {
                order.push(format!("ended close_frame={close_frame}"));
                break;
            }
        }
    }
    assert_eq!(order, vec!["mute true", "exit", "ended close_frame=true"]);
    assert_eq!(media.len(), 25);
    for (i, (p, level, voice)) in media.iter().enumerate() {
        assert_eq!(p[1], i as u8);
        assert_eq!((*level, *voice), (Some(-30), Some(true)));
    }
}

/// A server that never says hello is joined all the same, after the client waited for it
/// (no TURN then), and not much longer.
#[tokio::test]
async fn a_server_without_hello_is_joined_after_the_hello_timeout() {
    let (url, _seen) = start(Mode::AcceptWithoutHello).await;
    let t0 = Instant::now();
    let (mut client, members) = Client::join(options(&url)).await.unwrap();
    let took = t0.elapsed();
    assert_eq!(members.len(), 2);
    assert!(
        took >= voipchat_client::HELLO_TIMEOUT && took < voipchat_client::HELLO_TIMEOUT * 2,
        "joined after {took:?}"
    );
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("ICE and DTLS up");
    assert!(matches!(
        next(&mut client).await,
        ClientEvent::Joined { .. }
    ));
}

#[tokio::test]
async fn refused_join_reports_the_code() {
    let (url, _seen) = start(Mode::Refuse).await;
    match Client::join(options(&url)).await {
        Err(e @ ClientError::Refused { .. }) => {
            assert_eq!(e.code(), Some(ErrorCode::InvalidSignature));
            let ClientError::Refused { err_code, err_msg } = e else {
                unreachable!()
            };
            assert_eq!(err_code, -10001);
            assert_eq!(err_msg, "joinVoIPChat:fail invalid signature");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("joined"),
    }
}

#[tokio::test]
async fn close_abruptly_drops_the_websocket_without_close_frame() {
    let (url, mut seen) = start(Mode::Accept).await;
    let (client, _) = Client::join(options(&url)).await.unwrap();
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    client.close_abruptly();
    loop {
        let s = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap();
        if let Seen::WsEnded { close_frame } = s {
            assert!(!close_frame);
            break;
        }
    }
}

#[tokio::test]
async fn unreachable_server_is_an_error() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    drop(l);
    let err = Client::join(options(&format!("ws://{addr}/ws")))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::WebSocket(_)), "{err}");
}

/// The CLI end to end against the stand-in: plays a file, records bob, prints JSON lines,
/// leaves with exit after --duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plays_records_and_prints_json_lines() {
    let (url, mut seen) = start(Mode::Accept).await;
    let dir = std::env::temp_dir().join(format!("voipchat-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let send = dir.join("send.opus");
    let mut w = voipchat_client::OggOpusWriter::create(&send).unwrap();
    for i in 0..20u8 {
        // Alternate "speech" (11+ bytes) and "silence" (3 bytes) for the level heuristic.
        let p = if i % 2 == 0 {
            vec![0xf8, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        } else {
            vec![0xf8, i, 0]
        };
        w.write_opus(&p).unwrap();
    }
    w.finish().unwrap();
    let record = dir.join("rec");

    let exe = env!("CARGO_BIN_EXE_voipchat-client");
    let args: Vec<String> = [
        "join",
        "--server",
        &url,
        "--app-id",
        "app",
        "--open-id",
        "alice",
        "--group-id",
        "room",
        "--session-key",
        "key",
        "--duration",
        "2.5",
        "--mute-earphone",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--send".into(), send.display().to_string()])
    .chain(["--record-dir".into(), record.display().to_string()])
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "joined", "{stdout}");
    for k in [
        "membersChanged",
        "connected",
        "tracks",
        "audioStarted",
        "leaving",
        "exitResult",
        "summary",
    ] {
        assert!(kinds.contains(&k), "{k} missing:\n{stdout}");
    }
    let started = lines.iter().find(|l| l["event"] == "audioStarted").unwrap();
    assert_eq!(started["openId"], "bob");
    let summary = lines.last().unwrap();
    assert_eq!(summary["packetsSent"], 20, "{stdout}");
    assert_eq!(summary["recordings"][0]["openId"], "bob");
    assert_eq!(
        summary["recordings"][0]["packets"],
        u64::from(SERVER_PACKETS)
    );

    let recorded = voipchat_client::read_ogg_opus(record.join("bob.opus")).unwrap();
    assert_eq!(recorded.len(), usize::from(SERVER_PACKETS));
    assert_eq!(recorded[7].data, vec![0xf8, 7, 0xaa, 0xbb]);

    let mut media = Vec::new();
    while let Some(s) = seen.recv().await {
        match s {
            Seen::Media(p, level, voice) => media.push((p, level, voice)),
            Seen::WsEnded { close_frame } => {
                assert!(close_frame);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(media.len(), 20);
    for (p, level, voice) in &media {
        let expect = if p.len() > 10 {
            (Some(-30), Some(true))
        } else {
            (Some(-127), Some(false))
        };
        assert_eq!((*level, *voice), expect);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_refusal_prints_the_code_and_exits_2() {
    let (url, _seen) = start(Mode::Refuse).await;
    let exe = env!("CARGO_BIN_EXE_voipchat-client");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "join",
                "--server",
                &url,
                "--app-id",
                "app",
                "--open-id",
                "alice",
            ])
            .args(["--group-id", "room", "--signature", &"ab".repeat(32)])
            .args(["--nonce-str", "n0nce", "--timestamp", "1700000000"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        line,
        serde_json::json!({"event": "joinResult", "errCode": -10001,
                           "errMsg": "joinVoIPChat:fail invalid signature"})
    );
}

#[tokio::test]
async fn go_silent_keeps_the_connection_open_but_quiet() {
    let (url, mut seen) = start(Mode::Accept).await;
    let (client, _) = Client::join(options(&url)).await.unwrap();
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let silent = client.go_silent();
    // No close for a while: the WebSocket stays open.
    let quiet = tokio::time::timeout(Duration::from_millis(800), async {
        loop {
            if let Some(Seen::WsEnded { .. }) = seen.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the websocket ended while silent");
    drop(silent);
    loop {
        let s = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap();
        if let Seen::WsEnded { close_frame } = s {
            assert!(!close_frame);
            break;
        }
    }
}
