//! The few Linux calls the bench needs, wrapped once: CPU pinning, epoll over many UDP
//! sockets, an eventfd to wake a media thread, and CPU time and RSS from /proc.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Pins the calling thread (and the threads it creates later) to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    pin(0, cpu)
}

/// Pins thread or process `pid` (0: the caller) to one CPU.
pub fn pin(pid: libc::pid_t, cpu: usize) -> io::Result<()> {
    pin_set(pid, &[cpu])
}

/// Pins a thread (0: the calling one) to a set of CPUs.
pub fn pin_set(pid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET only writes inside it (cpu is checked).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cpu index too large",
                ));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets the nice value of the calling thread (inherited by the threads and processes it
/// creates afterwards). A negative value keeps other work on the machine from taking the
/// cores of the measured processes; it needs root or CAP_SYS_NICE.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain syscall on the calling thread (Linux: PRIO_PROCESS with 0 is the thread).
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's id of the calling thread, to find it under /proc/self/task.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// CPU time (user + system) of a process or thread from a /proc `stat` file: fields 14 and 15,
/// counted after the `)` that ends the command name (which may contain spaces).
pub fn cpu_time(stat_path: &str) -> io::Result<Duration> {
    let text = std::fs::read_to_string(stat_path)?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other(format!("{stat_path}: no ')' in stat")))?;
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{stat_path}: bad field {}", i + 3)))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_micros(total * 1_000_000 / clock_ticks()))
}

/// CPU time of process `pid`, all its threads.
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    cpu_time(&format!("/proc/{pid}/stat"))
}

/// CPU time of one thread of this process.
pub fn thread_cpu(tid: libc::pid_t) -> io::Result<Duration> {
    cpu_time(&format!("/proc/self/task/{tid}/stat"))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Busy CPU time of the whole machine, all CPUs (/proc/stat: everything but idle and
/// iowait). What is left after the server and the generator is someone else's load, which
/// the report shows so that a noisy run is visible as one.
pub fn machine_busy() -> io::Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| io::Error::other("/proc/stat has no cpu line"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user already).
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    Ok(Duration::from_micros(busy * 1_000_000 / clock_ticks()))
}

/// Waits until the machine is quiet: less than `max_pct` % of one core busy over a second
/// (this process included, which idles between runs), for at most `limit`. Returns the
/// last busy share seen, and whether it got under the bar.
pub fn wait_quiet(max_pct: f64, limit: Duration) -> io::Result<(f64, bool)> {
    let start = std::time::Instant::now();
    loop {
        let a = machine_busy()?;
        std::thread::sleep(Duration::from_secs(1));
        let b = machine_busy()?;
        let pct = 100.0 * b.saturating_sub(a).as_secs_f64();
        if pct < max_pct {
            return Ok((pct, true));
        }
        if start.elapsed() >= limit {
            return Ok((pct, false));
        }
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status has no VmRSS")))
}

/// An epoll instance: the media thread waits on all its sockets at once, so it wakes only
/// for a datagram, a signaling message or its next deadline.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    /// Watches `fd` for reading; `token` comes back from `wait`.
    pub fn add(&self, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev outlives the call; fd is a valid descriptor owned by the caller.
        let r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds; a [`TimerFd`] gives finer
    /// deadlines) and returns the ready tokens.
    pub fn wait(&mut self, timeout: Duration, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        let ms = timeout.as_micros().div_ceil(1000).min(1000) as i32;
        // SAFETY: the buffer holds `len` events and lives across the call.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        ready.extend(self.events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// An eventfd: the signaling thread writes it after queueing a message for a media thread.
pub struct EventFd {
    fd: RawFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd { fd })
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter only means "already woken".
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter after a wake-up.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (not woken) is fine.
        unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// A one-shot timer as a file descriptor: epoll's own timeout has millisecond steps, which
/// would make every send up to 2 ms late; this one wakes within microseconds.
pub struct TimerFd {
    fd: RawFd,
}

impl TimerFd {
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TimerFd { fd })
    }

    /// Fires once, `after` from now (at least 1 µs: zero would disarm it).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: spec lives across the call; a null old value is allowed.
        let r = unsafe { libc::timerfd_settime(self.fd, 0, &spec, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expiry so that epoll stops reporting it.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (not expired) is fine.
        unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for TimerFd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}
