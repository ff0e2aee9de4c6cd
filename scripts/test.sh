#!/usr/bin/env bash
# Runs every test of voipchat, installing what the tests need first.
# Usage: scripts/test.sh            (from anywhere; a fresh Debian 12 machine is fine)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# --- what the tests need from Debian ---------------------------------------------------
# sox/espeak-ng/opus-tools make sound fixtures, ffmpeg video ones; chromium drives the browser tests. node and
# python3 run the example game backends of examples/ in them; coturn is the TURN server relaying for them.
need_pkgs=()
command -v opusenc >/dev/null || need_pkgs+=(opus-tools)
command -v sox >/dev/null || need_pkgs+=(sox)
command -v espeak-ng >/dev/null || need_pkgs+=(espeak-ng)
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)       # VP8 IVF files, fake camera y4m
command -v node >/dev/null || need_pkgs+=(nodejs npm)
command -v python3 >/dev/null || need_pkgs+=(python3)     # examples/python-backend
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)  # schemathesis
command -v curl >/dev/null || need_pkgs+=(curl)           # docs/api.md examples, schemathesis.sh
command -v ip >/dev/null || need_pkgs+=(iproute2)         # loopback-only namespaces
command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v nft >/dev/null || need_pkgs+=(nftables)        # packet loss, a UDP-blocked network, firewalls in browser tests
command -v openssl >/dev/null || need_pkgs+=(openssl)      # the browser TLS test's certificate
command -v turnserver >/dev/null || need_pkgs+=(coturn)   # the TURN server of the TURN tests
command -v redis-server >/dev/null || need_pkgs+=(redis-server)  # the Redis store backend: its conformance suite and redis_store.rs start their own
command -v janus >/dev/null || need_pkgs+=(janus)                # the bench smoke runs Janus too (crates/bench/tests/smoke.rs)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing Debian packages: ${need_pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain >= 1.89 with rustup first (see README)" >&2
  exit 1
fi

# --- Rust -------------------------------------------------------------------------------
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# pipefail would turn a failing cargo test into the `|| true` branch (whose PIPESTATUS is 0),
# so the exit status is taken with errexit and pipefail off.
set +e +o pipefail
cargo test --workspace 2>&1 | tee target/test-output.txt | grep -E '^(test result|running|error|failures:|---- )|panicked|FAILED'
status=${PIPESTATUS[0]}
set -e -o pipefail
if [ "$status" -ne 0 ]; then
  echo "cargo test failed; full output in target/test-output.txt"
  grep -A30 -E '^failures:' target/test-output.txt | head -80 || true
  exit "$status"
fi

# --- browser tests: the JS SDK and the demo page in headless Chromium -------------------------
# (tests/browser/README.md). Chromium from Debian, playwright-core from npm (package-lock.json),
# run inside a loopback-only network namespace by tests/browser/run.sh.
browsers=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || browsers+=(chromium)
[ -x "${FIREFOX:-/usr/bin/firefox-esr}" ] || browsers+=(firefox-esr)   # tests/browser/firefox.test.mjs
if [ ${#browsers[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${browsers[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${browsers[@]}" >/dev/null
fi
echo "== npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
echo "== cargo build (the binaries the browser tests start)"
cargo build --quiet

# --- schemathesis: the backend API against its OpenAPI document ------------------------------
# (scripts/schemathesis.sh: schemathesis from PyPI, pinned, in a venv under target/; a live
# server on a temporary database with real members in rooms.)
echo "== schemathesis (backend API vs /api/openapi.json)"
set +e +o pipefail
scripts/schemathesis.sh 2>&1 | tee target/schemathesis-output.txt | grep -E '^(==|  [0-9]+ generated)|FAILURES|^_{3,}'
schemathesis_status=${PIPESTATUS[0]}
set -e -o pipefail
if [ "$schemathesis_status" -ne 0 ]; then
  echo "schemathesis failed; full output in target/schemathesis-output.txt"
  exit "$schemathesis_status"
fi
echo "== browser tests"
browser_start=$(date +%s)
set +e
tests/browser/run.sh 2>&1 | tee target/browser-test-output.txt
browser_status=${PIPESTATUS[0]}
set -e
echo "== browser tests wall time: $(( $(date +%s) - browser_start )) s (screenshot: target/browser/demo.png)"
if [ "$browser_status" -ne 0 ]; then
  echo "browser tests failed; full output in target/browser-test-output.txt"
  exit "$browser_status"
fi

passed=$(grep -oE 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
b_passed=$(grep -E '^(ℹ|#) pass [0-9]+' target/browser-test-output.txt | awk '{s+=$3} END {print s+0}')
b_failed=$(grep -E '^(ℹ|#) fail [0-9]+' target/browser-test-output.txt | awk '{s+=$3} END {print s+0}')
echo "== wall time: $(( $(date +%s) - start )) s"
echo "schemathesis: $(grep -oE '[0-9]+ generated, [0-9]+ passed' target/schemathesis-output.txt | tail -n1) test cases"
echo "cargo: $passed passed, $failed failed; browser: $b_passed passed, $b_failed failed"
echo "total: $(( passed + b_passed )) passed, $(( failed + b_failed )) failed"
# A second guard: no run with a failed test ends green.
[ $(( failed + b_failed )) -eq 0 ] || exit 1
