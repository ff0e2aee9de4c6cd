//! Prometheus metrics, served at `/metrics` in the text exposition format (OpenMetrics).
//!
//! Who updates what: the WebSocket writer counts join results and their latency; the media
//! task counts datagrams as it moves them and, once a second, copies the engine's own
//! counters (forwarded copies, drops by cause), the room and member counts and its busy
//! ratio; `TimedStore` times every store call; the quota path sets each app's rooms used
//! today; the webhook sink, writer and worker count their events, attempts and backlog. Per datagram the media task does two atomic adds, nothing more.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use voipchat_core::Counters;
use voipchat_proto::{AppId, OpenId, Secret};
use voipchat_store::{
    AppRecord, AppSettings, AttemptOutcome, Delivery, EnqueueOutcome, NewDelivery, OutboxCounts,
    QuotaDecision, Reservation, SettingsChange, Store, StoreError,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The joinResult's errCode (0: joined).
    pub code: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// "in" or "out".
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// The media shard's index, from 0.
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// "audio" or "video".
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub app_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    /// The store call, as named in the `Store` trait.
    pub call: &'static str,
}

/// Every metric of the server, with the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    pub rooms: Gauge,
    pub members: Gauge,
    pub rooms_created: Counter,
    pub joins: Family<CodeLabel, Counter>,
    pub join_seconds: Histogram,
    pub datagrams: Family<DirectionLabel, Counter>,
    pub datagram_bytes: Family<DirectionLabel, Counter>,
    pub forwarded_packets: Family<KindLabel, Counter>,
    pub forwarded_bytes: Counter,
    pub dropped: Family<CauseLabel, Counter>,
    pub quota_rooms_used: Family<AppLabel, Gauge>,
    pub store_seconds: Family<CallLabel, Histogram>,
    /// The busiest shard's share (one shard: the media task's).
    pub media_busy_ratio: Gauge<f64, AtomicU64>,
    pub media_shard_busy_ratio: Family<ShardLabel, Gauge<f64, AtomicU64>>,
    pub media_busy_seconds: Counter<f64, AtomicU64>,
    /// Each shard's last share, for the busiest.
    shard_busy: std::sync::Mutex<Vec<f64>>,
    pub webhook_delivered: Counter,
    pub webhook_failed_attempts: Counter,
    pub webhook_dead: Counter,
    pub webhook_dropped: Family<CauseLabel, Counter>,
    pub webhook_pending: Gauge,
    /// ICE over TCP: connections open now, why they closed, frames and bytes moved.
    pub tcp_connections: Gauge,
    pub tcp_closed: Family<ReasonLabel, Counter>,
    pub tcp_frames: Family<DirectionLabel, Counter>,
    pub tcp_bytes: Family<DirectionLabel, Counter>,
    /// Limits (docs/security.md#limits): HTTP/WebSocket connections open now, refused,
    /// requests timed out, WebSockets the server closed.
    pub http_connections: Gauge,
    pub http_refused: Family<ReasonLabel, Counter>,
    pub http_timeouts: Family<ReasonLabel, Counter>,
    pub ws_closed: Family<ReasonLabel, Counter>,
    hot: Hot,
}

/// The counters bumped per datagram, taken out of their families once: a family lookup
/// takes a lock, a counter is one atomic add.
struct Hot {
    datagrams_in: Counter,
    datagrams_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl Hot {
    fn of(
        datagrams: &Family<DirectionLabel, Counter>,
        bytes: &Family<DirectionLabel, Counter>,
    ) -> Hot {
        // One statement per lookup: `get_or_create` returns a read guard, and a second
        // lookup that creates its entry (a write) while it is alive would wait forever.
        let take = |family: &Family<DirectionLabel, Counter>, direction| {
            let counter = family.get_or_create(&DirectionLabel { direction });
            counter.clone()
        };
        let datagrams_in = take(datagrams, "in");
        let datagrams_out = take(datagrams, "out");
        let bytes_in = take(bytes, "in");
        let bytes_out = take(bytes, "out");
        Hot {
            datagrams_in,
            datagrams_out,
            bytes_in,
            bytes_out,
        }
    }
}

/// Latency buckets from 100 µs to about 3.3 s (doubling).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("voipchat");
        let datagrams = Family::default();
        let datagram_bytes = Family::default();
        let hot = Hot::of(&datagrams, &datagram_bytes);
        let m = Metrics {
            hot,
            rooms: Gauge::default(),
            members: Gauge::default(),
            rooms_created: Counter::default(),
            joins: Family::default(),
            join_seconds: latency_histogram(),
            datagrams,
            datagram_bytes,
            forwarded_packets: Family::default(),
            forwarded_bytes: Counter::default(),
            dropped: Family::default(),
            quota_rooms_used: Family::default(),
            store_seconds: Family::new_with_constructor(latency_histogram),
            media_busy_ratio: Gauge::default(),
            media_shard_busy_ratio: Family::default(),
            media_busy_seconds: Counter::default(),
            shard_busy: std::sync::Mutex::new(Vec::new()),
            webhook_delivered: Counter::default(),
            webhook_failed_attempts: Counter::default(),
            webhook_dead: Counter::default(),
            webhook_dropped: Family::default(),
            webhook_pending: Gauge::default(),
            tcp_connections: Gauge::default(),
            tcp_closed: Family::default(),
            tcp_frames: Family::default(),
            tcp_bytes: Family::default(),
            http_connections: Gauge::default(),
            http_refused: Family::default(),
            http_timeouts: Family::default(),
            ws_closed: Family::default(),
            registry: Registry::default(),
        };
        registry.register("rooms", "Rooms open now", m.rooms.clone());
        registry.register("members", "Members in rooms now", m.members.clone());
        registry.register(
            "rooms_created",
            "Rooms created since the server started (each counts against its app's quota)",
            m.rooms_created.clone(),
        );
        registry.register(
            "joins",
            "Join results sent, by errCode (0: joined)",
            m.joins.clone(),
        );
        registry.register(
            "join_duration_seconds",
            "From a join's frame to its joinResult, seconds",
            m.join_seconds.clone(),
        );
        registry.register(
            "udp_datagrams",
            "UDP datagrams on the media socket, by direction",
            m.datagrams.clone(),
        );
        registry.register(
            "udp_bytes",
            "Bytes of those datagrams, by direction",
            m.datagram_bytes.clone(),
        );
        registry.register(
            "forwarded_packets",
            "RTP packets forwarded to receivers (one per copy), by kind",
            m.forwarded_packets.clone(),
        );
        registry.register(
            "forwarded_payload_bytes",
            "Payload bytes of the forwarded copies",
            m.forwarded_bytes.clone(),
        );
        registry.register(
            "dropped_packets",
            "Datagrams and packets dropped, by cause (unknown_source, unrecognized, refused, \
             muted, send_error, tcp_queue_full)",
            m.dropped.clone(),
        );
        registry.register(
            "quota_rooms_used",
            "Rooms an app created on the current quota day, as of its last room creation",
            m.quota_rooms_used.clone(),
        );
        registry.register(
            "store_call_duration_seconds",
            "Store calls, by call, seconds",
            m.store_seconds.clone(),
        );
        registry.register(
            "media_busy_ratio",
            "Share of the last second the busiest media shard spent working (1: saturated)",
            m.media_busy_ratio.clone(),
        );
        registry.register(
            "media_shard_busy_ratio",
            "Share of the last second each media shard spent working",
            m.media_shard_busy_ratio.clone(),
        );
        registry.register(
            "media_busy_seconds",
            "Seconds the media task spent working",
            m.media_busy_seconds.clone(),
        );
        registry.register(
            "webhook_delivered",
            "Webhook deliveries a receiver accepted (2xx)",
            m.webhook_delivered.clone(),
        );
        registry.register(
            "webhook_failed_attempts",
            "Webhook attempts that failed (no connection, timeout, not 2xx)",
            m.webhook_failed_attempts.clone(),
        );
        registry.register(
            "webhook_dead",
            "Webhook deliveries given up after their last attempt",
            m.webhook_dead.clone(),
        );
        registry.register(
            "webhook_dropped",
            "Webhook events never recorded or removed unsent, by cause (queue_full, \
             outbox_full, store_error, stopped)",
            m.webhook_dropped.clone(),
        );
        registry.register(
            "webhook_pending",
            "Webhook deliveries waiting in the outbox (as of the last second)",
            m.webhook_pending.clone(),
        );
        registry.register(
            "media_tcp_connections",
            "ICE-over-TCP connections open now",
            m.tcp_connections.clone(),
        );
        registry.register(
            "media_tcp_closed",
            "ICE-over-TCP connections closed, by reason (peer_closed, error, oversize_frame, \
             unverified, write_stalled, over_limit)",
            m.tcp_closed.clone(),
        );
        registry.register(
            "media_tcp_frames",
            "RFC 4571 frames on ICE-over-TCP connections, by direction",
            m.tcp_frames.clone(),
        );
        registry.register(
            "media_tcp_bytes",
            "Packet bytes of those frames (without the length prefix), by direction",
            m.tcp_bytes.clone(),
        );
        registry.register(
            "http_connections",
            "HTTP and WebSocket connections open now",
            m.http_connections.clone(),
        );
        registry.register(
            "http_refused_connections",
            "HTTP/WebSocket connections refused, by reason (max_connections, \
             max_connections_per_ip, overflow: closed without an answer)",
            m.http_refused.clone(),
        );
        registry.register(
            "http_timeouts",
            "HTTP requests whose headers or body did not arrive in time, by reason (header, body)",
            m.http_timeouts.clone(),
        );
        registry.register(
            "ws_closed_by_server",
            "WebSockets the server closed for a limit, by reason (join_timeout, rate_limited, \
             outbox_full, ping_timeout)",
            m.ws_closed.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// One webhook event dropped for `cause`.
    pub fn webhook_dropped(&self, cause: &'static str) {
        self.webhook_dropped_by(cause, 1);
    }

    pub fn webhook_dropped_by(&self, cause: &'static str, n: u64) {
        self.webhook_dropped
            .get_or_create(&CauseLabel { cause })
            .inc_by(n);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A join result sent, `since` its frame arrived (None: no join was waiting, a result
    /// of the engine's own, e.g. after a replacement).
    pub fn join_result(&self, code: i64, since: Option<Instant>) {
        self.joins.get_or_create(&CodeLabel { code }).inc();
        if let Some(t) = since {
            self.join_seconds.observe(t.elapsed().as_secs_f64());
        }
    }

    pub fn datagram_in(&self, bytes: usize) {
        self.hot.datagrams_in.inc();
        self.hot.bytes_in.inc_by(bytes as u64);
    }

    pub fn datagram_out(&self, bytes: usize) {
        self.hot.datagrams_out.inc();
        self.hot.bytes_out.inc_by(bytes as u64);
    }

    pub fn send_error(&self) {
        self.dropped
            .get_or_create(&CauseLabel {
                cause: "send_error",
            })
            .inc();
    }

    /// A packet for an ICE-TCP connection whose write queue is full (a slow reader).
    pub fn tcp_queue_full(&self) {
        self.dropped
            .get_or_create(&CauseLabel {
                cause: "tcp_queue_full",
            })
            .inc();
    }

    /// An ICE-TCP connection closed (or refused at accept) for `reason`.
    pub fn tcp_closed(&self, reason: &'static str) {
        self.tcp_closed.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// An HTTP/WebSocket connection refused for `reason`.
    pub fn http_refused(&self, reason: &'static str) {
        self.http_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A request's `reason` ("header" or "body") did not arrive in time.
    pub fn http_timeout(&self, reason: &'static str) {
        self.http_timeouts
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The server closed a WebSocket for `reason`.
    pub fn ws_closed(&self, reason: &'static str) {
        self.ws_closed.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// What a media shard copies from its engine once a second: the engine counts in plain
/// integers, the metrics get what grew since the last copy (the gauges too, so that the
/// shards' engines add up).
#[derive(Default)]
pub struct EngineSync {
    shard: usize,
    last: Counters,
    last_rooms: i64,
    last_members: i64,
    window_start: Option<Instant>,
    busy_in_window: Duration,
}

impl EngineSync {
    /// How often the media task copies.
    pub const EVERY: Duration = Duration::from_secs(1);

    pub fn new(shard: usize) -> EngineSync {
        EngineSync {
            shard,
            ..EngineSync::default()
        }
    }

    /// Adds `busy` to the time the media task worked (counted into the metrics at `sync`).
    pub fn busy(&mut self, busy: Duration) {
        self.busy_in_window += busy;
    }

    /// Whether a copy is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.window_start
            .is_none_or(|t| now.saturating_duration_since(t) >= Self::EVERY)
    }

    /// Copies the engine's figures into `metrics`.
    pub fn sync(
        &mut self,
        metrics: &Metrics,
        now: Instant,
        counters: &Counters,
        rooms: usize,
        members: usize,
    ) {
        let grow = |old: u64, new: u64| new.saturating_sub(old);
        metrics
            .forwarded_packets
            .get_or_create(&KindLabel { kind: "audio" })
            .inc_by(grow(
                self.last.forwarded_audio_packets,
                counters.forwarded_audio_packets,
            ));
        metrics
            .forwarded_packets
            .get_or_create(&KindLabel { kind: "video" })
            .inc_by(grow(
                self.last.forwarded_video_packets,
                counters.forwarded_video_packets,
            ));
        metrics
            .forwarded_bytes
            .inc_by(grow(self.last.forwarded_bytes, counters.forwarded_bytes));
        for ((cause, new), (_, old)) in counters
            .dropped
            .by_cause()
            .into_iter()
            .zip(self.last.dropped.by_cause())
        {
            metrics
                .dropped
                .get_or_create(&CauseLabel { cause })
                .inc_by(grow(old, new));
        }
        self.last = *counters;
        metrics.rooms.inc_by(rooms as i64 - self.last_rooms);
        metrics.members.inc_by(members as i64 - self.last_members);
        self.last_rooms = rooms as i64;
        self.last_members = members as i64;
        metrics
            .media_busy_seconds
            .inc_by(self.busy_in_window.as_secs_f64());
        if let Some(start) = self.window_start {
            let span = now.saturating_duration_since(start).as_secs_f64();
            if span > 0.0 {
                let ratio = (self.busy_in_window.as_secs_f64() / span).min(1.0);
                metrics
                    .media_shard_busy_ratio
                    .get_or_create(&ShardLabel {
                        shard: self.shard.to_string(),
                    })
                    .set(ratio);
                if let Ok(mut all) = metrics.shard_busy.lock() {
                    if all.len() <= self.shard {
                        all.resize(self.shard + 1, 0.0);
                    }
                    all[self.shard] = ratio;
                    metrics
                        .media_busy_ratio
                        .set(all.iter().copied().fold(0.0, f64::max));
                }
            }
        }
        self.window_start = Some(now);
        self.busy_in_window = Duration::ZERO;
    }
}

/// A `Store` that times every call into `store_call_duration_seconds{call}`.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> TimedStore {
        TimedStore { inner, metrics }
    }

    fn timed<T>(&self, call: &'static str, f: impl FnOnce(&dyn Store) -> T) -> T {
        let start = Instant::now();
        let out = f(self.inner.as_ref());
        self.metrics
            .store_seconds
            .get_or_create(&CallLabel { call })
            .observe(start.elapsed().as_secs_f64());
        out
    }
}

impl Store for TimedStore {
    fn nonce_used(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        self.timed("nonce_used", |s| {
            s.nonce_used(app_id, open_id, nonce, now_unix)
        })
    }
    fn directory(&self) -> &dyn voipchat_store::RoomDirectory {
        self.inner.directory()
    }
    fn ready(&self) -> Result<(), StoreError> {
        self.timed("ready", |s| s.ready())
    }
    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        self.timed("create_app", |s| s.create_app(app))
    }
    fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.timed("list_apps", |s| s.list_apps())
    }
    fn app(&self, app_id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        self.timed("app", |s| s.app(app_id))
    }
    fn set_voip_enabled(&self, app_id: &AppId, enabled: bool) -> Result<bool, StoreError> {
        self.timed("set_voip_enabled", |s| s.set_voip_enabled(app_id, enabled))
    }
    fn set_app_secret(&self, app_id: &AppId, secret: &Secret) -> Result<bool, StoreError> {
        self.timed("set_app_secret", |s| s.set_app_secret(app_id, secret))
    }
    fn delete_app(&self, app_id: &AppId) -> Result<bool, StoreError> {
        self.timed("delete_app", |s| s.delete_app(app_id))
    }
    fn put_session_key(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        key: &Secret,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        self.timed("put_session_key", |s| {
            s.put_session_key(app_id, open_id, key, now_unix)
        })
    }
    fn session_key(&self, app_id: &AppId, open_id: &OpenId) -> Result<Option<Secret>, StoreError> {
        self.timed("session_key", |s| s.session_key(app_id, open_id))
    }
    fn consume_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
        expires_unix: u64,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        self.timed("consume_nonce", |s| {
            s.consume_nonce(app_id, open_id, nonce, expires_unix, now_unix)
        })
    }
    fn release_nonce(
        &self,
        app_id: &AppId,
        open_id: &OpenId,
        nonce: &str,
    ) -> Result<(), StoreError> {
        self.timed("release_nonce", |s| s.release_nonce(app_id, open_id, nonce))
    }
    fn take_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
    ) -> Result<QuotaDecision, StoreError> {
        let decision = self.timed("take_room_quota", |s| s.take_room_quota(app_id, day, limit));
        if let Ok(d) = &decision {
            self.metrics
                .quota_rooms_used
                .get_or_create(&AppLabel {
                    app_id: app_id.as_str().to_string(),
                })
                .set(d.used as i64);
        }
        decision
    }
    fn reserve_room_quota(
        &self,
        app_id: &AppId,
        day: &str,
        limit: u64,
        r: &Reservation,
    ) -> Result<QuotaDecision, StoreError> {
        let decision = self.timed("reserve_room_quota", |s| {
            s.reserve_room_quota(app_id, day, limit, r)
        });
        if let Ok(d) = &decision {
            self.metrics
                .quota_rooms_used
                .get_or_create(&AppLabel {
                    app_id: app_id.as_str().to_string(),
                })
                .set(d.used as i64);
        }
        decision
    }
    fn confirm_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        self.timed("confirm_room_quota", |s| s.confirm_room_quota(r))
    }
    fn release_room_quota(&self, r: &Reservation) -> Result<bool, StoreError> {
        self.timed("release_room_quota", |s| s.release_room_quota(r))
    }
    fn release_node_reservations(&self, node: &str) -> Result<u64, StoreError> {
        self.timed("release_node_reservations", |s| {
            s.release_node_reservations(node)
        })
    }
    fn reseal_session_keys(
        &self,
        reseal: &dyn Fn(&AppId, &OpenId, &str) -> Option<String>,
    ) -> Result<u64, StoreError> {
        self.timed("reseal_session_keys", |s| s.reseal_session_keys(reseal))
    }
    fn rooms_created(&self, app_id: &AppId, day: &str) -> Result<u64, StoreError> {
        self.timed("rooms_created", |s| s.rooms_created(app_id, day))
    }
    fn set_webhook_url(&self, app_id: &AppId, url: Option<&str>) -> Result<bool, StoreError> {
        self.timed("set_webhook_url", |s| s.set_webhook_url(app_id, url))
    }
    fn webhook_url(&self, app_id: &AppId) -> Result<Option<String>, StoreError> {
        self.timed("webhook_url", |s| s.webhook_url(app_id))
    }
    fn enqueue_webhooks(
        &self,
        deliveries: &[NewDelivery],
        now_ms: u64,
        max_pending_per_app: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        self.timed("enqueue_webhooks", |s| {
            s.enqueue_webhooks(deliveries, now_ms, max_pending_per_app)
        })
    }
    fn claim_webhooks(
        &self,
        now_ms: u64,
        lease_ms: u64,
        per_app: u64,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.timed("claim_webhooks", |s| {
            s.claim_webhooks(now_ms, lease_ms, per_app, limit)
        })
    }
    fn finish_webhook(&self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError> {
        self.timed("finish_webhook", |s| s.finish_webhook(id, outcome))
    }
    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.timed("outbox_counts", |s| s.outbox_counts())
    }
    fn rooms_created_between(
        &self,
        app_id: &AppId,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.timed("rooms_created_between", |s| {
            s.rooms_created_between(app_id, first, last)
        })
    }
    fn update_app_settings(
        &self,
        app_id: &AppId,
        change: &SettingsChange,
    ) -> Result<Option<AppSettings>, StoreError> {
        self.timed("update_app_settings", |s| {
            s.update_app_settings(app_id, change)
        })
    }
}
