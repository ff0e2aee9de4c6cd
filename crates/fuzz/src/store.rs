//! The store's inputs: any text as app ids, names, secrets, openIds, session keys, nonces and
//! quota days (the server bounds them before they get here, but the store must not depend on
//! it), checked against a model of what each call must have done.

use std::collections::{HashMap, HashSet};

use voipchat_proto::{AppId, OpenId, Secret};
use voipchat_store::{AppRecord, SqliteStore, Store};

use crate::Input;

/// Most calls one input makes.
const MAX_CALLS: usize = 200;

/// A fresh in-memory SQLite store takes a sequence of calls with arbitrary text; after each,
/// what it answers equals a plain model: apps exist once, each user's key is the last put,
/// a nonce is taken once, a quota never passes its limit and counts exactly the grants.
pub fn store_input(data: &[u8]) {
    let mut input = Input::new(data);
    let store = SqliteStore::open_in_memory().expect("an in-memory store");
    let mut apps: HashSet<String> = HashSet::new();
    let mut keys: HashMap<(String, String), String> = HashMap::new();
    let mut nonces: HashSet<(String, String, String)> = HashSet::new();
    let mut rooms: HashMap<(String, String), u64> = HashMap::new();
    // A few ids, so calls meet each other's data; now and then an arbitrary one.
    let pick = |input: &mut Input, what: &str| -> String {
        match input.u8() % 4 {
            3 => input.text(300),
            n => format!("{what}{n}"),
        }
    };
    let now = 1_700_000_000;
    for _ in 0..MAX_CALLS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 7 {
            0 => {
                let app_id = pick(&mut input, "app");
                let record = app_record(&app_id, input.text(300), input.text(100));
                let created = store.create_app(&record).is_ok();
                assert_eq!(created, apps.insert(app_id.clone()), "create {app_id:?}");
                let read = store.app(&AppId::new(&app_id)).expect("read");
                assert_eq!(read.map(|a| a.app_id.as_str().to_string()), Some(app_id));
            }
            1 => {
                let app_id = pick(&mut input, "app");
                let deleted = store.delete_app(&AppId::new(&app_id)).expect("delete");
                assert_eq!(deleted, apps.remove(&app_id));
                // Only an app that was there takes its data with it.
                if deleted {
                    keys.retain(|(a, _), _| *a != app_id);
                    nonces.retain(|(a, _, _)| *a != app_id);
                    rooms.retain(|(a, _), _| *a != app_id);
                }
            }
            2 => {
                let (app_id, open_id) = (pick(&mut input, "app"), pick(&mut input, "user"));
                let key = input.text(100);
                let put = store.put_session_key(
                    &AppId::new(&app_id),
                    &OpenId::new(&open_id),
                    &Secret::new(&key),
                    now,
                );
                if put.is_ok() {
                    keys.insert((app_id, open_id), key);
                }
            }
            3 => {
                let (app_id, open_id) = (pick(&mut input, "app"), pick(&mut input, "user"));
                let got = store
                    .session_key(&AppId::new(&app_id), &OpenId::new(&open_id))
                    .expect("read a key");
                let want = keys.get(&(app_id, open_id));
                assert_eq!(got.as_ref().map(Secret::expose), want.map(String::as_str));
            }
            4 => {
                let (app_id, open_id) = (pick(&mut input, "app"), pick(&mut input, "user"));
                let nonce = pick(&mut input, "nonce");
                let fresh = store
                    .consume_nonce(
                        &AppId::new(&app_id),
                        &OpenId::new(&open_id),
                        &nonce,
                        now + 600,
                        now,
                    )
                    .expect("consume a nonce");
                assert_eq!(fresh, nonces.insert((app_id, open_id, nonce)), "nonce once");
            }
            5 => {
                let app_id = pick(&mut input, "app");
                let day = pick(&mut input, "2026-12-0");
                let limit = u64::from(input.u8() % 4);
                let decision = store
                    .take_room_quota(&AppId::new(&app_id), &day, limit)
                    .expect("take quota");
                let used = rooms.entry((app_id, day)).or_insert(0);
                let granted = *used < limit;
                if granted {
                    *used += 1;
                }
                assert_eq!(decision.granted, granted, "grant under the limit only");
                assert_eq!(decision.used, *used, "the count is exact");
            }
            _ => {
                let app_id = pick(&mut input, "app");
                let day = pick(&mut input, "2026-12-0");
                let n = store
                    .rooms_created(&AppId::new(&app_id), &day)
                    .expect("read the count");
                assert_eq!(n, rooms.get(&(app_id, day)).copied().unwrap_or(0));
            }
        }
    }
    let mut listed: Vec<String> = store
        .list_apps()
        .expect("list")
        .into_iter()
        .map(|a| a.app_id.as_str().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = apps.into_iter().collect();
    want.sort();
    assert_eq!(listed, want, "the apps listed are the apps created");
}

/// An app as `voipchat app create` makes one, with the given fields.
fn app_record(app_id: &str, name: String, secret: String) -> AppRecord {
    AppRecord {
        app_id: AppId::new(app_id),
        name,
        secret: Secret::new(secret),
        voip_enabled: true,
        created_at: 1_700_000_000,
    }
}
