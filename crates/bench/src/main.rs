//! `voipchat-bench`: R rooms × M all-talking members of real WebRTC peers against the
//! voipchat server over loopback UDP, and the same load against a crypto-free relay (the
//! floor of this machine) and, with `--janus`, Janus's VideoRoom, in one run; one table
//! side by side. docs/benchmark.md says how and why.

mod http;
mod janus;
mod media;
mod netns;
mod payload;
mod peer;
mod relay;
mod report;
mod run;
mod server;
mod signaling;
mod sys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use report::Summary;
use run::RunConfig;
use server::{Spawned, Target};

/// A failure that ends the bench with a message and a non-zero exit.
#[derive(Debug)]
pub struct BenchError(String);

impl BenchError {
    pub fn new(msg: impl Into<String>) -> BenchError {
        BenchError(msg.into())
    }
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "voipchat-bench",
    about = "Load benchmark of the voipchat server over loopback UDP, side by side with a crypto-free relay floor"
)]
struct Cli {
    /// Room counts to run, in order; the series stops at the first that saturates
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20,40")]
    rooms: Vec<usize>,
    /// Members per room, all talking
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Length of the measurement window, in seconds
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Time between the last join and the window, in seconds
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// The voipchat binary to start [default: `voipchat` next to this binary]
    #[arg(long, value_name = "PATH")]
    voipchat: Option<PathBuf>,
    /// Target a running server instead (its HTTP address, e.g. http://127.0.0.1:7880);
    /// needs --app-id and --app-secret of an app with VoIP enabled
    #[arg(long, value_name = "URL", requires_all = ["app_id", "app_secret"])]
    server_url: Option<String>,
    #[arg(long)]
    app_id: Option<String>,
    #[arg(long)]
    app_secret: Option<String>,
    /// With --server-url: the server's process id, for its CPU and RSS
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// CPU of the server and of the floor relay; a list (e.g. 0,1) gives the server several
    /// (the relay takes the first)
    #[arg(long, value_delimiter = ',', default_value = "0")]
    server_cpu: Vec<usize>,
    /// Media shards of the server started (its --media-shards)
    #[arg(long, default_value_t = 1)]
    media_shards: usize,
    /// CPU of the generator (all its threads)
    #[arg(long, default_value_t = 1)]
    gen_cpu: usize,
    /// Do not pin anything
    #[arg(long)]
    no_pin: bool,
    /// Nice value of the server, the relay and the generator (e.g. -10 on a machine where
    /// other work runs; negative values need root)
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    nice: i32,
    /// Generator media threads
    #[arg(long, default_value_t = 1)]
    gen_threads: usize,
    /// voipchat receivers decrypt one RTP packet in this many and account the others from
    /// their clear header (slot SSRC and sequence number); the decrypted ones give the
    /// latency and cross-check the accounting. 1 decrypts everything
    #[arg(long, default_value_t = 10)]
    decrypt_every: u64,
    /// Skip the floor relay
    #[arg(long)]
    no_floor: bool,
    /// Also run Janus's VideoRoom (Debian's `janus`) under the same load, pinned as the
    /// server is. The bench then runs itself in a network namespace of its own (root):
    /// Janus gathers no candidate on `lo`
    #[arg(long, conflicts_with = "server_url")]
    janus: bool,
    /// The Janus binary
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/janus")]
    janus_binary: PathBuf,
    /// Janus's `event_loops`: threads that carry all its sessions' media (0: Janus's own
    /// default, a thread per handle)
    #[arg(long, default_value_t = 1)]
    janus_event_loops: usize,
    /// Before each run, wait (at most --quiet-wait-secs) until other work on the machine
    /// uses less than this % of one core: on a shared machine, other jobs' load lands in
    /// the figures (0: do not wait)
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    wait_quiet: f64,
    #[arg(long, default_value_t = 120)]
    quiet_wait_secs: u64,
    /// Run a system again, up to this many times, when other processes used more than 10 %
    /// of a core during its window (the rerun is printed; the last attempt is kept)
    #[arg(long, default_value_t = 0)]
    retry_noisy: usize,
    /// Write every run's figures as JSON to this file
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Exit 1 unless every run joined everyone and lost, misrouted and mislabelled nothing
    /// (for CI; it checks no timing)
    #[arg(long)]
    check: bool,
    /// Offer more than the server carries. A join refused as at capacity (-13001) is always
    /// tried again a second later, for up to 30 s (and counted); with --overload one still
    /// refused then ends its room's joins instead of failing the run, loss, latency and CPU
    /// are those of the members admitted, and a saturated run does not end the series. With
    /// --check, the admitted members must lose nothing
    #[arg(long)]
    overload: bool,
    /// Video rooms: every member also has a camera sending VP8-sized packets (30 frames/s
    /// of two ~1 KB packets, a keyframe every 2 s and when asked), and each gets the video
    /// of the first two other members, the server's default (the floor forwards video the
    /// same way). Janus runs audio rooms only
    #[arg(long, conflicts_with = "janus")]
    video: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.janus && !netns::inside() {
        return netns::reexec().unwrap_or_else(|e| {
            eprintln!("voipchat-bench: {e}");
            ExitCode::from(2)
        });
    }
    match bench(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("voipchat-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("voipchat")))
        .unwrap_or_else(|| PathBuf::from("target/release/voipchat"))
}

/// The server of one R: a fresh one started by us (so RSS starts from an idle server), or
/// the one given by URL.
enum Server {
    Spawned(Spawned),
    External(Target),
}

impl Server {
    fn target(&self) -> &Target {
        match self {
            Server::Spawned(s) => &s.target,
            Server::External(t) => t,
        }
    }
}

fn external_target(cli: &Cli, url: &str) -> Result<Target, BenchError> {
    let hostport = url
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let http: SocketAddr = hostport.parse().map_err(|e| {
        BenchError::new(format!("--server-url {url}: expected http://IP:PORT ({e})"))
    })?;
    Ok(Target {
        http,
        app_id: cli.app_id.clone().unwrap_or_default(),
        app_secret: cli.app_secret.clone().unwrap_or_default(),
        pid: cli.server_pid,
    })
}

/// Runs one system, again (up to `--retry-noisy` times) while other work on the machine
/// took more than `OTHER_LOAD_WARN_PCT` of a core during its window; each rerun is said.
fn with_retries(
    cli: &Cli,
    mut run: impl FnMut(usize) -> Result<Summary, BenchError>,
) -> Result<Summary, BenchError> {
    let mut attempt = 0;
    loop {
        let s = run(attempt)?;
        if s.other_cpu_pct <= report::OTHER_LOAD_WARN_PCT || attempt >= cli.retry_noisy {
            return Ok(s);
        }
        attempt += 1;
        println!(
            "  ({} at {} rooms: other processes used {:.0} % of a core during the window; \
             run again, {attempt} of {})",
            s.system, s.rooms, s.other_cpu_pct, cli.retry_noisy
        );
    }
}

/// With `--wait-quiet`, waits for the machine to calm down before a run, and says so.
fn quiet(cli: &Cli, system: &str, rooms: usize) -> Result<(), BenchError> {
    if cli.wait_quiet <= 0.0 {
        return Ok(());
    }
    let limit = std::time::Duration::from_secs(cli.quiet_wait_secs);
    let (pct, ok) = sys::wait_quiet(cli.wait_quiet, limit)
        .map_err(|e| BenchError::new(format!("reading /proc/stat: {e}")))?;
    if !ok {
        println!(
            "  ({system} at {rooms} rooms: the machine stayed busy ({pct:.0} % of a core) for \
             {} s; running anyway)",
            limit.as_secs()
        );
    }
    Ok(())
}

/// Runs the series; Ok(false) when `--check` found a problem.
fn bench(cli: &Cli) -> Result<bool, BenchError> {
    if cli.members < 2 {
        return Err(BenchError::new("--members must be at least 2"));
    }
    if cli.rooms.is_empty() || cli.rooms.contains(&0) {
        return Err(BenchError::new("--rooms takes room counts of at least 1"));
    }
    if !(cli.seconds > 0.0 && cli.seconds <= 600.0 && (0.0..=60.0).contains(&cli.warmup)) {
        return Err(BenchError::new(
            "--seconds must be in (0, 600], --warmup in [0, 60]",
        ));
    }
    if cli.nice != 0 {
        // Before any thread or child exists, so that all of them inherit it.
        sys::set_nice(cli.nice).map_err(|e| {
            BenchError::new(format!(
                "--nice {}: {e} (negative values need root)",
                cli.nice
            ))
        })?;
    }
    let pin = !cli.no_pin;
    if pin {
        // Inherited by every thread created from now on: media, signaling, stderr readers.
        sys::pin_current_thread(cli.gen_cpu).map_err(|e| {
            BenchError::new(format!(
                "pinning the generator to CPU {}: {e} (try --no-pin)",
                cli.gen_cpu
            ))
        })?;
    }
    let binary = cli.voipchat.clone().unwrap_or_else(default_binary);
    if cli.server_url.is_none() && !binary.is_file() {
        return Err(BenchError::new(format!(
            "the voipchat binary {} does not exist: build it (cargo build --release -p \
             voipchat-server) or give --voipchat PATH",
            binary.display()
        )));
    }
    println!(
        "voipchat-bench: {} members per {} room, {} s window after {} s warm-up, generator {} on CPU {}, \
         system under test on CPU {}, nice {}",
        cli.members,
        if cli.video { "video (camera on)" } else { "voice" },
        cli.seconds,
        cli.warmup,
        if cli.gen_threads == 1 { "1 thread".to_string() } else { format!("{} threads", cli.gen_threads) },
        if pin { cli.gen_cpu.to_string() } else { "any".into() },
        if pin {
            cli.server_cpu.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
        } else {
            "any".into()
        },
        cli.nice,
    );
    match &cli.server_url {
        Some(url) => println!("voipchat: {url} (given)"),
        None => println!(
            "voipchat: {}, {} media shard{}",
            binary.display(),
            cli.media_shards,
            if cli.media_shards == 1 { "" } else { "s" }
        ),
    }
    if cli.janus {
        if !cli.janus_binary.is_file() {
            return Err(BenchError::new(format!(
                "--janus: {} does not exist (apt-get install janus, or give --janus-binary)",
                cli.janus_binary.display()
            )));
        }
        println!(
            "janus: {}, VideoRoom, {}, in this bench's own network namespace \
             (candidates on {} {})",
            cli.janus_binary.display(),
            match cli.janus_event_loops {
                0 => "a thread per handle".to_string(),
                1 => "one event loop".to_string(),
                n => format!("{n} event loops"),
            },
            netns::IFACE,
            netns::IP
        );
    }
    println!("{}", report::header());
    // Janus is not run again at a larger load once it saturated.
    let mut janus_saturated: Option<String> = None;
    let mut all: Vec<Summary> = Vec::new();
    let mut clean = true;
    let mut stopped = None;
    for (i, &rooms) in cli.rooms.iter().enumerate() {
        let cfg = RunConfig {
            rooms,
            members: cli.members,
            seconds: cli.seconds,
            warmup: cli.warmup,
            gen_threads: cli.gen_threads,
            // In video rooms every packet carries a transport-wide sequence number, and
            // the receivers' feedback on them drives the server's bandwidth estimate: a
            // packet not given to str0m would read as lost there.
            decrypt_every: if cli.video {
                1
            } else {
                cli.decrypt_every.max(1)
            },
            system_cpu: pin.then(|| cli.server_cpu.first().copied().unwrap_or(0)),
            overload: cli.overload,
            video: cli.video,
        };
        let run_voipchat = |attempt: usize| -> Result<Summary, BenchError> {
            quiet(cli, "voipchat", rooms)?;
            let mut server = match &cli.server_url {
                Some(url) => Server::External(external_target(cli, url)?),
                None => Server::Spawned(Spawned::start(
                    &binary,
                    pin.then(|| cli.server_cpu.clone()),
                    cli.members.max(10),
                    cli.media_shards,
                )?),
            };
            let prefix = format!("bench-{}-{i}-{attempt}", std::process::id());
            let mut out = run::run_voipchat(&cfg, server.target(), &prefix)?;
            if let Server::Spawned(s) = &mut server {
                s.check_alive()?;
            }
            drop(server);
            Ok(report::summarize(&mut out))
        };
        let run_floor = |_: usize| -> Result<Summary, BenchError> {
            quiet(cli, "floor", rooms)?;
            let mut out = run::run_floor(&cfg)?;
            Ok(report::summarize(&mut out))
        };
        let run_janus = |_: usize| -> Result<Summary, BenchError> {
            quiet(cli, "janus", rooms)?;
            let mut janus = janus::Janus::start(
                &cli.janus_binary,
                netns::IFACE,
                netns::IP,
                cli.janus_event_loops,
                pin.then(|| cli.server_cpu.clone()),
            )?;
            let mut out = run::run_janus(&cfg, &janus)?;
            janus.check_alive()?;
            drop(janus);
            Ok(report::summarize(&mut out))
        };
        let v = with_retries(cli, run_voipchat)?;
        let f = if cli.no_floor {
            None
        } else {
            Some(with_retries(cli, run_floor)?)
        };
        let j = if cli.janus && janus_saturated.is_none() {
            Some(with_retries(cli, run_janus)?)
        } else {
            None
        };
        let vs_floor = |s: &Summary| f.as_ref().and_then(|f| report::ratio(s, f));
        let vs_janus = j.as_ref().and_then(|j| report::ratio(&v, j));
        println!("{}", report::row(&v, vs_floor(&v), vs_janus));
        if let Some(f) = &f {
            println!("{}", report::row(f, None, None));
        }
        if let Some(j) = &j {
            println!("{}", report::row(j, vs_floor(j), None));
        }
        for s in [Some(&v), f.as_ref()].into_iter().flatten() {
            if let Some(line) = report::video_line(s) {
                println!("{line}");
            }
        }
        if let (true, Some(why)) = (cli.janus, &janus_saturated) {
            println!("  janus: not run ({why} at a smaller load)");
        }
        let busy = [Some(&v), f.as_ref(), j.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| s.other_cpu_pct)
            .fold(0.0, f64::max);
        if busy > report::OTHER_LOAD_WARN_PCT {
            println!(
                "  warning: other processes used up to {busy:.0} % of a core during these runs; \
                 CPU and latency figures of this row are not clean"
            );
        }
        if v.join_failures.is_empty() && (v.header_only > 0 || v.sample_mismatches > 0) {
            println!(
                "  voipchat: {} packets decrypted, {} accounted from the clear RTP header \
                 (--decrypt-every {}), {} samples contradicted the accounting",
                v.decrypted, v.header_only, cfg.decrypt_every, v.sample_mismatches
            );
        }
        if let Some([answer, connect, audio]) = v.join_phases_ms_p50 {
            println!(
                "  voipchat: join phases, p50 of each: {answer:.1} ms to the joinResult, \
                 {connect:.1} ms more to ICE and DTLS up, {audio:.1} ms more to the first remote packet"
            );
        }
        if cli.overload || v.refusals > 0 {
            println!(
                "  voipchat: {} of {} members admitted; {} joins refused as at capacity (-13001), \
                 retried after {} s for {} s; {} rooms stopped joining at a member still refused{}",
                v.admitted,
                v.rooms * v.members_per_room,
                v.refusals,
                signaling::RETRY_AFTER.as_secs(),
                signaling::RETRY_FOR.as_secs(),
                v.refused.len(),
                v.refused
                    .first()
                    .map(|r| format!(", the first: {r}"))
                    .unwrap_or_default()
            );
        }
        for s in [Some(&v), f.as_ref(), j.as_ref()].into_iter().flatten() {
            for e in s.join_failures.iter().chain(&s.late_errors).take(5) {
                println!("  {}: {e}", s.system);
            }
            clean &= s.is_clean();
        }
        // Failing at the smallest load is the server's (or the setup's) failure, not a
        // capacity figure.
        if i == 0 {
            for s in [Some(&v), j.as_ref()].into_iter().flatten() {
                if let Some(first) = s.join_failures.first().or(s.late_errors.first()) {
                    return Err(BenchError::new(format!(
                        "{} failed at the smallest load ({rooms} rooms): {first}",
                        s.system
                    )));
                }
            }
        }
        // Janus saturating ends its part of the series, not voipchat's.
        if let Some(j) = j.as_ref().filter(|j| j.system_saturated()) {
            let why = report::saturated(j);
            println!("  at {rooms} rooms: {why}");
            janus_saturated = Some(why);
        }
        let measured: Vec<&Summary> = [Some(&v), f.as_ref()]
            .into_iter()
            .flatten()
            .chain(j.as_ref().filter(|j| !j.system_saturated()))
            .collect();
        let why = report::saturation(&measured, cli.gen_threads);
        // An overload run is meant to saturate the server: said, and the series goes on.
        let why = match why {
            Some(why) if cli.overload => {
                println!("  at {rooms} rooms: {why}");
                None
            }
            why => why,
        };
        all.push(v);
        all.extend(f);
        all.extend(j);
        if let Some(why) = why {
            if i + 1 < cli.rooms.len() {
                println!("stopped after {rooms} rooms: {why}");
            } else {
                println!("at {rooms} rooms: {why}");
            }
            stopped = Some(why);
            break;
        }
    }
    println!(
        "columns: fwd pkt/s = copies received per second; loss = expected copies not received; \
         misr = misrouted + mislabelled; µs/pkt = CPU of the system under test per received \
         copy; CPU % of one core; p50/p99/max = hop latency sender→receiver; join = ms from \
         join to first remote audio; KiB/mbr = server RSS growth per member; gen % = \
         generator CPU; lag = generator send lag p99; other % = CPU of other processes; ÷floor, ÷janus = µs/pkt over the floor's, \
         Janus's (a Janus member is a publisher and a subscriber session; its join is from \
         the subscriber's join)"
    );
    if let Some(path) = &cli.json {
        let doc = serde_json::json!({ "runs": all, "stopped": stopped });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        std::fs::write(path, text)
            .map_err(|e| BenchError::new(format!("writing {}: {e}", path.display())))?;
    }
    if cli.check && !clean {
        eprintln!("voipchat-bench: --check: some run lost, misrouted or failed to deliver packets");
        return Ok(false);
    }
    Ok(true)
}
