#!/usr/bin/env bash
# Segment requests per second: `edge-agent run` serving the HLS segments of
# its store, against nginx (Debian's) serving the very same bytes from files,
# with the same client (tests' http-load: keep-alive connections, GETs
# round-robin over every segment) on the same machine. Prints both rates and
# the ratio agent/nginx (target ≥ 1.0).
#
#   cargo build --release -p agent -p edge-agent-tests && scripts/bench-segments.sh [SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
conns=${2:-4}
rounds=${3:-5}
bin=${EDGE_AGENT:-target/release/edge-agent}
load=${HTTP_LOAD:-target/release/http-load}
for tool in nginx curl; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
work=$(mktemp -d)
agent_pid=""
nginx_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat > "$work/agent.toml" <<TOML
[store]
path = "$work/store"
min_free_mb = 0
[http]
listen = "127.0.0.1:$port"
[[streams]]
name = "bench"
video = "test"
audio = "test"
width = 1280
height = 720
bitrate_kbps = 4000
TOML
"$bin" -q run -c "$work/agent.toml" >/dev/null 2>&1 &
agent_pid=$!
echo "recording 24 s of 720p30 at 4 Mbit/s…" >&2
sleep 24

# Every segment of the recording, as the VOD playlist names them.
base="http://127.0.0.1:$port/hls/bench/"
curl -sf "${base}vod.m3u8" > "$work/vod.m3u8"
grep -v '^#' "$work/vod.m3u8" | grep . > "$work/segments"
n=$(wc -l < "$work/segments")
[ "$n" -ge 5 ] || { echo "only $n segments in the VOD playlist" >&2; exit 1; }
mkdir -p "$work/www/hls/bench"
: > "$work/paths"
while read -r seg; do
  mkdir -p "$work/www/hls/bench/$(dirname "$seg")"
  curl -sf "${base}${seg}" -o "$work/www/hls/bench/$seg"
  echo "/hls/bench/$seg" >> "$work/paths"
done < "$work/segments"
bytes=$(du -sb "$work/www" | cut -f1)
echo "$n segments, $((bytes / 1024)) KiB" >&2
# Serve what was recorded without recording more: the test camera's x264
# would otherwise take most of the CPU the comparison is about. (A real
# camera encodes in hardware or is passed through.)
kill -INT "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
sed -i '/^\[\[streams\]\]/,$d' "$work/agent.toml"
"$bin" -q run -c "$work/agent.toml" >/dev/null 2>&1 &
agent_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

cat > "$work/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type video/iso.segment;
  server {
    listen 127.0.0.1:$nport;
    root $work/www;
  }
}
CONF
# nginx's workers drop to an unprivileged user: let it read the copies.
chmod -R a+rX "$work"
nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
sleep 1
first=$(head -n1 "$work/paths")
cmp -s <(curl -sf "http://127.0.0.1:$nport$first") <(curl -sf "http://127.0.0.1:$port$first") \
  || { echo "nginx does not serve $first as the agent does:" >&2; cat "$work/nginx-error.log" >&2; exit 1; }

# A warm-up pass lets both fill their caches.
"$load" "127.0.0.1:$port" "$work/paths" "$conns" 1 >/dev/null
"$load" "127.0.0.1:$nport" "$work/paths" "$conns" 1 >/dev/null
if [ -n "${PERF:-}" ]; then
  perf record -g -o "$PERF" -p "$agent_pid" -- sleep "$secs" >/dev/null 2>&1 &
  "$load" "127.0.0.1:$port" "$work/paths" "$conns" "$secs"
  wait %%
fi
# Alternating rounds, each server in turn, and the ratio of the medians:
# one back-to-back pair swings ±20 % on this machine with whatever else
# runs, and alternating spreads that over both.
: > "$work/agent.rates"
: > "$work/nginx.rates"
for r in $(seq "$rounds"); do
  agent=$("$load" "127.0.0.1:$port" "$work/paths" "$conns" "$secs")
  nginx=$("$load" "127.0.0.1:$nport" "$work/paths" "$conns" "$secs")
  echo "round $r: edge-agent $agent" >&2
  echo "round $r: nginx      $nginx" >&2
  echo "$agent" | awk '{print $1}' >> "$work/agent.rates"
  echo "$nginx" | awk '{print $1}' >> "$work/nginx.rates"
done
median() { sort -n "$1" | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
a=$(median "$work/agent.rates")
g=$(median "$work/nginx.rates")
echo "edge-agent: median $a requests/s over $rounds rounds of ${secs} s"
echo "nginx:      median $g requests/s"
awk -v a="$a" -v g="$g" 'BEGIN { printf "segment requests/s, agent / nginx: %.2f× (target ≥ 1.0×; nginx: a worker per core, sendfile)\n", a / g }'
