//! The signature on webhook deliveries (docs/webhooks.md): the header
//! `X-Voipchat-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//! `HMAC-SHA256(key = the app's webhook secret's UTF-8 bytes, message = "<t>." + body)`
//! (the webhook secret is the digest the store keeps of the app secret).
//!
//! The timestamp is inside the signed message, so a receiver that refuses old timestamps
//! refuses replays of old deliveries. [`verify_header`] is what a Rust receiver runs; the
//! server only calls [`signature_header`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use voipchat_proto::Secret;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Voipchat-Signature";

/// Why a webhook signature header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum WebhookSignatureError {
    /// Not `t=<digits>,v1=<64 hex>`.
    #[error("malformed signature header: expected t=<unix seconds>,v1=<64 hex characters>")]
    Malformed,
    /// `t` is further from the receiver's clock than it accepts.
    #[error("signature timestamp is {skew_secs} s from now, outside the accepted window")]
    Stale { skew_secs: i64 },
    /// No `v1` matches the body under this secret.
    #[error("signature does not match the body under the webhook secret")]
    Mismatch,
}

fn mac(app_secret: &Secret, unix_secs: u64, body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(app_secret.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `unix_secs`.
///
/// ```
/// use voipchat_proto::Secret;
/// let h = voipchat_auth::webhook::signature_header(&Secret::new("s3cret"), 1764633600, b"{}");
/// assert!(h.starts_with("t=1764633600,v1=") && h.len() == 16 + 64);
/// ```
pub fn signature_header(app_secret: &Secret, unix_secs: u64, body: &[u8]) -> String {
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac(app_secret, unix_secs, body))
    )
}

/// Checks a received [`SIGNATURE_HEADER`] value against the raw body at `now_unix`,
/// accepting timestamps up to `tolerance_secs` away either way. Several `v1=` entries
/// (as during a secret rotation on the receiver's side) pass if any one matches. Never
/// panics, whatever the header holds.
pub fn verify_header(
    app_secret: &Secret,
    header: &str,
    body: &[u8],
    now_unix: u64,
    tolerance_secs: u64,
) -> Result<(), WebhookSignatureError> {
    let mut t: Option<u64> = None;
    let mut given: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(WebhookSignatureError::Malformed)?;
        match key {
            "t" if t.is_none()
                && !value.is_empty()
                && value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                t = Some(
                    value
                        .parse()
                        .map_err(|_| WebhookSignatureError::Malformed)?,
                );
            }
            "v1" => {
                let mut sig = [0u8; 32];
                hex::decode_to_slice(value, &mut sig)
                    .map_err(|_| WebhookSignatureError::Malformed)?;
                given.push(sig);
            }
            // Other schemes a later version may add are skipped.
            "t" => return Err(WebhookSignatureError::Malformed),
            _ => {}
        }
    }
    let Some(t) = t else {
        return Err(WebhookSignatureError::Malformed);
    };
    if given.is_empty() {
        return Err(WebhookSignatureError::Malformed);
    }
    let skew = i128::from(t) - i128::from(now_unix);
    if skew.unsigned_abs() > u128::from(tolerance_secs) {
        let skew_secs = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
        return Err(WebhookSignatureError::Stale { skew_secs });
    }
    let expected = mac(app_secret, t, body);
    if given.iter().any(|g| bool::from(g.ct_eq(&expected))) {
        Ok(())
    } else {
        Err(WebhookSignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_any_change_does_not() {
        let secret = Secret::new("app-secret");
        let body = br#"{"id":"d1","event":"room_started"}"#;
        let h = signature_header(&secret, 1_000, body);
        assert_eq!(verify_header(&secret, &h, body, 1_000, 300), Ok(()));
        assert_eq!(verify_header(&secret, &h, body, 1_300, 300), Ok(()));
        assert_eq!(
            verify_header(&secret, &h, body, 1_301, 300),
            Err(WebhookSignatureError::Stale { skew_secs: -301 })
        );
        assert_eq!(
            verify_header(&secret, &h, b"{}", 1_000, 300),
            Err(WebhookSignatureError::Mismatch)
        );
        assert_eq!(
            verify_header(&Secret::new("other"), &h, body, 1_000, 300),
            Err(WebhookSignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = h.replacen("t=1000", "t=1001", 1);
        assert_eq!(
            verify_header(&secret, &moved, body, 1_000, 300),
            Err(WebhookSignatureError::Mismatch)
        );
        // A second, wrong v1 next to the right one still passes.
        let two = format!("{h},v1={}", "0".repeat(64));
        assert_eq!(verify_header(&secret, &two, body, 1_000, 300), Ok(()));
    }

    #[test]
    fn the_mac_is_the_documented_one() {
        // HMAC-SHA256("app-secret", "1000.{}"), computed independently with
        // `printf '1000.{}' | openssl dgst -sha256 -hmac app-secret`.
        let h = signature_header(&Secret::new("app-secret"), 1_000, b"{}");
        assert_eq!(
            h,
            "t=1000,v1=f06b4a9cb2eb44e1cf6bc4d1282e883ad60cb5512b1685e13c7799f07c1b59e2"
        );
    }

    #[test]
    fn malformed_headers_are_refused_never_a_panic() {
        let s = Secret::new("k");
        for h in [
            "",
            "t=1",
            "v1=00",
            "t=,v1=",
            "t=x,v1=00",
            "t=1,t=1,v1=00",
            "nonsense",
            "t=99999999999999999999999,v1=00",
            "t=1,v1=zz",
            "t=1,v1=0000",
            "t=-1,v1=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(
                verify_header(&s, h, b"", 1, u64::MAX),
                Err(WebhookSignatureError::Malformed),
                "{h:?}"
            );
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// Arbitrary headers never panic the verifier; only the real signature passes.
    #[test]
    fn random_headers_never_panic() {
        use rand::{Rng, SeedableRng};
        let secret = Secret::new("k");
        let good = super::signature_header(&secret, 5, b"body");
        let alphabet: Vec<char> = "tv1=,0123456789abcdef \u{0}é".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let mut h: String = (0..rng.gen_range(0..90))
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if rng.gen_bool(0.3) {
                h = format!("{good}{h}");
            }
            let ok = super::verify_header(&secret, &h, b"body", 5, 300).is_ok();
            assert!(!ok || h.starts_with(&good), "{h:?}");
        }
    }
}
