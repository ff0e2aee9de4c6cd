//! The TURN client against the real coturn (Debian's `turnserver`, which scripts/test.sh
//! installs), on 127.0.0.1 with the TURN REST scheme voipchat uses: it allocates a relay,
//! binds a channel to a peer and relays both ways; an allocation made in time keeps working
//! after its credential expired (what docs/turn.md and `turn_ttl_secs` rely on); an expired
//! credential or a wrong secret gets no allocation, with a reason.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use tokio::net::UdpSocket;
use voipchat_client::turn::{TurnClient, TurnState};
use voipchat_proto::Secret;

const SECRET: &str = "coturn-test-secret-0123456789";

/// coturn on 127.0.0.1, killed on drop.
struct Coturn {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_coturn() -> Coturn {
    let dir = std::env::temp_dir().join(format!("voipchat-coturn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_udp_port();
    let relay = 20_000 + (std::process::id() % 20_000) as u16;
    let conf = format!(
        "use-auth-secret\nstatic-auth-secret={SECRET}\nrealm=voipchat.test\n\
         listening-ip=127.0.0.1\nlistening-port={port}\nrelay-ip=127.0.0.1\n\
         min-port={relay}\nmax-port={}\n\
         allow-loopback-peers\ndenied-peer-ip=0.0.0.0-255.255.255.255\nallowed-peer-ip=127.0.0.1\n\
         no-tls\nno-dtls\nno-tcp\nno-cli\nfingerprint\nlog-file=stdout\nsimple-log\n\
         pidfile={}\nuserdb={}\n",
        relay + 50,
        dir.join("turnserver.pid").display(),
        dir.join("turndb").display(),
    );
    let file = dir.join("turnserver.conf");
    std::fs::write(&file, conf).unwrap();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let child = Command::new("turnserver")
        .arg("-c")
        .arg(&file)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start turnserver ({e}): install Debian's coturn (scripts/test.sh does)")
        });
    let mut coturn = Coturn { child, port, dir };
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(coturn.dir.join("log")).unwrap_or_default();
        if log.contains("Total General servers") {
            return coturn;
        }
        if let Ok(Some(status)) = coturn.child.try_wait() {
            panic!("turnserver exited with {status}:\n{log}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "coturn did not start:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// TURN REST credentials, computed here: `expiry:name`, base64(HMAC-SHA1(secret, username)).
fn credentials(secret: &str, expiry: u64) -> (String, Secret) {
    let username = format!("{expiry}:rust-test");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, Secret::new(credential))
}

/// Drives `turn` on `socket` until `done` or `limit`; returns what it relayed to us.
async fn drive(
    turn: &mut TurnClient,
    socket: &UdpSocket,
    limit: Duration,
    done: impl Fn(&TurnClient, &[(SocketAddr, Vec<u8>)]) -> bool,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while !done(turn, &got) && Instant::now() < deadline {
        while let Some(d) = turn.poll_transmit() {
            socket.send_to(&d, turn.server()).await.unwrap();
        }
        let wake = turn.poll_timeout().unwrap_or(deadline).min(deadline);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, from) = r.unwrap();
                assert_eq!(from, turn.server());
                if let Some(x) = turn.handle_datagram(Instant::now(), &buf[..n]) {
                    got.push(x);
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                turn.handle_timeout(Instant::now());
            }
        }
    }
    while let Some(d) = turn.poll_transmit() {
        socket.send_to(&d, turn.server()).await.unwrap();
    }
    got
}

async fn allocate(coturn: &Coturn, secret: &str, expiry: u64) -> (TurnClient, UdpSocket) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server: SocketAddr = ([127, 0, 0, 1], coturn.port).into();
    let (username, credential) = credentials(secret, expiry);
    let mut turn = TurnClient::new(Instant::now(), server, &username, credential);
    drive(&mut turn, &socket, Duration::from_secs(5), |t, _| {
        !matches!(t.state(), TurnState::Allocating)
    })
    .await;
    (turn, socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_both_ways_and_outlives_its_credential_and_refuses_bad_ones() {
    let coturn = start_coturn();

    // A credential that expires in 2 s: enough to allocate, then it lapses.
    let expiry = unix_now() + 2;
    let (mut turn, socket) = allocate(&coturn, SECRET, expiry).await;
    let relayed = turn
        .relayed()
        .unwrap_or_else(|| panic!("no allocation: {:?}", turn.state()));
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");

    // A peer that echoes what it gets, naming the sender.
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let mut senders = Vec::new();
        for _ in 0..2 {
            let (n, from) = peer.recv_from(&mut buf).await.unwrap();
            senders.push(from);
            peer.send_to(&buf[..n], from).await.unwrap();
        }
        senders
    });

    // Past the expiry, the allocation still takes new requests (a ChannelBind here).
    while unix_now() <= expiry {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    turn.send_to(
        Instant::now(),
        peer_addr,
        b"first, queued until the channel is bound",
    );
    let got = drive(&mut turn, &socket, Duration::from_secs(5), |_, got| {
        !got.is_empty()
    })
    .await;
    assert_eq!(
        got,
        vec![(
            peer_addr,
            b"first, queued until the channel is bound".to_vec()
        )],
        "the echo came back through the relay: {:?}",
        turn.state()
    );
    turn.send_to(Instant::now(), peer_addr, b"second, on the bound channel");
    let got = drive(&mut turn, &socket, Duration::from_secs(5), |_, got| {
        !got.is_empty()
    })
    .await;
    assert_eq!(
        got,
        vec![(peer_addr, b"second, on the bound channel".to_vec())]
    );
    let senders = tokio::time::timeout(Duration::from_secs(5), echo)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        senders,
        vec![relayed, relayed],
        "the peer saw the relayed address only"
    );
    turn.close(Instant::now());
    drive(&mut turn, &socket, Duration::ZERO, |_, _| false).await;

    // An expired credential gets no allocation; neither does a wrong secret.
    let (turn, _s) = allocate(&coturn, SECRET, unix_now() - 10).await;
    assert!(
        matches!(turn.state(), TurnState::Failed(why) if why.contains("401")),
        "{:?}",
        turn.state()
    );
    let (turn, _s) = allocate(&coturn, "not-the-secret-0123456789", unix_now() + 600).await;
    assert!(
        matches!(turn.state(), TurnState::Failed(why) if why.contains("401")),
        "{:?}",
        turn.state()
    );
}
