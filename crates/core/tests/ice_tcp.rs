//! ICE over TCP in the engine: the passive TCP candidate in the answer, and a peer whose only
//! candidate is an active TCP one joining and talking with a UDP peer, on the in-memory
//! network (the peer's packets arrive as `handle_tcp_frame`, the engine's TCP `Transmit`s go
//! back to it).

mod common;

use common::{ids, Net};
use std::time::Duration;
use str0m::net::Protocol;
use voipchat_proto::ServerMsg;

fn frame(peer: usize, n: u32) -> Vec<u8> {
    let mut v = vec![0x78, peer as u8];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0xAB; 40]);
    v
}

fn net_with_tcp(on: bool) -> Net {
    Net::with_config(|cfg| {
        cfg.ice_tcp = on;
        cfg.media_timeout = Duration::from_secs(5);
    })
}

/// The `a=candidate` lines of the SDP a peer's joinResult carried.
fn answer_candidates(net: &Net, idx: usize) -> Vec<String> {
    let answer = net.peers[idx]
        .messages
        .iter()
        .find_map(|m| match m {
            ServerMsg::JoinResult { sdp: Some(s), .. } => Some(s.clone()),
            _ => None,
        })
        .expect("a joinResult with an answer");
    answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_answer_carries_a_udp_and_a_passive_tcp_candidate_on_one_port_number() {
    let mut net = net_with_tcp(true);
    let a = net.join("alice", "g");
    let lines = answer_candidates(&net, a);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    // a=candidate:<foundation> 1 <proto> <prio> <ip> <port> typ host [tcptype passive] ufrag …
    let fields: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let udp = fields
        .iter()
        .find(|f| f[2].eq_ignore_ascii_case("udp"))
        .expect("a UDP candidate");
    let tcp = fields
        .iter()
        .find(|f| f[2].eq_ignore_ascii_case("tcp"))
        .expect("a TCP candidate");
    assert_eq!(&udp[4..8], &["127.0.0.1", "7882", "typ", "host"]);
    assert!(!udp.contains(&"tcptype"), "no tcptype on UDP: {udp:?}");
    assert_eq!(
        &tcp[4..10],
        &["127.0.0.1", "7882", "typ", "host", "tcptype", "passive"]
    );
    let prio = |f: &Vec<&str>| f[3].parse::<u32>().unwrap();
    assert!(
        prio(udp) > prio(tcp),
        "a client that reaches both prefers UDP"
    );
}

#[test]
fn without_ice_tcp_the_answer_has_only_the_udp_candidate_and_tcp_frames_are_dropped() {
    let mut net = net_with_tcp(false);
    let a = net.join("alice", "g");
    let lines = answer_candidates(&net, a);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(" udp ") || lines[0].contains(" UDP "));
    let before = net.engine.counters().dropped.unknown_source;
    net.engine
        .handle_tcp_frame(net.now, "127.0.0.1:30000".parse().unwrap(), &[0, 1, 0, 0]);
    assert_eq!(net.engine.counters().dropped.unknown_source, before + 1);
}

#[test]
fn a_tcp_only_peer_and_a_udp_peer_hear_each_other() {
    let mut net = net_with_tcp(true);
    let u = net.join("udp", "g");
    let t = net.add_tcp_peer("tcp");
    net.send_join(t, "g", Default::default());
    net.connect();
    assert_eq!(net.join_code(t), Some(0));
    assert!(net.peers[t].connected, "ICE and DTLS up over TCP");
    assert!(net.peers[u].connected);
    let tcp_addr = net.peers[t].addr;
    assert!(net.engine.knows_source(Protocol::Tcp, tcp_addr));
    assert!(
        !net.engine.knows_source(Protocol::Udp, tcp_addr),
        "the TCP peer's address is known as TCP only"
    );
    net.advance(Duration::from_millis(200));
    for n in 0..30 {
        net.speak(u, &frame(u, n), -30);
        net.speak(t, &frame(t, n), -30);
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(200));
    let heard = |rx: usize, tx: usize| -> Vec<Vec<u8>> {
        let who = net.peers[tx].open_id.clone();
        net.peers[rx]
            .received
            .iter()
            .filter(|(f, _)| f.as_ref() == Some(&who))
            .map(|(_, d)| d.clone())
            .collect()
    };
    let want = |p: usize| (0..30).map(|n| frame(p, n)).collect::<Vec<_>>();
    assert_eq!(heard(u, t), want(t), "the UDP peer hears the TCP peer");
    assert_eq!(heard(t, u), want(u), "the TCP peer hears the UDP peer");
    assert_eq!(
        net.engine.room_members(&Net::key("g")),
        ids(&["udp", "tcp"])
    );
}

#[test]
fn a_tcp_peer_that_leaves_is_forgotten_and_a_silent_one_times_out() {
    let mut net = net_with_tcp(true);
    let t = net.add_tcp_peer("tcp");
    net.send_join(t, "g", Default::default());
    let s = net.add_tcp_peer("quiet");
    net.send_join(s, "g", Default::default());
    net.connect();
    let (ta, sa) = (net.peers[t].addr, net.peers[s].addr);
    assert!(net.engine.knows_source(Protocol::Tcp, ta));
    assert!(net.engine.knows_source(Protocol::Tcp, sa));
    // One exits: its connection's address no longer reaches anyone (the shell closes it).
    let conn = net.peers[t].conn;
    net.engine.handle_exit(net.now, conn);
    net.settle();
    assert!(!net.engine.knows_source(Protocol::Tcp, ta));
    // The other goes silent: removed after the media timeout, as a UDP member would be.
    net.peers[s].online = false;
    net.advance(Duration::from_secs(6));
    assert_eq!(net.interrupted_code(s), Some(-11003));
    assert!(!net.engine.knows_source(Protocol::Tcp, sa));
}
