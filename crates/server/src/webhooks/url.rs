//! Which webhook URLs are accepted: absolute `http://` or `https://` URLs with a host, no
//! credentials, no fragment, at most [`URL_MAX_CHARS`] characters. Checked where a URL comes
//! in (the backend API, the CLI) and again before each delivery.

use hyper::Uri;

/// The longest webhook URL accepted.
pub const URL_MAX_CHARS: usize = 2048;

/// A parsed webhook URL: where to connect and what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    /// `https://`: TLS to `host`.
    pub tls: bool,
    /// A DNS name, or an IP address (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header: the authority as written.
    pub authority: String,
    /// Path and query, at least "/".
    pub path_and_query: String,
}

/// Parses a webhook URL, or says in one line what is wrong with it.
pub fn parse(text: &str) -> Result<WebhookUrl, String> {
    let n = text.chars().count();
    if n == 0 {
        return Err("url must not be empty".into());
    }
    if n > URL_MAX_CHARS {
        return Err(format!(
            "url is {n} characters long; at most {URL_MAX_CHARS} are accepted"
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("url must not contain spaces or control characters".into());
    }
    let lower = text.to_ascii_lowercase();
    let tls = if lower.starts_with("https://") {
        true
    } else if lower.starts_with("http://") {
        false
    } else {
        return Err("url must be an absolute http:// or https:// URL".into());
    };
    let rest = &text[if tls { 8 } else { 7 }..];
    if rest.is_empty() || rest.starts_with(['/', '?']) {
        return Err("url must name a host".into());
    }
    if text.contains('#') {
        return Err("url must not have a #fragment (it is never sent to a server)".into());
    }
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("url is not a valid URL: {e}"))?;
    let Some(authority) = uri.authority() else {
        return Err("url must name a host".into());
    };
    if authority.as_str().contains('@') {
        return Err(
            "url must not contain credentials (user:password@): put a token in its path or query"
                .into(),
        );
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err("url must name a host".into());
    }
    let auth = authority.as_str();
    // What follows the host: ":port" or nothing (IPv6 hosts are in brackets).
    let after_host = match auth.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, tail)| tail),
        None => auth.find(':').map_or("", |i| &auth[i..]),
    };
    let port = match after_host.strip_prefix(':') {
        None if tls => 443,
        None => 80,
        Some(text) => match text.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("url has port {text:?}: a port is 1 to 65535")),
        },
    };
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_string()
    } else {
        format!("/{path_and_query}")
    };
    Ok(WebhookUrl {
        tls,
        host: host.to_string(),
        port,
        authority: authority.as_str().to_string(),
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_parse() {
        let u = parse("https://game.example/hooks/voip?token=abc").unwrap();
        assert_eq!(
            u,
            WebhookUrl {
                tls: true,
                host: "game.example".into(),
                port: 443,
                authority: "game.example".into(),
                path_and_query: "/hooks/voip?token=abc".into(),
            }
        );
        let u = parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.tls, u.port, u.path_and_query.as_str()),
            (false, 8080, "/")
        );
        let u = parse("HTTP://[::1]:9000/h").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert!(parse(&format!("http://h/{}", "a".repeat(URL_MAX_CHARS - 9))).is_ok());
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("", "empty"),
            ("ftp://h/", "http:// or https://"),
            ("game.example/hook", "http:// or https://"),
            ("javascript:alert(1)", "http:// or https://"),
            ("http://", "host"),
            ("http:///path", "host"),
            ("https://?q", "host"),
            ("http://user:pw@h/", "credentials"),
            ("http://h/a b", "spaces"),
            ("http://h/\n", "control"),
            ("http://h/#frag", "fragment"),
            ("http://h:0/", "port \"0\""),
            ("http://h:99999/", "1 to 65535"),
            ("http://h:/", "port \"\""),
        ] {
            let e = parse(url).expect_err(url);
            assert!(e.contains(why), "{url:?}: {e}");
        }
        let long = format!("http://h/{}", "a".repeat(URL_MAX_CHARS));
        assert!(parse(&long).unwrap_err().contains("at most 2048"));
    }
}

#[cfg(test)]
mod fuzz {
    /// Arbitrary text never panics the parser, and what it accepts is an http(s) URL.
    #[test]
    fn random_text_never_panics() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<char> = "htps:/[]@?#%.:0123456789abcxyz-_~ \u{0}\u{7f}é😀HTTPS"
            .chars()
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let mut text: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if rng.gen_bool(0.5) {
                let scheme = if rng.gen_bool(0.5) {
                    "http://"
                } else {
                    "https://"
                };
                text.insert_str(0, scheme);
            }
            if let Ok(url) = super::parse(&text) {
                assert!(!url.host.is_empty() && url.port > 0, "{text:?}: {url:?}");
                assert!(url.path_and_query.starts_with('/'), "{text:?}");
            }
        }
    }
}
