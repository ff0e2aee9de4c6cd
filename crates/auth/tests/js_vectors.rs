//! Signatures computed by JavaScript itself (`js_vectors.mjs`, saved as `js_vectors.json`)
//! must be the ones this crate computes, including for text where UTF-16 order differs from
//! UTF-8 order.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use voipchat_auth::{sign, signing_string};
use voipchat_proto::Secret;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

struct Vector {
    app_id: String,
    group_id: String,
    nonce_str: String,
    time_stamp: u64,
    session_key: String,
    signing_string: String,
    signature: String,
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {name} must be a string: {v}"))
}

fn load() -> Vec<Vector> {
    let text =
        std::fs::read_to_string(dir().join("js_vectors.json")).expect("read js_vectors.json");
    let json: Value = serde_json::from_str(&text).expect("js_vectors.json is JSON");
    json.as_array()
        .expect("an array of vectors")
        .iter()
        .map(|v| Vector {
            app_id: field(v, "appId").to_string(),
            group_id: field(v, "groupId").to_string(),
            nonce_str: field(v, "nonceStr").to_string(),
            time_stamp: v["timeStamp"].as_u64().expect("timeStamp is an integer"),
            session_key: field(v, "sessionKey").to_string(),
            signing_string: field(v, "signingString").to_string(),
            signature: field(v, "signature").to_string(),
        })
        .collect()
}

#[test]
fn js_vectors_match() {
    let vectors = load();
    assert!(vectors.len() >= 5);
    for v in &vectors {
        assert_eq!(
            signing_string(&v.app_id, &v.group_id, &v.nonce_str, v.time_stamp),
            v.signing_string,
            "signing string of {:?}/{:?}/{:?}/{}",
            v.app_id,
            v.group_id,
            v.nonce_str,
            v.time_stamp
        );
        assert_eq!(
            sign(
                &v.app_id,
                &v.group_id,
                &v.nonce_str,
                v.time_stamp,
                &Secret::new(v.session_key.clone())
            ),
            v.signature,
            "signature of {:?}",
            v.signing_string
        );
    }
}

/// The vectors are only worth having if some of them would fail under Rust's own string
/// order; this keeps a future edit of the script from losing those cases.
#[test]
fn js_vectors_include_cases_where_utf8_order_differs() {
    let differing = load()
        .iter()
        .filter(|v| {
            let ts = v.time_stamp.to_string();
            let mut parts = [
                v.app_id.as_str(),
                v.group_id.as_str(),
                v.nonce_str.as_str(),
                ts.as_str(),
            ];
            parts.sort();
            parts.concat() != v.signing_string
        })
        .count();
    assert!(
        differing >= 2,
        "only {differing} vectors tell UTF-16 from UTF-8 order"
    );
}

/// Re-runs the generator so the saved vectors cannot drift from what node computes.
#[test]
fn js_vectors_match_node() {
    let output = match Command::new("node")
        .arg(dir().join("js_vectors.mjs"))
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("skipped: node is not on PATH");
            return;
        }
        Err(e) => panic!("could not run node: {e}"),
    };
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fresh: Value = serde_json::from_slice(&output.stdout).expect("node prints JSON");
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("js_vectors.json")).expect("read js_vectors.json"),
    )
    .expect("js_vectors.json is JSON");
    assert_eq!(
        fresh, saved,
        "js_vectors.json is stale: regenerate with `node crates/auth/tests/js_vectors.mjs > crates/auth/tests/js_vectors.json`"
    );
}
