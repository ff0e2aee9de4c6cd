//! No log level prints a secret: with every target at `trace`, through the same filter the
//! binary builds from `RUST_LOG`, a backend call, two members' joins, their media and their
//! exits leave no session key, app secret, join signature, SDP `ice-pwd` or Authorization
//! header in the log. Its own test binary, so that its capture is the only subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::peers::{warm_up, TestPeer};
use common::TestServer;
use voipchat_proto::ServerMsg;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The values of every `a=ice-pwd:` line of an SDP.
fn ice_pwds(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=ice-pwd:"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_secret() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(voipchat_server::log_filter(Some("trace")))
        .with_writer(move || writer.clone())
        .init();

    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let alice_key = server.session_key(&app, &secret, "alice").await;
    let bob_key = server.session_key(&app, &secret, "bob").await;
    let mut secrets: Vec<(String, String)> = vec![
        ("app secret".into(), secret.expose().to_string()),
        ("alice's session key".into(), alice_key.expose().to_string()),
        ("bob's session key".into(), bob_key.expose().to_string()),
        (
            "Authorization header".into(),
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                app.as_str(),
                secret.expose()
            )),
        ),
    ];
    let alice = TestPeer::join_with(&server, &app, &alice_key, "alice", "g", |o| {
        secrets.push(("alice's signature".into(), o.signature.clone()));
    })
    .await
    .expect("alice joins");
    let bob = TestPeer::join_with(&server, &app, &bob_key, "bob", "g", |o| {
        secrets.push(("bob's signature".into(), o.signature.clone()));
    })
    .await
    .expect("bob joins");
    warm_up(&[&alice, &bob]).await;
    // A third member joins over a bare WebSocket with an offer made here, so the test holds
    // both SDPs of a join and the server's renegotiation offer to it.
    let carol_key = server.session_key(&app, &secret, "carol").await;
    secrets.push(("carol's session key".into(), carol_key.expose().to_string()));
    let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
    let addr = "127.0.0.1:1".parse().unwrap();
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = api.apply().unwrap();
    let mut sdps = vec![offer.to_sdp_string()];
    let opts = voipchat_client::JoinOptions::signed(
        server.ws_url(),
        app.clone(),
        "carol",
        "g",
        &carol_key,
        common::unix_now(),
    );
    secrets.push(("carol's signature".into(), opts.signature.clone()));
    let join = voipchat_proto::ClientMsg::Join(opts.join_request(sdps[0].clone()));
    let mut carol = common::RawWs::connect(&server.ws_url()).await;
    carol.send_text(&join.to_json()).await;
    for _ in 0..10 {
        match carol.recv().await {
            ServerMsg::JoinResult { status, sdp, .. } => {
                assert_eq!(status.err_code, 0, "carol joins");
                sdps.extend(sdp);
            }
            ServerMsg::Offer { sdp, .. } => {
                sdps.push(sdp);
                break;
            }
            _ => {}
        }
    }
    assert!(
        sdps.len() >= 3,
        "carol's offer, the answer and the server's offer"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.exit().await;
    bob.exit().await;
    drop(carol);
    server.stop().await;

    for sdp in &sdps {
        for pwd in ice_pwds(sdp) {
            secrets.push(("an ice-pwd".into(), pwd));
        }
    }
    assert!(
        secrets.iter().filter(|(w, _)| w == "an ice-pwd").count() >= 3,
        "carol's offer, the answer and the server's offer carry ice-pwd"
    );
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    assert!(
        text.lines().count() > 100,
        "trace logged: {} lines",
        text.lines().count()
    );
    let offending: Vec<String> = secrets
        .iter()
        .flat_map(|(what, value)| {
            text.lines()
                .filter(|l| l.contains(value.as_str()))
                .map(move |l| format!("{what}: {}", &l[..l.len().min(200)]))
        })
        .collect();
    assert!(
        offending.is_empty(),
        "secrets in the log at trace:\n{}",
        offending.join("\n")
    );
    // Whatever the values: no SDP password line and no ICE credentials struct, from the
    // server or from the Rust client sharing this process's log.
    for pattern in ["a=ice-pwd:", "pass: \""] {
        let found = text.lines().find(|l| l.contains(pattern));
        assert!(found.is_none(), "{pattern} in the log: {found:?}");
    }
    for (what, value) in &secrets {
        assert!(!value.is_empty());
        if let Some(line) = text.lines().find(|l| l.contains(value.as_str())) {
            panic!(
                "{what} is in the log at trace: {}",
                &line[..line.len().min(300)]
            );
        }
    }
}
