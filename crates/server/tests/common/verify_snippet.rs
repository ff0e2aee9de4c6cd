use hmac::{Hmac, Mac};
use sha2::Sha256;

/// True if `header` (X-Voipchat-Signature: `t=<unix>,v1=<hex>`) signs the raw `body` with
/// the webhook secret, at most 300 s from `now_unix`.
pub fn verify(app_secret: &str, header: &str, body: &[u8], now_unix: u64) -> bool {
    let (mut t, mut sigs) = (None, Vec::new());
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => sigs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if t.abs_diff(now_unix) > 300 {
        return false; // missing, or a replay of an old delivery
    }
    sigs.iter().any(|sig| {
        let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(sig).is_ok() // compares in constant time
    })
}
