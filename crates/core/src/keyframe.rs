//! Where a receiver may start: the first RTP packet of a keyframe, read from the payload
//! without depacketizing. A receiver that starts a video stream (join, subscription change,
//! layer switch) is given packets only from such a packet on, so it never decodes a broken
//! frame.

use crate::vp8::Descriptor;

/// Video codecs the server forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

/// True if `payload` (an RTP payload of `codec`) begins a keyframe. Never panics on short
/// or hostile input: anything unreadable is "not a keyframe start".
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::H264 => h264_starts_keyframe(payload),
    }
}

/// RFC 7741: the payload descriptor (`vp8::Descriptor`), then (at the start of partition 0)
/// the VP8 frame header, whose lowest bit is 0 for a key frame.
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    Descriptor::parse(p).is_some_and(|d| d.starts_keyframe(p))
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// RFC 6184: a keyframe starts with an SPS or an IDR slice, alone, inside a STAP-A, or as
/// the first fragment of an FU-A.
fn h264_starts_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else {
        return false;
    };
    let is_key = |t: u8| t == NAL_IDR || t == NAL_SPS;
    match b0 & 0x1f {
        NAL_STAP_A => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(p[i]) << 8 | usize::from(p[i + 1]);
                if is_key(p[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        NAL_FU_A => p.get(1).is_some_and(|h| h & 0x80 != 0 && is_key(h & 0x1f)),
        t => is_key(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_key_and_delta_frames() {
        // S=1, PID=0, no extension; frame header P=0 (key) / P=1 (delta).
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x90, 0x01, 0x00]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x10, 0x91, 0x01, 0x00]));
        // Not the start of the frame.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x90]));
        // Extended: I with a 15-bit PictureID, L, T/K: header after 5 descriptor bytes.
        let key = [0x90, 0xF0, 0x81, 0x23, 0x07, 0x20, 0x50];
        assert!(starts_keyframe(VideoCodec::Vp8, &key));
        let delta = [0x90, 0xF0, 0x81, 0x23, 0x07, 0x20, 0x51];
        assert!(!starts_keyframe(VideoCodec::Vp8, &delta));
    }

    #[test]
    fn h264_idr_sps_stap_and_fu() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a]));
        // STAP-A with an SPS (size 2) inside.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42]
        ));
        assert!(!starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x41, 0x42]
        ));
        // FU-A: start of an IDR, middle of an IDR.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn hostile_payloads_are_never_keyframes_and_never_panic() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..64 {
            for _ in 0..200 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                let _ = starts_keyframe(VideoCodec::Vp8, &v);
                let _ = starts_keyframe(VideoCodec::H264, &v);
            }
        }
        assert!(!starts_keyframe(VideoCodec::Vp8, &[]));
        assert!(!starts_keyframe(VideoCodec::H264, &[]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x78, 0x00]));
    }
}
