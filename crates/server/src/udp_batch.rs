//! The media task's datagrams go out in batches, one `sendmmsg(2)` for up to [`MAX_BATCH`]
//! of them instead of one `sendto` each: a forwarded packet becomes up to nine copies, all
//! ready in the same drain of the engine, and each system call costs its entry and exit
//! whatever it carries. Order is kept; a datagram the kernel refuses is reported and
//! skipped, the rest still go.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call at most.
pub const MAX_BATCH: usize = 32;

/// Datagrams waiting to be sent, in order.
#[derive(Default)]
pub struct SendBatch {
    items: Vec<(SocketAddr, Vec<u8>)>,
}

impl SendBatch {
    pub fn push(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.items.push((to, bytes));
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= MAX_BATCH
    }

    /// Sends everything queued, waiting while the socket's buffer is full; `done` hears of
    /// each datagram: its destination, its length and whether the kernel took it.
    pub async fn send(
        &mut self,
        socket: &UdpSocket,
        mut done: impl FnMut(SocketAddr, usize, io::Result<()>),
    ) {
        let mut start = 0;
        while start < self.items.len() {
            let rest = &self.items[start..];
            match socket.try_io(Interest::WRITABLE, || send_mmsg(socket, rest)) {
                Ok(n) => {
                    for (to, bytes) in &rest[..n] {
                        done(*to, bytes.len(), Ok(()));
                    }
                    start += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                // The first datagram of the rest was refused (a bad address, a gone route):
                // it is dropped, the others are tried again.
                Err(e) => {
                    let (to, bytes) = &rest[0];
                    done(*to, bytes.len(), Err(e));
                    start += 1;
                }
            }
        }
        self.items.clear();
    }
}

/// One `sendmmsg` of `items` (at most [`MAX_BATCH`]); how many the kernel took (at least one).
fn send_mmsg(socket: &UdpSocket, items: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
    let items = &items[..items.len().min(MAX_BATCH)];
    let mut addrs: [libc::sockaddr_storage; MAX_BATCH] =
        // SAFETY: sockaddr_storage is plain old data; all zeros is a valid (empty) value.
        unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; MAX_BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    // SAFETY: mmsghdr is plain old data; all zeros is a valid value (null pointers, lengths
    // 0), and every field used is set below.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for (i, (to, bytes)) in items.iter().enumerate() {
        let len = write_sockaddr(&mut addrs[i], to);
        // The kernel only reads the buffer (sendmmsg); the cast to *mut is what iovec wants.
        iovs[i] = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = len;
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..items.len()]` point at `addrs` and `iovs` entries that live until the
    // call returns, each iovec at a buffer of `items` of the length given; the fd is the
    // socket's own, open while `socket` is borrowed.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            items.len() as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((n as usize).max(1).min(items.len()))
    }
}

/// Writes `addr` as a C socket address; its length.
fn write_sockaddr(out: &mut libc::sockaddr_storage, addr: &SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real sockets on loopback: every datagram of a batch larger than one system call
    /// arrives, in order, at its own destination, and a refused one does not stop the rest.
    #[tokio::test]
    async fn a_batch_reaches_every_destination_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
        }
        let (to_a, to_b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        // An IPv6 destination from an IPv4 socket: refused by the kernel.
        let bad: SocketAddr = "[::1]:9".parse().expect("literal");
        let mut batch = SendBatch::default();
        for i in 0..(MAX_BATCH as u8 + 8) {
            batch.push(
                if i % 2 == 0 { to_a } else { to_b },
                vec![i; 10 + usize::from(i)],
            );
            if i == 5 {
                batch.push(bad, vec![0xEE; 4]);
            }
        }
        let mut results = Vec::new();
        batch
            .send(&sender, |to, len, r| results.push((to, len, r.is_ok())))
            .await;
        assert_eq!(results.len(), MAX_BATCH + 9);
        assert_eq!(results.iter().filter(|r| !r.2).count(), 1);
        assert!(results.iter().any(|r| r.0 == bad && !r.2));
        let mut buf = [0u8; 128];
        for i in 0..(MAX_BATCH as u8 + 8) {
            let s = if i % 2 == 0 { &a } else { &b };
            let n = s.recv(&mut buf).expect("datagram arrives");
            assert_eq!(&buf[..n], &vec![i; 10 + usize::from(i)][..], "datagram {i}");
        }
    }
}
