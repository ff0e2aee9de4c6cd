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
    /// Starts it and waits until it accepts connections.
    pub fn start(dir: &Path, port: u16) -> Redis {
        let child = std::process::Command::new("redis-server")
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
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server starts");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            dir: dir.to_path_buf(),
            port,
        }
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
