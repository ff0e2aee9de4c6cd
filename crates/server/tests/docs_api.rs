//! docs/api.md's examples work when pasted: every `sh` block of the page runs, in order, in
//! one bash against a real `voipchat serve` (with `cargo run -q --bin voipchat --` standing
//! for this build's binary and the server's port for 7880), and the answers are the ones the
//! page shows. Skipped, with a message, where curl is missing.

mod common;

use std::process::{Command, Stdio};

/// The fenced blocks of `doc` whose info string is `lang`, in order.
fn blocks<'a>(doc: &'a str, lang: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                current = (info.trim() == lang).then(Vec::new);
                if current.is_none() {
                    // Skip to the end of a block of another language.
                    current = Some(vec!["\u{0}skip"]);
                }
            }
            (Some(_), Some(_)) => {
                let block = current.take().unwrap();
                if block.first() != Some(&"\u{0}skip") {
                    out.push(block);
                }
            }
            (Some(block), None) => block.push(line),
            (None, None) => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sh_example_of_the_api_doc_works_when_pasted() {
    use tokio::io::AsyncBufReadExt;
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let sh = blocks(&doc, "sh");
    let script: String = sh.iter().flatten().map(|l| format!("{l}\n")).collect();

    // Every route of the server has an example: the paths of the URLs in the sh blocks.
    let paths: std::collections::BTreeSet<&str> = script
        .split_whitespace()
        .filter_map(|w| {
            w.trim_matches(['\'', '"'])
                .strip_prefix("http://127.0.0.1:7880")
        })
        .collect();
    for route in [
        "/api/v1/session-key",
        "/api/v1/voip-sign",
        "/api/v1/quota",
        "/api/v1/rooms/room-42",
        "/api/v1/rooms/room-42/kick",
        "/api/v1/webhook",
        "/healthz",
        "/readyz",
        "/metrics",
        "/sdk/voipchat.js",
        "/sdk/voip-room.js",
        "/sdk/voipchat.d.ts",
        "/sdk/wx.js",
        "/sdk/wx.d.ts",
        "/",
        "/demo/sign",
        "/api/v1/test/drop-ws",
        "/ws",
    ] {
        assert!(
            paths.contains(route),
            "docs/api.md has no curl example for {route}: {paths:?}"
        );
    }

    let work = tempfile::tempdir().unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--media-addr",
            "127.0.0.1:0",
        ])
        .arg("--test-hooks")
        .current_dir(work.path())
        .env_remove("VOIPCHAT_CONFIG")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let http: std::net::SocketAddr = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("server starts")
            .unwrap()
            .expect("a log line");
        if let Some(rest) = common::plain(&line).split("http=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let bin = format!("'{}'", env!("CARGO_BIN_EXE_voipchat"));
    let script = script
        .replace("cargo run -q --bin voipchat --", &bin)
        .replace("127.0.0.1:7880", &http.to_string());
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env_remove("VOIPCHAT_CONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the examples fail:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let expected = [
        "\"voipEnabled\":true",
        "\"sessionKey\":\"",
        "\"signature\":\"",
        "\"roomsCreated\":0",
        "{\"groupId\":\"room-42\",\"openIdList\":[]}",
        "{\"errCode\":-10009,\"errMsg\":\"api:fail not in a room\"}",
        "{\"url\":\"https://game.example/hooks/voip?token=t1\"}",
        "{\"url\":\"https://game.example/hooks/voip?token=t1\"}",
        "{\"url\":null}",
        "{\"errCode\":-10007,\"errMsg\":\"api:fail url must be an absolute http:// or https:// URL\"}",
        "\"webhookUrl\":\"https://game.example/hooks/voip\"",
        "\"webhookUrl\":null",
        "ok",
        "200\n200\n200\n",
        "\"appId\":\"wxdemo0000000000\"",
        "{\"dropped\":0}",
        "400\n",
    ];
    let mut rest = &stdout[..];
    for e in expected {
        let at = rest
            .find(e)
            .unwrap_or_else(|| panic!("{e:?} not in the examples' output, in order:\n{stdout}"));
        rest = &rest[at + e.len()..];
    }
    // The refusals answer exactly what the page shows for them.
    let refusals = doc.split("## Refusals").nth(1).expect("a Refusals section");
    let shown = blocks(refusals, "json")
        .into_iter()
        .next()
        .expect("its answers");
    assert_eq!(shown.len(), 4);
    for answer in shown {
        assert!(
            stdout.contains(answer),
            "the page shows {answer}, the server answered:\n{stdout}"
        );
    }
    assert!(work.path().join("voipchat.js").exists());
    server.start_kill().unwrap();
    let _ = server.wait().await;
}
