//! `voipchat-client`: joins a voipchat room as a real WebRTC peer, plays an Ogg Opus file
//! into it in real time, records every other member into `DIR/<openId>.opus`, and prints
//! each event as one JSON line on stdout (logs go to stderr, filtered by `RUST_LOG`).
//!
//! Exit codes: 0 after `--duration`, Ctrl-C or SIGTERM (each sends `exit` first); 1 on an
//! error (bad arguments, unreadable file, no connection); 2 when the join is refused (the
//! `joinResult` line carries errCode and errMsg); 3 when the server ended the membership
//! (interrupted, or the connection closed) and no `--rejoin` brought it back.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use voipchat_client::{
    file_audio_level, read_ivf, read_ogg_opus, AudioSender, Client, ClientError, ClientEvent,
    IvfFrame, IvfHeader, JoinOptions, MediaTransport, OpusPacket, RoomRecorder, VideoRecorder,
};
use voipchat_proto::{AppId, GroupId, MuteConfig, OpenId, RoomType, Secret};

#[derive(Parser)]
#[command(
    name = "voipchat-client",
    version,
    about = "A voipchat room member on the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join a room; print events as JSON lines until --duration, Ctrl-C or the server ends it.
    Join(JoinArgs),
}

#[derive(Args)]
struct JoinArgs {
    /// The server: http(s)://HOST:PORT (as the JS SDK takes it), or its signaling WebSocket
    /// ws(s)://HOST:PORT with or without /ws. Give it once per node of a cluster: a join
    /// that cannot reach one node tries the next, starting with the one that worked last
    #[arg(long = "server", value_name = "URL", default_value = "http://127.0.0.1:7880", value_parser = signaling_url)]
    servers: Vec<String>,
    /// The app's appId (required)
    #[arg(long)]
    app_id: String,
    /// This member's openId (required)
    #[arg(long)]
    open_id: String,
    /// The room's groupId (required)
    #[arg(long)]
    group_id: String,
    /// Sign the join here with the user's session key (random nonceStr, current time)
    /// [default: none; then --signature is needed]
    #[arg(
        long,
        required_unless_present = "signature",
        conflicts_with = "signature"
    )]
    session_key: Option<String>,
    /// A signature made elsewhere (e.g. by the backend's voip-sign API); needs --nonce-str
    /// and --timestamp [default: none; then --session-key is needed]
    #[arg(long, requires_all = ["nonce_str", "timestamp"])]
    signature: Option<String>,
    /// The nonceStr that --signature signed [default: none; only with --signature]
    #[arg(long, requires = "signature")]
    nonce_str: Option<String>,
    /// The Unix seconds that --signature signed [default: none; only with --signature]
    #[arg(long, requires = "signature")]
    timestamp: Option<u64>,
    /// The room type of the join
    #[arg(long, value_enum, default_value_t = RoomTypeArg::Voice)]
    room_type: RoomTypeArg,
    /// An Ogg Opus file to play into the room in real time, starting once connected (make one
    /// with `opusenc in.wav out.opus` or `ffmpeg -i in.wav -c:a libopus out.opus`) [default:
    /// none: send nothing]
    #[arg(long, value_name = "FILE.opus")]
    send: Option<PathBuf>,
    /// Play the --send file (and the --send-video file) again and again [default: off: play
    /// it once]
    #[arg(long = "loop")]
    repeat: bool,
    /// A VP8 IVF file to send as this member's camera in a video room, in real time from
    /// when connected; a keyframe request from the server restarts it at its first (key)
    /// frame (make one with `ffmpeg -i in.y4m -c:v libvpx -b:v 300k out.ivf`) [default:
    /// none: send no video]
    #[arg(long, value_name = "FILE.ivf")]
    send_video: Option<PathBuf>,
    /// Record every other member into DIR/<openId>.opus, and in a video room their video
    /// into DIR/<openId>.ivf [default: none: record nothing]
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    /// Leave (with exit) after this many seconds [default: none: stay until Ctrl-C, SIGTERM
    /// or the server ends the membership]
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Join with muteConfig.muteMicrophone [default: off]
    #[arg(long)]
    mute_mic: bool,
    /// Join with muteConfig.muteEarphone [default: off]
    #[arg(long)]
    mute_earphone: bool,
    /// IP of the UDP socket, announced as the ICE host candidate
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// For an https/wss server: a PEM file of CA certificates to trust besides the public
    /// roots (a private CA, or the server's self-signed certificate) [default: none]
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Media over TCP only (ICE over TCP to the server's media port number), no UDP at all:
    /// what a client on a network that blocks UDP does [default: off: UDP]
    #[arg(long)]
    ice_tcp: bool,
    /// When the membership ends without an exit (the connection lost, the node stopped or
    /// died, media lost after it had flowed), join again with a fresh signature, at the
    /// --server URLs in turn, for up to 30 s (like the JS SDK's reconnect);
    /// needs --session-key [default: off: the membership's end ends the program]
    #[arg(long, requires = "session_key")]
    rejoin: bool,
}

/// How long `--rejoin` keeps trying (its help says 30 s), and the pauses between its rounds
/// over the servers.
const REJOIN_SECS: u64 = 30;
const REJOIN_DELAYS_MS: [u64; 4] = [0, 250, 500, 1000];

/// Interruptions after which `--rejoin` joins again: the node is stopping (-11004) or the
/// medium was lost under the signaling connection (-11003, -11006, -11007).
const REJOINABLE: [i32; 4] = [-11004, -11003, -11006, -11007];

/// `--server` as the signaling WebSocket URL the client connects to. Like the JS SDK's
/// `signalingUrl`: http(s) becomes ws(s) with `/ws` appended to the path; a ws(s) URL is used
/// as it is, except that one without a path (`ws://HOST:PORT`, `ws://HOST:PORT/`) gets `/ws`.
/// The query string is kept.
fn signaling_url(server: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{server:?} is not a server URL: use http://HOST:PORT, https://HOST, \
             ws://HOST:PORT or ws://HOST:PORT/ws"
        )
    };
    let (scheme, rest) = server.trim().split_once("://").ok_or_else(bad)?;
    let ws_scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(bad()),
    };
    let is_http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    // Fragments are never sent to a server.
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(bad());
    }
    let path = if is_http {
        format!("{}/ws", path.trim_end_matches('/'))
    } else if path.is_empty() || path == "/" {
        "/ws".to_string()
    } else {
        path.to_string()
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!("{ws_scheme}://{authority}{path}{query}"))
}

/// Checks that `path` is an Ogg file with an Opus stream before it is parsed, to say what
/// is needed instead of an Ogg parser's complaint.
fn check_ogg_opus(path: &std::path::Path) -> Result<(), String> {
    use std::io::Read as _;
    let how = "--send needs an Ogg Opus file: make one with `opusenc in.wav out.opus` \
               (opus-tools) or `ffmpeg -i in.wav -c:a libopus out.opus`";
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let kind = if head.starts_with(b"OggS") {
        // The first page of an Ogg Opus stream carries the OpusHead packet.
        if head.windows(8).any(|w| w == b"OpusHead") {
            return Ok(());
        }
        "an Ogg file without an Opus stream (Vorbis or FLAC in Ogg?)".to_string()
    } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
        "a WAV file, not Ogg Opus".to_string()
    } else if head.starts_with(b"ID3") || (head.len() > 1 && head[0] == 0xff && head[1] >= 0xe0) {
        "an MP3 file, not Ogg Opus".to_string()
    } else if head.is_empty() {
        "empty".to_string()
    } else {
        "not an Ogg file".to_string()
    };
    Err(format!("{} is {kind}; {how}", path.display()))
}

#[derive(Clone, Copy, ValueEnum)]
enum RoomTypeArg {
    Voice,
    Video,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voipchat-client: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Join(args) => runtime.block_on(join(args)),
    }
}

fn emit(v: Value) {
    println!("{v}");
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("voipchat-client: {msg}");
    emit(json!({"event": "error", "errMsg": msg.to_string()}));
    ExitCode::from(1)
}

fn options(args: &JoinArgs, server: &str) -> JoinOptions {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut opts = match &args.session_key {
        Some(key) => JoinOptions::signed(
            server.to_string(),
            AppId::new(&args.app_id),
            OpenId::new(&args.open_id),
            GroupId::new(&args.group_id),
            &Secret::new(key.clone()),
            now,
        ),
        // clap enforces that --signature comes with --nonce-str and --timestamp.
        None => JoinOptions {
            server: server.to_string(),
            app_id: AppId::new(&args.app_id),
            open_id: OpenId::new(&args.open_id),
            group_id: GroupId::new(&args.group_id),
            nonce_str: args.nonce_str.clone().unwrap_or_default(),
            time_stamp: args.timestamp.unwrap_or(now),
            signature: args.signature.clone().unwrap_or_default(),
            room_type: RoomType::Voice,
            mute_config: MuteConfig::default(),
            bind_ip: args.bind_ip,
            ca_file: None,
            transport: MediaTransport::Udp,
        },
    };
    opts.room_type = match args.room_type {
        RoomTypeArg::Voice => RoomType::Voice,
        RoomTypeArg::Video => RoomType::Video,
    };
    opts.mute_config = MuteConfig {
        mute_microphone: args.mute_mic,
        mute_earphone: args.mute_earphone,
        mute_camera: false,
    };
    opts.bind_ip = args.bind_ip;
    opts.ca_file = args.ca_file.clone();
    if args.ice_tcp {
        opts.transport = MediaTransport::Tcp;
    }
    opts
}

/// Why the event loop stopped.
enum Stop {
    /// --duration elapsed, Ctrl-C or SIGTERM: leave with `exit`.
    Leave(&'static str),
    /// The server ended it (interrupted, connection closed); the interruption's code.
    Ended(Option<i32>),
}

/// `--rejoin`: joins again (a fresh signature each attempt) until a server takes the join,
/// one refuses it, or [`REJOIN_SECS`] pass. Starts with the server that worked last.
async fn rejoin(
    args: &JoinArgs,
    from: usize,
    reason: &str,
) -> Result<(Client, Vec<OpenId>, usize), ClientError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(REJOIN_SECS);
    let mut attempt = 0;
    loop {
        let pause = REJOIN_DELAYS_MS[attempt.min(REJOIN_DELAYS_MS.len() - 1)];
        attempt += 1;
        emit(json!({"event": "rejoining", "attempt": attempt, "reason": reason}));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        match Client::join_any(&args.servers, from, |url| options(args, url)).await {
            Err(e)
                if e.is_unreachable()
                    || matches!(e.code(), Some(c) if c.code() == -1000 || c.code() == -11004) =>
            {
                if tokio::time::Instant::now() >= deadline {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

async fn join(args: JoinArgs) -> ExitCode {
    let packets = match &args.send {
        Some(path) => match check_ogg_opus(path)
            .and_then(|()| read_ogg_opus(path).map_err(|e| format!("{}: {e}", path.display())))
        {
            Ok(p) if p.is_empty() => return fail(format!("{}: no audio packets", path.display())),
            Ok(p) => Some(p),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let mut recorder = match &args.record_dir {
        Some(dir) => match RoomRecorder::new(dir) {
            Ok(r) => Some(r),
            Err(e) => return fail(format!("{}: {e}", dir.display())),
        },
        None => None,
    };

    let video = match &args.send_video {
        Some(_) if !matches!(args.room_type, RoomTypeArg::Video) => {
            return fail("--send-video needs --room-type video")
        }
        Some(path) => match std::fs::File::open(path).and_then(read_ivf) {
            Ok((_, frames)) if frames.is_empty() => {
                return fail(format!("{}: no video frames", path.display()))
            }
            Ok((header, frames)) => Some((header, frames)),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        None => None,
    };
    let mut video_recorder = match (&args.record_dir, &args.room_type) {
        (Some(dir), RoomTypeArg::Video) => match VideoRecorder::new(dir) {
            Ok(r) => Some(r),
            Err(e) => return fail(format!("{}: {e}", dir.display())),
        },
        _ => None,
    };
    let keyframe_wanted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let (mut client, _members, mut at) =
        match Client::join_any(&args.servers, 0, |url| options(&args, url)).await {
            Ok(joined) => joined,
            Err(ClientError::Refused { err_code, err_msg }) => {
                emit(json!({"event": "joinResult", "errCode": err_code, "errMsg": err_msg}));
                return ExitCode::from(2);
            }
            Err(e) => return fail(format!("join: {e}")),
        };

    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut player: Option<tokio::task::JoinHandle<()>> = None;
    let mut camera: Option<tokio::task::JoinHandle<()>> = None;
    let mut heard: HashSet<(Option<OpenId>, String)> = HashSet::new();
    let mut terminate = signal_terminate();
    // Media counters of the memberships before the last (--rejoin).
    let mut earlier = voipchat_client::ClientStats::default();

    let stop = 'membership: loop {
        let mut interrupted: Option<i32> = None;
        let mut media_flowed = false;
        let stop = loop {
            let event = tokio::select! {
                e = client.next_event() => e,
                _ = sleep_until_opt(deadline) => break Stop::Leave("duration"),
                _ = tokio::signal::ctrl_c() => break Stop::Leave("interrupt"),
                _ = terminate.recv() => break Stop::Leave("terminate"),
            };
            let Some(event) = event else {
                break Stop::Ended(interrupted);
            };
            match event {
                ClientEvent::Audio {
                    from,
                    mid,
                    payload,
                    rtp_time,
                } => {
                    if heard.insert((from.clone(), mid.clone())) {
                        emit(json!({"event": "audioStarted", "openId": from, "mid": mid}));
                    }
                    if let (Some(rec), Some(from)) = (recorder.as_mut(), from.as_ref()) {
                        if let Err(e) = rec.record(from, &payload, rtp_time) {
                            tracing::warn!(%from, "recording: {e}");
                        }
                    }
                }
                ClientEvent::Video {
                    from,
                    mid,
                    frame,
                    rtp_time,
                } => {
                    if heard.insert((from.clone(), mid.clone())) {
                        emit(json!({"event": "videoStarted", "openId": from, "mid": mid}));
                    }
                    if let (Some(rec), Some(from)) = (video_recorder.as_mut(), from.as_ref()) {
                        if let Err(e) = rec.record(from, &frame, rtp_time) {
                            tracing::warn!(%from, "recording video: {e}");
                        }
                    }
                }
                ClientEvent::KeyframeRequested => {
                    keyframe_wanted.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                ClientEvent::Interrupted { err_code, .. } => {
                    interrupted = Some(err_code);
                    emit(event_json(&event));
                }
                ClientEvent::Connected => {
                    media_flowed = true;
                    emit(event_json(&ClientEvent::Connected));
                    if let (Some(packets), None) = (&packets, &player) {
                        let sender = client.audio_sender();
                        player = Some(tokio::spawn(play(sender, packets.clone(), args.repeat)));
                    }
                    if let (Some((header, frames)), None) = (&video, &camera) {
                        let sender = client.audio_sender();
                        camera = Some(tokio::spawn(play_video(
                            sender,
                            *header,
                            frames.clone(),
                            args.repeat,
                            keyframe_wanted.clone(),
                        )));
                    }
                }
                ClientEvent::Closed => {
                    emit(event_json(&ClientEvent::Closed));
                    break Stop::Ended(interrupted);
                }
                other => emit(event_json(&other)),
            }
        };
        let Stop::Ended(code) = stop else {
            break 'membership stop;
        };
        let worth_it = match code {
            None => true,
            // The node is stopping, or another node holds the room now.
            Some(-11004) | Some(-11008) => true,
            Some(c) => REJOINABLE.contains(&c) && media_flowed,
        };
        if !args.rejoin || !worth_it {
            break 'membership stop;
        }
        // What the next membership sends restarts once it is connected.
        if let Some(p) = player.take() {
            p.abort();
        }
        if let Some(c) = camera.take() {
            c.abort();
        }
        heard.clear();
        let stats = client.stats();
        earlier.packets_sent += stats.packets_sent;
        earlier.packets_dropped_before_connected += stats.packets_dropped_before_connected;
        earlier.packets_received += stats.packets_received;
        let reason = match code {
            None => "connection closed".to_string(),
            Some(c) => format!("interrupted ({c})"),
        };
        match rejoin(&args, at, &reason).await {
            Ok((next, members, i)) => {
                emit(
                    json!({"event": "rejoined", "server": args.servers[i], "openIdList": members}),
                );
                client = next;
                at = i;
            }
            Err(ClientError::Refused { err_code, err_msg }) => {
                emit(json!({"event": "joinResult", "errCode": err_code, "errMsg": err_msg}));
                break 'membership Stop::Ended(code);
            }
            Err(e) => {
                emit(json!({"event": "error", "errMsg": format!("rejoin: {e}")}));
                break 'membership Stop::Ended(code);
            }
        }
    };

    if let Some(p) = player.take() {
        p.abort();
    }
    if let Some(c) = camera.take() {
        c.abort();
    }
    let mut stats = client.stats();
    stats.packets_sent += earlier.packets_sent;
    stats.packets_dropped_before_connected += earlier.packets_dropped_before_connected;
    stats.packets_received += earlier.packets_received;
    let code = match stop {
        Stop::Leave(reason) => {
            emit(json!({"event": "leaving", "reason": reason}));
            match client.exit().await {
                Ok(()) => {
                    emit(json!({"event": "exitResult", "errCode": 0}));
                    ExitCode::SUCCESS
                }
                Err(ClientError::Refused { err_code, err_msg }) => {
                    emit(json!({"event": "exitResult", "errCode": err_code, "errMsg": err_msg}));
                    ExitCode::from(1)
                }
                Err(e) => {
                    emit(json!({"event": "exitResult", "errCode": -1000, "errMsg": e.to_string()}));
                    ExitCode::from(1)
                }
            }
        }
        Stop::Ended(_) => ExitCode::from(3),
    };
    let mut summary = json!({
        "event": "summary",
        "packetsSent": stats.packets_sent,
        "packetsDroppedBeforeConnected": stats.packets_dropped_before_connected,
        "packetsReceived": stats.packets_received,
    });
    if let Some(rec) = recorder.take() {
        match rec.finish() {
            Ok(recordings) => {
                summary["recordings"] = recordings
                    .iter()
                    .map(|r| {
                        json!({
                            "openId": r.open_id,
                            "path": r.path,
                            "packets": r.packets,
                            "durationMs": r.samples / 48,
                        })
                    })
                    .collect();
            }
            Err(e) => tracing::warn!("finishing recordings: {e}"),
        }
    }
    if let Some(rec) = video_recorder.take() {
        match rec.finish() {
            Ok(recordings) => {
                summary["videoRecordings"] = recordings
                    .iter()
                    .map(|r| json!({"openId": r.open_id, "path": r.path, "frames": r.frames}))
                    .collect();
            }
            Err(e) => tracing::warn!("finishing video recordings: {e}"),
        }
    }
    emit(summary);
    code
}

/// Sends an IVF file's frames in real time, each for the time to the next frame's
/// timestamp (the file's time base; 1/30 s when the file says nothing usable). A keyframe
/// request restarts the file at its first frame, which encoders make a key frame.
async fn play_video(
    sender: AudioSender,
    header: IvfHeader,
    frames: Vec<IvfFrame>,
    repeat: bool,
    keyframe_wanted: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let tick = |ts: u64| -> Duration {
        if header.rate == 0 || header.scale == 0 {
            return Duration::from_millis(33) * ts as u32;
        }
        Duration::from_secs_f64(ts as f64 * f64::from(header.scale) / f64::from(header.rate))
    };
    let frame_time = |i: usize| -> Duration {
        match (frames.get(i), frames.get(i + 1)) {
            (Some(a), Some(b)) if b.timestamp > a.timestamp => tick(b.timestamp - a.timestamp),
            _ => Duration::from_millis(33),
        }
    };
    let mut next = tokio::time::Instant::now();
    let mut i = 0;
    loop {
        if keyframe_wanted.swap(false, std::sync::atomic::Ordering::Relaxed) {
            i = 0;
        }
        if i >= frames.len() {
            if !repeat {
                return;
            }
            i = 0;
        }
        tokio::time::sleep_until(next).await;
        let d = frame_time(i);
        if sender.send_vp8(frames[i].data.clone(), d).is_err() {
            return;
        }
        next += d;
        i += 1;
    }
}

/// Plays the packets in real time: packet n goes out at start + the durations of packets
/// 0..n (absolute deadlines, so pacing does not drift).
async fn play(sender: AudioSender, packets: Vec<OpusPacket>, repeat: bool) {
    let start = tokio::time::Instant::now();
    let mut offset = Duration::ZERO;
    loop {
        for p in &packets {
            tokio::time::sleep_until(start + offset).await;
            let level = file_audio_level(&p.data);
            if sender
                .send_opus(p.data.clone(), p.duration, Some(level))
                .is_err()
            {
                return;
            }
            offset += p.duration;
        }
        if !repeat {
            return;
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM as a stream of notifications (never fires where it cannot be installed).
fn signal_terminate() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if tx.send(()).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                // Keep the sender alive so that the receiver never reports closure.
                std::mem::forget(tx);
            }
        }
    }
    #[cfg(not(unix))]
    std::mem::forget(tx);
    rx
}

/// One event as its JSON line (not used for `Audio`, which would be one line per packet).
fn event_json(event: &ClientEvent) -> Value {
    match event {
        ClientEvent::Joined { open_id_list } => {
            json!({"event": "joined", "openIdList": open_id_list})
        }
        ClientEvent::MembersChanged(list) => json!({"event": "membersChanged", "openIdList": list}),
        ClientEvent::SpeakersChanged(list) => {
            json!({"event": "speakersChanged", "openIdList": list})
        }
        ClientEvent::MuteChanged(list) => {
            json!({"event": "muteChanged", "mutedOpenIdList": list})
        }
        ClientEvent::ServerMuteChanged(muted) => {
            json!({"event": "serverMuteChanged", "serverMuted": muted})
        }
        ClientEvent::Interrupted { err_code, err_msg } => {
            json!({"event": "interrupted", "errCode": err_code, "errMsg": err_msg})
        }
        ClientEvent::Audio {
            from,
            mid,
            payload,
            rtp_time,
        } => {
            json!({"event": "audio", "openId": from, "mid": mid, "bytes": payload.len(), "rtpTime": rtp_time})
        }
        ClientEvent::Video {
            from,
            mid,
            frame,
            rtp_time,
        } => {
            json!({"event": "video", "openId": from, "mid": mid, "bytes": frame.len(), "rtpTime": rtp_time})
        }
        ClientEvent::VideoMembersChanged(list) => {
            json!({"event": "videoMembersChanged", "openIdList": list})
        }
        ClientEvent::KeyframeRequested => json!({"event": "keyframeRequested"}),
        ClientEvent::Tracks(tracks) => json!({"event": "tracks", "tracks": tracks}),
        ClientEvent::Connected => json!({"event": "connected"}),
        ClientEvent::Error { err_code, err_msg } => {
            json!({"event": "error", "errCode": err_code, "errMsg": err_msg})
        }
        ClientEvent::Closed => json!({"event": "closed"}),
    }
}

#[cfg(test)]
mod tests {
    use super::signaling_url;

    #[test]
    fn server_urls_are_normalized_like_the_js_sdk_does() {
        for (given, expected) in [
            ("http://127.0.0.1:7880", "ws://127.0.0.1:7880/ws"),
            ("http://127.0.0.1:7880/", "ws://127.0.0.1:7880/ws"),
            ("https://voice.example.com", "wss://voice.example.com/ws"),
            ("https://example.com/voip/", "wss://example.com/voip/ws"),
            ("HTTP://host:1", "ws://host:1/ws"),
            ("ws://127.0.0.1:7880", "ws://127.0.0.1:7880/ws"),
            ("ws://127.0.0.1:7880/", "ws://127.0.0.1:7880/ws"),
            ("ws://127.0.0.1:7880/ws", "ws://127.0.0.1:7880/ws"),
            ("wss://example.com/ws", "wss://example.com/ws"),
            ("ws://[::1]:7880", "ws://[::1]:7880/ws"),
            // A ws(s) URL with a path is used as it is, query included.
            ("ws://h:1/other/ws?tag=bob", "ws://h:1/other/ws?tag=bob"),
            ("http://h:1?tag=bob", "ws://h:1/ws?tag=bob"),
            ("http://h:1/#frag", "ws://h:1/ws"),
            ("  http://h:1  ", "ws://h:1/ws"),
        ] {
            assert_eq!(signaling_url(given).as_deref(), Ok(expected), "{given}");
        }
        for bad in [
            "127.0.0.1:7880",
            "ftp://h:1",
            "http://",
            "ws:///ws",
            "",
            "http://a b:1",
        ] {
            let err = signaling_url(bad).expect_err(bad);
            assert!(err.contains("http://HOST:PORT"), "{bad}: {err}");
        }
    }
}
