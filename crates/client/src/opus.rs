//! What the client needs to know about Opus packets without decoding them: their duration
//! (RFC 6716 §3.1, the TOC byte) and a level estimate for the RFC 6464 header extension.

use std::time::Duration;

/// Opus always runs its RTP clock and its Ogg granule positions at 48 kHz.
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// The longest duration one Opus packet may hold (RFC 6716 §3.2.5): 120 ms.
pub const MAX_PACKET_SAMPLES: u32 = 5_760;

/// Why a byte string is not an Opus packet whose duration can be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpusPacketError {
    /// An Opus packet has at least its TOC byte (RFC 6716 §3.1, R1).
    #[error("empty opus packet")]
    Empty,
    /// Frame count code 3 needs the frame count byte after the TOC byte.
    #[error("code 3 opus packet without its frame count byte")]
    MissingFrameCount,
    /// Code 3 with a frame count of 0 (RFC 6716 §3.2.5, R5).
    #[error("code 3 opus packet with zero frames")]
    ZeroFrames,
    /// More than 120 ms of audio in one packet (RFC 6716 §3.2.5, R5).
    #[error("opus packet longer than 120 ms ({0} samples at 48 kHz)")]
    TooLong(u32),
}

/// Samples at 48 kHz of one frame of the given TOC configuration (RFC 6716 §3.1, Table 2).
pub fn frame_samples(config: u8) -> u32 {
    // 2.5, 5, 10, 20, 40 and 60 ms at 48 kHz.
    const SILK: [u32; 4] = [480, 960, 1_920, 2_880];
    const HYBRID: [u32; 2] = [480, 960];
    const CELT: [u32; 4] = [120, 240, 480, 960];
    let config = config & 0x1f;
    match config {
        // SILK-only: NB 0..=3, MB 4..=7, WB 8..=11; 10, 20, 40, 60 ms.
        0..=11 => SILK[usize::from(config % 4)],
        // Hybrid: SWB 12..=13, FB 14..=15; 10, 20 ms.
        12..=15 => HYBRID[usize::from(config % 2)],
        // CELT-only: NB, WB, SWB, FB; 2.5, 5, 10, 20 ms.
        _ => CELT[usize::from(config % 4)],
    }
}

/// Number of frames in the packet, from the frame count code (the low two TOC bits).
pub fn frame_count(packet: &[u8]) -> Result<u32, OpusPacketError> {
    let toc = *packet.first().ok_or(OpusPacketError::Empty)?;
    match toc & 0x03 {
        0 => Ok(1),
        // 1: two frames of equal size; 2: two frames of different sizes.
        1 | 2 => Ok(2),
        // 3: an arbitrary number of frames, M in the low six bits of the next byte.
        _ => {
            let m = u32::from(packet.get(1).ok_or(OpusPacketError::MissingFrameCount)? & 0x3f);
            if m == 0 {
                Err(OpusPacketError::ZeroFrames)
            } else {
                Ok(m)
            }
        }
    }
}

/// Duration of the packet in samples at 48 kHz, from its TOC byte (and frame count byte).
pub fn packet_samples(packet: &[u8]) -> Result<u32, OpusPacketError> {
    let toc = *packet.first().ok_or(OpusPacketError::Empty)?;
    let samples = frame_samples(toc >> 3) * frame_count(packet)?;
    if samples > MAX_PACKET_SAMPLES {
        return Err(OpusPacketError::TooLong(samples));
    }
    Ok(samples)
}

/// Duration of the packet, from its TOC byte (and frame count byte).
pub fn packet_duration(packet: &[u8]) -> Result<Duration, OpusPacketError> {
    packet_samples(packet).map(samples_to_duration)
}

/// Samples at 48 kHz as a duration (exact: every Opus frame is a whole number of µs).
pub fn samples_to_duration(samples: u32) -> Duration {
    Duration::from_micros(u64::from(samples) * 1_000_000 / u64::from(OPUS_CLOCK_RATE))
}

/// A duration as samples at 48 kHz, rounded down.
pub fn duration_to_samples(duration: Duration) -> u64 {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    micros.saturating_mul(u64::from(OPUS_CLOCK_RATE)) / 1_000_000
}

/// Largest packet, in bytes, that [`file_audio_level`] takes for silence.
pub const SILENCE_MAX_BYTES: usize = 10;

/// Level announced for a voiced packet read from a file, in -dBov: a normal talking level.
pub const FILE_VOICE_LEVEL: i8 = 30;

/// RFC 6464 level of silence, in -dBov (the quietest value).
pub const SILENCE_LEVEL: i8 = 127;

/// The audio level (RFC 6464: -dBov, 0 loudest, 127 silence) and voice activity flag to
/// announce for a packet played from a file, where no PCM is at hand to measure.
///
/// The heuristic: an encoder spends almost nothing on silence, so a packet of at most
/// [`SILENCE_MAX_BYTES`] bytes (digital silence, DTX, comfort noise) is `(127, false)` and any
/// larger packet is speech at a normal level, `(30, true)`. A speaker detector that
/// thresholds on the level or on the flag then sees a talker exactly while the file holds
/// sound.
pub fn file_audio_level(packet: &[u8]) -> (i8, bool) {
    if packet.len() <= SILENCE_MAX_BYTES {
        (SILENCE_LEVEL, false)
    } else {
        (FILE_VOICE_LEVEL, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toc(config: u8, stereo: bool, code: u8) -> u8 {
        (config << 3) | (u8::from(stereo) << 2) | code
    }

    #[test]
    fn frame_duration_table_matches_rfc_6716() {
        let ms = |config: u8| frame_samples(config) as f64 / 48.0;
        // SILK NB/MB/WB: 10, 20, 40, 60 ms.
        for base in [0u8, 4, 8] {
            assert_eq!(
                [ms(base), ms(base + 1), ms(base + 2), ms(base + 3)],
                [10.0, 20.0, 40.0, 60.0]
            );
        }
        // Hybrid SWB/FB: 10, 20 ms.
        for base in [12u8, 14] {
            assert_eq!([ms(base), ms(base + 1)], [10.0, 20.0]);
        }
        // CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms.
        for base in [16u8, 20, 24, 28] {
            assert_eq!(
                [ms(base), ms(base + 1), ms(base + 2), ms(base + 3)],
                [2.5, 5.0, 10.0, 20.0]
            );
        }
    }

    #[test]
    fn toc_frame_count_codes() {
        // CELT FB 20 ms (config 31), as libopus produces by default.
        let one = [toc(31, false, 0), 0xaa, 0xbb];
        assert_eq!(packet_samples(&one), Ok(960));
        assert_eq!(packet_duration(&one), Ok(Duration::from_millis(20)));
        // Code 1 and 2: two frames.
        assert_eq!(packet_samples(&[toc(31, true, 1), 1, 2]), Ok(1_920));
        assert_eq!(packet_samples(&[toc(15, false, 2), 1, 1, 2]), Ok(1_920));
        // Code 3: M frames, here 3 x 20 ms SILK WB, with padding and VBR bits set.
        assert_eq!(packet_samples(&[toc(9, false, 3), 0xc3, 0, 0]), Ok(2_880));
        // 6 x 2.5 ms CELT.
        assert_eq!(packet_samples(&[toc(16, false, 3), 6]), Ok(720));
        assert_eq!(
            packet_duration(&[toc(16, false, 3), 6]),
            Ok(Duration::from_micros(15_000))
        );
        // 60 ms SILK single frame.
        assert_eq!(
            packet_duration(&[toc(3, false, 0)]),
            Ok(Duration::from_millis(60))
        );
    }

    #[test]
    fn invalid_packets_are_errors_not_panics() {
        assert_eq!(packet_samples(&[]), Err(OpusPacketError::Empty));
        assert_eq!(
            packet_samples(&[toc(31, false, 3)]),
            Err(OpusPacketError::MissingFrameCount)
        );
        assert_eq!(
            packet_samples(&[toc(31, false, 3), 0]),
            Err(OpusPacketError::ZeroFrames)
        );
        // 3 x 60 ms = 180 ms > 120 ms.
        assert_eq!(
            packet_samples(&[toc(3, false, 3), 3]),
            Err(OpusPacketError::TooLong(8_640))
        );
        // 120 ms is the limit and allowed: 2 x 60 ms.
        assert_eq!(packet_samples(&[toc(3, false, 1)]), Ok(5_760));
        for b in 0..=255u8 {
            let _ = packet_samples(&[b]);
            let _ = packet_samples(&[b, b]);
        }
    }

    #[test]
    fn duration_sample_conversions() {
        assert_eq!(duration_to_samples(Duration::from_millis(20)), 960);
        assert_eq!(duration_to_samples(Duration::from_micros(2_500)), 120);
        assert_eq!(samples_to_duration(120), Duration::from_micros(2_500));
        assert_eq!(duration_to_samples(Duration::MAX), u64::MAX / 1_000_000);
    }

    #[test]
    fn file_level_heuristic() {
        assert_eq!(file_audio_level(&[0xf8, 0xff, 0xfe]), (127, false));
        assert_eq!(file_audio_level(&[0xf8; 10]), (127, false));
        assert_eq!(file_audio_level(&[0xf8; 11]), (30, true));
    }
}
