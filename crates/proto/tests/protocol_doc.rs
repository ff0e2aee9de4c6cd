//! docs/protocol.md shows every golden frame: each fixture of fixtures/client and
//! fixtures/server appears as a ```json block (SDP strings may be cut short with "…"), every
//! block parses as the message it shows, and the limits quoted are the constants' values.

use std::path::Path;

use serde_json::Value;
use voipchat_proto::signal::{ID_MAX_CHARS, MAX_FRAME_BYTES, MAX_SDP_BYTES, NONCE_MAX_CHARS};
use voipchat_proto::{ClientMsg, ServerMsg};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn doc() -> String {
    let path = manifest().join("../../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_blocks(doc: &str) -> Vec<Value> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```json") => current = Some(String::new()),
            (Some(text), "```") => {
                let v = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("a json block of protocol.md: {e}\n{text}"));
                blocks.push(v);
                current = None;
            }
            (Some(text), l) => {
                text.push_str(l);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated json block");
    blocks
}

/// The frame without its `sdp`, and the `sdp` (without a trailing "…").
fn split_sdp(v: &Value) -> (Value, Option<String>) {
    let mut v = v.clone();
    let sdp = v
        .as_object_mut()
        .and_then(|o| o.remove("sdp"))
        .and_then(|s| s.as_str().map(|s| s.trim_end_matches('…').to_string()));
    (v, sdp)
}

#[test]
fn every_fixture_is_shown() {
    let blocks = json_blocks(&doc());
    for sub in ["client", "server"] {
        let dir = manifest().join("fixtures").join(sub);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let fixture: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let (bare, sdp) = split_sdp(&fixture);
            let shown = blocks.iter().any(|b| {
                let (b_bare, b_sdp) = split_sdp(b);
                b_bare == bare
                    && match (&sdp, &b_sdp) {
                        (None, None) => true,
                        (Some(full), Some(cut)) => {
                            !cut.is_empty() && full.starts_with(cut.as_str())
                        }
                        _ => false,
                    }
            });
            assert!(shown, "docs/protocol.md does not show {}", path.display());
        }
    }
}

#[test]
fn every_block_is_a_valid_message() {
    for block in json_blocks(&doc()) {
        let text = block.to_string();
        let kind = block["type"].as_str().expect("every example has a type");
        let client = ClientMsg::parse(&text);
        let server = ServerMsg::parse(&text);
        assert!(
            client.is_ok() || server.is_ok(),
            "example of {kind} parses as neither: {client:?} / {server:?}"
        );
    }
}

#[test]
fn limits_quoted_are_the_constants() {
    let doc = doc();
    for needle in [
        format!("1–{ID_MAX_CHARS} characters"),
        format!("1–{} characters", NONCE_MAX_CHARS - 1),
        format!("{} KiB", MAX_FRAME_BYTES / 1024),
        format!("({MAX_FRAME_BYTES} bytes)"),
        format!("{} KiB", MAX_SDP_BYTES / 1024),
        "2^53−1".to_string(),
    ] {
        assert!(
            doc.contains(&needle),
            "docs/protocol.md should say {needle:?}"
        );
    }
}
