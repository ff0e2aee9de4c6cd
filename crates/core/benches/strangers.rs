//! What a datagram from an address no member uses costs the engine, with R rooms of 10
//! connected members: junk (RTP-looking bytes) and forged ICE checks (a STUN binding
//! request naming a ufrag no session has). Such datagrams are what a flood from the
//! internet is made of. Prints the thread's CPU time per datagram.
//!
//! Run: `cargo bench -p voipchat-core --bench strangers` (a release build).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;

use std::net::SocketAddr;
use std::time::Duration;

use common::Net;
use cpu::thread_cpu;

/// A STUN binding request with a USERNAME of `user`, no integrity.
fn binding_request(user: &[u8], id: u32) -> Vec<u8> {
    let mut attr = vec![0x00, 0x06];
    attr.extend((user.len() as u16).to_be_bytes());
    attr.extend(user);
    attr.resize(attr.len().div_ceil(4) * 4, 0);
    let mut m = vec![0x00, 0x01];
    m.extend((attr.len() as u16).to_be_bytes());
    m.extend([0x21, 0x12, 0xA4, 0x42]);
    m.extend([0; 8]);
    m.extend(id.to_be_bytes());
    m.extend(attr);
    m
}

/// µs of engine CPU per datagram of each kind.
fn run(rooms: usize, datagrams: u32) -> (f64, f64) {
    let mut net = Net::with_config(|c| c.media_timeout = Duration::from_secs(600));
    for r in 0..rooms {
        for i in 0..10 {
            net.join(&format!("m{r}-{i}"), &format!("room{r}"));
        }
    }
    net.connect();
    let mut junk = vec![0x80u8, 111];
    junk.extend([0xAB; 98]);
    let mut measure = |make: &dyn Fn(u32) -> Vec<u8>| {
        let packets: Vec<Vec<u8>> = (0..datagrams).map(make).collect();
        let start = thread_cpu();
        for (n, p) in packets.iter().enumerate() {
            let from = SocketAddr::from(([127, 0, 0, 9], 1024 + (n % 60000) as u16));
            net.engine.handle_datagram(net.now, from, p);
        }
        (thread_cpu() - start).as_secs_f64() * 1e6 / f64::from(datagrams)
    };
    let junk_us = measure(&|n| {
        let mut p = junk.clone();
        p[2..6].copy_from_slice(&n.to_be_bytes());
        p
    });
    let stun_us = measure(&|n| binding_request(format!("nobody{n}:x").as_bytes(), n));
    (junk_us, stun_us)
}

fn main() {
    println!("rooms of 10 | µs per junk datagram | µs per forged ICE check");
    for rooms in [1, 10, 50] {
        let (junk, stun) = run(rooms, 20_000);
        println!("{rooms:>11} | {junk:>20.3} | {stun:>23.3}");
    }
}
