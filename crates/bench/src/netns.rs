//! The bench's own network namespace, for runs with Janus: libnice gathers no candidate on
//! `lo`, so Janus gets a veth end holding 127.0.0.2 (TESTING notes of this machine). The
//! bench runs itself again inside a fresh namespace made by `unshare --net`, with the same
//! arguments; every system of the run (voipchat, the floor, Janus) and the generator are
//! then in it, on its loopback, and nothing leaves it.

use std::process::{Command, ExitCode};

use crate::BenchError;

/// Set in the bench run inside the namespace.
const ENV: &str = "VOIPCHAT_BENCH_NETNS";
/// The veth end Janus gathers on, and its address.
pub const IFACE: &str = "vjanus0";
pub const IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

/// Brings up the namespace's loopback and the veth pair, then becomes the bench again.
const SETUP: &str = "set -e
ip link set lo up
ip link add vjanus0 type veth peer name vjanus1
ip addr add 127.0.0.2/32 dev vjanus0
ip link set vjanus0 up
ip link set vjanus1 up
exec \"$0\" \"$@\"";

/// Whether this process is the bench inside the namespace that [`reexec`] made.
pub fn inside() -> bool {
    std::env::var_os(ENV).is_some()
}

/// Runs this bench again, with the same arguments, in a new network namespace; its exit
/// code. Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN).
pub fn reexec() -> Result<ExitCode, BenchError> {
    let exe = std::env::current_exe()
        .map_err(|e| BenchError::new(format!("finding this binary: {e}")))?;
    let status = Command::new("unshare")
        .args(["--net", "--", "/bin/sh", "-c", SETUP])
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .env(ENV, "1")
        .status()
        .map_err(|e| {
            BenchError::new(format!(
                "running unshare (util-linux) for the namespace Janus needs: {e}"
            ))
        })?;
    match status.code() {
        Some(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        None => Err(BenchError::new(format!(
            "the bench in its network namespace ended by a signal ({status})"
        ))),
    }
}
