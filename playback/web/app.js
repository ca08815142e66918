// The agent's web UI: streams, a live view (LL-HLS), recorded ranges on a
// timeline, clip download, and a sensor panel. Hand-written, no build step:
// the only third-party code is hls.js (window.Hls, loaded before this module).
//
// Data: GET /api/streams every few seconds. Times there are objects
// { utc, ms }; plain RFC 3339 strings and epoch milliseconds are accepted too,
// so the page keeps working if the shape is simplified.

const POLL_MS = 5000;
/// How much a click on the timeline plays: the VOD playlist asks for this much.
const VOD_SPAN_MS = 10 * 60 * 1000;
/// What "Download clip" saves while watching live: the last minutes.
const LIVE_CLIP_MS = 5 * 60 * 1000;
const SENSOR_KINDS = new Set(['lidar', 'radar', 'data']);

const $ = (id) => document.getElementById(id);
const video = $('video');

const state = {
  streams: [],
  selected: null, // stream name
  mode: 'live', // 'live' | 'vod'
  vodStart: 0, // epoch ms of the VOD playlist's start
  hls: null,
};

/** Epoch milliseconds of an API time. */
function toMs(t) {
  if (t == null) return NaN;
  if (typeof t === 'number') return t;
  if (typeof t === 'object') return typeof t.ms === 'number' ? t.ms : Date.parse(t.utc);
  return /^\d+$/.test(t) ? Number(t) : Date.parse(t);
}

function fmtTime(ms) {
  return new Date(ms).toLocaleString(undefined, { hour12: false });
}

function fmtRfc3339(ms) {
  return new Date(ms).toISOString();
}

// ---------------------------------------------------------------- streams

async function poll() {
  try {
    const r = await fetch('/api/streams', { cache: 'no-store' });
    if (!r.ok) throw new Error(`/api/streams: HTTP ${r.status}`);
    const body = await r.json();
    state.streams = Array.isArray(body.streams) ? body.streams : [];
    $('status').textContent = '';
  } catch (e) {
    $('status').textContent = `cannot reach the agent (${e.message}); retrying`;
  }
  renderStreams();
  // Open on a camera rather than a sensor-only stream.
  if (!state.selected && state.streams.length) select((state.streams.find(hasAudioVideo) ?? state.streams[0]).name);
  renderTimeline();
  updateSensors();
}

function current() {
  return state.streams.find((s) => s.name === state.selected) ?? null;
}

function isRecording(s) {
  return s.recording === true || s.store?.state === 'recording';
}

function renderStreams() {
  const list = $('streams');
  list.replaceChildren();
  $('no-streams').hidden = state.streams.length > 0;
  for (const s of state.streams) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('aria-current', String(s.name === state.selected));
    const dot = document.createElement('span');
    dot.className = isRecording(s) ? 'dot recording' : 'dot';
    dot.title = isRecording(s) ? 'recording' : 'not recording';
    const kinds = document.createElement('span');
    kinds.className = 'kinds';
    kinds.textContent = (s.tracks ?? []).map((t) => t.codecs ?? t.kind ?? t.codec_id).join(' · ');
    b.append(dot, document.createTextNode(s.name), kinds);
    b.addEventListener('click', () => select(s.name));
    li.append(b);
    list.append(li);
  }
}

/** Whether a stream has anything for the video element (sensor-only ones do not). */
function hasAudioVideo(s) {
  return (s?.tracks ?? []).some((t) => t.kind === 'video' || t.kind === 'audio');
}

function select(name) {
  if (state.selected === name) return;
  state.selected = name;
  rtcStop();
  $('viewer').hidden = false;
  $('stream-name').textContent = name;
  $('status').textContent = '';
  renderStreams();
  const av = hasAudioVideo(current());
  for (const id of ['video', 'download', 'mode', 'latency', 'rtc']) $(id).hidden = !av;
  if (av) {
    playLive();
  } else {
    $('go-live').hidden = true;
    state.hls?.destroy();
    state.hls = null;
  }
  renderTimeline();
  updateSensors();
}

// ---------------------------------------------------------------- player

function streamPath(kind) {
  return `/hls/${encodeURIComponent(state.selected)}/${kind}`;
}

/** Play an HLS URL with hls.js, or natively where MSE is missing (iOS Safari). */
function play(url, live) {
  $('status').textContent = '';
  if (state.hls) {
    state.hls.destroy();
    state.hls = null;
  }
  const Hls = window.Hls;
  if (Hls && Hls.isSupported()) {
    // Catch up (up to 1.5× speed) after a stall instead of staying behind live.
    const hls = new Hls({ lowLatencyMode: live, backBufferLength: 30, maxLiveSyncPlaybackRate: 1.5 });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      $('status').textContent = `player: ${data.type}/${data.details}`;
      // A live stream that stalled (writer restarted, network blip) is
      // picked up again from the live edge rather than left black.
      if (live && data.type === Hls.ErrorTypes.NETWORK_ERROR) setTimeout(() => state.hls === hls && playLive(), 2000);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    state.hls = hls;
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = url;
  } else {
    $('status').textContent = 'this browser plays neither MSE nor native HLS';
    return;
  }
  video.play().catch(() => {
    // Autoplay refused: the controls are there to start it.
  });
}

function playLive() {
  state.mode = 'live';
  play(streamPath('live.m3u8'), true);
  renderMode();
}

function playRecorded(startMs) {
  state.mode = 'vod';
  state.vodStart = startMs;
  const end = startMs + VOD_SPAN_MS;
  play(`${streamPath('vod.m3u8')}?start=${encodeURIComponent(fmtRfc3339(startMs))}&end=${encodeURIComponent(fmtRfc3339(end))}`, false);
  renderMode();
}

function renderMode() {
  const mode = $('mode');
  mode.textContent = state.mode === 'live' ? 'LIVE' : `recorded · ${fmtTime(state.vodStart)}`;
  mode.className = state.mode === 'live' ? 'badge live' : 'badge';
  $('go-live').hidden = state.mode === 'live';
  const [start, end] = state.mode === 'live'
    ? [Date.now() - LIVE_CLIP_MS, Date.now()]
    : [state.vodStart, state.vodStart + VOD_SPAN_MS];
  const a = $('download');
  a.href = `/clip/${encodeURIComponent(state.selected)}.mp4?start=${start}&end=${end}`;
  a.title = `${fmtTime(start)} – ${fmtTime(end)}`;
}

/** Wall-clock time of the picture on screen, from EXT-X-PROGRAM-DATE-TIME. */
function playingDate() {
  if (state.hls) return state.hls.playingDate ?? null;
  // Native HLS (Safari) maps the program date time through getStartDate().
  const start = video.getStartDate?.();
  return start && !Number.isNaN(start.getTime()) ? new Date(start.getTime() + video.currentTime * 1000) : null;
}

function tick() {
  const at = playingDate();
  const latency = $('latency');
  if (at && state.mode === 'live') {
    latency.textContent = `latency ${((Date.now() - at.getTime()) / 1000).toFixed(1)} s`;
  } else if (at) {
    latency.textContent = fmtTime(at.getTime());
  } else {
    latency.textContent = '';
  }
  if (state.mode === 'live' && hasAudioVideo(current())) renderMode(); // keep the live clip link current
  renderPlayhead(at ? at.getTime() : null);
  updateSensors();
}

// ---------------------------------------------------------------- timeline

/** [from, to] epoch ms the timeline shows. */
function timelineSpan(s) {
  const ranges = (s?.ranges ?? []).map((r) => [toMs(r.start), toMs(r.end)]).filter(([a, b]) => b > a);
  const to = Math.max(Date.now(), ...ranges.map(([, b]) => b));
  const shown = Number($('window').value) * 1000;
  const oldest = ranges.length ? Math.min(...ranges.map(([a]) => a)) : to - 3600 * 1000;
  const from = shown > 0 ? to - shown : Math.min(oldest, to - 60 * 1000);
  return { from, to, ranges };
}

function renderTimeline() {
  const s = current();
  const bar = $('timeline');
  for (const el of [...bar.querySelectorAll('.range')]) el.remove();
  if (!s) return;
  const { from, to, ranges } = timelineSpan(s);
  const pct = (t) => ((Math.min(Math.max(t, from), to) - from) / (to - from)) * 100;
  for (const [a, b] of ranges) {
    if (b <= from || a >= to) continue;
    const el = document.createElement('div');
    el.className = 'range';
    el.style.left = `${pct(a)}%`;
    el.style.width = `${Math.max(pct(b) - pct(a), 0.2)}%`;
    el.title = `${fmtTime(a)} – ${fmtTime(b)}`;
    bar.append(el);
  }
  $('axis-start').textContent = fmtTime(from);
  $('axis-end').textContent = fmtTime(to);
}

function renderPlayhead(atMs) {
  const head = $('playhead');
  const s = current();
  if (!s || atMs == null) {
    head.style.display = 'none';
    return;
  }
  const { from, to } = timelineSpan(s);
  if (atMs < from || atMs > to) {
    head.style.display = 'none';
    return;
  }
  const p = ((atMs - from) / (to - from)) * 100;
  head.style.display = 'block';
  head.style.left = `${p}%`;
  $('timeline').setAttribute('aria-valuenow', p.toFixed(0));
}

function timeAt(event) {
  const rect = $('timeline').getBoundingClientRect();
  const { from, to } = timelineSpan(current());
  return from + ((event.clientX - rect.left) / rect.width) * (to - from);
}

$('timeline').addEventListener('click', (e) => {
  if (hasAudioVideo(current())) playRecorded(Math.round(timeAt(e)));
});
$('timeline').addEventListener('mousemove', (e) => {
  if (state.selected) $('hover-time').textContent = fmtTime(timeAt(e));
});
$('timeline').addEventListener('mouseleave', () => {
  $('hover-time').textContent = '';
});
$('timeline').addEventListener('keydown', (e) => {
  // Keyboard: step back and forth a minute from what is playing.
  if (!hasAudioVideo(current())) return;
  const at = playingDate()?.getTime() ?? Date.now();
  if (e.key === 'ArrowLeft') playRecorded(at - 60 * 1000);
  else if (e.key === 'ArrowRight') playRecorded(at + 60 * 1000);
  else if (e.key === 'End') playLive();
});
$('window').addEventListener('change', renderTimeline);
$('go-live').addEventListener('click', playLive);

// ---------------------------------------------------------------- sensors

/** Streams carrying LIDAR or RADAR (sensors record as streams of their own). */
function sensorStreams() {
  return state.streams.filter((s) => (s.tracks ?? []).some((t) => SENSOR_KINDS.has(t.kind)));
}

let sensorBusy = false;

/**
 * Fetch every sensor stream's frame at the picture's wall-clock time (the
 * newest when nothing plays) and draw them: LIDAR and RADAR move in step
 * with the video, live or recorded.
 */
async function updateSensors() {
  const streams = sensorStreams();
  if (!streams.length) {
    renderSensor([], streams);
    return;
  }
  if (sensorBusy) return;
  sensorBusy = true;
  const at = playingDate()?.getTime();
  const query = at ? `?t=${Math.round(at)}` : '';
  try {
    const frames = await Promise.all(
      streams.map((s) =>
        fetch(`/api/sensors/${encodeURIComponent(s.name)}/frame${query}`, { cache: 'no-store' })
          .then((r) => (r.ok ? r.json() : null))
          .catch(() => null),
      ),
    );
    renderSensor(frames.filter(Boolean), streams);
  } finally {
    sensorBusy = false;
  }
}

/**
 * Draw sensor frames top-down (x forward = up, y left = left), the sensor at
 * the centre, scaled to the farthest point (at most 100 m). LIDAR points are
 * shaded by intensity; RADAR points are larger, red when approaching and
 * blue when receding.
 */
function renderSensor(frames, streams) {
  const canvas = $('sensor');
  const g = canvas.getContext('2d');
  const w = canvas.width;
  const h = canvas.height;
  g.clearRect(0, 0, w, h);
  g.fillStyle = '#8a94a3';
  g.font = '14px system-ui, sans-serif';
  g.textAlign = 'center';
  if (!streams || !streams.length) {
    g.fillText('no sensor data', w / 2, h / 2);
    return;
  }
  if (!frames || !frames.length) {
    g.fillText(`${streams.map((s) => s.name).join(', ')}: waiting for data`, w / 2, h / 2);
    return;
  }
  let range = 5;
  for (const f of frames) {
    for (let i = 0; i + 3 < f.points.length; i += 4) {
      range = Math.max(range, Math.abs(f.points[i]), Math.abs(f.points[i + 1]));
    }
  }
  range = Math.min(range, 100);
  const scale = Math.min(w, h) / 2 / range;
  g.strokeStyle = '#2a3140';
  g.beginPath();
  g.arc(w / 2, h / 2, (range / 2) * scale, 0, 2 * Math.PI);
  g.stroke();
  for (const f of frames) {
    const radar = f.kind === 'radar';
    for (let i = 0; i + 3 < f.points.length; i += 4) {
      const px = w / 2 - f.points[i + 1] * scale;
      const py = h / 2 - f.points[i] * scale;
      const v = f.points[i + 3];
      if (radar) {
        g.fillStyle = v < 0 ? '#ff5a4f' : '#4fa3ff';
        g.fillRect(px - 2, py - 2, 5, 5);
      } else {
        const shade = Math.round(90 + Math.min(Math.max(v, 0), 255) * 0.64);
        g.fillStyle = `rgb(${shade},${shade},${Math.min(255, shade + 30)})`;
        g.fillRect(px, py, 1.5, 1.5);
      }
    }
  }
  g.fillStyle = '#c9d1dc';
  g.textAlign = 'left';
  const label = frames.map((f) => `${f.stream} ${f.kind} ${fmtTime(f.t.ms)} (${f.total} pts)`).join(' · ');
  g.fillText(`${label} · ring = ${(range / 2).toFixed(0)} m`, 8, 18);
}

// ---------------------------------------------------------------- WebRTC

// A WHEP viewer beside the HLS one: the camera's H.264 passed through, well
// under a second behind. "Talk" reconnects with this browser's microphone
// (the device plays it on its talkback output).
const rtc = { pc: null, location: null, talking: false, generation: 0, latency: [], dc: null, rtt: null };
const rtcVideo = $('rtc-video');

function rtcState(text) {
  $('rtc-state').textContent = text;
}

async function rtcStop() {
  rtc.generation += 1;
  const { pc, location } = rtc;
  rtc.pc = null;
  rtc.location = null;
  rtc.dc = null;
  if (location) fetch(location, { method: 'DELETE' }).catch(() => {});
  pc?.getSenders().forEach((s) => s.track?.stop());
  pc?.close();
  rtcVideo.srcObject = null;
  rtcVideo.hidden = true;
  $('rtc-start').textContent = 'Watch';
  $('rtc-latency').textContent = '';
  rtcState('');
}

async function rtcStart(talk) {
  await rtcStop();
  const generation = rtc.generation;
  const stream = state.selected;
  rtc.talking = talk;
  $('rtc-talk').setAttribute('aria-pressed', String(talk));
  $('rtc-start').textContent = 'Stop';
  rtcState('connecting…');
  const pc = new RTCPeerConnection();
  rtc.pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  if (talk) {
    try {
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      pc.addTransceiver(mic.getAudioTracks()[0], { direction: 'sendrecv' });
    } catch (e) {
      rtcState(`no microphone (${e.message})`);
      pc.addTransceiver('audio', { direction: 'recvonly' });
    }
  } else {
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  const dc = pc.createDataChannel('edge-agent', { ordered: true });
  rtc.dc = dc;
  dc.onmessage = (e) => {
    if (typeof e.data !== 'string') return;
    const m = JSON.parse(e.data);
    if (m.type === 'pong') rtc.rtt = Date.now() - m.t;
  };
  pc.ontrack = (e) => {
    if (!rtcVideo.srcObject) rtcVideo.srcObject = new MediaStream();
    rtcVideo.srcObject.addTrack(e.track);
    rtcVideo.hidden = false;
    rtcVideo.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (rtc.pc === pc) rtcState(pc.connectionState);
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    // Host candidates come at once; do not wait long for others.
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const done = () => pc.iceGatheringState === 'complete' && resolve();
      pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, 1500);
    });
    const r = await fetch(`/whep/${encodeURIComponent(stream)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    const body = await r.text();
    if (generation !== rtc.generation) return;
    if (r.status !== 201) throw new Error(`${r.status}: ${body.trim()}`);
    rtc.location = r.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (e) {
    if (generation === rtc.generation) {
      await rtcStop();
      rtcState(`WebRTC: ${e.message}`);
    }
  }
}

/** Capture time (epoch ms) of a frame from its 90 kHz RTP timestamp, which
 * the agent derives from the capture wall clock; the nearest wrap to now. */
function captureMs(rtpTimestamp, nowMs) {
  const wrap = 2 ** 32 / 90;
  const base = rtpTimestamp / 90;
  return base + Math.round((nowMs - base) / wrap) * wrap;
}

function onRtcFrame(_now, meta) {
  if (meta.rtpTimestamp != null && !rtcVideo.hidden) {
    const now = Date.now();
    const shown = now - (performance.now() - (meta.presentationTime ?? meta.expectedDisplayTime ?? performance.now()));
    rtc.latency.push(shown - captureMs(meta.rtpTimestamp, now));
    if (rtc.latency.length > 30) rtc.latency.shift();
  }
  rtcVideo.requestVideoFrameCallback?.(onRtcFrame);
}
rtcVideo.requestVideoFrameCallback?.(onRtcFrame);

setInterval(() => {
  if (!rtc.pc || rtcVideo.hidden) return;
  const sorted = [...rtc.latency].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const parts = [];
  if (median != null) parts.push(`latency ${Math.round(median)} ms`);
  if (rtc.rtt != null) parts.push(`RTT ${rtc.rtt} ms`);
  $('rtc-latency').textContent = parts.join(' · ');
  if (rtc.dc?.readyState === 'open') rtc.dc.send(JSON.stringify({ type: 'ping', id: 0, t: Date.now() }));
}, 1000);

$('rtc-start').addEventListener('click', () => (rtc.pc ? rtcStop() : rtcStart(false)));
$('rtc-talk').addEventListener('click', () => rtcStart(!rtc.talking));

window.edgeAgent = { drawSensor: renderSensor, playLive, playRecorded, rtcStart, rtcStop };

poll();
setInterval(poll, POLL_MS);
setInterval(tick, 500);
