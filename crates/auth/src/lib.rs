//! Join signatures, session keys and app credentials. Pure functions: time comes in as an
//! argument, nothing here reads the clock, the network or the disk.
//!
//! The signature is WeChat's `joinVoIPChat` one (docs/reference §4):
//!
//! ```text
//! signature = hmac_sha256([appId, groupId, nonceStr, String(timeStamp)].sort().join(''), sessionKey)
//! ```
//!
//! with two details that are easy to get wrong:
//! - `sort()` is JavaScript's default sort, which compares UTF-16 code units, not Unicode
//!   scalar values or UTF-8 bytes ([`signing_string`]);
//! - the HMAC key is the UTF-8 bytes of the base64 session key *string*, not the 16 bytes it
//!   encodes ([`sign`]).
//!
//! [`verify`] checks freshness and the signature. It does not check nonce replay: that needs
//! shared state, so the store does it (`Store::consume_nonce`).
//!
//! [`webhook`] signs the server's webhook deliveries (and verifies them, for receivers).

pub mod webhook;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::cmp::Ordering;
use subtle::ConstantTimeEq;
use voipchat_proto::{AppId, ErrorCode, Failure, JoinRequest, Secret};

type HmacSha256 = Hmac<Sha256>;

/// Orders two strings as JavaScript's default `Array.prototype.sort` does: by UTF-16 code
/// units. This differs from `str`'s own order only when one string has a character above
/// U+FFFF (a surrogate pair, 0xD800..0xDFFF) where the other has one in U+E000..U+FFFF.
fn js_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The message that is signed: the four inputs as strings, sorted as JavaScript sorts them,
/// concatenated without separator.
///
/// ```
/// let s = voipchat_auth::signing_string("wx20afc706a711eefc", "1559129713_672975982", "8AP6DT9ybtniUJfb", 1559129714);
/// assert_eq!(s, "1559129713_67297598215591297148AP6DT9ybtniUJfbwx20afc706a711eefc");
/// ```
pub fn signing_string(app_id: &str, group_id: &str, nonce_str: &str, time_stamp: u64) -> String {
    let ts = time_stamp.to_string();
    let mut parts = [app_id, group_id, nonce_str, ts.as_str()];
    // Equal strings are interchangeable, so stability does not matter.
    parts.sort_unstable_by(|a, b| js_cmp(a, b));
    parts.concat()
}

/// HMAC-SHA256 of `msg` keyed by the session key string's own UTF-8 bytes.
fn mac(msg: &str, session_key: &Secret) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(session_key.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The join signature, as 64 lowercase hex characters.
pub fn sign(
    app_id: &str,
    group_id: &str,
    nonce_str: &str,
    time_stamp: u64,
    session_key: &Secret,
) -> String {
    hex::encode(mac(
        &signing_string(app_id, group_id, nonce_str, time_stamp),
        session_key,
    ))
}

/// How strict [`verify`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Largest accepted distance, in seconds and in either direction, between the request's
    /// `timeStamp` and the server's clock. It also bounds how long a nonce must be remembered.
    pub window_secs: u64,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self { window_secs: 300 }
    }
}

/// Why a join request's credentials were refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AuthError {
    /// The signature is not the one the user's current session key gives.
    #[error("invalid signature")]
    InvalidSignature,
    /// `timeStamp` is too far from the server's clock. `skew_secs` is `timeStamp - now`:
    /// positive when the client's stamp is in the future, negative when it is old.
    #[error("stale timeStamp (skew {skew_secs} s)")]
    StaleTimestamp { skew_secs: i64 },
}

impl AuthError {
    /// The wire failure for this error; the one place auth errors map to error codes.
    pub fn failure(&self) -> Failure {
        match self {
            AuthError::InvalidSignature => Failure::with_detail(
                ErrorCode::InvalidSignature,
                "invalid signature: it does not match the user's current session key",
            ),
            AuthError::StaleTimestamp { skew_secs } => {
                let amount = skew_secs.unsigned_abs();
                let direction = if *skew_secs < 0 { "behind" } else { "ahead of" };
                Failure::with_detail(
                    ErrorCode::StaleTimestamp,
                    format!(
                        "timeStamp is {amount} s {direction} the server clock, outside the accepted window"
                    ),
                )
            }
        }
    }
}

/// Checks a join request's credentials at `now_unix`:
/// 1. `|timeStamp - now| <= policy.window_secs`, else [`AuthError::StaleTimestamp`];
/// 2. the signature equals [`sign`] over the request's fields with `session_key`, compared in
///    constant time; upper- and lowercase hex are both accepted.
///
/// Nonce replay is not checked here (see `Store::consume_nonce`). Never panics.
pub fn verify(
    req: &JoinRequest,
    session_key: &Secret,
    now_unix: u64,
    policy: &VerifyPolicy,
) -> Result<(), AuthError> {
    let skew = i128::from(req.time_stamp) - i128::from(now_unix);
    if skew.unsigned_abs() > u128::from(policy.window_secs) {
        let skew_secs = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
        return Err(AuthError::StaleTimestamp { skew_secs });
    }
    let expected = mac(
        &signing_string(
            req.app_id.as_str(),
            req.group_id.as_str(),
            &req.nonce_str,
            req.time_stamp,
        ),
        session_key,
    );
    // `hex::decode` takes either case; anything that is not 32 bytes of hex cannot match.
    let given = hex::decode(req.signature.as_bytes()).map_err(|_| AuthError::InvalidSignature)?;
    if given.len() == expected.len() && bool::from(given.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(AuthError::InvalidSignature)
    }
}

/// A fresh session key: 16 random bytes in standard base64 (24 characters), as WeChat's.
pub fn new_session_key() -> Secret {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    Secret::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A fresh app id: `wx` and 16 random lowercase hex characters, shaped like WeChat's.
pub fn new_app_id() -> AppId {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    AppId::new(format!("wx{}", hex::encode(bytes)))
}

/// A fresh app secret: 32 random bytes as 64 lowercase hex characters.
pub fn new_app_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    Secret::new(hex::encode(bytes))
}

/// Equality of two secrets in time that depends only on their lengths, not their contents.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    // `ct_eq` on slices of different lengths is false (and returns early only on length).
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_cmp_orders_astral_before_private_use() {
        // '😀' is the pair D83D DE00 in UTF-16, so JS puts it before U+E000; `str` order
        // (by scalar value) says the opposite.
        assert_eq!(js_cmp("😀", "\u{E000}"), Ordering::Less);
        assert_eq!("😀".cmp("\u{E000}"), Ordering::Greater);
        assert_eq!(js_cmp("\u{FF21}", "𝐀"), Ordering::Greater);
        assert_eq!(js_cmp("a", "ab"), Ordering::Less);
        assert_eq!(js_cmp("", ""), Ordering::Equal);
    }

    #[test]
    fn stale_timestamp_failure_says_direction() {
        let old = AuthError::StaleTimestamp { skew_secs: -400 }.failure();
        assert_eq!(old.code, ErrorCode::StaleTimestamp);
        assert!(old.detail.contains("400 s behind"), "{}", old.detail);
        let future = AuthError::StaleTimestamp { skew_secs: 301 }.failure();
        assert!(
            future.detail.contains("301 s ahead of"),
            "{}",
            future.detail
        );
        let bad = AuthError::InvalidSignature.failure();
        assert_eq!(bad.code, ErrorCode::InvalidSignature);
    }

    #[test]
    fn secrets_equal_compares_contents_and_lengths() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
        assert!(!secrets_equal("", "a"));
        assert!(secrets_equal("", ""));
    }

    #[test]
    fn generated_credentials_have_wechat_shapes() {
        let key = new_session_key();
        assert_eq!(key.expose().len(), 24);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(key.expose())
            .expect("standard base64");
        assert_eq!(raw.len(), 16);

        let app = new_app_id();
        assert_eq!(app.as_str().len(), 18);
        assert!(app.as_str().starts_with("wx"));
        assert!(app.as_str()[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

        let secret = new_app_secret();
        assert_eq!(secret.expose().len(), 64);
        assert!(secret
            .expose()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

        assert_ne!(new_session_key(), new_session_key());
        assert_ne!(new_app_id(), new_app_id());
        assert_ne!(new_app_secret(), new_app_secret());
    }
}
