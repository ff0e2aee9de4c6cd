//! Server configuration: embedded defaults, overridden by a TOML file, overridden by flags.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use voipchat_proto::{Secret, TurnUrl};

use crate::turn::{TurnCredentials, MIN_SECRET_BYTES};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `voipchat serve` can be told. Field names are the TOML keys.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP: backend API and WebSocket signaling (`/ws`).
    pub http_addr: SocketAddr,
    /// The UDP port media runs on; with several `media_shards`, the first of as many ports
    /// in a row (shard i on port + i; port 0 picks a free one for each).
    pub media_addr: SocketAddr,
    /// Media shards: threads with an engine and a media port each, a room on exactly one.
    /// One by default (a single port to open); 0 is one per core this process may use.
    pub media_shards: usize,
    /// The receive buffer the media socket asks the kernel for (SO_RCVBUF), in bytes: room
    /// for bursts while the media task is busy, so the kernel does not drop them. The kernel
    /// grants at most `net.core.rmem_max`; less than asked is logged at start.
    pub media_recv_buffer_bytes: usize,
    /// ICE over TCP: also listen on TCP at `media_addr` (same IP, same port number) and
    /// announce it as a second candidate, for clients whose network blocks UDP. On by
    /// default: clients that reach UDP prefer it (the TCP candidate has a lower priority),
    /// so it only changes anything for those who would otherwise not connect at all.
    pub media_tcp: bool,
    /// Most ICE-TCP connections open at once; more are closed as they arrive.
    pub media_tcp_max_connections: usize,
    /// Admission control: joins are refused with -13001 while the media task was busy for
    /// more than this share of the last second (0.0 to 1.0; 1.0 never refuses).
    pub media_max_busy_share: f64,
    /// The IP announced to clients in ICE candidates; defaults to the media bind IP, and
    /// must be set when that is a wildcard address.
    pub public_ip: Option<IpAddr>,
    /// Where the SQLite file (`voipchat.sqlite3`) lives. Relative to the current directory,
    /// except in a config file: [`Config::from_file`] takes it (the default `voipchat-data`
    /// included) relative to the file's directory, so that every command given the same file
    /// uses the same database, wherever it is run.
    pub data_dir: PathBuf,
    /// Most members in one room at once.
    pub room_cap: usize,
    /// Rooms one app may create per day.
    pub daily_room_quota: u64,
    /// How far `timeStamp` may be from the server's clock, in seconds, either way.
    pub timestamp_window_secs: u64,
    /// Offset from UTC of the day the quota counts in, as "+08:00" or "-05:30".
    pub quota_utc_offset: String,
    /// A member from whom no media packet (UDP or TCP) arrives for this long is removed.
    pub media_timeout_secs: u64,
    /// Local demo mode: keep the built-in demo app (`wxdemo0000000000`) with VoIP enabled,
    /// serve the demo page at `/` and sign joins for that app only at `POST /demo/sign`.
    /// Switch it off (`demo = false`, `--no-demo`) on any server reachable by others.
    pub demo: bool,
    /// Test-only routes (`POST /api/v1/test/drop-ws`) for the browser tests. Never set this
    /// in production: anyone reaching the HTTP port could drop connections.
    pub test_hooks: bool,
    /// Serve `/metrics` on this address alone (say, a private interface Prometheus
    /// reaches) instead of on `http_addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// How `serve` writes its log lines on stderr: `text` for people, `json` (one object per
    /// line) for log shippers.
    pub log_format: LogFormat,
    /// With `tls_key`: serve HTTPS and WSS on `http_addr` with this PEM certificate chain
    /// (server certificate first). Re-read when the file changes, so a renewal needs no
    /// restart. Relative to the config file's directory, like `data_dir`.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an `http_addr` that is not a loopback address. Off by default:
    /// browsers give the microphone only to https pages off localhost, so a public plain
    /// HTTP address is almost always a mistake, unless a TLS proxy in front does the TLS.
    pub allow_insecure_http: bool,
    /// Webhooks: how long one delivery attempt may take, connecting included, in
    /// milliseconds; a receiver slower than that counts as failed and is retried.
    pub webhook_timeout_ms: u64,
    /// Webhooks: the delay before the first retry, in milliseconds; each further retry
    /// waits twice as long (up to 5 minutes), with jitter.
    pub webhook_retry_base_ms: u64,
    /// Webhooks: attempts per delivery before it is given up (dead).
    pub webhook_max_attempts: u32,
    /// Webhooks: a delivery still failing this many seconds after its event is given up.
    pub webhook_max_age_secs: u64,
    /// Webhooks: most deliveries waiting per app; past it the oldest are dropped.
    pub webhook_max_pending: u64,
    /// Webhooks: a PEM file of CA certificates trusted for `https://` webhook URLs besides
    /// the system's (a receiver with a private CA).
    pub webhook_ca_file: Option<PathBuf>,
    /// The TURN REST shared secret, the TURN server's `static-auth-secret` (coturn's
    /// `use-auth-secret`): clients get credentials signed with it. Set with `turn_urls`.
    pub turn_secret: Option<Secret>,
    /// `turn:` / `turns:` URLs of that TURN server, handed to clients in `hello`.
    pub turn_urls: Vec<String>,
    /// How long a TURN credential is accepted for a new allocation, in seconds.
    pub turn_ttl_secs: u64,
    /// RED (RFC 2198 redundant audio) with clients that offer it: their packets carry the
    /// previous frame as well, so a receiver that loses one packet plays it from the next.
    pub audio_red: bool,
    /// Ask clients for Opus in-band FEC (`useinbandfec=1` in the answer's Opus fmtp).
    pub opus_fec: bool,
    // ----- Limits (docs/security.md#limits) -----
    /// Most HTTP/WebSocket connections open at once; more get 503 (-12009).
    pub max_connections: usize,
    /// Most HTTP/WebSocket connections open at once from one client IP; more get 429
    /// (-12010). Peers in `trusted_proxies` count only toward `max_connections`.
    pub max_connections_per_ip: usize,
    /// Reverse proxies in front of the server (their IPs): connections from them are not
    /// limited per IP, since every client behind them shares their address.
    pub trusted_proxies: Vec<IpAddr>,
    /// A request's headers must arrive within this many milliseconds of the connection
    /// being ready for one; else the connection is closed.
    pub http_header_timeout_ms: u64,
    /// A request's body must arrive in full within this many milliseconds of its headers;
    /// else 408 (-12013) and the connection is closed.
    pub http_body_timeout_ms: u64,
    /// The largest request body any route reads, in bytes (413, -12008).
    pub http_max_body_bytes: usize,
    /// A WebSocket that has not been admitted to a room this many milliseconds after it
    /// opened gets an `error` (-12012) and is closed.
    pub ws_join_timeout_ms: u64,
    /// Signaling frames one connection may send per second, on average (a token bucket).
    pub ws_frames_per_sec: u32,
    /// ... and in a burst: past it the connection gets an `error` (-12011) and is closed.
    pub ws_frame_burst: u32,
    /// Most messages waiting to be written to one WebSocket; a client that lets its queue
    /// fill up is disconnected (-11006).
    pub ws_outbox_messages: usize,
    /// The server pings every WebSocket this often, in milliseconds (0: never).
    pub ws_ping_interval_ms: u64,
    /// A WebSocket from which nothing (not even a pong) arrived for this many milliseconds
    /// is disconnected (-11007).
    pub ws_pong_timeout_ms: u64,
    /// The shortest silence, in milliseconds, after which a member whose media session
    /// connected is removed (-11003): its ICE keepalive interval plus 1.5 s when longer,
    /// at most `media_timeout_secs`.
    pub media_liveness_ms: u64,
    /// Where state lives: `None` is the SQLite file in `data_dir`; `redis://host:port/db`
    /// is a Redis server shared by every node (docs/cluster.md).
    pub store: Option<String>,
    /// This server's name in the store, for its room quota reservations (given back at its
    /// next start). Default: the id kept in `data_dir/node-id`, made at the first start.
    pub node_id: Option<String>,
    /// With a Redis `store`: the URL where clients reach this node, which other nodes send
    /// a room's joins to (`https://host[:port]` or `wss://host[:port]/ws`; `http(s)` becomes
    /// `ws(s)` with `/ws`). Default: the bound HTTP address, `ws://IP:PORT/ws` (`wss` with
    /// TLS), which must then not be unspecified (0.0.0.0).
    pub public_url: Option<String>,
    /// The key file session keys are encrypted with at rest: base64 keys of 32 bytes, one a
    /// line, the first sealing and all opening (docs/security.md). `VOIPCHAT_SECRETS_KEY`
    /// overrides it. Default: `data_dir/secrets.key`, created (mode 0600) at the first start.
    pub secrets_key_file: Option<PathBuf>,
}

/// The most `turn_urls`: one TURN server reached over UDP, TCP and TLS, on a few ports.
pub const MAX_TURN_URLS: usize = 8;
/// Bounds of `turn_ttl_secs`: a minute covers a slow join and some clock skew between the two
/// hosts; past a week a credential is no longer what "time-limited" means.
pub const TURN_TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=604_800;

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log format {s:?} is not text or json")),
        }
    }
}

/// The shape of the log lines.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: ([127, 0, 0, 1], 7880).into(),
            media_addr: ([127, 0, 0, 1], 7882).into(),
            media_shards: 1,
            media_tcp: true,
            media_tcp_max_connections: 1000,
            // Loss begins near a saturated core (95 % busy in the bench); the margin is
            // for the admitted joins' own ICE and DTLS and for bursts.
            media_max_busy_share: 0.8,
            public_ip: None,
            data_dir: PathBuf::from("voipchat-data"),
            room_cap: 10,
            daily_room_quota: 100_000,
            timestamp_window_secs: 300,
            quota_utc_offset: "+00:00".to_string(),
            media_timeout_secs: 8,
            media_recv_buffer_bytes: 4 * 1024 * 1024,
            demo: true,
            test_hooks: false,
            log_format: LogFormat::Text,
            metrics_addr: None,
            tls_cert: None,
            tls_key: None,
            allow_insecure_http: false,
            webhook_timeout_ms: 5_000,
            webhook_retry_base_ms: 1_000,
            webhook_max_attempts: 15,
            webhook_max_age_secs: 3_600,
            webhook_max_pending: 10_000,
            webhook_ca_file: None,
            turn_secret: None,
            turn_urls: Vec::new(),
            // Credentials are used within seconds of the hello (the peer connection gathers
            // then), and coturn checks expiry only for new allocations: an hour is plenty,
            // and bounds how long a collected credential stays useful.
            turn_ttl_secs: 3600,
            audio_red: true,
            opus_fec: true,
            max_connections: 10_000,
            max_connections_per_ip: 1024,
            trusted_proxies: Vec::new(),
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 10_000,
            http_max_body_bytes: 64 * 1024,
            ws_join_timeout_ms: 10_000,
            ws_frames_per_sec: 20,
            ws_frame_burst: 60,
            ws_outbox_messages: 256,
            ws_ping_interval_ms: 1_000,
            ws_pong_timeout_ms: 3_000,
            media_liveness_ms: 4_000,
            store: None,
            node_id: None,
            public_url: None,
            secrets_key_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML config file; settings it leaves out keep their defaults. A relative
    /// `data_dir` (also the default one), `tls_cert` or `tls_key` is taken relative to the
    /// file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if let Some(dir) = path.parent() {
            let relative = [
                Some(&mut config.data_dir),
                config.tls_cert.as_mut(),
                config.tls_key.as_mut(),
                config.webhook_ca_file.as_mut(),
                config.secrets_key_file.as_mut(),
            ];
            for p in relative.into_iter().flatten() {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        Ok(config)
    }

    /// Checks what can be checked before binding anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.room_cap == 0 || self.room_cap > 50 {
            return Err(ConfigError::Invalid("room_cap must be 1 to 50".into()));
        }
        if let Some(url) = &self.public_url {
            crate::cluster::signaling_url(url).map_err(ConfigError::Invalid)?;
        }
        if self.media_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "media_timeout_secs must be at least 1".into(),
            ));
        }
        if self.media_tcp && self.media_tcp_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "media_tcp_max_connections must be at least 1 (or set media_tcp = false)".into(),
            ));
        }
        let shards = crate::shards::count(self.media_shards);
        if shards > 256 {
            return Err(ConfigError::Invalid(
                "media_shards must be at most 256".into(),
            ));
        }
        if self.media_addr.port() != 0
            && usize::from(self.media_addr.port()) + shards - 1 > usize::from(u16::MAX)
        {
            return Err(ConfigError::Invalid(format!(
                "media_addr's port {} leaves no room for {shards} media shards' ports",
                self.media_addr.port()
            )));
        }
        if !(0.0..=1.0).contains(&self.media_max_busy_share) {
            return Err(ConfigError::Invalid(
                "media_max_busy_share must be 0.0 to 1.0".into(),
            ));
        }
        parse_utc_offset(&self.quota_utc_offset)?;
        if !(100..=60_000).contains(&self.webhook_timeout_ms) {
            return Err(ConfigError::Invalid(
                "webhook_timeout_ms must be 100 to 60000".into(),
            ));
        }
        if !(1..=3_600_000).contains(&self.webhook_retry_base_ms) {
            return Err(ConfigError::Invalid(
                "webhook_retry_base_ms must be 1 to 3600000".into(),
            ));
        }
        if self.webhook_max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "webhook_max_attempts must be at least 1".into(),
            ));
        }
        if self.webhook_max_pending == 0 {
            return Err(ConfigError::Invalid(
                "webhook_max_pending must be at least 1".into(),
            ));
        }
        self.validate_limits()?;
        self.turn()?;
        if self.public_ip.is_none() && self.media_addr.ip().is_unspecified() {
            return Err(ConfigError::Invalid(
                "media_addr binds a wildcard address: set public_ip to the address clients reach"
                    .into(),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "tls_cert and tls_key go together: set both (the certificate chain and its \
                     private key, --tls-cert and --tls-key) or neither"
                        .into(),
                ))
            }
            (None, None) if !self.http_addr.ip().is_loopback() && !self.allow_insecure_http => {
                return Err(ConfigError::Invalid(format!(
                    "http_addr {} is not a loopback address, and plain HTTP there is refused: \
                     browsers give the microphone only to https pages (and wss sockets) off \
                     localhost. Set tls_cert and tls_key (--tls-cert, --tls-key), or, behind \
                     a TLS proxy, allow_insecure_http = true (--allow-insecure-http)",
                    self.http_addr
                )))
            }
            _ => {}
        }
        Ok(())
    }

    /// The TURN settings, checked: `None` when TURN is off (neither key set).
    pub fn turn(&self) -> Result<Option<TurnCredentials>, ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        let secret = match (&self.turn_secret, self.turn_urls.is_empty()) {
            (None, true) => return Ok(None),
            (Some(secret), false) => secret,
            (Some(_), true) => {
                return bad(
                    "turn_secret is set but turn_urls is empty: set both to hand out \
                            TURN credentials, or neither"
                        .into(),
                )
            }
            (None, false) => {
                return bad(
                    "turn_urls is set but turn_secret is not: set turn_secret to the \
                            TURN server's static-auth-secret, or remove turn_urls"
                        .into(),
                )
            }
        };
        let n = secret.expose().len();
        if n < MIN_SECRET_BYTES {
            return bad(format!(
                "turn_secret is {n} bytes long: it must be at least {MIN_SECRET_BYTES} (a long \
                 random string, the same as the TURN server's static-auth-secret)"
            ));
        }
        if self.turn_urls.len() > MAX_TURN_URLS {
            return bad(format!(
                "turn_urls has {} URLs: at most {MAX_TURN_URLS}",
                self.turn_urls.len()
            ));
        }
        for url in &self.turn_urls {
            if let Err(e) = url.parse::<TurnUrl>() {
                return bad(format!("turn_urls: {e}"));
            }
        }
        if !TURN_TTL_RANGE.contains(&self.turn_ttl_secs) {
            return bad(format!(
                "turn_ttl_secs must be {} to {} seconds, not {}",
                TURN_TTL_RANGE.start(),
                TURN_TTL_RANGE.end(),
                self.turn_ttl_secs
            ));
        }
        Ok(Some(TurnCredentials {
            secret: secret.clone(),
            urls: self.turn_urls.clone(),
            ttl_secs: self.turn_ttl_secs,
        }))
    }

    /// The certificate files, when TLS is configured (both keys set; see [`Config::validate`]).
    pub fn tls_files(&self) -> Option<crate::tls::CertFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// Plain HTTP on an address others can reach (allowed by `allow_insecure_http`).
    pub fn insecure_public_http(&self) -> bool {
        self.tls_files().is_none() && !self.http_addr.ip().is_loopback()
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("voipchat.sqlite3")
    }

    pub fn media_timeout(&self) -> Duration {
        Duration::from_secs(self.media_timeout_secs)
    }

    /// The limits' own checks: each must let a well-behaved client through.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let positive: [(&str, u64); 8] = [
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("http_header_timeout_ms", self.http_header_timeout_ms),
            ("http_body_timeout_ms", self.http_body_timeout_ms),
            ("ws_join_timeout_ms", self.ws_join_timeout_ms),
            ("ws_frames_per_sec", u64::from(self.ws_frames_per_sec)),
            ("ws_outbox_messages", self.ws_outbox_messages as u64),
            ("media_liveness_ms", self.media_liveness_ms),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
            }
        }
        if self.http_max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "http_max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.ws_frame_burst < self.ws_frames_per_sec {
            return Err(ConfigError::Invalid(
                "ws_frame_burst must be at least ws_frames_per_sec".into(),
            ));
        }
        if self.ws_ping_interval_ms > 0 && self.ws_pong_timeout_ms < self.ws_ping_interval_ms {
            return Err(ConfigError::Invalid(
                "ws_pong_timeout_ms must be at least ws_ping_interval_ms".into(),
            ));
        }
        Ok(())
    }

    pub fn utc_offset_secs(&self) -> i64 {
        parse_utc_offset(&self.quota_utc_offset).unwrap_or(0)
    }
}

/// "+08:00" → 28800. Also accepts "Z" and "UTC".
pub fn parse_utc_offset(s: &str) -> Result<i64, ConfigError> {
    let bad = || ConfigError::Invalid(format!("quota_utc_offset {s:?} is not like +08:00"));
    if s == "Z" || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: i64 = h.parse().map_err(|_| bad())?;
    let m: i64 = m.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// The quota day of a moment: "YYYY-MM-DD" in the configured offset.
pub fn day_key(unix_secs: u64, offset_secs: i64) -> String {
    let local = unix_secs as i64 + offset_secs;
    let days = local.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_keys() {
        assert_eq!(day_key(0, 0), "1970-01-01");
        // The seed's timestamp, 2019-05-29 11:35:14 UTC.
        assert_eq!(day_key(1_559_129_714, 0), "2019-05-29");
        // 2024-02-29 23:30 UTC is already March 1st in UTC+8.
        assert_eq!(day_key(1_709_249_400, 0), "2024-02-29");
        assert_eq!(day_key(1_709_249_400, 8 * 3600), "2024-03-01");
        assert_eq!(day_key(1_709_249_400, -5 * 3600), "2024-02-29");
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_utc_offset("+08:00").unwrap(), 28_800);
        assert_eq!(parse_utc_offset("-05:30").unwrap(), -19_800);
        assert_eq!(parse_utc_offset("UTC").unwrap(), 0);
        assert!(parse_utc_offset("8").is_err());
        assert!(parse_utc_offset("+25:00").is_err());
    }

    #[test]
    fn toml_overrides_defaults() {
        let c: Config = toml::from_str("room_cap = 4\nquota_utc_offset = \"+08:00\"").unwrap();
        assert_eq!(c.room_cap, 4);
        assert_eq!(c.daily_room_quota, 100_000);
        assert!(c.demo, "demo mode is on by default");
        assert!(!c.test_hooks, "test hooks are off by default");
        c.validate().unwrap();
        let c: Config = toml::from_str("demo = false\ntest_hooks = true").unwrap();
        assert!(!c.demo);
        assert!(c.test_hooks);
        assert!(toml::from_str::<Config>("no_such_key = 1").is_err());
    }

    #[test]
    fn tls_keys_go_together_and_plain_http_stays_on_loopback() {
        let with = |toml: &str| {
            let c: Config = toml::from_str(toml).unwrap();
            c.validate().map_err(|e| e.to_string())
        };
        assert!(with("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"").is_ok());
        for half in ["tls_cert = \"c.pem\"", "tls_key = \"k.pem\""] {
            let e = with(half).unwrap_err();
            assert!(e.contains("tls_cert and tls_key go together"), "{e}");
        }
        let e = with("http_addr = \"0.0.0.0:443\"").unwrap_err();
        assert!(
            e.contains("http_addr 0.0.0.0:443 is not a loopback address"),
            "{e}"
        );
        assert!(e.contains("allow_insecure_http = true"), "{e}");
        let e = with("http_addr = \"192.0.2.7:80\"").unwrap_err();
        assert!(
            e.contains("browsers give the microphone only to https pages"),
            "{e}"
        );
        assert!(
            with("http_addr = \"[::1]:80\"").is_ok(),
            "IPv6 loopback is fine"
        );
        assert!(with("http_addr = \"127.0.0.9:80\"").is_ok());
        let c: Config =
            toml::from_str("http_addr = \"0.0.0.0:80\"\nallow_insecure_http = true").unwrap();
        c.validate().unwrap();
        assert!(c.insecure_public_http());
        let c: Config = toml::from_str(
            "http_addr = \"0.0.0.0:443\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"",
        )
        .unwrap();
        c.validate().unwrap();
        assert!(!c.insecure_public_http());
    }

    #[test]
    fn a_relative_data_dir_in_a_file_is_relative_to_the_file() {
        let dir = std::env::temp_dir().join(format!("voipchat-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("voipchat.toml");
        std::fs::write(&file, "data_dir = \"state\"\n").unwrap();
        assert_eq!(
            Config::from_file(&file).unwrap().data_dir,
            dir.join("state")
        );
        std::fs::write(&file, "room_cap = 3\n").unwrap();
        assert_eq!(
            Config::from_file(&file).unwrap().data_dir,
            dir.join("voipchat-data"),
            "the default data_dir too"
        );
        std::fs::write(
            &file,
            "tls_cert = \"tls/cert.pem\"\ntls_key = \"/etc/voipchat/key.pem\"\n",
        )
        .unwrap();
        let c = Config::from_file(&file).unwrap();
        assert_eq!(c.tls_cert, Some(dir.join("tls/cert.pem")), "tls_cert too");
        assert_eq!(c.tls_key, Some(PathBuf::from("/etc/voipchat/key.pem")));
        std::fs::write(&file, "webhook_ca_file = \"ca/receiver.pem\"\n").unwrap();
        assert_eq!(
            Config::from_file(&file).unwrap().webhook_ca_file,
            Some(dir.join("ca/receiver.pem")),
            "webhook_ca_file too"
        );
        std::fs::write(&file, "data_dir = \"/srv/voipchat\"\n").unwrap();
        assert_eq!(
            Config::from_file(&file).unwrap().data_dir,
            PathBuf::from("/srv/voipchat")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
