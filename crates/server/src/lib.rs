//! The voipchat server: configuration, the HTTP/WebSocket edge and the UDP media task
//! around the sans-IO engine of `voipchat-core`.
//!
//! `run` takes already bound listeners, so tests bind port 0 and run many servers side by
//! side; `main.rs` binds the configured addresses and calls it.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod conn_limits;
pub mod days;
pub mod http;
pub mod logging;
pub mod media;
pub mod media_load;
pub mod media_tcp;
pub mod metrics;
pub mod quota;
pub mod secrets;
pub mod serve;
pub mod shards;
pub mod tls;
pub mod turn;
pub mod udp_batch;
pub mod web;
pub mod webhooks;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use voipchat_core::{Engine, EngineConfig};
use voipchat_store::Store;

pub use config::Config;
pub use logging::log_filter;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// The media shards' command queues.
    pub media: shards::Shards,
    /// Turns true when the server is stopping.
    pub shutdown: watch::Receiver<bool>,
    /// Held by every WebSocket connection task; `run` returns once all are gone (or after a
    /// bound), so a stopping server's last frames are read before its sockets close.
    pub connections: mpsc::Sender<()>,
    pub metrics: Arc<metrics::Metrics>,
    /// TURN credentials to hand out in each connection's `hello`, when TURN is configured.
    pub turn: Option<Arc<turn::TurnCredentials>>,
    /// This node in the room directory, when several nodes share a Redis store.
    pub cluster: Option<Arc<cluster::Cluster>>,
}

/// The sockets the server runs on, bound by the caller, and what `http` serves TLS with.
pub struct Listeners {
    pub http: TcpListener,
    /// One UDP socket per media shard (`media_shards`), in shard order.
    pub media: Vec<UdpSocket>,
    /// ICE over TCP on each media socket's IP and port number, when `media_tcp` is on
    /// (else empty).
    pub media_tcp: Vec<TcpListener>,
    /// `/metrics` alone, when `metrics_addr` is set (else it is on `http`). Plain HTTP.
    pub metrics: Option<TcpListener>,
    /// With `tls_cert` and `tls_key`: `http` serves HTTPS/WSS with this certificate.
    pub tls: Option<tls::Certificate>,
}

impl Listeners {
    /// Loads the TLS certificate if one is configured, then binds the configured addresses
    /// (port 0 picks a free port). A bind error keeps the kind of the OS error and says which
    /// address failed and which setting chooses it, e.g. "cannot bind the HTTP address
    /// 127.0.0.1:7880: Address already in use (is another voipchat running? set http_addr or
    /// --http-addr)"; a certificate error names the file and its setting (see
    /// [`tls::TlsError`]).
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        let tls = match config.tls_files() {
            Some(files) => Some(
                tokio::task::spawn_blocking(move || tls::Certificate::open(files))
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            ),
            None => None,
        };
        let http = TcpListener::bind(config.http_addr)
            .await
            .map_err(|e| bind_error("HTTP address", config.http_addr, "http_addr", e))?;
        let mut media = Vec::new();
        let mut media_tcp = Vec::new();
        for shard in 0..shards::count(config.media_shards) {
            let port = match config.media_addr.port() {
                0 => 0,
                // validate() checked the ports fit.
                p => p.saturating_add(shard as u16),
            };
            let addr = SocketAddr::new(config.media_addr.ip(), port);
            let (udp, tcp) = bind_media_pair(config, addr).await?;
            media.push(udp);
            media_tcp.extend(tcp);
        }
        let metrics = match config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| bind_error("metrics address", addr, "metrics_addr", e))?,
            ),
            None => None,
        };
        Ok(Listeners {
            http,
            media,
            media_tcp,
            metrics,
            tls,
        })
    }
}

/// The UDP media socket and, with `media_tcp`, the TCP listener on the same IP and port
/// number. With port 0 the kernel picks the UDP number, and that TCP port may be taken
/// (by any TCP connection's ephemeral port): then both are picked again, a few times.
async fn bind_media_pair(
    config: &Config,
    at: SocketAddr,
) -> std::io::Result<(UdpSocket, Option<TcpListener>)> {
    const TRIES: usize = 20;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let media = bind_media(at, config.media_recv_buffer_bytes)
            .map_err(|e| bind_error("media address (UDP)", at, "media_addr", e))?;
        if !config.media_tcp {
            return Ok((media, None));
        }
        // The UDP socket's own address: with port 0 the kernel chose the number.
        let addr = media.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((media, Some(tcp))),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && at.port() == 0
                    && attempt < TRIES =>
            {
                continue
            }
            Err(e) => return Err(media_tcp_bind_error(addr, e)),
        }
    }
}

/// The media socket, with a receive buffer of `recv_buffer` bytes asked for before it is
/// bound. A kernel that grants less (its `net.core.rmem_max`) is logged, not refused.
fn bind_media(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if recv_buffer > 0 {
        if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
            tracing::warn!(
                asked = recv_buffer,
                "media socket receive buffer not set: {e}"
            );
        }
        // Linux reports twice what it keeps for data (the rest is its bookkeeping).
        let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
        if granted < recv_buffer {
            tracing::warn!(
                asked = recv_buffer,
                granted,
                "the kernel gave the media socket a smaller receive buffer than \
                 media_recv_buffer_bytes asks: raise net.core.rmem_max (sysctl) to keep \
                 bursts from being dropped"
            );
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// A bind failure that names the address, its role and the setting that picks it.
fn bind_error(what: &str, addr: SocketAddr, key: &str, e: std::io::Error) -> std::io::Error {
    use std::io::ErrorKind;
    let flag = format!("--{}", key.replace('_', "-"));
    // The OS text without its " (os error 98)" tail.
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    let hint = match e.kind() {
        ErrorKind::AddrInUse => format!("is another voipchat running? set {key} or {flag}"),
        ErrorKind::AddrNotAvailable => {
            format!(
                "{} is not an address of this machine: set {key} or {flag}",
                addr.ip()
            )
        }
        ErrorKind::PermissionDenied => {
            format!("ports below 1024 need privileges: set {key} or {flag}")
        }
        _ => format!("set {key} or {flag}"),
    };
    std::io::Error::new(
        e.kind(),
        format!("cannot bind the {what} {addr}: {text} ({hint})"),
    )
}

/// The TCP listener for ICE over TCP must have the UDP media port's number; when that TCP
/// port is taken the remedy differs from a UDP bind failure, so the message says so.
fn media_tcp_bind_error(addr: SocketAddr, e: std::io::Error) -> std::io::Error {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    std::io::Error::new(
        e.kind(),
        format!(
            "cannot bind the media address (TCP, for ICE over TCP) {addr}: {text} (it must be \
             the UDP media port's number: free that TCP port, choose another media_addr, or \
             set media_tcp = false / --no-media-tcp)"
        ),
    )
}

/// The address announced in ICE candidates for a media socket bound at `bound`.
pub fn announce_addr(config: &Config, bound: SocketAddr) -> SocketAddr {
    SocketAddr::new(config.public_ip.unwrap_or(bound.ip()), bound.port())
}

/// Serves until `shutdown` completes; then interrupts every member (reason: server
/// shutdown), lets those messages go out, and returns.
pub async fn run(
    listeners: Listeners,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let media_bound: Vec<SocketAddr> = listeners
        .media
        .iter()
        .map(|m| m.local_addr())
        .collect::<std::io::Result<_>>()?;
    let turn = config.turn().map_err(std::io::Error::other)?.map(Arc::new);
    let metrics = metrics::Metrics::new();
    let store = secrets::open_sealed(&config, store).await?;
    let store: Arc<dyn Store> = Arc::new(metrics::TimedStore::new(store, metrics.clone()));
    let node_id = quota::node_id(&config)?;
    let reservations = quota::Reservations::new(store.clone(), node_id.clone());
    {
        let r = reservations.clone();
        tokio::task::spawn_blocking(move || r.release_leftovers())
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
    }
    {
        let store = store.clone();
        let demo = config.demo;
        tokio::task::spawn_blocking(move || web::ensure_demo_app(store.as_ref(), demo))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
    }
    let announce = announce_addr(&config, media_bound[0]);
    let engine_tcp = !listeners.media_tcp.is_empty();
    let engine_config = |bound: SocketAddr| {
        let mut c = EngineConfig::new(announce_addr(&config, bound));
        c.ice_tcp = engine_tcp;
        c.room_cap = config.room_cap;
        c.media_timeout = config.media_timeout();
        c.audio_red = config.audio_red;
        c.opus_fec = config.opus_fec;
        c.media_liveness = std::time::Duration::from_millis(config.media_liveness_ms);
        c.confirm_rooms = true;
        c
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let (queues, receivers): (Vec<_>, Vec<_>) = (0..media_bound.len())
        .map(|_| mpsc::unbounded_channel())
        .unzip();
    let media = shards::Shards::new(queues.clone());
    let webhook_tls = webhooks::client::Tls::new(config.webhook_ca_file.as_deref())
        .map_err(std::io::Error::other)?;
    let (sink, webhook_queue) = webhooks::Sink::new(metrics.clone());
    let recorded = Arc::new(tokio::sync::Notify::new());
    let writer = {
        let (store, recorded, metrics) = (store.clone(), recorded.clone(), metrics.clone());
        let cap = config.webhook_max_pending;
        tokio::task::spawn_blocking(move || {
            webhooks::writer::run(webhook_queue, store, cap, recorded, metrics)
        })
    };
    let worker = tokio::spawn(webhooks::worker::run(
        store.clone(),
        webhook_tls.clone(),
        webhooks::worker::Policy {
            timeout: std::time::Duration::from_millis(config.webhook_timeout_ms),
            retry_base: std::time::Duration::from_millis(config.webhook_retry_base_ms),
            max_attempts: config.webhook_max_attempts,
            max_age_secs: config.webhook_max_age_secs,
        },
        recorded,
        stop_rx.clone(),
        metrics.clone(),
    ));
    // Several nodes on one Redis: this one registers (so others can redirect to it) before
    // it serves a join.
    let cluster = if config
        .store
        .as_deref()
        .is_some_and(|s| s.starts_with("redis"))
    {
        let bound = listeners.http.local_addr()?;
        let url = cluster::public_url(&config, bound, listeners.tls.is_some())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let c = cluster::Cluster::new(
            store.clone(),
            voipchat_store::NodeInfo {
                id: node_id.clone(),
                url,
            },
            webhook_tls.clone(),
        );
        let first = c.clone();
        tokio::task::spawn_blocking(move || first.beat())
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        tokio::spawn(cluster::run_heartbeat(
            c.clone(),
            stop_rx.clone(),
            media.clone(),
        ));
        tracing::info!(node = %c.node().id, url = %c.node().url, "joined the cluster");
        Some(c)
    } else {
        None
    };
    let quota = media::QuotaPolicy {
        store: store.clone(),
        daily_limit: config.daily_room_quota,
        utc_offset_secs: config.utc_offset_secs(),
        webhooks: sink,
        reservations,
        cluster: cluster.clone(),
    };
    // Each shard on a thread of its own, its sockets moved there.
    let mut tcp_listeners = listeners.media_tcp.into_iter();
    let mut media_tasks = Vec::new();
    for (shard, ((udp, commands), queue)) in listeners
        .media
        .into_iter()
        .zip(receivers)
        .zip(queues)
        .enumerate()
    {
        let parts = shards::ShardParts {
            shard,
            engine: Engine::new(engine_config(media_bound[shard]), Instant::now()),
            udp: udp.into_std()?,
            tcp: tcp_listeners.next().map(|l| l.into_std()).transpose()?,
            tcp_max_connections: config.media_tcp_max_connections,
            commands,
            queue,
            quota: quota.clone(),
            admission: media_load::Admission {
                max_busy_share: config.media_max_busy_share,
            },
            shutdown: stop_rx.clone(),
            metrics: metrics.clone(),
        };
        media_tasks.push(shards::spawn(parts)?);
    }
    // The shards hold the quota policy (and its webhook sink) now: the webhook writer ends
    // only once every sink is gone.
    drop(quota);

    let test_hooks = config.test_hooks;
    let (connections, mut connections_gone) = mpsc::channel::<()>(1);
    let state = AppState {
        config: Arc::new(config),
        store,
        media,
        shutdown: stop_rx.clone(),
        connections,
        metrics: metrics.clone(),
        turn,
        cluster: cluster.clone(),
    };
    let limits = serve::HttpLimits::from_config(&state.config);
    let separate_metrics = listeners.metrics.is_some();
    let app = router(state.clone(), !separate_metrics);
    if let Some(listener) = listeners.metrics {
        tracing::info!(metrics = %listener.local_addr()?, "metrics served on their own address");
        let app = Router::new()
            .route("/metrics", get(http::metrics))
            .fallback(http::not_found)
            .with_state(state.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    // The routers hold the state from here: the last sender of `connections` must go with
    // the last connection, or the wait for them below always runs out its time.
    drop(state);
    let http_addr = listeners.http.local_addr()?;
    let tls_config = match listeners.tls {
        Some(cert) => {
            tls::log_loaded(cert.info(), cert.files(), clock::unix_now(), true);
            let server_config = cert
                .server_config()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            tokio::spawn(tls::watch(cert, stop_rx.clone()));
            Some(server_config)
        }
        None => {
            if !http_addr.ip().is_loopback() {
                tracing::warn!(
                    http = %http_addr,
                    "serving plain HTTP on an address others reach (allow_insecure_http): \
                     browsers there get no microphone unless a TLS proxy in front serves https"
                );
            }
            None
        }
    };
    tracing::info!(
        http = %http_addr,
        tls = tls_config.is_some(),
        node = %node_id,
        cluster = cluster.is_some(),
        media = %media_bound[0],
        media_shards = media_bound.len(),
        media_tcp = engine_tcp,
        announce = %announce.ip(),
        "voipchat serving"
    );
    let http_stop = stop_rx.clone();
    let server = if test_hooks {
        tracing::warn!("test hooks are enabled: never do this in production");
        let hooks = web::TestHooks::default();
        let app = web::with_test_hooks(app, hooks.clone());
        let listener = web::HookedListener::new(listeners.http, hooks);
        match tls_config {
            Some(c) => serve::spawn(
                tls::TlsListener::new(listener, c),
                app,
                limits,
                metrics,
                http_stop,
            ),
            None => serve::spawn(listener, app, limits, metrics, http_stop),
        }
    } else {
        match tls_config {
            Some(c) => serve::spawn(
                tls::TlsListener::new(no_delay(listeners.http), c),
                app,
                limits,
                metrics,
                http_stop,
            ),
            None => serve::spawn(no_delay(listeners.http), app, limits, metrics, http_stop),
        }
    };

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(c) = cluster {
        // At once: the members told of the shutdown may rejoin on another node.
        tokio::task::spawn_blocking(move || c.leave());
    }
    for task in media_tasks {
        let _ = task.await;
    }
    // The media task's last events (members told of the shutdown, rooms finished) reach
    // the outbox: the writer ends once the queue is empty and every sink is gone. The
    // worker hands its running attempts back; the next start delivers what is left.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    let _ = worker.await;
    // Connections get a moment to deliver their last messages and to see them read.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), server).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), connections_gone.recv()).await;
    Ok(())
}

/// The HTTP listener with Nagle's algorithm off on every connection it accepts. Signaling
/// writes small frames back to back (a joinResult, then the offer of the newcomer's slots):
/// with Nagle on, the second waits for the client to acknowledge the first, and clients
/// delay that acknowledgement (40 ms on Linux, up to 200 ms elsewhere), which every join
/// then paid before its first remote audio.
pub fn no_delay<L>(
    listener: L,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = L::Addr>
where
    L: axum::serve::Listener<Io = tokio::net::TcpStream>,
{
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an HTTP connection: {e}");
        }
    })
}

/// Every route of the HTTP address; `/metrics` too unless it has its own address. The
/// backend API's routes come from `http::openapi::api`, each with its description.
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let router = if with_metrics {
        Router::new().route("/metrics", get(http::metrics))
    } else {
        Router::new()
    };
    let (api, doc) = http::openapi::api();
    let doc = Arc::new(http::openapi::json(&doc));
    router
        .merge(web::routes(state.config.demo))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route(
            "/api/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc.as_str().to_owned(),
                )
            }),
        )
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::forward_to_owner,
        ))
        // After every route: it applies to the routes that exist when it is called.
        .method_not_allowed_fallback(http::method_not_allowed)
        .fallback(http::not_found)
        .with_state(state)
}
