//! The `voipchat` binary's own commands.

use std::process::Command;

fn voipchat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_voipchat"))
}

#[test]
fn sign_prints_the_seed_signature_and_nothing_else() {
    let out = voipchat()
        .args([
            "sign",
            "--app-id",
            "wx20afc706a711eefc",
            "--group-id",
            "1559129713_672975982",
            "--nonce-str",
            "8AP6DT9ybtniUJfb",
            "--timestamp",
            "1559129714",
            "--session-key",
            "gDyVgzwa0mFz9uUP7M6GQQ==",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "b002b824688dd8593a6079e11d8c5e8734fbcb39a6d5906eb347bfbcad79c617\n"
    );
}

#[test]
fn app_create_list_enable_disable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = voipchat()
        .args(["--data-dir", data, "app", "create", "--name", "My Game"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let app_id = created["appId"].as_str().unwrap().to_string();
    assert!(app_id.starts_with("wx") && app_id.len() == 18, "{app_id}");
    assert_eq!(created["appSecret"].as_str().unwrap().len(), 64);

    let list = |expect_enabled: bool| {
        let out = voipchat()
            .args(["--data-dir", data, "app", "list"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(row["appId"], app_id.as_str());
        assert_eq!(row["name"], "My Game");
        assert_eq!(row["voipEnabled"], expect_enabled);
        assert!(
            !text.contains(created["appSecret"].as_str().unwrap()),
            "list never shows secrets"
        );
    };
    list(false);
    assert!(voipchat()
        .args(["--data-dir", data, "app", "enable-voip", &app_id])
        .status()
        .unwrap()
        .success());
    list(true);
    assert!(voipchat()
        .args(["--data-dir", data, "app", "disable-voip", &app_id])
        .status()
        .unwrap()
        .success());
    list(false);
    let out = voipchat()
        .args(["--data-dir", data, "app", "enable-voip", "wxnope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app"));
}
