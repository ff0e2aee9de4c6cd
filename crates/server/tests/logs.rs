//! What the operator reads in the log. One who announces an address the clients cannot reach
//! (a README sample pasted as is, a wrong public_ip) hears why members vanish: the warning
//! names the announced address. Refused joins are logged with their code, leave reasons read
//! as words, each room's close is logged once. Its own test binary, so that its log capture
//! is the process's only subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::peers::{peer, setup, TestPeer};
use voipchat_proto::ErrorCode;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_media_never_connects_is_logged_with_the_announced_address() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .init();
    // 127.0.0.2 is loopback but nothing listens there: ICE checks go nowhere (and no packet
    // leaves the machine).
    let (_dir, server, app, secret) = setup(|c| {
        c.public_ip = Some("127.0.0.2".parse().unwrap());
        c.media_timeout_secs = 1;
    })
    .await;
    let p = peer(&server, &app, &secret, "unreachable-user", "g").await;
    assert!(
        p.wait_until(Duration::from_secs(5), || p.interrupted().is_some())
            .await
    );
    assert_eq!(p.interrupted(), Some(ErrorCode::MediaTimeout.code()));
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("unreachable-user"))
        .unwrap_or_else(|| panic!("no warning about the member in:\n{text}"));
    let announced = format!("127.0.0.2:{}", server.media.port());
    assert!(line.contains(&announced), "{line}");
    assert!(line.contains("never connected"), "{line}");
    assert!(line.contains("public_ip"), "{line}");

    // A refused join is logged at info with its code and who tried, never the key.
    server.session_key(&app, &secret, "wrong-signer").await;
    let key = voipchat_proto::Secret::new("not-the-session-key");
    let refused = TestPeer::join_with_key(&server, &app, &key, "wrong-signer", "g").await;
    assert!(
        refused.is_err(),
        "a join signed with another key is refused"
    );
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("join refused") && l.contains("wrong-signer"))
        .unwrap_or_else(|| panic!("no refusal logged in:\n{text}"));
    assert!(line.contains("INFO") && line.contains("-10001"), "{line}");
    assert!(!text.contains("not-the-session-key"), "a key was logged");
    // Members leaving are logged with a readable reason, rooms closed once.
    assert!(
        text.contains("reason=no media for too long (-11003)"),
        "readable leave reason in:\n{text}"
    );
    assert!(!text.contains("reason=None") && !text.contains("reason=Some("));
    assert_eq!(text.matches("room closed").count(), 1, "{text}");
    server.stop().await;
}
