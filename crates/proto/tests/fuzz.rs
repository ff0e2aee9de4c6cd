//! Random mutations of the golden frames must never make the parsers panic, and whatever
//! `ClientMsg::parse` accepts must survive a round trip. A tiny xorshift PRNG with a fixed
//! seed keeps the run reproducible; set VOIPCHAT_FUZZ_SEED / VOIPCHAT_FUZZ_ITERS to explore.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use voipchat_proto::{ClientMsg, ErrorCode, ServerMsg};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every frame in a fixture directory (the invalid ones too: near-misses are good seeds).
fn corpus(sub: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(sub);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.ends_with("cases.json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Tokens that steer mutations into the interesting corners of JSON and of our fields.
const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "false",
    "-",
    "0",
    "1.5",
    "-1",
    "1e999",
    "9007199254740993",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\u{feff}",
    "\"type\"",
    "\"join\"",
    "\"exit\"",
    "\"answer\"",
    "\"sdp\"",
    "\"\"",
    "\"muteConfig\":{}",
    "\"timeStamp\":",
    "\"openId\":\"",
    "é",
    "房",
];

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = b.len();
        match rng.below(7) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            // Replace a byte with a random one.
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            // Truncate.
            2 => b.truncate(rng.below(len + 1)),
            // Insert random bytes.
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, bytes);
            }
            // Insert a token.
            4 => {
                let at = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            // Delete a range.
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below(16.min(len - at));
                b.drain(at..at + n);
            }
            // Duplicate a range.
            _ if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below(64.min(len - at));
                let copy = b[at..at + n].to_vec();
                let to = rng.below(len + 1);
                b.splice(to..to, copy);
            }
            _ => b.push(rng.next() as u8),
        }
    }
    b
}

/// The codes `ClientMsg::parse` may refuse with; anything else is a bug in the parser.
const PARSE_CODES: [ErrorCode; 4] = [
    ErrorCode::MalformedMessage,
    ErrorCode::MessageTooLarge,
    ErrorCode::InvalidField,
    ErrorCode::InvalidSdp,
];

#[test]
fn mutated_frames_never_panic_the_parsers() {
    let seed = env_or("VOIPCHAT_FUZZ_SEED", 0x9E37_79B9_7F4A_7C15);
    let iters = env_or("VOIPCHAT_FUZZ_ITERS", 20_000);
    let mut rng = XorShift(seed | 1);
    let mut client = corpus("client");
    client.extend(corpus("invalid"));
    let server = corpus("server");

    let mut accepted = 0u64;
    for i in 0..iters {
        let base = &client[rng.below(client.len())];
        let bytes = mutate(&mut rng, base);
        let frame = String::from_utf8_lossy(&bytes);
        let result =
            catch_unwind(AssertUnwindSafe(|| ClientMsg::parse(&frame))).unwrap_or_else(|_| {
                panic!("iteration {i} (seed {seed:#x}): parse panicked on {frame:?}")
            });
        match result {
            Ok(msg) => {
                accepted += 1;
                // What is accepted is re-sent identically.
                assert_eq!(
                    ClientMsg::parse(&msg.to_json()).as_ref(),
                    Ok(&msg),
                    "iteration {i}: {frame:?} does not round-trip"
                );
            }
            Err(f) => assert!(
                PARSE_CODES.contains(&f.code),
                "iteration {i}: {frame:?} refused with {f}, not a parse code"
            ),
        }

        // The client SDKs parse what the server sends: same property, fewer rounds.
        if i % 4 == 0 {
            let base = &server[rng.below(server.len())];
            let bytes = mutate(&mut rng, base);
            let frame = String::from_utf8_lossy(&bytes);
            let result = catch_unwind(AssertUnwindSafe(|| ServerMsg::parse(&frame)))
                .unwrap_or_else(|_| {
                    panic!("iteration {i} (seed {seed:#x}): ServerMsg::parse panicked on {frame:?}")
                });
            if let Ok(msg) = result {
                assert_eq!(ServerMsg::parse(&msg.to_json()).as_ref(), Ok(&msg));
            }
        }
    }
    // The mutations must not be so destructive that nothing ever parses.
    assert!(
        accepted > 0,
        "no mutated frame was accepted in {iters} runs"
    );
}
