//! A private redis-server for a test: on a given port of 127.0.0.1, with an append-only
//! file (fsync on every write) in the test's directory, so its data survives a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Redis {
    child: std::process::Child,
    pub dir: PathBuf,
    pub port: u16,
}

impl Redis {
    /// Starts it on a free port of its own. A port found free can be taken by another
    /// test's server before this one binds it (then this one exits and the other answers):
    /// the answering server's process id tells, and another port is tried.
    pub fn start_free(dir: &Path) -> Redis {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(redis) = Redis::try_start(dir, port) {
                return redis;
            }
        }
        panic!("redis-server found no free port in 5 tries");
    }

    /// Starts it on `port` and waits until it accepts connections.
    pub fn start(dir: &Path, port: u16) -> Redis {
        Redis::try_start(dir, port)
            .unwrap_or_else(|| panic!("redis-server could not take port {port}"))
    }

    /// None when the server that answers on `port` is not the one started here.
    fn try_start(dir: &Path, port: u16) -> Option<Redis> {
        let mut child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--dir", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            if let Some(pid) = answering_pid(port) {
                if pid == child.id() {
                    break;
                }
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            assert!(Instant::now() < deadline, "redis-server starts");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis {
            child,
            dir: dir.to_path_buf(),
            port,
        })
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it and starts it again on the same port and files.
    pub fn restart(&mut self) {
        self.stop();
        *self = Redis::start(&self.dir.clone(), self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The process id of the Redis server answering on `port` (INFO server), if one answers.
fn answering_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    tcp.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(11).any(|w| w == b"process_id:") || !got.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let line = text.lines().find(|l| l.starts_with("process_id:"))?;
    line["process_id:".len()..].trim().parse().ok()
}
