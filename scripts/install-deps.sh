#!/usr/bin/env bash
# Installs the system packages edge-agent builds and tests with, when they
# are missing. Debian 12, Ubuntu 22.04+, Raspberry Pi OS (Bookworm).
# Uses sudo when not root. Safe to run again: it installs nothing twice.
set -euo pipefail

packages=(
  pkg-config build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-nice
  gstreamer1.0-alsa
  # RTSP cameras (rtspsrc is in -good) and the RTSP test server the
  # end-to-end tests run (gst-rtsp-server).
  gstreamer1.0-rtsp libgstrtspserver-1.0-dev
  ffmpeg mkvtoolnix mediainfo
  libclang-dev libudev-dev
)
# Raspberry Pi cameras; not packaged everywhere, so optional.
optional=(gstreamer1.0-libcamera)

if [ "${1:-}" = "--test" ]; then
  # The browser tests: real Chromium driven by playwright-core (npm), which
  # never downloads a browser of its own; curl fetches clips.
  packages+=(chromium fonts-liberation curl)
fi
# moto's server, a third-party implementation of the KVS control plane
# (CreateStream, DescribeStream, GetDataEndpoint) the upload tests run the
# agent against: from PyPI into a venv of its own (tests/tests/aws_control.rs
# looks there), installed once.
moto_venv="${EDGE_AGENT_MOTO_VENV:-$HOME/.cache/edge-agent/moto-venv}"
if [ "${1:-}" = "--test" ] && [ ! -x "$moto_venv/bin/moto_server" ] \
  && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
if [ "${1:-}" = "--bench" ]; then
  # The segment-serving benchmark compares with nginx serving the same bytes;
  # `edge-agent bench upload` with curl posting the same body.
  packages+=(nginx-light curl)
fi
# The web UI's JavaScript (hls.js) comes from npm at build time. A Node.js
# from elsewhere (NodeSource, nvm) brings its own npm: only install
# Debian's when there is none, or the two would conflict.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--test" ] && [ ! -x "$moto_venv/bin/moto_server" ]; then
  echo "installing moto[server] into $moto_venv"
  if ! { python3 -m venv "$moto_venv" && "$moto_venv/bin/pip" install -q 'moto[server]>=5,<6'; }; then
    rm -rf "$moto_venv"
    echo "note: moto[server] not installed: the moto tests will be skipped"
  fi
fi

for p in "${optional[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    if apt-cache show "$p" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$p" || echo "note: optional $p not installed"
    fi
  fi
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust 1.94 or newer (https://rustup.rs), then run this again" >&2
  exit 1
fi
need="1.94.1"
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "rustc $have is too old: edge-agent needs $need or newer (rustup update)" >&2
  exit 1
fi
