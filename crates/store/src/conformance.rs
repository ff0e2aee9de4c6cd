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

use crate::{AppRecord, AppSettings, QuotaDecision, SettingsChange, Store, StoreError};
use voipchat_proto::{AppId, OpenId, Secret};

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
    ("quota_by_day_range", quota_by_day_range),
    ("app_settings_update", app_settings_update),
    (
        "app_settings_concurrent_fields",
        app_settings_concurrent_fields,
    ),
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
            quota_by_day_range,
            app_settings_update,
            app_settings_concurrent_fields,
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
        secret: Secret::new(format!("secret-of-{id}")),
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

    let fresh = Secret::new("a-new-secret");
    assert!(store.set_app_secret(&a.app_id, &fresh).expect("rotate"));
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
    let again = Secret::new("yet another");
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
