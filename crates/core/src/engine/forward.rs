//! The forwarding path: one packet from a sender to every receiver the rules allow, with no
//! lock, no await, no store call and no allocation per receiver (but the copy of a VP8
//! packet whose picture numbers a slot renumbers after a switch: `Slot::vp8_payload`).

use super::audio_red::AudioCopies;
use super::slots::Gate;
use super::*;
use crate::keyframe::{starts_keyframe, VideoCodec};
use crate::vp8::Descriptor;

impl Engine {
    /// The forwarding path: one packet from `sender` to every receiver the rules allow.
    /// No allocation per receiver: the payload is shared (`Arc`), the ids are copied.
    pub(super) fn forward(&mut self, now: Instant, sender: MemberId, packet: RtpPacket) {
        let Some(s) = self.members.get_mut(&sender) else {
            return;
        };
        let pt = packet.header.payload_type;
        if Some(pt) != s.opus_pt && Some(pt) != s.red_pt {
            return self.forward_video(now, sender, packet);
        }
        let opus = s.opus_pt;
        let Some(mut audio) = opus.and_then(|o| AudioCopies::new(pt, &packet.payload, o, s.red_pt))
        else {
            debug!(member = ?sender, "a RED packet that does not parse, or not of Opus: dropped");
            return;
        };
        if s.mute.mute_microphone {
            self.counters.dropped.muted += 1;
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
        let receivers = self.take_room_members(sender);
        for &receiver in &receivers {
            let Some(r) = self.members.get_mut(&receiver) else {
                continue;
            };
            if !rules::forwards(sender_mute, r.mute, receiver == sender) {
                continue;
            }
            let Some((pt, payload)) = r.opus_pt.and_then(|o| audio.for_receiver(o, r.red_pt))
            else {
                continue;
            };
            let Some(slot) = r
                .slots
                .iter_mut()
                .find(|s| s.kind == TrackKind::Audio && s.occupant == Some(sender))
            else {
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
            let bytes = payload.len() as u64;
            tx.write_rtp(
                RtpWrite::new(pt, seq, time, packet.timestamp, payload)
                    .marker(packet.header.marker)
                    .ext_vals(ext.clone()),
            );
            slot.wrote(packet.timestamp);
            self.counters.forwarded_audio_packets += 1;
            self.counters.forwarded_bytes += bytes;
            self.drain_written(now, receiver);
        }
        self.scratch = receivers;
        if speaker_changed {
            if let Some(key) = self.members.get(&sender).map(|s| s.room.clone()) {
                self.announce_speakers(&key);
            }
        }
    }

    /// A mute ended: the audio slots it paused (`member`'s at every receiver when its
    /// microphone is back, `member`'s own when its earphone is) continue their numbering
    /// from the next packet, so the packets not forwarded meanwhile leave no hole in the
    /// sequence that a receiver would wait for as loss.
    pub(super) fn resume_audio(&mut self, now: Instant, member: MemberId, mic: bool, ear: bool) {
        let Some(key) = self.members.get(&member).map(|m| m.room.clone()) else {
            return;
        };
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        for id in &room.members {
            let Some(m) = self.members.get_mut(id) else {
                continue;
            };
            for slot in m.slots.iter_mut().filter(|s| s.kind == TrackKind::Audio) {
                let paused = (mic && slot.occupant == Some(member)) || (ear && *id == member);
                if paused {
                    slot.continue_numbering(now);
                }
            }
        }
    }

    /// The video path: a camera packet to every receiver with a video slot for its sender.
    /// Each slot forwards one layer of the camera (`Slot::video_gate`): it starts, and
    /// switches to the layer `choose_layers` picked, only where a keyframe begins. A receiver
    /// that did not negotiate the sender's codec gets none of its video.
    fn forward_video(&mut self, now: Instant, sender: MemberId, packet: RtpPacket) {
        let Some(s) = self.members.get(&sender) else {
            return;
        };
        if s.video.is_none() {
            return;
        }
        let Some(codec) = s
            .rtc
            .codec_config()
            .find(|p| p.pt() == packet.header.payload_type)
            .map(|p| p.spec().codec)
        else {
            return;
        };
        let video_codec = match codec {
            Codec::Vp8 => VideoCodec::Vp8,
            Codec::H264 => VideoCodec::H264,
            _ => return,
        };
        let muted = s.mute.mute_camera;
        // Measured even while muted: the layers' bitrates are ready when the camera is back.
        let (ssrc, seq, bytes) = (packet.header.ssrc, packet.seq_no, packet.payload.len());
        let Some(placed) = self.camera_layer(now, sender, ssrc, seq, bytes) else {
            return;
        };
        if muted {
            return;
        }
        let layer = placed.layer;
        // A keyframe start that arrives after later packets of its layer (a repair of a loss
        // on the way in) is no place to start: the packets after it, dropped by the slots
        // that waited for it, are gone for them. Those slots wait for the next keyframe,
        // asked for at once.
        let starts = starts_keyframe(video_codec, &packet.payload);
        let vp8 = match video_codec {
            VideoCodec::Vp8 => Descriptor::parse(&packet.payload),
            VideoCodec::H264 => None,
        };
        let keyframe = starts && placed.in_order;
        let mut ask_again = false;
        let receivers = self.take_room_members(sender);
        for &receiver in &receivers {
            if receiver == sender {
                continue;
            }
            // Nothing before the receiver's session is connected: a keyframe written then
            // would open its slot but never reach it.
            let Some(r) = self.members.get_mut(&receiver).filter(|r| r.connected) else {
                continue;
            };
            let Some(pt) = r
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let Some(slot) = r
                .slots
                .iter_mut()
                .find(|s| s.kind == TrackKind::Video && s.occupant == Some(sender))
            else {
                continue;
            };
            let mid = slot.mid;
            let mut direct = r.rtc.direct_api();
            let Some(tx) = direct.stream_tx_by_mid(mid, None) else {
                // Still negotiating this slot.
                continue;
            };
            if slot.settle_until.is_some() {
                continue;
            }
            slot.prepare_video_tx(tx);
            match slot.video_gate(layer, keyframe) {
                Gate::Drop => {
                    ask_again |= starts && slot.waits_for(layer);
                    continue;
                }
                Gate::Forward => {}
                Gate::Switch => {
                    debug!(?receiver, publisher = ?sender, layer, "layer switched on a keyframe");
                    slot.switched_at = Some(now);
                    slot.continue_numbering(packet.timestamp)
                }
            }
            let Some((seq, time)) = slot.map(&packet) else {
                continue;
            };
            slot.wrote(packet.timestamp);
            let payload = match &vp8 {
                Some(d) => slot.vp8_payload(d, seq, &packet.payload),
                None => packet.payload.clone(),
            };
            let bytes = payload.len() as u64;
            tx.write_rtp(
                RtpWrite::new(pt, seq, time, packet.timestamp, payload)
                    .marker(packet.header.marker)
                    .nackable(true),
            );
            self.counters.forwarded_video_packets += 1;
            self.counters.forwarded_bytes += bytes;
            self.drain_written(now, receiver);
        }
        self.scratch = receivers;
        if ask_again {
            self.ask_keyframe(now, sender, Some(layer));
        }
    }

    /// The ids of `member`'s room, copied into the buffer the engine keeps (hand it back to
    /// `self.scratch`), so the sessions can be borrowed mutably while the list is walked,
    /// without cloning the room key or allocating.
    fn take_room_members(&mut self, member: MemberId) -> Vec<MemberId> {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        if let Some(room) = self
            .members
            .get(&member)
            .and_then(|m| self.rooms.get(&m.room))
        {
            ids.extend_from_slice(&room.members);
        }
        ids
    }
}
