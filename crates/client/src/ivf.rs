//! IVF, the simple container libvpx and ffmpeg write VP8 into: a 32-byte file header, then
//! each frame as a 12-byte header (size, 64-bit timestamp, little-endian) and its bytes. The
//! client sends an IVF file's frames as they are and records received video the same way,
//! so a test compares frames byte for byte.

use std::io::{self, Read, Write};

/// One frame of an IVF file: its timestamp in the file's time base, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IvfFrame {
    pub timestamp: u64,
    pub data: Vec<u8>,
}

/// What the file header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IvfHeader {
    /// The codec's FourCC, `b"VP80"` for VP8.
    pub fourcc: [u8; 4],
    pub width: u16,
    pub height: u16,
    /// Time base: a timestamp of 1 is `scale / rate` seconds.
    pub rate: u32,
    pub scale: u32,
}

/// Largest frame read: far above any VP8 frame a camera makes, small enough that a broken
/// length field cannot make the reader allocate gigabytes.
const MAX_FRAME_BYTES: u32 = 8 * 1024 * 1024;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads a whole IVF file: its header and every frame. A file that is not IVF, or is cut
/// short inside a frame, is an `InvalidData` error that says so.
pub fn read_ivf(mut input: impl Read) -> io::Result<(IvfHeader, Vec<IvfFrame>)> {
    let mut head = [0u8; 32];
    input
        .read_exact(&mut head)
        .map_err(|_| invalid("not an IVF file: shorter than its 32-byte header"))?;
    if &head[0..4] != b"DKIF" {
        return Err(invalid(
            "not an IVF file (no DKIF signature); make one with: \
             ffmpeg -i in.y4m -c:v libvpx -b:v 300k out.ivf",
        ));
    }
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let header_len = usize::from(u16_at(6));
    let header = IvfHeader {
        fourcc: [head[8], head[9], head[10], head[11]],
        width: u16_at(12),
        height: u16_at(14),
        rate: u32_at(16),
        scale: u32_at(20),
    };
    if header_len > 32 {
        io::copy(
            &mut (&mut input).take((header_len - 32) as u64),
            &mut io::sink(),
        )?;
    }
    let mut frames = Vec::new();
    loop {
        let mut fh = [0u8; 12];
        match input.read(&mut fh[..1])? {
            0 => break,
            _ => input
                .read_exact(&mut fh[1..])
                .map_err(|_| invalid(format!("IVF frame {} header cut short", frames.len())))?,
        }
        let size = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]);
        if size > MAX_FRAME_BYTES {
            return Err(invalid(format!(
                "IVF frame {} claims {size} bytes",
                frames.len()
            )));
        }
        let timestamp = u64::from_le_bytes(fh[4..12].try_into().expect("8 bytes"));
        let mut data = vec![0u8; size as usize];
        input
            .read_exact(&mut data)
            .map_err(|_| invalid(format!("IVF frame {} cut short", frames.len())))?;
        frames.push(IvfFrame { timestamp, data });
    }
    Ok((header, frames))
}

/// Writes an IVF file frame by frame; the frame count in the header is left 0, which
/// readers (ffmpeg, libvpx) accept.
pub struct IvfWriter<W: Write> {
    out: W,
}

impl<W: Write> IvfWriter<W> {
    pub fn new(mut out: W, header: IvfHeader) -> io::Result<Self> {
        let mut head = [0u8; 32];
        head[0..4].copy_from_slice(b"DKIF");
        head[6..8].copy_from_slice(&32u16.to_le_bytes());
        head[8..12].copy_from_slice(&header.fourcc);
        head[12..14].copy_from_slice(&header.width.to_le_bytes());
        head[14..16].copy_from_slice(&header.height.to_le_bytes());
        head[16..20].copy_from_slice(&header.rate.to_le_bytes());
        head[20..24].copy_from_slice(&header.scale.to_le_bytes());
        out.write_all(&head)?;
        Ok(IvfWriter { out })
    }

    pub fn write_frame(&mut self, frame: &IvfFrame) -> io::Result<()> {
        let size = u32::try_from(frame.data.len()).map_err(|_| invalid("frame too large"))?;
        self.out.write_all(&size.to_le_bytes())?;
        self.out.write_all(&frame.timestamp.to_le_bytes())?;
        self.out.write_all(&frame.data)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> IvfHeader {
        IvfHeader {
            fourcc: *b"VP80",
            width: 160,
            height: 120,
            rate: 90_000,
            scale: 1,
        }
    }

    #[test]
    fn round_trip() {
        let frames: Vec<IvfFrame> = (0..5)
            .map(|i| IvfFrame {
                timestamp: i * 3000,
                data: vec![i as u8; 10 + i as usize],
            })
            .collect();
        let mut w = IvfWriter::new(Vec::new(), header()).unwrap();
        for f in &frames {
            w.write_frame(f).unwrap();
        }
        let bytes = w.into_inner();
        let (h, back) = read_ivf(&bytes[..]).unwrap();
        assert_eq!(h, header());
        assert_eq!(back, frames);
    }

    #[test]
    fn not_ivf_and_cut_short_are_clear_errors() {
        let e = read_ivf(&b"RIFF....WAVEfmt "[..]).unwrap_err();
        assert!(e.to_string().contains("not an IVF file"), "{e}");
        let e = read_ivf(&vec![0u8; 40][..]).unwrap_err();
        assert!(e.to_string().contains("DKIF"), "{e}");
        let mut w = IvfWriter::new(Vec::new(), header()).unwrap();
        w.write_frame(&IvfFrame {
            timestamp: 0,
            data: vec![1; 100],
        })
        .unwrap();
        let bytes = w.into_inner();
        let e = read_ivf(&bytes[..bytes.len() - 10]).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        let mut huge = bytes[..32].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        let e = read_ivf(&huge[..]).unwrap_err();
        assert!(e.to_string().contains("claims"), "{e}");
    }
}
