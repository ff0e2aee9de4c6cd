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

/// voip-sign without nonce and timestamp: the server picks a fresh nonce and its current
/// time, returns both with the signature, and the three verify as a join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voip_sign_fills_in_nonce_and_timestamp() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let key = server.session_key(&app, &secret, "alice").await;

    let sign_call = |body: serde_json::Value| {
        let (app, secret) = (app.clone(), secret.clone());
        let server = &server;
        async move {
            let (status, resp) = server
                .http_request(
                    "POST",
                    "/api/v1/voip-sign",
                    Some((&app, &secret)),
                    Some(&body.to_string()),
                )
                .await;
            assert_eq!(status, 200, "{resp}");
            serde_json::from_str::<serde_json::Value>(&resp).unwrap()
        }
    };

    let before = common::unix_now();
    let a = sign_call(serde_json::json!({"openId": "alice", "groupId": "room-1"})).await;
    let b = sign_call(serde_json::json!({"openId": "alice", "groupId": "room-1"})).await;
    let after = common::unix_now();
    for v in [&a, &b] {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, ["nonceStr", "signature", "timeStamp"], "{v}");
        let nonce = v["nonceStr"].as_str().unwrap();
        assert_eq!(nonce.len(), 16, "{v}");
        assert!(nonce.chars().all(|c| c.is_ascii_alphanumeric()), "{v}");
        let ts = v["timeStamp"].as_u64().expect("timeStamp is an integer");
        assert!(
            (before..=after).contains(&ts),
            "{ts} not in {before}..={after}"
        );
        // The signature verifies as the join the client will send.
        let join: voipchat_proto::signal::JoinRequest = serde_json::from_value(serde_json::json!({
            "appId": app, "openId": "alice", "groupId": "room-1",
            "nonceStr": nonce, "timeStamp": ts,
            "signature": v["signature"], "sdp": "v=0\r\n"
        }))
        .unwrap();
        voipchat_auth::verify(&join, &key, after, &voipchat_auth::VerifyPolicy::default())
            .expect("the filled-in signature verifies");
    }
    assert_ne!(
        a["nonceStr"], b["nonceStr"],
        "every call gets its own nonce"
    );
    assert_ne!(a["signature"], b["signature"]);

    // The server accepts it: the junk SDP is what fails, after signature and nonce checks.
    let mut ws = RawWs::connect(&server.ws_url()).await;
    let frame = serde_json::json!({
        "type": "join", "appId": app, "openId": "alice", "groupId": "room-1",
        "nonceStr": a["nonceStr"], "timeStamp": a["timeStamp"],
        "signature": a["signature"], "sdp": "v=0\r\n"
    });
    assert_eq!(
        ws.roundtrip_code(&frame.to_string()).await,
        ErrorCode::InvalidSdp.code()
    );

    // Given values are signed as they are and echoed, under either name.
    for body in [
        serde_json::json!({"openId": "alice", "groupId": "g", "nonceStr": "fixed", "timeStamp": 1_559_129_714u64}),
        serde_json::json!({"openId": "alice", "groupId": "g", "nonce": "fixed", "timestamp": 1_559_129_714u64}),
    ] {
        let v = sign_call(body).await;
        assert_eq!(v["nonceStr"], "fixed");
        assert_eq!(v["timeStamp"], 1_559_129_714u64);
        assert_eq!(
            v["signature"].as_str().unwrap(),
            voipchat_auth::sign(app.as_str(), "g", "fixed", 1_559_129_714, &key)
        );
    }
    // Only a timestamp: a fresh nonce with it.
    let v = sign_call(serde_json::json!({"openId": "alice", "groupId": "g", "timeStamp": 7})).await;
    assert_eq!(v["timeStamp"], 7);
    assert_eq!(v["nonceStr"].as_str().unwrap().len(), 16);

    // Naming a field twice (old and new name) is refused.
    let (status, resp) = server
        .http_request(
            "POST",
            "/api/v1/voip-sign",
            Some((&app, &secret)),
            Some(r#"{"openId":"alice","groupId":"g","nonce":"a","nonceStr":"b"}"#),
        )
        .await;
    assert_eq!(status, 400, "{resp}");
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

/// Unknown paths and wrong methods answer the API's `{errCode, errMsg}` JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    for (method, path) in [
        ("GET", "/api/v1/quotas"),
        ("POST", "/api/v1/rooms/g/unmute"),
        ("GET", "/nope"),
    ] {
        let (status, body) = server
            .http_request(method, path, Some((&app, &secret)), None)
            .await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(
            common::api_failure(&body),
            (
                ErrorCode::UnknownRoute.code() as i64,
                format!("api:fail no such route: {method} {path}")
            )
        );
    }
    for (method, path) in [
        ("GET", "/api/v1/session-key"),
        ("DELETE", "/api/v1/quota"),
        ("PUT", "/api/v1/rooms/g/kick"),
        ("POST", "/api/v1/rooms"),
        ("DELETE", "/api/v1/rooms/g"),
        ("GET", "/api/v1/rooms/g/close"),
        ("PUT", "/api/v1/settings"),
        ("POST", "/api/openapi.json"),
        ("POST", "/healthz"),
    ] {
        let (status, body) = server
            .http_request(method, path, Some((&app, &secret)), None)
            .await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(
            common::api_failure(&body),
            (
                ErrorCode::MethodNotAllowed.code() as i64,
                format!("api:fail method not allowed on this route: {method} {path}")
            )
        );
    }
    // Without demo mode its routes are unknown routes too.
    server.stop().await;
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| c.demo = false).await;
    let (status, body) = server.http_request("POST", "/demo/sign", None, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        common::api_failure(&body).0,
        ErrorCode::UnknownRoute.code() as i64
    );
    server.stop().await;
}
