//! Webhooks end to end: real members (Rust WebRTC clients) join and leave, and a real HTTP
//! receiver (tests/common/receiver.rs) hears about it, signed. It fails its first attempts,
//! is stopped and started again, the server itself restarts with deliveries waiting, a
//! receiver hangs, an app floods: every event arrives, exactly once after dedupe by delivery
//! id, in order per room.

mod common;
#[path = "common/receiver.rs"]
mod receiver;

use std::time::Duration;

use common::peers::{peer, warm_up, TestPeer};
use common::{api_failure, data_dir, TestServer};
use receiver::{room_story, Mode, Receiver};
use voipchat_proto::{AppId, Secret};

/// A config for webhook tests: quick retries, a short attempt timeout.
fn quick(c: &mut voipchat_server::Config) {
    c.webhook_retry_base_ms = 50;
    c.webhook_timeout_ms = 1_000;
}

async fn set_webhook(server: &TestServer, app: &AppId, secret: &Secret, url: &str) {
    let body = serde_json::json!({ "url": url }).to_string();
    let (status, answer) = server
        .http_request("PUT", "/api/v1/webhook", Some((app, secret)), Some(&body))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, serde_json::json!({ "url": url }).to_string());
}

/// The receiver's view of `got`: every request signed, headers matching bodies.
fn assert_well_formed(r: &Receiver, app: &AppId) {
    for req in r.requests() {
        assert!(
            req.signature_ok,
            "a request whose signature does not verify: {req:?}"
        );
        assert_eq!(req.body["id"], req.delivery.as_str(), "{req:?}");
        assert_eq!(req.body["event"], req.event_header.as_str(), "{req:?}");
        assert_eq!(req.body["appId"], app.as_str(), "{req:?}");
        assert!(req.body["createdAt"].as_u64().unwrap() > 1_700_000_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_once_in_order_through_failures_and_a_receiver_restart() {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), quick).await;
    let (app, secret) = server.create_app(true);
    let hook = Receiver::start(
        voipchat_store::secret_digest(&secret).expose(),
        Mode::Accept,
    )
    .await;
    // The first three attempts fail: 500, a dropped connection, 500.
    hook.fail_next(3);
    set_webhook(&server, &app, &secret, &hook.url("/hooks/voip?token=t1")).await;

    let a = peer(&server, &app, &secret, "alice", "r1").await;
    let b = peer(&server, &app, &secret, "bob", "r1").await;
    warm_up(&[&a, &b]).await;
    a.exit().await;
    let got = hook.wait_accepted(4, Duration::from_secs(10)).await;
    assert_eq!(
        room_story(&got, "r1"),
        [
            "room_started",
            "member_joined alice 1",
            "member_joined bob 2",
            "member_left alice 1 exit"
        ]
    );
    assert!(
        hook.requests().len() >= 7,
        "three failed attempts were retried"
    );

    // The receiver goes away while things happen, and comes back on the same port.
    hook.stop().await;
    let c = peer(&server, &app, &secret, "carol", "r2").await;
    b.into_client().await.close_abruptly();
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.exit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook.restart().await;

    let got = hook.wait_accepted(10, Duration::from_secs(15)).await;
    assert_eq!(
        room_story(&got, "r1"),
        [
            "room_started",
            "member_joined alice 1",
            "member_joined bob 2",
            "member_left alice 1 exit",
            "member_left bob 0 disconnect",
            "room_finished"
        ]
    );
    assert_eq!(
        room_story(&got, "r2"),
        [
            "room_started",
            "member_joined carol 1",
            "member_left carol 0 exit",
            "room_finished"
        ]
    );
    assert_eq!(got.len(), 10, "no event twice after dedupe, none more");
    assert_well_formed(&hook, &app);
    let first = &got[0].body;
    assert_eq!(first["roomType"], "voice");
    // Nothing is left waiting.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, metrics) = common::http_request(server.http, "GET", "/metrics", None, None).await;
    assert!(metrics.contains("voipchat_webhook_pending 0"), "{metrics}");
    assert!(
        metrics.contains("voipchat_webhook_delivered_total 10"),
        "{metrics}"
    );
    assert!(!metrics.contains("voipchat_webhook_failed_attempts_total 0\n"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_waiting_when_the_server_stops_are_sent_after_it_starts_again() {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), quick).await;
    let (app, secret) = server.create_app(true);
    // Nobody listens yet.
    let hook = Receiver::stopped(voipchat_store::secret_digest(&secret).expose()).await;
    set_webhook(&server, &app, &secret, &hook.url("/h")).await;
    let a = peer(&server, &app, &secret, "alice", "r1").await;
    let b = peer(&server, &app, &secret, "bob", "r1").await;
    warm_up(&[&a, &b]).await;
    b.exit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // alice is still in the room: the shutdown removes her and finishes the room.
    server.stop().await;
    drop(a);
    let pending = voipchat_store::SqliteStore::open(&dir.path().join("voipchat.sqlite3"))
        .map(|s| voipchat_store::Store::outbox_counts(&s).unwrap().pending)
        .unwrap();
    assert_eq!(pending, 6, "every event is in the outbox");

    hook.restart().await;
    let server = TestServer::start(dir.path(), quick).await;
    let got = hook.wait_accepted(6, Duration::from_secs(15)).await;
    assert_eq!(
        room_story(&got, "r1"),
        [
            "room_started",
            "member_joined alice 1",
            "member_joined bob 2",
            "member_left bob 1 exit",
            "member_left alice 0 server_shutdown",
            "room_finished"
        ]
    );
    let shutdown = got
        .iter()
        .find(|r| r.body["reason"] == "server_shutdown")
        .unwrap();
    assert_eq!(shutdown.body["errCode"], -11004);
    assert_well_formed(&hook, &app);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_is_timed_out_and_other_apps_still_get_theirs() {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), |c| {
        c.webhook_retry_base_ms = 100;
        c.webhook_timeout_ms = 400;
    })
    .await;
    let (slow_app, slow_secret) = server.create_app(true);
    let (app, secret) = server.create_app(true);
    let hang = Receiver::start(
        voipchat_store::secret_digest(&slow_secret).expose(),
        Mode::Hang,
    )
    .await;
    let hook = Receiver::start(
        voipchat_store::secret_digest(&secret).expose(),
        Mode::Accept,
    )
    .await;
    set_webhook(&server, &slow_app, &slow_secret, &hang.url("/never")).await;
    set_webhook(&server, &app, &secret, &hook.url("/h")).await;

    // Six rooms of the hanging app: more streams than it may have attempts at once.
    let mut slow = Vec::new();
    for i in 0..6 {
        slow.push(
            peer(
                &server,
                &slow_app,
                &slow_secret,
                &format!("s{i}"),
                &format!("slow{i}"),
            )
            .await,
        );
    }
    let started = std::time::Instant::now();
    let a = peer(&server, &app, &secret, "alice", "fast").await;
    let got = hook.wait_accepted(2, Duration::from_secs(5)).await;
    assert_eq!(
        room_story(&got, "fast"),
        ["room_started", "member_joined alice 1"],
        "the other app's events arrive while the first one's receiver hangs"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Each hung attempt ends at its timeout and is retried: new connections keep coming,
    // at most 4 at a time for that app.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tried = hang.connections();
    assert!(
        tried >= 8,
        "attempts time out and retry: {tried} connections"
    );
    let (_, metrics) = common::http_request(server.http, "GET", "/metrics", None, None).await;
    let failed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("voipchat_webhook_failed_attempts_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed >= 4.0, "{metrics}");
    drop(slow);
    a.exit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_joins_tells_quota_exhausted_once() {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), |c| {
        quick(c);
        c.daily_room_quota = 1;
    })
    .await;
    let (app, secret) = server.create_app(true);
    let hook = Receiver::start(
        voipchat_store::secret_digest(&secret).expose(),
        Mode::Accept,
    )
    .await;
    set_webhook(&server, &app, &secret, &hook.url("/h")).await;
    let a = peer(&server, &app, &secret, "alice", "only").await;
    let key = server.session_key(&app, &secret, "bob").await;
    for i in 0..30 {
        let refused = TestPeer::join_with_key(&server, &app, &key, "bob", &format!("g{i}")).await;
        match refused {
            Err(e) => assert_eq!(e.code().map(|c| c.code()), Some(-13000), "{e}"),
            Ok(_) => panic!("the quota of 1 room is used"),
        }
    }
    let got = hook.wait_accepted(3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = hook.accepted();
    assert_eq!(got.len(), got_after.len(), "nothing more arrives");
    let quota: Vec<_> = got_after
        .iter()
        .filter(|r| r.body["event"] == "quota_exhausted")
        .collect();
    assert_eq!(quota.len(), 1, "one quota_exhausted for 30 refused joins");
    let q = &quota[0].body;
    assert_eq!(q["groupId"], "g0");
    assert_eq!(q["dailyLimit"], 1);
    assert_eq!(q["roomsCreated"], 1);
    assert_eq!(q["day"].as_str().unwrap().len(), 10);
    assert_eq!(
        room_story(&got_after, "only"),
        ["room_started", "member_joined alice 1"]
    );
    a.exit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_joins_and_leaves_is_all_delivered_while_audio_keeps_flowing() {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), quick).await;
    let (app, secret) = server.create_app(true);
    let hook = Receiver::start(
        voipchat_store::secret_digest(&secret).expose(),
        Mode::Accept,
    )
    .await;
    set_webhook(&server, &app, &secret, &hook.url("/h")).await;
    let a = peer(&server, &app, &secret, "alice", "live").await;
    let b = peer(&server, &app, &secret, "bob", "live").await;
    warm_up(&[&a, &b]).await;
    let before = b.audio_from("alice").len();

    // 10 users, each in a room of its own, join and leave 25 times: 1000 events
    // (room_started, member_joined, member_left, room_finished per cycle).
    const USERS: usize = 10;
    const CYCLES: usize = 25;
    let mut flood = tokio::task::JoinSet::new();
    for u in 0..USERS {
        let key = server.session_key(&app, &secret, &format!("f{u}")).await;
        let (ws, app) = (server.ws_url(), app.clone());
        flood.spawn(async move {
            for _ in 0..CYCLES {
                let opts = voipchat_client::JoinOptions::signed(
                    ws.clone(),
                    app.clone(),
                    voipchat_proto::OpenId::new(format!("f{u}")),
                    voipchat_proto::GroupId::new(format!("flood{u}")),
                    &key,
                    common::unix_now(),
                );
                let (client, _) = voipchat_client::Client::join(opts).await.expect("join");
                client.exit().await.expect("exit");
            }
        });
    }
    // alice keeps talking through the flood.
    let mut sent = 0u32;
    while !flood.is_empty() {
        a.send(0, sent);
        sent += 1;
        tokio::select! {
            done = flood.join_next() => { done.unwrap().expect("flood task"); }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let heard = b.audio_from("alice").len() - before;
    assert!(
        heard as f64 >= f64::from(sent) * 0.8,
        "bob heard {heard} of the {sent} packets alice sent during the flood"
    );

    let want = USERS * CYCLES * 4 + 3;
    let flood_end = std::time::Instant::now();
    let got = hook.wait_accepted(want, Duration::from_secs(60)).await;
    eprintln!(
        "flood: {sent} audio packets sent by alice during it, {heard} heard by bob; all {} \
         deliveries accepted {:?} after the flood ended",
        got.len(),
        flood_end.elapsed()
    );
    assert_eq!(got.len(), want, "every event of the flood, once");
    let cycle = [
        "room_started",
        "member_joined",
        "member_left",
        "room_finished",
    ];
    for u in 0..USERS {
        let story: Vec<String> = room_story(&got, &format!("flood{u}"))
            .into_iter()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        let expected: Vec<&str> = cycle.iter().copied().cycle().take(CYCLES * 4).collect();
        assert_eq!(story, expected, "flood{u} in order");
    }
    assert_well_formed(&hook, &app);
    a.exit().await;
    b.exit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_are_verified_against_the_system_roots_and_webhook_ca_file() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = data_dir();
    let ca = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));

    // Trusted through webhook_ca_file: delivered over TLS.
    let server = TestServer::start(dir.path(), |c| {
        quick(c);
        c.webhook_ca_file = Some(ca.clone());
    })
    .await;
    let (app, secret) = server.create_app(true);
    let hook = Receiver::start_tls(
        voipchat_store::secret_digest(&secret).expose(),
        acceptor.clone(),
    )
    .await;
    let url = format!("https://localhost:{}/tls", hook.addr.port());
    set_webhook(&server, &app, &secret, &url).await;
    let a = peer(&server, &app, &secret, "alice", "secure").await;
    let got = hook.wait_accepted(2, Duration::from_secs(10)).await;
    assert_eq!(
        room_story(&got, "secure"),
        ["room_started", "member_joined alice 1"]
    );
    assert_well_formed(&hook, &app);
    a.exit().await;
    server.stop().await;

    // Without it the certificate is not trusted: attempts fail, nothing is accepted.
    let dir2 = data_dir();
    let server = TestServer::start(dir2.path(), quick).await;
    let (app, secret) = server.create_app(true);
    let hook = Receiver::start_tls(voipchat_store::secret_digest(&secret).expose(), acceptor).await;
    let url = format!("https://localhost:{}/tls", hook.addr.port());
    set_webhook(&server, &app, &secret, &url).await;
    let a = peer(&server, &app, &secret, "alice", "secure").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        hook.requests().is_empty(),
        "an untrusted receiver gets nothing"
    );
    let (_, metrics) = common::http_request(server.http, "GET", "/metrics", None, None).await;
    assert!(
        !metrics.contains("voipchat_webhook_failed_attempts_total 0\n"),
        "{metrics}"
    );
    a.exit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_api_validates_and_clears() {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), quick).await;
    let (app, secret) = server.create_app(true);
    let auth = Some((&app, &secret));
    let get = || server.http_request("GET", "/api/v1/webhook", auth, None);
    assert_eq!(get().await, (200, r#"{"url":null}"#.to_string()));

    let long = format!("https://h/{}", "a".repeat(2048));
    for (body, why) in [
        (r#"{"url":"ftp://h/x"}"#.to_string(), "http:// or https://"),
        (r#"{"url":"/relative"}"#.to_string(), "http:// or https://"),
        (r#"{"url":"http://u:p@h/"}"#.to_string(), "credentials"),
        (
            serde_json::json!({ "url": long }).to_string(),
            "at most 2048",
        ),
        (r#"{"url":""}"#.to_string(), "empty"),
        (r#"{"url":5}"#.to_string(), "invalid body"),
        (
            r#"{"url":"http://h/","extra":1}"#.to_string(),
            "invalid body",
        ),
        ("not json".to_string(), "invalid body"),
    ] {
        let (status, answer) = server
            .http_request("PUT", "/api/v1/webhook", auth, Some(&body))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        let (code, msg) = api_failure(&answer);
        assert_eq!(code, -10007, "{answer}");
        assert!(
            msg.starts_with("api:fail ") && msg.contains(why),
            "{body}: {msg}"
        );
    }
    assert_eq!(get().await.1, r#"{"url":null}"#);

    let hook = Receiver::start(
        voipchat_store::secret_digest(&secret).expose(),
        Mode::Accept,
    )
    .await;
    set_webhook(&server, &app, &secret, &hook.url("/h")).await;
    assert_eq!(
        get().await.1,
        serde_json::json!({ "url": hook.url("/h") }).to_string()
    );
    // Another app's credentials see their own setting only; none at all is refused.
    let (other, other_secret) = server.create_app(true);
    let (_, answer) = server
        .http_request(
            "GET",
            "/api/v1/webhook",
            Some((&other, &other_secret)),
            None,
        )
        .await;
    assert_eq!(answer, r#"{"url":null}"#);
    let (status, _) = server
        .http_request("GET", "/api/v1/webhook", None, None)
        .await;
    assert_eq!(status, 401);

    // Cleared: no more deliveries, and those waiting are dropped.
    hook.stop().await;
    let a = peer(&server, &app, &secret, "alice", "g").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = server
        .http_request("DELETE", "/api/v1/webhook", auth, None)
        .await;
    assert_eq!((status, answer.as_str()), (200, r#"{"url":null}"#));
    assert_eq!(
        voipchat_store::Store::outbox_counts(server.store.as_ref())
            .unwrap()
            .pending,
        0
    );
    hook.restart().await;
    a.exit().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hook.accepted().is_empty(), "{:?}", hook.accepted());
    server.stop().await;
}
