//! From what the members counted to the figures of a run, and the side-by-side table.

use serde::Serialize;

use crate::peer;
use crate::run::RunOutput;

/// Above this share of its core the generator is taken as saturated: its own lateness
/// would then be in the figures.
pub const GEN_SATURATED_PCT: f64 = 90.0;
/// A send this late (p99) after its schedule also means a saturated generator.
pub const GEN_SATURATED_LAG_MS: f64 = 5.0;
/// The system under test is saturated above this loss or this share of its core.
pub const SYSTEM_SATURATED_LOSS_PCT: f64 = 0.5;
pub const SYSTEM_SATURATED_CPU_PCT: f64 = 95.0;
/// Other processes above this share of a core during a window make its figures suspect.
pub const OTHER_LOAD_WARN_PCT: f64 = 10.0;

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub system: &'static str,
    pub rooms: usize,
    pub members_per_room: usize,
    /// Members in the rooms during the window: all of them, but with `--overload` only
    /// those the server admitted.
    pub admitted: usize,
    /// With `--overload`: the members still refused as at capacity (-13001) when their
    /// retries ran out, one per room at most (a room's joins stop there).
    pub refused: Vec<String>,
    /// Every -13001 answer, the joins tried again included.
    pub refusals: u64,
    pub window_secs: f64,
    /// Copies expected by the receivers (each sender's packets of the window, times the
    /// other members of its room that get them) and received: audio and video together.
    pub expected: u64,
    pub received: u64,
    pub loss_pct: f64,
    /// The video part of those (`--video`): each camera's packets of the window times the
    /// members that get its video by default.
    pub video_expected: u64,
    pub video_received: u64,
    pub video_loss_pct: f64,
    pub video_per_sec: f64,
    pub video_latency_us_p50: Option<f64>,
    pub video_latency_us_p99: Option<f64>,
    pub misrouted: u64,
    pub mislabelled: u64,
    pub unstamped: u64,
    pub reordered: u64,
    pub duplicates: u64,
    /// (receiver, sender) pairs of a room where nothing of the window arrived.
    pub unheard_pairs: u64,
    /// Packets the receivers decrypted, and those accounted from the clear header only.
    pub decrypted: u64,
    pub header_only: u64,
    /// Decrypted samples that contradicted the header accounting (must be 0).
    pub sample_mismatches: u64,
    pub forwarded_per_sec: f64,
    pub system_cpu_pct: Option<f64>,
    pub cpu_us_per_packet: Option<f64>,
    pub latency_us_p50: Option<f64>,
    pub latency_us_p99: Option<f64>,
    pub latency_us_max: Option<f64>,
    /// From `join` sent to the first packet of another member, for every member but the
    /// first of each room (who finds nobody talking yet).
    pub join_to_audio_ms_p50: Option<f64>,
    pub join_to_audio_ms_p99: Option<f64>,
    /// The same joins' phases, p50 of each: `join` sent to its joinResult read, to ICE and
    /// DTLS up, to the first packet of another member.
    pub join_phases_ms_p50: Option<[f64; 3]>,
    pub rss_kib_per_member: Option<f64>,
    pub gen_cpu_pct: f64,
    pub gen_send_lag_ms_p99: Option<f64>,
    /// CPU of other processes on the machine during the window, % of one core.
    pub other_cpu_pct: f64,
    pub send_errors: u64,
    pub join_failures: Vec<String>,
    pub late_errors: Vec<String>,
}

impl Summary {
    pub fn generator_saturated(&self, gen_threads: usize) -> bool {
        self.gen_cpu_pct > GEN_SATURATED_PCT * gen_threads.max(1) as f64
            || self
                .gen_send_lag_ms_p99
                .is_some_and(|l| l > GEN_SATURATED_LAG_MS)
    }

    pub fn system_saturated(&self) -> bool {
        !self.join_failures.is_empty()
            || self.loss_pct > SYSTEM_SATURATED_LOSS_PCT
            || self
                .system_cpu_pct
                .is_some_and(|c| c > SYSTEM_SATURATED_CPU_PCT)
    }

    /// Everything the smoke test requires: all joined, nothing lost, misrouted or unheard.
    pub fn is_clean(&self) -> bool {
        self.join_failures.is_empty()
            && self.late_errors.is_empty()
            && self.expected > 0
            && self.received == self.expected
            && self.misrouted == 0
            && self.mislabelled == 0
            && self.unstamped == 0
            && self.unheard_pairs == 0
            && self.sample_mismatches == 0
    }
}

/// The value at quantile `q` of sorted samples.
fn quantile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(f64::from(sorted[i.min(sorted.len() - 1)]))
}

fn quantile_f(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// The median of each of three sample sets, if none is empty.
fn medians(mut sets: [Vec<f64>; 3]) -> Option<[f64; 3]> {
    let mut out = [0.0; 3];
    for (set, m) in sets.iter_mut().zip(out.iter_mut()) {
        set.sort_by(f64::total_cmp);
        *m = quantile_f(set, 0.5)?;
    }
    Some(out)
}

pub fn summarize(out: &mut RunOutput) -> Summary {
    let m = out.config.members;
    let secs = out.window.as_secs_f64();
    // Each sender's packets of the window: a range of its sequence numbers.
    let mut window_of = vec![0..0u32; out.config.rooms * m];
    let mut video_window_of = vec![0..0u32; out.config.rooms * m];
    for (member, st) in out.peers.iter().filter(|(_, st)| st.role.sends()) {
        if let (Some(w), Some(first)) = (window_of.get_mut(member.gid as usize), st.first_in_window)
        {
            *w = first..first + st.sent_in_window;
        }
        if let (Some(w), Some(first)) = (
            video_window_of.get_mut(member.gid as usize),
            st.video_first_in_window,
        ) {
            *w = first..first + st.video_sent_in_window;
        }
    }
    let (mut video_expected, mut video_received) = (0u64, 0u64);
    let (mut expected, mut received, mut unheard) = (0u64, 0u64, 0u64);
    let (mut misrouted, mut mislabelled, mut unstamped, mut reordered, mut dups, mut send_errors) =
        (0, 0, 0, 0, 0, 0);
    let (mut decrypted, mut header_only, mut mismatches) = (0, 0, 0);
    let mut joins = Vec::new();
    let mut phases: [Vec<f64>; 3] = Default::default();
    // With --overload, a member the server refused is neither a receiver nor a sender (it
    // sent nothing, so nobody expects its packets).
    // (The floor has no joins: all its members count.)
    let overload = out.config.overload && out.system == crate::run::System::Voipchat;
    let admitted = |st: &crate::peer::PeerStats| !overload || st.join_sent.is_some();
    let admitted_count = if overload {
        out.peers.iter().filter(|(_, st)| admitted(st)).count()
    } else {
        out.config.rooms * m
    };
    for (member, st) in out.peers.iter().filter(|(_, st)| admitted(st)) {
        misrouted += st.misrouted;
        mislabelled += st.mislabelled;
        unstamped += st.unstamped;
        send_errors += st.send_errors;
        decrypted += st.decrypted;
        header_only += st.header_only;
        mismatches += st.sample_mismatches;
        // A publisher session (Janus) sends; its member's receptions are on its subscriber.
        if !st.role.receives() {
            continue;
        }
        // Each (receiver, sender) pair: what the sender sent in the window that this
        // receiver should get, and how much of it arrived.
        let mut count = |pairs: &[crate::peer::Pair],
                         windows: &[std::ops::Range<u32>],
                         gets: &dyn Fn(u32) -> bool|
         -> (u64, u64) {
            let (mut exp, mut got_all) = (0, 0);
            for (pos, pair) in pairs.iter().enumerate().filter(|(p, _)| gets(*p as u32)) {
                let window = windows
                    .get(member.room as usize * m + pos)
                    .cloned()
                    .unwrap_or(0..0);
                let sent = u64::from(window.end - window.start);
                let got = u64::from(pair.count_in(window));
                exp += sent;
                got_all += got;
                reordered += u64::from(pair.reordered);
                dups += u64::from(pair.duplicates);
                if sent > 0 && got == 0 {
                    unheard += 1;
                }
            }
            (exp, got_all)
        };
        let (e, r) = count(&st.from, &window_of, &|pos| pos != member.pos);
        let (ve, vr) = count(&st.from_video, &video_window_of, &|pos| {
            peer::receives_video(member.pos, pos)
        });
        expected += e;
        received += r;
        video_expected += ve;
        video_received += vr;
        if member.pos > 0 {
            if let (Some(j), Some(a)) = (st.join_sent, st.first_audio) {
                joins.push(a.saturating_duration_since(j).as_secs_f64() * 1e3);
            }
            if let (Some(j), Some(r), Some(c), Some(a)) =
                (st.join_sent, st.answered, st.connected_at, st.first_audio)
            {
                let ms = |from: std::time::Instant, to: std::time::Instant| {
                    to.saturating_duration_since(from).as_secs_f64() * 1e3
                };
                phases[0].push(ms(j, r));
                phases[1].push(ms(r, c));
                phases[2].push(ms(c, a));
            }
        }
    }
    let (expected, received) = (expected + video_expected, received + video_received);
    out.latency_ns.sort_unstable();
    out.video_latency_ns.sort_unstable();
    out.send_lag_ns.sort_unstable();
    joins.sort_by(f64::total_cmp);
    let us = |v: Option<f64>| v.map(|ns| ns / 1e3);
    let window_ok = secs > 0.0;
    let system_cpu_us = out.system_cpu.map(|c| c.as_secs_f64() * 1e6);
    let members = admitted_count as f64;
    Summary {
        system: out.system.name(),
        rooms: out.config.rooms,
        members_per_room: m,
        admitted: admitted_count,
        refused: std::mem::take(&mut out.refused),
        refusals: out.refusals,
        window_secs: secs,
        expected,
        received,
        loss_pct: loss_pct(expected, received),
        video_expected,
        video_received,
        video_loss_pct: loss_pct(video_expected, video_received),
        video_per_sec: if window_ok {
            video_received as f64 / secs
        } else {
            0.0
        },
        video_latency_us_p50: us(quantile(&out.video_latency_ns, 0.5)),
        video_latency_us_p99: us(quantile(&out.video_latency_ns, 0.99)),
        misrouted,
        mislabelled,
        unstamped,
        reordered,
        duplicates: dups,
        unheard_pairs: unheard,
        decrypted,
        header_only,
        sample_mismatches: mismatches,
        forwarded_per_sec: if window_ok {
            received as f64 / secs
        } else {
            0.0
        },
        system_cpu_pct: system_cpu_us
            .filter(|_| window_ok)
            .map(|c| c / (secs * 1e4)),
        cpu_us_per_packet: system_cpu_us
            .filter(|_| received > 0)
            .map(|c| c / received as f64),
        latency_us_p50: us(quantile(&out.latency_ns, 0.5)),
        latency_us_p99: us(quantile(&out.latency_ns, 0.99)),
        latency_us_max: us(out.latency_ns.last().map(|v| f64::from(*v))),
        join_to_audio_ms_p50: quantile_f(&joins, 0.5),
        join_phases_ms_p50: medians(phases),
        join_to_audio_ms_p99: quantile_f(&joins, 0.99),
        rss_kib_per_member: match (out.rss_before_kib, out.rss_with_kib) {
            (Some(b), Some(w)) if members > 0.0 => Some((w as f64 - b as f64) / members),
            _ => None,
        },
        gen_cpu_pct: if window_ok {
            100.0 * out.gen_cpu.as_secs_f64() / secs
        } else {
            0.0
        },
        gen_send_lag_ms_p99: quantile(&out.send_lag_ns, 0.99).map(|ns| ns / 1e6),
        other_cpu_pct: if window_ok {
            100.0 * out.other_cpu.as_secs_f64() / secs
        } else {
            0.0
        },
        send_errors,
        join_failures: std::mem::take(&mut out.join_failures),
        late_errors: std::mem::take(&mut out.late_errors),
    }
}

fn loss_pct(expected: u64, received: u64) -> f64 {
    if expected > 0 {
        100.0 * (expected.saturating_sub(received)) as f64 / expected as f64
    } else {
        0.0
    }
}

/// The video part of a row (`--video`), printed under it.
pub fn video_line(s: &Summary) -> Option<String> {
    (s.video_expected > 0).then(|| {
        format!(
            "  {}: video {:.0} of the {:.0} copies/s, {:.3} % lost, hop p50 {} µs, p99 {} µs",
            s.system,
            s.video_per_sec,
            s.forwarded_per_sec,
            s.video_loss_pct,
            opt(s.video_latency_us_p50, 0),
            opt(s.video_latency_us_p99, 0),
        )
    })
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

/// The table's header.
pub fn header() -> String {
    let h = format!(
        "{:>5} {:>5} {:<8} {:>9} {:>7} {:>5} {:>7} {:>6} {:>6} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6} {:>6} {:>7} {:>7} {:>7}",
        "rooms", "membs", "system", "fwd pkt/s", "loss %", "misr", "µs/pkt", "CPU %", "p50 µs", "p99 µs",
        "max µs", "join p50", "join p99", "KiB/mbr", "gen %", "lag ms", "other %", "÷floor", "÷janus"
    );
    let line = "-".repeat(h.chars().count());
    format!("{h}\n{line}")
}

/// One row; the ratios are this system's µs/pkt over the floor's and Janus's of the same R.
pub fn row(s: &Summary, vs_floor: Option<f64>, vs_janus: Option<f64>) -> String {
    if !s.join_failures.is_empty() {
        return format!(
            "{:>5} {:>5} {:<8} no window: {} of {} members failed to join (join p50 {} ms, p99 {} ms)",
            s.rooms,
            s.rooms * s.members_per_room,
            s.system,
            s.join_failures.len(),
            s.rooms * s.members_per_room,
            opt(s.join_to_audio_ms_p50, 1),
            opt(s.join_to_audio_ms_p99, 1),
        );
    }
    format!(
        "{:>5} {:>5} {:<8} {:>9.0} {:>7.3} {:>5} {:>7} {:>6} {:>6} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6.1} {:>6} {:>7.1} {:>7} {:>7}",
        s.rooms,
        s.admitted,
        s.system,
        s.forwarded_per_sec,
        s.loss_pct,
        s.misrouted + s.mislabelled,
        opt(s.cpu_us_per_packet, 2),
        opt(s.system_cpu_pct, 1),
        opt(s.latency_us_p50, 0),
        opt(s.latency_us_p99, 0),
        opt(s.latency_us_max, 0),
        opt(s.join_to_audio_ms_p50, 1),
        opt(s.join_to_audio_ms_p99, 1),
        opt(s.rss_kib_per_member, 0),
        s.gen_cpu_pct,
        opt(s.gen_send_lag_ms_p99, 2),
        s.other_cpu_pct,
        times(vs_floor),
        times(vs_janus),
    )
}

fn times(ratio: Option<f64>) -> String {
    ratio
        .map(|r| format!("{r:.2}x"))
        .unwrap_or_else(|| "-".into())
}

/// Why a series stopped at this R, if it must: the generator saturated while driving one
/// of `systems`, or one of them saturated.
pub fn saturation(systems: &[&Summary], gen_threads: usize) -> Option<String> {
    let gen = systems
        .iter()
        .filter(|s| s.generator_saturated(gen_threads))
        .map(|s| {
            format!(
                "the generator saturated while driving {} ({:.0} % CPU, send lag p99 {} ms)",
                s.system,
                s.gen_cpu_pct,
                opt(s.gen_send_lag_ms_p99, 2)
            )
        })
        .next();
    if gen.is_some() {
        return gen;
    }
    systems
        .iter()
        .find(|s| s.system_saturated())
        .map(|s| saturated(s))
}

/// How a saturated system showed it.
pub fn saturated(s: &Summary) -> String {
    if let Some(f) = s.join_failures.first() {
        format!(
            "{} saturated: {} joins failed, the first: {f}",
            s.system,
            s.join_failures.len()
        )
    } else {
        format!(
            "{} saturated ({:.2} % loss, {} % of its core)",
            s.system,
            s.loss_pct,
            opt(s.system_cpu_pct, 0)
        )
    }
}

/// The µs/pkt ratio of two systems (e.g. voipchat / floor).
pub fn ratio(system: &Summary, base: &Summary) -> Option<f64> {
    Some(system.cpu_us_per_packet? / base.cpu_us_per_packet?)
}
