//! RFC 2198 redundant audio ("RED"), as browsers send Opus with it: each packet carries its
//! own frame (the primary block) and copies of one or two earlier frames (redundant blocks),
//! so a receiver that lost a packet finds its frame in the next one, without a round trip.
//!
//! The payload starts with one header per block: a redundant block's header is 4 bytes (F
//! bit set, 7-bit payload type, 14-bit timestamp offset back from the packet's timestamp,
//! 10-bit length); the primary's header, last, is 1 byte (F bit clear, payload type). The
//! blocks follow in the same order, the primary taking what is left.
//!
//! The SFU reads these headers on every RED packet: to hand a receiver that did not
//! negotiate RED the primary block alone, and to renumber the blocks' payload types for a
//! receiver whose Opus has another number. Parsing borrows the payload, allocates nothing and
//! never panics: a header cut short, a length that runs past the end or a flood of blocks is
//! an error, and the packet is not forwarded as RED.

use std::ops::Range;

/// Most redundant blocks one payload may carry. Browsers send one (libwebrtc's default) or
/// two; a 4-byte header per block would otherwise let one datagram claim hundreds.
pub const MAX_REDUNDANT_BLOCKS: usize = 8;

/// The F bit: another header follows.
const FOLLOWS: u8 = 0x80;

/// Why a payload is not a RED payload this server forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedError {
    #[error("the RED payload is empty")]
    Empty,
    #[error("a RED block header is cut short")]
    TruncatedHeader,
    #[error("more than {MAX_REDUNDANT_BLOCKS} redundant blocks")]
    TooManyBlocks,
    #[error("the RED block lengths run past the end of the payload")]
    Overrun,
}

/// One block of a RED payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block<'a> {
    /// The block's payload type (7 bits), in the sender's numbering.
    pub pt: u8,
    /// How far before the packet's RTP timestamp the block's frame starts (0 for the
    /// primary).
    pub timestamp_offset: u16,
    pub data: &'a [u8],
}

/// A RED payload whose headers have been checked: every block lies inside the payload.
#[derive(Clone, Copy, Debug)]
pub struct Red<'a> {
    payload: &'a [u8],
    /// Redundant blocks (their headers are the first `4 * redundant` bytes).
    redundant: usize,
    /// Where the primary block's bytes are.
    primary: usize,
}

impl<'a> Red<'a> {
    /// Checks the headers of `payload` (an RTP payload whose payload type is RED).
    pub fn parse(payload: &'a [u8]) -> Result<Red<'a>, RedError> {
        if payload.is_empty() {
            return Err(RedError::Empty);
        }
        let mut at = 0;
        let mut redundant = 0;
        let mut lengths = 0usize;
        loop {
            let Some(&first) = payload.get(at) else {
                return Err(RedError::TruncatedHeader);
            };
            if first & FOLLOWS == 0 {
                at += 1;
                break;
            }
            if redundant == MAX_REDUNDANT_BLOCKS {
                return Err(RedError::TooManyBlocks);
            }
            let Some(header) = payload.get(at..at + 4) else {
                return Err(RedError::TruncatedHeader);
            };
            lengths += block_len(header);
            redundant += 1;
            at += 4;
        }
        let primary = at + lengths;
        if primary > payload.len() {
            return Err(RedError::Overrun);
        }
        Ok(Red {
            payload,
            redundant,
            primary,
        })
    }

    /// The packet's own frame.
    pub fn primary(&self) -> Block<'a> {
        Block {
            pt: self.payload[self.primary_header()] & 0x7f,
            timestamp_offset: 0,
            data: &self.payload[self.primary..],
        }
    }

    /// Where the primary block lies in the payload (to share the payload's buffer).
    pub fn primary_range(&self) -> Range<usize> {
        self.primary..self.payload.len()
    }

    /// The redundant blocks, oldest first, as the sender ordered them.
    pub fn redundant(&self) -> impl Iterator<Item = Block<'a>> + 'a {
        let payload = self.payload;
        let mut data_at = self.primary_header() + 1;
        (0..self.redundant).map(move |i| {
            let h = &payload[4 * i..4 * i + 4];
            let len = block_len(h);
            let block = Block {
                pt: h[0] & 0x7f,
                timestamp_offset: (u16::from(h[1]) << 6) | u16::from(h[2] >> 2),
                data: &payload[data_at..data_at + len],
            };
            data_at += len;
            block
        })
    }

    /// Every block, the redundant ones and the primary, has payload type `pt`.
    pub fn all_of_type(&self, pt: u8) -> bool {
        self.primary().pt == pt && self.redundant().all(|b| b.pt == pt)
    }

    /// The payload with every block's payload type set to `pt` (for a receiver that numbers
    /// the codec otherwise); lengths and offsets unchanged.
    pub fn renumbered(&self, pt: u8) -> Vec<u8> {
        let mut out = self.payload.to_vec();
        let pt = pt & 0x7f;
        for i in 0..self.redundant {
            out[4 * i] = FOLLOWS | pt;
        }
        out[self.primary_header()] = pt;
        out
    }

    fn primary_header(&self) -> usize {
        4 * self.redundant
    }
}

/// The 10-bit block length of a 4-byte redundant header.
fn block_len(header: &[u8]) -> usize {
    (usize::from(header[2] & 0x03) << 8) | usize::from(header[3])
}

/// A RED payload made of `redundant` blocks (pt, timestamp offset, data) and a primary
/// block: what a sender writes. For tests and benchmarks; offsets and lengths must fit
/// their 14 and 10 bits.
pub fn encode(redundant: &[(u8, u16, &[u8])], primary_pt: u8, primary: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (pt, offset, data) in redundant {
        debug_assert!(*offset < 1 << 14 && data.len() < 1 << 10);
        out.push(FOLLOWS | (pt & 0x7f));
        out.push((offset >> 6) as u8);
        out.push((((offset & 0x3f) as u8) << 2) | ((data.len() >> 8) as u8 & 0x03));
        out.push(data.len() as u8);
    }
    out.push(primary_pt & 0x7f);
    for (_, _, data) in redundant {
        out.extend_from_slice(data);
    }
    out.extend_from_slice(primary);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_packet_gives_its_primary_and_its_redundant_frame() {
        let payload = encode(&[(111, 960, b"older frame")], 111, b"this frame");
        let red = Red::parse(&payload).unwrap();
        assert_eq!(
            red.primary(),
            Block {
                pt: 111,
                timestamp_offset: 0,
                data: b"this frame"
            }
        );
        assert_eq!(&payload[red.primary_range()], b"this frame");
        let older: Vec<Block> = red.redundant().collect();
        assert_eq!(
            older,
            vec![Block {
                pt: 111,
                timestamp_offset: 960,
                data: b"older frame"
            }]
        );
        assert!(red.all_of_type(111));
        assert!(!red.all_of_type(109));
    }

    #[test]
    fn the_largest_fields_round_trip() {
        let big = vec![7u8; 1023];
        let payload = encode(&[(0x7f, 0x3fff, &big), (3, 1, b"")], 5, b"");
        let red = Red::parse(&payload).unwrap();
        let blocks: Vec<Block> = red.redundant().collect();
        assert_eq!(blocks[0].pt, 0x7f);
        assert_eq!(blocks[0].timestamp_offset, 0x3fff);
        assert_eq!(blocks[0].data.len(), 1023);
        assert_eq!(blocks[1].data, b"");
        assert_eq!(red.primary().data, b"", "an empty primary is well-formed");
        assert!(!red.all_of_type(5));
    }

    #[test]
    fn a_payload_with_no_redundancy_is_its_primary() {
        let payload = [111, 1, 2, 3];
        let red = Red::parse(&payload).unwrap();
        assert_eq!(red.primary().data, &[1, 2, 3]);
        assert_eq!(red.redundant().count(), 0);
    }

    #[test]
    fn renumbering_changes_only_the_payload_types() {
        let payload = encode(&[(111, 960, b"a"), (111, 480, b"bc")], 111, b"def");
        let red = Red::parse(&payload).unwrap();
        let out = red.renumbered(109);
        let again = Red::parse(&out).unwrap();
        assert!(again.all_of_type(109));
        let blocks: Vec<(u16, &[u8])> = again
            .redundant()
            .map(|b| (b.timestamp_offset, b.data))
            .collect();
        assert_eq!(blocks, vec![(960, &b"a"[..]), (480, &b"bc"[..])]);
        assert_eq!(again.primary().data, b"def");
        assert_eq!(out.len(), payload.len());
    }

    #[test]
    fn hostile_headers_are_errors() {
        assert_eq!(Red::parse(&[]).unwrap_err(), RedError::Empty);
        // A redundant header cut short, and one with no primary header after it.
        assert_eq!(
            Red::parse(&[0x80 | 111, 0, 0]).unwrap_err(),
            RedError::TruncatedHeader
        );
        assert_eq!(
            Red::parse(&[0x80 | 111, 0, 0, 0]).unwrap_err(),
            RedError::TruncatedHeader
        );
        // A length that claims more than there is.
        let mut lying = encode(&[(111, 960, b"abc")], 111, b"");
        lying[3] = 200;
        assert_eq!(Red::parse(&lying).unwrap_err(), RedError::Overrun);
        // The largest length in every header of a short packet.
        let mut max = vec![0xff; 4 * MAX_REDUNDANT_BLOCKS];
        max.push(111);
        assert_eq!(Red::parse(&max).unwrap_err(), RedError::Overrun);
        // More blocks than allowed, even empty ones.
        let empty: Vec<(u8, u16, &[u8])> = vec![(111, 1, b""); MAX_REDUNDANT_BLOCKS + 1];
        assert_eq!(
            Red::parse(&encode(&empty, 111, b"x")).unwrap_err(),
            RedError::TooManyBlocks
        );
        let most: Vec<(u8, u16, &[u8])> = vec![(111, 1, b""); MAX_REDUNDANT_BLOCKS];
        assert!(Red::parse(&encode(&most, 111, b"x")).is_ok());
    }

    /// Every prefix and every single-byte change of a few payloads, and a stream of
    /// pseudo-random ones: parsing never panics, and what parses stays inside the payload.
    #[test]
    fn no_input_panics() {
        fn check(bytes: &[u8]) {
            if let Ok(red) = Red::parse(bytes) {
                let mut total = red.primary().data.len() + 1;
                for b in red.redundant() {
                    total += b.data.len() + 4;
                }
                assert_eq!(total, bytes.len(), "{bytes:?}");
                let _ = red.renumbered(3);
            }
        }
        let seeds = [
            encode(&[(111, 960, b"older frame")], 111, b"this frame"),
            encode(&[(111, 1920, b"x"), (111, 960, b"yz")], 111, b"w"),
            vec![0xff; 40],
        ];
        for seed in &seeds {
            for end in 0..=seed.len() {
                check(&seed[..end]);
            }
            for i in 0..seed.len() {
                for v in [0x00, 0x7f, 0x80, 0xff, seed[i] ^ 0x03] {
                    let mut s = seed.clone();
                    s[i] = v;
                    check(&s);
                }
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 48) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    // Mostly F bits set, so that chains of headers get parsed.
                    let f = if i % 5 == 4 { 0 } else { FOLLOWS };
                    (x.rotate_left(i as u32 * 8) as u8) | f
                })
                .collect();
            check(&bytes);
        }
    }
}
