//! What an idle WebSocket costs the server: starts `voipchat serve`, holds N connections
//! (default 1,000; `VOIPCHAT_WS_CONNS`) that each got their hello and answer the server's
//! pings, and prints the server's RSS growth per connection. A figure, not an assert: the
//! test checks only that every connection was held and the server still answers.
//!
//! `VOIPCHAT_BIN=/path/to/an/older/voipchat` measures another build the same way (with
//! only the flags every build knows), for a before/after comparison.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_memory_per_connection() {
    let n: usize = std::env::var("VOIPCHAT_WS_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
        .min(5_000);
    let other_build = std::env::var_os("VOIPCHAT_BIN");
    let bin = other_build
        .clone()
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_voipchat").into());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("voipchat.toml");
    // Room for the connections; the join deadline far away (they stay idle).
    let limits = if other_build.is_some() {
        String::new()
    } else {
        "max_connections_per_ip = 10000\nws_join_timeout_ms = 600000\n".to_string()
    };
    std::fs::write(&config, limits).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["--data-dir", dir.path().to_str().unwrap(), "serve"])
        .args(["--http-addr", "127.0.0.1:0", "--media-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn,voipchat_server=info")
        .env_remove("VOIPCHAT_CONFIG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let http: std::net::SocketAddr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("server starts")
            .unwrap()
            .expect("server runs");
        let line = strip_ansi(&line);
        if !line.contains("voipchat serving") {
            continue;
        }
        if let Some(rest) = line.split("http=").nth(1) {
            let addr = rest.split(' ').next().unwrap();
            let addr: String = addr
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break addr.parse().unwrap();
        }
    };
    // Drain the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("ws://{http}/ws");
    // One connection and back first, so lazily built state is in the baseline.
    drop(tokio_tungstenite::connect_async(&url).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel::<()>(n);
    let mut readers = Vec::with_capacity(n);
    for i in 0..n {
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(&url),
        )
        .await;
        let Ok(Ok((mut ws, _))) = connected else {
            panic!(
                "connection {i} within 10 s: {:?}",
                connected.map(|r| r.err().map(|e| e.to_string()))
            );
        };
        let held = held_tx.clone();
        readers.push(tokio::spawn(async move {
            // The hello, then read on (which answers the server's pings) until dropped.
            if let Some(Ok(_hello)) = ws.next().await {
                let _ = held.send(()).await;
            }
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }
    let mut held = 0;
    while held < n {
        tokio::time::timeout(Duration::from_secs(20), held_rx.recv())
            .await
            .expect("every connection gets its hello within 20 s");
        held += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{} holding {n} idle WebSockets: RSS {before} KiB -> {after} KiB, {per:.1} KiB per connection",
        if other_build.is_some() { "other build" } else { "this build" }
    );
    assert_eq!(held, n);
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), simple_get(http))
        .await
        .expect("the server answers while holding them");
    // The older build has no per-IP limit; this one was told to allow them all.
    assert_eq!(status, 200);
    for r in readers {
        r.abort();
    }
    let _ = child.kill().await;
}

async fn simple_get(addr: std::net::SocketAddr) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// The line without ANSI colour sequences (ESC [ … m).
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
