//! Negotiation by receive slots: each member's session gets one `sendonly` m-line (a slot) per
//! other member, added by server offers and reused through `tracks` when members leave. A slot
//! keeps its SSRC for life; `Rebase` makes each slot one continuous RTP stream whoever
//! occupies it.

use super::*;

/// One receive slot in a member's session: an m-line the server sends on.
pub(super) struct Slot {
    pub(super) mid: Mid,
    /// Whose audio it carries now.
    pub(super) occupant: Option<MemberId>,
    /// Sequence number and timestamp rebasing for the current occupant.
    pub(super) rebase: Option<Rebase>,
    /// The next sequence number and the last timestamp written on this slot, so a new
    /// occupant continues where the previous one stopped.
    pub(super) next_seq: u64,
    pub(super) last_time: u32,
}

/// Maps a source's RTP numbering onto a slot's: the receiver sees one continuous stream per
/// slot, whoever speaks on it.
#[derive(Clone, Copy)]
pub(super) struct Rebase {
    pub(super) seq_offset: i64,
    pub(super) time_offset: u32,
    pub(super) first_src_seq: u64,
}

/// Opus at 48 kHz, 20 ms: the timestamp gap left when a slot changes occupant.
pub(super) const SLOT_SWITCH_TIME_GAP: u32 = 960;

impl Slot {
    /// The slot's sequence number and timestamp for a packet of its occupant, or None for a
    /// packet older than the occupant's first on this slot.
    pub(super) fn map(&mut self, packet: &RtpPacket) -> Option<(SeqNo, u32)> {
        let src_seq = *packet.seq_no;
        let src_time = packet.header.timestamp;
        let rebase = *self.rebase.get_or_insert_with(|| Rebase {
            seq_offset: self.next_seq as i64 - src_seq as i64,
            time_offset: self
                .last_time
                .wrapping_add(SLOT_SWITCH_TIME_GAP)
                .wrapping_sub(src_time),
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
    /// Gives `receiver` a slot carrying `sender`: a free slot if it has one, else a new one
    /// at the next negotiation.
    pub(super) fn give_slot(&mut self, receiver: MemberId, sender: MemberId) {
        let Some(m) = self.members.get_mut(&receiver) else {
            return;
        };
        if let Some(slot) = m.slots.iter_mut().find(|s| s.occupant.is_none()) {
            slot.occupant = Some(sender);
            slot.rebase = None;
            m.tracks_dirty = true;
        } else {
            m.wants_slots.push(sender);
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
            for sender in wanted {
                let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
                added.push((mid, sender));
            }
            if let Some((offer, pending)) = api.apply() {
                for (mid, sender) in added {
                    m.slots.push(Slot {
                        mid,
                        occupant: Some(sender),
                        rebase: None,
                        next_seq: 1,
                        last_time: 0,
                    });
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
                kind: TrackKind::Audio,
                open_id: s
                    .occupant
                    .and_then(|o| self.members.get(&o))
                    .map(|o| o.open_id.clone()),
            })
            .collect()
    }
}
