//! What the engine counts for the server's metrics: forwarded packets, and datagrams it drops
//! with why. Plain integers bumped on the paths themselves; the server reads them when it
//! is scraped, so counting costs an add, no lock and no call.

/// Totals since the engine started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Audio packets written toward receivers (one per copy).
    pub forwarded_audio_packets: u64,
    /// Video packets written toward receivers (one per copy).
    pub forwarded_video_packets: u64,
    /// Payload bytes of those copies.
    pub forwarded_bytes: u64,
    /// Datagrams dropped, by cause.
    pub dropped: Drops,
}

/// Datagrams (and packets) the engine drops, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// From an address no member's ICE accepts (a stranger, or a member already gone).
    pub unknown_source: u64,
    /// Neither STUN, DTLS, RTP nor RTCP.
    pub unrecognized: u64,
    /// Refused by the member's WebRTC session (a bad DTLS record, an SRTP packet that does
    /// not authenticate, …).
    pub refused: u64,
    /// Audio packets of a member whose microphone is muted (forwarded to nobody).
    pub muted: u64,
}

impl Drops {
    /// Each cause with its metric label.
    pub fn by_cause(&self) -> [(&'static str, u64); 4] {
        [
            ("unknown_source", self.unknown_source),
            ("unrecognized", self.unrecognized),
            ("refused", self.refused),
            ("muted", self.muted),
        ]
    }
}
