//! HTTP limits (docs/security.md#limits): header and body read timeouts, the body size limit
//! on every route, and connections per IP and in total. Bounded in time and count.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes); returns what arrived,
/// or None when the connection was still open at `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).to_string()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_and_body(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let (_, body) = server.http_request("GET", "/metrics", None, None).await;
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// 50 half-sent requests (headers without their end) and 10 connections that send nothing:
/// all are closed by the server within the header timeout (1 s here) plus a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_and_idle_connections_are_closed() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| c.http_header_timeout_ms = 1_000).await;
    let started = Instant::now();
    let mut half = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        half.push(s);
    }
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(server.http).await.unwrap());
    }
    let mut closed = 0;
    for s in half.iter_mut().chain(idle.iter_mut()) {
        if read_until_closed(s, Duration::from_secs(5)).await.is_some() {
            closed += 1;
        }
    }
    println!(
        "header timeout 1 s: {closed} of 60 half-sent or idle connections closed, the last \
         after {:?}",
        started.elapsed()
    );
    assert_eq!(closed, 60);
    assert!(metric(&server, "voipchat_http_timeouts_total{reason=\"header\"}").await >= 50.0);
    // A whole request on a fresh connection is still answered.
    let (status, _) = server.http_request("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// A body that stops halfway: the API answers 408 (-12013) when the body timeout passes and
/// closes the connection; a route that does not read the body closes it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_bodies_are_refused_and_closed() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| c.http_body_timeout_ms = 800).await;
    let (app, secret) = server.create_app(true);
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{app}:{}", secret.expose()),
    );
    for (path, auth) in [
        ("/api/v1/session-key", Some(auth.as_str())),
        ("/demo/sign", None),
        ("/healthz", None),
    ] {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n");
        if let Some(a) = auth {
            head.push_str(&format!("Authorization: Basic {a}\r\n"));
        }
        head.push_str("\r\n{\"openId\":");
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let response = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{path}: the connection is closed within 5 s"));
        let (status, body) = status_and_body(&response);
        println!(
            "{path}: half-sent body answered {status} and closed after {:?}",
            started.elapsed()
        );
        if path.starts_with("/api") {
            assert_eq!(status, 408, "{response}");
            assert_eq!(common::api_failure(&body).0, -12013, "{body}");
        }
    }
    assert!(metric(&server, "voipchat_http_timeouts_total{reason=\"body\"}").await >= 1.0);
    server.stop().await;
}

/// Every route refuses a body larger than `http_max_body_bytes`: a declared length with 413
/// (-12008) before the route runs, a chunked one once it passes the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_has_a_body_limit() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| c.http_max_body_bytes = 4096).await;
    for path in [
        "/demo/sign",
        "/healthz",
        "/ws",
        "/api/v1/session-key",
        "/no-such-route",
    ] {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let response = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{path}: closed within 5 s"));
        let (status, body) = status_and_body(&response);
        assert_eq!(status, 413, "{path}: {response}");
        let (code, msg) = common::api_failure(&body);
        assert_eq!(code, -12008, "{path}: {msg}");
        assert!(msg.contains("at most 4096 bytes"), "{msg}");
    }
    // Chunked, no declared length: the demo's signing route stops reading at the limit.
    let mut s = TcpStream::connect(server.http).await.unwrap();
    s.write_all(b"POST /demo/sign HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("1000\r\n{}\r\n", "a".repeat(0x1000));
    for _ in 0..4 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let response = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("closed within 5 s");
    assert_eq!(status_and_body(&response).0, 413, "{response}");
    server.stop().await;
}

/// Per-IP and total connection limits: the next connection gets one JSON answer (429 with
/// -12010, 503 with -12009) and is closed; a closed connection frees its place; a trusted
/// proxy's connections count only toward the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_and_in_total_are_limited() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| {
        c.max_connections_per_ip = 4;
        c.http_header_timeout_ms = 30_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.http).await.unwrap());
    }
    // Make sure the server has accepted all four before the fifth.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = one_request(&server).await;
    assert_eq!(refused.0, 429, "{refused:?}");
    assert_eq!(common::api_failure(&refused.1).0, -12010);
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        one_request(&server).await.0,
        200,
        "a closed connection frees its place"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metric(
            &server,
            "voipchat_http_refused_connections_total{reason=\"max_connections_per_ip\"}"
        )
        .await,
        1.0
    );
    server.stop().await;

    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |c| {
        c.max_connections_per_ip = 2;
        c.max_connections = 6;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.http_header_timeout_ms = 30_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(TcpStream::connect(server.http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = one_request(&server).await;
    assert_eq!(
        refused.0, 503,
        "six from the proxy pass its per-IP limit of 2: {refused:?}"
    );
    assert_eq!(common::api_failure(&refused.1).0, -12009);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(one_request(&server).await.0, 200);
    server.stop().await;
}

/// GET /healthz on a fresh connection: status and body.
async fn one_request(server: &TestServer) -> (u16, String) {
    let mut s = TcpStream::connect(server.http).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("answered and closed within 5 s");
    status_and_body(&response)
}
