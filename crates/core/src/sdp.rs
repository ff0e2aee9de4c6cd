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
/// m-line and at most one video m-line.
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
    Ok(())
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

    #[test]
    fn long_lines_are_clipped() {
        let long = format!("v=0\r\n{}\r\n", "z".repeat(500));
        let msg = unparsable("answer", &long);
        assert!(is_one_clean_line(&msg), "{msg}");
        assert!(msg.contains('…'));
    }
}
