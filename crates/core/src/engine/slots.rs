//! Negotiation by receive slots: each member's session gets one `sendonly` m-line (a slot) per
//! other member and kind — audio from everyone, video from those it receives — added by server
//! offers and reused through `tracks` when occupants change. A slot keeps its SSRC for life;
//! `Rebase` makes each slot one continuous RTP stream whoever occupies it, and whichever of
//! the occupant's simulcast layers it carries.

use std::sync::Arc;

use str0m::rtp::StreamTx;

use super::*;
use crate::layers::Target;
use crate::vp8::{Descriptor, Renumber};

/// One receive slot in a member's session: an m-line the server sends on.
pub(super) struct Slot {
    pub(super) mid: Mid,
    pub(super) kind: TrackKind,
    /// Whose media it carries now.
    pub(super) occupant: Option<MemberId>,
    /// Sequence number and timestamp rebasing for the current occupant.
    rebase: Option<Rebase>,
    /// Video: nothing is written until the occupant's next keyframe starts, so the
    /// receiver never decodes a frame whose references it never got.
    pub(super) wait_keyframe: bool,
    /// Video: a slot given a new occupant by `tracks` stays silent until then, so the
    /// client has the new mapping before the new occupant's first frame (the WebSocket and
    /// the media travel apart); the keyframe is asked for when it ends.
    pub(super) settle_until: Option<Instant>,
    /// The next sequence number and the last timestamp written on this slot, so a new
    /// occupant continues where the previous one stopped.
    next_seq: u64,
    last_time: u32,
    /// The timestamp gap the next rebase leaves after `last_time`.
    next_gap: u32,
    /// When the last packet written on this slot arrived from its publisher.
    last_arrival: Option<Instant>,
    /// Video: the occupant's layer this slot forwards now (None before its first keyframe).
    pub(super) layer: Option<usize>,
    /// Video: the layer it should forward (`layers::choose_layer`); the slot moves there at
    /// the next keyframe start of that layer, the current layer flowing meanwhile.
    pub(super) target: Target,
    /// When the target's keyframe was last asked for on this slot's behalf.
    pub(super) asked_at: Option<Instant>,
    /// Video: when the slot last started or switched on a keyframe. A receiver's keyframe
    /// request soon after (its decoder missed part of that first keyframe) is a start, not
    /// a repair: it is not held to `RECEIVER_KEYFRAME_INTERVAL`.
    pub(super) switched_at: Option<Instant>,
    /// Video: the session's send stream for this slot has its repair settings
    /// (`prepare_video_tx`).
    tx_prepared: bool,
    /// Video (VP8): the picture numbering the receiver sees, continued across runs.
    pictures: Renumber,
}

/// What a video slot does with one packet of its occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// Not for this slot (another layer, or before the keyframe it waits for).
    Drop,
    /// The layer it forwards: write it.
    Forward,
    /// The first packet of a keyframe on the target layer: the slot now carries that layer
    /// (its first, another, or the same again after a pause), numbered on from where the
    /// slot stopped.
    Switch,
}

/// The timestamp gap left when a slot changes occupant: one Opus frame (20 ms at 48 kHz) or
/// one video frame at 30 fps (90 kHz).
fn switch_gap(kind: TrackKind) -> u32 {
    match kind {
        TrackKind::Audio => 960,
        TrackKind::Video => 3000,
    }
}

/// The RTX cache of a video slot: the packets kept for the receiver's NACKs (str0m's default
/// size and age).
const RTX_CACHE_PACKETS: usize = 2000;
const RTX_CACHE_AGE: Duration = Duration::from_secs(3);

/// The share of what a video slot sent in the last second that resends may take before
/// str0m drops the queued ones. str0m's default, 15 %, is too tight for a forwarded stream:
/// with 5 % loss on both legs, a receiver NACKs the server's copies it lost and the packets
/// the server is still repairing from upstream (answered once they are in), and its resends
/// reach the default in bursts, so a receiver's last tries for a packet went unanswered (a
/// test with seeded loss lost frames so). A receiver that NACKs everything still cannot
/// more than double what it gets.
const RTX_RATIO_CAP: f32 = 0.5;

/// How long a reused video slot stays silent after its `tracks` went out.
pub(super) const SLOT_SETTLE: Duration = Duration::from_millis(100);

/// Maps a source's RTP numbering onto a slot's: the receiver sees one continuous stream per
/// slot, whoever speaks on it.
#[derive(Clone, Copy)]
struct Rebase {
    seq_offset: i64,
    time_offset: u32,
    first_src_seq: u64,
}

impl Slot {
    fn new(mid: Mid, kind: TrackKind, occupant: MemberId) -> Slot {
        Slot {
            mid,
            kind,
            occupant: Some(occupant),
            rebase: None,
            wait_keyframe: kind == TrackKind::Video,
            settle_until: None,
            next_seq: 1,
            last_time: 0,
            next_gap: switch_gap(kind),
            last_arrival: None,
            layer: None,
            target: Target::default(),
            asked_at: None,
            switched_at: None,
            tx_prepared: false,
            pictures: Renumber::default(),
        }
    }

    /// A new occupant: its numbering is mapped afresh from its first packet; video waits
    /// for the mapping to settle and then for a keyframe.
    pub(super) fn occupy(&mut self, now: Instant, occupant: MemberId) {
        self.occupant = Some(occupant);
        self.rebase = None;
        self.next_gap = switch_gap(self.kind);
        self.wait_keyframe = self.kind == TrackKind::Video;
        self.settle_until = self.wait_keyframe.then(|| now + SLOT_SETTLE);
        self.forget_layers();
    }

    /// No occupant: the slot is free for the next one.
    pub(super) fn vacate(&mut self) {
        self.occupant = None;
        self.rebase = None;
        self.settle_until = None;
        self.forget_layers();
    }

    fn forget_layers(&mut self) {
        self.layer = None;
        self.target = Target::default();
        self.asked_at = None;
    }

    /// Video: gives the slot's send stream its repair settings, once (setting them clears
    /// the stream's cache).
    pub(super) fn prepare_video_tx(&mut self, tx: &mut StreamTx) {
        if !self.tx_prepared {
            self.tx_prepared = true;
            tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
        }
    }

    /// Video: the slot waits for a keyframe of `layer` to start or switch on.
    pub(super) fn waits_for(&self, layer: usize) -> bool {
        let pending = self.wait_keyframe || self.layer != Some(layer);
        pending && self.target.layer.or(self.layer) == Some(layer)
    }

    /// Video: whether a packet of the occupant's `layer` is written, `keyframe` saying if it
    /// begins a keyframe. A slot starts (and restarts, after a mute) and switches layers
    /// only there, so the receiver's decoder always continues from a keyframe of the layer
    /// it gets; a frame of the old layer left unfinished by a switch is never completed,
    /// and receivers drop incomplete frames.
    pub(super) fn video_gate(&mut self, layer: usize, keyframe: bool) -> Gate {
        if !self.wait_keyframe && self.layer == Some(layer) {
            return Gate::Forward;
        }
        let wanted = self.target.layer.or(self.layer);
        if !keyframe || wanted != Some(layer) {
            return Gate::Drop;
        }
        self.wait_keyframe = false;
        self.layer = Some(layer);
        Gate::Switch
    }

    /// The numbering restarts at the next packet (a layer has its own sequence numbers,
    /// timestamps and VP8 picture numbers; a microphone unmuted after a pause skipped the
    /// packets sent meanwhile), continuing the slot's without a gap: the timestamp advances
    /// by the time that passed since the last packet written (at least 1 ms, at the kind's
    /// clock rate), so the receiver sees one stream at the pace it was captured, the
    /// sequence numbers run on without a hole a receiver would take for loss, and the next
    /// picture is one after the last.
    pub(super) fn continue_numbering(&mut self, arrival: Instant) {
        self.pictures.restart();
        let elapsed = self
            .last_arrival
            .map(|t| arrival.saturating_duration_since(t))
            .unwrap_or(Duration::from_millis(33));
        let khz = match self.kind {
            TrackKind::Audio => 48,
            TrackKind::Video => 90,
        };
        let ticks = elapsed.as_micros().clamp(1_000, 10_000_000) * khz / 1_000;
        self.next_gap = ticks as u32;
        self.rebase = None;
    }

    /// Video: the payload to write for a VP8 packet with descriptor `d`, mapped to `seq` by
    /// `map`: its PictureID, TL0PICIDX and KEYIDX continued on this slot. The same bytes,
    /// shared, where nothing changes (a slot that never switched); a copy where they do.
    pub(super) fn vp8_payload(
        &mut self,
        d: &Descriptor,
        seq: SeqNo,
        payload: &Arc<[u8]>,
    ) -> Arc<[u8]> {
        let newest = *seq + 1 == self.next_seq;
        let to = self.pictures.map(d.numbering, newest);
        match d.renumbered(payload, to) {
            Some(bytes) => bytes.into(),
            None => payload.clone(),
        }
    }

    /// Remembers when the packet just written arrived (for `continue_numbering`).
    pub(super) fn wrote(&mut self, arrival: Instant) {
        self.last_arrival = Some(arrival);
    }

    /// The slot's sequence number and timestamp for a packet of its occupant, or None for a
    /// packet older than the first the slot took of the occupant (of its current layer, for
    /// video).
    pub(super) fn map(&mut self, packet: &RtpPacket) -> Option<(SeqNo, u32)> {
        let src_seq = *packet.seq_no;
        let src_time = packet.header.timestamp;
        let gap = self.next_gap;
        let rebase = *self.rebase.get_or_insert_with(|| Rebase {
            seq_offset: self.next_seq as i64 - src_seq as i64,
            time_offset: self.last_time.wrapping_add(gap).wrapping_sub(src_time),
            first_src_seq: src_seq,
        });
        if src_seq < rebase.first_src_seq {
            return None;
        }
        let out_seq = (src_seq as i64 + rebase.seq_offset) as u64;
        let out_time = src_time.wrapping_add(rebase.time_offset);
        if out_seq >= self.next_seq {
            self.next_seq = out_seq + 1;
            self.last_time = out_time;
        }
        Some((out_seq.into(), out_time))
    }
}

impl Engine {
    /// Gives `receiver` a slot of `kind` carrying `sender`: a free slot of that kind if it
    /// has one, else a new one at the next negotiation. A video slot asks the sender for a
    /// keyframe, so the receiver's first frame comes fast.
    pub(super) fn give_slot(
        &mut self,
        now: Instant,
        receiver: MemberId,
        kind: TrackKind,
        sender: MemberId,
    ) {
        let Some(m) = self.members.get_mut(&receiver) else {
            return;
        };
        if let Some(slot) = m
            .slots
            .iter_mut()
            .find(|s| s.kind == kind && s.occupant.is_none())
        {
            // A reused video slot asks for its keyframe when it has settled.
            slot.occupy(now, sender);
            m.tracks_dirty = true;
        } else if !m.wants_slots.contains(&(kind, sender)) {
            // A new slot asks for its keyframe when the answer makes it writable.
            m.wants_slots.push((kind, sender));
        }
    }

    /// Takes away `receiver`'s slot of `kind` carrying `sender` (or the wish for one).
    pub(super) fn take_slot(&mut self, receiver: MemberId, kind: TrackKind, sender: MemberId) {
        let Some(m) = self.members.get_mut(&receiver) else {
            return;
        };
        m.wants_slots.retain(|w| *w != (kind, sender));
        for slot in m
            .slots
            .iter_mut()
            .filter(|s| s.kind == kind && s.occupant == Some(sender))
        {
            slot.vacate();
            m.tracks_dirty = true;
        }
    }

    /// Sends a member its next offer (if slots are wanted and none is outstanding) or its
    /// new slot mapping.
    pub(super) fn flush_negotiation(&mut self, id: MemberId) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        if m.pending_offer.is_none() && !m.wants_slots.is_empty() {
            let wanted = std::mem::take(&mut m.wants_slots);
            let mut api = m.rtc.sdp_api();
            let mut added = Vec::with_capacity(wanted.len());
            for (kind, sender) in wanted {
                let media = match kind {
                    TrackKind::Audio => MediaKind::Audio,
                    TrackKind::Video => MediaKind::Video,
                };
                let mid = api.add_media(media, Direction::SendOnly, None, None, None);
                added.push((mid, kind, sender));
            }
            if let Some((offer, pending)) = api.apply() {
                for (mid, kind, sender) in added {
                    m.slots.push(Slot::new(mid, kind, sender));
                }
                m.pending_offer = Some(pending);
                m.tracks_dirty = false;
                let conn = m.conn;
                let tracks = self.tracks_of(id);
                let sdp = self.outgoing_sdp(offer.to_sdp_string());
                self.signal(conn, ServerMsg::Offer { sdp, tracks });
                return;
            }
        }
        if m.tracks_dirty {
            m.tracks_dirty = false;
            let conn = m.conn;
            let tracks = self.tracks_of(id);
            self.signal(conn, ServerMsg::Tracks { tracks });
        }
    }

    pub(super) fn tracks_of(&self, id: MemberId) -> Vec<TrackSlot> {
        let Some(m) = self.members.get(&id) else {
            return Vec::new();
        };
        m.slots
            .iter()
            .map(|s| TrackSlot {
                mid: s.mid.to_string(),
                kind: s.kind,
                open_id: s
                    .occupant
                    .and_then(|o| self.members.get(&o))
                    .map(|o| o.open_id.clone()),
            })
            .collect()
    }
}
