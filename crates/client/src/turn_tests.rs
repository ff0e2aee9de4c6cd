//! The TURN client against known answers and against a TURN server played in memory: the
//! 401 challenge, authenticated requests, the relayed address, channels both ways,
//! retransmission, refresh, stale nonces, refusals, and garbage.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const USER: &str = "1700003600:conn-5f2a9c41d07e8b36";
const PASSWORD: &str = "xY85I3RnGYCa9Rwnetjd+vXePQs=";
const REALM: &str = "voipchat.test";

/// Computed outside this code, with Python's hashlib and hmac:
/// key = md5(f"{USER}:{REALM}:{PASSWORD}"); the message is an Allocate request with
/// transaction id 01..0c, REQUESTED-TRANSPORT UDP, USERNAME, REALM, NONCE "abcd1234" and
/// MESSAGE-INTEGRITY = hmac.new(key, header-with-final-length + attributes, sha1).
#[test]
fn known_answers_for_the_key_and_an_authenticated_request() {
    let key = long_term_key(USER, REALM, &Secret::new(PASSWORD));
    assert_eq!(key.to_vec(), hex("f1107fb3dfc38e9715f867181b486e86"));
    let id: [u8; 12] = std::array::from_fn(|i| i as u8 + 1);
    let attrs = vec![
        (ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0]),
        (ATTR_USERNAME, USER.as_bytes().to_vec()),
        (ATTR_REALM, REALM.as_bytes().to_vec()),
        (ATTR_NONCE, b"abcd1234".to_vec()),
    ];
    let msg = encode(ALLOCATE, Class::Request, &id, &attrs, Some(&key));
    assert_eq!(
        msg,
        hex("000300642112a4420102030405060708090a0b0c001900041100000000060020313730303030333630303a636f6e6e2d356632613963343164303765386233360014000d766f6970636861742e7465737400000000150008616263643132333400080014b3afde4397db77b5447c52533c0e844e5b40504f")
    );
    let parsed = Message::parse(&msg).unwrap();
    assert!(parsed.verify_integrity(Some(&key)));
    let mut other = key;
    other[0] ^= 1;
    assert!(!parsed.verify_integrity(Some(&other)));
}

/// RFC 5769 §2.2 and §2.3: the XOR-MAPPED-ADDRESS of the sample responses.
#[test]
fn xor_addresses_of_rfc_5769() {
    let id: [u8; 12] = hex("b7e7a701bc34d686fa87dfae").try_into().unwrap();
    let v4 = hex("0001a147e112a643");
    assert_eq!(xor_addr(&v4, &id), Some("192.0.2.1:32853".parse().unwrap()));
    assert_eq!(encode_xor_addr("192.0.2.1:32853".parse().unwrap(), &id), v4);
    let v6 = hex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9");
    let addr: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(xor_addr(&v6, &id), Some(addr));
    assert_eq!(encode_xor_addr(addr, &id), v6);
    assert_eq!(xor_addr(&v6[..10], &id), None, "short");
}

#[test]
fn message_types_split_back() {
    for method in [ALLOCATE, REFRESH, DATA, CHANNEL_BIND] {
        for class in [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ] {
            assert_eq!(split_type(message_type(method, class)), (method, class));
        }
    }
    assert_eq!(message_type(ALLOCATE, Class::Success), 0x0103);
    assert_eq!(message_type(ALLOCATE, Class::Error), 0x0113);
    assert_eq!(message_type(DATA, Class::Indication), 0x0017);
}

// ----- a TURN server in memory -----

const SERVER: &str = "10.0.0.1:3478";
const RELAYED: &str = "10.0.0.1:49152";
const MAPPED: &str = "10.0.0.2:40000";
const PEER: &str = "10.0.0.1:7882";

fn server() -> SocketAddr {
    SERVER.parse().unwrap()
}

/// What the fake server needs to answer one request.
struct Req {
    method: u16,
    id: [u8; 12],
    authenticated: bool,
    channel: Option<u16>,
    peer: Option<SocketAddr>,
    lifetime: Option<u32>,
}

fn read_request(bytes: &[u8]) -> Req {
    let m = Message::parse(bytes).expect("a STUN message");
    assert_eq!(m.class, Class::Request);
    let key = long_term_key(USER, REALM, &Secret::new(PASSWORD));
    let authenticated = m.integrity_at.is_some();
    if authenticated {
        assert!(
            m.verify_integrity(Some(&key)),
            "the request's integrity is right"
        );
        assert_eq!(m.attr(ATTR_USERNAME), Some(USER.as_bytes()));
        assert_eq!(m.attr(ATTR_REALM), Some(REALM.as_bytes()));
    }
    Req {
        method: m.method,
        id: m.id,
        authenticated,
        channel: m
            .attr(ATTR_CHANNEL_NUMBER)
            .map(|v| u16::from_be_bytes([v[0], v[1]])),
        peer: m
            .attr(ATTR_XOR_PEER_ADDRESS)
            .and_then(|v| xor_addr(v, &m.id)),
        lifetime: m
            .attr(ATTR_LIFETIME)
            .map(|v| u32::from_be_bytes(v.try_into().unwrap())),
    }
}

fn error(req: &Req, code: u16, nonce: &str) -> Vec<u8> {
    let mut value = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
    value.extend_from_slice(b"Unauthorized");
    let attrs = vec![
        (ATTR_ERROR_CODE, value),
        (ATTR_REALM, REALM.as_bytes().to_vec()),
        (ATTR_NONCE, nonce.as_bytes().to_vec()),
    ];
    encode(req.method, Class::Error, &req.id, &attrs, None)
}

fn success(req: &Req, mut attrs: Vec<(u16, Vec<u8>)>, with_integrity: bool) -> Vec<u8> {
    let key = long_term_key(USER, REALM, &Secret::new(PASSWORD));
    if req.method == ALLOCATE {
        attrs.push((
            ATTR_XOR_RELAYED_ADDRESS,
            encode_xor_addr(RELAYED.parse().unwrap(), &req.id),
        ));
        attrs.push((
            ATTR_XOR_MAPPED_ADDRESS,
            encode_xor_addr(MAPPED.parse().unwrap(), &req.id),
        ));
        attrs.push((ATTR_LIFETIME, 600u32.to_be_bytes().to_vec()));
    }
    encode(
        req.method,
        Class::Success,
        &req.id,
        &attrs,
        with_integrity.then_some(&key),
    )
}

fn take(c: &mut TurnClient) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

/// A client through the challenge to an allocation.
fn allocated(now: Instant) -> TurnClient {
    let mut c = TurnClient::new(now, server(), USER, Secret::new(PASSWORD));
    let first = take(&mut c);
    assert_eq!(first.len(), 1);
    let req = read_request(&first[0]);
    assert_eq!((req.method, req.authenticated), (ALLOCATE, false));
    assert_eq!(c.handle_datagram(now, &error(&req, 401, "n1")), None);
    let second = take(&mut c);
    assert_eq!(second.len(), 1, "the Allocate again, authenticated");
    let req = read_request(&second[0]);
    assert_eq!((req.method, req.authenticated), (ALLOCATE, true));
    c.handle_datagram(now, &success(&req, vec![], true));
    assert_eq!(
        c.state(),
        &TurnState::Allocated {
            relayed: RELAYED.parse().unwrap(),
            mapped: Some(MAPPED.parse().unwrap())
        }
    );
    c
}

#[test]
fn allocates_after_the_challenge_and_relays_through_a_channel() {
    let now = Instant::now();
    let mut c = allocated(now);
    let peer: SocketAddr = PEER.parse().unwrap();
    // The first datagram to the peer binds a channel and waits for it.
    c.send_to(now, peer, b"stun check");
    c.send_to(now, peer, b"second");
    let out = take(&mut c);
    assert_eq!(out.len(), 1, "only the ChannelBind goes out");
    let bind = read_request(&out[0]);
    assert_eq!(bind.method, CHANNEL_BIND);
    assert_eq!(bind.peer, Some(peer));
    let number = bind.channel.unwrap();
    assert!((0x4000..=0x4FFF).contains(&number));
    c.handle_datagram(now, &success(&bind, vec![], true));
    assert_eq!(
        take(&mut c),
        vec![
            channel_data(number, b"stun check"),
            channel_data(number, b"second")
        ],
        "the waiting datagrams go out as ChannelData"
    );
    c.send_to(now, peer, b"rtp");
    assert_eq!(take(&mut c), vec![channel_data(number, b"rtp")]);
    // What the peer sends comes back as ChannelData, or as a Data indication.
    assert_eq!(
        c.handle_datagram(now, &channel_data(number, b"answer")),
        Some((peer, b"answer".to_vec()))
    );
    let id = [7u8; 12];
    let ind = encode(
        DATA,
        Class::Indication,
        &id,
        &[
            (ATTR_XOR_PEER_ADDRESS, encode_xor_addr(peer, &id)),
            (ATTR_DATA, b"indicated".to_vec()),
        ],
        None,
    );
    assert_eq!(
        c.handle_datagram(now, &ind),
        Some((peer, b"indicated".to_vec()))
    );
    // Nothing from peers we never asked for, nothing on unknown channels.
    let stranger: SocketAddr = "10.9.9.9:1".parse().unwrap();
    let ind = encode(
        DATA,
        Class::Indication,
        &id,
        &[
            (ATTR_XOR_PEER_ADDRESS, encode_xor_addr(stranger, &id)),
            (ATTR_DATA, b"x".to_vec()),
        ],
        None,
    );
    assert_eq!(c.handle_datagram(now, &ind), None);
    assert_eq!(c.handle_datagram(now, &channel_data(0x4fff, b"x")), None);
}

#[test]
fn refreshes_the_allocation_and_the_channel_in_time_and_closes_with_lifetime_zero() {
    let t0 = Instant::now();
    let mut c = allocated(t0);
    let peer: SocketAddr = PEER.parse().unwrap();
    c.send_to(t0, peer, b"x");
    let bind = read_request(&take(&mut c)[0]);
    c.handle_datagram(t0, &success(&bind, vec![], true));
    take(&mut c);
    // The next thing planned: the channel's renewal (240 s), before the Refresh (540 s).
    assert_eq!(c.poll_timeout(), Some(t0 + REBIND_EVERY));
    c.handle_timeout(t0 + REBIND_EVERY);
    let rebind = read_request(&take(&mut c)[0]);
    assert_eq!(
        (rebind.method, rebind.channel),
        (CHANNEL_BIND, bind.channel)
    );
    c.handle_datagram(t0 + REBIND_EVERY, &success(&rebind, vec![], true));
    // The next renewal at 480 s, then the Refresh a minute before the 600 s lifetime ends.
    assert_eq!(c.poll_timeout(), Some(t0 + 2 * REBIND_EVERY));
    c.handle_timeout(t0 + 2 * REBIND_EVERY);
    let rebind = read_request(&take(&mut c)[0]);
    c.handle_datagram(t0 + 2 * REBIND_EVERY, &success(&rebind, vec![], true));
    let refresh_at = t0 + Duration::from_secs(540);
    assert_eq!(c.poll_timeout(), Some(refresh_at));
    c.handle_timeout(refresh_at);
    let refresh = read_request(&take(&mut c)[0]);
    assert_eq!((refresh.method, refresh.lifetime), (REFRESH, Some(600)));
    // A stale nonce: the same refresh again with the new one.
    c.handle_datagram(refresh_at, &error(&refresh, 438, "n2"));
    let again = read_request(&take(&mut c)[0]);
    assert_eq!(again.method, REFRESH);
    assert_ne!(again.id, refresh.id);
    c.handle_datagram(
        refresh_at,
        &success(
            &again,
            vec![(ATTR_LIFETIME, 600u32.to_be_bytes().to_vec())],
            true,
        ),
    );
    assert!(c.relayed().is_some());
    c.close(refresh_at);
    let bye = read_request(&take(&mut c)[0]);
    assert_eq!((bye.method, bye.lifetime), (REFRESH, Some(0)));
    assert_eq!(c.state(), &TurnState::Closed);
}

#[test]
fn retransmits_and_gives_up_after_seven_sends() {
    let t0 = Instant::now();
    let mut c = TurnClient::new(t0, server(), USER, Secret::new(PASSWORD));
    let mut sends = take(&mut c).len();
    let mut now = t0;
    for _ in 0..20 {
        let Some(at) = c.poll_timeout() else { break };
        now = at;
        c.handle_timeout(now);
        sends += take(&mut c).len();
    }
    assert_eq!(sends, 7);
    assert!(matches!(c.state(), TurnState::Failed(why) if why.contains("no answer")));
    // 0.5 + 1 + 2 + 4 + 8 + 8 (+ 8 before giving up): under 32 s.
    assert!(now - t0 <= Duration::from_secs(32), "{:?}", now - t0);
}

#[test]
fn refused_credentials_and_unauthenticated_successes() {
    let now = Instant::now();
    // 401 again after the authenticated Allocate: wrong secret. No loop, a reason.
    let mut c = TurnClient::new(now, server(), USER, Secret::new(PASSWORD));
    let req = read_request(&take(&mut c)[0]);
    c.handle_datagram(now, &error(&req, 401, "n1"));
    let req = read_request(&take(&mut c)[0]);
    c.handle_datagram(now, &error(&req, 401, "n1"));
    assert!(take(&mut c).is_empty());
    assert!(
        matches!(c.state(), TurnState::Failed(why) if why.contains("401") && why.contains("static-auth-secret")),
        "{:?}",
        c.state()
    );

    // A success without (or with a wrong) MESSAGE-INTEGRITY is not the server's: ignored.
    let mut c = TurnClient::new(now, server(), USER, Secret::new(PASSWORD));
    let req = read_request(&take(&mut c)[0]);
    c.handle_datagram(now, &error(&req, 401, "n1"));
    let req = read_request(&take(&mut c)[0]);
    c.handle_datagram(now, &success(&req, vec![], false));
    assert_eq!(c.state(), &TurnState::Allocating);
    c.handle_datagram(now, &success(&req, vec![], true));
    assert!(c.relayed().is_some());

    // A refused ChannelBind (a peer the server may not relay to): nothing more to it.
    let peer: SocketAddr = PEER.parse().unwrap();
    c.send_to(now, peer, b"x");
    let bind = read_request(&take(&mut c)[0]);
    c.handle_datagram(now, &error(&bind, 403, "n1"));
    c.send_to(now, peer, b"y");
    assert!(take(&mut c).is_empty());
}

#[test]
fn garbage_never_panics() {
    let now = Instant::now();
    let mut c = allocated(now);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = success(
        &read_request(&encode(ALLOCATE, Class::Request, &[1; 12], &[], None)),
        vec![],
        true,
    );
    for i in 0..20_000 {
        let mut d = if i % 2 == 0 {
            valid.clone()
        } else {
            channel_data(0x4000, b"abcdefgh")
        };
        let n = (next() % 4) as usize + 1;
        for _ in 0..n {
            let at = (next() as usize) % d.len();
            d[at] = next() as u8;
        }
        d.truncate((next() as usize) % (d.len() + 1));
        let _ = c.handle_datagram(now, &d);
    }
    for len in 0..40 {
        let _ = c.handle_datagram(now, &vec![0x40; len]);
        let _ = c.handle_datagram(now, &vec![0x00; len]);
    }
    assert!(c.relayed().is_some(), "garbage changed nothing");
}
