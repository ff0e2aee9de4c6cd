//! Admission control: a server whose media task is busier than `media_max_busy_share`
//! refuses joins with -13001 and creates nothing; the same join on a server under its
//! threshold reaches the engine.

mod common;

use std::time::{Duration, Instant};

use common::{RawWs, TestServer};
use voipchat_proto::{AppId, ErrorCode, Secret};

/// Unusable on purpose: an admitted join is refused by the engine (-10010) instead.
fn join_frame(app: &AppId, group: &str, nonce: &str, key: &Secret) -> String {
    common::join_frame(app, group, nonce, key, "v=0\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_refused_with_13001_above_the_configured_load() {
    let dir = common::data_dir();
    // Any work at all is above a share of 0: once the media task has measured its first
    // second, every join is refused.
    let server = TestServer::start(dir.path(), |c| c.media_max_busy_share = 0.0).await;
    let (app, secret) = server.create_app(true);
    let key = server.session_key(&app, &secret, "u1").await;
    let mut ws = RawWs::connect(&server.ws_url()).await;
    // Before the first whole second nothing is known and joins are admitted; wait (at
    // most 10 s) for the meter's first window.
    let until = Instant::now() + Duration::from_secs(10);
    let mut codes = Vec::new();
    for n in 0.. {
        let code = ws
            .roundtrip_code(&join_frame(&app, "g", &format!("n{n}"), &key))
            .await;
        codes.push(code);
        if code == ErrorCode::MediaOverloaded.code() || Instant::now() > until {
            break;
        }
        assert_eq!(code, ErrorCode::InvalidSdp.code(), "{codes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(codes.last(), Some(&-13001), "{codes:?}");
    assert_eq!(server.rooms_created(&app, &secret).await, 0);
    server.stop().await;

    // Under the default threshold the same join reaches the engine.
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let key = server.session_key(&app, &secret, "u1").await;
    let mut ws = RawWs::connect(&server.ws_url()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let code = ws.roundtrip_code(&join_frame(&app, "g", "m0", &key)).await;
    assert_eq!(code, ErrorCode::InvalidSdp.code());
    server.stop().await;
}
