//! The voipchat server under test: started by the bench (a fresh data dir, an app with VoIP
//! enabled, pinned to its own CPU) or given by URL with the app's credentials.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::BenchError;

/// What the generator needs to reach a server.
#[derive(Clone, Debug)]
pub struct Target {
    /// Host and port of the HTTP listener (backend API and /ws).
    pub http: SocketAddr,
    pub app_id: String,
    pub app_secret: String,
    /// The server process, for CPU and RSS; None for a server given by URL without --server-pid.
    pub pid: Option<u32>,
}

/// A server this bench started. Dropping it kills the process and removes its data dir, on
/// every path out of a run (errors and panics included).
pub struct Spawned {
    child: Child,
    data_dir: PathBuf,
    pub target: Target,
    /// The last lines of the server's stderr, for error messages.
    log_tail: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Spawned {
    /// Starts `voipchat serve` on 127.0.0.1 (ports chosen by the kernel) pinned to `cpus`,
    /// with `media_shards` shards, after creating an app and enabling VoIP in a fresh data
    /// dir.
    pub fn start(
        binary: &Path,
        cpus: Option<Vec<usize>>,
        room_cap: usize,
        media_shards: usize,
    ) -> Result<Spawned, BenchError> {
        if !binary.is_file() {
            return Err(BenchError::new(format!(
                "the voipchat binary {} does not exist: build it (cargo build --release -p \
                 voipchat-server) or give --voipchat PATH",
                binary.display()
            )));
        }
        let data_dir = std::env::temp_dir().join(format!(
            "voipchat-bench-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| BenchError::new(format!("creating {}: {e}", data_dir.display())))?;
        let cleanup = DirGuard(Some(data_dir.clone()));

        let created = run_cli(binary, &data_dir, &["app", "create", "--name", "bench"])?;
        let json: serde_json::Value = serde_json::from_str(created.trim()).map_err(|e| {
            BenchError::new(format!("`voipchat app create` printed {created:?}: {e}"))
        })?;
        let field = |k: &str| {
            json.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| BenchError::new(format!("`voipchat app create` gave no {k}")))
        };
        let (app_id, app_secret) = (field("appId")?, field("appSecret")?);
        run_cli(binary, &data_dir, &["app", "enable-voip", &app_id])?;

        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--media-addr", "127.0.0.1:0"])
            .args(["--no-demo", "--room-cap", &room_cap.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("VOIPCHAT_BENCH_RUST_LOG")
                    .unwrap_or_else(|_| "info,str0m=warn,dimpl=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Only when asked for: a server of before the shards takes no such flag.
        if media_shards != 1 {
            cmd.args(["--media-shards", &media_shards.to_string()]);
        }
        if let Some(cpus) = cpus {
            // SAFETY: sched_setaffinity is async-signal-safe; it runs in the child before exec,
            // so every thread the server creates inherits the mask.
            unsafe {
                cmd.pre_exec(move || crate::sys::pin_set(0, &cpus));
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| BenchError::new(format!("starting {}: {e}", binary.display())))?;
        let pid = child.id();
        let stderr = child.stderr.take();
        let log_tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        if let Some(stderr) = stderr {
            let tail = log_tail.clone();
            // VOIPCHAT_BENCH_SERVER_LOG=FILE: the server's whole log goes there too.
            let mut copy = std::env::var_os("VOIPCHAT_BENCH_SERVER_LOG")
                .and_then(|p| std::fs::File::create(p).ok());
            // Reads the whole log so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(f) = copy.as_mut() {
                        use std::io::Write;
                        let _ = writeln!(f, "{line}");
                    }
                    if !sent && line.contains("voipchat serving") {
                        if let Some(http) = log_field(&line, "http=") {
                            let _ = addr_tx.send(http);
                            sent = true;
                        }
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.push(line);
                        if t.len() > 20 {
                            t.remove(0);
                        }
                    }
                }
            });
        }
        let mut spawned = Spawned {
            child,
            data_dir: cleanup.take(),
            target: Target {
                http: "127.0.0.1:0".parse().expect("literal address"),
                app_id,
                app_secret,
                pid: Some(pid),
            },
            log_tail,
        };
        match addr_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(http) => {
                spawned.target.http = http.parse().map_err(|e| {
                    BenchError::new(format!(
                        "the server logged http={http}, not an address: {e}"
                    ))
                })?;
            }
            Err(_) => {
                return Err(BenchError::new(format!(
                    "the server did not log \"voipchat serving ... http=...\" within 15 s; its \
                     log ends with:\n{}",
                    spawned.log_tail()
                )))
            }
        }
        Ok(spawned)
    }

    /// The server's last log lines.
    pub fn log_tail(&self) -> String {
        self.log_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }

    /// An error if the server has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::new(format!(
                "the server exited ({status}); its log ends with:\n{}",
                self.log_tail()
            ))),
            Err(e) => Err(BenchError::new(format!("waiting for the server: {e}"))),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Removes a data dir unless handed on.
struct DirGuard(Option<PathBuf>);

impl DirGuard {
    fn take(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// `key=value` from a log line (tracing's plain format), the value up to the next space.
fn log_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let value: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    (!value.is_empty()).then_some(value)
}

/// Runs one `voipchat app ...` command and returns its stdout.
fn run_cli(binary: &Path, data_dir: &Path, args: &[&str]) -> Result<String, BenchError> {
    let out = Command::new(binary)
        .args(&args[..1])
        .arg("--data-dir")
        .arg(data_dir)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BenchError::new(format!("running {}: {e}", binary.display())))?;
    if !out.status.success() {
        return Err(BenchError::new(format!(
            "`voipchat {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_http_address_of_the_serving_line() {
        let line = "2026-12-02T03:00:00Z  INFO voipchat_server: voipchat serving \
                    http=127.0.0.1:40001 media=127.0.0.1:40002 announce=127.0.0.1";
        assert_eq!(
            super::log_field(line, "http=").as_deref(),
            Some("127.0.0.1:40001")
        );
    }
}
