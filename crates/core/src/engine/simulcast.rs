//! Simulcast in the engine: a camera's layers (one per rid, or one without simulcast), their
//! measured bitrates, each receiver's bandwidth estimate, and applying the layer choice of
//! `crate::layers` to every video slot. Keyframes are asked per layer, throttled per layer.
//!
//! The choice itself is `layers::choose_layer` (pure); this module only feeds it and acts on
//! it: a slot whose target differs from the layer it forwards asks the publisher for a
//! keyframe of the target and switches when that keyframe begins (`Slot::video_gate`).

use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{KeyframeRequestKind, Rid, Rids};

use super::*;
use crate::layers::{self, LayerInput, RateMeter};

/// The first bandwidth estimate toward a receiver, before transport-cc feedback has said
/// more; str0m's probes take it up (or down) from there within a second or two.
pub(super) const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1_500);

/// How often str0m reports a video-room session's stats: its egress loss tells a link that
/// is congested from one whose estimate is still catching up (`Probing`).
pub(super) const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// Most layers a camera may publish (`sdp::check_video_offer` refuses more).
pub(super) const MAX_LAYERS: usize = 3;

/// Least time between two keyframe requests for one layer; a request inside it is owed and
/// sent at the next tick.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(250);

/// Least time between two keyframe requests a layer gets on behalf of its receivers' own
/// PLI/FIR (their decoders lost a picture). Each keyframe is many times a delta frame: a
/// receiver on a bad link asking four times a second would raise that layer's bitrate for
/// every other receiver of it, and move the ones with room to spare down a layer. The
/// server's own requests (a receiver starting a stream) keep the shorter throttle.
const RECEIVER_KEYFRAME_INTERVAL: Duration = Duration::from_millis(1000);

/// A slot still waiting for the keyframe of its target asks again after this long (the
/// request or the keyframe may have been lost).
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);

/// Bytes counted per packet on top of its payload (RTP header and extensions, SRTP tag,
/// UDP/IP), so layer bitrates compare with the transport-level estimate.
const PACKET_OVERHEAD: usize = 50;

/// How many SSRC-to-layer mappings a camera keeps (a browser that restarts its encoder
/// gets new SSRCs; the oldest mapping goes).
const MAX_SSRC_MAPPINGS: usize = 2 * MAX_LAYERS + 2;

/// What str0m's estimator is asked to discover (by probing): this share of the received
/// videos' top layers.
const DESIRED_PERCENT: u64 = 125;

/// The layer one SSRC of a camera carries, and the newest (extended) sequence number seen
/// on it.
pub(super) struct SsrcLayer {
    ssrc: Ssrc,
    layer: usize,
    newest: u64,
}

/// A camera packet placed: its layer, and whether it is the newest of its SSRC so far (not
/// a repair or a reordered packet arriving after later ones).
#[derive(Clone, Copy, Debug)]
pub(super) struct CameraPacket {
    pub(super) layer: usize,
    pub(super) in_order: bool,
}

/// One layer of a camera.
pub(super) struct Layer {
    /// Its rid; None for a camera without simulcast.
    pub(super) rid: Option<Rid>,
    rate: RateMeter,
    /// When a keyframe was last asked for (requests are throttled), and whether one is owed
    /// to a receiver that asked meanwhile.
    last_keyframe_request: Option<Instant>,
    /// When a receiver's own request last led to one (`RECEIVER_KEYFRAME_INTERVAL`).
    last_receiver_request: Option<Instant>,
    keyframe_owed: bool,
}

impl Layer {
    fn new(rid: Option<Rid>) -> Layer {
        Layer {
            rid,
            rate: RateMeter::default(),
            last_keyframe_request: None,
            last_receiver_request: None,
            keyframe_owed: false,
        }
    }
}

/// A receiver's bandwidth estimates. The layer choice uses the lower of the two it has.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Downlink {
    /// str0m's estimate from the receiver's transport-cc feedback.
    twcc: Option<u64>,
    /// The receiver's own REMB (browsers send it when transport-cc is not negotiated).
    remb: Option<u64>,
    /// The share of the packets sent toward the receiver that its transport-cc feedback
    /// reported lost over the last second (str0m's peer stats); None: not known yet.
    loss: Option<f32>,
    /// What str0m's estimator was last told: the rate to sustain (with padding) so the
    /// estimate can grow to the next layer up, and the rate the videos could use at best.
    minimum: u64,
    desired: u64,
    /// Our own probing toward the next layer up (`Probing`).
    probing: Probing,
    /// Restarting str0m's estimator once a congested link is clean again (`Recovery`).
    recovery: Recovery,
}

/// A fresh start for str0m's estimator toward a receiver whose link was congested and is
/// clean again, while it is short of the next layer.
///
/// During congestion str0m's loss-based controller drives the estimate far below what the
/// link carries (to a quarter of a 300 kbit/s limit, on this machine), and it remembers
/// that loss for seconds after the loss ended: str0m does not probe while it is
/// loss-limited, and a probe goes to at most twice the estimate. In the browser test of a
/// 300 kbit/s limit, waiting that out was most of the 7 to 13 s climb back to the top
/// layer. So when the receiver's feedback shows a clean second after congestion, the
/// engine resets the estimator, starting from what the receiver gets now
/// (`Engine::choose_layers`); a new estimator probes at once, at 3 and 6 times its start. At most one reset per `RESET_INTERVAL`: a link that stays narrow pays
/// two short probe bursts per interval, as it pays one per `PROBE_MAX_INTERVAL` already.
#[derive(Clone, Copy, Debug, Default)]
struct Recovery {
    /// Loss of `CONGESTED_LOSS` or more was reported since the last reset.
    congested: bool,
    /// When the last reset was.
    reset_at: Option<Instant>,
}

/// The least time between two resets of the estimator toward one receiver.
const RESET_INTERVAL: Duration = Duration::from_secs(2);

/// Probes toward a receiver held below the layer it could get.
///
/// str0m probes on its own only at the start, when `desired` rises, and after long
/// stagnation (15 s); otherwise its estimate grows by about 8 % a second from what is sent.
/// A receiver whose link was held down and then freed would climb back from a few hundred
/// kbit/s for ten seconds or more. So while the estimate is short of the next layer, the
/// engine dips `desired` for one tick and raises it back: str0m sees an allocation increase
/// and probes at up to twice its estimate, and a probe that finds room leads to its
/// exponential probes. A probe that finds no room on a link that loses packets (it really is
/// that narrow) backs off up to `PROBE_MAX_INTERVAL`, so a narrow link carries one short
/// burst every few seconds; a link without loss is probed every `PROBE_FIRST_INTERVAL`. No
/// probe goes into a congested link (`congestion_fall`).
#[derive(Clone, Copy, Debug, Default)]
struct Probing {
    /// When the next probe is due; None while the estimate suffices (or nothing is known).
    next: Option<Instant>,
    /// The wait before the probe after `next` (doubles per probe, up to the maximum).
    interval: Duration,
    /// `desired` was dipped this tick: raise it at the next.
    dipped: bool,
    /// The estimate when the last probe was sent: one that has grown by a
    /// `PROBE_ON_GROWTH_PERCENT` since suggests the link has freed, and is probed at once.
    probed_at_estimate: u64,
    /// When the last probe was sent.
    probed_at: Option<Instant>,
    /// The estimate seen last tick, and when it last fell in a way that says the link is
    /// congested (`Downlink::congestion_fall`): no probe into a congested link.
    last_estimate: u64,
    fell_at: Option<Instant>,
}

/// The first wait before probing a receiver whose estimate is short of the next layer.
const PROBE_FIRST_INTERVAL: Duration = Duration::from_millis(1000);

/// The longest wait between two probes toward a receiver that stays short.
const PROBE_MAX_INTERVAL: Duration = Duration::from_millis(2000);

/// Growth of the estimate since the last probe that brings the next probe forward.
const PROBE_ON_GROWTH_PERCENT: u64 = 115;

/// The least time between two probes toward one receiver.
const PROBE_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// No probe within this long after the receiver's estimate fell (its link is congested).
const PROBE_AFTER_FALL: Duration = Duration::from_millis(1000);

/// Loss over the last second at or above which a falling estimate means congestion.
const CONGESTED_LOSS: f32 = 0.02;

/// A fall of the estimate in one step by this share or more means congestion even without
/// loss: the delay-based controller backs off sharply (to 85 % of what was acknowledged)
/// when queues grow.
const SHARP_FALL_PERCENT: u64 = 10;

impl Downlink {
    /// Whether str0m's estimator should start afresh now, and from which rate: Some when the
    /// receiver is short of `needed` and its link is clean again after congestion
    /// (`Recovery`). `getting`: the bitrate of the layers it receives now.
    /// The estimate then reads as that rate, until str0m reports its next.
    fn restart(&mut self, now: Instant, needed: Option<u64>, getting: u64) -> Option<u64> {
        let short = self.short_of(needed);
        let r = &mut self.recovery;
        if !short {
            r.congested = false;
            return None;
        }
        match self.loss {
            Some(l) if l < CONGESTED_LOSS => {}
            Some(_) => {
                r.congested = true;
                return None;
            }
            None => return None,
        }
        let recent = r
            .reset_at
            .is_some_and(|t| now.saturating_duration_since(t) < RESET_INTERVAL);
        if !r.congested || recent {
            return None;
        }
        r.congested = false;
        r.reset_at = Some(now);
        // A probe now has nothing to wait for: the fall it was held by was the congestion.
        self.probing.fell_at = None;
        let start = self.twcc.unwrap_or(0).max(getting);
        self.twcc = Some(start);
        Some(start)
    }

    /// Whether str0m's estimate is short of what the next layer `needed` (None: nothing
    /// above to reach).
    fn short_of(&self, needed: Option<u64>) -> bool {
        matches!((self.twcc, needed), (Some(e), Some(n)) if e < n)
    }

    fn estimate(&self) -> Option<u64> {
        match (self.twcc, self.remb) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decides what str0m's estimator is told; true when that changed (by a tenth or
    /// more, so the estimator is not retuned every tick, or for a probe). `needed`: the
    /// estimate the receiver needs to move up one layer on the videos that have one above
    /// (None: all at their top); `best`: the sum of the received videos' top layers.
    ///
    /// Below the top, the estimate is kept proven up to `needed`: str0m pads up to
    /// `minimum`, never beyond its estimate and never while the link is congested, so the
    /// estimate can grow to the next layer once the link allows (without it the estimate
    /// stays near 1.5 times what is sent, short of any higher layer). At the top, media
    /// alone keeps it. `desired`, what str0m's probes try to discover, is `best` with
    /// headroom; while the estimate is short of `needed`, it is dipped and raised to make
    /// str0m probe (`Probing`).
    fn tune(&mut self, now: Instant, needed: Option<u64>, best: u64) -> bool {
        let minimum = needed.unwrap_or(0);
        let desired = best * DESIRED_PERCENT / 100;
        let probe = self.probe(now, needed);
        let desired = if probe == Some(true) {
            desired * 9 / 10
        } else {
            desired
        };
        let moved = |old: u64, new: u64| new.abs_diff(old) * 10 > old;
        if probe.is_none() && !moved(self.minimum, minimum) && !moved(self.desired, desired) {
            return false;
        }
        self.minimum = minimum;
        self.desired = desired;
        true
    }

    /// Where the probing stands this tick: Some(true) dips `desired`, Some(false) raises it
    /// back (the probe), None leaves it.
    fn probe(&mut self, now: Instant, needed: Option<u64>) -> Option<bool> {
        let short = self.short_of(needed);
        let p = &mut self.probing;
        let estimate = self.twcc;
        if let Some(e) = estimate {
            if congestion_fall(p.last_estimate, e, self.loss) {
                p.fell_at = Some(now);
            }
            p.last_estimate = e;
        }
        if !short {
            *p = Probing {
                last_estimate: p.last_estimate,
                fell_at: p.fell_at,
                ..Probing::default()
            };
            return None;
        }
        if p.dipped {
            p.dipped = false;
            return Some(false);
        }
        if p.interval.is_zero() {
            p.interval = PROBE_FIRST_INTERVAL;
        }
        let next = *p.next.get_or_insert(now + p.interval);
        let congested = p
            .fell_at
            .is_some_and(|t| now.saturating_duration_since(t) < PROBE_AFTER_FALL);
        let grown = estimate.is_some_and(|e| {
            p.probed_at_estimate > 0 && e * 100 >= p.probed_at_estimate * PROBE_ON_GROWTH_PERCENT
        });
        let early = grown
            && p.probed_at
                .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_MIN_INTERVAL);
        if (now < next && !early) || congested {
            return None;
        }
        p.dipped = true;
        p.probed_at_estimate = estimate.unwrap_or(0);
        p.probed_at = Some(now);
        debug!(?estimate, ?needed, interval = ?p.interval, early, "probe");
        p.next = Some(now + p.interval);
        // A link without loss backs off no further than the first interval: a probe costs it
        // one short burst, and an estimate still catching up after a limit gets there sooner.
        let lossless = self.loss.is_some_and(|l| l < CONGESTED_LOSS);
        p.interval = if lossless {
            PROBE_FIRST_INTERVAL
        } else {
            (p.interval * 2).min(PROBE_MAX_INTERVAL)
        };
        Some(true)
    }
}

/// Whether the estimate moving from `before` to `after` says the link is congested.
///
/// Without loss the only such fall is a sharp one (delay-based backoff). A gradual fall with
/// no loss is str0m's loss-based controller remembering the loss of the last few seconds
/// (its window is 15 observations of 250 ms or more): a link freed after a limit reads as
/// falling for four seconds or so after its loss ended, and a probe is what lifts it (a
/// successful probe resets that controller's estimate). With loss, or loss not known yet,
/// any fall of 2 % counts.
fn congestion_fall(before: u64, after: u64, loss: Option<f32>) -> bool {
    match loss {
        Some(l) if l < CONGESTED_LOSS => after * 100 <= before * (100 - SHARP_FALL_PERCENT),
        _ => after < before * 98 / 100,
    }
}

/// The layers of the camera m-line `mid` as the session negotiated them: one per rid of its
/// `a=simulcast`, else one without a rid.
pub(super) fn camera_layers(rtc: &Rtc, mid: Option<Mid>) -> Vec<Layer> {
    let rids = mid
        .and_then(|mid| rtc.media(mid))
        .and_then(|m| match m.rids_rx() {
            Rids::Specific(rids) if !rids.is_empty() => Some(rids.clone()),
            _ => None,
        });
    match rids {
        Some(rids) => rids
            .into_iter()
            .take(MAX_LAYERS)
            .map(|r| Layer::new(Some(r)))
            .collect(),
        None => vec![Layer::new(None)],
    }
}

impl Engine {
    /// The layer of `publisher`'s camera that a packet on `ssrc` with sequence number `seq`
    /// belongs to, counting its bytes into that layer's bitrate. None for a packet no layer
    /// claims.
    pub(super) fn camera_layer(
        &mut self,
        now: Instant,
        publisher: MemberId,
        ssrc: Ssrc,
        seq: SeqNo,
        bytes: usize,
    ) -> Option<CameraPacket> {
        let m = self.members.get_mut(&publisher)?;
        let video = m.video.as_mut()?;
        let seq = *seq;
        let placed = match video.ssrc_layers.iter_mut().find(|s| s.ssrc == ssrc) {
            Some(known) => {
                let in_order = seq > known.newest;
                known.newest = known.newest.max(seq);
                CameraPacket {
                    layer: known.layer,
                    in_order,
                }
            }
            None => {
                // A new SSRC: str0m knows its rid from the stream's first packets.
                let rid = m.rtc.direct_api().stream_rx(&ssrc).and_then(|s| s.rid());
                let layer = video.layers.iter().position(|l| l.rid == rid)?;
                if video.ssrc_layers.len() >= MAX_SSRC_MAPPINGS {
                    video.ssrc_layers.remove(0);
                }
                video.ssrc_layers.push(SsrcLayer {
                    ssrc,
                    layer,
                    newest: seq,
                });
                CameraPacket {
                    layer,
                    in_order: true,
                }
            }
        };
        video
            .layers
            .get_mut(placed.layer)?
            .rate
            .add(now, bytes + PACKET_OVERHEAD);
        Some(placed)
    }

    /// A new bandwidth estimate toward `receiver`.
    pub(super) fn on_estimate(&mut self, receiver: MemberId, kind: BweKind) {
        let Some(video) = self
            .members
            .get_mut(&receiver)
            .and_then(|m| m.video.as_mut())
        else {
            return;
        };
        match kind {
            // Without the means to probe (no transport-cc toward this receiver), str0m's
            // figure is its starting guess, not a measurement: REMB, if any, decides.
            BweKind::Twcc {
                estimate,
                can_probe,
            } => video.downlink.twcc = can_probe.then(|| estimate.as_u64()),
            BweKind::Remb { estimate, .. } => video.downlink.remb = Some(estimate.as_u64()),
            _ => {}
        }
    }

    /// `receiver`'s peer stats: the loss its feedback reports, for `Probing`.
    pub(super) fn on_peer_stats(&mut self, receiver: MemberId, loss: Option<f32>) {
        if let Some(video) = self
            .members
            .get_mut(&receiver)
            .and_then(|m| m.video.as_mut())
        {
            video.downlink.loss = loss;
        }
    }

    /// Every video slot's target layer, from its receiver's estimate and its publisher's
    /// layers; a slot whose target is not the layer it forwards asks for the target's
    /// keyframe. Then each receiver's estimator is told what to sustain and aim for.
    pub(super) fn choose_layers(&mut self, now: Instant) {
        // The layer bitrates of every camera, measured once.
        let mut rates: Vec<(MemberId, [u64; MAX_LAYERS], usize)> = Vec::new();
        for (id, m) in &self.members {
            if let Some(v) = &m.video {
                let mut r = [0; MAX_LAYERS];
                for (slot, layer) in r.iter_mut().zip(&v.layers) {
                    *slot = layer.rate.bitrate(now);
                }
                rates.push((*id, r, v.layers.len().min(MAX_LAYERS)));
            }
        }
        let bitrates_of = |publisher: MemberId| {
            rates
                .iter()
                .find(|(p, _, _)| *p == publisher)
                .map(|(_, r, n)| &r[..*n])
        };
        let mut asks: Vec<(MemberId, Option<usize>)> = Vec::new();
        let mut retune: Vec<MemberId> = Vec::new();
        for (id, r) in self.members.iter_mut() {
            let Some(video) = &mut r.video else {
                continue;
            };
            // The videos that share the estimate: those whose camera is sending.
            let videos = r
                .slots
                .iter()
                .filter(|s| s.kind == TrackKind::Video)
                .filter_map(|s| s.occupant.and_then(bitrates_of))
                .filter(|b| layers::top_bitrate(b) > 0)
                .count();
            let estimate = video.downlink.estimate();
            let (mut sustain, mut upgrade, mut best, mut getting) = (Vec::new(), false, 0, 0);
            for slot in r.slots.iter_mut().filter(|s| s.kind == TrackKind::Video) {
                let Some(publisher) = slot.occupant else {
                    continue;
                };
                let Some(bitrates) = bitrates_of(publisher) else {
                    continue;
                };
                let input = LayerInput {
                    estimate,
                    videos,
                    bitrates,
                };
                let before = slot.target.layer;
                slot.target = layers::choose_layer(slot.target, &input, now);
                if slot.target.layer != before {
                    debug!(receiver = ?id, ?publisher, layer = ?slot.target.layer, ?estimate, "layer chosen");
                }
                best += layers::top_bitrate(bitrates);
                let next = layers::upgrade_bitrate(bitrates, slot.target.layer);
                upgrade |= next.is_some();
                let current = slot.target.layer.and_then(|l| bitrates.get(l).copied());
                getting += current.unwrap_or(0);
                sustain.push(next.or(current).unwrap_or(0));
                let pending = slot.wait_keyframe || slot.target.layer != slot.layer;
                // An unconnected receiver's slots are asked for by its Connected event.
                let ready = r.connected && slot.settle_until.is_none();
                if slot.target.layer.is_none() || !pending || !ready {
                    continue;
                }
                let due = slot.target.layer != before
                    || slot
                        .asked_at
                        .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_RETRY);
                if due {
                    slot.asked_at = Some(now);
                    asks.push((publisher, slot.target.layer));
                }
            }
            let needed = upgrade.then(|| layers::estimate_needed(sustain));
            if let Some(start) = video.downlink.restart(now, needed, getting) {
                debug!(receiver = ?id, start, ?estimate, ?needed, "estimator restarted: the link is clean again");
                r.rtc.bwe().reset(Bitrate::bps(start.max(1)));
                retune.push(*id);
            }
            if video.downlink.tune(now, needed, best) {
                retune.push(*id);
            }
        }
        retune.dedup();
        for id in retune {
            if let Some(m) = self.members.get_mut(&id) {
                let (minimum, desired) = m
                    .video
                    .as_ref()
                    .map_or((0, 0), |v| (v.downlink.minimum, v.downlink.desired));
                debug!(receiver = ?id, minimum, desired, estimate = ?m.video.as_ref().and_then(|v| v.downlink.estimate()), "estimator retuned");
                m.rtc
                    .bwe()
                    .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired.max(1)));
            }
            self.drain(now, id);
        }
        for (publisher, layer) in asks {
            self.ask_keyframe(now, publisher, layer);
        }
    }

    /// Asks `publisher` for a keyframe (PLI) of one layer, or of every layer (None), at
    /// most once per `KEYFRAME_REQUEST_INTERVAL` per layer; a request inside it is owed and
    /// sent by `send_owed_keyframe_requests`.
    pub(super) fn ask_keyframe(&mut self, now: Instant, publisher: MemberId, layer: Option<usize>) {
        let Some(m) = self.members.get_mut(&publisher) else {
            return;
        };
        let Some(video) = &mut m.video else {
            return;
        };
        let Some(mid) = video.mid else {
            return;
        };
        let mut direct = m.rtc.direct_api();
        for (i, l) in video.layers.iter_mut().enumerate() {
            if layer.is_some_and(|wanted| wanted != i) {
                continue;
            }
            let recent = l
                .last_keyframe_request
                .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL);
            if recent {
                l.keyframe_owed = true;
                continue;
            }
            match direct.stream_rx_by_mid(mid, l.rid) {
                Some(rx) => {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    l.last_keyframe_request = Some(now);
                    l.keyframe_owed = false;
                }
                // Nothing from this layer yet: ask again once it is there.
                None => l.keyframe_owed = true,
            }
        }
        self.drain(now, publisher);
    }

    /// A receiver's own keyframe request (its PLI or FIR) for `layer` of `publisher`: passed
    /// on at most once per `RECEIVER_KEYFRAME_INTERVAL` per layer; one inside it is dropped
    /// (a decoder still broken asks again).
    pub(super) fn ask_keyframe_for_receiver(
        &mut self,
        now: Instant,
        publisher: MemberId,
        layer: Option<usize>,
    ) {
        let Some(video) = self
            .members
            .get_mut(&publisher)
            .and_then(|m| m.video.as_mut())
        else {
            return;
        };
        let mut due = false;
        for (i, l) in video.layers.iter_mut().enumerate() {
            if layer.is_some_and(|wanted| wanted != i) {
                continue;
            }
            let recent = l
                .last_receiver_request
                .is_some_and(|t| now.saturating_duration_since(t) < RECEIVER_KEYFRAME_INTERVAL);
            if !recent {
                l.last_receiver_request = Some(now);
                due = true;
            }
        }
        if due {
            self.ask_keyframe(now, publisher, layer);
        }
    }

    /// The keyframe requests that the throttle (or a layer not yet sending) held back.
    pub(super) fn send_owed_keyframe_requests(&mut self, now: Instant) {
        let mut owed: Vec<(MemberId, usize)> = Vec::new();
        for (id, m) in &self.members {
            if let Some(v) = &m.video {
                for (i, l) in v.layers.iter().enumerate() {
                    if l.keyframe_owed {
                        owed.push((*id, i));
                    }
                }
            }
        }
        for (id, layer) in owed {
            self.ask_keyframe(now, id, Some(layer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A receiver whose estimate is `estimate`, one tick of the engine later.
    fn tick(d: &mut Downlink, now: Instant, estimate: u64, needed: Option<u64>) -> Option<bool> {
        d.twcc = Some(estimate);
        d.probe(now, needed)
    }

    /// The ticks (ms after `t0`) at which a probe is sent, over `ms` of 100 ms ticks with
    /// the estimate given by `estimate(ms)`.
    fn probes(ms: u64, needed: Option<u64>, estimate: impl Fn(u64) -> u64) -> Vec<u64> {
        probes_with_loss(ms, needed, None, estimate)
    }

    /// `probes`, toward a receiver whose feedback reports `loss`.
    fn probes_with_loss(
        ms: u64,
        needed: Option<u64>,
        loss: Option<f32>,
        estimate: impl Fn(u64) -> u64,
    ) -> Vec<u64> {
        let t0 = Instant::now();
        let mut d = Downlink {
            loss,
            ..Downlink::default()
        };
        let mut sent = Vec::new();
        let mut dipped = false;
        for t in (0..ms).step_by(100) {
            match tick(&mut d, t0 + MS * t as u32, estimate(t), needed) {
                Some(true) => dipped = true,
                Some(false) => {
                    assert!(dipped, "a raise follows a dip");
                    dipped = false;
                    sent.push(t);
                }
                None => assert!(!dipped, "a dip is raised back at the next tick"),
            }
        }
        sent
    }

    #[test]
    fn a_receiver_short_of_the_next_layer_is_probed_with_backoff() {
        // A flat 300 kbps, 800 needed: probes at 1 s, then 2 s apart (the dip a tick before).
        assert_eq!(
            probes(8_000, Some(800_000), |_| 300_000),
            vec![1_100, 2_100, 4_100, 6_100]
        );
    }

    #[test]
    fn no_probe_without_a_layer_to_reach_or_with_enough_estimate() {
        assert!(probes(8_000, None, |_| 300_000).is_empty());
        assert!(probes(8_000, Some(800_000), |_| 900_000).is_empty());
    }

    #[test]
    fn a_growing_estimate_brings_the_next_probe_forward() {
        // Flat until 3 s, then growing 20 % per 500 ms: probes follow the growth, 500 ms
        // or more apart, instead of waiting out the 2 s backoff.
        let sent = probes(6_000, Some(10_000_000), |t| {
            if t < 3_000 {
                300_000
            } else {
                (300_000.0 * 1.2f64.powf((t - 3_000) as f64 / 500.0)) as u64
            }
        });
        assert_eq!(&sent[..2], &[1_100, 2_100], "{sent:?}");
        let after: Vec<u64> = sent.iter().copied().filter(|t| *t > 3_000).collect();
        assert!(after.len() >= 4, "{sent:?}");
        assert!(after.windows(2).all(|w| w[1] - w[0] >= 500), "{sent:?}");
    }

    #[test]
    fn no_probe_within_a_second_of_a_falling_estimate() {
        // The estimate falls by 15 % at 4 s (the link is congested): the probe due at
        // 4.1 s waits until a second has passed since.
        let sent = probes(6_000, Some(800_000), |t| {
            if t < 4_000 {
                300_000
            } else {
                255_000
            }
        });
        assert_eq!(sent, vec![1_100, 2_100, 5_100]);
    }

    /// str0m's loss-based controller after a limit is lifted: 5 % less every 500 ms.
    fn lingering(t: u64) -> u64 {
        (300_000.0 * 0.95f64.powi((t / 500) as i32)) as u64
    }

    #[test]
    fn a_gradual_fall_without_loss_is_probed_every_second() {
        // No loss reported: the fall is the estimator's memory of a limit, not congestion,
        // and the probe is what lifts it; with no loss the backoff stays at 1 s.
        assert_eq!(
            probes_with_loss(5_000, Some(800_000), Some(0.0), lingering),
            vec![1_100, 2_100, 3_100, 4_100]
        );
        // The same fall with loss (or loss not known) is congestion: no probe into it.
        assert!(probes_with_loss(5_000, Some(800_000), Some(0.05), lingering).is_empty());
        assert!(probes(5_000, Some(800_000), lingering).is_empty());
    }

    /// `Downlink::restart` over ticks of 100 ms: the estimate 200 kbps, the next layer
    /// needing 800, the receiver getting 250; `loss(t)` is its feedback's loss at `t` ms.
    /// The ticks (ms) at which the estimator is restarted, with the rate it starts from.
    fn restarts(
        ms: u64,
        needed: Option<u64>,
        loss: impl Fn(u64) -> Option<f32>,
    ) -> Vec<(u64, u64)> {
        let t0 = Instant::now();
        let mut d = Downlink::default();
        let mut out = Vec::new();
        for t in (0..ms).step_by(100) {
            d.twcc = Some(200_000);
            d.loss = loss(t);
            if let Some(start) = d.restart(t0 + MS * t as u32, needed, 250_000) {
                out.push((t, start));
            }
        }
        out
    }

    #[test]
    fn a_link_clean_again_after_congestion_restarts_the_estimator_from_what_it_gets() {
        // 10 % loss until 3 s, clean after: one restart at the first clean tick, from the
        // 250 kbps the receiver gets (more than the estimate).
        let lifted = |t| Some(if t < 3_000 { 0.10 } else { 0.0 });
        assert_eq!(
            restarts(8_000, Some(800_000), lifted),
            vec![(3_000, 250_000)]
        );
        // Never without congestion first, nor with loss not known, nor with nothing to
        // reach.
        assert!(restarts(8_000, Some(800_000), |_| Some(0.0)).is_empty());
        assert!(restarts(8_000, Some(800_000), |_| None).is_empty());
        assert!(restarts(8_000, None, lifted).is_empty());
    }

    #[test]
    fn restarts_are_two_seconds_apart_however_the_loss_comes_and_goes() {
        // Loss in every other 500 ms: a restart at the first clean tick, then none until
        // 2 s have passed and the link was congested again since.
        let flapping = |t: u64| {
            Some(if (t / 500).is_multiple_of(2) {
                0.10
            } else {
                0.0
            })
        };
        let at: Vec<u64> = restarts(8_000, Some(800_000), flapping)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(at, vec![500, 2_500, 4_500, 6_500]);
    }

    #[test]
    fn a_sharp_fall_holds_the_probe_even_without_loss() {
        // 15 % at once at 4 s: the delay-based controller backing off from a growing queue.
        let sent = probes_with_loss(6_000, Some(800_000), Some(0.0), |t| {
            if t < 4_000 {
                300_000
            } else {
                255_000
            }
        });
        assert_eq!(sent, vec![1_100, 2_100, 3_100, 5_100]);
    }
}
