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

/// Starts `voipchat-client join` for one member, its output piped.
fn cli_peer(
    cli: &std::path::Path,
    ws: &str,
    app: &str,
    open_id: &str,
    group: &str,
    key: &str,
    extra: Vec<String>,
) -> tokio::process::Child {
    tokio::process::Command::new(cli)
        .args([
            "join",
            "--server",
            ws,
            "--app-id",
            app,
            "--open-id",
            open_id,
        ])
        .args(["--group-id", group, "--session-key", key])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("client cli starts")
}

/// A server and two CLI peers in `group` (with `common` flags): bob records into `rec` for
/// `bob_secs`; half a second later alice joins with `alice_args` for `alice_secs`. Both must
/// exit 0. Returns the server (still running), its data dir and bob's stdout.
async fn alice_sends_bob_records(
    group: &str,
    common: &[&str],
    rec: &std::path::Path,
    bob_secs: u32,
    alice_args: Vec<String>,
    alice_secs: u32,
) -> (common::TestServer, tempfile::TempDir, String) {
    let data = common::data_dir();
    let server = common::TestServer::start(data.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let kb = server.session_key(&app, &secret, "bob").await;
    let ka = server.session_key(&app, &secret, "alice").await;
    let cli = client_cli();
    let ws = server.ws_url();
    let run = |open_id: &str, key: &str, mut extra: Vec<String>, secs: u32| {
        extra.extend(common.iter().map(|a| a.to_string()));
        extra.extend(["--duration".into(), secs.to_string()]);
        cli_peer(&cli, &ws, app.as_str(), open_id, group, key, extra)
    };
    let record = vec!["--record-dir".into(), rec.to_str().unwrap().into()];
    let bob = run("bob", kb.expose(), record, bob_secs);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let alice = run("alice", ka.expose(), alice_args, alice_secs);
    let alice = alice.wait_with_output().await.unwrap();
    let bob = bob.wait_with_output().await.unwrap();
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
    (
        server,
        data,
        String::from_utf8_lossy(&bob.stdout).to_string(),
    )
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

    let rec = work.path().join("rec");
    let (server, _data, bob_out) = alice_sends_bob_records(
        "cli-room",
        &[],
        &rec,
        6,
        vec!["--send".into(), opus.to_str().unwrap().into()],
        5,
    )
    .await;
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

/// The issue's video path end to end: ffmpeg and libvpx make a real VP8 IVF file, one CLI
/// peer sends it as its camera in a video room, the other records what it receives into
/// DIR/<openId>.ivf, and the recording holds the file's frames byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_peers_send_a_vp8_ivf_file_and_record_it_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let ivf = work.path().join("cam.ivf");
    let ok = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=size=160x120:rate=15:duration=2")
        .args(["-c:v", "libvpx", "-b:v", "200k", "-g", "30"])
        .arg(&ivf)
        .status()
        .expect("ffmpeg is installed (scripts/test.sh installs it)");
    assert!(ok.success());
    let (_, source) = voipchat_client::read_ivf(std::fs::File::open(&ivf).unwrap()).unwrap();
    assert!(source.len() >= 25, "2 s at 15 fps: {}", source.len());
    assert_eq!(source[0].data[0] & 1, 0, "ffmpeg starts with a key frame");

    let rec = work.path().join("rec");
    let (server, _data, bob_out) = alice_sends_bob_records(
        "cli-video",
        &["--room-type", "video"],
        &rec,
        5,
        vec![
            "--send-video".into(),
            ivf.to_str().unwrap().into(),
            "--loop".into(),
        ],
        4,
    )
    .await;
    assert!(bob_out.contains("\"videoStarted\""), "{bob_out}");
    assert!(bob_out.contains("\"videoRecordings\""), "{bob_out}");

    let (_, recorded) =
        voipchat_client::read_ivf(std::fs::File::open(rec.join("alice.ivf")).unwrap()).unwrap();
    assert!(recorded.len() >= 30, "{} frames recorded", recorded.len());
    // The sender loops the file and restarts it at its key frame when asked for one, so the
    // recording is a series of runs of the file, each from the file's first frame: every
    // frame is the file's next one or its first.
    let index = |d: &[u8]| source.iter().position(|f| f.data == d);
    let mut at = index(&recorded[0].data).expect("the first recorded frame is the file's");
    assert_eq!(at, 0, "the recording starts at the file's key frame");
    for (n, f) in recorded.iter().enumerate().skip(1) {
        let i = index(&f.data).unwrap_or_else(|| panic!("frame {n} is not one of the file's"));
        assert!(
            i == (at + 1) % source.len() || i == 0,
            "frame {n} is file frame {i} after {at}"
        );
        at = i;
    }
    server.stop().await;
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
        let line = common::plain(&line);
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

/// `voipchat ARGS` in `cwd` with `envs` set and VOIPCHAT_CONFIG removed unless given.
fn voipchat_in(
    cwd: &std::path::Path,
    envs: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut cmd = voipchat();
    cmd.current_dir(cwd)
        .env_remove("VOIPCHAT_CONFIG")
        .args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON value ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Reads the server's stderr up to its "voipchat serving" log line; returns every line read
/// (colours removed) and the HTTP address of that line.
async fn startup_lines(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) -> (Vec<String>, std::net::SocketAddr) {
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("server starts")
            .unwrap()
            .unwrap_or_else(|| panic!("server exited: {seen:#?}"));
        let line = common::plain(&line);
        seen.push(line.clone());
        if let Some(rest) = line.split("http=").nth(1) {
            let http = rest.split_whitespace().next().unwrap().parse().unwrap();
            return (seen, http);
        }
    }
}

/// The data dir is relative, which made `app create` run from another directory use another
/// database without a word. Now `serve` prints the absolute database path and its addresses,
/// every `app` command prints its database on stderr (stdout stays JSON), VOIPCHAT_CONFIG
/// names the config when --config is not given, and a relative data_dir in a config file is
/// relative to the file: the same config from anywhere means the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_app_commands_name_their_database_and_share_it_through_voipchat_config() {
    use tokio::io::AsyncBufReadExt;
    let root = tempfile::tempdir().unwrap();
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    let (etc, here, there) = (
        root_path.join("etc"),
        root_path.join("here"),
        root_path.join("there"),
    );
    for d in [&etc, &here, &there] {
        std::fs::create_dir_all(d).unwrap();
    }
    let config = etc.join("voipchat.toml");
    std::fs::write(
        &config,
        "http_addr = \"127.0.0.1:0\"\nmedia_addr = \"127.0.0.1:0\"\ndata_dir = \"state\"\n",
    )
    .unwrap();
    let config_env = config.to_str().unwrap();
    let db = etc.join("state").join("voipchat.sqlite3");
    let db_line = format!("voipchat: database {}", db.display());

    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .arg("serve")
        .current_dir(&here)
        .env("VOIPCHAT_CONFIG", config_env)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let (seen, http) = startup_lines(&mut lines).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let text = seen.join("\n");
    assert!(
        seen.iter().any(|l| l.starts_with(&db_line)),
        "serve prints the absolute database path {db_line:?}: {text}"
    );
    assert!(
        text.contains(&format!("database={}", db.display())),
        "and logs it: {text}"
    );
    assert!(
        text.contains(&format!("voipchat: HTTP on http://{http}/")),
        "{text}"
    );
    let media_line = seen
        .iter()
        .find(|l| l.starts_with("voipchat: media on UDP and TCP 127.0.0.1:"))
        .unwrap_or_else(|| panic!("the media address is printed: {text}"));
    assert!(
        media_line.contains("announced to clients as 127.0.0.1"),
        "{media_line}"
    );
    let serving = seen.last().unwrap();
    assert!(
        serving.contains("media=127.0.0.1:") && serving.contains("announce=127.0.0.1"),
        "the log line has the media and announced addresses: {serving}"
    );
    assert!(!here.join("voipchat-data").exists(), "nothing in the cwd");

    // From another directory, VOIPCHAT_CONFIG leads to the same file, and says so.
    let env = [("VOIPCHAT_CONFIG", config_env)];
    let out = voipchat_in(&there, &env, &["app", "create", "--name", "Shared"]);
    let created = stdout_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{db_line}, config {}", config.display())),
        "app create names its database and config on stderr: {stderr}"
    );
    let (app, secret) = (
        created["appId"].as_str().unwrap().to_string(),
        created["appSecret"].as_str().unwrap().to_string(),
    );
    let out = voipchat_in(&there, &env, &["app", "enable-voip", &app]);
    stdout_json(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&db_line));
    // The running server sees the app: the same database.
    let (status, body) = common::http_request(
        http,
        "POST",
        "/api/v1/session-key",
        Some((app.clone(), secret.clone())),
        Some(r#"{"openId":"a"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // --config works the same, and wins over the environment.
    let out = voipchat_in(
        &there,
        &[("VOIPCHAT_CONFIG", "/nonexistent/voipchat.toml")],
        &["app", "show", &app, "--config", config_env],
    );
    assert_eq!(stdout_json(&out)["appId"], app.as_str());
    assert!(!there.join("voipchat-data").exists(), "nothing in the cwd");

    // Without it, another directory has no database: refused, naming the path it looked at,
    // instead of an empty list from a new, empty file.
    let out = voipchat_in(&there, &[], &["app", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = there.join("voipchat-data").join("voipchat.sqlite3");
    assert!(
        stderr.contains(&format!("no database at {}", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("VOIPCHAT_CONFIG"), "{stderr}");
    assert!(!missing.exists(), "the refused command created nothing");
    // A VOIPCHAT_CONFIG that does not exist is named as such.
    let out = voipchat_in(
        &there,
        &[("VOIPCHAT_CONFIG", "/nonexistent/voipchat.toml")],
        &["app", "list"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/voipchat.toml") && stderr.contains("VOIPCHAT_CONFIG"),
        "{stderr}"
    );
    // `app create` in a new place makes the database, and says that it is new.
    let out = voipchat_in(&there, &[], &["app", "create", "--name", "Elsewhere"]);
    stdout_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("voipchat: database {}", missing.display()))
            && stderr.contains("new and empty"),
        "{stderr}"
    );
    server.start_kill().unwrap();
    let _ = server.wait().await;
}

/// Starts `voipchat serve` with `args` and returns its exit status and stderr.
fn serve_fails(args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = voipchat()
        .args(["serve", "--data-dir", dir.path().to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_busy_port_is_named_with_its_role_and_its_setting() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap();
    let (status, stderr) = serve_fails(&[
        "--http-addr",
        &port.to_string(),
        "--media-addr",
        "127.0.0.1:0",
    ]);
    assert!(!status.success());
    let expected = format!(
        "cannot bind the HTTP address {port}: Address already in use (is another voipchat \
         running? set http_addr or --http-addr)"
    );
    assert!(stderr.contains(&expected), "{stderr}");

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap();
    let (status, stderr) = serve_fails(&[
        "--http-addr",
        "127.0.0.1:0",
        "--media-addr",
        &port.to_string(),
    ]);
    assert!(!status.success());
    let expected = format!(
        "cannot bind the media address (UDP) {port}: Address already in use (is another \
         voipchat running? set media_addr or --media-addr)"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    drop((tcp, udp));
}

/// The option lines of a `--help` text: (flag, description), continuation lines joined.
fn help_options(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut section = String::new();
    for line in help.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            section = line.to_string();
            continue;
        }
        if line.trim().is_empty() || !(section == "Options:" || section == "Arguments:") {
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent <= 6 && (trimmed.starts_with('-') || trimmed.starts_with('<')) {
            let flag = trimmed
                .split([' ', ','])
                .find(|w| w.starts_with("--") || w.starts_with('<'))
                .unwrap_or(trimmed)
                .to_string();
            let desc = trimmed
                .split_once("  ")
                .map(|(_, d)| d.trim())
                .unwrap_or("");
            options.push((flag, desc.to_string()));
        } else if let Some(last) = options.last_mut() {
            last.1.push(' ');
            last.1.push_str(trimmed);
        }
    }
    options
}

fn help_of(args: &[&str]) -> String {
    let out = voipchat().args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_flag_of_serve_and_app_has_a_description_and_its_default() {
    let d = voipchat_server::Config::default();
    let serve = help_of(&["serve"]);
    let options = help_options(&serve);
    // Each flag that overrides the config says the config's own default, from the code.
    let expected: &[(&str, String)] = &[
        ("--config", "[default: $VOIPCHAT_CONFIG if set".into()),
        (
            "--data-dir",
            format!(
                "[default: data_dir from the config, else ./{}]",
                d.data_dir.display()
            ),
        ),
        (
            "--http-addr",
            format!("[default: http_addr from the config, else {}]", d.http_addr),
        ),
        (
            "--media-addr",
            format!(
                "[default: media_addr from the config, else {}]",
                d.media_addr
            ),
        ),
        (
            "--media-shards",
            format!(
                "[default: media_shards from the config, else {}]",
                d.media_shards
            ),
        ),
        (
            "--public-ip",
            "[default: public_ip from the config, else media_addr's IP]".into(),
        ),
        (
            "--room-cap",
            format!("[default: room_cap from the config, else {}]", d.room_cap),
        ),
        (
            "--no-media-tcp",
            "[default: media_tcp from the config, else TCP is on]".into(),
        ),
        (
            "--media-tcp-max-connections",
            format!(
                "[default: media_tcp_max_connections from the config, else {}]",
                d.media_tcp_max_connections
            ),
        ),
        (
            "--daily-room-quota",
            format!(
                "[default: daily_room_quota from the config, else {}]",
                d.daily_room_quota
            ),
        ),
        (
            "--timestamp-window-secs",
            format!(
                "[default: timestamp_window_secs from the config, else {}]",
                d.timestamp_window_secs
            ),
        ),
        (
            "--quota-utc-offset",
            format!(
                "[default: quota_utc_offset from the config, else {}]",
                d.quota_utc_offset
            ),
        ),
        (
            "--media-timeout-secs",
            format!(
                "[default: media_timeout_secs from the config, else {}]",
                d.media_timeout_secs
            ),
        ),
        (
            "--no-demo",
            "[default: demo from the config, else the demo is on]".into(),
        ),
        (
            "--test-hooks",
            "[default: test_hooks from the config, else off]".into(),
        ),
        (
            "--metrics-addr",
            "[default: metrics_addr from the config, else /metrics is on the HTTP address]".into(),
        ),
        (
            "--log-format",
            "[default: log_format from the config, else text]".into(),
        ),
        (
            "--tls-cert",
            "[default: tls_cert from the config, else none: plain HTTP]".into(),
        ),
        (
            "--tls-key",
            "[default: tls_key from the config, else none]".into(),
        ),
        (
            "--allow-insecure-http",
            "[default: allow_insecure_http from the config, else off]".into(),
        ),
    ];
    assert!(d.demo && !d.test_hooks && d.public_ip.is_none() && d.metrics_addr.is_none());
    assert!(d.tls_cert.is_none() && d.tls_key.is_none() && !d.allow_insecure_http);
    assert!(d.media_tcp);
    for (flag, default) in expected {
        let (_, desc) = options
            .iter()
            .find(|(f, _)| f == flag)
            .unwrap_or_else(|| panic!("serve --help lists {flag}: {serve}"));
        assert!(
            desc.contains(default.as_str()),
            "{flag}: {desc:?} lacks {default:?}"
        );
    }
    assert_eq!(options.len(), expected.len() + 1, "and --help: {serve}");

    for cmd in [
        &["app"][..],
        &["app", "create"],
        &["app", "list"],
        &["app", "show"],
        &["app", "enable-voip"],
        &["app", "disable-voip"],
        &["app", "rotate-secret"],
        &["app", "set-webhook"],
        &["app", "delete"],
    ] {
        let help = help_of(cmd);
        let options = help_options(&help);
        for (flag, desc) in &options {
            if flag == "--help" {
                continue;
            }
            assert!(desc.len() > 10, "{cmd:?} {flag}: no description: {help}");
            // Required values have no default; everything else shows one.
            if flag != "--name" && flag != "<APP_ID>" {
                assert!(desc.contains("[default: "), "{cmd:?} {flag}: {desc:?}");
            }
        }
        for flag in ["--config", "--data-dir"] {
            assert!(
                options.iter().any(|(f, _)| f == flag),
                "{cmd:?} takes {flag}: {help}"
            );
        }
    }

    // sign uses no store and no config: its help lists only its own flags.
    let sign = help_of(&["sign"]);
    let flags: Vec<String> = help_options(&sign).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        flags,
        [
            "--app-id",
            "--group-id",
            "--nonce-str",
            "--timestamp",
            "--session-key",
            "--help"
        ],
        "{sign}"
    );
    let out = voipchat()
        .args([
            "--data-dir",
            "/tmp",
            "sign",
            "--app-id",
            "a",
            "--group-id",
            "g",
        ])
        .args(["--nonce-str", "n", "--timestamp", "1", "--session-key", "k"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "sign refuses options it would ignore"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("sign uses neither"));
}

#[test]
fn an_empty_app_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for name in ["", "   ", "\t"] {
        let out = voipchat()
            .args(["app", "create", "--data-dir", data, "--name", name])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name:?} is refused");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("the app name must not be empty or only spaces"),
            "{name:?}: {stderr}"
        );
    }
    assert!(
        !dir.path().join("voipchat.sqlite3").exists(),
        "nothing was created"
    );
}

/// `app show`, `app rotate-secret` and `app delete` against a running server's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_show_rotate_secret_and_delete() {
    use voipchat_proto::{AppId, OpenId, Secret};
    use voipchat_store::Store;
    let data = common::data_dir();
    let server = common::TestServer::start(data.path(), |_| {}).await;
    let dir = data.path().to_str().unwrap();
    let app_cmd = |args: &[&str]| {
        voipchat()
            .args(["app", "--data-dir", dir])
            .args(args)
            .output()
            .unwrap()
    };
    let created = stdout_json(&app_cmd(&["create", "--name", "Rotating"]));
    let app_id = created["appId"].as_str().unwrap().to_string();
    let old = created["appSecret"].as_str().unwrap().to_string();
    let app = AppId::new(app_id.as_str());
    let quota = |secret: &str| {
        let (app, secret) = (app.clone(), Secret::new(secret));
        let server = &server;
        async move {
            server
                .http_request("GET", "/api/v1/quota", Some((&app, &secret)), None)
                .await
        }
    };
    assert_eq!(quota(&old).await.0, 200);

    // show: the app without its secret.
    let shown = stdout_json(&app_cmd(&["show", &app_id]));
    let mut keys: Vec<&str> = shown
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["appId", "createdAt", "name", "voipEnabled", "webhookUrl"],
        "{shown}"
    );
    assert_eq!(shown["webhookUrl"], serde_json::Value::Null);
    assert_eq!(shown["name"], "Rotating");
    assert_eq!(shown["voipEnabled"], false);
    let out = app_cmd(&["show", "wxnope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app with appId wxnope"));

    // rotate-secret: a new secret, printed once; the old one is refused from now on.
    let out = app_cmd(&["rotate-secret", &app_id]);
    let rotated = stdout_json(&out);
    assert_eq!(rotated["appId"], app_id.as_str());
    let new = rotated["appSecret"].as_str().unwrap().to_string();
    assert_eq!(new.len(), 64);
    assert_ne!(new, old);
    assert!(String::from_utf8_lossy(&out.stderr).contains("old secret"));
    let (status, body) = quota(&old).await;
    assert_eq!(status, 401, "the old secret is refused: {body}");
    assert!(body.contains("-12004"), "{body}");
    let (status, body) = quota(&new).await;
    assert_eq!(status, 200, "the new secret works: {body}");
    assert!(
        !String::from_utf8_lossy(&app_cmd(&["show", &app_id]).stdout).contains(&new),
        "show never prints the secret"
    );
    let out = app_cmd(&["rotate-secret", "wxnope"]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app with appId wxnope"));

    // delete: the app and what was recorded for it go; other apps stay.
    let (other, other_secret) = server.create_app(true);
    let user = OpenId::new("alice");
    let secret = Secret::new(new.as_str());
    server.session_key(&app, &secret, "alice").await;
    server.session_key(&other, &other_secret, "alice").await;
    assert!(
        server
            .store
            .take_room_quota(&app, "2026-11-22", 10)
            .unwrap()
            .granted
    );
    assert!(server
        .store
        .consume_nonce(&app, &user, "n", u64::MAX, 0)
        .unwrap());
    let deleted = stdout_json(&app_cmd(&["delete", &app_id]));
    assert_eq!(
        deleted,
        serde_json::json!({"appId": app_id, "deleted": true})
    );
    assert_eq!(
        quota(&new).await.0,
        401,
        "a deleted app cannot call the API"
    );
    assert_eq!(server.store.app(&app).unwrap(), None);
    assert_eq!(server.store.session_key(&app, &user).unwrap(), None);
    assert_eq!(server.store.rooms_created(&app, "2026-11-22").unwrap(), 0);
    assert!(
        server
            .store
            .consume_nonce(&app, &user, "n", u64::MAX, 0)
            .unwrap(),
        "its nonces are forgotten"
    );
    assert!(server.store.session_key(&other, &user).unwrap().is_some());
    assert!(!app_cmd(&["show", &app_id]).status.success());
    for id in [app_id.as_str(), "wxnope"] {
        let out = app_cmd(&["delete", id]);
        assert!(!out.status.success(), "delete {id} is refused");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("no app with appId {id}")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = String::from_utf8(app_cmd(&["list"]).stdout).unwrap();
    assert!(
        !listed.contains(&app_id) && listed.contains(other.as_str()),
        "{listed}"
    );
    server.stop().await;
}

/// `app set-webhook`: refuses what is not an http(s) URL with a reason, sets, shows, clears.
#[test]
fn app_set_webhook_validates_sets_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let app_cmd = |args: &[&str]| {
        voipchat()
            .args(["app", "--data-dir", data])
            .args(args)
            .output()
            .unwrap()
    };
    let created = stdout_json(&app_cmd(&["create", "--name", "Hooked"]));
    let app_id = created["appId"].as_str().unwrap().to_string();
    let long = format!("https://h/{}", "a".repeat(2048));
    for (url, why) in [
        ("ftp://game.example/hook", "http:// or https://"),
        ("game.example/hook", "http:// or https://"),
        ("https://user:pw@game.example/", "credentials"),
        (long.as_str(), "at most 2048"),
    ] {
        let out = app_cmd(&["set-webhook", &app_id, url]);
        assert!(!out.status.success(), "{url} is refused");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refused webhook URL") && stderr.contains(why),
            "{url}: {stderr}"
        );
    }
    let shown = stdout_json(&app_cmd(&["show", &app_id]));
    assert_eq!(shown["webhookUrl"], serde_json::Value::Null);

    let url = "https://game.example/hooks/voip?token=abc";
    let set = stdout_json(&app_cmd(&["set-webhook", &app_id, url]));
    assert_eq!(set, serde_json::json!({"appId": app_id, "webhookUrl": url}));
    let shown = stdout_json(&app_cmd(&["show", &app_id]));
    assert_eq!(shown["webhookUrl"], url);

    // Neither a URL nor --clear, or both: refused by the argument parser.
    assert!(!app_cmd(&["set-webhook", &app_id]).status.success());
    assert!(!app_cmd(&["set-webhook", &app_id, url, "--clear"])
        .status
        .success());
    let cleared = stdout_json(&app_cmd(&["set-webhook", &app_id, "--clear"]));
    assert_eq!(cleared["webhookUrl"], serde_json::Value::Null);
    let shown = stdout_json(&app_cmd(&["show", &app_id]));
    assert_eq!(shown["webhookUrl"], serde_json::Value::Null);
    let out = app_cmd(&["set-webhook", "wxnope", url]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app with appId wxnope"));
}
