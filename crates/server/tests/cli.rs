//! The `voipchat` binary's own commands.

use std::process::Command;

fn voipchat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_voipchat"))
}

#[test]
fn sign_prints_the_seed_signature_and_nothing_else() {
    let out = voipchat()
        .args([
            "sign",
            "--app-id",
            "wx20afc706a711eefc",
            "--group-id",
            "1559129713_672975982",
            "--nonce-str",
            "8AP6DT9ybtniUJfb",
            "--timestamp",
            "1559129714",
            "--session-key",
            "gDyVgzwa0mFz9uUP7M6GQQ==",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "b002b824688dd8593a6079e11d8c5e8734fbcb39a6d5906eb347bfbcad79c617\n"
    );
}

#[test]
fn app_create_list_enable_disable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = voipchat()
        .args(["--data-dir", data, "app", "create", "--name", "My Game"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let app_id = created["appId"].as_str().unwrap().to_string();
    assert!(app_id.starts_with("wx") && app_id.len() == 18, "{app_id}");
    assert_eq!(created["appSecret"].as_str().unwrap().len(), 64);

    let list = |expect_enabled: bool| {
        let out = voipchat()
            .args(["--data-dir", data, "app", "list"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(row["appId"], app_id.as_str());
        assert_eq!(row["name"], "My Game");
        assert_eq!(row["voipEnabled"], expect_enabled);
        assert!(
            !text.contains(created["appSecret"].as_str().unwrap()),
            "list never shows secrets"
        );
    };
    list(false);
    assert!(voipchat()
        .args(["--data-dir", data, "app", "enable-voip", &app_id])
        .status()
        .unwrap()
        .success());
    list(true);
    assert!(voipchat()
        .args(["--data-dir", data, "app", "disable-voip", &app_id])
        .status()
        .unwrap()
        .success());
    list(false);
    let out = voipchat()
        .args(["--data-dir", data, "app", "enable-voip", "wxnope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app"));
}

mod common;

/// The client CLI binary, built on demand (it belongs to another package of the workspace).
fn client_cli() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("voipchat-client");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "voipchat-client",
            "--bin",
            "voipchat-client",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building voipchat-client");
    assert!(path.exists(), "{} exists", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_peers_send_an_ogg_opus_file_and_record_it_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let wav = work.path().join("tone.wav");
    let opus = work.path().join("tone.opus");
    let ok = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "1", "-b", "16"])
        .arg(&wav)
        .args(["synth", "3", "sine", "440", "vol", "0.5"])
        .status()
        .expect("sox is installed (scripts/test.sh installs it)");
    assert!(ok.success());
    let ok = Command::new("opusenc")
        .args(["--quiet", "--bitrate", "32"])
        .arg(&wav)
        .arg(&opus)
        .status()
        .expect("opusenc is installed (scripts/test.sh installs it)");
    assert!(ok.success());
    let source = voipchat_client::read_ogg_opus(&opus).unwrap();
    assert!(source.len() >= 140, "3 s of 20 ms packets");

    let data = common::data_dir();
    let server = common::TestServer::start(data.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let kb = server.session_key(&app, &secret, "bob").await;
    let ka = server.session_key(&app, &secret, "alice").await;
    let cli = client_cli();
    let rec = work.path().join("rec");
    let ws = server.ws_url();
    let run = |open_id: &str, key: &str, extra: Vec<String>| {
        let mut c = tokio::process::Command::new(&cli);
        c.args([
            "join",
            "--server",
            &ws,
            "--app-id",
            app.as_str(),
            "--open-id",
            open_id,
        ])
        .args(["--group-id", "cli-room", "--session-key", key])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        c.spawn().expect("client cli starts")
    };
    let bob = run(
        "bob",
        kb.expose(),
        vec![
            "--record-dir".into(),
            rec.to_str().unwrap().into(),
            "--duration".into(),
            "6".into(),
        ],
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let alice = run(
        "alice",
        ka.expose(),
        vec![
            "--send".into(),
            opus.to_str().unwrap().into(),
            "--duration".into(),
            "5".into(),
        ],
    );
    let alice = alice.wait_with_output().await.unwrap();
    let bob = bob.wait_with_output().await.unwrap();
    let bob_out = String::from_utf8_lossy(&bob.stdout);
    assert!(
        alice.status.success(),
        "alice: {}",
        String::from_utf8_lossy(&alice.stderr)
    );
    assert!(
        bob.status.success(),
        "bob: {}",
        String::from_utf8_lossy(&bob.stderr)
    );
    assert!(
        bob_out.contains("\"membersChanged\""),
        "bob printed events: {bob_out}"
    );

    let recorded = voipchat_client::read_ogg_opus(rec.join("alice.opus")).unwrap();
    // Gaps are filled with 1-byte lost-frame packets; the rest must be alice's packets,
    // byte for byte and in order, nearly all of them.
    let real: Vec<&[u8]> = recorded
        .iter()
        .map(|p| &p.data[..])
        .filter(|d| d.len() > 1)
        .collect();
    let src: Vec<&[u8]> = source.iter().map(|p| &p.data[..]).collect();
    assert!(
        real.len() * 10 >= src.len() * 9,
        "{} of {} packets recorded",
        real.len(),
        src.len()
    );
    let start = src
        .iter()
        .position(|p| *p == real[0])
        .expect("first recorded packet is alice's");
    assert_eq!(
        &src[start..start + real.len()],
        &real[..],
        "recording equals the file's packets"
    );
    server.stop().await;
}

/// Drops ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm_and_members_are_told() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args(["--data-dir", &data, "serve", "--http-addr", "127.0.0.1:0"])
        .args(["--media-addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
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
        let line = plain(&line);
        if let Some(rest) = line.split("http=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let out = voipchat()
        .args(["--data-dir", &data, "app", "create", "--name", "g"])
        .output()
        .unwrap();
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (app, secret) = (
        created["appId"].as_str().unwrap().to_string(),
        created["appSecret"].as_str().unwrap().to_string(),
    );
    assert!(voipchat()
        .args(["--data-dir", &data, "app", "enable-voip", &app])
        .status()
        .unwrap()
        .success());
    let (status, body) = common::http_request(
        http,
        "POST",
        "/api/v1/session-key",
        Some((app.clone(), secret)),
        Some(r#"{"openId":"a"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let key = voipchat_proto::Secret::new(v["sessionKey"].as_str().unwrap());
    let opts = voipchat_client::JoinOptions::signed(
        format!("ws://{http}/ws"),
        app.as_str(),
        "a",
        "g",
        &key,
        common::unix_now(),
    );
    let (mut client, _) = voipchat_client::Client::join(opts).await.expect("join");

    let pid = server.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let code = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(ev) = client.next_event().await {
            if let voipchat_client::ClientEvent::Interrupted { err_code, .. } = ev {
                return Some(err_code);
            }
        }
        None
    })
    .await
    .expect("interrupted within 10 s");
    assert_eq!(code, Some(voipchat_proto::ErrorCode::ServerShutdown.code()));
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), server.wait())
        .await
        .expect("server exits within 10 s")
        .unwrap();
    assert!(status.success(), "clean exit: {status}");
}
