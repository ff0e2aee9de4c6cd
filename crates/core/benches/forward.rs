//! Forwarding cost of the engine alone, in memory: one speaker in a room of N members, real
//! SRTP packets in (made by a real str0m peer beforehand), every transmit out drained and
//! dropped. Prints the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, so time stolen by other
//! processes or the hypervisor does not count) spent in the engine per incoming packet and per
//! forwarded copy. Packets are 5 ms apart in virtual time.
//!
//! Run: `cargo bench -p voipchat-core --bench forward` (a release build).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;

use std::time::Duration;

use common::Net;
use cpu::thread_cpu;
use voipchat_core::Output;

fn frame(seq: u32) -> Vec<u8> {
    let mut v = vec![0x78, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend(std::iter::repeat_n(0xAB, 74)); // an 80-byte Opus packet, ~32 kbit/s
    v
}

/// Returns (µs per incoming packet, µs per forwarded copy, copies forwarded).
fn run(members: usize, packets: u32) -> (f64, f64, u64) {
    // Receivers send nothing while the bench runs: keep them from timing out.
    let mut net = Net::with_config(|c| c.media_timeout = Duration::from_secs(600));
    for i in 0..members {
        net.join(&format!("m{i}"), "bench");
    }
    net.connect();
    net.advance(Duration::from_millis(300));
    // Warm up: the slots of every receiver carry the speaker.
    for n in 0..20 {
        net.speak(0, &frame(n), -30);
        net.advance(Duration::from_millis(20));
    }
    let mut batches = Vec::with_capacity(packets as usize);
    let start_time = net.now;
    for n in 0..packets {
        net.now = start_time + Duration::from_millis(5) * n;
        batches.push(net.capture(0, &frame(1000 + n), -30));
    }
    let (forwarded, busy) = forward_batches(&mut net, &batches, start_time);
    let per_packet = busy.as_secs_f64() * 1e6 / packets as f64;
    let per_copy = busy.as_secs_f64() * 1e6 / forwarded.max(1) as f64;
    (per_packet, per_copy, forwarded)
}

/// The measured part: every batch through the engine, every output drained. Its own
/// function, never inlined, so `scripts/count-instructions.sh` can have callgrind count
/// the instructions of this alone (`--toggle-collect`). Returns (copies out, thread CPU).
#[inline(never)]
fn forward_batches(
    net: &mut Net,
    batches: &[Vec<Vec<u8>>],
    start_time: std::time::Instant,
) -> (u64, Duration) {
    let from = net.peers[0].addr;
    let mut forwarded = 0u64;
    let mut busy = Duration::ZERO;
    for (n, batch) in batches.iter().enumerate() {
        let now = start_time + Duration::from_millis(5) * n as u32;
        let t0 = thread_cpu();
        for datagram in batch {
            net.engine.handle_datagram(now, from, datagram);
        }
        net.engine.handle_timeout(now);
        loop {
            match net.engine.poll_output() {
                Output::Timeout(_) => break,
                Output::Transmit(_) => forwarded += 1,
                _ => {}
            }
        }
        busy += thread_cpu() - t0;
    }
    (forwarded, busy)
}

fn main() {
    println!("engine forwarding, in memory, one speaker, 80-byte Opus packets, thread CPU time");
    println!(
        "{:>8} {:>10} {:>18} {:>18}",
        "members", "packets", "µs/incoming pkt", "µs/forwarded copy"
    );
    // BENCH_MEMBERS / BENCH_PACKETS: one room size and count only (the instruction count
    // runs the bench under callgrind, 50 times slower).
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let sizes: Vec<usize> = match env("BENCH_MEMBERS") {
        Some(m) => vec![m as usize],
        None => vec![2, 5, 10],
    };
    for members in sizes {
        let packets = env("BENCH_PACKETS").unwrap_or(3000);
        let (per_packet, per_copy, forwarded) = run(members, packets);
        println!(
            "{members:>8} {packets:>10} {per_packet:>18.2} {per_copy:>18.2}   ({forwarded} datagrams out)"
        );
    }
}
