//! Negotiation by receive slots: each member's session gets one `sendonly` m-line (a slot) per
//! other member and kind — audio from everyone, video from those it receives — added by server
//! offers and reused through `tracks` when occupants change. A slot keeps its SSRC for life;
//! `Rebase` makes each slot one continuous RTP stream whoever occupies it.

use super::*;

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
}

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
        }
    }

    /// A new occupant: its numbering is mapped afresh from its first packet; video waits
    /// for the mapping to settle and then for a keyframe.
    pub(super) fn occupy(&mut self, now: Instant, occupant: MemberId) {
        self.occupant = Some(occupant);
        self.rebase = None;
        self.wait_keyframe = self.kind == TrackKind::Video;
        self.settle_until = self.wait_keyframe.then(|| now + SLOT_SETTLE);
    }

    /// No occupant: the slot is free for the next one.
    pub(super) fn vacate(&mut self) {
        self.occupant = None;
        self.rebase = None;
        self.settle_until = None;
    }

    /// The timestamp gap left when the slot changes occupant: one Opus frame (20 ms at
    /// 48 kHz) or one video frame at 30 fps (90 kHz).
    fn switch_gap(&self) -> u32 {
        match self.kind {
            TrackKind::Audio => 960,
            TrackKind::Video => 3000,
        }
    }

    /// The slot's sequence number and timestamp for a packet of its occupant, or None for a
    /// packet older than the occupant's first on this slot.
    pub(super) fn map(&mut self, packet: &RtpPacket) -> Option<(SeqNo, u32)> {
        let src_seq = *packet.seq_no;
        let src_time = packet.header.timestamp;
        let gap = self.switch_gap();
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
                self.signal(
                    conn,
                    ServerMsg::Offer {
                        sdp: offer.to_sdp_string(),
                        tracks,
                    },
                );
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
