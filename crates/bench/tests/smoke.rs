//! CI smoke of the bench: one room of four members for 3 s against the debug server, with
//! the floor too, and again with Janus. It checks that the bench works end to end and that
//! nothing is lost, misrouted or unheard; it asserts no timing (CI machines are noisy).
//!
//! The server binary comes from another package, so Cargo cannot hand us its path: it is
//! `$VOIPCHAT_BIN` if set, else `voipchat` in the target directory of this test
//! (`target/debug/voipchat`, built by `cargo build`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VOIPCHAT_BIN") {
        return PathBuf::from(p);
    }
    // The test runs from target/<profile>/deps/; the binaries are one level up.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    profile_dir.join("voipchat")
}

/// Runs the bench on 1 room of 4 members for 3 s with `extra` arguments; asserts that it
/// ran `systems` in that order and that each delivered every packet to every other member.
fn smoke(extra: &[&str], systems: &[&str]) {
    let server = server_binary();
    assert!(
        server.is_file(),
        "the voipchat server binary is missing at {}: run `cargo build -p voipchat-server` \
         first, or set VOIPCHAT_BIN to its path",
        server.display()
    );
    let json = std::env::temp_dir().join(format!(
        "voipchat-bench-smoke-{}-{}.json",
        std::process::id(),
        systems.join("-")
    ));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_voipchat-bench"))
        .arg("--voipchat")
        .arg(&server)
        .args([
            "--rooms",
            "1",
            "--members",
            "4",
            "--seconds",
            "3",
            "--warmup",
            "1",
        ])
        .args(["--no-pin", "--check", "--json"])
        .arg(&json)
        .args(extra)
        .output()
        .expect("the bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the bench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the smoke took {:?}",
        started.elapsed()
    );
    let text = std::fs::read_to_string(&json).expect("the bench wrote its JSON");
    let _ = std::fs::remove_file(&json);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the JSON parses");
    let runs = doc["runs"].as_array().expect("runs is a list");
    let got: Vec<&str> = runs.iter().filter_map(|r| r["system"].as_str()).collect();
    assert_eq!(got, systems, "{stdout}");
    for run in runs {
        let system = run["system"].as_str().unwrap_or("?");
        let num = |k: &str| run[k].as_u64().unwrap_or(u64::MAX);
        // 4 members: each of the 12 (receiver, sender) pairs, about 150 packets each.
        assert!(
            num("expected") >= 12 * 100,
            "{system}: expected {}\n{stdout}",
            num("expected")
        );
        assert_eq!(
            num("received"),
            num("expected"),
            "{system}: packets lost\n{stdout}"
        );
        if extra.contains(&"--video") {
            // Each of the 4 members' cameras reaches the members that get it by default:
            // 3 + 3 + 2 + 2 receivers, 60 packets/s each for 3 s.
            assert!(
                num("video_expected") >= 10 * 120,
                "{system}: video expected {}\n{stdout}",
                num("video_expected")
            );
            assert_eq!(
                num("video_received"),
                num("video_expected"),
                "{system}: video lost\n{stdout}"
            );
        }
        assert_eq!(num("misrouted"), 0, "{system}: misrouted\n{stdout}");
        assert_eq!(num("mislabelled"), 0, "{system}: mislabelled\n{stdout}");
        assert_eq!(
            num("unheard_pairs"),
            0,
            "{system}: someone heard nobody\n{stdout}"
        );
        assert_eq!(
            run["join_failures"].as_array().map(Vec::len),
            Some(0),
            "{stdout}"
        );
        assert_eq!(
            run["late_errors"].as_array().map(Vec::len),
            Some(0),
            "{stdout}"
        );
    }
}

#[test]
fn one_room_delivers_every_packet_to_every_other_member() {
    smoke(&[], &["voipchat", "floor"]);
}

/// Janus's VideoRoom under the same load, in the bench's own network namespace (root and
/// Debian's `janus`, which scripts/test.sh installs).
#[test]
fn janus_too_delivers_every_packet_to_every_other_member() {
    smoke(&["--janus", "--no-floor"], &["voipchat", "janus"]);
}

/// Video rooms: every member's camera too, to the members that get it by default.
#[test]
fn video_rooms_deliver_every_camera_packet_to_its_default_receivers() {
    smoke(&["--video"], &["voipchat", "floor"]);
}
