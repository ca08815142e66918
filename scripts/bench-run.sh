#!/usr/bin/env bash
# `edge-agent run` recording a 1080p30 4 Mbit/s H.264 passthrough source in
# real time into the store, beside a bare gst-launch-1.0 of the same source
# (demux + parse + real-time pacing, into fakesink). Prints CPU seconds per
# minute of video for both, the difference (what the agent adds: appsink,
# fragmenter, store, HTTP), and the agent's peak RSS.
#
#   cargo build --release -p agent && scripts/bench-run.sh [CLIP.mp4] [SECONDS] [RUNS]
#
# Both run at the same time, so they see the same machine load. The clip must
# last at least SECONDS. Without one it makes a clip of SECONDS+10 s with x264
# (ultrafast; about a sixth of real time on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${EDGE_AGENT:-target/release/edge-agent}
clip=${1:-}
secs=${2:-50}
runs=${3:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$clip" ]; then
  clip="$work/clip.mp4"
  gst-launch-1.0 -q videotestsrc num-buffers=$(( (secs + 10) * 30 )) pattern=smpte ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
    ! timeoverlay ! x264enc bitrate=4000 speed-preset=ultrafast key-int-max=60 ! h264parse ! mp4mux ! filesink location="$clip"
fi
source_desc="filesrc location=$clip ! qtdemux ! h264parse ! identity sync=true"
tick=$(getconf CLK_TCK)

# CPU seconds (user+system) and peak RSS (kB) of a running process.
cpu_of() { awk -v t="$tick" '{print ($14+$15)/t}' "/proc/$1/stat"; }
hwm_of() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

measure() { # label, command...
  local label=$1; shift
  "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep "$secs"
  local cpu hwm
  cpu=$(cpu_of $pid); hwm=$(hwm_of $pid)
  kill -INT $pid; wait $pid 2>/dev/null || true
  echo "$label $cpu $hwm"
}

results="$work/results"
for i in $(seq "$runs"); do
  store="$work/store-$i"
  port=$((18200 + i))
  cat > "$work/agent.toml" <<TOML
[store]
path = "$store"
min_free_mb = 0
[http]
listen = "127.0.0.1:$port"
[[streams]]
name = "bench"
video = "pipeline:$source_desc"
audio = "none"
TOML
  # Side by side, at the same time: both see the same machine load.
  measure gst gst-launch-1.0 -q $source_desc ! fakesink sync=false >> "$results" &
  measure agent "$bin" -q run -c "$work/agent.toml" >> "$results" &
  wait
done
awk -v secs="$secs" '
  { cpu[$1] += $2; n[$1]++; if ($3 > hwm[$1]) hwm[$1] = $3 }
  END {
    g = cpu["gst"] / n["gst"] * 60 / secs; a = cpu["agent"] / n["agent"] * 60 / secs
    printf "gst-launch-1.0 (demux+parse+pacing): %.3f CPU-s per minute of video, peak RSS %.1f MB\n", g, hwm["gst"] / 1024
    printf "edge-agent run (same source, stored): %.3f CPU-s per minute of video, peak RSS %.1f MB\n", a, hwm["agent"] / 1024
    printf "added by the agent: %.3f CPU-s per minute of video (%d runs of %d s each)\n", a - g, n["agent"], secs
  }' "$results"
