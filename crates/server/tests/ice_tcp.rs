//! ICE over TCP against the real server: a client with no UDP socket at all (the Rust client
//! with `MediaTransport::Tcp`: an active TCP candidate only) joins and talks with a UDP
//! member; without `media_tcp` the same client never connects; and hostile TCP peers on the
//! media port (garbage, a huge length prefix, half a frame then silence, more connections
//! than allowed) are closed within the documented bounds while others join as usual.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::peers::{peer, setup, warm_up, TestPeer};
use common::TestServer;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voipchat_client::MediaTransport;
use voipchat_proto::{AppId, Secret};

/// The documented bound for a connection that reaches no member (`Limits::unverified_for`),
/// and the slack allowed on top of it (the sweep runs every 250 ms; a loaded machine).
const UNVERIFIED: Duration = Duration::from_secs(5);
const SLACK: Duration = Duration::from_millis(1500);

async fn tcp_peer(
    server: &TestServer,
    app: &AppId,
    secret: &Secret,
    open_id: &str,
    group: &str,
) -> TestPeer {
    let key = server.session_key(app, secret, open_id).await;
    TestPeer::join_with(server, app, &key, open_id, group, |o| {
        o.transport = MediaTransport::Tcp
    })
    .await
    .unwrap_or_else(|e| panic!("{open_id} joins {group} over TCP: {e}"))
}

async fn metric(server: &TestServer, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, body) = common::http_request(server.http, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{body}");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => f64::NAN,
        })
        .unwrap_or(0.0)
}

/// Sends numbered packets both ways for a second and returns how many each heard.
async fn talk(a: &TestPeer, b: &TestPeer, mark: u8) -> (usize, usize) {
    let (from_a, from_b) = (
        a.audio_from(&b.open_id).len(),
        b.audio_from(&a.open_id).len(),
    );
    for seq in 0..50 {
        a.send(mark, seq);
        b.send(mark + 1, seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (
        a.audio_from(&b.open_id).len() - from_a,
        b.audio_from(&a.open_id).len() - from_b,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_udp_joins_over_tcp_and_both_hear_each_other() {
    let (_dir, server, app, secret) = setup(|_| {}).await;
    let udp = peer(&server, &app, &secret, "udp", "room").await;
    let tcp = tcp_peer(&server, &app, &secret, "tcp", "room").await;
    warm_up(&[&udp, &tcp]).await;
    let (udp_heard, tcp_heard) = talk(&udp, &tcp, 10).await;
    assert!(udp_heard >= 45, "the UDP member heard {udp_heard} of 50");
    assert!(tcp_heard >= 45, "the TCP member heard {tcp_heard} of 50");
    // Byte for byte: the payloads the TCP member sent arrive as sent.
    let got = udp.audio_from("tcp");
    assert!(
        got.contains(&common::peers::payload(11, 49)),
        "the last one"
    );
    // The server saw it as a TCP connection, and moved frames both ways on it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        metric(&server, "voipchat_media_tcp_connections", &[]).await,
        1.0
    );
    for direction in ["in", "out"] {
        let frames = metric(
            &server,
            "voipchat_media_tcp_frames_total",
            &[("direction", direction)],
        )
        .await;
        assert!(
            frames >= 50.0,
            "{frames} TCP frames {direction}: the 50 packets at least"
        );
    }
    // It leaves: the server closes the connection once the member is gone.
    tcp.exit().await;
    let end = Instant::now() + UNVERIFIED + SLACK;
    while metric(&server, "voipchat_media_tcp_connections", &[]).await > 0.0 {
        assert!(
            Instant::now() < end,
            "the TCP connection outlived its member"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    udp.exit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_media_tcp_a_client_without_udp_never_connects() {
    let (_dir, server, app, secret) = setup(|c| c.media_tcp = false).await;
    // Nothing listens on the media port's number over TCP.
    assert!(TcpStream::connect(server.media).await.is_err());
    let tcp = tcp_peer(&server, &app, &secret, "tcp", "room").await;
    let connected = tcp.sender.wait_connected(Duration::from_secs(6)).await;
    assert!(connected.is_err(), "connected without a TCP candidate?");
    server.stop().await;
}

/// Reads (and discards) until the server closes; how long that took, or None if it was
/// still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Garbage framed correctly (lengths within bounds), some of it shaped like STUN.
fn garbage_frames() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    let mut out = Vec::new();
    for i in 0..40u32 {
        let len = 20 + (i * 37) % 1200;
        out.extend_from_slice(&(len as u16).to_be_bytes());
        for j in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Every other frame starts like a STUN binding request.
            let b = match (i % 2, j) {
                (0, 0) => 0x00,
                (0, 1) => 0x01,
                _ => x as u8,
            };
            out.push(b);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tcp_peers_are_closed_within_bounds_and_others_join_as_usual() {
    const MAX: usize = 6;
    let (_dir, server, app, secret) = setup(|c| c.media_tcp_max_connections = MAX).await;
    let media: SocketAddr = server.media;
    let a = peer(&server, &app, &secret, "a", "room").await;
    let b = peer(&server, &app, &secret, "b", "room").await;
    warm_up(&[&a, &b]).await;

    // A huge length prefix: closed at once.
    let mut huge = TcpStream::connect(media).await.unwrap();
    huge.write_all(&[0xFF, 0xFF]).await.unwrap();
    let _ = huge.write_all(&[0xAB; 512]).await;
    let t = closed_within(&mut huge, Duration::from_secs(2)).await;
    assert!(
        t.is_some(),
        "a 65535-byte frame closes the connection at once"
    );

    // Garbage, half a frame then silence, and a connection that says nothing: each stays
    // at most the unverified bound, then is closed.
    let mut garbage = TcpStream::connect(media).await.unwrap();
    garbage.write_all(&garbage_frames()).await.unwrap();
    let mut half = TcpStream::connect(media).await.unwrap();
    half.write_all(&[0x00, 0x64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        .await
        .unwrap();
    let mut idle = TcpStream::connect(media).await.unwrap();
    let opened = Instant::now();
    // Fill the table to the limit, then more: the extra ones are closed as they arrive.
    let mut fillers = Vec::new();
    for _ in 0..MAX - 3 {
        fillers.push(TcpStream::connect(media).await.unwrap());
    }
    // Let the media task accept them all before the extra ones come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..4 {
        let mut extra = TcpStream::connect(media).await.unwrap();
        let t = closed_within(&mut extra, Duration::from_secs(2)).await;
        assert!(
            t.is_some(),
            "connection {} beyond the limit stays open",
            MAX + i + 1
        );
    }
    assert_eq!(
        metric(&server, "voipchat_media_tcp_connections", &[]).await,
        MAX as f64
    );

    // Meanwhile the server answers joins and forwards media as usual.
    let c = peer(&server, &app, &secret, "c", "room").await;
    warm_up(&[&a, &c]).await;
    let (a_heard, c_heard) = talk(&a, &c, 20).await;
    assert!(
        a_heard >= 45 && c_heard >= 45,
        "{a_heard} / {c_heard} of 50"
    );

    for (name, s) in [
        ("garbage", &mut garbage),
        ("half a frame", &mut half),
        ("idle", &mut idle),
    ] {
        let left = (UNVERIFIED + SLACK).saturating_sub(opened.elapsed());
        let t = closed_within(s, left).await;
        assert!(t.is_some(), "the {name} connection is still open");
        let after = opened.elapsed();
        assert!(
            after >= UNVERIFIED - Duration::from_millis(500),
            "the {name} connection was closed after {after:?}, before the bound"
        );
        println!("{name} connection closed {after:?} after it opened");
    }
    for f in &mut fillers {
        let left = (UNVERIFIED + SLACK).saturating_sub(opened.elapsed());
        assert!(
            closed_within(f, left).await.is_some(),
            "a filler is still open"
        );
    }

    // The slots are free again: a client without UDP joins and talks.
    let d = tcp_peer(&server, &app, &secret, "d", "room").await;
    warm_up(&[&a, &d]).await;
    let (a_heard, d_heard) = talk(&a, &d, 30).await;
    assert!(
        a_heard >= 45 && d_heard >= 45,
        "{a_heard} / {d_heard} of 50"
    );

    let closed = |reason: &'static str| {
        let server = &server;
        async move {
            metric(
                server,
                "voipchat_media_tcp_closed_total",
                &[("reason", reason)],
            )
            .await
        }
    };
    assert_eq!(closed("oversize_frame").await, 1.0);
    assert_eq!(closed("over_limit").await, 4.0);
    assert_eq!(closed("unverified").await, MAX as f64);
    assert_eq!(
        metric(&server, "voipchat_media_tcp_connections", &[]).await,
        1.0
    );
    assert_eq!(server.members(&app, &secret, "room").await.len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn the_tcp_port_taken_is_a_clear_bind_error() {
    let dir = common::data_dir();
    // Take a TCP port, then ask for UDP media on the same number.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = voipchat_server::Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        media_addr: format!("127.0.0.1:{port}").parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    // The UDP port of that number may be taken by someone else too; then there is nothing
    // to test here.
    let Ok(udp) = std::net::UdpSocket::bind(config.media_addr) else {
        return;
    };
    drop(udp);
    let err = match voipchat_server::Listeners::bind(&config).await {
        Ok(_) => panic!("bound a TCP port that is taken"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot bind the media address (TCP, for ICE over TCP) 127.0.0.1:{port}: "
        )) && text.contains("media_tcp = false"),
        "{text}"
    );
    // With media_tcp off the same config binds.
    let config = voipchat_server::Config {
        media_tcp: false,
        ..config
    };
    assert!(voipchat_server::Listeners::bind(&config).await.is_ok());
}
