//! The limits of signal.rs at their exact boundaries, and the defaults a join may omit.
//! Lengths of ids and nonceStr count characters (Unicode scalar values), sizes of frames and
//! SDP count UTF-8 bytes.

use serde_json::{json, Value};
use voipchat_proto::signal::{ID_MAX_CHARS, MAX_FRAME_BYTES, MAX_SDP_BYTES, NONCE_MAX_CHARS};
use voipchat_proto::{ClientMsg, ErrorCode, MuteConfig, RoomType};

fn join() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/client/join.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("join.json")).expect("JSON")
}

fn with(field: &str, v: Value) -> String {
    let mut j = join();
    j[field] = v;
    j.to_string()
}

fn code(frame: &str) -> Option<ErrorCode> {
    ClientMsg::parse(frame).err().map(|f| f.code)
}

const FIELD: Option<ErrorCode> = Some(ErrorCode::InvalidField);
const SDP: Option<ErrorCode> = Some(ErrorCode::InvalidSdp);

#[test]
fn nonce_is_1_to_127_characters() {
    let n = NONCE_MAX_CHARS - 1;
    assert_eq!(code(&with("nonceStr", json!("n".repeat(n)))), None);
    // Characters, not bytes: 127 three-byte characters are fine.
    assert_eq!(code(&with("nonceStr", json!("随".repeat(n)))), None);
    assert_eq!(code(&with("nonceStr", json!("n".repeat(n + 1)))), FIELD);
    assert_eq!(code(&with("nonceStr", json!("随".repeat(n + 1)))), FIELD);
    assert_eq!(code(&with("nonceStr", json!(""))), FIELD);
}

#[test]
fn ids_are_1_to_128_characters_without_control_characters() {
    for field in ["appId", "openId", "groupId"] {
        let max = ID_MAX_CHARS;
        assert_eq!(code(&with(field, json!("g".repeat(max)))), None, "{field}");
        assert_eq!(code(&with(field, json!("房".repeat(max)))), None, "{field}");
        assert_eq!(
            code(&with(field, json!("g".repeat(max + 1)))),
            FIELD,
            "{field}"
        );
        assert_eq!(
            code(&with(field, json!("房".repeat(max + 1)))),
            FIELD,
            "{field}"
        );
        assert_eq!(code(&with(field, json!(""))), FIELD, "{field}");
        assert_eq!(code(&with(field, json!("a\u{0}b"))), FIELD, "{field}");
        assert_eq!(code(&with(field, json!("a\u{7f}b"))), FIELD, "{field}");
        // Spaces and punctuation are allowed: the game names its rooms.
        assert_eq!(
            code(&with(field, json!("room 1: lobby/#2"))),
            None,
            "{field}"
        );
        assert_eq!(
            code(&with(field, json!(42))),
            FIELD,
            "{field} must be a string"
        );
    }
}

#[test]
fn sdp_is_1_to_max_bytes_in_join_and_answer() {
    let fits = "v".repeat(MAX_SDP_BYTES);
    let over = "v".repeat(MAX_SDP_BYTES + 1);
    assert_eq!(code(&with("sdp", json!(fits))), None);
    assert_eq!(code(&with("sdp", json!(over))), SDP);
    let answer = |sdp: &str| json!({"type": "answer", "sdp": sdp}).to_string();
    assert_eq!(code(&answer(&fits)), None);
    assert_eq!(code(&answer(&over)), SDP);
    assert_eq!(code(&answer("")), SDP);
    // The proto checks size only; whether the SDP is usable is the engine's call (-10010).
    assert_eq!(code(&answer("not sdp")), None);
}

#[test]
fn frame_size_counts_bytes_up_to_64_kib() {
    let pad = |total: usize| {
        let mut s = String::from(r#"{"type":"ping"}"#);
        s.push_str(&" ".repeat(total - s.len()));
        s
    };
    assert_eq!(MAX_FRAME_BYTES, 64 * 1024);
    assert_eq!(ClientMsg::parse(&pad(MAX_FRAME_BYTES)), Ok(ClientMsg::Ping));
    assert_eq!(
        code(&pad(MAX_FRAME_BYTES + 1)),
        Some(ErrorCode::MessageTooLarge)
    );
    // The size is checked first: an oversize frame that is not even JSON is too large.
    assert_eq!(
        code(&"x".repeat(MAX_FRAME_BYTES + 1)),
        Some(ErrorCode::MessageTooLarge)
    );
}

#[test]
fn timestamp_is_an_integer_up_to_max_safe_integer() {
    let max_safe: u64 = (1 << 53) - 1;
    assert_eq!(code(&with("timeStamp", json!(max_safe))), None);
    assert_eq!(code(&with("timeStamp", json!(max_safe + 1))), FIELD);
    assert_eq!(code(&with("timeStamp", json!(u64::MAX))), FIELD);
    // Whether it is fresh is the server's check (-10002), not the parser's.
    assert_eq!(code(&with("timeStamp", json!(0))), None);
    // JSON.stringify(1559129714) never writes a fraction; a float is refused even when whole.
    assert_eq!(code(&with("timeStamp", json!(1_559_129_714.0))), FIELD);
    assert_eq!(code(&with("timeStamp", json!(1.5))), FIELD);
    assert_eq!(code(&with("timeStamp", json!(-1))), FIELD);
    assert_eq!(code(&with("timeStamp", json!("1559129714"))), FIELD);
    assert_eq!(code(&with("timeStamp", Value::Null)), FIELD);
}

#[test]
fn signature_is_64_hex_characters_of_either_case() {
    let sig = "b002b824688dd8593a6079e11d8c5e8734fbcb39a6d5906eb347bfbcad79c617";
    assert_eq!(code(&with("signature", json!(sig.to_uppercase()))), None);
    assert_eq!(code(&with("signature", json!(format!("{sig}0")))), FIELD);
    assert_eq!(code(&with("signature", json!(&sig[..63]))), FIELD);
    assert_eq!(code(&with("signature", json!(""))), FIELD);
    assert_eq!(
        code(&with("signature", json!(format!("0x{}", &sig[2..])))),
        FIELD
    );
}

#[test]
fn join_defaults_follow_wx() {
    let mut j = join();
    let obj = j.as_object_mut().unwrap();
    obj.remove("roomType");
    obj.remove("muteConfig");
    let Ok(ClientMsg::Join(req)) = ClientMsg::parse(&j.to_string()) else {
        panic!("a join without roomType and muteConfig is valid");
    };
    assert_eq!(req.room_type, RoomType::Voice);
    assert_eq!(req.mute_config, MuteConfig::default());
    assert!(!req.mute_config.mute_microphone && !req.mute_config.mute_earphone);

    let Ok(ClientMsg::Join(req)) =
        ClientMsg::parse(&with("muteConfig", json!({"muteEarphone": true})))
    else {
        panic!("a partial muteConfig is valid");
    };
    assert_eq!(
        req.mute_config,
        MuteConfig {
            mute_microphone: false,
            mute_earphone: true,
            mute_camera: false,
        }
    );
    // "video" is a valid roomType on the wire; this server refuses it at join (-10011).
    let Ok(ClientMsg::Join(req)) = ClientMsg::parse(&with("roomType", json!("video"))) else {
        panic!("roomType video parses");
    };
    assert_eq!(req.room_type, RoomType::Video);
    // Present but null is not omitted.
    assert_eq!(code(&with("roomType", Value::Null)), FIELD);
    assert_eq!(code(&with("muteConfig", Value::Null)), FIELD);
}

#[test]
fn unknown_fields_are_refused_in_join_and_mute_config_only() {
    assert_eq!(code(&with("extra", json!(1))), FIELD);
    assert_eq!(
        code(&with("muteConfig", json!({"muteMicrophone": true, "x": 1}))),
        FIELD
    );
    let mute = json!({"type": "updateMuteConfig", "muteConfig": {"muteMic": true}});
    assert_eq!(code(&mute.to_string()), FIELD);
    // The other messages ignore fields they do not know (room for later additions).
    for frame in [
        r#"{"type":"exit","reason":"user"}"#,
        r#"{"type":"ping","t":1}"#,
        r#"{"type":"answer","sdp":"v=0\r\n","x":1}"#,
        r#"{"type":"updateMuteConfig","muteConfig":{},"x":1}"#,
    ] {
        assert_eq!(code(frame), None, "{frame}");
    }
}

#[test]
fn frame_text_edge_cases() {
    assert_eq!(
        ClientMsg::parse(" {\"type\":\"exit\"}\n"),
        Ok(ClientMsg::Exit)
    );
    // One message per frame.
    assert_eq!(
        code(r#"{"type":"exit"}{"type":"exit"}"#),
        Some(ErrorCode::MalformedMessage)
    );
    // A byte-order mark is not JSON.
    assert_eq!(
        code("\u{feff}{\"type\":\"exit\"}"),
        Some(ErrorCode::MalformedMessage)
    );
    // Nesting deeper than serde_json's limit is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(code(&deep), Some(ErrorCode::MalformedMessage));
    let deep_join = with(
        "muteConfig",
        serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap(),
    );
    assert_eq!(code(&deep_join), FIELD);
}

/// A refusal's reason quotes the sender's field names, so a name with a line break or of
/// any length must still give a one-line errMsg of bounded size (found by the fuzzer:
/// crates/fuzz/regressions/client_frame/).
#[test]
fn a_refusal_quoting_the_sender_stays_one_short_line() {
    let mut j = join();
    j["bad\r\nfield"] = json!(1);
    j["x".repeat(5000)] = json!(1);
    for frame in [
        j.to_string(),
        "{\"type\":\"join\"\n,\n\"a\u{0}\": }".to_string(),
    ] {
        let f = ClientMsg::parse(&frame).expect_err("refused");
        assert!(!f.detail.contains(['\n', '\r', '\0']), "{:?}", f.detail);
        assert!(
            f.detail.chars().count() <= 201,
            "{} chars",
            f.detail.chars().count()
        );
    }
}
