//! Replays every saved input through its target: the seeds in `seeds/<target>/` (real frames,
//! offers and call sequences the fuzzer starts from) and the inputs in
//! `regressions/<target>/` that once made a target fail.

use std::fs;
use std::path::Path;

use voipchat_fuzz::TARGETS;

/// The files of `dir/<target>/` for every target, and the names of folders no target owns.
fn replay(dir: &str) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut replayed = 0;
    let mut strays = Vec::new();
    let Ok(entries) = fs::read_dir(&root) else {
        return (0, strays);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, target)) = TARGETS.iter().find(|(n, _)| *n == name) else {
            strays.push(name);
            continue;
        };
        for file in fs::read_dir(&path).expect("a readable folder").flatten() {
            let data = fs::read(file.path()).expect("a readable input");
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{} fails again", file.path().display());
            replayed += 1;
        }
    }
    (replayed, strays)
}

#[test]
fn every_seed_runs_clean_and_every_target_has_seeds() {
    let (n, strays) = replay("seeds");
    assert!(
        strays.is_empty(),
        "seed folders without a target: {strays:?}"
    );
    for (name, _) in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .join(name);
        let count = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(count > 0, "{name} has no seed in {}", dir.display());
    }
    assert!(n >= TARGETS.len());
}

#[test]
fn every_saved_failure_stays_fixed() {
    let (_, strays) = replay("regressions");
    assert!(
        strays.is_empty(),
        "regression folders without a target: {strays:?}"
    );
}
