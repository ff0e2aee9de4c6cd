//! docs/webhooks.md's receivers work as printed: its Node and Python blocks run, unchanged,
//! as the webhook endpoint of a real server whose members join and leave; each prints the
//! room's events in order, refuses a forged and a replayed request with 401, and handles a
//! duplicate once. Its Rust block is the code the test receiver of tests/webhooks.rs checks
//! signatures with. Skipped, with a message, where node or python3 is missing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::peers::peer;
use common::{data_dir, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOC: &str = include_str!("../../../docs/webhooks.md");

/// The fenced blocks of the doc whose info string is `lang`.
fn blocks(lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<(bool, String)> = None;
    for line in DOC.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim() == lang, String::new())),
            (Some(_), Some(_)) => {
                let (wanted, text) = current.take().unwrap();
                if wanted {
                    out.push(text);
                }
            }
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

#[test]
fn the_rust_block_is_the_code_the_test_receiver_runs() {
    let rust = blocks("rust");
    assert_eq!(rust.len(), 1);
    assert_eq!(
        rust[0].trim(),
        include_str!("common/verify_snippet.rs").trim(),
        "docs/webhooks.md's Rust block and tests/common/verify_snippet.rs differ"
    );
}

/// One POST to the receiver with these headers; returns the status.
async fn post(port: u16, headers: &[(&str, String)], body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!(
        "POST /webhooks/voipchat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp))
        .await
        .expect("the receiver answers")
        .unwrap();
    String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line")
}

/// The next line the receiver prints, within 15 s.
async fn line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("a line from the receiver within 15 s")
        .unwrap()
        .expect("the receiver is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_and_python_receivers_of_the_doc_verify_real_deliveries() {
    let dir = data_dir();
    let server = TestServer::start(dir.path(), |c| c.webhook_retry_base_ms = 50).await;
    let (app, secret) = server.create_app(true);
    for (lang, program, file) in [
        ("js", "node", "receiver.mjs"),
        ("python", "python3", "receiver.py"),
    ] {
        if std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped the {lang} receiver: {program} is not installed");
            continue;
        }
        let code = blocks(lang);
        assert_eq!(code.len(), 1, "one {lang} block in docs/webhooks.md");
        let path = dir.path().join(file);
        std::fs::write(&path, &code[0]).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(program)
            .arg(&path)
            .env(
                "WEBHOOK_SECRET",
                voipchat_store::secret_digest(&secret).expose(),
            )
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(line(&mut lines).await, "listening", "{lang}");

        let url = format!("http://127.0.0.1:{port}/webhooks/voipchat");
        let body = serde_json::json!({ "url": url }).to_string();
        let (status, _) = server
            .http_request("PUT", "/api/v1/webhook", Some((&app, &secret)), Some(&body))
            .await;
        assert_eq!(status, 200);
        let group = format!("doc-{lang}");
        let a = peer(&server, &app, &secret, "alice", &group).await;
        a.exit().await;
        let mut events = Vec::new();
        for _ in 0..4 {
            let v: serde_json::Value = serde_json::from_str(&line(&mut lines).await).unwrap();
            assert_eq!(v["groupId"], group.as_str(), "{lang}: {v}");
            events.push(v);
        }
        let names: Vec<&str> = events
            .iter()
            .map(|v| v["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "room_started",
                "member_joined",
                "member_left",
                "room_finished"
            ],
            "{lang}"
        );

        // Forged, replayed, duplicate, and a fresh one to show the duplicate was not printed.
        let now = common::unix_now();
        let sign = |t: u64, body: &str| {
            voipchat_auth::webhook::signature_header(
                &voipchat_store::secret_digest(&secret),
                t,
                body.as_bytes(),
            )
        };
        let seen = events[0]["id"].as_str().unwrap().to_string();
        let dup_body = serde_json::to_string(&events[0]).unwrap();
        let fresh_body = r#"{"id":"fresh-1","event":"room_started","createdAt":1,"appId":"x","groupId":"later","roomType":"voice"}"#;
        // Signed, but over another body.
        let forged = sign(now, "{}");
        let cases: [(&str, String, &str, &str, u16); 4] = [
            ("forged", forged, fresh_body, "fresh-1", 401),
            (
                "replayed",
                sign(now - 600, fresh_body),
                fresh_body,
                "fresh-1",
                401,
            ),
            ("duplicate", sign(now, &dup_body), &dup_body, &seen, 200),
            ("fresh", sign(now, fresh_body), fresh_body, "fresh-1", 200),
        ];
        for (what, signature, body, delivery, want) in cases {
            let headers = [
                ("X-Voipchat-Signature", signature),
                ("X-Voipchat-Delivery", delivery.to_string()),
                ("X-Voipchat-Event", "room_started".to_string()),
            ];
            assert_eq!(post(port, &headers, body).await, want, "{lang}: {what}");
        }
        let next: serde_json::Value = serde_json::from_str(&line(&mut lines).await).unwrap();
        assert_eq!(
            next["id"], "fresh-1",
            "{lang}: the duplicate was handled once"
        );
        child.start_kill().unwrap();
        let _ = child.wait().await;
    }
    server.stop().await;
}
