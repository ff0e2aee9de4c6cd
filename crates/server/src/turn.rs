//! TURN REST credentials (draft-uberti-behave-turn-rest, the scheme coturn's
//! `use-auth-secret` checks): `username = "EXPIRY:NAME"`, `credential =
//! base64(HMAC-SHA1(shared secret, username))`. The TURN server recomputes the HMAC from its
//! own copy of the secret, so the two never talk to each other.
//!
//! Pure: the caller passes the time and the name. The signaling edge (`ws.rs`) calls
//! [`TurnCredentials::ice_servers`] once per connection, for its `hello`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use voipchat_proto::{IceServer, Secret};

/// The shortest `turn_secret` accepted, in bytes: anyone can collect (username, credential)
/// pairs by opening WebSockets, and try to guess the secret from them offline.
pub const MIN_SECRET_BYTES: usize = 16;

/// The credential for `username` under `secret`: base64 (standard alphabet, padded) of the
/// 20-byte HMAC-SHA1.
pub fn rest_credential(secret: &Secret, username: &str) -> Secret {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    Secret::new(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// `EXPIRY:NAME`, the expiry in Unix seconds.
pub fn rest_username(expires_unix: u64, name: &str) -> String {
    format!("{expires_unix}:{name}")
}

/// A random connection name for a username: `conn-` and 16 hex digits (64 bits: no two
/// connections of a server's life share one).
pub fn connection_name() -> String {
    format!("conn-{:016x}", rand::random::<u64>())
}

/// What the server hands out: the configured TURN URLs, with credentials signed by the
/// shared secret, valid for `ttl_secs`.
#[derive(Clone, Debug)]
pub struct TurnCredentials {
    pub secret: Secret,
    pub urls: Vec<String>,
    pub ttl_secs: u64,
}

impl TurnCredentials {
    /// The `iceServers` for a client named `name`, asked for at `now_unix`: one server
    /// with every configured URL (they all reach the same TURN server, so one credential).
    pub fn ice_servers(&self, name: &str, now_unix: u64) -> Vec<IceServer> {
        let username = rest_username(now_unix.saturating_add(self.ttl_secs), name);
        vec![IceServer {
            urls: self.urls.clone(),
            credential: rest_credential(&self.secret, &username),
            username,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed outside this code, with Python's standard library:
    /// `base64.b64encode(hmac.new(SECRET, USERNAME.encode(), hashlib.sha1).digest())`.
    #[test]
    fn credentials_match_an_independent_hmac() {
        assert_eq!(
            rest_credential(&Secret::new("0123456789abcdef"), "1700000000:o_alice").expose(),
            "VSzg9KkUDJSMVSsKA3SWENCx4og="
        );
        // The golden hello frame of crates/proto/fixtures was signed the same way.
        assert_eq!(
            rest_credential(
                &Secret::new("voipchat-example-turn-secret"),
                "1700003600:conn-5f2a9c41d07e8b36"
            )
            .expose(),
            "xY85I3RnGYCa9Rwnetjd+vXePQs="
        );
    }

    #[test]
    fn the_fixture_hello_is_what_the_server_would_send() {
        let text = include_str!("../../proto/fixtures/server/hello.json");
        let voipchat_proto::ServerMsg::Hello { ice_servers } =
            voipchat_proto::ServerMsg::parse(text).unwrap()
        else {
            panic!("hello.json is not a hello");
        };
        let turn = TurnCredentials {
            secret: Secret::new("voipchat-example-turn-secret"),
            urls: ice_servers[0].urls.clone(),
            ttl_secs: 3600,
        };
        assert_eq!(
            turn.ice_servers("conn-5f2a9c41d07e8b36", 1_700_000_000),
            ice_servers
        );
    }

    #[test]
    fn username_is_expiry_then_name() {
        let turn = TurnCredentials {
            secret: Secret::new("a-secret-of-sixteen"),
            urls: vec!["turn:127.0.0.1:3478".into()],
            ttl_secs: 600,
        };
        let servers = turn.ice_servers("conn-00000000000000ff", 1_000);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].username, "1600:conn-00000000000000ff");
        assert_eq!(
            servers[0].credential,
            rest_credential(&turn.secret, "1600:conn-00000000000000ff")
        );
        let name = connection_name();
        assert!(name.len() == 21 && name.starts_with("conn-"), "{name}");
        assert!(name[5..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(connection_name(), connection_name());
    }
}
