#!/usr/bin/env bash
# Instructions the engine spends per forwarded audio copy, counted by callgrind: a figure
# that does not move with the load of the machine, so it tells small regressions apart.
# It runs the in-memory forwarding bench (crates/core/benches/forward.rs) for one room size
# under valgrind, counting only the measured loop (`forward_batches`), and divides by the
# copies it forwarded.
# Usage: scripts/count-instructions.sh [MEMBERS] [PACKETS]   (defaults 10 and 300; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
members=${1:-10}
packets=${2:-300}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
# The bench binary, built in release (cargo bench's profile) without running it.
bench=$(cargo bench -p voipchat-core --bench forward --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*forward-[^"]*"' | head -1 | cut -d'"' -f4)
[ -x "$bench" ] || { echo "could not build the forward bench" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
BENCH_MEMBERS=$members BENCH_PACKETS=$packets valgrind --tool=callgrind \
  --callgrind-out-file="$out/cg.out" --collect-atstart=no --toggle-collect='*forward_batches*' \
  "$bench" > "$out/bench.txt" 2> "$out/valgrind.txt"
copies=$(grep -oE '\(([0-9]+) datagrams out\)' "$out/bench.txt" | grep -oE '[0-9]+' | head -1)
instructions=$(grep -E '^(summary|totals):' "$out/cg.out" | head -1 | awk '{print $2}')
[ -n "$copies" ] && [ -n "$instructions" ] || { cat "$out/bench.txt" "$out/valgrind.txt" >&2; exit 1; }
incoming=$packets
echo "members: $members  incoming packets: $incoming  copies out: $copies"
echo "instructions in forward_batches: $instructions"
awk -v i="$instructions" -v c="$copies" -v p="$incoming" \
  'BEGIN { printf "instructions per incoming packet: %.0f\ninstructions per forwarded copy: %.0f\n", i / p, i / c }'
