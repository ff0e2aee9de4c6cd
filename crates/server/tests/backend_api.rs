//! The backend HTTP API: session keys (our code2Session) and server-side signing (our
//! getVoIPSign), authenticated by appId + appSecret.

mod common;

use common::{RawWs, TestServer};
use voipchat_proto::{ErrorCode, Secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_rotate_and_server_signing_matches_local_signing() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);

    let k1 = server.session_key(&app, &secret, "alice").await;
    assert_eq!(k1.expose().len(), 24, "16 bytes in base64, like WeChat's");

    let body = serde_json::json!({"openId": "alice", "groupId": "room-1", "timestamp": 1_559_129_714u64, "nonce": "abc"});
    let (status, resp) = server
        .http_request(
            "POST",
            "/api/v1/voip-sign",
            Some((&app, &secret)),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(
        v["signature"].as_str().unwrap(),
        voipchat_auth::sign(app.as_str(), "room-1", "abc", 1_559_129_714, &k1)
    );
    assert!(
        !resp.contains(k1.expose()),
        "the key never leaves the server"
    );

    // Rotation: the old key's signatures stop verifying.
    let k2 = server.session_key(&app, &secret, "alice").await;
    assert_ne!(k1, k2);
    let now = common::unix_now();
    let frame = |key: &Secret, nonce: &str| {
        serde_json::json!({
            "type": "join", "appId": app, "openId": "alice", "groupId": "g",
            "nonceStr": nonce, "timeStamp": now,
            "signature": voipchat_auth::sign(app.as_str(), "g", nonce, now, key),
            "sdp": "v=0\r\n"
        })
        .to_string()
    };
    let mut ws = RawWs::connect(&server.ws_url()).await;
    assert_eq!(
        ws.roundtrip_code(&frame(&k1, "n1")).await,
        ErrorCode::InvalidSignature.code()
    );
    // The new key passes authentication (the junk SDP is what fails then).
    assert_eq!(
        ws.roundtrip_code(&frame(&k2, "n2")).await,
        ErrorCode::InvalidSdp.code()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_refusals() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let body = serde_json::json!({"openId": "alice"}).to_string();

    let wrong = Secret::new("not-the-secret");
    let (status, resp) = server
        .http_request(
            "POST",
            "/api/v1/session-key",
            Some((&app, &wrong)),
            Some(&body),
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        resp.contains(&ErrorCode::BadCredentials.code().to_string()),
        "{resp}"
    );
    let (status, _) = server
        .http_request("POST", "/api/v1/session-key", None, Some(&body))
        .await;
    assert_eq!(status, 401);

    let (status, resp) = server
        .http_request(
            "POST",
            "/api/v1/session-key",
            Some((&app, &secret)),
            Some("{\"openId\": 5}"),
        )
        .await;
    assert_eq!(status, 400, "{resp}");
    assert!(resp.contains(&ErrorCode::InvalidField.code().to_string()));

    let sign =
        serde_json::json!({"openId": "stranger", "groupId": "g", "timestamp": 1, "nonce": "n"});
    let (status, resp) = server
        .http_request(
            "POST",
            "/api/v1/voip-sign",
            Some((&app, &secret)),
            Some(&sign.to_string()),
        )
        .await;
    assert_eq!(status, 404, "{resp}");
    assert!(resp.contains(&ErrorCode::UnknownSession.code().to_string()));

    let long = serde_json::json!({"openId": "alice", "groupId": "g", "timestamp": 1, "nonce": "n".repeat(128)});
    let (status, _) = server
        .http_request(
            "POST",
            "/api/v1/voip-sign",
            Some((&app, &secret)),
            Some(&long.to_string()),
        )
        .await;
    assert_eq!(status, 400);

    let (status, body) = server.http_request("GET", "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    server.stop().await;
}
