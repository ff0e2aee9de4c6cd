//! What a client is told when its SDP cannot be used: one line, in words a client developer
//! can act on, never the parser's internal state (positions, addresses, dumps).

use std::fmt::Display;

/// Longest detail quoted from str0m or from the client's own text.
const MAX_QUOTE_CHARS: usize = 80;

/// Why `text` (the client's `kind`, "offer" or "answer") does not parse as SDP: the first
/// line that breaks the `x=value` form, or what is missing.
pub fn unparsable(kind: &str, text: &str) -> String {
    let advice = "send the sdp of RTCPeerConnection.createOffer/createAnswer unchanged";
    if !text.starts_with("v=0") {
        return format!("the {kind} is not SDP: it must start with \"v=0\"; {advice}");
    }
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    for (n, line) in lines.iter().enumerate() {
        let last = n + 1 == lines.len();
        if line.is_empty() && last {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
            return format!(
                "the {kind} is not valid SDP: line {} ({}) is not of the form x=value; {advice}",
                n + 1,
                quote(line)
            );
        }
    }
    if !lines.iter().any(|l| l.starts_with("m=")) {
        return format!("the {kind} has no media section (m= line); {advice}");
    }
    let missing: Vec<&str> = [
        "a=mid:",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=fingerprint:",
        "a=setup:",
    ]
    .into_iter()
    .filter(|attr| !lines.iter().any(|l| l.starts_with(attr)))
    .map(|attr| attr.trim_end_matches(':'))
    .collect();
    if !missing.is_empty() {
        return format!("the {kind} lacks {}; {advice}", missing.join(", "));
    }
    format!("the {kind} is not valid SDP (a line has a value that cannot be read); {advice}")
}

/// The m-sections of an SDP, in order: their media kind ("audio", "video", …) and `a=mid`.
pub fn media_sections(text: &str) -> Vec<(&str, Option<&str>)> {
    let mut out: Vec<(&str, Option<&str>)> = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("m=") {
            out.push((rest.split(' ').next().unwrap_or(""), None));
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if let Some(last) = out.last_mut() {
                last.1 = Some(mid.trim());
            }
        }
    }
    out
}

/// The codec names (`a=rtpmap` encoding names, e.g. "VP8") in the m-sections of `kind`.
pub fn section_codecs<'a>(text: &'a str, kind: &str) -> Vec<&'a str> {
    let mut in_kind = false;
    let mut out = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("m=") {
            in_kind = rest.split(' ').next() == Some(kind);
        } else if let Some(map) = line.strip_prefix("a=rtpmap:").filter(|_| in_kind) {
            if let Some(name) = map.split(' ').nth(1).and_then(|c| c.split('/').next()) {
                out.push(name);
            }
        }
    }
    out
}

/// A video room's offer publishes a microphone and at most one camera: exactly one audio
/// m-line and at most one video m-line; the camera may be simulcast (`check_simulcast`).
pub fn check_video_offer(text: &str) -> Result<(), String> {
    let sections = media_sections(text);
    let count = |kind: &str| sections.iter().filter(|(k, _)| *k == kind).count();
    let (audio, video) = (count("audio"), count("video"));
    if audio != 1 || video > 1 {
        return Err(format!(
            "a video room's offer has one audio m-line and at most one video m-line \
             (this one has {audio} audio and {video} video)"
        ));
    }
    check_simulcast(text)
}

/// Most simulcast layers a camera may send.
pub const MAX_SIMULCAST_LAYERS: usize = 3;

/// Longest rid the server keeps apart from others (str0m's `Rid` holds 8 characters).
pub const MAX_RID_CHARS: usize = 8;

/// Simulcast as a video room accepts it: on the camera m-line only, as a browser writes it
/// for `sendEncodings` — `a=simulcast:send` naming 1 to `MAX_SIMULCAST_LAYERS` rids
/// separated by `;`, each with an `a=rid:<rid> send` line; rids of 1 to `MAX_RID_CHARS`
/// letters, digits, `-` or `_`. A camera without `a=rid` and `a=simulcast` is a camera with
/// one layer. Anything else is refused with the reason, rather than half understood.
pub fn check_simulcast(text: &str) -> Result<(), String> {
    /// One m-section's simulcast lines.
    struct Section<'a> {
        kind: &'a str,
        /// `a=rid` lines: the rid and its direction.
        rids: Vec<(&'a str, &'a str)>,
        /// `a=simulcast` values.
        simulcast: Vec<&'a str>,
    }
    let mut sections: Vec<Section> = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("m=") {
            sections.push(Section {
                kind: rest.split(' ').next().unwrap_or(""),
                rids: Vec::new(),
                simulcast: Vec::new(),
            });
        } else if let Some(last) = sections.last_mut() {
            if let Some(rid) = line.strip_prefix("a=rid:") {
                let mut words = rid.split_whitespace();
                last.rids
                    .push((words.next().unwrap_or(""), words.next().unwrap_or("")));
            } else if let Some(sim) = line.strip_prefix("a=simulcast:") {
                last.simulcast.push(sim.trim());
            }
        }
    }
    for Section {
        kind,
        rids,
        simulcast,
    } in &sections
    {
        if rids.is_empty() && simulcast.is_empty() {
            continue;
        }
        if *kind != "video" {
            return Err(format!(
                "simulcast (a=rid, a=simulcast) is for the camera's video m-line only, \
                 not on an {kind} m-line"
            ));
        }
        let send = match simulcast.as_slice() {
            [] => {
                return Err(
                    "the camera m-line has a=rid lines but no a=simulcast: offer \
                            a=simulcast:send with its rids (sendEncodings with rids), or no \
                            a=rid"
                        .into(),
                )
            }
            [one] => *one,
            _ => return Err("the camera m-line has more than one a=simulcast line".into()),
        };
        let Some(list) = send.strip_prefix("send ").map(str::trim) else {
            return Err(format!(
                "the camera only sends: its simulcast must be a=simulcast:send <rids>, not \
                 a=simulcast:{}",
                clip(send)
            ));
        };
        if list.contains(char::is_whitespace) {
            return Err(
                "the camera only sends: a=simulcast with a recv part is not accepted".into(),
            );
        }
        // A rid marked `~` is a layer the browser pauses for now (RFC 8853: Chromium marks
        // the encodings it keeps inactive); it is a layer all the same.
        let layers: Vec<&str> = list
            .split(';')
            .map(|r| r.strip_prefix('~').unwrap_or(r))
            .collect();
        if layers.len() > MAX_SIMULCAST_LAYERS {
            return Err(format!(
                "the camera offers {} simulcast layers; at most {MAX_SIMULCAST_LAYERS} are \
                 accepted",
                layers.len()
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        for rid in &layers {
            if rid.contains(',') {
                return Err(format!(
                    "alternative rids in a=simulcast ({}) are not accepted: one rid per layer",
                    clip(rid)
                ));
            }
            let ok_chars = rid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if rid.is_empty() || rid.chars().count() > MAX_RID_CHARS || !ok_chars {
                return Err(format!(
                    "rid {} must be 1 to {MAX_RID_CHARS} letters, digits, - or _",
                    quote(rid)
                ));
            }
            // str0m keeps '-' as '_': two rids that differ only there would be one.
            let key = rid.replace('-', "_");
            if seen.contains(&key) {
                return Err(format!("rid {} is in a=simulcast twice", quote(rid)));
            }
            seen.push(key);
            if !rids.iter().any(|(r, dir)| r == rid && *dir == "send") {
                return Err(format!(
                    "rid {} is in a=simulcast but has no a=rid:{rid} send line",
                    quote(rid)
                ));
            }
        }
        if let Some((r, _)) = rids.iter().find(|(r, _)| !layers.contains(r)) {
            return Err(format!(
                "a=rid:{} is not in a=simulcast:send {}",
                clip(r),
                clip(list)
            ));
        }
    }
    Ok(())
}

/// `text` with Opus in-band FEC withdrawn: `useinbandfec` taken out of the `a=fmtp` of every
/// payload type whose `a=rtpmap` is Opus (an fmtp left empty goes too), so that the other
/// side's encoder adds no FEC. Every other line stays as it was, line endings included.
pub fn without_inband_fec(text: &str) -> String {
    let opus: Vec<&str> = text
        .split('\n')
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a=rtpmap:"))
        .filter_map(|m| m.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("opus/"))
        .map(|(pt, _)| pt)
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let fmtp = body
            .strip_prefix("a=fmtp:")
            .and_then(|f| f.split_once(' '))
            .filter(|(pt, _)| opus.contains(pt));
        let Some((pt, params)) = fmtp else {
            out.push_str(line);
            continue;
        };
        let kept: Vec<&str> = params
            .split(';')
            .filter(|p| {
                let name = p.split('=').next().unwrap_or("").trim();
                !name.eq_ignore_ascii_case("useinbandfec")
            })
            .collect();
        if kept.iter().all(|p| p.trim().is_empty()) {
            continue;
        }
        out.push_str(&format!("a=fmtp:{pt} {}{ending}", kept.join(";")));
    }
    out
}

/// Why str0m refused an SDP that parsed: its reason, made one short line.
pub fn refused(kind: &str, error: &impl Display) -> String {
    format!("the {kind} was refused: {}", one_line(&error.to_string()))
}

/// The first line of `text`, without hexadecimal addresses, at most `MAX_QUOTE_CHARS` long.
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    let cleaned: Vec<&str> = first
        .split_whitespace()
        .filter(|w| !w.contains("0x"))
        .collect();
    clip(&cleaned.join(" "))
}

fn quote(line: &str) -> String {
    format!("{:?}", clip(line))
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTE_CHARS {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_QUOTE_CHARS).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_one_clean_line(msg: &str) -> bool {
        !msg.contains('\n') && !msg.contains('\r') && !msg.contains("0x") && msg.len() < 300
    }

    #[test]
    fn names_the_broken_line() {
        let msg = unparsable("offer", "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\nhello world\r\n");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("\"hello world\""), "{msg}");
        assert!(is_one_clean_line(&msg), "{msg}");
    }

    #[test]
    fn says_what_is_missing() {
        assert!(unparsable("offer", "hello").contains("must start with \"v=0\""));
        let msg = unparsable("offer", "v=0\r\ns=-\r\n");
        assert!(msg.contains("no media section"), "{msg}");
        let msg = unparsable(
            "offer",
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n",
        );
        assert!(
            msg.contains("lacks a=ice-ufrag, a=ice-pwd, a=fingerprint, a=setup"),
            "{msg}"
        );
    }

    #[test]
    fn refusals_lose_addresses_and_extra_lines() {
        let msg = refused(
            "offer",
            &"Parse error at PointerOffset(0x7fa1c0de)\nUnexpected `x`",
        );
        assert!(is_one_clean_line(&msg), "{msg}");
        assert_eq!(msg, "the offer was refused: Parse error at");
    }

    fn camera(lines: &str) -> String {
        format!(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n{lines}"
        )
    }

    #[test]
    fn simulcast_as_browsers_offer_it_is_accepted() {
        let three = "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n";
        assert_eq!(check_video_offer(&camera(three)), Ok(()));
        let paused = "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;~f\r\n";
        assert_eq!(check_video_offer(&camera(paused)), Ok(()), "a paused layer");
        let one = "a=rid:f send\r\na=simulcast:send f\r\n";
        assert_eq!(check_video_offer(&camera(one)), Ok(()));
        assert_eq!(check_video_offer(&camera("")), Ok(()), "no simulcast");
    }

    #[test]
    fn simulcast_shapes_the_server_does_not_take_are_refused_in_words() {
        let cases = [
            ("a=rid:q send\r\na=rid:h send\r\n", "no a=simulcast"),
            ("a=simulcast:send q;h\r\n", "no a=rid:q send"),
            (
                "a=rid:a send\r\na=rid:b send\r\na=rid:c send\r\na=rid:d send\r\n\
                 a=simulcast:send a;b;c;d\r\n",
                "4 simulcast layers; at most 3",
            ),
            ("a=rid:q recv\r\na=simulcast:recv q\r\n", "only sends"),
            (
                "a=rid:q send\r\na=rid:r recv\r\na=simulcast:send q recv r\r\n",
                "recv part",
            ),
            (
                "a=rid:q send\r\na=rid:h send\r\na=simulcast:send q,h\r\n",
                "alternative",
            ),
            (
                "a=rid:toolongrid send\r\na=simulcast:send toolongrid\r\n",
                "1 to 8",
            ),
            (
                "a=rid:a-b send\r\na=rid:a_b send\r\na=simulcast:send a-b;a_b\r\n",
                "twice",
            ),
            (
                "a=rid:q send\r\na=rid:h send\r\na=simulcast:send q\r\n",
                "not in a=simulcast",
            ),
            (
                "a=rid:q send\r\na=simulcast:send q\r\na=simulcast:send q\r\n",
                "more than one",
            ),
        ];
        for (lines, why) in cases {
            let msg = check_video_offer(&camera(lines)).unwrap_err();
            assert!(msg.contains(why), "{lines:?}: {msg}");
            assert!(is_one_clean_line(&msg), "{msg}");
        }
        let audio = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rid:q send\r\n\
                     a=simulcast:send q\r\n";
        let msg = check_video_offer(audio).unwrap_err();
        assert!(msg.contains("not on an audio m-line"), "{msg}");
    }

    #[test]
    fn inband_fec_is_withdrawn_from_opus_only() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 63 111 9\r\n\
                      a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
                      a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
                      a=rtpmap:9 G722/8000\r\na=fmtp:9 useinbandfec=1\r\n\
                      m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 OPUS/48000/2\r\n\
                      a=fmtp:109 useinbandfec=1\r\n";
        let out = without_inband_fec(answer);
        assert_eq!(
            out,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 63 111 9\r\n\
             a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10\r\n\
             a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
             a=rtpmap:9 G722/8000\r\na=fmtp:9 useinbandfec=1\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 OPUS/48000/2\r\n"
        );
        assert_eq!(without_inband_fec(&out), out, "nothing more to take out");
        assert_eq!(without_inband_fec("garbage"), "garbage");
    }

    #[test]
    fn long_lines_are_clipped() {
        let long = format!("v=0\r\n{}\r\n", "z".repeat(500));
        let msg = unparsable("answer", &long);
        assert!(is_one_clean_line(&msg), "{msg}");
        assert!(msg.contains('…'));
    }
}
