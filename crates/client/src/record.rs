//! Recording what the other members say: one Ogg Opus file per member.

use crate::ogg_opus::OggOpusWriter;
use crate::opus;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use voipchat_proto::OpenId;

/// Gaps in a member's RTP timeline longer than this (one minute at 48 kHz) are not filled.
const MAX_FILLED_GAP_SAMPLES: u64 = 48_000 * 60;

/// Writes every member's audio into `DIR/<openId>.opus`, the packets unchanged.
///
/// Gaps in a member's RTP timestamps (lost packets, DTX, a muted microphone) are filled
/// with one-byte Opus packets (the TOC byte of the packet after the gap, frame count code
/// 0, a frame of zero bytes), which decoders treat as lost frames and conceal. So the file
/// keeps the member's timing: a second of silence in the room is a second in the file.
/// Gaps over a minute are left out. Characters of the openId other than ASCII letters,
/// digits, `.`, `_` and `-` become `_` in the file name.
pub struct RoomRecorder {
    dir: PathBuf,
    tracks: HashMap<OpenId, Track>,
}

struct Track {
    writer: OggOpusWriter<BufWriter<File>>,
    /// RTP time (48 kHz) where the next packet is expected.
    next_rtp: u64,
    /// Packets received (not counting fillers).
    packets: u64,
    path: PathBuf,
}

/// What [`RoomRecorder::finish`] wrote for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    pub open_id: OpenId,
    pub path: PathBuf,
    /// Packets received from the member.
    pub packets: u64,
    /// Length of the file's audio in 48 kHz samples (fillers included, pre-skip not).
    pub samples: u64,
}

impl RoomRecorder {
    /// Records into `dir`, which is created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<RoomRecorder> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(RoomRecorder {
            dir,
            tracks: HashMap::new(),
        })
    }

    /// The file a member's audio goes to.
    pub fn path_for(&self, open_id: &OpenId) -> PathBuf {
        self.dir
            .join(format!("{}.opus", file_stem(open_id.as_str())))
    }

    /// Appends one packet of `from`. Returns `Ok(true)` when this is the member's first
    /// packet (its file was just created).
    pub fn record(&mut self, from: &OpenId, payload: &[u8], rtp_time: u64) -> io::Result<bool> {
        let samples = opus::packet_samples(payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut first = false;
        if !self.tracks.contains_key(from) {
            let path = self.path_for(from);
            let writer = OggOpusWriter::create(&path)?;
            self.tracks.insert(
                from.clone(),
                Track {
                    writer,
                    next_rtp: rtp_time,
                    packets: 0,
                    path,
                },
            );
            first = true;
        }
        // packet_samples succeeded, so the payload has its TOC byte.
        let toc = payload[0];
        // Inserted just above when missing.
        let track = self.tracks.get_mut(from).expect("track exists");
        if rtp_time > track.next_rtp {
            let gap = rtp_time - track.next_rtp;
            let filler = [toc & !0x03];
            let filler_samples = u64::from(opus::frame_samples(toc >> 3));
            if gap <= MAX_FILLED_GAP_SAMPLES {
                // frame_samples is at most 2880, so the cast cannot truncate.
                for _ in 0..gap / filler_samples {
                    track.writer.write_packet(&filler, filler_samples as u32)?;
                }
            }
        }
        track.writer.write_packet(payload, samples)?;
        track.packets += 1;
        // A packet from the past (reordered, duplicated) is written where it arrived and
        // does not move the timeline back.
        track.next_rtp = track.next_rtp.max(rtp_time + u64::from(samples));
        Ok(first)
    }

    /// Ends every file properly (last page flagged end-of-stream).
    pub fn finish(self) -> io::Result<Vec<Recording>> {
        let mut out = Vec::new();
        let mut first_err = None;
        for (open_id, track) in self.tracks {
            let samples = track.writer.granule_position();
            if let Err(e) = track.writer.finish() {
                first_err.get_or_insert(e);
            }
            out.push(Recording {
                open_id,
                path: track.path,
                packets: track.packets,
                samples,
            });
        }
        out.sort_by(|a, b| a.open_id.cmp(&b.open_id));
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn file_stem(open_id: &str) -> String {
    let stem: String = open_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        format!("_{stem}")
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_ogg_opus;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_stem("alice"), "alice");
        assert_eq!(file_stem("a/b\\c d"), "a_b_c_d");
        assert_eq!(file_stem(".."), "_..");
        assert_eq!(file_stem(""), "_");
        assert_eq!(file_stem("用户"), "__");
    }

    #[test]
    fn records_per_member_and_fills_gaps() {
        let dir = std::env::temp_dir().join(format!("voipchat-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut rec = RoomRecorder::new(&dir).unwrap();
        let bob = OpenId::new("bob");
        let carol = OpenId::new("carol/x");
        let p = |i: u8| vec![0xf8, i, 1, 2, 3];
        assert!(rec.record(&bob, &p(0), 5_000).unwrap());
        assert!(!rec.record(&bob, &p(1), 5_960).unwrap());
        // Three packets lost: three fillers.
        rec.record(&bob, &p(5), 5_000 + 5 * 960).unwrap();
        assert!(rec.record(&carol, &p(9), 1).unwrap());
        assert!(rec.record(&bob, &[], 0).is_err());
        let done = rec.finish().unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].open_id, bob);
        assert_eq!(done[0].packets, 3);
        assert_eq!(done[0].samples, 6 * 960);
        assert!(done[1].path.ends_with("carol_x.opus"));

        let got = read_ogg_opus(&done[0].path).unwrap();
        let data: Vec<Vec<u8>> = got.into_iter().map(|p| p.data).collect();
        assert_eq!(
            data,
            vec![p(0), p(1), vec![0xf8], vec![0xf8], vec![0xf8], p(5)]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Writes every member's received video into `DIR/<openId>.ivf` (VP8, time base 1/90000,
/// timestamps from the RTP clock, starting at 0), the frames unchanged, so a test compares
/// them byte for byte with what the sender's IVF file held.
pub struct VideoRecorder {
    dir: PathBuf,
    tracks: HashMap<OpenId, VideoTrack>,
}

struct VideoTrack {
    writer: crate::ivf::IvfWriter<BufWriter<File>>,
    first_rtp: u64,
    frames: u64,
    path: PathBuf,
}

/// What [`VideoRecorder::finish`] wrote for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoRecording {
    pub open_id: OpenId,
    pub path: PathBuf,
    pub frames: u64,
}

impl VideoRecorder {
    /// Records into `dir`, which is created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<VideoRecorder> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(VideoRecorder {
            dir,
            tracks: HashMap::new(),
        })
    }

    /// The file a member's video goes to.
    pub fn path_for(&self, open_id: &OpenId) -> PathBuf {
        self.dir
            .join(format!("{}.ivf", file_stem(open_id.as_str())))
    }

    /// Appends one frame of `from` (RTP time at 90 kHz).
    pub fn record(&mut self, from: &OpenId, frame: &[u8], rtp_time: u64) -> io::Result<()> {
        if !self.tracks.contains_key(from) {
            let path = self.path_for(from);
            let header = crate::ivf::IvfHeader {
                fourcc: *b"VP80",
                width: 0,
                height: 0,
                rate: 90_000,
                scale: 1,
            };
            let writer = crate::ivf::IvfWriter::new(BufWriter::new(File::create(&path)?), header)?;
            self.tracks.insert(
                from.clone(),
                VideoTrack {
                    writer,
                    first_rtp: rtp_time,
                    frames: 0,
                    path,
                },
            );
        }
        // Inserted just above when missing.
        let track = self.tracks.get_mut(from).expect("track exists");
        track.writer.write_frame(&crate::ivf::IvfFrame {
            timestamp: rtp_time.saturating_sub(track.first_rtp),
            data: frame.to_vec(),
        })?;
        track.frames += 1;
        Ok(())
    }

    /// Flushes every file.
    pub fn finish(self) -> io::Result<Vec<VideoRecording>> {
        let mut out = Vec::new();
        for (open_id, track) in self.tracks {
            use std::io::Write as _;
            track.writer.into_inner().flush()?;
            out.push(VideoRecording {
                open_id,
                path: track.path,
                frames: track.frames,
            });
        }
        out.sort_by(|a, b| a.open_id.cmp(&b.open_id));
        Ok(out)
    }
}
