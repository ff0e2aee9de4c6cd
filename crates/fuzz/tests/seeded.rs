//! Every fuzz entry point over seeded inputs, in an ordinary `cargo test`: real frames and
//! offers, the same with bytes changed, and pseudo-random bytes. Deterministic: a failure
//! prints the input, which then goes to `regressions/`.

use voipchat_fuzz::TARGETS;

/// A small deterministic generator (xorshift64*), so the inputs are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Frames a real client sends, as seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let sig = "0".repeat(64);
    [
        format!(r#"{{"type":"join","appId":"app","openId":"u1","groupId":"g","nonceStr":"n","timeStamp":1,"signature":"{sig}","roomType":"voice","muteConfig":{{"muteMicrophone":false,"muteEarphone":false}},"sdp":"v=0\r\n"}}"#),
        r#"{"type":"exit"}"#.to_string(),
        r#"{"type":"updateMuteConfig","muteConfig":{"muteMicrophone":true,"muteEarphone":false,"muteCamera":true}}"#.to_string(),
        r#"{"type":"subscribeVideoMembers","openIdList":["a","b"]}"#.to_string(),
        r#"{"type":"answer","sdp":"v=0"}"#.to_string(),
        r#"{"type":"ping"}"#.to_string(),
        r#"{"type":"joinResult","errCode":0,"errMsg":"joinVoIPChat:ok","openIdList":["a"],"mutedOpenIdList":[]}"#.to_string(),
        r#"{"type":"interrupted","errCode":-11001,"errMsg":"onVoIPChatInterrupted:fail kicked"}"#.to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn run(name: &str, f: voipchat_fuzz::Target, inputs: usize, max_len: usize, seed: u64) {
    let mut rng = Rng(seed);
    let seeds = seeds();
    for i in 0..inputs {
        let data = match i % 3 {
            0 => rng.bytes(max_len),
            _ => {
                let mut s = seeds[i % seeds.len()].clone();
                for _ in 0..=rng.next() % 6 {
                    let at = (rng.next() as usize) % (s.len() + 1);
                    match rng.next() % 3 {
                        0 if at < s.len() => s[at] = rng.next() as u8,
                        1 => s.insert(at, rng.next() as u8),
                        _ if at < s.len() => {
                            s.remove(at);
                        }
                        _ => {}
                    }
                }
                s
            }
        };
        let result = std::panic::catch_unwind(|| f(&data));
        assert!(
            result.is_ok(),
            "{name} failed on input {i} (seed {seed}): {data:?}"
        );
    }
}

fn target(name: &str) -> voipchat_fuzz::Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .expect("a target of that name")
}

#[test]
fn client_frames() {
    run("client_frame", target("client_frame"), 20_000, 600, 1);
}

#[test]
fn server_frames() {
    run("server_frame", target("server_frame"), 20_000, 600, 2);
}

#[test]
fn signatures() {
    run("signature", target("signature"), 3_000, 900, 3);
}

#[test]
fn engine_datagrams() {
    run("engine_datagrams", target("engine_datagrams"), 40, 3_000, 4);
}

#[test]
fn engine_signaling() {
    run(
        "engine_signaling",
        target("engine_signaling"),
        300,
        2_000,
        5,
    );
}

#[test]
fn store_inputs() {
    run("store_input", target("store_input"), 300, 1_500, 6);
}

#[test]
fn red_payloads() {
    run("red_payload", target("red_payload"), 20_000, 64, 7);
}

/// The datagram target gets past the gate: its peer connects (ICE and DTLS), so hostile
/// datagrams meet a live session and not only the unknown-source check.
#[test]
fn the_datagram_target_reaches_a_connected_session() {
    // Ten times "the peer and the engine talk for 8 × 20 ms".
    let input = [3u8, 7].repeat(10);
    assert!(voipchat_fuzz::engine::datagrams_run(&input).connected);
}

/// The signaling target admits members and fills a room, so the rules it checks are met
/// by real joins and not only refusals.
#[test]
fn the_signaling_target_fills_a_room() {
    let mut input = Vec::new();
    for c in 0..4u8 {
        // conn c joins g0 as u<c>, voice, the real voice offer, nothing muted.
        input.extend([c, 0, c, 0, 0, 0, 0, 0, 0]);
    }
    // The room's quota is granted.
    input.extend([0, 7, 0, 0]);
    let run = voipchat_fuzz::engine::signaling_run(&input);
    assert!(run.full, "{run:?}");
    assert_eq!(run.most_members, 3, "the cap of the fuzzed engine");
}
