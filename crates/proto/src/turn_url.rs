//! `turn:` and `turns:` URLs (RFC 7065), as they appear in `iceServers[].urls`: the server
//! checks its `turn_urls` with this parser at start-up, and the Rust client reads the
//! `hello`'s URLs with it, so both sides agree on what a TURN URL is.
//!
//! Grammar: `turn:HOST[:PORT][?transport=udp|tcp]` and `turns:HOST[:PORT][?transport=tcp]`,
//! where HOST is a DNS name, an IPv4 address or a bracketed IPv6 address. No user part, no
//! path, no other query parameter: browsers refuse them, so a config that has one is a
//! mistake worth stopping for.

use std::fmt;
use std::str::FromStr;

/// The port a `turn:` URL without one means (RFC 8656 §4: TURN over UDP and TCP).
pub const TURN_DEFAULT_PORT: u16 = 3478;
/// The port a `turns:` URL without one means (TURN over TLS).
pub const TURNS_DEFAULT_PORT: u16 = 5349;
/// Longest URL accepted, in bytes: a DNS name is at most 253 characters.
pub const TURN_URL_MAX_BYTES: usize = 300;

/// How a client reaches the TURN server (the `transport` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    Udp,
    Tcp,
}

/// One parsed TURN URL. `Display` writes it back exactly as it was given (the server sends
/// its configured strings unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TurnUrl {
    /// `turns:`: TLS to the TURN server.
    pub secure: bool,
    /// A DNS name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    /// The port written in the URL, if any; see [`TurnUrl::port`].
    pub explicit_port: Option<u16>,
    /// The `?transport=` parameter, if any; see [`TurnUrl::transport`].
    pub explicit_transport: Option<TurnTransport>,
}

impl TurnUrl {
    /// The port to use: the URL's own, else 3478 (`turn:`) or 5349 (`turns:`).
    pub fn port(&self) -> u16 {
        self.explicit_port.unwrap_or(if self.secure {
            TURNS_DEFAULT_PORT
        } else {
            TURN_DEFAULT_PORT
        })
    }

    /// The transport to use: the URL's own, else UDP for `turn:` and TCP (TLS) for `turns:`.
    pub fn transport(&self) -> TurnTransport {
        self.explicit_transport.unwrap_or(if self.secure {
            TurnTransport::Tcp
        } else {
            TurnTransport::Udp
        })
    }
}

/// Why a string is not a TURN URL; the message names the URL and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not a TURN URL: {reason} (expected turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT])")]
pub struct TurnUrlError {
    pub url: String,
    pub reason: String,
}

impl FromStr for TurnUrl {
    type Err = TurnUrlError;

    fn from_str(url: &str) -> Result<TurnUrl, TurnUrlError> {
        let bad = |reason: &str| TurnUrlError {
            url: url.chars().take(TURN_URL_MAX_BYTES).collect(),
            reason: reason.to_string(),
        };
        if url.len() > TURN_URL_MAX_BYTES {
            return Err(bad(&format!("longer than {TURN_URL_MAX_BYTES} bytes")));
        }
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| bad("no scheme: it must start with turn: or turns:"))?;
        let secure = match scheme {
            "turn" => false,
            "turns" => true,
            _ => return Err(bad("the scheme must be turn or turns")),
        };
        if rest.starts_with("//") {
            return Err(bad(
                "TURN URLs have no \"//\": write turn:HOST, not turn://HOST",
            ));
        }
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        if authority.contains(['@', '/']) {
            return Err(bad(
                "no user part or path: credentials come from the server",
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|r| bad(&r))?;
        check_host(host).map_err(|r| bad(&r))?;
        let explicit_transport = match query {
            None => None,
            Some("transport=udp") => Some(TurnTransport::Udp),
            Some("transport=tcp") => Some(TurnTransport::Tcp),
            Some(q) => {
                return Err(bad(&format!(
                    "the only parameter is transport=udp or transport=tcp, not {q:?}"
                )))
            }
        };
        if secure && explicit_transport == Some(TurnTransport::Udp) {
            return Err(bad(
                "turns: is TURN over TLS, which runs on TCP: transport=udp is not possible",
            ));
        }
        Ok(TurnUrl {
            secure,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            explicit_port: port,
            explicit_transport,
        })
    }
}

/// "host", "host:3478", "[::1]", "[::1]:3478" → (host as written, port).
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        let (host, after) = authority.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err("only :PORT may follow an IPv6 address".into()),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("the port {p:?} is not 1 to 65535")),
            Ok(n) if p.starts_with('0') => return Err(format!("the port {n} has leading zeros")),
            Ok(n) => Some(n),
        },
    };
    Ok((host, port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host".into());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.trim_end_matches(']');
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{inner:?} is not an IPv6 address"));
    }
    if host.contains(':') {
        return Err("an IPv6 address must be in brackets, as in turn:[2001:db8::1]".into());
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    // A DNS name: dot-separated labels of letters, digits and inner hyphens.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!("{host:?} is not a host name or an IP address"));
    }
    if host
        .split('.')
        .next_back()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    Ok(())
}

impl fmt::Display for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "turns:" } else { "turn:" })?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.explicit_port {
            write!(f, ":{p}")?;
        }
        match self.explicit_transport {
            Some(TurnTransport::Udp) => f.write_str("?transport=udp"),
            Some(TurnTransport::Tcp) => f.write_str("?transport=tcp"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> TurnUrl {
        let u: TurnUrl = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(u.to_string(), s, "written back as given");
        u
    }

    fn err(s: &str) -> String {
        s.parse::<TurnUrl>()
            .map(|u| panic!("{s} accepted as {u:?}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_urls_and_their_defaults() {
        let u = ok("turn:turn.example.com");
        assert_eq!(
            (u.secure, u.host.as_str(), u.port()),
            (false, "turn.example.com", 3478)
        );
        assert_eq!(u.transport(), TurnTransport::Udp);
        let u = ok("turns:turn.example.com");
        assert_eq!((u.port(), u.transport()), (5349, TurnTransport::Tcp));
        let u = ok("turn:10.0.0.1:3479?transport=tcp");
        assert_eq!((u.host.as_str(), u.port()), ("10.0.0.1", 3479));
        assert_eq!(u.transport(), TurnTransport::Tcp);
        let u = ok("turn:[2001:db8::1]:3478?transport=udp");
        assert_eq!(u.host, "2001:db8::1");
        ok("turns:turn.example.com:443?transport=tcp");
        ok("turn:localhost");
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(err("stun:example.com").contains("scheme must be turn or turns"));
        assert!(err("turn://example.com").contains("no \"//\""));
        assert!(err("example.com").contains("no scheme"));
        assert!(err("turn:").contains("no host"));
        assert!(err("turn:example.com:0").contains("not 1 to 65535"));
        assert!(err("turn:example.com:70000").contains("not 1 to 65535"));
        assert!(err("turn:example.com:x").contains("not 1 to 65535"));
        assert!(err("turn:example.com?transport=sctp").contains("transport=udp or transport=tcp"));
        assert!(err("turns:example.com?transport=udp").contains("runs on TCP"));
        assert!(err("turn:user@example.com").contains("no user part"));
        assert!(err("turn:2001:db8::1").contains("in brackets"));
        assert!(err("turn:[2001:db8::zz]").contains("not an IPv6 address"));
        assert!(err("turn:bad_host").contains("not a host name"));
        assert!(err("turn:300.1.1.1").contains("not a valid IPv4"));
        assert!(err(&format!("turn:{}", "a".repeat(400))).contains("longer than"));
        assert!(err("turn:example.com:03478").contains("leading zeros"));
    }
}
