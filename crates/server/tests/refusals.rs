//! Every join refusal has its own code and changes nothing: no room, no quota, no member.

mod common;

use common::{unix_now, RawWs, TestServer};
use voipchat_proto::{AppId, ErrorCode, Secret};

/// A join frame signed with `key` (the SDP does not matter: refusals come before media).
fn join_frame(
    app: &AppId,
    open_id: &str,
    group: &str,
    nonce: &str,
    ts: u64,
    key: &Secret,
) -> serde_json::Value {
    let signature = voipchat_auth::sign(app.as_str(), group, nonce, ts, key);
    serde_json::json!({
        "type": "join", "appId": app, "openId": open_id, "groupId": group,
        "nonceStr": nonce, "timeStamp": ts, "signature": signature,
        "roomType": "voice", "muteConfig": {"muteMicrophone": false, "muteEarphone": false},
        "sdp": "v=0\r\n"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_code_and_changes_nothing() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let (off_app, off_secret) = server.create_app(false);
    let key = server.session_key(&app, &secret, "u1").await;
    let _ = server.session_key(&off_app, &off_secret, "u1").await;
    let now = unix_now();
    let mut ws = RawWs::connect(&server.ws_url()).await;

    let mut cases: Vec<(&str, String, ErrorCode)> = Vec::new();
    let good = join_frame(&app, "u1", "g", "nonce-0", now, &key);

    let mut v = good.clone();
    v["signature"] = serde_json::json!("0".repeat(64));
    cases.push(("bad signature", v.to_string(), ErrorCode::InvalidSignature));

    let wrong_key = Secret::new("AAAAAAAAAAAAAAAAAAAAAA==");
    cases.push((
        "signed with another key",
        join_frame(&app, "u1", "g", "nonce-1", now, &wrong_key).to_string(),
        ErrorCode::InvalidSignature,
    ));
    cases.push((
        "stale timestamp",
        join_frame(&app, "u1", "g", "nonce-2", now - 301, &key).to_string(),
        ErrorCode::StaleTimestamp,
    ));
    cases.push((
        "future timestamp",
        join_frame(&app, "u1", "g", "nonce-3", now + 301, &key).to_string(),
        ErrorCode::StaleTimestamp,
    ));
    cases.push((
        "unknown app",
        join_frame(
            &AppId::from("wx0000000000000000"),
            "u1",
            "g",
            "nonce-4",
            now,
            &key,
        )
        .to_string(),
        ErrorCode::UnknownApp,
    ));
    cases.push((
        "voip not enabled",
        join_frame(&off_app, "u1", "g", "nonce-5", now, &key).to_string(),
        ErrorCode::VoipNotEnabled,
    ));
    cases.push((
        "no session key",
        join_frame(&app, "nobody", "g", "nonce-6", now, &key).to_string(),
        ErrorCode::UnknownSession,
    ));
    let mut v = good.clone();
    v["nonceStr"] = serde_json::json!("n".repeat(128));
    cases.push(("nonce of 128 chars", v.to_string(), ErrorCode::InvalidField));
    let mut v = good.clone();
    v["groupId"] = serde_json::json!("g".repeat(129));
    cases.push(("groupId too long", v.to_string(), ErrorCode::InvalidField));
    let mut v = good.clone();
    v["groupId"] = serde_json::json!("");
    cases.push(("empty groupId", v.to_string(), ErrorCode::InvalidField));
    let mut v = good.clone();
    v["timeStamp"] = serde_json::json!(1.5);
    cases.push((
        "fractional timestamp",
        v.to_string(),
        ErrorCode::InvalidField,
    ));
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("signature");
    cases.push(("missing signature", v.to_string(), ErrorCode::InvalidField));
    let mut v = good.clone();
    v["roomType"] = serde_json::json!("hologram");
    cases.push(("unknown room type", v.to_string(), ErrorCode::InvalidField));
    cases.push(("not json", "{join".into(), ErrorCode::MalformedMessage));
    cases.push((
        "unknown type",
        r#"{"type":"dance"}"#.into(),
        ErrorCode::MalformedMessage,
    ));
    cases.push((
        "oversize frame",
        format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70_000)),
        ErrorCode::MessageTooLarge,
    ));
    cases.push((
        "exit outside a room",
        r#"{"type":"exit"}"#.into(),
        ErrorCode::NotInRoom,
    ));
    cases.push((
        "mute outside a room",
        r#"{"type":"updateMuteConfig","muteConfig":{"muteMicrophone":true}}"#.into(),
        ErrorCode::NotInRoom,
    ));
    cases.push((
        "answer outside a room",
        r#"{"type":"answer","sdp":"v=0"}"#.into(),
        ErrorCode::NotInRoom,
    ));

    for (what, frame, want) in &cases {
        let code = ws.roundtrip_code(frame).await;
        assert_eq!(code, want.code(), "{what}: expected {want:?}");
    }

    // A binary frame is refused and the connection stays usable.
    ws.send_binary(vec![1, 2, 3]).await;
    match ws.recv().await {
        voipchat_proto::ServerMsg::Error { status } => {
            assert_eq!(status.err_code, ErrorCode::MalformedMessage.code());
            assert!(
                status.err_msg.starts_with("signaling:fail "),
                "{}",
                status.err_msg
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    ws.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(ws.recv().await, voipchat_proto::ServerMsg::Pong);

    // Nothing changed: no room created, no quota used.
    assert_eq!(server.rooms_created(&app, &secret).await, 0);
    assert!(server.members(&app, &secret, "g").await.is_empty());

    // A join refused after authentication (here: its junk SDP) gives its nonce back, so
    // the same signed request can be tried again and is refused for the same reason.
    let frame = join_frame(&app, "u1", "g", "once", now, &key).to_string();
    assert_eq!(
        ws.roundtrip_code(&frame).await,
        ErrorCode::InvalidSdp.code()
    );
    // The nonce is returned right after the refusal is sent; give the store a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        ws.roundtrip_code(&frame).await,
        ErrorCode::InvalidSdp.code()
    );
    assert_eq!(
        server.rooms_created(&app, &secret).await,
        0,
        "a refused join takes no quota"
    );

    // A request that was admitted cannot be replayed, from any connection.
    let opts =
        voipchat_client::JoinOptions::signed(server.ws_url(), app.clone(), "u1", "g", &key, now);
    let replay = voipchat_proto::ClientMsg::Join(opts.join_request("v=0\r\n".into())).to_json();
    let (client, _) = voipchat_client::Client::join(opts)
        .await
        .expect("a good join");
    assert_eq!(
        ws.roundtrip_code(&replay).await,
        ErrorCode::ReplayedNonce.code()
    );
    let mut other = RawWs::connect(&server.ws_url()).await;
    assert_eq!(
        other.roundtrip_code(&replay).await,
        ErrorCode::ReplayedNonce.code()
    );
    assert_eq!(server.members(&app, &secret, "g").await, vec!["u1"]);
    client.exit().await.expect("exit");

    // errMsg is in the wx form.
    let mut v = good.clone();
    v["signature"] = serde_json::json!("f".repeat(64));
    ws.send_text(&v.to_string()).await;
    match ws.recv().await {
        voipchat_proto::ServerMsg::JoinResult { status, .. } => {
            assert!(
                status
                    .err_msg
                    .starts_with("joinVoIPChat:fail invalid signature"),
                "{}",
                status.err_msg
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    server.stop().await;
}
