//! Running the binary as an operator does: `/readyz` says whether joins can be served (and
//! why not), `log_format = "json"` makes every stderr line one JSON object, and
//! docs/config.md lists every config key with its real default.

mod common;

use std::time::Duration;

/// Starts `voipchat serve` with `extra` flags on ephemeral ports in `dir`; returns the child,
/// its stderr lines read up to the "voipchat serving" line, the rest of them, and its HTTP
/// address.
async fn serve(
    dir: &std::path::Path,
    extra: &[&str],
) -> (
    tokio::process::Child,
    Vec<String>,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    std::net::SocketAddr,
) {
    let s = common::binary::start(dir, extra, "info").await;
    (s.child, s.seen, s.lines, s.http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ready_and_says_which_part_is_not() {
    let dir = common::data_dir();
    let (mut child, _, mut lines, http) = serve(dir.path(), &[]).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (status, body) = common::http_request(http, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"ready": true, "store": "ok", "media": "ok"})
    );
    let (status, body) = common::http_request(http, "GET", "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // The database file is deleted under the running server (a volume gone, an operator's
    // `rm`): SQLite would go on writing to the deleted file, lost at the next start. /readyz
    // says so with 503; /healthz (the process) is still fine.
    let db = dir.path().join("voipchat.sqlite3");
    std::fs::remove_file(&db).unwrap();
    let (status, body) = common::http_request(http, "GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["media"], "ok");
    let store = v["store"].as_str().unwrap();
    assert_eq!(
        store,
        format!(
            "the store does not answer: the database file {} was removed or replaced while \
             open: restart the server",
            db.display()
        )
    );
    let (status, _) = common::http_request(http, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = common::data_dir();
    let (mut child, seen, mut lines, http) =
        serve(dir.path(), &["--log-format", "json", "--test-hooks"]).await;
    // A request that is logged (a failed backend login), then a stop: every line, from the
    // first to the last, is a JSON object with a level and a message.
    let (status, _) = common::http_request(
        http,
        "POST",
        "/api/v1/session-key",
        Some(("wxnobody".into(), "wrong".into())),
        Some(r#"{"openId":"o1"}"#),
    )
    .await;
    assert_eq!(status, 401);
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut all = seen;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
    {
        all.push(line);
    }
    child.wait().await.unwrap();
    for line in &all {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nall: {all:#?}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
    }
    let has = |needle: &str| all.iter().any(|l| l.contains(needle));
    assert!(has("\"message\":\"database "), "{all:#?}");
    assert!(has("\"message\":\"HTTP on http://"), "{all:#?}");
    assert!(has("\"message\":\"voipchat serving\""), "{all:#?}");
    assert!(
        has("\"app_id\""),
        "the refused login, with its fields: {all:#?}"
    );
}

/// docs/config.md's table names every key of `Config` once, with the default the code has:
/// each row's value, put in a config file alone, deserializes to the default config.
#[test]
fn config_md_lists_every_key_with_its_default() {
    let doc = include_str!("../../../docs/config.md");
    // The table under "| Key | Default | Meaning |", up to the blank line after it.
    let rows: Vec<(String, String)> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| Key |"))
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells[1].trim_matches('`').to_string();
            let default = cells[2].trim_matches('`').to_string();
            (key, default)
        })
        .collect();
    let defaults = toml::Value::try_from(voipchat_server::Config::default()).unwrap();
    let table = defaults.as_table().unwrap();
    let mut keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    let mut want: Vec<&str> = table.keys().map(String::as_str).collect();
    // Keys without a default value (None) are not serialized; the doc says "none".
    want.extend([
        "public_ip",
        "metrics_addr",
        "tls_cert",
        "tls_key",
        "webhook_ca_file",
        "turn_secret",
        "store",
        "node_id",
        "public_url",
        "secrets_key_file",
    ]);
    want.sort();
    assert_eq!(keys, want, "docs/config.md keys vs Config");
    for (key, default) in &rows {
        if default == "none" {
            continue;
        }
        let text = format!("{key} = {default}\n");
        let parsed: voipchat_server::Config = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("docs/config.md: {key} = {default}: {e}"));
        assert_eq!(
            parsed,
            voipchat_server::Config::default(),
            "docs/config.md gives {key} the default {default}, the code another"
        );
    }
}

/// The media socket asks for `media_recv_buffer_bytes`: what it asks below the kernel's
/// `rmem_max` it gets, and a wish above it binds anyway (with a warning in the log).
#[tokio::test]
async fn the_media_socket_asks_for_its_receive_buffer() {
    let mut config = voipchat_server::Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        media_addr: "127.0.0.1:0".parse().unwrap(),
        ..voipchat_server::Config::default()
    };
    let kept = |l: &voipchat_server::Listeners| {
        // Linux reports twice what it keeps for data.
        socket2::SockRef::from(&l.media[0])
            .recv_buffer_size()
            .unwrap()
            / 2
    };
    config.media_recv_buffer_bytes = 0;
    let default = kept(&voipchat_server::Listeners::bind(&config).await.unwrap());
    config.media_recv_buffer_bytes = default + 64 * 1024;
    let more = kept(&voipchat_server::Listeners::bind(&config).await.unwrap());
    // Unless the kernel's cap is the default itself (then it grants no more, and says so).
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0);
    if rmem_max >= default + 64 * 1024 {
        assert!(
            more >= default + 64 * 1024,
            "asked {} got {more}",
            default + 64 * 1024
        );
    }
    config.media_recv_buffer_bytes = 1 << 30;
    assert!(
        voipchat_server::Listeners::bind(&config).await.is_ok(),
        "a wish above rmem_max binds"
    );
}

/// The HTTP listener turns Nagle's algorithm off on what it accepts: signaling writes a
/// joinResult and an offer back to back, and with Nagle on the offer waited for the client's
/// delayed acknowledgement (40 ms on Linux) before every join's first remote audio.
#[tokio::test]
async fn http_connections_are_accepted_with_nagle_off() {
    use axum::serve::Listener;
    // Plain: a listener accepts with Nagle on (the kernel's default).
    let mut plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    let _c1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (io, _) = Listener::accept(&mut plain).await;
    assert!(!io.nodelay().unwrap(), "the default this guards against");
    // The server's: Nagle off.
    let mut ours = voipchat_server::no_delay(plain);
    let _c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (io, _) = ours.accept().await;
    assert!(io.nodelay().unwrap());
}
