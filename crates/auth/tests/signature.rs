//! The join signature and its verification.

use voipchat_auth::{sign, signing_string, verify, AuthError, VerifyPolicy};
use voipchat_proto::{AppId, GroupId, JoinRequest, MuteConfig, OpenId, RoomType, Secret};

const APP: &str = "wx20afc706a711eefc";
const GROUP: &str = "1559129713_672975982";
const NONCE: &str = "8AP6DT9ybtniUJfb";
const TS: u64 = 1_559_129_714;
const KEY: &str = "gDyVgzwa0mFz9uUP7M6GQQ==";
const SIGNATURE: &str = "b002b824688dd8593a6079e11d8c5e8734fbcb39a6d5906eb347bfbcad79c617";

fn key() -> Secret {
    Secret::new(KEY)
}

fn request(signature: &str) -> JoinRequest {
    JoinRequest {
        app_id: AppId::new(APP),
        open_id: OpenId::new("user-1"),
        group_id: GroupId::new(GROUP),
        nonce_str: NONCE.to_string(),
        time_stamp: TS,
        signature: signature.to_string(),
        room_type: RoomType::Voice,
        mute_config: MuteConfig::default(),
        sdp: String::new(),
    }
}

#[test]
fn seed_vector_signing_string() {
    assert_eq!(
        signing_string(APP, GROUP, NONCE, TS),
        "1559129713_67297598215591297148AP6DT9ybtniUJfbwx20afc706a711eefc"
    );
}

#[test]
fn seed_vector_signature() {
    assert_eq!(sign(APP, GROUP, NONCE, TS, &key()), SIGNATURE);
}

#[test]
fn verify_accepts_good_signature() {
    assert_eq!(
        verify(&request(SIGNATURE), &key(), TS, &VerifyPolicy::default()),
        Ok(())
    );
}

#[test]
fn verify_accepts_uppercase_hex() {
    let upper = SIGNATURE.to_ascii_uppercase();
    assert_eq!(
        verify(&request(&upper), &key(), TS, &VerifyPolicy::default()),
        Ok(())
    );
    let mixed: String = SIGNATURE
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    assert_eq!(
        verify(&request(&mixed), &key(), TS, &VerifyPolicy::default()),
        Ok(())
    );
}

#[test]
fn verify_refuses_wrong_key() {
    let other = Secret::new("o0q0otL8aEzpcZL/FT9WsQ==");
    assert_eq!(
        verify(&request(SIGNATURE), &other, TS, &VerifyPolicy::default()),
        Err(AuthError::InvalidSignature)
    );
}

#[test]
fn verify_refuses_modified_fields() {
    let policy = VerifyPolicy::default();
    let mut r = request(SIGNATURE);
    r.group_id = GroupId::new("1559129713_672975983");
    assert_eq!(
        verify(&r, &key(), TS, &policy),
        Err(AuthError::InvalidSignature)
    );

    let mut r = request(SIGNATURE);
    r.app_id = AppId::new("wx20afc706a711eefd");
    assert_eq!(
        verify(&r, &key(), TS, &policy),
        Err(AuthError::InvalidSignature)
    );

    let mut r = request(SIGNATURE);
    r.nonce_str = "8AP6DT9ybtniUJfB".into();
    assert_eq!(
        verify(&r, &key(), TS, &policy),
        Err(AuthError::InvalidSignature)
    );

    let mut r = request(SIGNATURE);
    r.time_stamp = TS + 1;
    assert_eq!(
        verify(&r, &key(), TS, &policy),
        Err(AuthError::InvalidSignature)
    );

    // One flipped hex digit in the signature.
    let mut flipped = SIGNATURE.to_string();
    flipped.replace_range(63..64, "8");
    assert_eq!(
        verify(&request(&flipped), &key(), TS, &policy),
        Err(AuthError::InvalidSignature)
    );
}

#[test]
fn verify_refuses_malformed_signatures_without_panicking() {
    let policy = VerifyPolicy::default();
    for bad in [
        "",
        "b002",
        &SIGNATURE[..63],
        &format!("{SIGNATURE}00"),
        &SIGNATURE.replace('b', "g"),
        "ｂ002b824688dd8593a6079e11d8c5e8734fbcb39a6d5906eb347bfbcad79c61",
        "😀",
    ] {
        assert_eq!(
            verify(&request(bad), &key(), TS, &policy),
            Err(AuthError::InvalidSignature),
            "{bad:?}"
        );
    }
}

#[test]
fn verify_timestamp_window_edges() {
    let policy = VerifyPolicy { window_secs: 300 };
    // Request stamped TS; the server clock moves around it.
    assert_eq!(
        verify(&request(SIGNATURE), &key(), TS + 300, &policy),
        Ok(())
    );
    assert_eq!(
        verify(&request(SIGNATURE), &key(), TS - 300, &policy),
        Ok(())
    );
    assert_eq!(
        verify(&request(SIGNATURE), &key(), TS + 301, &policy),
        Err(AuthError::StaleTimestamp { skew_secs: -301 })
    );
    assert_eq!(
        verify(&request(SIGNATURE), &key(), TS - 301, &policy),
        Err(AuthError::StaleTimestamp { skew_secs: 301 })
    );
}

#[test]
fn verify_checks_freshness_before_signature() {
    let policy = VerifyPolicy::default();
    assert_eq!(
        verify(&request("nothex"), &key(), TS + 10_000, &policy),
        Err(AuthError::StaleTimestamp { skew_secs: -10_000 })
    );
}

#[test]
fn verify_extreme_clocks_do_not_overflow() {
    let policy = VerifyPolicy {
        window_secs: u64::MAX,
    };
    assert_eq!(
        verify(&request(SIGNATURE), &key(), u64::MAX, &policy),
        Ok(())
    );

    let policy = VerifyPolicy { window_secs: 0 };
    assert_eq!(verify(&request(SIGNATURE), &key(), TS, &policy), Ok(()));
    let mut r = request(SIGNATURE);
    r.time_stamp = u64::MAX;
    assert_eq!(
        verify(&r, &key(), 0, &policy),
        Err(AuthError::StaleTimestamp {
            skew_secs: i64::MAX
        })
    );
    r.time_stamp = 0;
    assert_eq!(
        verify(&r, &key(), u64::MAX, &policy),
        Err(AuthError::StaleTimestamp {
            skew_secs: i64::MIN
        })
    );
}

/// All permutations of `items`, by Heap's algorithm.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    fn heap<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, a, out);
            if k.is_multiple_of(2) {
                a.swap(i, k - 1);
            } else {
                a.swap(0, k - 1);
            }
        }
    }
    let mut a = items.to_vec();
    let mut out = Vec::new();
    heap(a.len(), &mut a, &mut out);
    out
}

/// A tiny deterministic generator, so the test needs no extra dependency and replays exactly.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Characters chosen to hit every ordering hazard: digits (timestamps), ASCII letters, CJK,
/// the U+E000..U+FFFF block and characters above U+FFFF (surrogate pairs in UTF-16).
const POOL: &[char] = &[
    '0',
    '1',
    '5',
    '9',
    '_',
    'a',
    'w',
    'x',
    'Z',
    '中',
    '房',
    '\u{D7FF}',
    '\u{E000}',
    '\u{FF21}',
    '\u{FFFD}',
    '\u{FFFF}',
    '😀',
    '𝐀',
    '\u{10000}',
    '\u{10FFFF}',
];

fn random_string(rng: &mut Lcg) -> String {
    let len = (rng.next() % 5) as usize;
    (0..len)
        .map(|_| POOL[(rng.next() as usize) % POOL.len()])
        .collect()
}

/// JS's order, written independently: sort by the UTF-16 code-unit vectors.
fn reference(parts: &[String]) -> String {
    let mut v: Vec<(Vec<u16>, &String)> = parts
        .iter()
        .map(|s| (s.encode_utf16().collect(), s))
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s.as_str()).collect()
}

#[test]
fn signing_string_is_invariant_under_permutation() {
    let mut rng = Lcg(0x5eed);
    for _ in 0..500 {
        let ts = match rng.next() % 3 {
            0 => rng.next(),
            1 => rng.next() % 100,
            _ => 9_007_199_254_740_991,
        };
        let strings = [
            random_string(&mut rng),
            random_string(&mut rng),
            random_string(&mut rng),
        ];
        let expected = reference(&[
            strings[0].clone(),
            strings[1].clone(),
            strings[2].clone(),
            ts.to_string(),
        ]);
        for p in permutations(&strings) {
            assert_eq!(
                signing_string(&p[0], &p[1], &p[2], ts),
                expected,
                "{p:?} {ts}"
            );
            assert_eq!(
                sign(&p[0], &p[1], &p[2], ts, &key()),
                sign(&strings[0], &strings[1], &strings[2], ts, &key())
            );
        }
    }
}

#[test]
fn signing_string_permutation_with_numeric_strings() {
    // The timestamp takes its place among the strings as text, wherever it sorts.
    let base = signing_string("123", "45", "6", 7);
    assert_eq!(base, "1234567");
    for p in permutations(&["123", "45", "6"]) {
        assert_eq!(signing_string(p[0], p[1], p[2], 7), base);
    }
    assert_eq!(signing_string("2", "b", "a", 10), "102ab");
}
