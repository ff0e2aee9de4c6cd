//! Janus (Debian's `janus` package, 1.1.x) as a third system of the same run: the bench
//! starts it with a configuration of its own (VideoRoom plugin and HTTP transport only, ICE
//! lite like voipchat, candidates on the loopback interface only) and drives it with the same
//! generator. Each member publishes its audio on one session (sendonly) and subscribes to
//! the other members of its room on a second one: one multistream subscription, one m-line
//! per feed, which is the closest VideoRoom gets to voipchat's one session per member.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use voipchat_proto::{OpenId, TrackKind, TrackSlot};

use crate::peer::{FromSignal, Member, ToSignal};
use crate::signaling::{LateErrors, MediaLink, JOIN_TIMEOUT};
use crate::BenchError;

/// Where Debian installs Janus's modules.
const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// Janus room ids of this run: ROOM_BASE + room index.
const ROOM_BASE: u64 = 1000;
/// How long one Janus API step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A Janus this bench started. Dropping it kills the process and removes its config dir.
pub struct Janus {
    child: Child,
    dir: PathBuf,
    pub http: SocketAddr,
    pub pid: u32,
}

impl Janus {
    /// Writes a config into a fresh temp dir and starts `binary` with it, pinned to `cpu`.
    pub fn start(binary: &Path, cpu: Option<usize>) -> Result<Janus, BenchError> {
        let port = free_tcp_port()?;
        let dir = std::env::temp_dir().join(format!(
            "voipchat-bench-janus-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BenchError::new(format!("creating {}: {e}", dir.display())))?;
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| BenchError::new(format!("writing the Janus config {name}: {e}")))
        };
        let disabled_plugins = [
            "audiobridge",
            "duktape",
            "echotest",
            "lua",
            "nosip",
            "recordplay",
            "sip",
            "streaming",
            "textroom",
            "videocall",
            "voicemail",
        ]
        .map(|p| format!("libjanus_{p}.so"))
        .join(",");
        let disabled_transports = ["mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets"]
            .map(|p| format!("libjanus_{p}.so"))
            .join(",");
        write(
            "janus.jcfg",
            format!(
                "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{LIB_DIR}/plugins\"\n \
                 transports_folder = \"{LIB_DIR}/transports\"\n events_folder = \"{LIB_DIR}/events\"\n \
                 loggers_folder = \"{d}/no-loggers\"\n debug_level = 3\n session_timeout = 0\n}}\n\
                 media: {{\n rtp_port_range = \"40000-60000\"\n}}\n\
                 nat: {{\n ice_lite = true\n ice_enforce_list = \"127.0.0.1\"\n}}\n\
                 plugins: {{\n disable = \"{disabled_plugins}\"\n}}\n\
                 transports: {{\n disable = \"{disabled_transports}\"\n}}\n",
                d = dir.display()
            ),
        )?;
        write(
            "janus.transport.http.jcfg",
            format!(
                "general: {{\n json = \"compact\"\n base_path = \"/janus\"\n http = true\n \
                 port = {port}\n ip = \"127.0.0.1\"\n https = false\n}}\nadmin: {{\n admin_http = false\n}}\n"
            ),
        )?;
        write("janus.plugin.videoroom.jcfg", "general: {\n}\n".into())?;
        let log = dir.join("janus.log");
        let mut cmd = Command::new(binary);
        cmd.arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir)
            .arg("-L")
            .arg(&log)
            .args([
                "--disable-stdout",
                "--disable-colors",
                "--interface",
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cpu) = cpu {
            // SAFETY: as for the voipchat server: async-signal-safe, before exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    crate::sys::pin(0, cpu)
                });
            }
        }
        let child = cmd.spawn().map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            BenchError::new(format!(
                "starting {} (Debian package `janus`): {e}",
                binary.display()
            ))
        })?;
        let pid = child.id();
        let mut janus = Janus {
            child,
            dir,
            http: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
        };
        // Ready when its HTTP API answers `info`.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = janus.child.try_wait() {
                return Err(BenchError::new(format!(
                    "Janus exited at start ({status}); its log ends with:\n{}",
                    log_tail(&log)
                )));
            }
            if info_answers(janus.http) {
                return Ok(janus);
            }
            if Instant::now() > deadline {
                return Err(BenchError::new(format!(
                    "Janus's HTTP API did not answer within 15 s; its log ends with:\n{}",
                    log_tail(&log)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether Janus answers `{"janus": "info"}` on its HTTP API (a blocking probe).
fn info_answers(http: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&http, Duration::from_millis(200)) else {
        return false;
    };
    let body = r#"{"janus":"info","transaction":"probe"}"#;
    let req = format!(
        "POST /janus HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("server_info")
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_tcp_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::new(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::new(format!("finding a free port: {e}")))
}

/// One member's two sessions and their news.
pub struct JanusMember {
    pub member: Member,
    /// The publisher session's offer.
    pub offer: String,
    pub publisher: (MediaLink, usize),
    pub publisher_news: UnboundedReceiver<ToSignal>,
    pub subscriber: (MediaLink, usize),
    pub subscriber_news: UnboundedReceiver<ToSignal>,
}

/// The feed id of a member: ids start at 1.
fn feed_of(member: &Member) -> u64 {
    u64::from(member.gid) + 1
}

/// Starts the Janus signaling thread; as `signaling::spawn`.
pub fn spawn_signaling(
    http: SocketAddr,
    rooms: Vec<Vec<JanusMember>>,
    joined: Sender<Result<(), Vec<String>>>,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("janus-signaling".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (r, members) in rooms.into_iter().enumerate() {
                    tasks.push(tokio::spawn(join_room(
                        http,
                        ROOM_BASE + r as u64,
                        members,
                        stop.clone(),
                        late.clone(),
                    )));
                }
                let mut failures = Vec::new();
                for t in tasks {
                    match t.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => failures.push(e),
                        Err(e) => failures.push(format!("a Janus room task failed: {e}")),
                    }
                }
                let ok = failures.is_empty();
                let _ = joined.send(if ok { Ok(()) } else { Err(failures) });
                let mut stop = stop;
                let _ = stop.wait_for(|s| *s).await;
            })
        })
}

/// A Janus session: its id and the events its long poll brought.
struct Session {
    http: SocketAddr,
    id: u64,
    events: UnboundedReceiver<Value>,
}

impl Session {
    async fn create(http: SocketAddr, stop: watch::Receiver<bool>) -> Result<Session, String> {
        let answer = call(http, "/janus", json!({"janus": "create"})).await?;
        let id = answer["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("create answered {answer}"))?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(long_poll(http, id, tx, stop));
        Ok(Session { http, id, events })
    }

    async fn attach(&self) -> Result<u64, String> {
        let answer = call(
            self.http,
            &format!("/janus/{}", self.id),
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )
        .await?;
        answer["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("attach answered {answer}"))
    }

    /// A plugin message on `handle`; the synchronous answer.
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, String> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        call(self.http, &format!("/janus/{}/{handle}", self.id), msg).await
    }

    /// The next plugin event of `handle` that carries a jsep (other events are skipped);
    /// an error event is an error.
    async fn jsep_event(&mut self, handle: u64) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| format!("no answer from Janus within {} s", STEP_TIMEOUT.as_secs()))?
                .ok_or("the Janus long poll ended")?;
            if ev["sender"].as_u64() != Some(handle) {
                continue;
            }
            let data = &ev["plugindata"]["data"];
            if let Some(err) = data.get("error") {
                return Err(format!("Janus: {err} ({})", data["error_code"]));
            }
            if ev.get("jsep").is_some() {
                return Ok(ev);
            }
        }
    }
}

/// POST a Janus API request; an answer with `"janus": "error"` is an error.
async fn call(http: SocketAddr, path: &str, mut msg: Value) -> Result<Value, String> {
    msg["transaction"] = json!(format!("t{}", rand::random::<u64>()));
    let (status, body) = crate::http::request(http, "POST", path, None, Some(&msg.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_str(&body)
        .map_err(|e| format!("Janus answered {status} {body:?}: {e}"))?;
    if answer["janus"] == "error" {
        return Err(format!(
            "Janus refused {}: {}",
            msg["janus"], answer["error"]
        ));
    }
    Ok(answer)
}

/// Brings a session's events (Janus's HTTP long poll) until the run stops.
async fn long_poll(
    http: SocketAddr,
    session: u64,
    tx: UnboundedSender<Value>,
    mut stop: watch::Receiver<bool>,
) {
    let path = format!("/janus/{session}?maxev=10");
    loop {
        let poll = crate::http::request(http, "GET", &path, None, None);
        let got = tokio::select! {
            r = poll => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((200, body)) = got else {
            return;
        };
        let events = match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(list)) => list,
            Ok(one) => vec![one],
            Err(_) => return,
        };
        for ev in events {
            if tx.send(ev).is_err() {
                return;
            }
        }
    }
}

/// Publishes the room's members one by one (each once the previous one is connected), then
/// subscribes each to all the others.
async fn join_room(
    http: SocketAddr,
    room: u64,
    members: Vec<JanusMember>,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) -> Result<(), String> {
    let all: Vec<Member> = members.iter().map(|m| m.member).collect();
    let mut joined = Vec::new();
    for (i, mut m) in members.into_iter().enumerate() {
        let who = format!("{} in Janus room {room}", m.member.open_id());
        let mut session = Session::create(http, stop.clone())
            .await
            .map_err(|e| format!("{who}: {e}"))?;
        publish(&mut session, &mut m, room, i == 0, all.len())
            .await
            .map_err(|e| format!("{who}: publishing: {e}"))?;
        joined.push((m, session));
    }
    for (m, session) in &mut joined {
        let who = format!("{} in Janus room {room}", m.member.open_id());
        subscribe(session, m, room, &all)
            .await
            .map_err(|e| format!("{who}: subscribing: {e}"))?;
    }
    // Failures after the joins are the run's "late" errors.
    for (mut m, _session) in joined {
        let late = late.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let who = m.member.open_id();
            loop {
                let news = tokio::select! {
                    n = m.publisher_news.recv() => n,
                    n = m.subscriber_news.recv() => n,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match news {
                    Some(ToSignal::Failed(e)) => {
                        if let Ok(mut l) = late.lock() {
                            l.push(format!("{who} in Janus room {room}: {e}"));
                        }
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        });
    }
    Ok(())
}

/// Waits for a session's `Connected`, answering nothing else.
async fn connected(news: &mut UnboundedReceiver<ToSignal>) -> Result<(), String> {
    let wait = async {
        loop {
            match news.recv().await {
                Some(ToSignal::Connected) => return Ok(()),
                Some(ToSignal::Failed(e)) => return Err(e),
                Some(ToSignal::Answer(_)) => {}
                None => return Err("the media thread ended".to_string()),
            }
        }
    };
    tokio::time::timeout(JOIN_TIMEOUT, wait)
        .await
        .map_err(|_| format!("not connected within {} s", JOIN_TIMEOUT.as_secs()))?
}

async fn publish(
    session: &mut Session,
    m: &mut JanusMember,
    room: u64,
    first: bool,
    members: usize,
) -> Result<(), String> {
    let handle = session.attach().await?;
    if first {
        let answer = session
            .message(
                handle,
                json!({"request": "create", "room": room, "publishers": members,
                       "audiocodec": "opus", "audiolevel_ext": true, "audiolevel_event": false,
                       "permanent": false}),
                None,
            )
            .await?;
        let data = &answer["plugindata"]["data"];
        if data["videoroom"] != "created" {
            return Err(format!("creating the room: {data}"));
        }
    }
    let join_sent = Instant::now();
    session
        .message(
            handle,
            json!({"request": "joinandconfigure", "room": room, "ptype": "publisher",
                   "id": feed_of(&m.member), "display": m.member.open_id(),
                   "audio": true, "video": false}),
            Some(json!({"type": "offer", "sdp": std::mem::take(&mut m.offer)})),
        )
        .await?;
    let ev = session.jsep_event(handle).await?;
    let sdp = ev["jsep"]["sdp"]
        .as_str()
        .ok_or("the publisher answer has no sdp")?
        .to_string();
    debug(&format!("publisher offer answered:\n{sdp}"));
    // All traffic stays on 127.0.0.1: a Janus that offers no loopback candidate is not used.
    if !sdp
        .lines()
        .any(|l| l.starts_with("a=candidate:") && l.contains(" 127.0.0.1 "))
    {
        return Err(
            "Janus offered no 127.0.0.1 candidate (libnice gathers none on the \
                    loopback interface), and this bench sends nothing off 127.0.0.1"
                .into(),
        );
    }
    let (link, index) = &m.publisher;
    link.send(*index, FromSignal::Joined { sdp, join_sent });
    connected(&mut m.publisher_news).await
}

async fn subscribe(
    session: &mut Session,
    m: &mut JanusMember,
    room: u64,
    all: &[Member],
) -> Result<(), String> {
    let handle = session.attach().await?;
    let streams: Vec<Value> = all
        .iter()
        .filter(|o| o.gid != m.member.gid)
        .map(|o| json!({"feed": feed_of(o)}))
        .collect();
    let join_sent = Instant::now();
    session
        .message(
            handle,
            json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams}),
            None,
        )
        .await?;
    let ev = session.jsep_event(handle).await?;
    let sdp = ev["jsep"]["sdp"]
        .as_str()
        .ok_or("the subscriber offer has no sdp")?
        .to_string();
    debug(&format!("subscriber offer:\n{sdp}\nevent: {ev}"));
    let tracks: Vec<TrackSlot> = ev["plugindata"]["data"]["streams"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|s| s["type"] == "audio")
                .filter_map(|s| {
                    let mid = s["mid"].as_str()?.to_string();
                    let feed = s["feed_id"].as_u64()?;
                    Some(TrackSlot {
                        mid,
                        kind: TrackKind::Audio,
                        open_id: Some(OpenId::new(format!("m{}", feed.checked_sub(1)?))),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let (link, index) = &m.subscriber;
    link.send(*index, FromSignal::JoinSent(join_sent));
    link.send(*index, FromSignal::Offer { sdp, tracks });
    let answer = loop {
        match tokio::time::timeout(STEP_TIMEOUT, m.subscriber_news.recv()).await {
            Ok(Some(ToSignal::Answer(sdp))) => break sdp,
            Ok(Some(ToSignal::Failed(e))) => return Err(e),
            Ok(Some(ToSignal::Connected)) => {}
            Ok(None) => return Err("the media thread ended".into()),
            Err(_) => return Err("no answer to Janus's offer".into()),
        }
    };
    session
        .message(
            handle,
            json!({"request": "start", "room": room}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
    connected(&mut m.subscriber_news).await
}

/// With `VOIPCHAT_BENCH_DEBUG` set, the SDPs Janus sends go to stderr.
fn debug(what: &str) {
    if std::env::var_os("VOIPCHAT_BENCH_DEBUG").is_some() {
        eprintln!("voipchat-bench: janus: {what}");
    }
}
