//! What every generated payload carries, so that a receiver knows on its own who sent the
//! packet, which one of that sender's packets it is and when it left: a magic (one for
//! audio, one for video), the sender's id, its sequence number and the send time, then
//! filler up to an Opus-like size, or for video a VP8 payload descriptor first and a
//! VP8-like size (`--video`).

use std::sync::OnceLock;
use std::time::Instant;

const MAGIC: u32 = 0x5643_4231; // "VCB1"
const MAGIC_VIDEO: u32 = 0x5643_5631; // "VCV1"
/// Bytes of the stamp at the start of a payload.
pub const STAMP_LEN: usize = 20;
/// Shortest and longest payload, as 20 ms Opus voice frames are.
pub const MIN_LEN: usize = 80;
pub const MAX_LEN: usize = 120;
/// Shortest and longest video payload: a 500 kbit/s VP8 camera at 30 frames/s sends about
/// two packets of this size per frame.
pub const VIDEO_MIN_LEN: usize = 1000;
pub const VIDEO_MAX_LEN: usize = 1100;
/// The VP8 payload descriptor (RFC 7741) and the frame header's first byte before a video
/// stamp.
const VP8_HEADER_LEN: usize = 2;

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
    /// Counted per sender and kind: a sender's audio and video are two sequences.
    pub seq: u32,
    pub send_ns: u64,
    pub video: bool,
}

/// The payload length of a sender's packet `seq`: spread over 80..=120 bytes.
pub fn len_for(seq: u32) -> usize {
    MIN_LEN + (seq as usize).wrapping_mul(7919) % (MAX_LEN - MIN_LEN + 1)
}

/// Writes an audio stamp and filler into `buf` (at least [`MAX_LEN`] bytes); returns the
/// length.
pub fn encode(stamp: Stamp, buf: &mut [u8]) -> usize {
    let len = len_for(stamp.seq);
    write_stamp(MAGIC, stamp, &mut buf[..len]);
    len
}

/// Writes a video packet's payload into `buf` (at least [`VIDEO_MAX_LEN`] bytes): a VP8
/// payload descriptor (S set on the first packet of a frame, as the server reads it to find
/// keyframes), the frame header's first byte (bit 0 clear: a keyframe), the stamp, filler.
pub fn encode_video(stamp: Stamp, frame_start: bool, keyframe: bool, buf: &mut [u8]) -> usize {
    let len = VIDEO_MIN_LEN
        + (stamp.seq as usize).wrapping_mul(7919) % (VIDEO_MAX_LEN - VIDEO_MIN_LEN + 1);
    buf[0] = if frame_start { 0x10 } else { 0x00 };
    buf[1] = if keyframe { 0x90 } else { 0x91 };
    write_stamp(MAGIC_VIDEO, stamp, &mut buf[VP8_HEADER_LEN..len]);
    len
}

fn write_stamp(magic: u32, stamp: Stamp, buf: &mut [u8]) {
    buf[0..4].copy_from_slice(&magic.to_le_bytes());
    buf[4..8].copy_from_slice(&stamp.sender.to_le_bytes());
    buf[8..12].copy_from_slice(&stamp.seq.to_le_bytes());
    buf[12..20].copy_from_slice(&stamp.send_ns.to_le_bytes());
    buf[STAMP_LEN..].fill(0xA5);
}

/// The stamp of an audio or video payload, or None for anything this bench did not write.
pub fn decode(payload: &[u8]) -> Option<Stamp> {
    read_stamp(payload, MAGIC, false)
        .or_else(|| read_stamp(payload.get(VP8_HEADER_LEN..)?, MAGIC_VIDEO, true))
}

fn read_stamp(payload: &[u8], magic: u32, video: bool) -> Option<Stamp> {
    if payload.len() < STAMP_LEN {
        return None;
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]]);
    if u32_at(0) != magic {
        return None;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&payload[12..20]);
    Some(Stamp {
        sender: u32_at(4),
        seq: u32_at(8),
        send_ns: u64::from_le_bytes(t),
        video,
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
                video: false,
            };
            let n = encode(s, &mut buf);
            assert!((MIN_LEN..=MAX_LEN).contains(&n));
            assert_eq!(decode(&buf[..n]), Some(s));
        }
        assert_eq!(decode(b"not a stamp, just some bytes"), None);
    }

    #[test]
    fn a_video_stamp_reads_back_behind_a_vp8_descriptor_that_marks_keyframes() {
        let mut buf = [0u8; VIDEO_MAX_LEN];
        let s = Stamp {
            sender: 7,
            seq: 3,
            send_ns: 99,
            video: true,
        };
        let n = encode_video(s, true, true, &mut buf);
        assert!((VIDEO_MIN_LEN..=VIDEO_MAX_LEN).contains(&n));
        assert_eq!(decode(&buf[..n]), Some(s));
        // S set, PID 0; the frame header's bit 0 clear: what the server takes for a keyframe.
        assert_eq!(buf[..2], [0x10, 0x90]);
        encode_video(s, false, false, &mut buf);
        assert_eq!(buf[..2], [0x00, 0x91]);
    }
}
