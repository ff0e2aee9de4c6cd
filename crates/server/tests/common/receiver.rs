//! A real webhook receiver for the tests: an HTTP/1.1 server on 127.0.0.1 (hyper, optionally
//! behind rustls) that records every request, checks its signature on its own (HMAC-SHA256
//! with the hmac crate, not the server's code), and can fail its first requests, hang, be
//! stopped and be started again on the same port.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200 to everything (after the failures asked for).
    Accept,
    /// Accepts connections and never reads or answers.
    Hang,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub delivery: String,
    pub event_header: String,
    pub body: serde_json::Value,
    pub raw: String,
    /// The signature checked out under the secret, with a timestamp within 5 minutes.
    pub signature_ok: bool,
    /// Answered 2xx.
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    secret: String,
    /// Requests still to fail: odd ones get 500, even ones a dropped connection.
    fail_next: usize,
    failed: usize,
    requests: Vec<Received>,
    connections: usize,
}

/// A running (or stopped) receiver; its state outlives restarts.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    running: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mode: Mode,
}

#[path = "verify_snippet.rs"]
mod verify_snippet;

/// Whether `header` signs `body` under `secret`, checked by the Rust code that
/// docs/webhooks.md shows (tests/docs_webhooks.rs keeps the two the same).
pub fn signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    verify_snippet::verify(secret, header, body, now)
}

impl Receiver {
    /// A receiver on a free port of 127.0.0.1 checking signatures under `secret`.
    pub async fn start(secret: &str, mode: Mode) -> Receiver {
        Self::start_inner(secret, mode, None).await
    }

    /// The same over TLS with `acceptor`.
    pub async fn start_tls(secret: &str, acceptor: tokio_rustls::TlsAcceptor) -> Receiver {
        Self::start_inner(secret, Mode::Accept, Some(acceptor)).await
    }

    async fn start_inner(
        secret: &str,
        mode: Mode,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                secret: secret.to_string(),
                ..State::default()
            })),
            running: Arc::default(),
            tls,
            mode,
        };
        r.serve(listener);
        r
    }

    /// A receiver that is not running yet, on a port that was free a moment ago.
    pub async fn stopped(secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        Receiver {
            addr,
            state: Arc::new(Mutex::new(State {
                secret: secret.to_string(),
                ..State::default()
            })),
            running: Arc::default(),
            tls: None,
            mode: Mode::Accept,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Fails the next `n` requests (500 and dropped connections, alternating).
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn set_secret(&self, secret: &str) {
        self.state.lock().unwrap().secret = secret.to_string();
    }

    /// Stops listening and closes every open connection.
    pub async fn stop(&self) {
        let task = self.running.lock().unwrap().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.serve(listener.expect("the receiver's port is free again"));
    }

    fn serve(&self, listener: TcpListener) {
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            // Hung connections are kept open here until the receiver stops.
            let mut held = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                me.state.lock().unwrap().connections += 1;
                if me.mode == Mode::Hang {
                    held.push(stream);
                    continue;
                }
                let me = me.clone();
                conns.spawn(async move {
                    let tls = me.tls.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { me.handle(req).await }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match &tls {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        *self.running.lock().unwrap() = Some(task);
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, String> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (delivery, event_header, signature) = (
            header("x-voipchat-delivery"),
            header("x-voipchat-event"),
            header("x-voipchat-signature"),
        );
        let content_type = header("content-type");
        let bytes = req
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut state = self.state.lock().unwrap();
        let ok =
            signature_ok(&state.secret, &signature, &bytes) && content_type == "application/json";
        let fail = state.fail_next > 0;
        if fail {
            state.fail_next -= 1;
            state.failed += 1;
        }
        let raw = String::from_utf8_lossy(&bytes).to_string();
        state.requests.push(Received {
            delivery,
            event_header,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            raw,
            signature_ok: ok,
            accepted: !fail,
        });
        let failed = state.failed;
        drop(state);
        if fail {
            if failed.is_multiple_of(2) {
                // An error from the service: hyper closes the connection unanswered.
                return Err("dropped".into());
            }
            return Ok(Response::builder()
                .status(500)
                .body(Full::new(Bytes::from_static(b"try again")))
                .unwrap());
        }
        Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// The accepted deliveries, deduplicated by delivery id (first acceptance kept), in
    /// arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.requests()
            .into_iter()
            .filter(|r| r.accepted && seen.insert(r.delivery.clone()))
            .collect()
    }

    /// Waits up to `limit` until `n` distinct deliveries were accepted.
    pub async fn wait_accepted(&self, n: usize, limit: Duration) -> Vec<Received> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let got = self.accepted();
            if got.len() >= n || tokio::time::Instant::now() >= end {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Accepted events as "event openId members reason" lines of one room, in arrival order.
pub fn room_story(got: &[Received], group: &str) -> Vec<String> {
    got.iter()
        .filter(|r| r.body["groupId"] == group)
        .map(|r| story_line(&r.body))
        .collect()
}

pub fn story_line(b: &serde_json::Value) -> String {
    let mut line = b["event"].as_str().unwrap_or("?").to_string();
    for field in ["openId", "members", "reason"] {
        match &b[field] {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => line.push_str(&format!(" {s}")),
            v => line.push_str(&format!(" {v}")),
        }
    }
    line
}
