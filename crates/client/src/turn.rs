//! A minimal TURN client (RFC 8656 over UDP), for one purpose: a relayed ICE candidate when
//! the network lets this client reach the TURN server the voipchat server names in its
//! `hello`, but not voipchat's media port. str0m has no TURN client, so this is ours.
//!
//! What it speaks: Allocate with the long-term credential mechanism (the first request is
//! answered 401 with a realm and a nonce; every later request carries USERNAME, REALM, NONCE
//! and a MESSAGE-INTEGRITY keyed by MD5(username:realm:password)), a new nonce on 438;
//! ChannelBind for each peer (which installs its permission too), renewed before the
//! permission lapses; ChannelData both ways (Data indications are accepted as well); Refresh
//! before the allocation lapses, and Refresh with lifetime 0 on close. Requests are
//! retransmitted from 500 ms, doubling, seven sends at most (RFC 8489 §6.2.1). Only UDP to
//! the TURN server: `turn:` URLs with `transport=udp`, no TCP, no TLS.
//!
//! Sans-IO, like str0m. Input: [`TurnClient::handle_datagram`] (what came from the TURN
//! server), [`TurnClient::send_to`] (what the peer connection sends from the relayed
//! address), [`TurnClient::handle_timeout`]. Output: [`TurnClient::poll_transmit`] until
//! `None` (datagrams for the TURN server), then [`TurnClient::poll_timeout`] (when to call
//! `handle_timeout` next).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use voipchat_proto::Secret;

const MAGIC: u32 = 0x2112_A442;
const HEADER: usize = 20;

const ALLOCATE: u16 = 0x003;
const REFRESH: u16 = 0x004;
const DATA: u16 = 0x007;
const CHANNEL_BIND: u16 = 0x009;

const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
const ATTR_LIFETIME: u16 = 0x000D;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_DATA: u16 = 0x0013;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// First retransmission timeout of a request, doubled after each send.
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// Sends of one request before it counts as lost (RFC 8489's Rc).
const MAX_SENDS: u32 = 7;
/// A request answered 401/438 is sent again with the new nonce at most this often.
const MAX_AUTH_RETRIES: u32 = 3;
/// Permissions last 300 s (RFC 8656 §9); a ChannelBind renews it (and the channel) this often.
const REBIND_EVERY: Duration = Duration::from_secs(240);
/// The allocation's lifetime when the server does not say (RFC 8656's default).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// Datagrams kept for a peer while its channel is being bound; older ones are dropped (ICE
/// retransmits its checks anyway).
const MAX_PENDING: usize = 16;
/// Peers one allocation talks to: this client only ever talks to its voipchat server.
const MAX_PEERS: usize = 8;
/// Channel numbers are 0x4000..=0x4FFF (RFC 8656 §12).
const FIRST_CHANNEL: u16 = 0x4000;

/// Where the allocation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnState {
    /// The Allocate request is out (or is being authenticated).
    Allocating,
    /// The TURN server relays for us from `relayed`; `mapped` is how it sees us.
    Allocated {
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
    },
    /// No relay: the server refused, or did not answer. The reason, for a log line.
    Failed(String),
    /// [`TurnClient::close`] was called.
    Closed,
}

/// What a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh { lifetime_secs: u32 },
    ChannelBind { peer: SocketAddr, number: u16 },
}

#[derive(Debug)]
struct Transaction {
    id: [u8; 12],
    request: Request,
    bytes: Vec<u8>,
    sends: u32,
    rto: Duration,
    next_send: Instant,
    /// How often it was sent again with a new nonce.
    auth_retries: u32,
}

#[derive(Debug)]
struct Channel {
    number: u16,
    bound: bool,
    /// No relay to this peer: the server refused its ChannelBind.
    refused: bool,
    rebind_at: Option<Instant>,
    pending: VecDeque<Vec<u8>>,
}

/// One allocation on one TURN server. See the module docs for the order of calls.
pub struct TurnClient {
    server: SocketAddr,
    username: String,
    password: Secret,
    realm: Option<String>,
    nonce: Option<String>,
    /// MD5(username:realm:password), once the realm is known.
    key: Option<[u8; 16]>,
    state: TurnState,
    transactions: Vec<Transaction>,
    peers: HashMap<SocketAddr, Channel>,
    by_number: HashMap<u16, SocketAddr>,
    out: VecDeque<Vec<u8>>,
    refresh_at: Option<Instant>,
}

impl std::fmt::Debug for TurnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnClient")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl TurnClient {
    /// Starts allocating a UDP relay on `server` with the TURN REST credentials of a
    /// `hello` (`username`, `password` = its `credential`).
    pub fn new(now: Instant, server: SocketAddr, username: &str, password: Secret) -> TurnClient {
        let mut client = TurnClient {
            server,
            username: username.to_string(),
            password,
            realm: None,
            nonce: None,
            key: None,
            state: TurnState::Allocating,
            transactions: Vec::new(),
            peers: HashMap::new(),
            by_number: HashMap::new(),
            out: VecDeque::new(),
            refresh_at: None,
        };
        client.start(now, Request::Allocate, 0);
        client
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn state(&self) -> &TurnState {
        &self.state
    }

    /// The relayed address, the candidate's address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            TurnState::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    /// One datagram from the TURN server. Returns what a peer sent us through the relay
    /// (its address and the payload), for the peer connection; `None` for TURN's own
    /// messages and for anything that does not parse.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Option<(SocketAddr, Vec<u8>)> {
        if let Some((number, data)) = parse_channel_data(datagram) {
            let peer = *self.by_number.get(&number)?;
            return Some((peer, data.to_vec()));
        }
        let msg = Message::parse(datagram)?;
        match msg.class {
            Class::Indication if msg.method == DATA => {
                let peer = msg
                    .attr(ATTR_XOR_PEER_ADDRESS)
                    .and_then(|v| xor_addr(v, &msg.id))?;
                let data = msg.attr(ATTR_DATA)?;
                // Only peers we asked for: the server relays nothing else, but be sure.
                self.peers
                    .contains_key(&peer)
                    .then(|| (peer, data.to_vec()))
            }
            Class::Success | Class::Error => {
                let i = self.transactions.iter().position(|t| t.id == msg.id)?;
                if msg.class == Class::Success
                    && !msg.verify_integrity(self.key.as_ref().map(|k| &k[..]))
                {
                    tracing::debug!("TURN response without a valid MESSAGE-INTEGRITY, ignored");
                    return None;
                }
                let t = self.transactions.swap_remove(i);
                if msg.class == Class::Success {
                    self.on_success(now, t.request, &msg);
                } else {
                    self.on_error(now, t, &msg);
                }
                None
            }
            _ => None,
        }
    }

    /// Sends `data` to `peer` through the relay: at once on a bound channel, else once the
    /// channel is bound (the first datagram to a peer binds one).
    pub fn send_to(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) {
        if self.relayed().is_none() {
            return;
        }
        if !self.peers.contains_key(&peer) {
            if self.peers.len() >= MAX_PEERS {
                tracing::debug!(%peer, "TURN: too many peers, datagram dropped");
                return;
            }
            // Numbers are never reused within an allocation; MAX_PEERS keeps them in range.
            let number = FIRST_CHANNEL + self.peers.len() as u16;
            self.peers.insert(
                peer,
                Channel {
                    number,
                    bound: false,
                    refused: false,
                    rebind_at: None,
                    pending: VecDeque::new(),
                },
            );
            self.by_number.insert(number, peer);
            self.start(now, Request::ChannelBind { peer, number }, 0);
        }
        let Some(channel) = self.peers.get_mut(&peer) else {
            return;
        };
        if channel.refused {
            return;
        }
        if channel.bound {
            self.out.push_back(channel_data(channel.number, data));
        } else {
            if channel.pending.len() >= MAX_PENDING {
                channel.pending.pop_front();
            }
            channel.pending.push_back(data.to_vec());
        }
    }

    /// Time has reached [`TurnClient::poll_timeout`]: retransmits, refreshes, rebinds.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut lost = Vec::new();
        for t in &mut self.transactions {
            if t.next_send > now {
                continue;
            }
            if t.sends >= MAX_SENDS {
                lost.push(t.id);
                continue;
            }
            self.out.push_back(t.bytes.clone());
            t.sends += 1;
            t.rto = (t.rto * 2).min(Duration::from_secs(8));
            t.next_send = now + t.rto;
        }
        for id in lost {
            if let Some(i) = self.transactions.iter().position(|t| t.id == id) {
                let t = self.transactions.swap_remove(i);
                self.on_lost(now, t.request);
            }
        }
        if self.relayed().is_none() {
            return;
        }
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_at = None;
            let lifetime_secs = DEFAULT_LIFETIME.as_secs() as u32;
            self.start(now, Request::Refresh { lifetime_secs }, 0);
        }
        let due: Vec<(SocketAddr, u16)> = self
            .peers
            .iter()
            .filter(|(_, c)| c.rebind_at.is_some_and(|at| at <= now))
            .map(|(p, c)| (*p, c.number))
            .collect();
        for (peer, number) in due {
            if let Some(c) = self.peers.get_mut(&peer) {
                c.rebind_at = None;
            }
            self.start(now, Request::ChannelBind { peer, number }, 0);
        }
    }

    /// The next datagram for the TURN server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// When [`TurnClient::handle_timeout`] has something to do; `None`: nothing planned.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let transactions = self.transactions.iter().map(|t| t.next_send);
        let rebinds = self.peers.values().filter_map(|c| c.rebind_at);
        transactions.chain(rebinds).chain(self.refresh_at).min()
    }

    /// Ends the allocation: a Refresh with lifetime 0, sent once (the server drops the
    /// allocation after its lifetime anyway if it is lost).
    pub fn close(&mut self, now: Instant) {
        if self.relayed().is_some() {
            self.start(now, Request::Refresh { lifetime_secs: 0 }, 0);
        }
        self.transactions.clear();
        self.refresh_at = None;
        self.state = TurnState::Closed;
    }

    /// Sends a new request (`auth_retries`: how often it was already re-sent for a nonce).
    fn start(&mut self, now: Instant, request: Request, auth_retries: u32) {
        let id: [u8; 12] = rand::random();
        let (method, mut attrs) = match request {
            Request::Allocate => (
                ALLOCATE,
                vec![(ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])],
            ),
            Request::Refresh { lifetime_secs } => (
                REFRESH,
                vec![(ATTR_LIFETIME, lifetime_secs.to_be_bytes().to_vec())],
            ),
            Request::ChannelBind { peer, number } => {
                let [hi, lo] = number.to_be_bytes();
                (
                    CHANNEL_BIND,
                    vec![
                        (ATTR_CHANNEL_NUMBER, vec![hi, lo, 0, 0]),
                        (ATTR_XOR_PEER_ADDRESS, encode_xor_addr(peer, &id)),
                    ],
                )
            }
        };
        let bytes = match (&self.key, &self.realm, &self.nonce) {
            (Some(key), Some(realm), Some(nonce)) => {
                attrs.push((ATTR_USERNAME, self.username.as_bytes().to_vec()));
                attrs.push((ATTR_REALM, realm.as_bytes().to_vec()));
                attrs.push((ATTR_NONCE, nonce.as_bytes().to_vec()));
                encode(method, Class::Request, &id, &attrs, Some(key))
            }
            // Only the first Allocate goes out unauthenticated: it asks for realm and nonce.
            _ => encode(method, Class::Request, &id, &attrs, None),
        };
        self.out.push_back(bytes.clone());
        self.transactions.push(Transaction {
            id,
            request,
            bytes,
            sends: 1,
            rto: INITIAL_RTO,
            next_send: now + INITIAL_RTO,
            auth_retries,
        });
    }

    fn on_success(&mut self, now: Instant, request: Request, msg: &Message) {
        match request {
            Request::Allocate => {
                let Some(relayed) = msg
                    .attr(ATTR_XOR_RELAYED_ADDRESS)
                    .and_then(|v| xor_addr(v, &msg.id))
                else {
                    self.state =
                        TurnState::Failed("the Allocate answer has no XOR-RELAYED-ADDRESS".into());
                    return;
                };
                let mapped = msg
                    .attr(ATTR_XOR_MAPPED_ADDRESS)
                    .and_then(|v| xor_addr(v, &msg.id));
                self.state = TurnState::Allocated { relayed, mapped };
                self.plan_refresh(now, msg);
            }
            Request::Refresh { lifetime_secs: 0 } => {}
            Request::Refresh { .. } => self.plan_refresh(now, msg),
            Request::ChannelBind { peer, .. } => {
                let Some(channel) = self.peers.get_mut(&peer) else {
                    return;
                };
                channel.bound = true;
                channel.rebind_at = Some(now + REBIND_EVERY);
                let number = channel.number;
                for data in channel.pending.drain(..) {
                    self.out.push_back(channel_data(number, &data));
                }
            }
        }
    }

    /// The next Refresh: a minute before the allocation's lifetime ends, or halfway for a
    /// short one.
    fn plan_refresh(&mut self, now: Instant, msg: &Message) {
        let lifetime = msg
            .attr(ATTR_LIFETIME)
            .and_then(|v| v.try_into().ok())
            .map(|b: [u8; 4]| Duration::from_secs(u64::from(u32::from_be_bytes(b))))
            .unwrap_or(DEFAULT_LIFETIME);
        let ahead = Duration::from_secs(60).min(lifetime / 2);
        self.refresh_at = Some(now + lifetime - ahead);
    }

    fn on_error(&mut self, now: Instant, t: Transaction, msg: &Message) {
        let (code, reason) = msg.error_code().unwrap_or((0, String::new()));
        let realm = msg
            .attr(ATTR_REALM)
            .and_then(|v| std::str::from_utf8(v).ok());
        let nonce = msg
            .attr(ATTR_NONCE)
            .and_then(|v| std::str::from_utf8(v).ok());
        // 401 on the first Allocate: the challenge. 438: the nonce went stale. Either way,
        // the same request again with what the server said, a few times at most.
        let challenge = code == 401 && self.key.is_none();
        if (challenge || code == 438) && t.auth_retries < MAX_AUTH_RETRIES {
            if let Some(nonce) = nonce {
                if let Some(realm) = realm {
                    self.key = Some(long_term_key(&self.username, realm, &self.password));
                    self.realm = Some(realm.to_string());
                }
                self.nonce = Some(nonce.to_string());
                if self.key.is_some() {
                    self.start(now, t.request, t.auth_retries + 1);
                    return;
                }
            }
        }
        let why = format!("the TURN server answered {code} {reason}");
        match t.request {
            Request::Allocate => {
                let hint = if code == 401 {
                    " (the credentials: is its static-auth-secret voipchat's turn_secret, and \
                     are the clocks of the two hosts close?)"
                } else {
                    ""
                };
                self.state = TurnState::Failed(format!("{why}{hint}"));
            }
            Request::Refresh { lifetime_secs: 0 } => {}
            Request::Refresh { .. } => {
                self.state = TurnState::Failed(format!("refreshing the allocation: {why}"));
            }
            Request::ChannelBind { peer, .. } => {
                tracing::warn!(%peer, "TURN: no channel to the peer: {why}");
                if let Some(c) = self.peers.get_mut(&peer) {
                    c.refused = true;
                    c.pending.clear();
                }
            }
        }
    }

    fn on_lost(&mut self, now: Instant, request: Request) {
        match request {
            Request::Allocate => {
                self.state = TurnState::Failed(format!(
                    "no answer from the TURN server {} after {MAX_SENDS} tries",
                    self.server
                ));
            }
            Request::Refresh { lifetime_secs: 0 } => {}
            Request::Refresh { .. } => {
                self.state = TurnState::Failed("the TURN server stopped answering".into());
            }
            Request::ChannelBind { peer, number } => {
                // Try again at the next rebind time: the relay may come back.
                tracing::debug!(%peer, number, "TURN: ChannelBind got no answer");
                if let Some(c) = self.peers.get_mut(&peer) {
                    c.rebind_at = Some(now + INITIAL_RTO);
                }
            }
        }
    }
}

/// RFC 8489 §9.2.2: the long-term credential key.
fn long_term_key(username: &str, realm: &str, password: &Secret) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(format!("{username}:{realm}:{}", password.expose()).as_bytes());
    md5.finalize().into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// The message type of a method (all of ours are below 0x10) in a class.
fn message_type(method: u16, class: Class) -> u16 {
    let bits = match class {
        Class::Request => 0x000,
        Class::Indication => 0x010,
        Class::Success => 0x100,
        Class::Error => 0x110,
    };
    method | bits
}

fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

/// A STUN message with `attrs` (each padded to four bytes), and a MESSAGE-INTEGRITY last
/// when `key` is given.
fn encode(
    method: u16,
    class: Class,
    id: &[u8; 12],
    attrs: &[(u16, Vec<u8>)],
    key: Option<&[u8; 16]>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&message_type(method, class).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&MAGIC.to_be_bytes());
    buf.extend_from_slice(id);
    for (typ, value) in attrs {
        buf.extend_from_slice(&typ.to_be_bytes());
        // Our attributes are a few hundred bytes at most: the length fits.
        buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        buf.extend_from_slice(value);
        buf.resize(buf.len().next_multiple_of(4), 0);
    }
    if let Some(key) = key {
        // The length covers the integrity attribute (4 + 20) that follows the hashed part.
        let hashed_len = buf.len() - HEADER + 24;
        set_length(&mut buf, hashed_len);
        let mac = hmac_sha1(key, &buf);
        buf.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        buf.extend_from_slice(&20u16.to_be_bytes());
        buf.extend_from_slice(&mac);
    }
    let len = buf.len() - HEADER;
    set_length(&mut buf, len);
    buf
}

fn set_length(buf: &mut [u8], len: usize) {
    buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A parsed STUN message, borrowing the datagram.
struct Message<'a> {
    method: u16,
    class: Class,
    id: [u8; 12],
    attrs: Vec<(u16, &'a [u8])>,
    raw: &'a [u8],
    /// Where the MESSAGE-INTEGRITY attribute starts, if there is one.
    integrity_at: Option<usize>,
}

impl<'a> Message<'a> {
    /// Never panics; `None` for anything that is not a well-formed STUN message.
    fn parse(buf: &'a [u8]) -> Option<Message<'a>> {
        if buf.len() < HEADER || buf[0] & 0xC0 != 0 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf[4..8] != MAGIC.to_be_bytes() || len % 4 != 0 || HEADER + len > buf.len() {
            return None;
        }
        let raw = &buf[..HEADER + len];
        let (method, class) = split_type(u16::from_be_bytes([buf[0], buf[1]]));
        let id: [u8; 12] = buf[8..20].try_into().ok()?;
        let mut attrs = Vec::new();
        let mut integrity_at = None;
        let mut at = HEADER;
        while at + 4 <= raw.len() {
            let typ = u16::from_be_bytes([raw[at], raw[at + 1]]);
            let n = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
            let value = raw.get(at + 4..at + 4 + n)?;
            if typ == ATTR_MESSAGE_INTEGRITY {
                integrity_at = Some(at);
            }
            // Attributes after MESSAGE-INTEGRITY (but FINGERPRINT) are not covered by it.
            if integrity_at.is_none() || typ == ATTR_MESSAGE_INTEGRITY {
                attrs.push((typ, value));
            }
            at += (4 + n).next_multiple_of(4);
        }
        Some(Message {
            method,
            class,
            id,
            attrs,
            raw,
            integrity_at,
        })
    }

    fn attr(&self, typ: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|(t, _)| *t == typ).map(|(_, v)| *v)
    }

    /// (code, reason) of an ERROR-CODE attribute.
    fn error_code(&self) -> Option<(u16, String)> {
        let v = self.attr(ATTR_ERROR_CODE)?;
        if v.len() < 4 {
            return None;
        }
        let code = u16::from(v[2] & 0x07) * 100 + u16::from(v[3]);
        Some((code, String::from_utf8_lossy(&v[4..]).into_owned()))
    }

    /// Whether the MESSAGE-INTEGRITY is there and right under `key`. Without a key (before
    /// the challenge) nothing can be checked, and nothing needs to be: only the first,
    /// unauthenticated Allocate is answered then.
    fn verify_integrity(&self, key: Option<&[u8]>) -> bool {
        let Some(key) = key else {
            return true;
        };
        let Some(at) = self.integrity_at else {
            return false;
        };
        let Some(mac) = self.raw.get(at + 4..at + 24) else {
            return false;
        };
        let mut hashed = self.raw[..at].to_vec();
        set_length(&mut hashed, at - HEADER + 24);
        let mut check = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts any key length");
        check.update(&hashed);
        check.verify_slice(mac).is_ok()
    }
}

/// XOR-MAPPED-ADDRESS and friends (RFC 8489 §14.2).
fn xor_addr(v: &[u8], id: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    let ip = match v[1] {
        0x01 => {
            let b: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes(b) ^ MAGIC))
        }
        0x02 => {
            let mut b: [u8; 16] = v.get(4..20)?.try_into().ok()?;
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
            mask[4..].copy_from_slice(id);
            for (x, m) in b.iter_mut().zip(mask) {
                *x ^= m;
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn encode_xor_addr(addr: SocketAddr, id: &[u8; 12]) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC >> 16) as u16;
    let mut v = vec![0];
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            v.push(0x02);
            v.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
            mask[4..].copy_from_slice(id);
            v.extend(ip.octets().iter().zip(mask).map(|(x, m)| x ^ m));
        }
    }
    v
}

/// ChannelData: the channel number, the length, the data (RFC 8656 §12.4). Over UDP the
/// padding is optional and not sent.
fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + data.len());
    v.extend_from_slice(&number.to_be_bytes());
    // Datagrams from str0m are at most an MTU: the length fits.
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn parse_channel_data(buf: &[u8]) -> Option<(u16, &[u8])> {
    if buf.len() < 4 || buf[0] & 0xC0 != 0x40 {
        return None;
    }
    let number = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    Some((number, buf.get(4..4 + len)?))
}

#[cfg(test)]
#[path = "turn_tests.rs"]
mod tests;
