//! The gate for datagrams from addresses no member uses yet. A new address is admitted only
//! by an ICE connectivity check (a STUN binding request) whose USERNAME starts with one of
//! our sessions' ufrags, and that one session is asked whether the check is good (its
//! MESSAGE-INTEGRITY). Everything else is dropped after reading a few header bytes, without
//! parsing it and without visiting any session: a flood of datagrams from strangers costs
//! the same whatever the number of members.

/// STUN's magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// The STUN message type of a Binding request.
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];

/// The USERNAME attribute's type.
const USERNAME: u16 = 0x0006;

/// Longest ufrag an ICE agent may use (RFC 8445 §5.3: 4 to 256 characters).
const MAX_UFRAG: usize = 256;

/// The receiving side's ufrag in a STUN binding request's USERNAME (`ours:theirs`), or None
/// when `bytes` is not a well-formed binding request with one.
pub(super) fn binding_request_ufrag(bytes: &[u8]) -> Option<&str> {
    if bytes.len() < 20 || bytes[0..2] != BINDING_REQUEST || bytes[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if length % 4 != 0 || 20 + length != bytes.len() {
        return None;
    }
    let mut rest = &bytes[20..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let padded = len.div_ceil(4) * 4;
        let value = rest.get(4..4 + len)?;
        if kind == USERNAME {
            let ours = value.split(|b| *b == b':').next()?;
            if ours.is_empty() || ours.len() > MAX_UFRAG || ours.len() == value.len() {
                return None;
            }
            return std::str::from_utf8(ours).ok();
        }
        rest = rest.get(4 + padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with these attributes (type, value), lengths and padding right.
    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend(kind.to_be_bytes());
            body.extend((value.len() as u16).to_be_bytes());
            body.extend(*value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend((body.len() as u16).to_be_bytes());
        m.extend(MAGIC_COOKIE);
        m.extend([7; 12]);
        m.extend(body);
        m
    }

    #[test]
    fn the_ufrag_of_a_binding_request_is_read() {
        let m = request(&[
            (0x0024, &[0, 0, 0, 1]),
            (USERNAME, b"srv1:cli9"),
            (0x0008, &[0; 20]),
        ]);
        assert_eq!(binding_request_ufrag(&m), Some("srv1"));
        // Padding after an odd-length attribute.
        let m = request(&[(0x8022, b"abc"), (USERNAME, b"abcde:x")]);
        assert_eq!(binding_request_ufrag(&m), Some("abcde"));
    }

    #[test]
    fn anything_else_is_no_binding_request_with_a_ufrag() {
        let good = request(&[(USERNAME, b"srv1:cli9")]);
        let mut not_binding = good.clone();
        not_binding[1] = 0x11; // a Binding indication
        let mut no_cookie = good.clone();
        no_cookie[4] = 0;
        let mut bad_length = good.clone();
        bad_length[3] += 4;
        let short = good[..good.len() - 1].to_vec();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("rtp", vec![0x80; 40]),
            ("dtls", vec![22; 40]),
            ("indication", not_binding),
            ("no magic cookie", no_cookie),
            ("length past the end", bad_length),
            ("cut short", short),
            ("no username", request(&[(0x0024, &[0, 0, 0, 1])])),
            ("no colon", request(&[(USERNAME, b"srv1cli9")])),
            ("empty ufrag", request(&[(USERNAME, b":cli9")])),
            (
                "not utf-8",
                request(&[(USERNAME, &[0xff, 0xfe, b':', b'a'])]),
            ),
            ("attribute past the end", {
                let mut m = request(&[(USERNAME, b"srv1:cli9")]);
                m[22..24].copy_from_slice(&200u16.to_be_bytes());
                m
            }),
        ];
        for (what, bytes) in cases {
            assert_eq!(binding_request_ufrag(&bytes), None, "{what}");
        }
    }
}
