#!/usr/bin/env bash
# Runs voipchat's fuzz targets (crates/fuzz, under libFuzzer via cargo-fuzz in fuzz/) for a
# bounded time each.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 30 s, every target)
# Corpora grow in target/fuzz/corpus/<target>, seeded from crates/fuzz/seeds/<target>.
# A crash is saved in target/fuzz/artifacts/<target>/ and the script fails: copy the file to
# crates/fuzz/regressions/<target>/, fix the bug, and `cargo test -p voipchat-fuzz` replays
# it from then on.
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them. No sanitizer (the code under test is safe Rust; libFuzzer's coverage guides it),
# debug assertions on (integer overflow panics).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(client_frame server_frame signature engine_datagrams engine_signaling store_input red_payload)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
root=$PWD
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$root/target/fuzz/build
# The fuzz workspace takes the project's lock file, so it builds the same dependency versions.
cp Cargo.lock fuzz/Cargo.lock
(cd fuzz && cargo fuzz build -s none -a)
status=0
for t in "${targets[@]}"; do
  corpus=$root/target/fuzz/corpus/$t
  artifacts=$root/target/fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  [ -d "crates/fuzz/seeds/$t" ] && cp -n crates/fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "== fuzz $t for $secs s"
  if ! (cd fuzz && cargo fuzz run -s none -a "$t" "$corpus" -- \
    -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1 | tee "$root/target/fuzz/$t.log" |
    grep -E '^(#[0-9]+ +(DONE|INITED)|==|SUMMARY|stat::number_of_executed_units|stat::peak_rss_mb|.*panicked)'); then
    :
  fi
  if ls "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* >/dev/null 2>&1; then
    echo "fuzz $t found a failing input: $(ls "$artifacts")" >&2
    status=1
  fi
done
exit $status
