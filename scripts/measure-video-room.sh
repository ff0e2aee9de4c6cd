#!/usr/bin/env bash
# Server CPU of one video room: N members (default 4) of the release CLI peer, each sending a
# VP8 IVF camera (640x360, 15 fps, ~500 kbit/s, made by ffmpeg) and an Opus tone, all
# receiving their default videos. Prints the server's CPU over a 10 s window, from
# /proc/PID/stat, and what the members received. Loopback only; it stops what it started.
# Usage: scripts/measure-video-room.sh [MEMBERS]   (after: cargo build --release -p voipchat-server -p voipchat-client)
set -euo pipefail
cd "$(dirname "$0")/.."
members=${1:-4}
bin=${VOIPCHAT_BIN_DIR:-target/release}  # where the release voipchat and voipchat-client are
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

ffmpeg -loglevel error -f lavfi -i testsrc=size=640x360:rate=15:duration=10 \
  -c:v libvpx -b:v 500k -g 60 "$work/cam.ivf"
sox -n -r 48000 -c 1 -b 16 "$work/tone.wav" synth 10 sine 440 vol 0.5
opusenc --quiet --bitrate 32 "$work/tone.wav" "$work/tone.opus"

"$bin/voipchat" serve --data-dir "$work/data" --http-addr 127.0.0.1:0 --media-addr 127.0.0.1:0 \
  --no-demo 2>"$work/server.log" &
server=$!
pids+=("$server")
for _ in $(seq 50); do grep -q "voipchat serving" "$work/server.log" && break; sleep 0.1; done
http=$(grep -o 'http=[0-9.:]*' "$work/server.log" | head -1 | cut -d= -f2)
app_json=$("$bin/voipchat" app create --data-dir "$work/data" --name bench 2>/dev/null)
app=$(echo "$app_json" | sed 's/.*"appId":"\([^"]*\)".*/\1/')
secret=$(echo "$app_json" | sed 's/.*"appSecret":"\([^"]*\)".*/\1/')
"$bin/voipchat" app enable-voip --data-dir "$work/data" "$app" >/dev/null 2>&1

for i in $(seq "$members"); do
  key=$(curl -s -u "$app:$secret" -H 'content-type: application/json' \
    -d "{\"openId\":\"m$i\"}" "http://$http/api/v1/session-key" | sed 's/.*"sessionKey":"\([^"]*\)".*/\1/')
  "$bin/voipchat-client" join --server "http://$http" --app-id "$app" --open-id "m$i" \
    --group-id video-bench --session-key "$key" --room-type video \
    --send-video "$work/cam.ivf" --send "$work/tone.opus" --loop --duration 22 \
    >"$work/m$i.out" 2>/dev/null &
  pids+=("$!")
done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
sleep 6
t0=$(date +%s.%N); c0=$(cpu)
sleep 10
t1=$(date +%s.%N); c1=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
wait "${pids[@]:1}" || true
pct=$(echo "($c1 - $c0) * 100 / $ticks / ($t1 - $t0)" | bc -l)
printf 'members: %d  server CPU: %.1f %% of one core over %.1f s  RSS: %d KiB\n' \
  "$members" "$pct" "$(echo "$t1 - $t0" | bc -l)" "$rss"
for i in $(seq "$members"); do
  started=$(grep -c '"videoStarted"' "$work/m$i.out" || true)
  echo "m$i: videos started: $started"
done
