//! The forwarding path: one packet from a sender to every receiver the rules allow, with no
//! lock, no await, no store call and no allocation per receiver.

use super::*;

impl Engine {
    /// The forwarding path: one packet from `sender` to every receiver the rules allow.
    /// No allocation per receiver: the payload is shared (`Arc`), the ids are copied.
    pub(super) fn forward(&mut self, now: Instant, sender: MemberId, packet: RtpPacket) {
        let Some(s) = self.members.get_mut(&sender) else {
            return;
        };
        if s.mute.mute_microphone {
            return;
        }
        let cfg = self.config.speakers;
        let level = packet.header.ext_vals.audio_level;
        let speaker_changed = s.speaker.on_level(&cfg, now, level);
        let sender_mute = s.mute;
        let ext = ExtensionValues {
            audio_level: level,
            voice_activity: packet.header.ext_vals.voice_activity,
            ..Default::default()
        };
        // The room's member ids, copied into a buffer the engine keeps, so the sessions can
        // be borrowed mutably below without cloning the room key or allocating.
        let mut receivers = std::mem::take(&mut self.scratch);
        receivers.clear();
        if let Some(room) = self
            .members
            .get(&sender)
            .and_then(|s| self.rooms.get(&s.room))
        {
            receivers.extend_from_slice(&room.members);
        }
        for &receiver in &receivers {
            let Some(r) = self.members.get_mut(&receiver) else {
                continue;
            };
            if !rules::forwards(sender_mute, r.mute, receiver == sender) {
                continue;
            }
            let Some(pt) = r.opus_pt else {
                continue;
            };
            let Some(slot) = r.slots.iter_mut().find(|s| s.occupant == Some(sender)) else {
                continue;
            };
            let Some((seq, time)) = slot.map(&packet) else {
                continue;
            };
            let mid = slot.mid;
            let mut direct = r.rtc.direct_api();
            let Some(tx) = direct.stream_tx_by_mid(mid, None) else {
                // Still negotiating this slot.
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(pt, seq, time, packet.timestamp, packet.payload.clone())
                    .marker(packet.header.marker)
                    .ext_vals(ext.clone()),
            );
            self.drain(now, receiver);
        }
        self.scratch = receivers;
        if speaker_changed {
            if let Some(key) = self.members.get(&sender).map(|s| s.room.clone()) {
                self.announce_speakers(&key);
            }
        }
    }
}
