//! Janus (Debian's `janus` package, 1.1.x) as the third system of a run: the bench starts
//! it with a configuration of its own and drives it with the same generator.
//!
//! Janus's VideoRoom plugin is the peer that forwards what it gets, as voipchat does (its
//! AudioBridge decodes, mixes and re-encodes, which would destroy the payload stamps the
//! bench counts with, and is a different job). A VideoRoom member is two sessions: it
//! publishes its audio on one (sendonly) and subscribes to the other members of its room on
//! a second (one multistream subscription, one m-line per feed). Janus forwards each
//! published packet once per subscriber, the same copies voipchat makes.
//!
//! libnice gathers no candidate on `lo`, so Janus runs in the bench's own network namespace
//! (`crate::netns`) and gathers on a veth end that holds 127.0.0.2, where the generator's
//! Janus members bind too; all traffic still goes through the namespace's loopback. By
//! default it runs with one event loop (`event_loops = 1`: one media thread, as voipchat's
//! one shard; `--janus-event-loops` changes it) and full ICE (its default).

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
use crate::signaling::{Joined, LateErrors, MediaLink, JOIN_TIMEOUT};
use crate::BenchError;

/// Where Debian installs Janus's modules.
const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// Janus room ids of a run: ROOM_BASE + room index.
const ROOM_BASE: u64 = 1000;
/// How long one Janus API step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Janus's plugins and transports other than the VideoRoom and HTTP: not loaded.
const OTHER_PLUGINS: [&str; 11] = [
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
];
const OTHER_TRANSPORTS: [&str; 5] = ["mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets"];

/// A Janus this bench started. Dropping it kills the process and removes its config dir.
pub struct Janus {
    child: Child,
    dir: PathBuf,
    pub http: SocketAddr,
    pub pid: u32,
    /// Where the generator's members of Janus bind: the address Janus gathers on. libnice
    /// fails every pair between its 127.0.0.2 and a peer on 127.0.0.1 (measured), and pairs
    /// with a peer on its own address.
    pub peer_ip: std::net::Ipv4Addr,
}

impl Janus {
    /// Writes a config into a fresh temp dir and starts `binary` with it, gathering only on
    /// `iface` (whose address is `ip`), with `event_loops` media threads (0: Janus's
    /// default, one per handle), pinned to `cpus`.
    pub fn start(
        binary: &Path,
        iface: &str,
        ip: std::net::Ipv4Addr,
        event_loops: usize,
        cpus: Option<Vec<usize>>,
    ) -> Result<Janus, BenchError> {
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
        let list = |names: &[&str]| {
            names
                .iter()
                .map(|p| format!("libjanus_{p}.so"))
                .collect::<Vec<_>>()
                .join(",")
        };
        write(
            "janus.jcfg",
            format!(
                "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{LIB_DIR}/plugins\"\n \
                 transports_folder = \"{LIB_DIR}/transports\"\n events_folder = \"{d}/none\"\n \
                 loggers_folder = \"{d}/none\"\n debug_level = {level}\n session_timeout = 0\n \
                 {loops}}}\n\
                 media: {{\n rtp_port_range = \"40000-60000\"\n}}\n\
                 nat: {{\n ice_enforce_list = \"{iface}\"\n}}\n\
                 plugins: {{\n disable = \"{plugins}\"\n}}\n\
                 transports: {{\n disable = \"{transports}\"\n}}\n",
                d = dir.display(),
                // VOIPCHAT_BENCH_DEBUG: Janus's verbose log (5 of 7) too.
                loops = match event_loops {
                    0 => String::new(),
                    n => format!("event_loops = {n}\n"),
                },
                level = if std::env::var_os("VOIPCHAT_BENCH_DEBUG").is_some() { 5 } else { 3 },
                plugins = list(&OTHER_PLUGINS),
                transports = list(&OTHER_TRANSPORTS),
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
            .args(["--disable-stdout", "--disable-colors", "--interface"])
            .arg(ip.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cpus) = cpus {
            // SAFETY: as for the voipchat server: async-signal-safe, before exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    crate::sys::pin_set(0, &cpus)
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
            peer_ip: ip,
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

    /// An error if Janus has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::new(format!(
                "Janus exited ({status}); its log ends with:\n{}",
                log_tail(&self.dir.join("janus.log"))
            ))),
            Err(e) => Err(BenchError::new(format!("waiting for Janus: {e}"))),
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
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("VOIPCHAT_BENCH_DEBUG").is_some() {
            eprintln!(
                "voipchat-bench: janus: its config and log are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_tcp_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::new(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::new(format!("finding a free port: {e}")))
}

/// Where one of a member's two sessions lives: its media thread and index there, and the
/// news it sends.
pub struct Half {
    pub link: MediaLink,
    pub index: usize,
    pub news: UnboundedReceiver<ToSignal>,
}

/// One member's two sessions.
pub struct JanusMember {
    pub member: Member,
    /// The publisher session's offer.
    pub offer: String,
    pub publisher: Half,
    pub subscriber: Half,
}

/// The feed id of a member: Janus's ids start at 1.
fn feed_of(member: &Member) -> u64 {
    u64::from(member.gid) + 1
}

/// Starts the Janus signaling thread; as `signaling::spawn` (no retries: Janus has no
/// admission control to refuse with).
pub fn spawn_signaling(
    http: SocketAddr,
    rooms: Vec<Vec<JanusMember>>,
    joined: Sender<Result<Joined, Vec<String>>>,
    stop: watch::Receiver<bool>,
    late: LateErrors,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    crate::signaling::thread("janus-signaling", async move {
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
        let _ = joined.send(if ok {
            Ok(Joined::default())
        } else {
            Err(failures)
        });
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
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

    /// The next event of `handle` of this kind (`"janus"` field), the others skipped.
    async fn event(&mut self, handle: u64, kind: &str) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| format!("no {kind} from Janus within {} s", STEP_TIMEOUT.as_secs()))?
                .ok_or("the Janus long poll ended")?;
            if ev["sender"].as_u64() == Some(handle) && ev["janus"] == kind {
                return Ok(ev);
            }
        }
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

/// POSTs a Janus API request; an answer with `"janus": "error"` is an error.
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
    // Failures after the joins are the run's late errors. The sessions stay open (their
    // long polls run) until the run stops.
    for (mut m, session) in joined {
        let late = late.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _session = session;
            let who = m.member.open_id();
            loop {
                let news = tokio::select! {
                    n = m.publisher.news.recv() => n,
                    n = m.subscriber.news.recv() => n,
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

/// Waits for a session's `Connected`.
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

/// Whether an SDP offers a candidate on a loopback address: the bench sends nothing
/// elsewhere.
fn has_loopback_candidate(sdp: &str) -> bool {
    sdp.lines().any(|l| {
        l.starts_with("a=candidate:")
            && l.split(' ').any(|w| {
                w.parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
            })
    })
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
    let answered = Instant::now();
    let sdp = ev["jsep"]["sdp"]
        .as_str()
        .ok_or("the publisher answer has no sdp")?
        .to_string();
    debug(&format!("publisher offer answered:\n{sdp}"));
    if !has_loopback_candidate(&sdp) {
        return Err(format!(
            "Janus answered with no loopback candidate, and this bench sends nothing off \
             loopback; its answer:\n{sdp}"
        ));
    }
    m.publisher.link.send(
        m.publisher.index,
        FromSignal::Joined {
            sdp,
            join_sent,
            answered,
        },
    );
    connected(&mut m.publisher.news).await?;
    // Janus takes a feed for subscribers only once its own side is up ("No such feed"
    // before): it says so with `webrtcup`.
    session.event(handle, "webrtcup").await.map(|_| ())
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
    if !has_loopback_candidate(&sdp) {
        return Err(format!(
            "Janus offered no loopback candidate, and this bench sends nothing off loopback; \
             its offer:\n{sdp}"
        ));
    }
    let tracks = tracks_of(&ev["plugindata"]["data"]["streams"]);
    let sub = &m.subscriber;
    sub.link.send(sub.index, FromSignal::JoinSent(join_sent));
    sub.link.send(sub.index, FromSignal::Offer { sdp, tracks });
    let answer = loop {
        match tokio::time::timeout(STEP_TIMEOUT, m.subscriber.news.recv()).await {
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
    connected(&mut m.subscriber.news).await
}

/// The slot of each feed in a subscriber's offer, from the `streams` list of its event, as
/// voipchat's `tracks` message gives them.
fn tracks_of(streams: &Value) -> Vec<TrackSlot> {
    let Some(list) = streams.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter(|s| s["type"] == "audio")
        .filter_map(|s| {
            let mid = s["mid"].as_str()?.to_string();
            let gid = s["feed_id"].as_u64()?.checked_sub(1)?;
            Some(TrackSlot {
                mid,
                kind: TrackKind::Audio,
                open_id: Some(OpenId::new(format!("m{gid}"))),
            })
        })
        .collect()
}

/// With `VOIPCHAT_BENCH_DEBUG` set, the SDPs Janus sends go to stderr.
fn debug(what: &str) {
    if std::env::var_os("VOIPCHAT_BENCH_DEBUG").is_some() {
        eprintln!("voipchat-bench: janus: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_candidate_is_found_and_another_is_not() {
        let on_lo = "v=0\r\na=candidate:1 1 udp 2015363327 127.0.0.2 40001 typ host\r\n";
        let off = "v=0\r\na=candidate:1 1 udp 2015363327 10.0.0.5 40001 typ host\r\n";
        assert!(has_loopback_candidate(on_lo));
        assert!(!has_loopback_candidate(off));
    }

    #[test]
    fn feeds_map_to_the_bench_open_ids() {
        let streams = json!([
            {"type": "audio", "mid": "0", "feed_id": 3},
            {"type": "video", "mid": "1", "feed_id": 3},
            {"type": "audio", "mid": "2", "feed_id": 1}
        ]);
        let tracks = tracks_of(&streams);
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].mid, "0");
        assert_eq!(tracks[0].open_id.as_ref().map(|o| o.as_str()), Some("m2"));
        assert_eq!(tracks[1].open_id.as_ref().map(|o| o.as_str()), Some("m0"));
    }
}
