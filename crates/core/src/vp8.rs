//! The VP8 payload descriptor (RFC 7741, section 4.2), read and renumbered in place, so that
//! a receive slot shows one picture numbering whichever simulcast layer or member it carries.
//!
//! Pure: no session, no clock. A receiver's decoder reads PictureID (and TL0PICIDX, KEYIDX)
//! to tell a lost picture from a skipped one; each layer and each publisher counts on its
//! own, so a switch would look like a jump of hundreds of pictures. `Renumber` keeps a
//! slot's count going across switches, one picture on. A descriptor never changes length:
//! a 7-bit PictureID stays 7-bit. Anything unreadable (short, garbled, `L` without `T`) is
//! forwarded untouched.
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (required)
//!      +-+-+-+-+-+-+-+-+
//! X:   |I|L|T|K| RSV   | (optional)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PictureID   | (optional, a second byte when M is set)
//!      +-+-+-+-+-+-+-+-+
//! L:   |   TL0PICIDX   | (optional)
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  | (optional)
//!      +-+-+-+-+-+-+-+-+
//! ```

/// The numbering fields of one descriptor, each None where the descriptor has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Numbering {
    /// 7 or 15 bits, as the descriptor carries it.
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    /// 5 bits.
    pub key_idx: Option<u8>,
}

/// A readable descriptor: its numbering and where each field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub numbering: Numbering,
    /// The PictureID has 15 bits (M set), else 7.
    pub long_picture_id: bool,
    /// Offsets of the PictureID's first byte, TL0PICIDX and the T/K byte (0: absent; the
    /// first byte is never one of them).
    picture_id_at: usize,
    tl0_at: usize,
    key_at: usize,
    /// Where the VP8 payload starts, after the descriptor.
    payload_at: usize,
}

const PICTURE_ID_7: u16 = 0x7f;
const PICTURE_ID_15: u16 = 0x7fff;
const KEY_IDX: u8 = 0x1f;

impl Descriptor {
    /// Reads the descriptor at the start of an RTP payload. None when the payload is too
    /// short for the descriptor and one byte after it, or when `L` is set without `T`
    /// (RFC 7741 requires both).
    pub fn parse(p: &[u8]) -> Option<Descriptor> {
        let first = *p.first()?;
        let mut d = Descriptor {
            numbering: Numbering::default(),
            long_picture_id: false,
            picture_id_at: 0,
            tl0_at: 0,
            key_at: 0,
            payload_at: 1,
        };
        if first & 0x80 != 0 {
            let x = *p.get(1)?;
            let (i, l, t, k) = (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
            if l && !t {
                return None;
            }
            let mut at = 2;
            if i {
                let b = *p.get(at)?;
                d.picture_id_at = at;
                if b & 0x80 != 0 {
                    let low = *p.get(at + 1)?;
                    d.long_picture_id = true;
                    d.numbering.picture_id = Some(u16::from(b & 0x7f) << 8 | u16::from(low));
                    at += 2;
                } else {
                    d.numbering.picture_id = Some(u16::from(b));
                    at += 1;
                }
            }
            if l {
                d.numbering.tl0_pic_idx = Some(*p.get(at)?);
                d.tl0_at = at;
                at += 1;
            }
            if t || k {
                let b = *p.get(at)?;
                if k {
                    d.numbering.key_idx = Some(b & KEY_IDX);
                    d.key_at = at;
                }
                at += 1;
            }
            d.payload_at = at;
        }
        if d.payload_at >= p.len() {
            return None;
        }
        Some(d)
    }

    /// True if this packet begins a key frame: the start of partition 0 (S set, PID 0) whose
    /// VP8 frame header has the inverse key-frame bit clear.
    pub fn starts_keyframe(&self, p: &[u8]) -> bool {
        let Some(&first) = p.first() else {
            return false;
        };
        first & 0x10 != 0 && first & 0x07 == 0 && p.get(self.payload_at).is_some_and(|h| h & 1 == 0)
    }

    /// `p` (the payload this descriptor was read from) with `to` written over its numbering,
    /// each value cut to its field's width; fields the descriptor lacks stay absent. None
    /// when nothing changes (the original can be forwarded as it is) or when `p` is too
    /// short to be that payload.
    pub fn renumbered(&self, p: &[u8], to: Numbering) -> Option<Vec<u8>> {
        if p.len() <= self.payload_at {
            return None;
        }
        let mut out: Option<Vec<u8>> = None;
        let mut set = |at: usize, byte: u8| {
            if p[at] != byte {
                out.get_or_insert_with(|| p.to_vec())[at] = byte;
            }
        };
        if let (Some(_), Some(id)) = (self.numbering.picture_id, to.picture_id) {
            if self.long_picture_id {
                let id = id & PICTURE_ID_15;
                set(self.picture_id_at, 0x80 | (id >> 8) as u8);
                set(self.picture_id_at + 1, id as u8);
            } else {
                set(self.picture_id_at, (id & PICTURE_ID_7) as u8);
            }
        }
        if let (Some(_), Some(idx)) = (self.numbering.tl0_pic_idx, to.tl0_pic_idx) {
            set(self.tl0_at, idx);
        }
        if let (Some(_), Some(idx)) = (self.numbering.key_idx, to.key_idx) {
            set(self.key_at, p[self.key_at] & !KEY_IDX | idx & KEY_IDX);
        }
        out
    }
}

/// One slot's picture numbering: what it adds to the source's numbers in the run it forwards
/// now, and the last numbers it wrote. A run is the packets of one layer of one occupant,
/// from the keyframe the slot started or switched on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Renumber {
    /// Added (wrapping) to the source's fields in this run; None: the next packet starts a
    /// run.
    offsets: Option<Offsets>,
    /// The numbers last written (of the newest packet), None before the first of each.
    last: Numbering,
}

#[derive(Clone, Copy, Debug, Default)]
struct Offsets {
    picture_id: u16,
    tl0_pic_idx: u8,
    key_idx: u8,
}

impl Renumber {
    /// The next packet starts a run (a switch of layer or occupant): its picture follows the
    /// last one written.
    pub fn restart(&mut self) {
        self.offsets = None;
    }

    /// The numbers to write for a packet whose descriptor has `src`. `newest`: the packet
    /// is the newest the slot wrote (not a repair of an older one), so its numbers are the
    /// ones the next run continues from. The first run of a slot keeps the source's
    /// numbers, so a slot that never switches forwards payloads untouched.
    pub fn map(&mut self, src: Numbering, newest: bool) -> Numbering {
        let last = self.last;
        let wide = |v: Option<u8>| v.map(u16::from);
        // One picture (and one base-layer picture, and one key frame) after the last: the
        // run starts on a key frame.
        let offsets = *self.offsets.get_or_insert_with(|| Offsets {
            picture_id: follow(last.picture_id, src.picture_id, PICTURE_ID_15),
            tl0_pic_idx: follow(wide(last.tl0_pic_idx), wide(src.tl0_pic_idx), 0xff) as u8,
            key_idx: follow(wide(last.key_idx), wide(src.key_idx), KEY_IDX.into()) as u8,
        });
        let out = Numbering {
            picture_id: src
                .picture_id
                .map(|v| v.wrapping_add(offsets.picture_id) & PICTURE_ID_15),
            tl0_pic_idx: src.tl0_pic_idx.map(|v| v.wrapping_add(offsets.tl0_pic_idx)),
            key_idx: src
                .key_idx
                .map(|v| v.wrapping_add(offsets.key_idx) & KEY_IDX),
        };
        if newest {
            // A 7-bit PictureID is counted in 15 bits too: its low 7 are the ones written
            // (a 7-bit source's wrap shows there as a step back by 128, which those 7 bits
            // do not see).
            self.last.picture_id = out.picture_id.or(last.picture_id);
            self.last.tl0_pic_idx = out.tl0_pic_idx.or(last.tl0_pic_idx);
            self.last.key_idx = out.key_idx.or(last.key_idx);
        }
        out
    }
}

/// The offset that makes `src` come one after `last`, in a field of `mask` bits; 0 when
/// either is unknown (the source's numbers are kept).
fn follow(last: Option<u16>, src: Option<u16>, mask: u16) -> u16 {
    match (last, src) {
        (Some(last), Some(src)) => last.wrapping_add(1).wrapping_sub(src) & mask,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 frame header byte after the descriptor: key frame (0) or not (1).
    const KEY: u8 = 0x50;
    const DELTA: u8 = 0x51;

    fn ids(picture_id: Option<u16>, tl0: Option<u8>, key: Option<u8>) -> Numbering {
        Numbering {
            picture_id,
            tl0_pic_idx: tl0,
            key_idx: key,
        }
    }

    #[test]
    fn every_descriptor_shape_is_read() {
        // No X: nothing to renumber.
        let p = [0x10, KEY, 0x00];
        let d = Descriptor::parse(&p).unwrap();
        assert_eq!(d.numbering, Numbering::default());
        assert!(d.starts_keyframe(&p));
        assert_eq!(d.renumbered(&p, ids(Some(9), Some(9), Some(9))), None);
        // X with no field set.
        let p = [0x90, 0x00, DELTA];
        let d = Descriptor::parse(&p).unwrap();
        assert_eq!(d.numbering, Numbering::default());
        assert!(!d.starts_keyframe(&p));
        // I, 7-bit PictureID.
        let p = [0x90, 0x80, 0x05, KEY];
        let d = Descriptor::parse(&p).unwrap();
        assert_eq!(d.numbering, ids(Some(5), None, None));
        assert!(!d.long_picture_id);
        assert!(d.starts_keyframe(&p));
        // I with M: 15-bit PictureID.
        let p = [0x90, 0x80, 0x81, 0x23, KEY];
        let d = Descriptor::parse(&p).unwrap();
        assert_eq!(d.numbering, ids(Some(0x0123), None, None));
        assert!(d.long_picture_id);
        assert!(d.starts_keyframe(&p));
        // I, L and T (TID 1, no K).
        let p = [0x90, 0xE0, 0x81, 0x23, 0x07, 0x40, DELTA];
        let d = Descriptor::parse(&p).unwrap();
        assert_eq!(d.numbering, ids(Some(0x0123), Some(7), None));
        assert!(!d.starts_keyframe(&p));
        // T and K without I or L: KEYIDX is the low five bits.
        let p = [0x90, 0x30, 0xAA, KEY];
        let d = Descriptor::parse(&p).unwrap();
        assert_eq!(d.numbering, ids(None, None, Some(0x0A)));
        // K alone still has the T/K byte.
        let p = [0x90, 0x10, 0x03, KEY];
        assert_eq!(Descriptor::parse(&p).unwrap().numbering.key_idx, Some(3));
        // All of them.
        let p = [0x90, 0xF0, 0x81, 0x23, 0x07, 0x25, KEY];
        let d = Descriptor::parse(&p).unwrap();
        assert_eq!(d.numbering, ids(Some(0x0123), Some(7), Some(5)));
        assert!(d.starts_keyframe(&p));
        // Not the start of partition 0: no key frame start, numbers still read.
        let p = [0x81, 0x80, 0x05, KEY];
        let d = Descriptor::parse(&p).unwrap();
        assert!(!d.starts_keyframe(&p));
        assert_eq!(d.numbering.picture_id, Some(5));
    }

    #[test]
    fn renumbering_keeps_the_length_and_the_other_bits() {
        let p = [0x90, 0xF0, 0x81, 0x23, 0x07, 0x65, KEY, 0xAB];
        let d = Descriptor::parse(&p).unwrap();
        let out = d
            .renumbered(&p, ids(Some(0x7ffe), Some(0xff), Some(0x1f)))
            .unwrap();
        assert_eq!(out, [0x90, 0xF0, 0xFF, 0xFE, 0xFF, 0x7F, KEY, 0xAB]);
        let back = Descriptor::parse(&out).unwrap();
        assert_eq!(back.numbering, ids(Some(0x7ffe), Some(0xff), Some(0x1f)));
        // TID and Y (0x60 of 0x65) are kept; values are cut to their width.
        let out = d
            .renumbered(&p, ids(Some(0x8001), None, Some(0x21)))
            .unwrap();
        assert_eq!(out, [0x90, 0xF0, 0x80, 0x01, 0x07, 0x61, KEY, 0xAB]);
        // A 7-bit PictureID stays 7-bit.
        let p = [0x90, 0x80, 0x05, KEY, 0xAB];
        let d = Descriptor::parse(&p).unwrap();
        let out = d.renumbered(&p, ids(Some(0x1234), None, None)).unwrap();
        assert_eq!(out, [0x90, 0x80, 0x34, KEY, 0xAB]);
        // Nothing to change: no copy.
        assert_eq!(d.renumbered(&p, ids(Some(5), Some(1), Some(1))), None);
        // A payload shorter than the one read is left alone.
        assert_eq!(d.renumbered(&p[..3], ids(Some(6), None, None)), None);
    }

    #[test]
    fn unreadable_descriptors_are_left_alone() {
        assert_eq!(Descriptor::parse(&[]), None);
        assert_eq!(Descriptor::parse(&[0x10]), None, "no payload after it");
        assert_eq!(Descriptor::parse(&[0x90]), None, "X without its byte");
        assert_eq!(
            Descriptor::parse(&[0x90, 0x80]),
            None,
            "I without PictureID"
        );
        assert_eq!(
            Descriptor::parse(&[0x90, 0x80, 0x81]),
            None,
            "M without 2nd byte"
        );
        assert_eq!(Descriptor::parse(&[0x90, 0x80, 0x81, 0x23]), None);
        assert_eq!(
            Descriptor::parse(&[0x90, 0xC0, 0x05, 0x07]),
            None,
            "L without T"
        );
        assert_eq!(Descriptor::parse(&[0x90, 0x20]), None, "T without its byte");
        // Every prefix of a full descriptor, and random bytes: never a panic, and a
        // renumbering never changes the length.
        let full = [0x90, 0xF0, 0x81, 0x23, 0x07, 0x25, KEY, 0xAB];
        for n in 0..full.len() {
            if let Some(d) = Descriptor::parse(&full[..n]) {
                let out = d.renumbered(&full[..n], ids(Some(1), Some(1), Some(1)));
                assert!(out.is_none_or(|o| o.len() == n));
            }
        }
        let mut x: u32 = 0x2545_f491;
        for len in 0..24 {
            for _ in 0..500 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                if let Some(d) = Descriptor::parse(&v) {
                    let _ = d.starts_keyframe(&v);
                    let out = d.renumbered(&v, ids(Some(0x7fff), Some(3), Some(31)));
                    assert!(out.is_none_or(|o| o.len() == v.len()));
                    let _ = d.renumbered(&v[..v.len() / 2], ids(Some(1), Some(1), Some(1)));
                }
            }
        }
    }

    #[test]
    fn a_slot_counts_on_across_runs_with_other_bases() {
        let mut r = Renumber::default();
        // The first run keeps the source's numbers.
        r.restart();
        for i in 0..3 {
            let src = ids(Some(100 + i), Some(10 + i as u8), Some(4));
            assert_eq!(r.map(src, true), src);
        }
        // A switch to a layer counting from 7000: one picture after 102.
        r.restart();
        assert_eq!(
            r.map(ids(Some(7000), Some(200), Some(9)), true),
            ids(Some(103), Some(13), Some(5))
        );
        assert_eq!(
            r.map(ids(Some(7001), Some(201), Some(9)), true),
            ids(Some(104), Some(14), Some(5))
        );
        // A repair of an older packet of the run: its own numbers, the count unmoved.
        assert_eq!(
            r.map(ids(Some(7000), Some(200), Some(9)), false),
            ids(Some(103), Some(13), Some(5))
        );
        r.restart();
        assert_eq!(r.map(ids(Some(5), None, None), true).picture_id, Some(105));
    }

    #[test]
    fn the_count_wraps_in_each_field() {
        let mut r = Renumber::default();
        r.map(ids(Some(0x7ffe), Some(0xfe), Some(0x1e)), true);
        r.restart();
        let out = r.map(ids(Some(3), Some(3), Some(3)), true);
        assert_eq!(out, ids(Some(0x7fff), Some(0xff), Some(0x1f)));
        let out = r.map(ids(Some(4), Some(4), Some(4)), true);
        assert_eq!(out, ids(Some(0), Some(0), Some(0)));
        // A 7-bit source is counted on; the descriptor keeps its low 7 bits.
        r.restart();
        let src = [0x90, 0x80, 0x7f, KEY];
        let d = Descriptor::parse(&src).unwrap();
        let out = r.map(d.numbering, true);
        assert_eq!(out.picture_id, Some(1));
        let written = d.renumbered(&src, out).unwrap();
        assert_eq!(written, [0x90, 0x80, 0x01, KEY]);
        // Fields unknown before keep the source's numbers.
        let mut r = Renumber::default();
        r.map(ids(None, None, None), true);
        r.restart();
        assert_eq!(
            r.map(ids(Some(50), Some(6), Some(2)), true),
            ids(Some(50), Some(6), Some(2))
        );
    }
}
