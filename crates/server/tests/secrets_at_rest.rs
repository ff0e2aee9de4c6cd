//! Secrets at rest, through the real binary: the database file holds neither an app secret
//! nor a session key in plain; the key file is created private; `rotate-key` reseals under
//! a new key and keys sealed before still verify joins; a key from the environment works
//! and a wrong one is a clear error at start.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::binary::{cli, create_room, offer, serve, session_key};
use voipchat_proto::{AppId, OpenId, Secret};
use voipchat_store::{SqliteStore, Store};

/// Every byte the database left on disk (the file and its WAL).
fn db_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["voipchat.sqlite3", "voipchat.sqlite3-wal"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_database_and_rotate_key_keeps_keys_working() {
    let dir = common::data_dir();
    let created: serde_json::Value =
        serde_json::from_str(&cli(dir.path(), &["app", "create", "--name", "vault"])).unwrap();
    let app = AppId::new(created["appId"].as_str().unwrap());
    let secret = Secret::new(created["appSecret"].as_str().unwrap());
    assert_eq!(
        created["webhookSecret"].as_str().unwrap(),
        voipchat_store::secret_digest(&secret).expose(),
        "the webhook secret is shown with the app secret"
    );
    cli(dir.path(), &["app", "enable-voip", app.as_str()]);

    let (mut server, http, log) = serve(dir.path(), &["--no-demo"]).await;
    assert!(
        log.iter().any(|l| l.contains("created a secrets key")),
        "the first start says it made a key: {log:#?}"
    );
    let key_file = dir.path().join("secrets.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is private");
    let alice = session_key(http, &app, &secret, "alice").await;
    assert_eq!(
        create_room(http, app.clone(), "alice".into(), alice.clone(), offer()).await,
        Some(0),
        "a join signed with the key verifies"
    );
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    let bytes = db_bytes(dir.path());
    assert!(
        !contains(&bytes, secret.expose()),
        "the app secret is not in the file"
    );
    assert!(
        !contains(&bytes, alice.expose()),
        "the session key is not in the file"
    );
    let raw = SqliteStore::open(&dir.path().join("voipchat.sqlite3")).unwrap();
    let stored = raw
        .session_key(&app, &OpenId::new("alice"))
        .unwrap()
        .unwrap();
    assert!(
        stored.expose().starts_with("s1$"),
        "sealed: {}",
        stored.expose()
    );
    drop(raw);

    // rotate-key: a new key first, the old one kept; alice's key is resealed under the new
    // one, and a join signed with it still verifies after a restart.
    let rotated: serde_json::Value =
        serde_json::from_str(&cli(dir.path(), &["rotate-key"])).unwrap();
    assert_eq!(rotated["resealed"], 1, "{rotated}");
    assert_eq!(rotated["keys"], 2, "{rotated}");
    let raw = SqliteStore::open(&dir.path().join("voipchat.sqlite3")).unwrap();
    let resealed = raw
        .session_key(&app, &OpenId::new("alice"))
        .unwrap()
        .unwrap();
    let new_id = rotated["keyId"].as_str().unwrap();
    assert!(
        resealed.expose().starts_with(&format!("s1${new_id}$")),
        "{} under {new_id}",
        resealed.expose()
    );
    drop(raw);
    let pruned: serde_json::Value =
        serde_json::from_str(&cli(dir.path(), &["rotate-key", "--prune"])).unwrap();
    assert_eq!(
        (pruned["keys"].as_u64(), pruned["resealed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(pruned["keyId"], new_id);
    let (mut server, http, _) = serve(dir.path(), &["--no-demo"]).await;
    assert_eq!(
        create_room(http, app.clone(), "alice".into(), alice.clone(), offer()).await,
        Some(0),
        "the key sealed before the rotation still verifies"
    );
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // Without the key that sealed them, session keys do not open: the join is a system
    // error (-1000), never a key of another user or a panic. A key of the wrong shape stops
    // the start with a message naming where it came from.
    std::fs::write(
        &key_file,
        format!("{}\n", voipchat_store::secrets::new_key_line()),
    )
    .unwrap();
    let (mut server, http, _) = serve(dir.path(), &["--no-demo"]).await;
    assert_eq!(
        create_room(http, app.clone(), "alice".into(), alice.clone(), offer()).await,
        Some(-1000)
    );
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voipchat"))
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--no-demo",
        ])
        .args(["--http-addr", "127.0.0.1:0", "--media-addr", "127.0.0.1:0"])
        .env("VOIPCHAT_SECRETS_KEY", "not-a-key")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VOIPCHAT_SECRETS_KEY: line 1 is not a base64 key of 32 bytes"),
        "{err}"
    );
}
