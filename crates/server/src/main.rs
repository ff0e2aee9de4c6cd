//! `voipchat`: run the service, manage apps, compute signatures.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use voipchat_proto::{AppId, Secret};
use voipchat_server::config::{Config, LogFormat};
use voipchat_store::{AppRecord, SqliteStore, Store};

/// The environment variable naming the config file when `--config` is not given.
const CONFIG_ENV: &str = "VOIPCHAT_CONFIG";

#[derive(Parser)]
#[command(
    name = "voipchat",
    version,
    about = "Self-hosted multi-party voice chat rooms"
)]
struct Cli {
    /// The same as `serve --config` / `app --config`; kept so that older scripts that put it
    /// before the command still work.
    #[arg(long, value_name = "FILE", hide = true)]
    config: Option<PathBuf>,
    /// The same as `serve --data-dir` / `app --data-dir` (see --config).
    #[arg(long, value_name = "DIR", hide = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

// Where the state is: what `serve` and every `app` command take.
#[derive(Args, Clone, Debug, Default)]
struct StoreArgs {
    /// TOML config file (README, "Configuration"); flags override it. A relative data_dir in
    /// it is relative to the file's directory [default: $VOIPCHAT_CONFIG if set, else none:
    /// the built-in defaults]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Directory of the SQLite file voipchat.sqlite3, relative to the current directory;
    /// overrides data_dir of the config [default: data_dir from the config, else
    /// ./voipchat-data]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service.
    // Boxed: its flags make it far larger than the other commands (clippy large_enum_variant).
    Serve(Box<ServeArgs>),
    /// Start encrypting session keys under a new key: prepends a new key to the key file
    /// (the old ones stay, to open what is sealed under them) and reseals every session
    /// key under it; prints {"keyId", "resealed", "keys"}. Restart `serve` afterwards so it
    /// seals under the new key too; then `rotate-key --prune` reseals what it wrote under
    /// the old key meanwhile and drops the old keys (docs/security.md).
    RotateKey {
        #[command(flatten)]
        store: StoreArgs,
        /// Do not add a key: reseal everything under the current one and remove the old
        /// keys from the file [default: off]
        #[arg(long)]
        prune: bool,
    },
    /// Manage apps (the games whose players join rooms).
    App {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AppCmd,
    },
    /// Print the join signature for these inputs (64 hex characters, nothing else).
    Sign {
        /// The appId that is signed.
        #[arg(long)]
        app_id: String,
        /// The groupId (room) that is signed.
        #[arg(long)]
        group_id: String,
        /// The nonceStr that is signed.
        #[arg(long)]
        nonce_str: String,
        /// The timeStamp that is signed, Unix seconds.
        #[arg(long)]
        timestamp: u64,
        /// The user's session key; its string's bytes are the HMAC key.
        #[arg(long)]
        session_key: String,
    },
}

// `voipchat serve`. Each flag overrides the setting of the same name in the config file,
// whose own default is in brackets (see `Config::default`; a test in tests/cli.rs keeps the
// two equal).
#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// HTTP address: backend API, WebSocket signaling (/ws), JS SDK and demo page
    /// [default: http_addr from the config, else 127.0.0.1:7880]
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<SocketAddr>,
    /// UDP address all media runs on [default: media_addr from the config, else
    /// 127.0.0.1:7882]
    #[arg(long, value_name = "ADDR")]
    media_addr: Option<SocketAddr>,
    /// Media shards: threads with an engine and a port each (media_addr's port, then the
    /// next ones); 0 is one per core [default: media_shards from the config, else 1]
    #[arg(long, value_name = "N")]
    media_shards: Option<usize>,
    /// Do not listen for ICE over TCP on the media port's number; the same as media_tcp =
    /// false [default: media_tcp from the config, else TCP is on]
    #[arg(long)]
    no_media_tcp: bool,
    /// Most ICE-TCP connections open at once [default: media_tcp_max_connections from the
    /// config, else 1000]
    #[arg(long, value_name = "N")]
    media_tcp_max_connections: Option<usize>,
    /// IP announced to clients in ICE candidates: set it when clients reach the media port at
    /// another IP than media_addr's (NAT, or media_addr 0.0.0.0) [default: public_ip from
    /// the config, else media_addr's IP]
    #[arg(long, value_name = "IP")]
    public_ip: Option<IpAddr>,
    /// Most members in one room at once, 1 to 50 [default: room_cap from the config, else 10]
    #[arg(long, value_name = "N")]
    room_cap: Option<usize>,
    /// Rooms one app may create per quota day [default: daily_room_quota from the config,
    /// else 100000]
    #[arg(long, value_name = "N")]
    daily_room_quota: Option<u64>,
    /// How far a join's timeStamp may be from the server's clock, either way, in seconds
    /// [default: timestamp_window_secs from the config, else 300]
    #[arg(long, value_name = "SECS")]
    timestamp_window_secs: Option<u64>,
    /// Offset from UTC of the day the room quota counts in, like +08:00 [default:
    /// quota_utc_offset from the config, else +00:00]
    #[arg(long, value_name = "OFFSET")]
    quota_utc_offset: Option<String>,
    /// A member from whom no media packet arrives for this long is removed, in seconds
    /// [default: media_timeout_secs from the config, else 8]
    #[arg(long, value_name = "SECS")]
    media_timeout_secs: Option<u64>,
    /// Switch off the demo (page at /, demo app, POST /demo/sign); the same as demo = false
    /// [default: demo from the config, else the demo is on]
    #[arg(long)]
    no_demo: bool,
    /// Enable test-only routes (POST /api/v1/test/drop-ws); never in production [default:
    /// test_hooks from the config, else off]
    #[arg(long)]
    test_hooks: bool,
    /// Serve /metrics on this address alone instead of on the HTTP address [default:
    /// metrics_addr from the config, else /metrics is on the HTTP address]
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Log lines on stderr: text, or json (one object per line, for log shippers)
    /// [default: log_format from the config, else text]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// With --tls-key: serve HTTPS and WSS on the HTTP address with this PEM certificate
    /// chain; a changed file is picked up without a restart [default: tls_cert from the
    /// config, else none: plain HTTP]
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert [default: tls_key from the config, else none]
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback HTTP address (behind a TLS proxy); the same as
    /// allow_insecure_http = true [default: allow_insecure_http from the config, else off]
    #[arg(long)]
    allow_insecure_http: bool,
}

#[derive(Subcommand)]
enum AppCmd {
    /// Create an app; prints {"appId": ..., "appSecret": ...}.
    Create {
        /// A name for operators, shown by `app list` (not empty)
        #[arg(long, value_parser = app_name)]
        name: String,
    },
    /// List apps, one JSON line each (without secrets).
    List,
    /// Print one app as JSON (without its secret).
    Show {
        /// The app's appId, as printed by `app create` or `app list`
        app_id: String,
    },
    /// Allow joins to the app's rooms.
    EnableVoip {
        /// The app's appId, as printed by `app create` or `app list`
        app_id: String,
    },
    /// Refuse joins to the app's rooms.
    DisableVoip {
        /// The app's appId, as printed by `app create` or `app list`
        app_id: String,
    },
    /// Give the app a new secret; prints {"appId": ..., "appSecret": ...} (shown only this
    /// once). The old secret stops working for the backend API at once.
    RotateSecret {
        /// The app's appId, as printed by `app create` or `app list`
        app_id: String,
    },
    /// Set the URL the app's webhooks are POSTed to (docs/webhooks.md), or clear it with
    /// --clear (deliveries still waiting are then dropped); prints {"appId", "webhookUrl"}.
    SetWebhook {
        /// The app's appId, as printed by `app create` or `app list`
        app_id: String,
        /// An absolute http:// or https:// URL, at most 2048 characters [default: none:
        /// give a URL or --clear]
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        url: Option<String>,
        /// Remove the app's webhook URL instead of setting one [default: off]
        #[arg(long)]
        clear: bool,
    },
    /// Delete the app with its session keys, used nonces and room counts. Its members who are
    /// in a room now stay until they leave; new joins and backend calls are refused.
    Delete {
        /// The app's appId, as printed by `app create` or `app list`
        app_id: String,
    },
}

/// `--name`: anything but empty or only whitespace.
fn app_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("the app name must not be empty or only spaces".into());
    }
    Ok(s.to_string())
}

/// Set once the log is JSON: then what the binary says on stderr goes through the log too,
/// so a log shipper reads nothing but JSON lines.
static JSON_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says `text` on stderr: "voipchat: text" for people, or an info event of the JSON log.
fn notice(text: &str) {
    if JSON_LOG.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("{text}");
    } else {
        eprintln!("voipchat: {text}");
    }
}

/// Starts the log on stderr, in the shape `serve` was configured with (the other commands
/// log as text). `RUST_LOG` chooses what is logged.
fn init_logging(format: LogFormat) {
    JSON_LOG.store(
        format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let filter = voipchat_server::log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One JSON object per line: time, level, target, message and the event's fields.
        LogFormat::Json => builder.json().flatten_event(true).init(),
        // Colour only for a person at a terminal; logs to files and pipes stay plain.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::Serve(_)) {
        init_logging(LogFormat::Text);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if JSON_LOG.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::error!("{e}");
            } else {
                eprintln!("voipchat: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

/// The config of `serve` and `app`: the file from `--config` (else `$VOIPCHAT_CONFIG`, else
/// none), then `--data-dir`. Also returns the file used, if any.
fn load_config(args: &StoreArgs) -> Result<(Config, Option<PathBuf>), BoxError> {
    let from_env = std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let (path, why) = match (&args.config, from_env) {
        (Some(p), _) => (Some(p.clone()), ""),
        (None, Some(p)) => (Some(p), " (named by VOIPCHAT_CONFIG)"),
        (None, None) => (None, ""),
    };
    let mut config = match &path {
        Some(path) => Config::from_file(path).map_err(|e| format!("{e}{why}"))?,
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    Ok((config, path.map(|p| absolute(&p))))
}

/// `path` made absolute (symlinks resolved where it exists), for messages.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Opens the store of `config`: the Redis server of `store = "redis://…"`, else the SQLite
/// file in the data directory. Says on stderr (stdout stays for the commands' JSON) which
/// store it is, and whether a SQLite file was just created. `for_app`: an `app` command,
/// which gets a hint when the file is new.
fn open_store(
    config: &Config,
    config_file: Option<&Path>,
    for_app: bool,
) -> Result<(Box<dyn Store>, String), BoxError> {
    let from = match config_file {
        Some(file) => format!(", config {}", file.display()),
        None => String::new(),
    };
    if let Some(url) = &config.store {
        let store = voipchat_store::RedisStore::open(url)
            .map_err(|e| format!("cannot open the store {}: {e}", redact(url)))?;
        let shown = redact(url);
        notice(&format!("store {shown}{from}"));
        return Ok((Box::new(store), shown));
    }
    let path = config.sqlite_path();
    let existed = path.exists();
    let store = SqliteStore::open(&path).map_err(|e| {
        format!(
            "cannot open the database {}: {e}",
            absolute(&path).display()
        )
    })?;
    let path = absolute(&path);
    let new = match (existed, for_app) {
        (true, _) => "",
        (false, false) => ", new and empty",
        (false, true) => {
            ", new and empty: if `voipchat serve` uses another one, give this command the \
             same --config, VOIPCHAT_CONFIG or --data-dir"
        }
    };
    notice(&format!("database {}{from}{new}", path.display()));
    Ok((Box::new(store), path.display().to_string()))
}

/// A store URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn run(cli: Cli) -> Result<(), BoxError> {
    // The hidden top-level --config/--data-dir fill in what the command did not say.
    let merge = |mut store: StoreArgs| {
        store.config = store.config.or_else(|| cli.config.clone());
        store.data_dir = store.data_dir.or_else(|| cli.data_dir.clone());
        store
    };
    match cli.command {
        Cmd::Serve(ref args) => serve(args, merge(args.store.clone())),
        Cmd::App {
            ref store,
            ref command,
        } => app(command, merge(store.clone())),
        Cmd::RotateKey { ref store, prune } => rotate_key(merge(store.clone()), prune),
        Cmd::Sign {
            ref app_id,
            ref group_id,
            ref nonce_str,
            timestamp,
            ref session_key,
        } => {
            if cli.config.is_some() || cli.data_dir.is_some() {
                return Err(
                    "--config and --data-dir are options of serve and app; sign \
                            uses neither"
                        .into(),
                );
            }
            println!(
                "{}",
                voipchat_auth::sign(
                    app_id,
                    group_id,
                    nonce_str,
                    timestamp,
                    &Secret::new(session_key.clone())
                )
            );
            Ok(())
        }
    }
}

fn serve(args: &ServeArgs, store_args: StoreArgs) -> Result<(), BoxError> {
    let (mut config, config_file) = load_config(&store_args)?;
    if let Some(v) = args.http_addr {
        config.http_addr = v;
    }
    if let Some(v) = args.media_addr {
        config.media_addr = v;
    }
    if let Some(v) = args.media_shards {
        config.media_shards = v;
    }
    if args.no_media_tcp {
        config.media_tcp = false;
    }
    if let Some(v) = args.media_tcp_max_connections {
        config.media_tcp_max_connections = v;
    }
    if args.public_ip.is_some() {
        config.public_ip = args.public_ip;
    }
    if let Some(v) = args.room_cap {
        config.room_cap = v;
    }
    if let Some(v) = args.daily_room_quota {
        config.daily_room_quota = v;
    }
    if let Some(v) = args.timestamp_window_secs {
        config.timestamp_window_secs = v;
    }
    if let Some(v) = &args.quota_utc_offset {
        config.quota_utc_offset = v.clone();
    }
    if let Some(v) = args.media_timeout_secs {
        config.media_timeout_secs = v;
    }
    if args.no_demo {
        config.demo = false;
    }
    if args.test_hooks {
        config.test_hooks = true;
    }
    if args.metrics_addr.is_some() {
        config.metrics_addr = args.metrics_addr;
    }
    if let Some(v) = args.log_format {
        config.log_format = v;
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert.clone();
    }
    if args.tls_key.is_some() {
        config.tls_key = args.tls_key.clone();
    }
    if args.allow_insecure_http {
        config.allow_insecure_http = true;
    }
    init_logging(config.log_format);
    config.validate()?;
    let (store, db_path) = open_store(&config, config_file.as_deref(), false)?;
    tracing::info!(database = %db_path, "store opened");
    let store: Arc<dyn Store> = Arc::from(store);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listeners = voipchat_server::Listeners::bind(&config).await?;
        let http = listeners.http.local_addr()?;
        let media = listeners.media[0].local_addr()?;
        let announce = voipchat_server::announce_addr(&config, media).ip();
        let media = match listeners.media.last().map(|s| s.local_addr()).transpose()? {
            Some(last) if listeners.media.len() > 1 => format!(
                "{media} to port {} ({} shards)",
                last.port(),
                listeners.media.len()
            ),
            _ => media.to_string(),
        };
        let (name, http_scheme, ws_scheme) = match listeners.tls {
            Some(_) => ("HTTPS", "https", "wss"),
            None => ("HTTP", "http", "ws"),
        };
        notice(&format!(
            "{name} on {http_scheme}://{http}/ (backend API /api/v1, signaling \
             {ws_scheme}://{http}/ws)"
        ));
        let reach = if announce.is_loopback() {
            " (only this machine can reach that: set public_ip or media_addr for others)"
        } else {
            ""
        };
        let transports = if !listeners.media_tcp.is_empty() {
            "UDP and TCP"
        } else {
            "UDP"
        };
        notice(&format!(
            "media on {transports} {media}, announced to clients as {announce}{reach}"
        ));
        voipchat_server::run(listeners, config, store, shutdown_signal()).await
    })?;
    Ok(())
}

fn app(command: &AppCmd, store_args: StoreArgs) -> Result<(), BoxError> {
    let (config, config_file) = load_config(&store_args)?;
    // Only `create` makes a new database: the others would find nothing in it, and an empty
    // file in the wrong directory is what makes people think their apps are gone.
    if !matches!(command, AppCmd::Create { .. })
        && config.store.is_none()
        && !config.sqlite_path().exists()
    {
        return Err(format!(
            "no database at {}: give this command the same --config, VOIPCHAT_CONFIG or \
             --data-dir as `voipchat serve` (it prints its database when it starts)",
            absolute(&config.sqlite_path()).display()
        )
        .into());
    }
    let (store, _) = open_store(&config, config_file.as_deref(), true)?;
    match command {
        AppCmd::Create { name } => {
            let app = AppRecord {
                app_id: voipchat_auth::new_app_id(),
                name: name.clone(),
                secret: voipchat_auth::new_app_secret(),
                voip_enabled: false,
                created_at: voipchat_server::clock::unix_now(),
                settings: Default::default(),
            };
            store.create_app(&app)?;
            // Shown only now: the store keeps the secret's digest, which webhooks are
            // signed with.
            println!(
                "{}",
                serde_json::json!({
                    "appId": app.app_id,
                    "appSecret": app.secret.expose(),
                    "webhookSecret": voipchat_store::secret_digest(&app.secret).expose(),
                })
            );
        }
        AppCmd::List => {
            for app in store.list_apps()? {
                println!("{}", app_json(&app));
            }
        }
        AppCmd::Show { app_id } => {
            let app = existing(store.as_ref(), app_id)?;
            let mut shown = app_json(&app);
            shown["webhookUrl"] = store.webhook_url(&app.app_id)?.into();
            println!("{shown}");
        }
        AppCmd::EnableVoip { app_id } => set_voip(store.as_ref(), app_id, true)?,
        AppCmd::DisableVoip { app_id } => set_voip(store.as_ref(), app_id, false)?,
        AppCmd::RotateSecret { app_id } => {
            let secret = voipchat_auth::new_app_secret();
            if !store.set_app_secret(&AppId::new(app_id.as_str()), &secret)? {
                return Err(no_app(app_id));
            }
            eprintln!(
                "voipchat: the old secret of {app_id} no longer works; the new one is shown \
                 only now"
            );
            println!(
                "{}",
                serde_json::json!({
                    "appId": app_id,
                    "appSecret": secret.expose(),
                    "webhookSecret": voipchat_store::secret_digest(&secret).expose(),
                })
            );
        }
        AppCmd::SetWebhook { app_id, url, .. } => {
            if let Some(url) = url {
                voipchat_server::webhooks::url::parse(url)
                    .map_err(|why| format!("refused webhook URL: {why}"))?;
            }
            if !store.set_webhook_url(&AppId::new(app_id.as_str()), url.as_deref())? {
                return Err(no_app(app_id));
            }
            println!(
                "{}",
                serde_json::json!({"appId": app_id, "webhookUrl": url})
            );
        }
        AppCmd::Delete { app_id } => {
            if !store.delete_app(&AppId::new(app_id.as_str()))? {
                return Err(no_app(app_id));
            }
            println!("{}", serde_json::json!({"appId": app_id, "deleted": true}));
        }
    }
    Ok(())
}

/// `rotate-key`: a new current key in the key file (or, with `prune`, only the current one
/// kept), then every session key resealed under it.
fn rotate_key(store_args: StoreArgs, prune: bool) -> Result<(), BoxError> {
    use voipchat_server::secrets::{self, KeySource};
    let (config, config_file) = load_config(&store_args)?;
    if std::env::var_os(secrets::KEY_ENV).is_some() {
        return Err(format!(
            "the keys come from {}: rotate them there (put a new key first, keep the old \
             ones after it) and restart serve, which reseals at start",
            secrets::KEY_ENV
        )
        .into());
    }
    if config.store.is_none() && !config.sqlite_path().exists() {
        return Err(format!(
            "no database at {}: give this command the same --config, VOIPCHAT_CONFIG or \
             --data-dir as `voipchat serve`",
            absolute(&config.sqlite_path()).display()
        )
        .into());
    }
    let (_, source) = secrets::keyring(&config)?;
    let path = match source {
        KeySource::File(p) | KeySource::DataDir { path: p, .. } => p,
        KeySource::Env => unreachable!("checked above"),
    };
    let text = std::fs::read_to_string(&path)?;
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if prune {
        lines.truncate(1);
    } else {
        lines.insert(0, voipchat_store::secrets::new_key_line());
    }
    let new_text = lines.join("\n") + "\n";
    // Check the new file before it replaces the old one.
    let ring = voipchat_store::Keyring::parse(&new_text, &path.display().to_string())?;
    let key_id = ring.current_id().to_string();
    let (store, _) = open_store(&config, config_file.as_deref(), false)?;
    let sealed = voipchat_store::SealedStore::new(Arc::from(store), ring);
    if prune {
        // Reseal first: a key still sealed under an old key must not become unreadable.
        let resealed = sealed.reseal_all()?;
        voipchat_store::secrets::write_private(&path, &new_text)?;
        notice(&format!("key file {}: old keys removed", path.display()));
        println!(
            "{}",
            serde_json::json!({"keyId": key_id, "resealed": resealed, "keys": lines.len()})
        );
    } else {
        voipchat_store::secrets::write_private(&path, &new_text)?;
        let resealed = sealed.reseal_all()?;
        notice(&format!(
            "key file {}: new key {key_id} first; restart `voipchat serve` to seal under it",
            path.display()
        ));
        println!(
            "{}",
            serde_json::json!({"keyId": key_id, "resealed": resealed, "keys": lines.len()})
        );
    }
    Ok(())
}

/// An app as `app list` and `app show` print it: everything but the secret.
fn app_json(app: &AppRecord) -> serde_json::Value {
    serde_json::json!({
        "appId": app.app_id,
        "name": app.name,
        "voipEnabled": app.voip_enabled,
        "createdAt": app.created_at,
    })
}

fn no_app(app_id: &str) -> BoxError {
    format!("no app with appId {app_id} in this database (see `voipchat app list`)").into()
}

fn existing(store: &dyn Store, app_id: &str) -> Result<AppRecord, BoxError> {
    store
        .app(&AppId::new(app_id))?
        .ok_or_else(|| no_app(app_id))
}

fn set_voip(store: &dyn Store, app_id: &str, enabled: bool) -> Result<(), BoxError> {
    if !store.set_voip_enabled(&AppId::new(app_id), enabled)? {
        return Err(no_app(app_id));
    }
    println!(
        "{}",
        serde_json::json!({"appId": app_id, "voipEnabled": enabled})
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
