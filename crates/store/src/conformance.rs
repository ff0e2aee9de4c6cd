//! The suite every [`Store`] backend must pass: the behaviour and atomicity contract written
//! on the trait, checked.
//!
//! Each check takes a fresh, empty store. A backend's tests run them all with one line:
//!
//! ```ignore
//! mod conformance {
//!     voipchat_store::store_conformance_tests!(|| Box::new(MyStore::connect_fresh()));
//! }
//! ```
//!
//! which makes one `#[test]` per check, or call [`run_all`] from a single test.
//! Checks panic (with a message) on a violation, like any test assertion.

use crate::directory::{Heartbeat, NodeInfo, RoomOwner};
use crate::outbox::{AttemptOutcome, NewDelivery, OutboxCounts};
use crate::secrets::{app_secret_matches, is_digest, secret_digest};
use crate::{
    AppRecord, AppSettings, QuotaDecision, Reservation, SettingsChange, Store, StoreError,
};
use voipchat_proto::{AppId, GroupId, OpenId, RoomKey, Secret};

/// One conformance check: panics if `store` (fresh and empty) breaks the contract.
pub type Check = fn(&dyn Store);

/// The checks, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    ("apps_crud", apps_crud),
    (
        "apps_listed_in_creation_order",
        apps_listed_in_creation_order,
    ),
    ("create_app_is_atomic", create_app_is_atomic),
    ("voip_enable_disable", voip_enable_disable),
    ("app_secret_rotation", app_secret_rotation),
    ("delete_app_removes_its_data", delete_app_removes_its_data),
    ("delete_app_is_atomic", delete_app_is_atomic),
    ("session_key_rotation", session_key_rotation),
    ("nonce_freshness", nonce_freshness),
    ("nonce_expiry", nonce_expiry),
    ("nonce_is_atomic", nonce_is_atomic),
    ("nonce_release", nonce_release),
    ("quota_limit", quota_limit),
    (
        "quota_days_and_apps_independent",
        quota_days_and_apps_independent,
    ),
    (
        "quota_exact_under_concurrency",
        quota_exact_under_concurrency,
    ),
    ("webhook_url_set_and_clear", webhook_url_set_and_clear),
    (
        "webhook_data_goes_with_its_app",
        webhook_data_goes_with_its_app,
    ),
    (
        "outbox_skips_apps_without_webhook",
        outbox_skips_apps_without_webhook,
    ),
    (
        "outbox_streams_deliver_in_order",
        outbox_streams_deliver_in_order,
    ),
    ("outbox_leases_expire", outbox_leases_expire),
    ("outbox_limits_each_app", outbox_limits_each_app),
    ("outbox_cap_drops_the_oldest", outbox_cap_drops_the_oldest),
    ("outbox_claims_are_atomic", outbox_claims_are_atomic),
    (
        "outbox_enqueue_is_in_order_under_concurrency",
        outbox_enqueue_is_in_order_under_concurrency,
    ),
    ("quota_by_day_range", quota_by_day_range),
    ("app_settings_update", app_settings_update),
    (
        "app_settings_concurrent_fields",
        app_settings_concurrent_fields,
    ),
    ("app_secrets_are_digests", app_secrets_are_digests),
    ("quota_reservations", quota_reservations),
    (
        "quota_reservations_exact_under_concurrency",
        quota_reservations_exact_under_concurrency,
    ),
    ("quota_reservations_of_a_node", quota_reservations_of_a_node),
    ("reseal_session_keys", reseal_session_keys),
    ("nonce_used_is_a_read", nonce_used_is_a_read),
    ("room_claims", room_claims),
    (
        "room_claims_follow_node_liveness",
        room_claims_follow_node_liveness,
    ),
    ("room_claims_heartbeat", room_claims_heartbeat),
    ("room_claims_leave", room_claims_leave),
    ("room_claims_are_atomic", room_claims_are_atomic),
];

/// Runs every check, each on a fresh store from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Store>) {
    for (name, check) in CHECKS {
        eprintln!("store conformance: {name}");
        check(&*make());
    }
}

/// One `#[test]` per conformance check, each on a fresh store from `$make`, a closure that
/// returns a `Box` of the backend (or of any `Store`).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            apps_crud,
            apps_listed_in_creation_order,
            create_app_is_atomic,
            voip_enable_disable,
            app_secret_rotation,
            delete_app_removes_its_data,
            delete_app_is_atomic,
            session_key_rotation,
            nonce_freshness,
            nonce_expiry,
            nonce_is_atomic,
            nonce_release,
            quota_limit,
            quota_days_and_apps_independent,
            quota_exact_under_concurrency,
            webhook_url_set_and_clear,
            webhook_data_goes_with_its_app,
            outbox_skips_apps_without_webhook,
            outbox_streams_deliver_in_order,
            outbox_leases_expire,
            outbox_limits_each_app,
            outbox_cap_drops_the_oldest,
            outbox_claims_are_atomic,
            outbox_enqueue_is_in_order_under_concurrency,
            quota_by_day_range,
            app_settings_update,
            app_settings_concurrent_fields,
            app_secrets_are_digests,
            quota_reservations,
            quota_reservations_exact_under_concurrency,
            quota_reservations_of_a_node,
            reseal_session_keys,
            nonce_used_is_a_read,
            room_claims,
            room_claims_follow_node_liveness,
            room_claims_heartbeat,
            room_claims_leave,
            room_claims_are_atomic,
        );
        #[test]
        fn run_all_checks_in_one_go() {
            $crate::conformance::run_all(&|| -> ::std::boxed::Box<dyn $crate::Store> {
                ($make)()
            });
        }
    };
    (@tests $make:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let store = ($make)();
                $crate::conformance::$name(&*store);
            }
        )*
    };
}

fn app(id: &str, created_at: u64) -> AppRecord {
    AppRecord {
        app_id: AppId::new(id),
        name: format!("Game {id} 游戏"),
        // Stored form: the digest, which a store keeps as it is (see app_secrets_are_digests).
        secret: secret_digest(&Secret::new(format!("secret-of-{id}"))),
        voip_enabled: false,
        created_at,
        settings: AppSettings::default(),
    }
}

/// Create, read, duplicate refusal; every field round-trips.
pub fn apps_crud(store: &dyn Store) {
    assert_eq!(store.list_apps().expect("list"), vec![]);
    assert_eq!(store.app(&AppId::new("wx1")).expect("get"), None);

    let mut a = app("wx1", 1_700_000_000);
    a.voip_enabled = true;
    a.settings = AppSettings {
        room_cap: Some(4),
        daily_room_quota: Some(u64::try_from(i64::MAX).expect("fits")),
    };
    store.create_app(&a).expect("create");
    assert_eq!(store.app(&a.app_id).expect("get"), Some(a.clone()));
    assert_eq!(store.list_apps().expect("list"), vec![a.clone()]);

    // A second app with the same id is refused and changes nothing.
    let mut clash = app("wx1", 1);
    clash.secret = Secret::new("another secret");
    match store.create_app(&clash) {
        Err(StoreError::AppExists(id)) => assert_eq!(id, a.app_id),
        other => panic!("duplicate create_app: expected AppExists, got {other:?}"),
    }
    assert_eq!(store.app(&a.app_id).expect("get"), Some(a.clone()));

    // Ids are exact: no case folding, no trimming.
    assert_eq!(store.app(&AppId::new("WX1")).expect("get"), None);
    assert_eq!(store.app(&AppId::new("wx1 ")).expect("get"), None);
    let b = app("WX1", 0);
    store.create_app(&b).expect("create differently cased id");
    assert_eq!(store.app(&b.app_id).expect("get"), Some(b));
}

/// `list_apps` orders by `created_at`, then `app_id`.
pub fn apps_listed_in_creation_order(store: &dyn Store) {
    for (id, t) in [("wxc", 20), ("wxb", 10), ("wxa", 20), ("wxd", 5)] {
        store.create_app(&app(id, t)).expect("create");
    }
    let ids: Vec<String> = store
        .list_apps()
        .expect("list")
        .into_iter()
        .map(|a| a.app_id.0)
        .collect();
    assert_eq!(ids, ["wxd", "wxb", "wxa", "wxc"]);
}

/// Of concurrent creations of one id, exactly one succeeds.
pub fn create_app_is_atomic(store: &dyn Store) {
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|i| {
                s.spawn(move || match store.create_app(&app("wxrace", i)) {
                    Ok(()) => true,
                    Err(StoreError::AppExists(_)) => false,
                    Err(e) => panic!("create_app: {e}"),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(results.iter().filter(|&&ok| ok).count(), 1);
    assert_eq!(store.list_apps().expect("list").len(), 1);
}

/// `set_voip_enabled` flips the flag of an existing app and reports a missing one.
pub fn voip_enable_disable(store: &dyn Store) {
    let a = app("wx1", 1);
    store.create_app(&a).expect("create");
    let other = app("wx2", 2);
    store.create_app(&other).expect("create");

    assert!(store.set_voip_enabled(&a.app_id, true).expect("enable"));
    assert!(
        store
            .app(&a.app_id)
            .expect("get")
            .expect("exists")
            .voip_enabled
    );
    // Idempotent.
    assert!(store
        .set_voip_enabled(&a.app_id, true)
        .expect("enable again"));
    assert!(
        store
            .app(&a.app_id)
            .expect("get")
            .expect("exists")
            .voip_enabled
    );
    // Other fields and other apps are untouched.
    let got = store.app(&a.app_id).expect("get").expect("exists");
    assert_eq!(
        (got.name, got.secret, got.created_at),
        (a.name, a.secret, a.created_at)
    );
    assert!(
        !store
            .app(&other.app_id)
            .expect("get")
            .expect("exists")
            .voip_enabled
    );

    assert!(store.set_voip_enabled(&a.app_id, false).expect("disable"));
    assert!(
        !store
            .app(&a.app_id)
            .expect("get")
            .expect("exists")
            .voip_enabled
    );

    let missing = AppId::new("wx-missing");
    assert!(!store.set_voip_enabled(&missing, true).expect("missing app"));
    assert_eq!(store.app(&missing).expect("get"), None);
}

/// `set_app_secret` replaces the secret of an existing app, keeps every other field and
/// every other app, and reports a missing one.
pub fn app_secret_rotation(store: &dyn Store) {
    let mut a = app("wx1", 1);
    a.voip_enabled = true;
    store.create_app(&a).expect("create");
    let other = app("wx2", 2);
    store.create_app(&other).expect("create");

    let plain = Secret::new("a-new-secret");
    let fresh = secret_digest(&plain);
    assert!(store.set_app_secret(&a.app_id, &plain).expect("rotate"));
    let got = store.app(&a.app_id).expect("get").expect("exists");
    assert_eq!(got.secret, fresh, "the new secret is the one read back");
    assert_ne!(got.secret, a.secret);
    assert_eq!(
        (got.name, got.voip_enabled, got.created_at),
        (a.name.clone(), a.voip_enabled, a.created_at),
        "other fields are kept"
    );
    assert_eq!(store.app(&other.app_id).expect("get"), Some(other.clone()));
    let listed = store.list_apps().expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].secret, fresh, "list_apps sees the new secret too");

    // Rotating again replaces again; the same value is allowed.
    let again = secret_digest(&Secret::new("yet another"));
    assert!(store.set_app_secret(&a.app_id, &again).expect("rotate"));
    assert!(store.set_app_secret(&a.app_id, &again).expect("same value"));
    assert_eq!(
        store.app(&a.app_id).expect("get").expect("exists").secret,
        again
    );

    let missing = AppId::new("wx-missing");
    assert!(!store.set_app_secret(&missing, &fresh).expect("missing app"));
    assert_eq!(store.app(&missing).expect("get"), None);
}

/// `delete_app` removes the app, its users' session keys, their nonces and its room counts,
/// and nothing of other apps; a missing app is reported; a new app with the same id starts
/// empty.
pub fn delete_app_removes_its_data(store: &dyn Store) {
    let (a, b) = (app("wx1", 1), app("wx2", 2));
    store.create_app(&a).expect("create");
    store.create_app(&b).expect("create");
    let u = OpenId::new("user-1");
    let (now, exp) = (1_700_000_000, 1_700_000_600);
    for id in [&a.app_id, &b.app_id] {
        store
            .put_session_key(id, &u, &Secret::new("k"), now)
            .expect("put");
        assert!(store.consume_nonce(id, &u, "n", exp, now).expect("nonce"));
        assert!(store.take_room_quota(id, "d", 10).expect("quota").granted);
    }

    assert!(store.delete_app(&a.app_id).expect("delete"));
    assert_eq!(store.app(&a.app_id).expect("get"), None);
    assert_eq!(store.list_apps().expect("list"), vec![b.clone()]);
    assert_eq!(store.session_key(&a.app_id, &u).expect("key"), None);
    assert_eq!(store.rooms_created(&a.app_id, "d").expect("count"), 0);
    assert!(
        store
            .consume_nonce(&a.app_id, &u, "n", exp, now)
            .expect("nonce"),
        "the deleted app's nonces are forgotten"
    );

    // The other app keeps everything.
    assert_eq!(store.app(&b.app_id).expect("get"), Some(b.clone()));
    assert_eq!(
        store.session_key(&b.app_id, &u).expect("key"),
        Some(Secret::new("k"))
    );
    assert_eq!(store.rooms_created(&b.app_id, "d").expect("count"), 1);
    assert!(!store
        .consume_nonce(&b.app_id, &u, "n", exp, now)
        .expect("nonce"));

    // Deleting again, or an app that never existed, is refused and changes nothing.
    assert!(!store.delete_app(&a.app_id).expect("delete again"));
    assert!(!store
        .delete_app(&AppId::new("wx-missing"))
        .expect("missing"));
    assert_eq!(store.list_apps().expect("list"), vec![b]);

    // The id can be registered again, and starts with nothing.
    let reborn = app("wx1", 3);
    store.create_app(&reborn).expect("create again");
    assert_eq!(
        store.app(&reborn.app_id).expect("get"),
        Some(reborn.clone())
    );
    assert_eq!(store.session_key(&reborn.app_id, &u).expect("key"), None);
    assert_eq!(store.rooms_created(&reborn.app_id, "d").expect("count"), 0);
}

/// Of concurrent deletions of one app, exactly one reports that it deleted it.
pub fn delete_app_is_atomic(store: &dyn Store) {
    let a = app("wxrace", 1);
    store.create_app(&a).expect("create");
    let deleted = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| store.delete_app(&a.app_id).expect("delete")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|&d| d)
            .count()
    });
    assert_eq!(deleted, 1);
    assert_eq!(store.list_apps().expect("list"), vec![]);
}

/// One current key per (app, user); putting a new one removes the old.
pub fn session_key_rotation(store: &dyn Store) {
    let (a, b) = (AppId::new("wx1"), AppId::new("wx2"));
    let (u, v) = (OpenId::new("user-1"), OpenId::new("user-2"));
    assert_eq!(store.session_key(&a, &u).expect("get"), None);

    let k1 = Secret::new("gDyVgzwa0mFz9uUP7M6GQQ==");
    let k2 = Secret::new("o0q0otL8aEzpcZL/FT9WsQ==");
    store.put_session_key(&a, &u, &k1, 100).expect("put");
    assert_eq!(store.session_key(&a, &u).expect("get"), Some(k1.clone()));

    store.put_session_key(&a, &u, &k2, 200).expect("rotate");
    assert_eq!(store.session_key(&a, &u).expect("get"), Some(k2.clone()));

    // Other users and the same user in another app are separate.
    assert_eq!(store.session_key(&a, &v).expect("get"), None);
    assert_eq!(store.session_key(&b, &u).expect("get"), None);
    store
        .put_session_key(&b, &u, &k1, 300)
        .expect("put other app");
    assert_eq!(store.session_key(&b, &u).expect("get"), Some(k1.clone()));
    assert_eq!(store.session_key(&a, &u).expect("get"), Some(k2));

    // Rotating back to an earlier key value is allowed (the store does not judge keys).
    store.put_session_key(&a, &u, &k1, 400).expect("put");
    assert_eq!(store.session_key(&a, &u).expect("get"), Some(k1));
}

/// A nonce is fresh once per (app, openId) until it expires.
pub fn nonce_freshness(store: &dyn Store) {
    let (a, b) = (AppId::new("wx1"), AppId::new("wx2"));
    let (u, v) = (OpenId::new("user-1"), OpenId::new("user-2"));
    let now = 1_700_000_000;
    let exp = now + 600;

    assert!(store.consume_nonce(&a, &u, "n1", exp, now).expect("first"));
    assert!(!store.consume_nonce(&a, &u, "n1", exp, now).expect("replay"));
    assert!(!store
        .consume_nonce(&a, &u, "n1", exp + 600, now + 1)
        .expect("replay later"));

    // Other users, other apps and other nonces are independent.
    assert!(store
        .consume_nonce(&a, &v, "n1", exp, now)
        .expect("other user"));
    assert!(store
        .consume_nonce(&b, &u, "n1", exp, now)
        .expect("other app"));
    assert!(store
        .consume_nonce(&a, &u, "n2", exp, now)
        .expect("other nonce"));
    assert!(!store
        .consume_nonce(&a, &v, "n1", exp, now)
        .expect("other user replay"));

    // Nonces are exact strings, any text.
    assert!(store
        .consume_nonce(&a, &u, "N1", exp, now)
        .expect("case differs"));
    assert!(store
        .consume_nonce(&a, &u, "随机😀", exp, now)
        .expect("unicode"));
    assert!(!store
        .consume_nonce(&a, &u, "随机😀", exp, now)
        .expect("unicode replay"));
}

/// A released nonce is fresh again; releasing touches only that (app, user, nonce).
pub fn nonce_release(store: &dyn Store) {
    let a = AppId::new("wx1");
    let (u, v) = (OpenId::new("user-1"), OpenId::new("user-2"));
    let now = 1_700_000_000;
    let exp = now + 600;
    assert!(store.consume_nonce(&a, &u, "n", exp, now).expect("first"));
    assert!(store
        .consume_nonce(&a, &v, "n", exp, now)
        .expect("other user"));
    store.release_nonce(&a, &u, "n").expect("release");
    assert!(store
        .consume_nonce(&a, &u, "n", exp, now)
        .expect("fresh again"));
    assert!(!store
        .consume_nonce(&a, &v, "n", exp, now)
        .expect("other user kept"));
    store
        .release_nonce(&a, &u, "never-used")
        .expect("unknown nonce is fine");
}

/// An expired nonce is fresh again; a refused use does not extend the expiry.
pub fn nonce_expiry(store: &dyn Store) {
    let a = AppId::new("wx1");
    let u = OpenId::new("user-1");

    assert!(store.consume_nonce(&a, &u, "n", 100, 10).expect("first"));
    // Refused, with a later expiry that must not be stored.
    assert!(!store
        .consume_nonce(&a, &u, "n", 500, 99)
        .expect("just before expiry"));
    // Expired at exactly expires_at.
    assert!(store
        .consume_nonce(&a, &u, "n", 300, 100)
        .expect("at expiry"));
    // The fresh use stored its new expiry.
    assert!(!store
        .consume_nonce(&a, &u, "n", 400, 299)
        .expect("before new expiry"));
    assert!(store
        .consume_nonce(&a, &u, "n", 400, 300)
        .expect("after new expiry"));

    // Purging other expired nonces does not touch unexpired ones.
    for i in 0..300 {
        assert!(store
            .consume_nonce(&a, &u, &format!("old{i}"), 350, 301)
            .expect("fill"));
    }
    assert!(store
        .consume_nonce(&a, &u, "keep", 10_000, 360)
        .expect("keep"));
    for i in 0..10 {
        store
            .consume_nonce(&a, &u, &format!("sweep{i}"), 10_000, 360)
            .expect("sweep");
    }
    assert!(!store
        .consume_nonce(&a, &u, "keep", 10_000, 361)
        .expect("still remembered"));
}

/// Of concurrent uses of one nonce, exactly one is fresh.
pub fn nonce_is_atomic(store: &dyn Store) {
    let a = AppId::new("wx1");
    let u = OpenId::new("user-1");
    let fresh: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (a, u) = (&a, &u);
                s.spawn(move || {
                    (0..10)
                        .filter(|i| {
                            store
                                .consume_nonce(a, u, &format!("n{i}"), 1_000, 10)
                                .expect("consume")
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    assert_eq!(fresh, 10, "each of 10 nonces must be fresh exactly once");
}

/// Grants up to the limit, then refuses without counting; the limit is per call.
pub fn quota_limit(store: &dyn Store) {
    let a = AppId::new("wx1");
    let day = "2026-11-22";
    assert_eq!(store.rooms_created(&a, day).expect("count"), 0);
    for used in 1..=3 {
        assert_eq!(
            store.take_room_quota(&a, day, 3).expect("take"),
            QuotaDecision {
                granted: true,
                used
            }
        );
    }
    for _ in 0..3 {
        assert_eq!(
            store.take_room_quota(&a, day, 3).expect("take"),
            QuotaDecision {
                granted: false,
                used: 3
            }
        );
    }
    assert_eq!(store.rooms_created(&a, day).expect("count"), 3);

    // A lower limit refuses, a higher one grants again.
    assert_eq!(
        store.take_room_quota(&a, day, 1).expect("take"),
        QuotaDecision {
            granted: false,
            used: 3
        }
    );
    assert_eq!(
        store.take_room_quota(&a, day, 5).expect("take"),
        QuotaDecision {
            granted: true,
            used: 4
        }
    );

    // Limit 0 refuses and records nothing.
    assert_eq!(
        store.take_room_quota(&a, "2026-11-23", 0).expect("take"),
        QuotaDecision {
            granted: false,
            used: 0
        }
    );
    assert_eq!(store.rooms_created(&a, "2026-11-23").expect("count"), 0);
}

/// Counts are per (app, day).
pub fn quota_days_and_apps_independent(store: &dyn Store) {
    let (a, b) = (AppId::new("wx1"), AppId::new("wx2"));
    for _ in 0..2 {
        assert!(
            store
                .take_room_quota(&a, "2026-11-22", 2)
                .expect("take")
                .granted
        );
    }
    assert!(
        !store
            .take_room_quota(&a, "2026-11-22", 2)
            .expect("take")
            .granted
    );
    assert!(
        store
            .take_room_quota(&a, "2026-11-23", 2)
            .expect("next day")
            .granted
    );
    assert!(
        store
            .take_room_quota(&b, "2026-11-22", 2)
            .expect("other app")
            .granted
    );
    assert_eq!(store.rooms_created(&a, "2026-11-22").expect("count"), 2);
    assert_eq!(store.rooms_created(&a, "2026-11-23").expect("count"), 1);
    assert_eq!(store.rooms_created(&b, "2026-11-22").expect("count"), 1);
    assert_eq!(store.rooms_created(&b, "2026-11-23").expect("count"), 0);
}

/// 16 threads × 20 takes against limit 100: exactly 100 granted, none lost.
pub fn quota_exact_under_concurrency(store: &dyn Store) {
    let a = AppId::new("wx1");
    let day = "2026-11-22";
    let granted: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let a = &a;
                s.spawn(move || {
                    (0..20)
                        .map(|_| store.take_room_quota(a, day, 100).expect("take"))
                        .filter(|d| {
                            assert!(d.used <= 100, "count above limit: {d:?}");
                            d.granted
                        })
                        .map(|d| d.used)
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(granted.len(), 100);
    // Each grant saw a distinct count: no grant was counted twice.
    let mut counts = granted;
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<u64>>());
    assert_eq!(store.rooms_created(&a, day).expect("count"), 100);
}

/// A delivery of `app`'s stream `stream`, named `id`.
fn delivery(id: &str, app: &str, stream: &str) -> NewDelivery {
    NewDelivery {
        id: id.to_string(),
        app_id: AppId::new(app),
        stream: stream.to_string(),
        event: "member_joined".to_string(),
        body: format!("{{\"id\":\"{id}\"}}"),
        created_at: 1_700_000_000,
    }
}

/// An app with a webhook URL.
fn hooked(store: &dyn Store, id: &str) {
    store.create_app(&app(id, 1)).expect("create");
    assert!(store
        .set_webhook_url(&AppId::new(id), Some("http://127.0.0.1:9/hook"))
        .expect("set url"));
}

fn ids(list: &[crate::Delivery]) -> Vec<&str> {
    list.iter().map(|d| d.id.as_str()).collect()
}

const T0: u64 = 1_700_000_000_000;
const LEASE: u64 = 10_000;

/// `set_webhook_url` sets, replaces and clears; a missing app is reported; clearing drops
/// the app's deliveries and no other app's.
pub fn webhook_url_set_and_clear(store: &dyn Store) {
    let a = AppId::new("wx1");
    assert_eq!(store.webhook_url(&a).expect("get"), None);
    assert!(!store
        .set_webhook_url(&a, Some("http://x/"))
        .expect("missing app"));
    assert_eq!(store.webhook_url(&a).expect("get"), None);
    store.create_app(&app("wx1", 1)).expect("create");
    assert!(store
        .set_webhook_url(&a, Some("https://game.example/hooks?k=1"))
        .expect("set"));
    assert_eq!(
        store.webhook_url(&a).expect("get").as_deref(),
        Some("https://game.example/hooks?k=1")
    );
    assert!(store
        .set_webhook_url(&a, Some("http://other/"))
        .expect("replace"));
    assert_eq!(
        store.webhook_url(&a).expect("get").as_deref(),
        Some("http://other/")
    );
    // The app record itself is untouched.
    assert_eq!(store.app(&a).expect("get"), Some(app("wx1", 1)));

    hooked(store, "wx2");
    let batch = [delivery("a1", "wx1", "g"), delivery("b1", "wx2", "g")];
    assert_eq!(
        store
            .enqueue_webhooks(&batch, T0, 100)
            .expect("enqueue")
            .enqueued,
        2
    );
    assert!(store.set_webhook_url(&a, None).expect("clear"));
    assert_eq!(store.webhook_url(&a).expect("get"), None);
    assert_eq!(store.outbox_counts().expect("counts").pending, 1);
    let claimed = store.claim_webhooks(T0, LEASE, 10, 10).expect("claim");
    assert_eq!(
        ids(&claimed),
        ["b1"],
        "only the other app's delivery is left"
    );
    // Clearing again is fine.
    assert!(store.set_webhook_url(&a, None).expect("clear again"));
}

/// `delete_app` removes the app's webhook URL and deliveries; an app created again with
/// the same id starts without them.
pub fn webhook_data_goes_with_its_app(store: &dyn Store) {
    hooked(store, "wx1");
    hooked(store, "wx2");
    let batch = [delivery("a1", "wx1", "g"), delivery("b1", "wx2", "g")];
    store.enqueue_webhooks(&batch, T0, 100).expect("enqueue");
    assert!(store.delete_app(&AppId::new("wx1")).expect("delete"));
    store.create_app(&app("wx1", 2)).expect("create again");
    assert_eq!(store.webhook_url(&AppId::new("wx1")).expect("get"), None);
    let claimed = store.claim_webhooks(T0, LEASE, 10, 10).expect("claim");
    assert_eq!(ids(&claimed), ["b1"]);
}

/// Deliveries for apps without a webhook URL (or without an app) are not recorded.
pub fn outbox_skips_apps_without_webhook(store: &dyn Store) {
    hooked(store, "wx1");
    store.create_app(&app("wx2", 2)).expect("create");
    let batch = [
        delivery("a1", "wx1", "g"),
        delivery("b1", "wx2", "g"),
        delivery("c1", "wx-missing", "g"),
        delivery("a2", "wx1", "h"),
    ];
    let outcome = store.enqueue_webhooks(&batch, T0, 100).expect("enqueue");
    assert_eq!((outcome.enqueued, outcome.no_webhook), (2, 2));
    assert!(outcome.dropped.is_empty());
    assert_eq!(
        store.outbox_counts().expect("counts"),
        OutboxCounts {
            pending: 2,
            dead: 0
        }
    );
    let claimed = store.claim_webhooks(T0, LEASE, 10, 10).expect("claim");
    assert_eq!(ids(&claimed), ["a1", "a2"]);
    let first = &claimed[0];
    assert_eq!(first, &{
        let d = delivery("a1", "wx1", "g");
        crate::Delivery {
            id: d.id,
            app_id: d.app_id,
            stream: d.stream,
            event: d.event,
            body: d.body,
            created_at: d.created_at,
            attempts: 0,
        }
    });
}

/// A stream hands out its head only: the next delivery of a room waits while the one
/// before it is leased or waits for a retry; a delivered or dead one lets the next go.
pub fn outbox_streams_deliver_in_order(store: &dyn Store) {
    hooked(store, "wx1");
    let batch = [
        delivery("g1", "wx1", "g"),
        delivery("g2", "wx1", "g"),
        delivery("h1", "wx1", "h"),
        delivery("g3", "wx1", "g"),
        delivery("app1", "wx1", ""),
    ];
    store.enqueue_webhooks(&batch, T0, 100).expect("enqueue");
    let claim = |now| store.claim_webhooks(now, LEASE, 10, 10).expect("claim");
    assert_eq!(ids(&claim(T0)), ["g1", "h1", "app1"], "one head per stream");
    assert!(claim(T0 + 1).is_empty(), "leased heads hold their streams");

    // g1 delivered: g2 is next. h1 to be retried later: h holds. app1 delivered.
    let done = |id| {
        store
            .finish_webhook(id, &AttemptOutcome::Delivered)
            .expect("finish")
    };
    assert!(done("g1"));
    assert!(!done("g1"), "a delivered one is gone");
    assert!(done("app1"));
    let retry = AttemptOutcome::Retry {
        at_ms: T0 + 5_000,
        error: "HTTP 500".into(),
    };
    assert!(store.finish_webhook("h1", &retry).expect("retry"));
    assert_eq!(ids(&claim(T0 + 2)), ["g2"]);
    assert!(claim(T0 + 3).is_empty());

    // g2 fails for good: g3 goes next, and the dead one is counted but never handed out.
    let dead = AttemptOutcome::Dead {
        at_ms: T0 + 4,
        error: "gave up".into(),
    };
    assert!(store.finish_webhook("g2", &dead).expect("dead"));
    assert!(!store.finish_webhook("g2", &retry).expect("dead stays dead"));
    assert_eq!(ids(&claim(T0 + 4)), ["g3"]);
    assert_eq!(
        store.outbox_counts().expect("counts"),
        OutboxCounts {
            pending: 2,
            dead: 1
        }
    );

    // At its retry time h1 comes back with its attempt counted.
    let again = claim(T0 + 5_000);
    assert_eq!(ids(&again), ["h1"]);
    assert_eq!(again[0].attempts, 1);
    assert!(done("h1"));
    assert!(done("g3"));
    assert_eq!(
        store.outbox_counts().expect("counts"),
        OutboxCounts {
            pending: 0,
            dead: 1
        }
    );
    assert!(claim(T0 + 1_000_000).is_empty());
    assert!(!store
        .finish_webhook("never-existed", &AttemptOutcome::Delivered)
        .expect("unknown"));
}

/// A lease that runs out makes its delivery claimable again, with no attempt counted; a
/// released one is claimable at once.
pub fn outbox_leases_expire(store: &dyn Store) {
    hooked(store, "wx1");
    store
        .enqueue_webhooks(&[delivery("g1", "wx1", "g")], T0, 100)
        .expect("enqueue");
    assert_eq!(
        ids(&store.claim_webhooks(T0, 1_000, 10, 10).expect("claim")),
        ["g1"]
    );
    assert!(store
        .claim_webhooks(T0 + 999, 1_000, 10, 10)
        .expect("claim")
        .is_empty());
    let again = store
        .claim_webhooks(T0 + 1_000, 1_000, 10, 10)
        .expect("claim");
    assert_eq!(ids(&again), ["g1"], "the lease ran out");
    assert_eq!(again[0].attempts, 0);
    assert!(store
        .finish_webhook("g1", &AttemptOutcome::Released)
        .expect("release"));
    assert_eq!(
        ids(&store
            .claim_webhooks(T0 + 1_001, 1_000, 10, 10)
            .expect("claim")),
        ["g1"],
        "released: claimable at once"
    );
}

/// An app has at most `per_app` leased deliveries, whatever the limit; other apps still
/// get theirs; `limit` bounds each claim.
pub fn outbox_limits_each_app(store: &dyn Store) {
    hooked(store, "wx1");
    hooked(store, "wx2");
    let mut batch: Vec<NewDelivery> = (0..5)
        .map(|i| delivery(&format!("a{i}"), "wx1", &format!("room{i}")))
        .collect();
    batch.push(delivery("b0", "wx2", "room0"));
    store.enqueue_webhooks(&batch, T0, 100).expect("enqueue");
    let first = store.claim_webhooks(T0, LEASE, 2, 100).expect("claim");
    assert_eq!(ids(&first), ["a0", "a1", "b0"]);
    assert!(
        store
            .claim_webhooks(T0 + 1, LEASE, 2, 100)
            .expect("claim")
            .is_empty(),
        "wx1 has its two in flight"
    );
    store
        .finish_webhook("a0", &AttemptOutcome::Delivered)
        .expect("finish");
    assert_eq!(
        ids(&store.claim_webhooks(T0 + 2, LEASE, 2, 100).expect("claim")),
        ["a2"]
    );
    // limit bounds the claim.
    store
        .finish_webhook("a1", &AttemptOutcome::Delivered)
        .expect("finish");
    store
        .finish_webhook("a2", &AttemptOutcome::Delivered)
        .expect("finish");
    assert_eq!(
        ids(&store.claim_webhooks(T0 + 3, LEASE, 10, 1).expect("claim")),
        ["a3"]
    );
}

/// Past the cap, an app's oldest pending deliveries are removed, the outcome says how
/// many, and the newest stay in order; other apps are not touched.
pub fn outbox_cap_drops_the_oldest(store: &dyn Store) {
    hooked(store, "wx1");
    hooked(store, "wx2");
    store
        .enqueue_webhooks(&[delivery("b1", "wx2", "g")], T0, 3)
        .expect("enqueue");
    let batch: Vec<NewDelivery> = (1..=5)
        .map(|i| delivery(&format!("a{i}"), "wx1", "g"))
        .collect();
    let outcome = store.enqueue_webhooks(&batch, T0, 3).expect("enqueue");
    assert_eq!(outcome.enqueued, 5);
    assert_eq!(outcome.dropped, vec![(AppId::new("wx1"), 2)]);
    let mut seen = Vec::new();
    for step in 0..10 {
        let claimed = store
            .claim_webhooks(T0 + step, LEASE, 10, 10)
            .expect("claim");
        for d in &claimed {
            seen.push(d.id.clone());
            store
                .finish_webhook(&d.id, &AttemptOutcome::Delivered)
                .expect("finish");
        }
    }
    seen.sort_by_key(|id| (id.starts_with('b'), id.clone()));
    assert_eq!(seen, ["a3", "a4", "a5", "b1"]);
}

/// Of concurrent claims, each delivery goes to exactly one.
pub fn outbox_claims_are_atomic(store: &dyn Store) {
    hooked(store, "wx1");
    let batch: Vec<NewDelivery> = (0..40)
        .map(|i| delivery(&format!("d{i}"), "wx1", &format!("room{i}")))
        .collect();
    store.enqueue_webhooks(&batch, T0, 1_000).expect("enqueue");
    let mut got: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .flat_map(|_| store.claim_webhooks(T0, LEASE, 100, 3).expect("claim"))
                        .map(|d| d.id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    got.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    want.sort();
    assert_eq!(got, want, "each delivery claimed exactly once");
}

/// Batches enqueued from several threads keep each batch's order within a stream.
pub fn outbox_enqueue_is_in_order_under_concurrency(store: &dyn Store) {
    hooked(store, "wx1");
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for b in 0..5 {
                    let batch: Vec<NewDelivery> = (0..5)
                        .map(|i| {
                            delivery(
                                &format!("t{t}-{:02}", b * 5 + i),
                                "wx1",
                                &format!("room{t}"),
                            )
                        })
                        .collect();
                    store.enqueue_webhooks(&batch, T0, 1_000).expect("enqueue");
                }
            });
        }
    });
    let mut per_room: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for step in 0..100 {
        let claimed = store
            .claim_webhooks(T0 + step, LEASE, 10, 10)
            .expect("claim");
        if claimed.is_empty() {
            break;
        }
        for d in claimed {
            store
                .finish_webhook(&d.id, &AttemptOutcome::Delivered)
                .expect("finish");
            per_room.entry(d.stream).or_default().push(d.id);
        }
    }
    assert_eq!(per_room.len(), 4);
    for (room, got) in per_room {
        let t = room.trim_start_matches("room");
        let want: Vec<String> = (0..25).map(|i| format!("t{t}-{i:02}")).collect();
        assert_eq!(got, want, "{room} in enqueue order");
    }
}

/// `rooms_created_between`: the days of the range that have rooms, inclusive at both ends,
/// oldest first, of this app only.
pub fn quota_by_day_range(store: &dyn Store) {
    let (a, b) = (AppId::new("wx1"), AppId::new("wx2"));
    let days = [
        ("2025-12-31", 1),
        ("2026-01-01", 3),
        ("2026-01-09", 2),
        ("2026-01-10", 1),
        ("2026-02-01", 4),
    ];
    for (day, n) in days {
        for _ in 0..n {
            assert!(store.take_room_quota(&a, day, 100).expect("take").granted);
        }
    }
    assert!(
        store
            .take_room_quota(&b, "2026-01-05", 100)
            .expect("take")
            .granted
    );
    let owned = |list: &[(&str, u64)]| -> Vec<(String, u64)> {
        list.iter().map(|(d, n)| (d.to_string(), *n)).collect()
    };
    assert_eq!(
        store
            .rooms_created_between(&a, "2026-01-01", "2026-01-10")
            .expect("range"),
        owned(&[("2026-01-01", 3), ("2026-01-09", 2), ("2026-01-10", 1)]),
        "both ends included, days without rooms left out"
    );
    assert_eq!(
        store
            .rooms_created_between(&a, "2000-01-01", "2099-12-31")
            .expect("range"),
        owned(&days),
        "oldest first"
    );
    assert_eq!(
        store
            .rooms_created_between(&a, "2026-01-02", "2026-01-08")
            .expect("range"),
        vec![]
    );
    assert_eq!(
        store
            .rooms_created_between(&a, "2026-01-10", "2026-01-01")
            .expect("range"),
        vec![],
        "first after last"
    );
    assert_eq!(
        store
            .rooms_created_between(&b, "2026-01-01", "2026-01-31")
            .expect("range"),
        owned(&[("2026-01-05", 1)])
    );
    assert_eq!(
        store
            .rooms_created_between(&AppId::new("wx-none"), "2000-01-01", "2099-12-31")
            .expect("range"),
        vec![]
    );
}

/// `update_app_settings` changes the fields given, keeps the others and every other field
/// and app, resets with `Some(None)`, and reports a missing app.
pub fn app_settings_update(store: &dyn Store) {
    let mut a = app("wx1", 1);
    a.voip_enabled = true;
    store.create_app(&a).expect("create");
    let other = app("wx2", 2);
    store.create_app(&other).expect("create");
    assert_eq!(
        store.app(&a.app_id).expect("get").expect("exists").settings,
        AppSettings::default(),
        "a new app uses the server's defaults"
    );

    let cap = SettingsChange {
        room_cap: Some(Some(2)),
        ..SettingsChange::default()
    };
    let want = AppSettings {
        room_cap: Some(2),
        daily_room_quota: None,
    };
    assert_eq!(
        store.update_app_settings(&a.app_id, &cap).expect("update"),
        Some(want)
    );
    let quota = SettingsChange {
        daily_room_quota: Some(Some(7)),
        ..SettingsChange::default()
    };
    let want = AppSettings {
        room_cap: Some(2),
        daily_room_quota: Some(7),
    };
    assert_eq!(
        store
            .update_app_settings(&a.app_id, &quota)
            .expect("update"),
        Some(want),
        "the other field is kept"
    );
    let got = store.app(&a.app_id).expect("get").expect("exists");
    assert_eq!(got.settings, want);
    assert_eq!(
        (got.name, got.secret, got.voip_enabled, got.created_at),
        (a.name, a.secret, a.voip_enabled, a.created_at),
        "other fields are kept"
    );
    assert_eq!(store.app(&other.app_id).expect("get"), Some(other.clone()));
    assert_eq!(
        store
            .update_app_settings(&a.app_id, &SettingsChange::default())
            .expect("no change"),
        Some(want)
    );

    let reset = SettingsChange {
        room_cap: Some(None),
        daily_room_quota: Some(Some(0)),
    };
    let want = AppSettings {
        room_cap: None,
        daily_room_quota: Some(0),
    };
    assert_eq!(
        store.update_app_settings(&a.app_id, &reset).expect("reset"),
        Some(want)
    );
    assert_eq!(
        store.list_apps().expect("list")[0].settings,
        want,
        "list_apps sees them too"
    );

    let missing = AppId::new("wx-missing");
    assert_eq!(
        store.update_app_settings(&missing, &cap).expect("missing"),
        None
    );
    assert_eq!(store.app(&missing).expect("get"), None);

    // Deleted with the app: an app created again with the id starts with the defaults.
    assert!(store.delete_app(&a.app_id).expect("delete"));
    store.create_app(&app("wx1", 3)).expect("create again");
    assert_eq!(
        store.app(&a.app_id).expect("get").expect("exists").settings,
        AppSettings::default()
    );
}

/// Concurrent changes of different fields all take effect.
pub fn app_settings_concurrent_fields(store: &dyn Store) {
    let a = app("wx1", 1);
    store.create_app(&a).expect("create");
    for round in 0..20u32 {
        std::thread::scope(|s| {
            s.spawn(|| {
                let change = SettingsChange {
                    room_cap: Some(Some(round % 10 + 1)),
                    ..SettingsChange::default()
                };
                store.update_app_settings(&a.app_id, &change).expect("cap");
            });
            s.spawn(|| {
                let change = SettingsChange {
                    daily_room_quota: Some(Some(u64::from(round) + 100)),
                    ..SettingsChange::default()
                };
                store
                    .update_app_settings(&a.app_id, &change)
                    .expect("quota");
            });
        });
        assert_eq!(
            store.app(&a.app_id).expect("get").expect("exists").settings,
            AppSettings {
                room_cap: Some(round % 10 + 1),
                daily_room_quota: Some(u64::from(round) + 100),
            },
            "round {round}: neither change undid the other"
        );
    }
}

/// App secrets are stored as their digest, never in plain: `create_app` and
/// `set_app_secret` take the secret, what is read back is its digest, only the secret
/// matches it, and after a rotation the old secret no longer does.
pub fn app_secrets_are_digests(store: &dyn Store) {
    let mut a = app("wx1", 1);
    a.secret = Secret::new("plain-secret-1");
    store.create_app(&a).expect("create");
    let got = store.app(&a.app_id).expect("get").expect("exists");
    assert!(is_digest(got.secret.expose()), "stored as a digest");
    assert!(!got.secret.expose().contains("plain-secret-1"));
    assert!(app_secret_matches(&got, "plain-secret-1"));
    assert!(!app_secret_matches(&got, "plain-secret-2"));
    assert!(!app_secret_matches(&got, got.secret.expose()));
    assert!(store
        .set_app_secret(&a.app_id, &Secret::new("plain-secret-2"))
        .expect("rotate"));
    let got = store.app(&a.app_id).expect("get").expect("exists");
    assert!(app_secret_matches(&got, "plain-secret-2"));
    assert!(
        !app_secret_matches(&got, "plain-secret-1"),
        "the old secret is gone"
    );
    let listed = store.list_apps().expect("list");
    assert!(listed.iter().all(|a| is_digest(a.secret.expose())));
}

fn reservation(node: &str, token: &str) -> Reservation {
    Reservation {
        node: node.to_string(),
        token: token.to_string(),
    }
}

/// A reservation counts at once and against the limit; confirming keeps the unit,
/// releasing gives it back; each reservation is confirmed or released once; a token cannot
/// be reserved twice while pending; deleting the app removes its reservations.
pub fn quota_reservations(store: &dyn Store) {
    let a = AppId::new("wx1");
    let day = "2026-11-22";
    let r1 = reservation("n1", "t1");
    let r2 = reservation("n1", "t2");
    let r3 = reservation("n1", "t3");
    let granted = |d: QuotaDecision| d.granted;
    assert!(granted(
        store.reserve_room_quota(&a, day, 2, &r1).expect("reserve")
    ));
    assert_eq!(
        store.rooms_created(&a, day).expect("count"),
        1,
        "counted at once"
    );
    assert!(
        !granted(store.reserve_room_quota(&a, day, 2, &r1).expect("again")),
        "a pending token is not reserved twice"
    );
    assert_eq!(store.rooms_created(&a, day).expect("count"), 1);
    assert!(granted(
        store.reserve_room_quota(&a, day, 2, &r2).expect("reserve")
    ));
    assert_eq!(
        store.reserve_room_quota(&a, day, 2, &r3).expect("over"),
        QuotaDecision {
            granted: false,
            used: 2
        },
        "pending reservations hold the limit"
    );
    assert!(
        !granted(store.take_room_quota(&a, day, 2).expect("take")),
        "the one-step form sees them too"
    );

    assert!(store.confirm_room_quota(&r1).expect("confirm"));
    assert!(
        !store.confirm_room_quota(&r1).expect("twice"),
        "confirmed once"
    );
    assert!(!store.release_room_quota(&r1).expect("release confirmed"));
    assert_eq!(
        store.rooms_created(&a, day).expect("count"),
        2,
        "confirmed stays"
    );

    assert!(store.release_room_quota(&r2).expect("release"));
    assert!(
        !store.release_room_quota(&r2).expect("twice"),
        "released once"
    );
    assert!(!store.confirm_room_quota(&r2).expect("confirm released"));
    assert_eq!(
        store.rooms_created(&a, day).expect("count"),
        1,
        "given back"
    );
    assert_eq!(
        store.rooms_created_between(&a, day, day).expect("between"),
        vec![(day.to_string(), 1)]
    );
    assert!(granted(
        store
            .reserve_room_quota(&a, day, 2, &r3)
            .expect("room again")
    ));

    assert!(!store
        .confirm_room_quota(&reservation("n1", "never"))
        .expect("unknown"));
    assert!(!store
        .release_room_quota(&reservation("n2", "t3"))
        .expect("other node"));

    // Deleting the app takes its pending reservations with it.
    store.create_app(&app("wx1", 1)).expect("create");
    assert!(store.delete_app(&a).expect("delete"));
    assert!(!store.release_room_quota(&r3).expect("gone with its app"));
    assert_eq!(store.rooms_created(&a, day).expect("count"), 0);
}

/// 8 threads each reserve 20 rooms against limit 100 (exactly 100 granted); then each
/// releases every third of its grants and confirms the rest while reserving 5 more: the
/// count never exceeds the limit and ends as exactly `confirmed + pending`.
pub fn quota_reservations_exact_under_concurrency(store: &dyn Store) {
    let a = AppId::new("wx1");
    let day = "2026-11-22";
    let barrier = std::sync::Barrier::new(8);
    let outcome: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (a, barrier) = (&a, &barrier);
                s.spawn(move || {
                    let reserve = |i: &str| {
                        let r = reservation("n1", &format!("t{t}-{i}"));
                        let d = store.reserve_room_quota(a, day, 100, &r).expect("reserve");
                        assert!(d.used <= 100, "count above limit: {d:?}");
                        d.granted.then_some(r)
                    };
                    let mine: Vec<Reservation> =
                        (0..20).filter_map(|i| reserve(&i.to_string())).collect();
                    let first = mine.len() as u64;
                    barrier.wait();
                    let mut confirmed = 0;
                    for (i, r) in mine.iter().enumerate() {
                        if i % 3 == 0 {
                            assert!(store.release_room_quota(r).expect("release"));
                        } else {
                            assert!(store.confirm_room_quota(r).expect("confirm"));
                            confirmed += 1;
                        }
                        assert!(!store.release_room_quota(r).expect("again"));
                        assert!(!store.confirm_room_quota(r).expect("again"));
                    }
                    let later = (0..5).filter_map(|i| reserve(&format!("late{i}"))).count();
                    (first, confirmed, later as u64)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let first: u64 = outcome.iter().map(|o| o.0).sum();
    let confirmed: u64 = outcome.iter().map(|o| o.1).sum();
    let pending: u64 = outcome.iter().map(|o| o.2).sum();
    assert_eq!(first, 100, "exactly the limit was granted");
    assert!(confirmed + pending <= 100);
    assert_eq!(
        store.rooms_created(&a, day).expect("count"),
        confirmed + pending,
        "the count is confirmed + pending"
    );
    assert_eq!(
        store.release_node_reservations("n1").expect("release"),
        pending
    );
    assert_eq!(store.rooms_created(&a, day).expect("count"), confirmed);

    // Confirm and release racing on the same reservations: exactly one wins each.
    let b = AppId::new("wx2");
    let rs: Vec<Reservation> = (0..50)
        .map(|i| reservation("n1", &format!("race{i}")))
        .collect();
    for r in &rs {
        assert!(
            store
                .reserve_room_quota(&b, day, 1000, r)
                .expect("reserve")
                .granted
        );
    }
    let (confirms, releases) = std::thread::scope(|s| {
        let c = s.spawn(|| {
            rs.iter()
                .filter(|r| store.confirm_room_quota(r).expect("c"))
                .count()
        });
        let r = s.spawn(|| {
            rs.iter()
                .rev()
                .filter(|r| store.release_room_quota(r).expect("r"))
                .count()
        });
        (c.join().expect("thread"), r.join().expect("thread"))
    });
    assert_eq!(
        confirms + releases,
        50,
        "each reservation settled exactly once"
    );
    assert_eq!(
        store.rooms_created(&b, day).expect("count"),
        confirms as u64
    );
}

/// A node's start gives back every reservation it left pending, of every app and day, and
/// nothing of other nodes or anything confirmed: after it, the count is exactly the rooms
/// confirmed. This is what makes the quota exact across a crash.
pub fn quota_reservations_of_a_node(store: &dyn Store) {
    let (a, b) = (AppId::new("wx1"), AppId::new("wx2"));
    let mut confirmed = 0;
    for i in 0..10 {
        let (app_id, day) = if i % 2 == 0 { (&a, "d1") } else { (&b, "d2") };
        let r = reservation("dead", &format!("t{i}"));
        assert!(
            store
                .reserve_room_quota(app_id, day, 100, &r)
                .expect("r")
                .granted
        );
        if i % 3 == 0 {
            assert!(store.confirm_room_quota(&r).expect("confirm"));
            confirmed += 1;
        }
    }
    let other = reservation("alive", "t0");
    assert!(
        store
            .reserve_room_quota(&a, "d1", 100, &other)
            .expect("r")
            .granted
    );
    // t0, t3, t6, t9 confirmed: a/d1 has t0, t6 (+ alive's), b/d2 has t3, t9.
    assert_eq!(confirmed, 4);
    assert_eq!(store.release_node_reservations("dead").expect("release"), 6);
    assert_eq!(store.rooms_created(&a, "d1").expect("count"), 2 + 1);
    assert_eq!(store.rooms_created(&b, "d2").expect("count"), 2);
    assert_eq!(store.release_node_reservations("dead").expect("again"), 0);
    assert!(store.confirm_room_quota(&other).expect("other node's kept"));
    assert_eq!(
        store.release_node_reservations("alive").expect("none left"),
        0
    );
    assert_eq!(store.rooms_created(&a, "d1").expect("count"), 3);
}

/// `reseal_session_keys` shows every stored key to the callback and stores what it
/// returns, per user; `None` leaves a key alone.
pub fn reseal_session_keys(store: &dyn Store) {
    let a = AppId::new("wx1");
    for i in 0..5 {
        store
            .put_session_key(
                &a,
                &OpenId::new(format!("u{i}")),
                &Secret::new(format!("k{i}")),
                1,
            )
            .expect("put");
    }
    let changed = store
        .reseal_session_keys(&|app, user, stored| {
            assert_eq!(app, &a);
            (user.as_str() != "u0").then(|| format!("sealed({stored})"))
        })
        .expect("reseal");
    assert_eq!(changed, 4);
    assert_eq!(
        store.session_key(&a, &OpenId::new("u0")).expect("get"),
        Some(Secret::new("k0"))
    );
    assert_eq!(
        store.session_key(&a, &OpenId::new("u3")).expect("get"),
        Some(Secret::new("sealed(k3)"))
    );
    let changed = store.reseal_session_keys(&|_, _, _| None).expect("noop");
    assert_eq!(changed, 0);
}

/// `nonce_used` sees what `consume_nonce` recorded until it expires, and records nothing.
pub fn nonce_used_is_a_read(store: &dyn Store) {
    let a = AppId::new("wx1");
    let u = OpenId::new("user-1");
    assert!(!store.nonce_used(&a, &u, "n1", 10).expect("read"));
    // A read does not spend it.
    assert!(store.consume_nonce(&a, &u, "n1", 100, 10).expect("consume"));
    assert!(store.nonce_used(&a, &u, "n1", 10).expect("read"));
    assert!(store.nonce_used(&a, &u, "n1", 99).expect("read"));
    assert!(
        !store.nonce_used(&a, &u, "n1", 100).expect("read"),
        "expired"
    );
    assert!(!store
        .nonce_used(&a, &OpenId::new("user-2"), "n1", 10)
        .expect("read"));
    assert!(!store
        .nonce_used(&AppId::new("wx2"), &u, "n1", 10)
        .expect("read"));
}

fn room(app: &str, group: &str) -> RoomKey {
    RoomKey::new(AppId::new(app), GroupId::new(group))
}

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.to_string(),
        url: format!("ws://{id}.example:7880/ws"),
    }
}

/// A heartbeat of `n` at `now` (registration 3 s, claims 5 s) keeping and releasing rooms.
fn beat_with(
    store: &dyn Store,
    n: &NodeInfo,
    now: u64,
    keep: &[RoomKey],
    release: &[RoomKey],
) -> Vec<RoomKey> {
    store
        .directory()
        .heartbeat(&Heartbeat {
            node: n,
            now_ms: now,
            node_ttl_ms: 3_000,
            claim_ttl_ms: 5_000,
            keep,
            release,
        })
        .expect("heartbeat")
}

/// A heartbeat that only registers `n` at `now`.
fn beat(store: &dyn Store, n: &NodeInfo, now: u64) -> Vec<RoomKey> {
    beat_with(store, n, now, &[], &[])
}

/// The first claim wins; others are told the owner (with its URL) while it is live; the
/// owner renews; rooms and apps are independent.
pub fn room_claims(store: &dyn Store) {
    let d = store.directory();
    let (a, b) = (node("a"), node("b"));
    beat(store, &a, 1_000);
    beat(store, &b, 1_000);
    let r = room("wx1", "g1");
    assert_eq!(
        d.claim_room(&r, "a", 1_000, 5_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(
        d.claim_room(&r, "b", 1_100, 5_000).unwrap(),
        RoomOwner::Other(a.clone())
    );
    assert_eq!(
        d.claim_room(&r, "a", 1_200, 5_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(d.room_owner(&r, 1_300).unwrap(), Some(a.clone()));
    // Another group, another app, a groupId that reads like an appId+groupId split.
    assert_eq!(
        d.claim_room(&room("wx1", "g2"), "b", 1_300, 5_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(
        d.claim_room(&room("wx2", "g1"), "b", 1_300, 5_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(
        d.claim_room(&room("wx", "1g1"), "b", 1_300, 5_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(d.room_owner(&room("wx9", "g1"), 1_300).unwrap(), None);
    assert_eq!(d.nodes(1_300).unwrap(), vec![a.clone(), b.clone()]);
    // The claim expires (its owner still live): anyone may take it.
    beat(store, &a, 3_500);
    beat(store, &b, 6_300);
    assert_eq!(
        d.claim_room(&r, "b", 6_300, 5_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(d.room_owner(&r, 6_400).unwrap(), Some(b.clone()));
}

/// A claim of a node whose registration lapsed (it died) is taken over at once; a node
/// that never registered holds nothing others must respect.
pub fn room_claims_follow_node_liveness(store: &dyn Store) {
    let d = store.directory();
    let (a, b) = (node("a"), node("b"));
    beat(store, &a, 1_000);
    beat(store, &b, 1_000);
    let r = room("wx1", "g1");
    assert_eq!(
        d.claim_room(&r, "a", 1_000, 60_000).unwrap(),
        RoomOwner::This
    );
    // a stops beating; its registration lasts until 4_000.
    beat(store, &b, 3_900);
    assert_eq!(
        d.claim_room(&r, "b", 3_900, 5_000).unwrap(),
        RoomOwner::Other(a.clone())
    );
    assert_eq!(d.room_owner(&r, 4_000).unwrap(), None, "a is gone");
    assert_eq!(d.nodes(4_000).unwrap(), vec![b.clone()]);
    assert_eq!(
        d.claim_room(&r, "b", 4_000, 5_000).unwrap(),
        RoomOwner::This
    );
    // a comes back: b's claim stands.
    beat(store, &a, 4_100);
    assert_eq!(
        d.claim_room(&r, "a", 4_100, 5_000).unwrap(),
        RoomOwner::Other(b.clone())
    );
    // Never registered: its claim binds nobody.
    let r2 = room("wx1", "g2");
    assert_eq!(
        d.claim_room(&r2, "ghost", 4_100, 5_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(
        d.claim_room(&r2, "a", 4_200, 5_000).unwrap(),
        RoomOwner::This
    );
}

/// A heartbeat renews the kept claims (retaking lapsed ones), gives up released ones, and
/// reports the kept rooms another node took meanwhile.
pub fn room_claims_heartbeat(store: &dyn Store) {
    let d = store.directory();
    let (a, b) = (node("a"), node("b"));
    beat(store, &a, 1_000);
    beat(store, &b, 1_000);
    let (r1, r2, r3) = (room("wx1", "g1"), room("wx1", "g2"), room("wx1", "g3"));
    for r in [&r1, &r2, &r3] {
        assert_eq!(d.claim_room(r, "a", 1_000, 5_000).unwrap(), RoomOwner::This);
    }
    let keep = [r1.clone(), r3.clone()];
    let lost = beat_with(store, &a, 5_000, &keep, std::slice::from_ref(&r2));
    assert!(lost.is_empty(), "{lost:?}");
    beat(store, &b, 5_000);
    // Renewed to 10_000: still a's at 7_900 (past the old expiry, 6_000, and within a's
    // registration); released: b gets it at once.
    assert_eq!(
        d.claim_room(&r1, "b", 7_900, 5_000).unwrap(),
        RoomOwner::Other(a.clone())
    );
    assert_eq!(
        d.claim_room(&r2, "b", 5_100, 5_000).unwrap(),
        RoomOwner::This
    );
    // Releasing another node's claim changes nothing.
    let lost = beat_with(store, &a, 5_200, &keep, std::slice::from_ref(&r2));
    assert!(lost.is_empty());
    assert_eq!(d.room_owner(&r2, 5_300).unwrap(), Some(b.clone()));
    // a's claim on r3 lapses and b takes it; a's next beat reports r3 lost, keeps r1.
    beat(store, &b, 10_300);
    assert_eq!(
        d.claim_room(&r3, "b", 10_300, 5_000).unwrap(),
        RoomOwner::This
    );
    let lost = beat_with(store, &a, 10_400, &keep, &[]);
    assert_eq!(lost, vec![r3.clone()]);
    assert_eq!(
        d.room_owner(&r1, 10_500).unwrap(),
        Some(a.clone()),
        "r1 retaken"
    );
    assert_eq!(d.room_owner(&r3, 10_500).unwrap(), Some(b));
}

/// A node that leaves gives up its registration and every claim at once, and nothing of
/// another node's.
pub fn room_claims_leave(store: &dyn Store) {
    let d = store.directory();
    let (a, b) = (node("a"), node("b"));
    beat(store, &a, 1_000);
    beat(store, &b, 1_000);
    let (r1, r2) = (room("wx1", "g1"), room("wx1", "g2"));
    assert_eq!(
        d.claim_room(&r1, "a", 1_000, 60_000).unwrap(),
        RoomOwner::This
    );
    assert_eq!(
        d.claim_room(&r2, "b", 1_000, 60_000).unwrap(),
        RoomOwner::This
    );
    d.leave("a").unwrap();
    assert_eq!(d.nodes(1_100).unwrap(), vec![b.clone()]);
    assert_eq!(d.room_owner(&r1, 1_100).unwrap(), None);
    assert_eq!(d.room_owner(&r2, 1_100).unwrap(), Some(b));
    assert_eq!(
        d.claim_room(&r1, "b", 1_100, 5_000).unwrap(),
        RoomOwner::This
    );
}

/// Sixteen nodes claiming one free room at once: exactly one gets it, and every other
/// is told that one.
pub fn room_claims_are_atomic(store: &dyn Store) {
    let nodes: Vec<NodeInfo> = (0..16).map(|i| node(&format!("n{i}"))).collect();
    for n in &nodes {
        beat(store, n, 1_000);
    }
    let r = room("wx1", "contested");
    let answers: Vec<(String, RoomOwner)> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| {
                let r = &r;
                s.spawn(move || {
                    let owner = store
                        .directory()
                        .claim_room(r, &n.id, 1_000, 5_000)
                        .expect("claim");
                    (n.id.clone(), owner)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let winners: Vec<&String> = answers
        .iter()
        .filter(|(_, o)| *o == RoomOwner::This)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (_, o) in &answers {
        if let RoomOwner::Other(owner) = o {
            assert_eq!(&owner.id, winners[0]);
        }
    }
}
