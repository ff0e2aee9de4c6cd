#!/usr/bin/env bash
# Runs the browser tests (node --test) inside a loopback-only network namespace: Chromium
# gathers ICE candidates on every interface, and the server announces only 127.0.0.1.
# Needs: /usr/bin/chromium (or $CHROMIUM), /usr/bin/firefox-esr (or $FIREFOX), `npm ci` done here, target/debug/voipchat and
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
# Firefox gathers no ICE candidate on `lo`, nor on an interface without a default route: its
# files (firefox*.test.mjs) run in a namespace of their own that also has a veth pair
# (vff0 10.199.0.1/24, the default route through it; nothing is on the other end).
chromium_files=() firefox_files=()
for f in "${files[@]}"; do
  case "$(basename "$f")" in
    firefox*) firefox_files+=("$f") ;;
    *) chromium_files+=("$f") ;;
  esac
done
status=0
if [ ${#chromium_files[@]} -gt 0 ]; then
  "${ns[@]}" -- bash -c 'ip link set lo up && exec node "$@"' _ "${flags[@]}" "${chromium_files[@]}" || status=$?
fi
if [ ${#firefox_files[@]} -gt 0 ]; then
  "${ns[@]}" -- bash -c 'ip link set lo up &&
    ip link add vff0 type veth peer name vff1 && ip addr add 10.199.0.1/24 dev vff0 &&
    ip link set vff0 up && ip link set vff1 up && ip route add default via 10.199.0.2 dev vff0 &&
    exec node "$@"' _ "${flags[@]}" "${firefox_files[@]}" || status=$?
fi
exit "$status"
