//! Ogg Opus files (RFC 7845): reading the packets of a file to play it into a room, and
//! writing what a member said into a file that `opusdec` and browsers play.

use crate::opus::{self, OpusPacketError};
use ogg::writing::PacketWriteEndInfo;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

/// One Opus packet of a file, with the duration its TOC byte announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusPacket {
    pub data: Vec<u8>,
    pub duration: Duration,
}

/// Why an Ogg Opus file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OggOpusError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("ogg: {0}")]
    Ogg(String),
    #[error("not an Ogg Opus stream: {0}")]
    NotOpus(&'static str),
    #[error("opus packet {index}: {error}")]
    Packet {
        index: usize,
        #[source]
        error: OpusPacketError,
    },
}

/// Pre-skip written into `OpusHead`: the encoder delay of libopus at 48 kHz.
pub const DEFAULT_PRE_SKIP: u16 = 312;

/// End an Ogg page after this many audio packets (about one second of 20 ms packets), so
/// that a file being recorded is playable up to the last second if the process dies.
const PACKETS_PER_PAGE: u32 = 50;

const OPUS_HEAD: &[u8; 8] = b"OpusHead";
const OPUS_TAGS: &[u8; 8] = b"OpusTags";
const VENDOR: &str = concat!("voipchat-client ", env!("CARGO_PKG_VERSION"));

/// The fields of an `OpusHead` packet (RFC 7845 §5.1) that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusHead {
    pub channels: u8,
    pub pre_skip: u16,
    pub input_sample_rate: u32,
}

impl OpusHead {
    /// Parses an identification header; `None` when `data` is not one.
    pub fn parse(data: &[u8]) -> Option<OpusHead> {
        if data.len() < 19 || &data[..8] != OPUS_HEAD {
            return None;
        }
        // Version: the major part (upper four bits) must be 0 (RFC 7845 §5.1).
        if data[8] >> 4 != 0 || data[9] == 0 {
            return None;
        }
        Some(OpusHead {
            channels: data[9],
            pre_skip: u16::from_le_bytes([data[10], data[11]]),
            input_sample_rate: u32::from_le_bytes([data[12], data[13], data[14], data[15]]),
        })
    }

    /// The 19-byte header of a mapping family 0 stream (mono or stereo).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(19);
        b.extend_from_slice(OPUS_HEAD);
        b.push(1); // version
        b.push(self.channels);
        b.extend_from_slice(&self.pre_skip.to_le_bytes());
        b.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        b.extend_from_slice(&0i16.to_le_bytes()); // output gain
        b.push(0); // channel mapping family 0
        b
    }
}

/// Reads every audio packet of the first Opus stream in an Ogg file, skipping the
/// `OpusHead` and `OpusTags` headers, each with its duration from the TOC byte.
pub fn read_ogg_opus(path: impl AsRef<Path>) -> Result<Vec<OpusPacket>, OggOpusError> {
    let file = File::open(path)?;
    read_ogg_opus_from(BufReader::new(file))
}

/// [`read_ogg_opus`] from any seekable reader.
pub fn read_ogg_opus_from<R: Read + Seek>(reader: R) -> Result<Vec<OpusPacket>, OggOpusError> {
    let mut reader = ogg::PacketReader::new(reader);
    let mut serial = None;
    let mut seen_tags = false;
    let mut packets = Vec::new();
    loop {
        let packet = match reader.read_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => return Err(ogg_error(e)),
        };
        match serial {
            None => {
                if OpusHead::parse(&packet.data).is_none() {
                    return Err(OggOpusError::NotOpus("first packet is not an OpusHead"));
                }
                serial = Some(packet.stream_serial());
                continue;
            }
            // Another logical stream multiplexed into the file (e.g. video): not ours.
            Some(s) if s != packet.stream_serial() => continue,
            Some(_) => {}
        }
        if !seen_tags {
            if !packet.data.starts_with(OPUS_TAGS) {
                return Err(OggOpusError::NotOpus("second packet is not OpusTags"));
            }
            seen_tags = true;
            continue;
        }
        let index = packets.len();
        let duration = opus::packet_duration(&packet.data)
            .map_err(|error| OggOpusError::Packet { index, error })?;
        packets.push(OpusPacket {
            data: packet.data,
            duration,
        });
    }
    if serial.is_none() {
        return Err(OggOpusError::NotOpus("no packets"));
    }
    if !seen_tags {
        return Err(OggOpusError::NotOpus("no OpusTags packet"));
    }
    Ok(packets)
}

fn ogg_error(e: ogg::OggReadError) -> OggOpusError {
    match e {
        ogg::OggReadError::ReadError(io) => OggOpusError::Io(io),
        other => OggOpusError::Ogg(other.to_string()),
    }
}

/// Writes an Ogg Opus file (RFC 7845): `OpusHead` and `OpusTags` each on their own page,
/// then the audio packets with granule positions counting 48 kHz samples from the start
/// (pre-skip included, as the RFC wants), a page about every second, and the last page
/// flagged end-of-stream by [`finish`](Self::finish) (or, best effort, on drop).
///
/// One packet is held back until the next one arrives, because the ogg crate can flag a
/// page end-of-stream only while writing its last packet.
pub struct OggOpusWriter<W: Write> {
    /// `None` once finished.
    inner: Option<ogg::writing::PacketWriter<'static, W>>,
    serial: u32,
    /// Granule position after the last packet handed to `write_packet`.
    granule: u64,
    /// The packet not yet written: its bytes, its granule position, whether its page must
    /// end after it (true for the two headers).
    held: Option<(Vec<u8>, u64, bool)>,
    /// Packets written into the page now open.
    page_packets: u32,
    packets: u64,
}

impl OggOpusWriter<BufWriter<File>> {
    /// Creates (or truncates) a mono Ogg Opus file.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        OggOpusWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> OggOpusWriter<W> {
    /// A mono 48 kHz stream with pre-skip 312.
    pub fn new(writer: W) -> io::Result<Self> {
        Self::with_head(
            writer,
            OpusHead {
                channels: 1,
                pre_skip: DEFAULT_PRE_SKIP,
                input_sample_rate: opus::OPUS_CLOCK_RATE,
            },
        )
    }

    /// A stream with the given identification header (mapping family 0: 1 or 2 channels).
    pub fn with_head(writer: W, head: OpusHead) -> io::Result<Self> {
        let mut w = OggOpusWriter {
            inner: Some(ogg::writing::PacketWriter::new(writer)),
            serial: rand::random(),
            granule: 0,
            held: None,
            page_packets: 0,
            packets: 0,
        };
        w.push(head.to_bytes(), true)?;
        let mut tags = Vec::with_capacity(16 + VENDOR.len());
        tags.extend_from_slice(OPUS_TAGS);
        // VENDOR is a short constant: its length fits in u32.
        tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
        tags.extend_from_slice(VENDOR.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        w.push(tags, true)?;
        Ok(w)
    }

    /// Appends one Opus packet lasting `samples` samples at 48 kHz.
    pub fn write_packet(&mut self, data: &[u8], samples: u32) -> io::Result<()> {
        if data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an Opus packet has at least one byte",
            ));
        }
        self.granule += u64::from(samples);
        self.packets += 1;
        self.push(data.to_vec(), false)
    }

    /// Appends one Opus packet, its duration taken from its TOC byte.
    pub fn write_opus(&mut self, data: &[u8]) -> io::Result<()> {
        let samples = opus::packet_samples(data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.write_packet(data, samples)
    }

    /// Granule position after the packets written so far (48 kHz samples, pre-skip included).
    pub fn granule_position(&self) -> u64 {
        self.granule
    }

    /// Audio packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Writes the last page, flagged end-of-stream, flushes, and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.end_stream()?;
        // end_stream succeeded, so `inner` is still there.
        let mut inner = self.inner.take().expect("not finished before");
        inner.inner_mut().flush()?;
        Ok(inner.into_inner())
    }

    fn push(&mut self, data: Vec<u8>, end_page: bool) -> io::Result<()> {
        let granule = self.granule;
        if let Some(prev) = self.held.replace((data, granule, end_page)) {
            self.write_held(prev, false)?;
        }
        Ok(())
    }

    fn write_held(&mut self, held: (Vec<u8>, u64, bool), last: bool) -> io::Result<()> {
        let (data, granule, force_end_page) = held;
        let Some(inner) = self.inner.as_mut() else {
            return Err(io::Error::other("ogg opus stream already finished"));
        };
        self.page_packets += 1;
        let info = if last {
            PacketWriteEndInfo::EndStream
        } else if force_end_page || self.page_packets >= PACKETS_PER_PAGE {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        inner.write_packet(data, self.serial, info, granule)?;
        if info != PacketWriteEndInfo::NormalPacket {
            self.page_packets = 0;
            inner.inner_mut().flush()?;
        }
        Ok(())
    }

    fn end_stream(&mut self) -> io::Result<()> {
        if let Some(held) = self.held.take() {
            self.write_held(held, true)?;
        }
        Ok(())
    }
}

impl<W: Write> Drop for OggOpusWriter<W> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            if let Err(e) = self.end_stream() {
                tracing::warn!("finishing ogg opus stream on drop: {e}");
            }
            if let Some(inner) = self.inner.as_mut() {
                let _ = inner.inner_mut().flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn packet(i: usize) -> Vec<u8> {
        // CELT FB 20 ms, code 0, then varying bytes; every 7th is a 3-byte "silence" packet.
        let len = if i.is_multiple_of(7) { 2 } else { 40 + i % 200 };
        let mut p = vec![0xf8];
        p.extend((0..len).map(|j| (i * 31 + j) as u8));
        p
    }

    #[test]
    fn round_trip_keeps_packets_and_durations() {
        let sent: Vec<Vec<u8>> = (0..333).map(packet).collect();
        let mut w = OggOpusWriter::new(Cursor::new(Vec::new())).unwrap();
        for p in &sent {
            w.write_opus(p).unwrap();
        }
        // A 60 ms SILK packet and a 2 x 2.5 ms CELT packet mixed in.
        w.write_opus(&[0x18, 1, 2, 3]).unwrap();
        w.write_opus(&[0x81, 9]).unwrap();
        assert_eq!(w.granule_position(), 333 * 960 + 2_880 + 240);
        let bytes = w.finish().unwrap().into_inner();

        let got = read_ogg_opus_from(Cursor::new(&bytes)).unwrap();
        assert_eq!(got.len(), 335);
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(&g.data, s);
            assert_eq!(g.duration, Duration::from_millis(20));
        }
        assert_eq!(got[333].duration, Duration::from_millis(60));
        assert_eq!(got[334].duration, Duration::from_millis(5));

        // Page-level checks: first page BOS with OpusHead alone, last page EOS with the
        // final granule, granules never decrease.
        let pages = parse_pages(&bytes);
        assert_eq!(pages[0].flags & 0x02, 0x02);
        assert_eq!(pages[0].granule, 0);
        assert_eq!(pages[1].granule, 0);
        let last = pages.last().unwrap();
        assert_eq!(last.flags & 0x04, 0x04);
        assert_eq!(last.granule, 333 * 960 + 2_880 + 240);
        assert!(pages.windows(2).all(|w| w[0].granule <= w[1].granule));
        assert!(pages.len() >= 2 + 333 / PACKETS_PER_PAGE as usize);
        // The head itself.
        let head = OpusHead::parse(&pages[0].body).unwrap();
        assert_eq!(
            head,
            OpusHead {
                channels: 1,
                pre_skip: 312,
                input_sample_rate: 48_000
            }
        );
    }

    #[test]
    fn empty_stream_is_still_valid() {
        let bytes = OggOpusWriter::new(Cursor::new(Vec::new()))
            .unwrap()
            .finish()
            .unwrap()
            .into_inner();
        assert_eq!(read_ogg_opus_from(Cursor::new(&bytes)).unwrap(), vec![]);
        let pages = parse_pages(&bytes);
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[1].flags & 0x04, 0x04);
    }

    #[test]
    fn drop_finishes_the_stream() {
        let mut buf = Vec::new();
        {
            let mut w = OggOpusWriter::new(&mut buf).unwrap();
            w.write_opus(&packet(1)).unwrap();
        }
        assert_eq!(read_ogg_opus_from(Cursor::new(&buf)).unwrap().len(), 1);
        assert_eq!(parse_pages(&buf).last().unwrap().flags & 0x04, 0x04);
    }

    #[test]
    fn rejects_what_is_not_opus() {
        assert!(read_ogg_opus_from(Cursor::new(Vec::new())).is_err());
        assert!(read_ogg_opus_from(Cursor::new(b"garbage, not ogg at all".to_vec())).is_err());
        // An Ogg stream whose first packet is not OpusHead.
        let mut buf = Vec::new();
        let mut w = ogg::writing::PacketWriter::new(&mut buf);
        w.write_packet(b"\x01vorbis".to_vec(), 1, PacketWriteEndInfo::EndStream, 0)
            .unwrap();
        assert!(matches!(
            read_ogg_opus_from(Cursor::new(&buf)),
            Err(OggOpusError::NotOpus(_))
        ));
        // Empty packets are refused by the writer.
        let mut w = OggOpusWriter::new(Vec::new()).unwrap();
        assert!(w.write_packet(&[], 960).is_err());
        assert!(w.write_opus(&[0xfb]).is_err()); // code 3 without count byte
    }

    struct Page {
        flags: u8,
        granule: u64,
        body: Vec<u8>,
    }

    fn parse_pages(mut b: &[u8]) -> Vec<Page> {
        let mut pages = Vec::new();
        while !b.is_empty() {
            assert_eq!(&b[..4], b"OggS");
            let flags = b[5];
            let granule = u64::from_le_bytes(b[6..14].try_into().unwrap());
            let nseg = b[26] as usize;
            let lacing = &b[27..27 + nseg];
            let body_len: usize = lacing.iter().map(|&l| l as usize).sum();
            let start = 27 + nseg;
            pages.push(Page {
                flags,
                granule,
                body: b[start..start + body_len].to_vec(),
            });
            b = &b[start + body_len..];
        }
        pages
    }
}
