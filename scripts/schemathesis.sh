#!/usr/bin/env bash
# Runs schemathesis (property-based API testing, from PyPI) against a live voipchat: the debug
# binary on a temporary SQLite file, an app made with the CLI, and real members in two rooms
# (voipchat-client), so the room routes answer for rooms that exist as well as for ones that
# do not. Checks: no 5xx, every answer's status, content type and body as the OpenAPI
# document says, no call accepted without credentials, and no input the document forbids
# accepted. Bounded by a fixed number of examples per operation (SCHEMATHESIS_MAX_EXAMPLES,
# default 100), not by time: schemathesis's --max-time repeats the fuzzing until it is spent.
#
# Usage: scripts/schemathesis.sh   (scripts/test.sh runs it; it builds what it needs)
# schemathesis is installed, pinned, into a venv under the target directory, so the system
# Python is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/schemathesis/venv"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== cargo build (voipchat, voipchat-client)"
cargo build --quiet --bin voipchat --bin voipchat-client
bin="$target/debug"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
"$bin/voipchat" serve --http-addr 127.0.0.1:0 --media-addr 127.0.0.1:0 --no-demo \
  2> server.log &
pids+=($!)
addr=""
for _ in $(seq 1 200); do
  addr=$(sed -n 's/\x1b\[[0-9;]*m//g; s/.*http=\([0-9.:]*\).*/\1/p' server.log | head -n1)
  [ -n "$addr" ] && break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "the server did not start:" >&2
  cat server.log >&2
  exit 1
fi
base="http://$addr"
echo "== voipchat serving at $base"

out=$("$bin/voipchat" app create --name schemathesis)
app_id=$(printf '%s' "$out" | sed -E 's/.*"appId":"([^"]+)".*/\1/')
app_secret=$(printf '%s' "$out" | sed -E 's/.*"appSecret":"([^"]+)".*/\1/')
"$bin/voipchat" app enable-voip "$app_id" > /dev/null

# Members: st-1 and st-2 in st-lobby, st-3 in st-hall, for at most 5 minutes.
join() {
  local open_id=$1 group=$2 key
  key=$(curl -sf -u "$app_id:$app_secret" -H 'content-type: application/json' \
    -d "{\"openId\":\"$open_id\"}" "$base/api/v1/session-key" \
    | sed -E 's/.*"sessionKey":"([^"]+)".*/\1/')
  "$bin/voipchat-client" join --server "$base" --app-id "$app_id" --open-id "$open_id" \
    --group-id "$group" --session-key "$key" --duration 300 > "client-$open_id.log" 2>&1 &
  pids+=($!)
}
join st-1 st-lobby
join st-2 st-lobby
join st-3 st-hall
for _ in $(seq 1 100); do
  rooms=$(curl -s -u "$app_id:$app_secret" "$base/api/v1/rooms")
  case "$rooms" in *st-1*st-2*st-3*) break ;; esac
  sleep 0.1
done
echo "== rooms before: $rooms"

# The room routes get these ids half of the time (two open rooms, one that is not), the
# member bodies these openIds; everything else is generated from the document.
cat > schemathesis.toml <<EOF
[dictionaries.rooms]
values = ["st-lobby", "st-hall", "st-none"]

[dictionaries.members]
values = ["st-1", "st-2", "st-3", "st-nobody"]

[parameters]
"path.groupId" = { dictionary = "rooms", probability = 0.5 }
"body.openId" = { dictionary = "members", probability = 0.5 }
EOF

echo "== schemathesis run ($max_examples examples per operation)"
set +e
"$venv/bin/schemathesis" --config-file schemathesis.toml run "$base/api/openapi.json" \
  --auth "$app_id:$app_secret" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth,negative_data_rejection \
  --max-examples "$max_examples" \
  --request-timeout 10 \
  --seed "${SCHEMATHESIS_SEED:-20261122}" \
  --no-color 2>&1 | tee schemathesis.out
status=${PIPESTATUS[0]}
set -e
if grep -qiE 'panicked|thread .* panicked' server.log; then
  echo "the server panicked:" >&2
  grep -iE -A5 'panicked' server.log >&2
  status=1
fi
if ! kill -0 "${pids[0]}" 2>/dev/null; then
  echo "the server is gone:" >&2
  tail -20 server.log >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); the server's log:" >&2
  tail -40 server.log >&2
  exit "$status"
fi
echo "== schemathesis: no server error, every answer as documented"
