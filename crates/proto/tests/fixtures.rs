//! The golden frames in `fixtures/` against the types: every client and server fixture parses
//! and serializes back to the same JSON value, every invalid frame is refused with exactly its
//! errCode, and no file in the fixture directories is left unchecked. The JS SDK tests read the
//! same files, so a change here is a change of the wire contract.

use std::collections::{BTreeSet, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde_json::Value;
use voipchat_proto::signal::{api, MAX_FRAME_BYTES};
use voipchat_proto::{ClientMsg, ErrorCode, Failure, OpenId, ServerMsg};

fn fixture_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(sub)
}

/// Every file in a fixture directory, by name, sorted.
fn files(sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir(sub))
        .unwrap_or_else(|e| panic!("fixtures/{sub}: {e}"))
        .map(|entry| {
            let entry = entry.expect("readable directory entry");
            assert!(
                entry.file_type().expect("file type").is_file(),
                "fixtures/{sub} holds only files"
            );
            entry.file_name().into_string().expect("UTF-8 file name")
        })
        .collect();
    names.sort();
    names
}

fn read(sub: &str, name: &str) -> String {
    std::fs::read_to_string(fixture_dir(sub).join(name))
        .unwrap_or_else(|e| panic!("fixtures/{sub}/{name}: {e}"))
}

fn value(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

// ----- which fixtures must exist -----

const CLIENT_FIXTURES: &[&str] = &[
    "answer.json",
    "exit.json",
    "join.json",
    "ping.json",
    "subscribeVideoMembers.json",
    "updateMuteConfig.json",
];

const SERVER_FIXTURES: &[&str] = &[
    "error.json",
    "exitResult.json",
    "hello-none.json",
    "hello.json",
    "interrupted.json",
    "joinResult-fail.json",
    "joinResult-ok.json",
    "membersChanged.json",
    "muteChanged.json",
    "muteConfigResult.json",
    "offer.json",
    "pong.json",
    "serverMuteChanged.json",
    "speakersChanged.json",
    "subscribeVideoMembersResult.json",
    "tracks.json",
    "videoMembersChanged.json",
];

/// The wire name of each client message; exhaustive, so a new variant fails to compile here
/// until it is named, and `every_variant_has_a_fixture` then asks for its fixture.
fn client_type(msg: &ClientMsg) -> &'static str {
    match msg {
        ClientMsg::Join(_) => "join",
        ClientMsg::Exit => "exit",
        ClientMsg::UpdateMuteConfig { .. } => "updateMuteConfig",
        ClientMsg::Answer { .. } => "answer",
        ClientMsg::Ping => "ping",
        ClientMsg::SubscribeVideoMembers { .. } => "subscribeVideoMembers",
    }
}
const CLIENT_TYPES: &[&str] = &[
    "join",
    "exit",
    "updateMuteConfig",
    "answer",
    "ping",
    "subscribeVideoMembers",
];

/// The wire name of each server message and the wx API its `errMsg` names (None: no status).
fn server_type(msg: &ServerMsg) -> (&'static str, Option<&'static str>) {
    match msg {
        ServerMsg::Hello { .. } => ("hello", None),
        ServerMsg::JoinResult { .. } => ("joinResult", Some(api::JOIN)),
        ServerMsg::ExitResult { .. } => ("exitResult", Some(api::EXIT)),
        ServerMsg::MuteConfigResult { .. } => ("muteConfigResult", Some(api::UPDATE_MUTE)),
        ServerMsg::Offer { .. } => ("offer", None),
        ServerMsg::Tracks { .. } => ("tracks", None),
        ServerMsg::MembersChanged { .. } => ("membersChanged", Some(api::MEMBERS_CHANGED)),
        ServerMsg::SpeakersChanged { .. } => ("speakersChanged", Some(api::SPEAKERS_CHANGED)),
        ServerMsg::MuteChanged { .. } => ("muteChanged", Some(api::MUTE_CHANGED)),
        ServerMsg::ServerMuteChanged { .. } => {
            ("serverMuteChanged", Some(api::SERVER_MUTE_CHANGED))
        }
        ServerMsg::SubscribeVideoMembersResult { .. } => {
            ("subscribeVideoMembersResult", Some(api::SUBSCRIBE_VIDEO))
        }
        ServerMsg::VideoMembersChanged { .. } => {
            ("videoMembersChanged", Some(api::VIDEO_MEMBERS_CHANGED))
        }
        ServerMsg::Interrupted { .. } => ("interrupted", Some(api::INTERRUPTED)),
        ServerMsg::Error { .. } => ("error", Some(api::SIGNALING)),
        ServerMsg::Pong => ("pong", None),
    }
}
const SERVER_TYPES: &[&str] = &[
    "hello",
    "joinResult",
    "exitResult",
    "muteConfigResult",
    "offer",
    "tracks",
    "membersChanged",
    "speakersChanged",
    "muteChanged",
    "serverMuteChanged",
    "subscribeVideoMembersResult",
    "videoMembersChanged",
    "interrupted",
    "error",
    "pong",
];

/// `join.json` → "join", `joinResult-ok.json` → "joinResult".
fn type_of_file(name: &str) -> &str {
    let stem = name.strip_suffix(".json").expect("a .json file");
    stem.split('-').next().unwrap_or(stem)
}

// ----- client fixtures -----

#[test]
fn client_fixtures_parse_and_round_trip() {
    for name in files("client") {
        let text = read("client", &name);
        let msg = ClientMsg::parse(&text)
            .unwrap_or_else(|f| panic!("client/{name} refused: {f} ({})", f.code.code()));
        assert_eq!(
            serde_json::to_value(&msg).expect("serializes"),
            value(&text, &name),
            "client/{name} does not serialize back to the same JSON"
        );
        assert_eq!(
            ClientMsg::parse(&msg.to_json()).as_ref(),
            Ok(&msg),
            "client/{name}: to_json does not parse back"
        );
        assert_eq!(client_type(&msg), type_of_file(&name), "client/{name}");
        assert_eq!(
            value(&text, &name)["type"],
            Value::from(client_type(&msg)),
            "client/{name}: \"type\""
        );
    }
}

#[test]
fn join_fixture_is_the_seed_example() {
    let ClientMsg::Join(join) = ClientMsg::parse(&read("client", "join.json")).unwrap() else {
        panic!("join.json is not a join");
    };
    assert_eq!(join.app_id.as_str(), "wx20afc706a711eefc");
    assert_eq!(join.group_id.as_str(), "1559129713_672975982");
    assert_eq!(join.nonce_str, "8AP6DT9ybtniUJfb");
    assert_eq!(join.time_stamp, 1_559_129_714);
    assert_eq!(
        join.signature,
        "b002b824688dd8593a6079e11d8c5e8734fbcb39a6d5906eb347bfbcad79c617"
    );
    // One sendonly audio m-line, as the protocol asks of a join's offer.
    assert_eq!(join.sdp.matches("\r\nm=").count(), 1);
    assert!(join.sdp.contains("\r\nm=audio "));
    assert!(join.sdp.contains("\r\na=sendonly\r\n"));
    assert!(join.sdp.ends_with("\r\n"));
}

// ----- server fixtures -----

#[test]
fn server_fixtures_parse_and_round_trip() {
    for name in files("server") {
        let text = read("server", &name);
        let msg = ServerMsg::parse(&text).unwrap_or_else(|f| panic!("server/{name} refused: {f}"));
        assert_eq!(
            serde_json::to_value(&msg).expect("serializes"),
            value(&text, &name),
            "server/{name} does not serialize back to the same JSON"
        );
        assert_eq!(
            ServerMsg::parse(&msg.to_json()).as_ref(),
            Ok(&msg),
            "server/{name}: to_json does not parse back"
        );
        let (wire, api_name) = server_type(&msg);
        assert_eq!(wire, type_of_file(&name), "server/{name}");
        let json = value(&text, &name);
        assert_eq!(json["type"], Value::from(wire), "server/{name}: \"type\"");

        // errCode and errMsg agree with each other and with the message's wx API.
        match api_name {
            Some(api_name) => {
                let code = json["errCode"].as_i64().expect("errCode is an integer");
                let msg = json["errMsg"].as_str().expect("errMsg is a string");
                if code == 0 {
                    assert_eq!(msg, format!("{api_name}:ok"), "server/{name}");
                } else {
                    let ec = i32::try_from(code)
                        .ok()
                        .and_then(ErrorCode::from_code)
                        .unwrap_or_else(|| panic!("server/{name}: unknown errCode {code}"));
                    let prefix = format!("{api_name}:fail ");
                    // After the prefix comes the code's reason or a more precise detail;
                    // clients branch on errCode, never on this text.
                    assert!(
                        msg.starts_with(&prefix) && msg.len() > prefix.len(),
                        "server/{name}: errMsg {msg:?} is not {prefix:?} and a reason ({ec:?})"
                    );
                }
            }
            None => assert!(
                json.get("errCode").is_none() && json.get("errMsg").is_none(),
                "server/{name}: {wire} carries no status"
            ),
        }
    }
}

/// The helpers the server uses produce exactly the golden frames.
#[test]
fn server_helpers_build_the_fixtures() {
    let fixture = |name: &str| value(&read("server", name), name);
    let to_value = |m: ServerMsg| serde_json::to_value(m).expect("serializes");
    let ids = |list: &[&str]| list.iter().map(|s| OpenId::from(*s)).collect::<Vec<_>>();

    assert_eq!(
        to_value(ServerMsg::members_changed(
            ids(&["o_carol", "o_alice"]),
            ids(&["o_carol"])
        )),
        fixture("membersChanged.json")
    );
    assert_eq!(
        to_value(ServerMsg::mute_changed(ids(&["o_carol", "o_alice"]))),
        fixture("muteChanged.json")
    );
    assert_eq!(
        to_value(ServerMsg::speakers_changed(ids(&["o_carol"]))),
        fixture("speakersChanged.json")
    );
    assert_eq!(
        to_value(ServerMsg::server_mute_changed(true)),
        fixture("serverMuteChanged.json")
    );
    assert_eq!(
        to_value(ServerMsg::interrupted(ErrorCode::Replaced)),
        fixture("interrupted.json")
    );
    // The engine's room-full refusal names the cap.
    assert_eq!(
        to_value(ServerMsg::join_failed(&Failure::with_detail(
            ErrorCode::RoomFull,
            "room is full (10 members)"
        ))),
        fixture("joinResult-fail.json")
    );
    // The error frame is exactly what the server sends for invalid/unknown-type.json.
    let refusal = ClientMsg::parse(&read("invalid", "unknown-type.json")).unwrap_err();
    assert_eq!(to_value(ServerMsg::error(&refusal)), fixture("error.json"));
    assert_eq!(to_value(ServerMsg::Pong), fixture("pong.json"));
}

#[test]
fn server_offer_and_tracks_fixtures_name_the_offers_mids() {
    let ServerMsg::Offer { sdp, tracks } = ServerMsg::parse(&read("server", "offer.json")).unwrap()
    else {
        panic!("offer.json is not an offer");
    };
    for t in &tracks {
        assert!(
            sdp.contains(&format!("\r\na=mid:{}\r\n", t.mid)),
            "offer.json: slot {} is not an m-line of the offer",
            t.mid
        );
    }
    // Every send m-line of the server's offer is a slot in `tracks`.
    let send_lines = sdp.matches("\r\na=sendonly\r\n").count();
    assert_eq!(send_lines, tracks.len());

    let ServerMsg::Tracks { tracks: later } =
        ServerMsg::parse(&read("server", "tracks.json")).unwrap()
    else {
        panic!("tracks.json is not tracks");
    };
    let mids =
        |v: &[voipchat_proto::TrackSlot]| v.iter().map(|t| t.mid.clone()).collect::<Vec<_>>();
    assert_eq!(
        mids(&later),
        mids(&tracks),
        "tracks.json remaps the offer's slots"
    );
    assert!(
        later.iter().any(|t| t.open_id.is_none()),
        "tracks.json shows a free slot"
    );
}

// ----- invalid frames -----

/// One refused frame from invalid/cases.json.
struct Case {
    name: String,
    frame: String,
    code: i32,
    file: Option<String>,
}

fn invalid_cases() -> Vec<Case> {
    let index = value(&read("invalid", "cases.json"), "invalid/cases.json");
    let list = index["cases"]
        .as_array()
        .expect("cases.json has a \"cases\" array");
    list.iter()
        .map(|c| {
            let name = c["name"]
                .as_str()
                .expect("every case has a name")
                .to_string();
            let code = c["errCode"]
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or_else(|| panic!("case {name:?}: errCode"));
            let sources = ["frame", "file", "generate"]
                .iter()
                .filter(|k| c.get(**k).is_some())
                .count();
            assert_eq!(
                sources, 1,
                "case {name:?}: exactly one of frame, file, generate"
            );
            let file = c["file"].as_str().map(str::to_string);
            let frame = if let Some(frame) = c["frame"].as_str() {
                frame.to_string()
            } else if let Some(file) = &file {
                read("invalid", file)
            } else {
                let g = &c["generate"];
                let prefix = g["prefix"].as_str().expect("generate.prefix");
                let pad = g["pad"].as_str().expect("generate.pad");
                let total = g["totalBytes"].as_u64().expect("generate.totalBytes") as usize;
                assert!(pad.len() == 1 && total >= prefix.len(), "case {name:?}");
                let mut s = String::with_capacity(total);
                s.push_str(prefix);
                while s.len() < total {
                    s.push_str(pad);
                }
                s
            };
            Case {
                name,
                frame,
                code,
                file,
            }
        })
        .collect()
}

#[test]
fn invalid_frames_are_refused_with_their_code() {
    let cases = invalid_cases();
    let mut names = HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case {:?}",
            case.name
        );
        let expected = ErrorCode::from_code(case.code)
            .unwrap_or_else(|| panic!("case {:?}: unknown errCode {}", case.name, case.code));
        let result = catch_unwind(AssertUnwindSafe(|| ClientMsg::parse(&case.frame)))
            .unwrap_or_else(|_| panic!("case {:?}: ClientMsg::parse panicked", case.name));
        match result {
            Ok(msg) => panic!("case {:?} was accepted as {msg:?}", case.name),
            Err(failure) => assert_eq!(
                failure.code, expected,
                "case {:?}: refused as {failure}, expected {expected}",
                case.name
            ),
        }
    }
}

#[test]
fn the_oversize_case_is_just_over_the_limit() {
    let cases = invalid_cases();
    let big = cases
        .iter()
        .find(|c| c.code == ErrorCode::MessageTooLarge.code())
        .expect("an oversize case");
    assert_eq!(big.frame.len(), MAX_FRAME_BYTES + 1);
    // The same frame one byte shorter is a valid ping.
    let fits = &big.frame[..MAX_FRAME_BYTES];
    assert_eq!(ClientMsg::parse(fits), Ok(ClientMsg::Ping));
}

/// Structured invalid frames stay JSON (so the JS tests can load them) and differ from
/// join.json only where they mean to.
#[test]
fn invalid_join_files_are_json_objects() {
    for case in invalid_cases() {
        if let Some(file) = &case.file {
            let v = value(&case.frame, file);
            assert!(v.is_object() || v.is_array(), "invalid/{file}");
        }
    }
}

// ----- coverage of the fixture directories -----

#[test]
fn no_orphan_or_missing_fixture_files() {
    assert_eq!(files("client"), CLIENT_FIXTURES, "fixtures/client");
    assert_eq!(files("server"), SERVER_FIXTURES, "fixtures/server");

    let referenced: BTreeSet<String> = invalid_cases().into_iter().filter_map(|c| c.file).collect();
    let present: BTreeSet<String> = files("invalid")
        .into_iter()
        .filter(|n| n != "cases.json")
        .collect();
    let orphans: Vec<_> = present.difference(&referenced).collect();
    let missing: Vec<_> = referenced.difference(&present).collect();
    assert!(
        orphans.is_empty(),
        "invalid/ files no case uses: {orphans:?}"
    );
    assert!(
        missing.is_empty(),
        "cases.json names missing files: {missing:?}"
    );

    let top: Vec<String> = files_and_dirs("");
    assert_eq!(
        top,
        ["README.md", "client", "invalid", "server"],
        "fixtures/ holds only the three directories and its README"
    );
}

fn files_and_dirs(sub: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixture_dir(sub))
        .expect("fixtures/")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn every_message_type_has_a_fixture() {
    let client: BTreeSet<&str> = CLIENT_FIXTURES.iter().map(|n| type_of_file(n)).collect();
    let server: BTreeSet<&str> = SERVER_FIXTURES.iter().map(|n| type_of_file(n)).collect();
    assert_eq!(client, CLIENT_TYPES.iter().copied().collect());
    assert_eq!(server, SERVER_TYPES.iter().copied().collect());
    // Both outcomes of a join are pinned.
    assert!(SERVER_FIXTURES.contains(&"joinResult-ok.json"));
    assert!(SERVER_FIXTURES.contains(&"joinResult-fail.json"));
}

// ----- error codes -----

#[test]
fn error_codes_are_unique_and_invertible() {
    let mut seen = HashSet::new();
    for c in ErrorCode::ALL {
        assert!(seen.insert(c.code()), "{c:?}: code {} used twice", c.code());
        assert!(c.code() < 0, "{c:?}: codes are negative, 0 is success");
        assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        assert_eq!(ErrorCode::try_from(c.code()), Ok(c));
        assert_eq!(i32::from(c), c.code());
        // On the wire an ErrorCode is its bare number.
        assert_eq!(serde_json::to_value(c).unwrap(), Value::from(c.code()));
        assert_eq!(
            serde_json::from_value::<ErrorCode>(Value::from(c.code())).unwrap(),
            c
        );
        assert!(!c.reason().is_empty() && c.reason().trim() == c.reason());
        assert_eq!(
            Failure::new(c).err_msg("x"),
            format!("x:fail {}", c.reason())
        );
    }
    let variants: HashSet<String> = ErrorCode::ALL.iter().map(|c| format!("{c:?}")).collect();
    assert_eq!(
        variants.len(),
        ErrorCode::ALL.len(),
        "ALL lists a variant twice"
    );
    assert_eq!(ErrorCode::from_code(0), None);
    assert!(serde_json::from_value::<ErrorCode>(Value::from(-4)).is_err());
}

#[test]
fn error_codes_keep_their_wx_meaning_and_ranges() {
    assert_eq!(ErrorCode::AlreadyInRoom.code(), -1);
    assert_eq!(ErrorCode::MicrophoneBusy.code(), -2);
    assert_eq!(ErrorCode::ExitedWhileJoining.code(), -3);
    assert_eq!(ErrorCode::SystemError.code(), -1000);
    assert_eq!(ErrorCode::RoomQuotaExceeded.code(), -13000);
    assert_eq!(ErrorCode::RoomFull.code(), -10008);
    for (code, c) in [
        (-11001, ErrorCode::Kicked),
        (-11002, ErrorCode::Replaced),
        (-11003, ErrorCode::MediaTimeout),
        (-11004, ErrorCode::ServerShutdown),
    ] {
        assert_eq!(c.code(), code, "{c:?}");
    }
    for c in ErrorCode::ALL {
        let n = c.code();
        assert!(
            matches!(n, -3..=-1 | -1000 | -13000 | -13009..=-13001 | -10099..=-10001 | -11099..=-11001 | -12099..=-12001),
            "{c:?}: {n} is outside the documented ranges"
        );
    }
}

// ----- hello -----

/// The hello fixture's URLs are what `turn_urls` accepts, the joinResult repeats the hello's
/// servers, and a credential never shows in `Debug` output (the client logs messages).
#[test]
fn hello_urls_parse_and_the_credential_stays_out_of_debug() {
    let ServerMsg::Hello { ice_servers } = ServerMsg::parse(&read("server", "hello.json")).unwrap()
    else {
        panic!("hello.json is not a hello");
    };
    assert_eq!(ice_servers.len(), 1);
    for url in &ice_servers[0].urls {
        let parsed: voipchat_proto::TurnUrl =
            url.parse().unwrap_or_else(|e| panic!("hello.json: {e}"));
        assert_eq!(&parsed.to_string(), url);
    }
    let debug = format!("{ice_servers:?}");
    assert!(
        !debug.contains(ice_servers[0].credential.expose()),
        "{debug}"
    );
    let ServerMsg::JoinResult {
        ice_servers: repeated,
        ..
    } = ServerMsg::parse(&read("server", "joinResult-ok.json")).unwrap()
    else {
        panic!("joinResult-ok.json is not a joinResult");
    };
    assert_eq!(repeated, ice_servers);
    let ServerMsg::Hello { ice_servers } =
        ServerMsg::parse(&read("server", "hello-none.json")).unwrap()
    else {
        panic!("hello-none.json is not a hello");
    };
    assert!(ice_servers.is_empty());
}
