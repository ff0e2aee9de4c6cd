//! TURN credentials on the wire: every connection's first message is `hello`, with TURN REST
//! credentials when `turn_secret` and `turn_urls` are set (checked here with an HMAC computed
//! in the test, not by the server's code) and with an empty list when they are not; a
//! successful `joinResult` repeats them; and a bad TURN setting stops the server from starting.

mod common;

use std::time::Instant;

use base64::Engine as _;
use common::{unix_now, RawWs, TestServer};
use hmac::{Hmac, Mac};
use voipchat_proto::{IceServer, Secret, ServerMsg};
use voipchat_server::Config;

const SECRET: &str = "a-test-secret-of-enough-bytes";
const URLS: [&str; 2] = [
    "turn:127.0.0.1:3478?transport=udp",
    "turns:turn.example.com:5349",
];

fn with_turn(c: &mut Config) {
    c.turn_secret = Some(Secret::new(SECRET));
    c.turn_urls = URLS.iter().map(|s| s.to_string()).collect();
    c.turn_ttl_secs = 600;
}

fn hello_servers(ws: &RawWs) -> Vec<IceServer> {
    match &ws.hello {
        ServerMsg::Hello { ice_servers } => ice_servers.clone(),
        other => panic!("not a hello: {other:?}"),
    }
}

/// base64(HMAC-SHA1(secret, username)), computed here with the hmac and sha1 crates.
fn expected_credential(username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A join frame signed with `key`, carrying `sdp`.
fn join_frame(
    app: &voipchat_proto::AppId,
    open_id: &str,
    group: &str,
    key: &Secret,
    sdp: &str,
) -> String {
    let nonce = voipchat_client::random_nonce();
    let ts = unix_now();
    let signature = voipchat_auth::sign(app.as_str(), group, &nonce, ts, key);
    serde_json::json!({
        "type": "join", "appId": app, "openId": open_id, "groupId": group,
        "nonceStr": nonce, "timeStamp": ts, "signature": signature, "sdp": sdp,
    })
    .to_string()
}

/// A real offer (one sendonly audio m-line), as the Rust client makes it.
fn offer() -> String {
    let mut rtc = str0m::Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(
        str0m::Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap(),
    );
    let mut change = rtc.sdp_api();
    change.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

/// The next joinResult, skipping room events.
async fn join_result(ws: &mut RawWs) -> ServerMsg {
    loop {
        let msg = ws.recv().await;
        if matches!(msg, ServerMsg::JoinResult { .. }) {
            return msg;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_comes_first_with_credentials_and_the_join_result_repeats_them() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), with_turn).await;
    let (app, secret) = server.create_app(true);
    let key = server.session_key(&app, &secret, "o_alice").await;

    let before = unix_now();
    let mut ws = RawWs::connect(&server.ws_url()).await;
    let after = unix_now();
    let servers = hello_servers(&ws);
    assert_eq!(servers.len(), 1, "{servers:?}");
    let s = &servers[0];
    assert_eq!(s.urls, URLS);
    let (expiry, name) = s.username.split_once(':').expect("EXPIRY:NAME");
    let expiry: u64 = expiry.parse().expect("the expiry is Unix seconds");
    assert!(
        (before + 600..=after + 600).contains(&expiry),
        "expiry {expiry} is now + turn_ttl_secs ({before}..{after} + 600)"
    );
    assert!(
        name.len() == 21
            && name.starts_with("conn-")
            && name[5..].bytes().all(|b| b.is_ascii_hexdigit()),
        "a per-connection name: {name}"
    );
    assert_eq!(s.credential.expose(), expected_credential(&s.username));

    // Another connection gets a name of its own.
    let other = RawWs::connect(&server.ws_url()).await;
    assert_ne!(hello_servers(&other)[0].username, s.username);

    // A refused join carries no credentials.
    ws.send_text(&join_frame(
        &app,
        "o_alice",
        "g1",
        &Secret::new("wrong-key"),
        "v=0\r\n",
    ))
    .await;
    match join_result(&mut ws).await {
        ServerMsg::JoinResult {
            status,
            ice_servers,
            ..
        } => {
            assert_eq!(status.err_code, -10001, "{status:?}");
            assert!(ice_servers.is_empty(), "{ice_servers:?}");
        }
        _ => unreachable!(),
    }

    // A successful one repeats the hello's servers, credentials and all.
    ws.send_text(&join_frame(&app, "o_alice", "g1", &key, &offer()))
        .await;
    match join_result(&mut ws).await {
        ServerMsg::JoinResult {
            status,
            ice_servers,
            sdp,
            ..
        } => {
            assert_eq!(status.err_code, 0, "{status:?}");
            assert!(sdp.is_some());
            // The same server and connection name; the expiry counted from the join.
            assert_eq!(ice_servers.len(), 1);
            let again = &ice_servers[0];
            assert_eq!(again.urls, s.urls);
            let (later, again_name) = again.username.split_once(':').unwrap();
            assert_eq!(again_name, name);
            assert!(later.parse::<u64>().unwrap() >= expiry);
            assert_eq!(
                again.credential.expose(),
                expected_credential(&again.username)
            );
        }
        _ => unreachable!(),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_turn_the_hello_is_empty_and_the_join_result_has_none() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let key = server.session_key(&app, &secret, "o_bob").await;
    let mut ws = RawWs::connect(&server.ws_url()).await;
    assert_eq!(hello_servers(&ws), Vec::new());
    ws.send_text(&join_frame(&app, "o_bob", "g2", &key, &offer()))
        .await;
    match join_result(&mut ws).await {
        ServerMsg::JoinResult {
            status,
            ice_servers,
            ..
        } => {
            assert_eq!(status.err_code, 0, "{status:?}");
            assert!(ice_servers.is_empty());
        }
        _ => unreachable!(),
    }
    server.stop().await;
}

/// A change to a config.
type Tweak = Box<dyn Fn(&mut Config)>;

/// Each bad TURN setting, and what `validate` says about it.
#[test]
fn bad_turn_settings_are_refused_with_a_clear_error() {
    let base = || {
        let mut c = Config::default();
        with_turn(&mut c);
        c
    };
    base().validate().expect("the good settings pass");
    let cases: Vec<(&str, Tweak, &str)> = vec![
        (
            "a 15-byte secret",
            Box::new(|c| c.turn_secret = Some(Secret::new("0123456789abcde"))),
            "turn_secret is 15 bytes long: it must be at least 16",
        ),
        (
            "a secret without URLs",
            Box::new(|c| c.turn_urls.clear()),
            "turn_secret is set but turn_urls is empty",
        ),
        (
            "URLs without a secret",
            Box::new(|c| c.turn_secret = None),
            "turn_urls is set but turn_secret is not",
        ),
        (
            "a STUN URL",
            Box::new(|c| c.turn_urls = vec!["stun:127.0.0.1:3478".into()]),
            "turn_urls: \"stun:127.0.0.1:3478\" is not a TURN URL: the scheme must be turn or turns",
        ),
        (
            "a bad transport",
            Box::new(|c| c.turn_urls = vec!["turn:127.0.0.1?transport=quic".into()]),
            "the only parameter is transport=udp or transport=tcp",
        ),
        (
            "a bad port",
            Box::new(|c| c.turn_urls = vec!["turn:127.0.0.1:99999".into()]),
            "is not 1 to 65535",
        ),
        (
            "a TTL under a minute",
            Box::new(|c| c.turn_ttl_secs = 59),
            "turn_ttl_secs must be 60 to 604800 seconds, not 59",
        ),
    ];
    for (what, tweak, needle) in cases {
        let mut c = base();
        tweak(&mut c);
        let err = c.validate().expect_err(what).to_string();
        assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
    }
    // Neither key: TURN is off, and that is fine.
    Config::default().validate().unwrap();
    assert!(Config::default().turn().unwrap().is_none());
}

/// `voipchat serve` with a too-short secret in its config file does not start, and says why.
#[test]
fn serve_refuses_a_short_secret() {
    let dir = common::data_dir();
    let file = dir.path().join("voipchat.toml");
    std::fs::write(
        &file,
        "turn_secret = \"short\"\nturn_urls = [\"turn:127.0.0.1:3478\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .args(["--http-addr", "127.0.0.1:0", "--media-addr", "127.0.0.1:0"])
        .env_remove("VOIPCHAT_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success(), "it must not start");
    let stderr = common::plain(&String::from_utf8_lossy(&out.stderr));
    assert!(
        stderr.contains("invalid setting: turn_secret is 5 bytes long: it must be at least 16"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("short\""),
        "the secret is not printed: {stderr}"
    );
}
