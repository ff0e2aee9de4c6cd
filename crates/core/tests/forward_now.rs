//! A forwarded copy is in the engine's output as soon as the datagram that carried it is
//! handled: the caller need not call `handle_timeout` (nor wait for a timer) to get it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Net;
use voipchat_core::Output;

fn frame(n: u32) -> Vec<u8> {
    let mut v = vec![0x78, 0];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0xAB; 60]);
    v
}

#[test]
fn copies_leave_with_the_datagram_not_at_the_next_timeout() {
    let mut net = Net::new(10);
    for name in ["alice", "bob", "carol"] {
        net.join(name, "g");
    }
    net.connect();
    net.advance(Duration::from_millis(300));
    // Warm up: every slot carries alice.
    for n in 0..10 {
        net.speak(0, &frame(n), -30);
        net.advance(Duration::from_millis(20));
    }
    let receivers = [net.peers[1].addr, net.peers[2].addr];
    for n in 0..20 {
        net.now += Duration::from_millis(20);
        let datagrams = net.capture(0, &frame(100 + n), -30);
        assert!(!datagrams.is_empty());
        let now = net.now;
        let from = net.peers[0].addr;
        // What was due before the packet arrived is done first, as a server's loop does.
        net.engine.handle_timeout(now);
        while !matches!(net.engine.poll_output(), Output::Timeout(_)) {}
        for d in &datagrams {
            net.engine.handle_datagram(now, from, d);
        }
        // No handle_timeout: what the engine holds now is what a server sends at once.
        let mut copies: HashMap<std::net::SocketAddr, usize> = HashMap::new();
        loop {
            match net.engine.poll_output() {
                Output::Transmit(t) => *copies.entry(t.destination).or_default() += 1,
                Output::Timeout(at) => {
                    assert!(at > now, "packet {n}: the engine wants a timeout at once");
                    break;
                }
                _ => {}
            }
        }
        for r in receivers {
            assert!(
                copies.get(&r).copied().unwrap_or(0) >= 1,
                "packet {n}: no copy to {r} yet: {copies:?}"
            );
        }
    }
}
