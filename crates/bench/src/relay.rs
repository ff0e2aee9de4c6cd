//! The floor: a crypto-free UDP relay, the least any SFU must do per packet on this machine.
//! One socket, one thread pinned where the server would run; a member registers with one
//! hello datagram, and each RTP packet is sent to the other members of its room after one
//! hash lookup (source address → room and position) and a header rewrite (the receiver's
//! slot SSRC and sequence number, as an SFU keeps one continuous stream per slot). Video
//! (`--video`, told apart by its payload type) goes only to the members that get it by
//! default (`peer::receives_video`), as voipchat's video does.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::peer::{receives_video, HELLO, PLAIN_PT_VIDEO, WELCOME};
use crate::BenchError;

/// A receiver's view of the senders of its room: one outgoing stream per sender.
struct Slot {
    addr: SocketAddr,
    ssrc_base: u32,
    seq: Vec<u16>,
    video_seq: Vec<u16>,
}

/// A running relay. Dropping it stops the thread.
pub struct Relay {
    pub addr: SocketAddr,
    /// The relay thread's kernel id, for its CPU time (0 until it runs).
    pub tid: Arc<AtomicI32>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Relay {
    /// Binds 127.0.0.1:0 and starts the relay thread, pinned to `cpu`.
    pub fn start(cpu: Option<usize>, members_per_room: usize) -> Result<Relay, BenchError> {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .map_err(|e| BenchError::new(format!("binding the relay socket: {e}")))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| BenchError::new(format!("relay socket timeout: {e}")))?;
        let addr = socket
            .local_addr()
            .map_err(|e| BenchError::new(format!("relay address: {e}")))?;
        let tid = Arc::new(AtomicI32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tid.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("floor-relay".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = crate::sys::pin_current_thread(cpu) {
                        eprintln!("voipchat-bench: pinning the relay to CPU {cpu}: {e}");
                    }
                }
                t.store(crate::sys::gettid(), Ordering::Relaxed);
                serve(&socket, members_per_room, &s)
            })
            .map_err(|e| BenchError::new(format!("starting the relay thread: {e}")))?;
        Ok(Relay {
            addr,
            tid,
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the relay; returns how many copies it sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(socket: &UdpSocket, members_per_room: usize, stop: &AtomicBool) -> u64 {
    let mut by_addr: HashMap<SocketAddr, (usize, usize)> = HashMap::new();
    let mut rooms: Vec<Vec<Option<Slot>>> = Vec::new();
    let mut buf = [0u8; 2048];
    let mut forwarded = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (n, source) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => continue,
        };
        if n == 12 && &buf[..4] == HELLO {
            let room = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
            let pos = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
            if pos < members_per_room && room < 1 << 16 {
                if rooms.len() <= room {
                    rooms.resize_with(room + 1, || (0..members_per_room).map(|_| None).collect());
                }
                rooms[room][pos] = Some(Slot {
                    addr: source,
                    ssrc_base: rand::random::<u32>() & !0xff,
                    seq: (0..members_per_room).map(|_| rand::random()).collect(),
                    video_seq: (0..members_per_room).map(|_| rand::random()).collect(),
                });
                by_addr.insert(source, (room, pos));
                let _ = socket.send_to(WELCOME, source);
            }
            continue;
        }
        if n < 12 || buf[0] >> 6 != 2 {
            continue;
        }
        let Some(&(room, pos)) = by_addr.get(&source) else {
            continue;
        };
        let video = buf[1] & 0x7f == PLAIN_PT_VIDEO;
        for (r, slot) in rooms[room].iter_mut().enumerate() {
            let Some(slot) = slot.as_mut().filter(|_| r != pos) else {
                continue;
            };
            let (seqs, ssrc) = if video {
                if !receives_video(r as u32, pos as u32) {
                    continue;
                }
                (&mut slot.video_seq, slot.ssrc_base | 0x80 | pos as u32)
            } else {
                (&mut slot.seq, slot.ssrc_base | pos as u32)
            };
            let seq = seqs[pos];
            seqs[pos] = seq.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
            if socket.send_to(&buf[..n], slot.addr).is_ok() {
                forwarded += 1;
            }
        }
    }
    forwarded
}
