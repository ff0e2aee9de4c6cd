#!/usr/bin/env bash
# Runs the browser tests (node --test) inside a loopback-only network namespace: Chromium
# gathers ICE candidates on every interface, and the server announces only 127.0.0.1.
# Needs: /usr/bin/chromium (or $CHROMIUM), `npm ci` done here, target/debug/voipchat and
# target/debug/voipchat-client built, sox, espeak-ng, opus-tools, python3 (the Python example
# backend), and root (or unprivileged user namespaces, then `unshare -rn` is used).
# Arguments: test files (default: all).
set -euo pipefail
cd "$(dirname "$0")"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(*.test.mjs)
# One file at a time: each starts its own Chromium processes (Node < 20.10 lacks the flag).
flags=(--test --test-reporter=spec)
if node --test-concurrency=1 --version >/dev/null 2>&1; then flags+=(--test-concurrency=1); fi
if [ "$(id -u)" -eq 0 ]; then ns=(unshare -n); else ns=(unshare -rn); fi
exec "${ns[@]}" -- bash -c 'ip link set lo up && exec node "$@"' _ "${flags[@]}" "${files[@]}"
