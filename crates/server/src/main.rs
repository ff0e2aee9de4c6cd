//! `voipchat`: run the service, manage apps, compute signatures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use voipchat_proto::{AppId, Secret};
use voipchat_server::config::Config;
use voipchat_store::{AppRecord, SqliteStore, Store};

#[derive(Parser)]
#[command(
    name = "voipchat",
    version,
    about = "Self-hosted multi-party voice chat rooms"
)]
struct Cli {
    /// TOML config file; flags override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory of the SQLite file.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service.
    Serve {
        /// HTTP + WebSocket address (default 127.0.0.1:7880).
        #[arg(long)]
        http_addr: Option<std::net::SocketAddr>,
        /// UDP media address (default 127.0.0.1:7882).
        #[arg(long)]
        media_addr: Option<std::net::SocketAddr>,
        /// IP announced in ICE candidates (default: the media bind IP).
        #[arg(long)]
        public_ip: Option<std::net::IpAddr>,
        #[arg(long)]
        room_cap: Option<usize>,
        #[arg(long)]
        daily_room_quota: Option<u64>,
        #[arg(long)]
        timestamp_window_secs: Option<u64>,
        /// Offset of the quota day from UTC, like +08:00.
        #[arg(long)]
        quota_utc_offset: Option<String>,
        #[arg(long)]
        media_timeout_secs: Option<u64>,
        /// Switch off the demo (page at /, demo app, POST /demo/sign); same as `demo = false`.
        #[arg(long)]
        no_demo: bool,
        /// Enable test-only routes (POST /api/v1/test/drop-ws); never in production.
        #[arg(long)]
        test_hooks: bool,
    },
    /// Manage apps.
    App {
        #[command(subcommand)]
        command: AppCmd,
    },
    /// Print the join signature for these inputs (64 hex characters, nothing else).
    Sign {
        #[arg(long)]
        app_id: String,
        #[arg(long)]
        group_id: String,
        #[arg(long)]
        nonce_str: String,
        #[arg(long)]
        timestamp: u64,
        #[arg(long)]
        session_key: String,
    },
}

#[derive(Subcommand)]
enum AppCmd {
    /// Create an app; prints {"appId": ..., "appSecret": ...}.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List apps (without secrets).
    List,
    /// Allow joins to the app's rooms.
    EnableVoip { app_id: String },
    /// Refuse joins to the app's rooms.
    DisableVoip { app_id: String },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,str0m=warn,dimpl=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; logs to files and pipes stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voipchat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, Box<dyn std::error::Error>> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

fn open_store(config: &Config) -> Result<SqliteStore, Box<dyn std::error::Error>> {
    Ok(SqliteStore::open(&config.sqlite_path())?)
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = load_config(&cli)?;
    match cli.command {
        Cmd::Serve {
            http_addr,
            media_addr,
            public_ip,
            room_cap,
            daily_room_quota,
            timestamp_window_secs,
            quota_utc_offset,
            media_timeout_secs,
            no_demo,
            test_hooks,
        } => {
            if let Some(v) = http_addr {
                config.http_addr = v;
            }
            if let Some(v) = media_addr {
                config.media_addr = v;
            }
            if public_ip.is_some() {
                config.public_ip = public_ip;
            }
            if let Some(v) = room_cap {
                config.room_cap = v;
            }
            if let Some(v) = daily_room_quota {
                config.daily_room_quota = v;
            }
            if let Some(v) = timestamp_window_secs {
                config.timestamp_window_secs = v;
            }
            if let Some(v) = quota_utc_offset {
                config.quota_utc_offset = v;
            }
            if let Some(v) = media_timeout_secs {
                config.media_timeout_secs = v;
            }
            if no_demo {
                config.demo = false;
            }
            if test_hooks {
                config.test_hooks = true;
            }
            config.validate()?;
            let store: Arc<dyn Store> = Arc::new(open_store(&config)?);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let listeners = voipchat_server::Listeners::bind(&config).await?;
                voipchat_server::run(listeners, config, store, shutdown_signal()).await
            })?;
        }
        Cmd::App { command } => {
            let store = open_store(&config)?;
            match command {
                AppCmd::Create { name } => {
                    let app = AppRecord {
                        app_id: voipchat_auth::new_app_id(),
                        name,
                        secret: voipchat_auth::new_app_secret(),
                        voip_enabled: false,
                        created_at: voipchat_server::clock::unix_now(),
                    };
                    store.create_app(&app)?;
                    println!(
                        "{}",
                        serde_json::json!({"appId": app.app_id, "appSecret": app.secret.expose()})
                    );
                }
                AppCmd::List => {
                    for app in store.list_apps()? {
                        println!(
                            "{}",
                            serde_json::json!({
                                "appId": app.app_id,
                                "name": app.name,
                                "voipEnabled": app.voip_enabled,
                                "createdAt": app.created_at,
                            })
                        );
                    }
                }
                AppCmd::EnableVoip { app_id } => set_voip(&store, &app_id, true)?,
                AppCmd::DisableVoip { app_id } => set_voip(&store, &app_id, false)?,
            }
        }
        Cmd::Sign {
            app_id,
            group_id,
            nonce_str,
            timestamp,
            session_key,
        } => {
            println!(
                "{}",
                voipchat_auth::sign(
                    &app_id,
                    &group_id,
                    &nonce_str,
                    timestamp,
                    &Secret::new(session_key)
                )
            );
        }
    }
    Ok(())
}

fn set_voip(
    store: &SqliteStore,
    app_id: &str,
    enabled: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    if !store.set_voip_enabled(&AppId::new(app_id), enabled)? {
        return Err(format!("no app with appId {app_id}").into());
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
