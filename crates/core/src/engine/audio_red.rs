//! Opus with and without RED (RFC 2198) on the forwarding path: which form each receiver gets
//! a publisher's audio packet in, each form made at most once per packet.
//!
//! - RED in, receiver negotiated RED: the packet as it came (its blocks' payload types
//!   renumbered when the receiver numbers Opus otherwise).
//! - RED in, receiver without RED: the primary block alone, as plain Opus.
//! - Opus in: plain Opus to everyone, RED receivers too (a RED session takes plain Opus on
//!   the same m-line). The server does not add redundancy of its own: that would keep a
//!   frame per slot and copy every packet, for publishers (the Rust client, browsers that do
//!   not offer RED) whose receivers are mostly browsers that protect their own uplink.

use std::sync::Arc;

use str0m::media::Pt;

use crate::red::Red;

/// A publisher's audio packet and the forms made of it so far.
pub(super) struct AudioCopies {
    arrived: Arc<[u8]>,
    /// The publisher's Opus payload type.
    opus: Pt,
    form: Form,
    /// The primary block alone, made for the first receiver without RED.
    primary: Option<Arc<[u8]>>,
    /// The payload renumbered for the last receiver whose Opus type differs from the
    /// publisher's, with that type.
    renumbered: Option<(Pt, Arc<[u8]>)>,
}

enum Form {
    Opus,
    /// RED whose blocks are all Opus: forwarded as RED.
    Red,
    /// RED with a redundant block of another codec: receivers get the primary alone.
    RedPrimaryOnly,
}

impl AudioCopies {
    /// The packet of payload type `pt` from a publisher whose Opus is `opus` and RED is
    /// `red`; None when it is neither, or RED that does not parse or whose primary block is
    /// not Opus (forwarded to nobody).
    pub(super) fn new(pt: Pt, payload: &Arc<[u8]>, opus: Pt, red: Option<Pt>) -> Option<Self> {
        let form = if pt == opus {
            Form::Opus
        } else if Some(pt) == red {
            let parsed = Red::parse(payload).ok()?;
            if parsed.primary().pt != *opus {
                return None;
            }
            if parsed.all_of_type(*opus) {
                Form::Red
            } else {
                Form::RedPrimaryOnly
            }
        } else {
            return None;
        };
        Some(AudioCopies {
            arrived: payload.clone(),
            opus,
            form,
            primary: None,
            renumbered: None,
        })
    }

    /// The payload type and payload to write to a receiver whose Opus is `opus` and whose
    /// RED (if negotiated) is `red`; None when there is nothing to write (an empty primary).
    pub(super) fn for_receiver(&mut self, opus: Pt, red: Option<Pt>) -> Option<(Pt, Arc<[u8]>)> {
        match (&self.form, red) {
            (Form::Opus, _) => Some((opus, self.arrived.clone())),
            (Form::Red, Some(red)) if opus == self.opus => Some((red, self.arrived.clone())),
            (Form::Red, Some(red)) => {
                let fresh = !matches!(&self.renumbered, Some((pt, _)) if *pt == opus);
                if fresh {
                    // Checked in `new`; the bytes have not changed.
                    let parsed = Red::parse(&self.arrived).ok()?;
                    self.renumbered = Some((opus, parsed.renumbered(*opus).into()));
                }
                self.renumbered.as_ref().map(|(_, p)| (red, p.clone()))
            }
            (Form::Red | Form::RedPrimaryOnly, _) => {
                if self.primary.is_none() {
                    let parsed = Red::parse(&self.arrived).ok()?;
                    self.primary = Some(self.arrived[parsed.primary_range()].into());
                }
                let primary = self.primary.as_ref()?;
                (!primary.is_empty()).then(|| (opus, primary.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::red::encode;

    fn pt(n: u8) -> Pt {
        n.into()
    }

    #[test]
    fn each_receiver_gets_the_form_it_negotiated() {
        let payload: Arc<[u8]> = encode(&[(111, 960, b"old")], 111, b"new").into();
        let mut copies = AudioCopies::new(pt(63), &payload, pt(111), Some(pt(63))).unwrap();
        let (p, red) = copies.for_receiver(pt(111), Some(pt(63))).unwrap();
        assert_eq!((p, &red[..]), (pt(63), &payload[..]));
        assert!(Arc::ptr_eq(&red, &payload), "RED to RED is not copied");
        let (p, plain) = copies.for_receiver(pt(111), None).unwrap();
        assert_eq!((p, &plain[..]), (pt(111), &b"new"[..]));
        let (_, again) = copies.for_receiver(pt(109), None).unwrap();
        assert!(Arc::ptr_eq(&plain, &again), "the primary is cut out once");
        // A receiver numbering Opus 109 and RED 121 gets the blocks renumbered.
        let (p, renumbered) = copies.for_receiver(pt(109), Some(pt(121))).unwrap();
        assert_eq!(p, pt(121));
        let parsed = Red::parse(&renumbered).unwrap();
        assert!(parsed.all_of_type(109));
        assert_eq!(parsed.primary().data, b"new");
    }

    #[test]
    fn plain_opus_goes_to_everyone_as_it_came() {
        let payload: Arc<[u8]> = Arc::from(&b"opus"[..]);
        let mut copies = AudioCopies::new(pt(111), &payload, pt(111), Some(pt(63))).unwrap();
        for red in [Some(pt(63)), None] {
            let (p, out) = copies.for_receiver(pt(111), red).unwrap();
            assert_eq!(p, pt(111));
            assert!(Arc::ptr_eq(&out, &payload));
        }
    }

    #[test]
    fn red_that_cannot_be_forwarded_as_red() {
        let opus = pt(111);
        // Not audio at all: the caller takes it for video.
        let any: Arc<[u8]> = Arc::from(&b"x"[..]);
        assert!(AudioCopies::new(pt(96), &any, opus, Some(pt(63))).is_none());
        assert!(AudioCopies::new(pt(63), &any, opus, None).is_none());
        // Malformed, or a primary of another codec: nobody gets it.
        let cut: Arc<[u8]> = Arc::from(&[0x80 | 111, 0, 0][..]);
        assert!(AudioCopies::new(pt(63), &cut, opus, Some(pt(63))).is_none());
        let g722: Arc<[u8]> = encode(&[], 9, b"pcm").into();
        assert!(AudioCopies::new(pt(63), &g722, opus, Some(pt(63))).is_none());
        // A redundant block of another codec: the Opus primary alone, to everyone.
        let mixed: Arc<[u8]> = encode(&[(13, 960, b"cn")], 111, b"new").into();
        let mut copies = AudioCopies::new(pt(63), &mixed, opus, Some(pt(63))).unwrap();
        let (p, out) = copies.for_receiver(opus, Some(pt(63))).unwrap();
        assert_eq!((p, &out[..]), (opus, &b"new"[..]));
        // An empty primary is nothing to a receiver without RED.
        let empty: Arc<[u8]> = encode(&[(111, 960, b"old")], 111, b"").into();
        let mut copies = AudioCopies::new(pt(63), &empty, opus, Some(pt(63))).unwrap();
        assert!(copies.for_receiver(opus, None).is_none());
        assert!(copies.for_receiver(opus, Some(pt(63))).is_some());
    }
}
