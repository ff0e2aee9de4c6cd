//! What every generated audio payload carries, so that a receiver knows on its own who sent
//! the packet, which one of that sender's packets it is and when it left: a magic, the
//! sender's id, its sequence number and the send time, then filler up to an Opus-like size.

use std::sync::OnceLock;
use std::time::Instant;

const MAGIC: u32 = 0x5643_4231; // "VCB1"
/// Bytes of the stamp at the start of a payload.
pub const STAMP_LEN: usize = 20;
/// Shortest and longest payload, as 20 ms Opus voice frames are.
pub const MIN_LEN: usize = 80;
pub const MAX_LEN: usize = 120;

/// The process's time origin: send and receive times are nanoseconds since it, so that any
/// generator thread can read any other's stamp (CLOCK_MONOTONIC is one clock for all).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn ns(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// The stamp of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sender: u32,
    pub seq: u32,
    pub send_ns: u64,
}

/// The payload length of a sender's packet `seq`: spread over 80..=120 bytes.
pub fn len_for(seq: u32) -> usize {
    MIN_LEN + (seq as usize).wrapping_mul(7919) % (MAX_LEN - MIN_LEN + 1)
}

/// Writes the stamp and filler into `buf` (at least [`MAX_LEN`] bytes); returns the length.
pub fn encode(stamp: Stamp, buf: &mut [u8]) -> usize {
    let len = len_for(stamp.seq);
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&stamp.sender.to_le_bytes());
    buf[8..12].copy_from_slice(&stamp.seq.to_le_bytes());
    buf[12..20].copy_from_slice(&stamp.send_ns.to_le_bytes());
    buf[STAMP_LEN..len].fill(0xA5);
    len
}

/// The stamp of a payload, or None for anything this bench did not write.
pub fn decode(payload: &[u8]) -> Option<Stamp> {
    if payload.len() < STAMP_LEN {
        return None;
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]]);
    if u32_at(0) != MAGIC {
        return None;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&payload[12..20]);
    Some(Stamp {
        sender: u32_at(4),
        seq: u32_at(8),
        send_ns: u64::from_le_bytes(t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_sizes_stay_opus_like() {
        let mut buf = [0u8; MAX_LEN];
        for seq in 0..200 {
            let s = Stamp {
                sender: 42,
                seq,
                send_ns: 123_456_789_000 + u64::from(seq),
            };
            let n = encode(s, &mut buf);
            assert!((MIN_LEN..=MAX_LEN).contains(&n));
            assert_eq!(decode(&buf[..n]), Some(s));
        }
        assert_eq!(decode(b"not a stamp, just some bytes"), None);
    }
}
