//! Ghost removal (docs/security.md#limits): a member whose network dies while its TCP
//! connection stays open leaves its room within 5 s, and a healthy member that sends no
//! audio at all (DTX, muted) stays. Real Rust-client members over loopback.
//!
//! - UDP blackholed (nftables drop in a network namespace this test makes): the media
//!   liveness rule removes the member, its WebSocket still working (it is told -11003).
//! - WebSocket frozen (a TCP relay that stops moving bytes but keeps both sockets open):
//!   the server's pings go unanswered and the member is disconnected (-11007).
//! - Silent for 15 s with ICE alive: nobody is removed.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::peers::{peer, setup, warm_up, TestPeer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Set inside the namespace the blackhole test re-runs itself in.
const IN_NETNS: &str = "VOIPCHAT_GHOSTS_NETNS";

/// Polls until the room holds exactly `want`, at most `limit`; returns when it did.
async fn until_members(
    server: &common::TestServer,
    app: &voipchat_proto::AppId,
    secret: &voipchat_proto::Secret,
    want: &[&str],
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let members = server.members(app, secret, "g1").await;
        if members.iter().map(String::as_str).eq(want.iter().copied()) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Re-runs test `name` of this binary in a new network namespace with only `lo`, where it
/// may change nftables without touching the machine's.
fn run_in_netns(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .status()
        .expect("unshare runs (needs root, as the media tests do)");
    assert!(
        status.success(),
        "{name} inside its network namespace: {status}"
    );
}

fn nft(script: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs (Debian nftables)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f: {script}");
}

#[test]
fn udp_blackholed_member_is_removed_within_5_s() {
    if std::env::var_os(IN_NETNS).is_none() {
        return run_in_netns("udp_blackholed_member_is_removed_within_5_s");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(blackholed());
}

async fn blackholed() {
    let (_dir, server, app, secret) = setup(|c| c.media_tcp = false).await;
    // The member to cut off sends and receives media on 127.0.0.2, the other on 127.0.0.1;
    // both WebSockets are on 127.0.0.1 and stay up.
    let key = server.session_key(&app, &secret, "o_ghost").await;
    let ghost = TestPeer::join_with(&server, &app, &key, "o_ghost", "g1", |o| {
        o.bind_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
    })
    .await
    .expect("o_ghost joins");
    let other = peer(&server, &app, &secret, "o_other", "g1").await;
    warm_up(&[&ghost, &other]).await;
    // Long enough for one consent gap of the ghost's (str0m checks every 3 s at most): until
    // the server has seen its rhythm it allows the slowest one RFC 7675 permits (7.5 s in
    // all), so that a member silent from its first second is not removed (Firefox was).
    tokio::time::sleep(Duration::from_secs(4)).await;

    nft("table inet ghost {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    \
         ip saddr 127.0.0.2 meta l4proto udp drop\n    ip daddr 127.0.0.2 meta l4proto udp drop\n  }\n}\n");
    let cut = Instant::now();
    let removed = until_members(
        &server,
        &app,
        &secret,
        &["o_other"],
        Duration::from_secs(10),
    )
    .await;
    println!("UDP blackholed: the member was removed {removed:?} after its UDP was cut");
    let removed = removed.expect("removed within 10 s");
    assert!(
        removed < Duration::from_secs(5),
        "removed within 5 s: {removed:?}"
    );
    // Its WebSocket still works: it is told why.
    assert!(
        ghost
            .wait_until(Duration::from_secs(2), || ghost.interrupted().is_some())
            .await
    );
    assert_eq!(ghost.interrupted(), Some(-11003));
    assert!(
        other
            .wait_until(Duration::from_secs(2), || other
                .members_changed()
                .last()
                .is_some_and(|l| l == &["o_other".to_string()]))
            .await,
        "the other member saw it leave"
    );
    println!(
        "UDP blackholed: the other member saw it leave {:?} after the cut",
        cut.elapsed()
    );
    server.stop().await;
}

/// A relay between a client and the server that can freeze: from then on it moves no
/// byte either way, but keeps both TCP connections open (a dead network under an open TCP).
struct FreezingRelay {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl FreezingRelay {
    async fn start(upstream: SocketAddr) -> FreezingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            // One client connection is all the test needs; bounded to a few.
            for _ in 0..4 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let server = TcpStream::connect(upstream).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, f.clone()));
                tokio::spawn(pipe(sr, cw, f.clone()));
            }
        });
        FreezingRelay { addr, frozen }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::Relaxed) {
            // Hold both sockets open, move nothing, for longer than any test runs.
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_websocket_stops_answering_pings_is_removed() {
    let (_dir, server, app, secret) = setup(|c| c.media_tcp = false).await;
    let relay = FreezingRelay::start(server.http).await;
    let key = server.session_key(&app, &secret, "o_frozen").await;
    let url = format!("ws://{}/ws", relay.addr);
    let frozen = TestPeer::join_with(&server, &app, &key, "o_frozen", "g1", |o| o.server = url)
        .await
        .expect("o_frozen joins through the relay");
    let other = peer(&server, &app, &secret, "o_other", "g1").await;
    warm_up(&[&frozen, &other]).await;
    // Its media keeps flowing all along: only the WebSocket is dead.
    let sender = frozen.sender.clone();
    let media = tokio::spawn(async move {
        for seq in 0..500u32 {
            let _ = sender.send_opus(
                common::peers::payload(7, seq),
                Duration::from_millis(20),
                None,
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    relay.frozen.store(true, Ordering::Relaxed);
    let cut = Instant::now();
    let removed = until_members(
        &server,
        &app,
        &secret,
        &["o_other"],
        Duration::from_secs(10),
    )
    .await;
    println!("WebSocket frozen (media still flowing): removed {removed:?} after the freeze");
    let removed = removed.expect("removed within 10 s");
    assert!(
        removed < Duration::from_secs(5),
        "removed within 5 s: {removed:?}"
    );
    let (_, metrics) = server.http_request("GET", "/metrics", None, None).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "voipchat_ws_closed_by_server_total{reason=\"ping_timeout\"} 1"),
        "counted as a ping timeout"
    );
    println!("frozen cut to removal: {:?}", cut.elapsed());
    media.abort();
    server.stop().await;
}

/// Two members that send no audio at all for 15 s (DTX silence, or muted): only ICE
/// keepalives flow, and both stay in the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_members_with_ice_alive_stay() {
    let (_dir, server, app, secret) = setup(|c| c.media_tcp = false).await;
    let a = peer(&server, &app, &secret, "o_a", "g1").await;
    let b = peer(&server, &app, &secret, "o_b", "g1").await;
    a.wait_connected().await;
    b.wait_connected().await;
    let start = Instant::now();
    let mut checks = 0;
    while start.elapsed() < Duration::from_secs(15) {
        let members = server.members(&app, &secret, "g1").await;
        assert_eq!(members, vec!["o_a", "o_b"], "after {:?}", start.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("silent for 15 s: both members present at all {checks} checks");
    assert!(
        a.audio_from("o_b").is_empty() && b.audio_from("o_a").is_empty(),
        "no audio flowed"
    );
    assert_eq!(a.interrupted(), None);
    assert_eq!(b.interrupted(), None);
    server.stop().await;
}
