// Watches a stream over WebRTC (WHEP) in real Chromium (Debian's
// /usr/bin/chromium, headless), as one or more viewers in one page, and prints
// one JSON line of what happened:
//
//   node whep.mjs --origin http://127.0.0.1:PORT --stream NAME [--viewers 1] [--seconds 8]
//                 [--talkback] [--sensors all|none|a,b] [--page /]
//   node whep.mjs --origin http://127.0.0.1:PORT --stream NAME --bad
//
// Each viewer offers recvonly H.264-capable video, audio (sendrecv from
// Chromium's fake microphone with --talkback, else recvonly) and the
// "edge-agent" data channel, POSTs the offer to /whep/NAME, watches for
// --seconds after the answer, then DELETEs its session. The viewers run in a
// blank page on the agent's own origin (as the web UI does), served by
// playwright so that the agent is asked for nothing but WHEP; --page names a
// page of the agent to run in instead.
//
// Output: {"ok":bool,"viewers":[{"status","location","connect_ms","first_frame_ms",
//          "framesDecoded","width","height","codec","decoder","framesDropped",
//          "packetsLost","audio":{..},"talkback":{..}|null,"data":{..},
//          "latency_ms":{..},"receive_latency_ms":{..},"delete_status","errors":[..],..}],
//          "errors":[..]}
// "ok": every viewer got 201 and decoded at least one frame. With --bad:
// {"ok":true,"cases":[{"name","expected","status","body",..}],"errors":[..]}.
// A global deadline (--seconds + 30 s) ends a wedged run with ok:false and
// whatever the viewers had gathered. The exit code is 0 whenever the JSON
// line was printed (2: bad usage).
import { FAKE_MEDIA, launch, parseArgs } from './browser.mjs';

const args = parseArgs();
const origin = args.origin?.replace(/\/+$/, '');
const stream = args.stream;
const viewers = Number(args.viewers ?? 1);
const seconds = Number(args.seconds ?? 8);
const bad = args.bad === 'true';
if (!origin || !stream || !(viewers >= 1) || !(seconds > 0)) {
  console.error(
    'usage: node whep.mjs --origin URL --stream NAME [--viewers N] [--seconds N] [--talkback]\n' +
      '                     [--sensors all|none|a,b] [--page PATH] [--bad]',
  );
  process.exit(2);
}
const params = {
  origin,
  stream,
  viewers,
  seconds,
  talkback: args.talkback === 'true',
  sensors: args.sensors ?? null,
};

const result = bad ? { ok: false, cases: [], errors: [] } : { ok: false, viewers: [], errors: [] };
let printed = false;
function emit() {
  if (printed) return;
  printed = true;
  // stdout is a pipe or a file here, both written synchronously on Linux, so
  // the line is out before any process.exit below.
  process.stdout.write(JSON.stringify(result) + '\n');
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let browser = null;
let page = null;

// The in-page timeouts (POST, DELETE, ICE gathering, getUserMedia) add up to
// under 30 s beyond --seconds, so this only fires when something below them
// wedges: the browser launch, the page, or Chromium itself.
const deadline = setTimeout(async () => {
  result.errors.push(`global timeout: no result within ${seconds + 30} s`);
  result.ok = false;
  if (page && !bad) {
    // The viewers' state lives in the page; take what they have if it answers.
    const snap = await Promise.race([page.evaluate(() => window.__whep?.snapshot()).catch(() => null), sleep(3000)]);
    if (Array.isArray(snap)) result.viewers = snap;
  }
  emit();
  // Playwright kills the browsers it launched when node exits; a browser
  // wedged enough to get here may not answer browser.close().
  process.exit(0);
}, (seconds + 30) * 1000);

try {
  browser = await launch([
      // The talkback microphone: Chromium's generated beep, granted without a prompt.
      ...FAKE_MEDIA,
      // No --disable-features here (e.g. to offer real host addresses instead
      // of .local mDNS names): Chromium keeps only the last one, and this one
      // would drop playwright's own list. As a browser's offer, then.
      // getUserMedia needs a secure context; http://127.0.0.1 is one, an
      // agent on another address would not be.
      `--unsafely-treat-insecure-origin-as-secure=${origin}`,
  ]);
  page = await browser.newPage();
  page.on('pageerror', (e) => result.errors.push(`page: ${e.message}`));
  page.on('console', (m) => {
    // Failed requests are logged as console errors too; they are reported
    // where they happen (a viewer's or a case's status) already.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      result.errors.push(`console.error: ${m.text().slice(0, 300)}`);
    }
  });
  if (args.page && args.page !== 'true') {
    await page.goto(origin + args.page, { waitUntil: 'load' });
  } else {
    // Same origin as the WHEP endpoint, so the Location header is readable
    // without CORS; the document itself never reaches the agent.
    const pageUrl = `${origin}/__edge_agent_test_whep.html`;
    await page.route(pageUrl, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: '<!doctype html><html><body style="margin:0;background:#000"></body></html>',
      }),
    );
    await page.goto(pageUrl);
  }
  await page.evaluate(pageDriver);
  if (bad) {
    result.cases = await page.evaluate((p) => window.__whep.bad(p), params);
    result.ok = result.cases.every((c) => typeof c.status === 'number');
  } else {
    result.viewers = await page.evaluate((p) => window.__whep.run(p), params);
    result.ok =
      result.viewers.length === viewers && result.viewers.every((v) => v.status === 201 && v.framesDecoded >= 1);
  }
} catch (e) {
  result.ok = false;
  result.errors.push(String(e && e.message ? e.message : e));
} finally {
  clearTimeout(deadline);
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
}
emit();
process.exit(0);

// Everything below runs in the page (playwright serialises the function, so
// it must not refer to anything outside itself). It installs window.__whep:
// run(params) → the viewers' reports, bad(params) → the malformed-request
// cases, snapshot() → the viewers' reports so far (for the global deadline).
function pageDriver() {
  const WRAP = 2 ** 32;
  const POST_TIMEOUT_MS = 10000;
  const DELETE_TIMEOUT_MS = 5000;
  // Five cases in a row, each well inside the global deadline.
  const BAD_TIMEOUT_MS = 4000;
  const GATHER_MS = 2000;
  const MAX_ERRORS = 20;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const round = (x) => (x == null ? null : Math.round(x * 10) / 10);
  const states = [];

  function summary(xs) {
    if (!xs.length) return { count: 0, median: null, p95: null, max: null, min: null };
    const s = [...xs].sort((a, b) => a - b);
    const n = s.length;
    const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    // Nearest rank: a value that was actually observed.
    const p95 = s[Math.max(0, Math.ceil(0.95 * n) - 1)];
    return { count: n, median: round(median), p95: round(p95), max: round(s[n - 1]), min: round(s[0]) };
  }

  // The agent stamps RTP with the capture wall clock mod 2^32 (90 kHz); of
  // the capture times that timestamp can stand for (one every ~13.25 h),
  // the one nearest to now is the right one for any sane latency.
  function captureMs(rtpTimestamp, nowMs) {
    const k = Math.round((nowMs * 90 - rtpTimestamp) / WRAP);
    return (rtpTimestamp + k * WRAP) / 90;
  }

  function gathered(pc, ms) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve(true);
      const timer = setTimeout(() => resolve(false), ms);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
  }

  async function fetchWithTimeout(url, init, ms) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), ms);
    try {
      return await fetch(url, { ...init, signal: ctl.signal });
    } finally {
      clearTimeout(timer);
    }
  }

  function whepUrl(p, stream, sensors) {
    // Commas left readable: the list separator is the agent's, not ours.
    const q = sensors ? `?sensors=${encodeURIComponent(sensors).replace(/%2C/gi, ',')}` : '';
    return `${p.origin}/whep/${encodeURIComponent(stream)}${q}`;
  }

  function newState(index) {
    return {
      index,
      t0: performance.now(),
      tPost: null,
      tAnswer: null,
      pc: null,
      mic: null,
      closed: false,
      status: null,
      location: null,
      etag: null,
      connectMs: null,
      firstFrameMs: null,
      connection: [],
      video: {},
      audio: {},
      talkback: null,
      ice: null,
      samples: [],
      lat: [],
      recvLat: [],
      rtpMissing: 0,
      deleteStatus: null,
      errors: [],
      data: {
        open_ms: null,
        hello: null,
        text: {},
        pings: new Map(),
        rtts: [],
        offsets: [],
        keyframeAt: null,
        keyframe: null,
        chunks: 0,
        frames: 0,
        points: 0,
        first: null,
        ages: [],
        partial: new Map(),
        perSensor: {},
        lastSeq: {},
        outOfOrder: 0,
        other: 0,
        closed: false,
      },
    };
  }

  function error(st, text) {
    if (st.errors.length < MAX_ERRORS) st.errors.push(text);
    else if (st.errors.length === MAX_ERRORS) st.errors.push('(further errors not kept)');
  }

  function report(st) {
    const d = st.data;
    return {
      status: st.status,
      location: st.location,
      etag: st.etag,
      // From the POST to connectionState "connected".
      connect_ms: round(st.connectMs),
      // From the viewer's start (before its offer) to the first frame shown.
      first_frame_ms: round(st.firstFrameMs),
      framesDecoded: st.video.framesDecoded ?? 0,
      width: st.video.frameWidth ?? 0,
      height: st.video.frameHeight ?? 0,
      codec: st.video.codec ?? null,
      // Chromium tells only a page that is capturing: null without --talkback.
      decoder: st.video.decoderImplementation ?? null,
      framesDropped: st.video.framesDropped ?? null,
      packetsLost: st.video.packetsLost ?? null,
      keyFramesDecoded: st.video.keyFramesDecoded ?? null,
      pliCount: st.video.pliCount ?? null,
      freezeCount: st.video.freezeCount ?? null,
      audio: {
        packetsReceived: st.audio.packetsReceived ?? 0,
        concealed: st.audio.concealedSamples ?? null,
        totalSamples: st.audio.totalSamplesReceived ?? null,
        codec: st.audio.codec ?? null,
      },
      talkback: st.talkback,
      data: {
        // From the viewer's start.
        open_ms: round(d.open_ms),
        hello: d.hello,
        text: d.text,
        rtt_ms: (({ median, max, count }) => ({ median, max, count }))(summary(d.rtts)),
        // The last one or two may still have been in flight at the end.
        pings_unanswered: d.pings.size,
        // The agent's wall clock minus ours at the pong (half a round trip
        // assumed each way): about 0 on one machine.
        agent_clock_offset_ms: summary(d.offsets).median,
        keyframe: d.keyframe,
        chunks: d.chunks,
        frames: d.frames,
        points: d.points,
        first: d.first,
        sensor_frames: d.perSensor,
        // Wall clock at a frame's last chunk minus its capture time.
        age_ms: summary(d.ages),
        incomplete: d.partial.size,
        out_of_order: d.outOfOrder,
        binary_other: d.other,
      },
      // Per frame shown: display (or last packet received) minus capture.
      latency_ms: summary(st.lat),
      receive_latency_ms: summary(st.recvLat),
      rtp_timestamp_missing: st.rtpMissing,
      connection: st.connection,
      ice: st.ice,
      // [seconds since the answer, framesDecoded, audio packetsReceived]
      samples: st.samples,
      delete_status: st.deleteStatus,
      errors: st.errors,
    };
  }

  async function poll(st) {
    const stats = await st.pc.getStats();
    let video = null;
    let audio = null;
    let out = null;
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
      else if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s;
      else if (s.type === 'outbound-rtp' && s.kind === 'audio') out = s;
      else if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    const codec = (s) => (s && s.codecId ? stats.get(s.codecId)?.mimeType ?? null : null);
    if (video) {
      const keep = ['framesDecoded', 'frameWidth', 'frameHeight', 'framesDropped', 'packetsLost',
        'decoderImplementation', 'keyFramesDecoded', 'pliCount', 'freezeCount'];
      st.video = Object.fromEntries(keep.map((k) => [k, video[k] ?? null]));
      st.video.codec = codec(video);
    }
    if (audio) {
      st.audio = {
        packetsReceived: audio.packetsReceived ?? 0,
        concealedSamples: audio.concealedSamples ?? null,
        totalSamplesReceived: audio.totalSamplesReceived ?? null,
        codec: codec(audio),
      };
    }
    if (out && st.talkback) st.talkback = { packetsSent: out.packetsSent ?? 0, codec: codec(out) };
    if (pair) {
      const c = (id) => {
        const x = stats.get(id);
        return x ? `${x.candidateType} ${x.address}:${x.port} ${x.protocol}` : null;
      };
      st.ice = { local: c(pair.localCandidateId), remote: c(pair.remoteCandidateId), rtt_ms: pair.currentRoundTripTime != null ? round(pair.currentRoundTripTime * 1000) : null };
    }
    const t = st.tAnswer != null ? (performance.now() - st.tAnswer) / 1000 : 0;
    st.samples.push([round(t), st.video.framesDecoded ?? 0, st.audio.packetsReceived ?? 0]);
  }

  function onText(st, text) {
    const d = st.data;
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      error(st, `data channel: not JSON: ${text.slice(0, 100)}`);
      return;
    }
    const type = typeof m.type === 'string' ? m.type : '(no type)';
    d.text[type] = (d.text[type] ?? 0) + 1;
    const now = Date.now();
    if (type === 'hello') {
      if (d.hello) error(st, 'data channel: a second hello');
      else d.hello = m;
    } else if (type === 'pong') {
      const sent = d.pings.get(m.id);
      if (sent === undefined) return error(st, `data channel: pong for unknown ping id ${m.id}`);
      d.pings.delete(m.id);
      if (m.t !== sent) error(st, `data channel: pong ${m.id} echoed t=${m.t}, sent ${sent}`);
      const rtt = now - sent;
      d.rtts.push(rtt);
      if (typeof m.agent_ms === 'number') d.offsets.push(m.agent_ms - (sent + rtt / 2));
    } else if (type === 'keyframe') {
      d.keyframe = { ...m, reply_ms: d.keyframeAt != null ? now - d.keyframeAt : null };
    }
  }

  function onBinary(st, buf) {
    const d = st.data;
    if (!(buf instanceof ArrayBuffer)) return error(st, `data channel: binary message as ${typeof buf}`);
    if (buf.byteLength < 24) return error(st, `data channel: ${buf.byteLength}-byte binary message, under the 24-byte header`);
    const dv = new DataView(buf);
    if (dv.getUint8(0) !== 1) {
      d.other++;
      return;
    }
    const sensor = dv.getUint8(1);
    const chunk = dv.getUint16(2, true);
    const count = dv.getUint16(4, true);
    const flags = dv.getUint16(6, true);
    const seq = dv.getUint32(8, true);
    const n = dv.getUint32(12, true);
    const capture = dv.getFloat64(16, true);
    if (buf.byteLength !== 24 + n * 8) {
      return error(st, `points chunk: ${buf.byteLength} bytes for ${n} points (want ${24 + n * 8})`);
    }
    if (count === 0 || chunk >= count) return error(st, `points chunk: index ${chunk} of ${count}`);
    d.chunks++;
    d.points += n;
    // A coordinate of 300 m or more (or a wrapped i16) means a wrong scale or
    // byte order; all zeros means points that were never filled in.
    let sane = 0;
    let nonzero = 0;
    for (let i = 0, o = 24; i < n; i++, o += 8) {
      const x = dv.getInt16(o, true);
      const y = dv.getInt16(o + 2, true);
      const z = dv.getInt16(o + 4, true);
      if (Math.abs(x) < 30000 && Math.abs(y) < 30000 && Math.abs(z) < 30000) sane++;
      if (x || y || z) nonzero++;
    }
    const key = `${sensor}:${seq}`;
    let f = d.partial.get(key);
    if (!f) {
      f = { count, flags, capture, got: new Set(), points: 0, sane: 0, nonzero: 0 };
      d.partial.set(key, f);
    }
    if (f.got.has(chunk)) return error(st, `points chunk: sensor ${sensor} frame ${seq} chunk ${chunk} twice`);
    if (f.count !== count || f.capture !== capture) {
      error(st, `points chunk: sensor ${sensor} frame ${seq} chunks disagree on count or capture time`);
    }
    f.got.add(chunk);
    f.points += n;
    f.sane += sane;
    f.nonzero += nonzero;
    if (f.got.size < f.count) return;
    d.partial.delete(key);
    d.frames++;
    d.perSensor[sensor] = (d.perSensor[sensor] ?? 0) + 1;
    if (d.lastSeq[sensor] !== undefined && seq <= d.lastSeq[sensor]) d.outOfOrder++;
    d.lastSeq[sensor] = seq;
    d.ages.push(Date.now() - capture);
    if (!d.first) {
      d.first = {
        sensor,
        sequence: seq,
        points: f.points,
        chunks: count,
        flags,
        capture_ms: capture,
        sane: f.points ? f.sane / f.points : null,
        nonzero: f.points ? f.nonzero / f.points : null,
      };
    }
  }

  function openDataChannel(st) {
    const d = st.data;
    const dc = st.pc.createDataChannel('edge-agent', { ordered: true });
    // Before any message can arrive: Blobs would need an await per message.
    dc.binaryType = 'arraybuffer';
    let id = 0;
    dc.onopen = () => {
      d.open_ms = performance.now() - st.t0;
      st.pingTimer = setInterval(() => {
        if (dc.readyState !== 'open') return;
        const t = Date.now();
        d.pings.set(++id, t);
        dc.send(JSON.stringify({ type: 'ping', id, t }));
      }, 250);
      st.keyframeTimer = setTimeout(() => {
        if (dc.readyState !== 'open') return;
        d.keyframeAt = Date.now();
        dc.send(JSON.stringify({ type: 'keyframe' }));
      }, 1000);
    };
    dc.onmessage = (e) => (typeof e.data === 'string' ? onText(st, e.data) : onBinary(st, e.data));
    dc.onerror = (e) => {
      if (!st.closed) error(st, `data channel error: ${e.error?.message ?? e.type}`);
    };
    dc.onclose = () => {
      d.closed = true;
      if (!st.closed) error(st, 'data channel closed by the agent');
    };
    return dc;
  }

  function attachVideo(st, track) {
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.style.width = '320px';
    // From the track, not e.streams: an answer without a=msid gives no stream.
    video.srcObject = new MediaStream([track]);
    document.body.appendChild(video);
    video.play().catch((e) => error(st, `video.play: ${e.message}`));
    if (!('requestVideoFrameCallback' in video)) return error(st, 'no requestVideoFrameCallback');
    const onFrame = (_now, md) => {
      if (st.closed) return;
      const perf = performance.now();
      const wall = Date.now();
      // First frame handed to the compositor, i.e. decoded and shown.
      if (st.firstFrameMs == null) st.firstFrameMs = perf - st.t0;
      if (md.rtpTimestamp === undefined) {
        st.rtpMissing++;
      } else {
        // Page times to epoch ms anchored at this moment rather than at
        // performance.timeOrigin: the monotonic clock and the wall clock
        // drift apart over a page's life, and Date.now() is what the capture
        // time is compared to.
        const epoch = (t) => wall - (perf - t);
        const capture = captureMs(md.rtpTimestamp, wall);
        st.lat.push(epoch(md.presentationTime ?? md.expectedDisplayTime) - capture);
        if (md.receiveTime !== undefined) st.recvLat.push(epoch(md.receiveTime) - capture);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    st.videoEl = video;
  }

  function attachAudio(st, track) {
    // Chromium decodes received audio only while something plays it: without
    // an element, totalSamplesReceived would stay 0.
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.srcObject = new MediaStream([track]);
    document.body.appendChild(audio);
    audio.play().catch((e) => error(st, `audio.play: ${e.message}`));
    st.audioEl = audio;
  }

  async function viewer(p, st) {
    const pc = new RTCPeerConnection({});
    st.pc = pc;
    pc.onconnectionstatechange = () => {
      st.connection.push(pc.connectionState);
      if (pc.connectionState === 'connected' && st.connectMs == null && st.tPost != null) {
        st.connectMs = performance.now() - st.tPost;
      }
    };
    pc.ontrack = (e) => (e.track.kind === 'video' ? attachVideo(st, e.track) : attachAudio(st, e.track));
    pc.addTransceiver('video', { direction: 'recvonly' });
    let micTrack = null;
    if (p.talkback) {
      try {
        st.mic = await Promise.race([
          navigator.mediaDevices.getUserMedia({ audio: true }),
          sleep(5000).then(() => { throw new Error('no answer in 5 s'); }),
        ]);
        micTrack = st.mic.getAudioTracks()[0];
        st.talkback = { packetsSent: 0, codec: null };
      } catch (e) {
        // Video is still worth watching; talkback stays null, which the
        // caller sees.
        error(st, `getUserMedia: ${e.message}`);
      }
    }
    if (micTrack) pc.addTransceiver(micTrack, { direction: 'sendrecv' });
    else pc.addTransceiver('audio', { direction: 'recvonly' });
    openDataChannel(st);

    await pc.setLocalDescription(await pc.createOffer());
    if (!(await gathered(pc, GATHER_MS))) error(st, `ICE gathering not complete in ${GATHER_MS} ms; offered what there was`);
    st.tPost = performance.now();
    let res;
    let body;
    try {
      res = await fetchWithTimeout(
        whepUrl(p, p.stream, p.sensors),
        { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp },
        POST_TIMEOUT_MS,
      );
      body = await res.text();
    } catch (e) {
      error(st, `POST: ${e.name === 'AbortError' ? `no answer in ${POST_TIMEOUT_MS} ms` : e.message}`);
      return;
    }
    st.status = res.status;
    st.location = res.headers.get('Location');
    st.etag = res.headers.get('ETag');
    if (res.status !== 201) return error(st, `POST ${res.status}: ${body.slice(0, 300)}`);
    if (!st.location) error(st, 'POST 201 without a Location header');
    const type = res.headers.get('Content-Type') ?? '';
    if (!type.startsWith('application/sdp')) error(st, `answer Content-Type ${type || '(none)'}`);
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (e) {
      error(st, `setRemoteDescription: ${e.message}`);
      return;
    }
    st.tAnswer = performance.now();
    while (performance.now() - st.tAnswer < p.seconds * 1000) {
      await sleep(1000);
      await poll(st).catch((e) => error(st, `getStats: ${e.message}`));
    }
  }

  async function finish(p, st) {
    if (st.tAnswer != null) {
      await poll(st).catch((e) => error(st, `getStats: ${e.message}`));
      // Absences say more when named than as zeros further down.
      if (!st.videoEl) error(st, 'no video track in the answer');
      if (st.data.open_ms == null) error(st, 'data channel never opened');
    }
    // From here on a closing channel or track is ours, not the agent's doing.
    st.closed = true;
    clearInterval(st.pingTimer);
    clearTimeout(st.keyframeTimer);
    if (st.location) {
      try {
        const res = await fetchWithTimeout(new URL(st.location, p.origin), { method: 'DELETE' }, DELETE_TIMEOUT_MS);
        st.deleteStatus = res.status;
      } catch (e) {
        error(st, `DELETE: ${e.name === 'AbortError' ? `no answer in ${DELETE_TIMEOUT_MS} ms` : e.message}`);
      }
    }
    st.pc?.close();
    st.mic?.getTracks().forEach((t) => t.stop());
    st.videoEl?.remove();
    st.audioEl?.remove();
  }

  async function run(p) {
    for (let i = 0; i < p.viewers; i++) states.push(newState(i));
    await Promise.all(
      states.map(async (st) => {
        try {
          await viewer(p, st);
        } catch (e) {
          error(st, `viewer: ${e.message}`);
        }
        await finish(p, st);
      }),
    );
    return states.map(report);
  }

  // Only `codec`'s payload types (and their rtx) left in the video m-line.
  function onlyVideoCodec(sdp, codec) {
    const sections = sdp.split(/\r\n(?=m=)/);
    return sections
      .map((sec) => {
        if (!sec.startsWith('m=video')) return sec;
        const lines = sec.split('\r\n');
        const rtpmap = new Map();
        const apt = new Map();
        for (const l of lines) {
          let m = /^a=rtpmap:(\d+) ([^/]+)/.exec(l);
          if (m) rtpmap.set(m[1], m[2]);
          m = /^a=fmtp:(\d+) .*\bapt=(\d+)/.exec(l);
          if (m) apt.set(m[1], m[2]);
        }
        const keep = new Set([...rtpmap].filter(([, name]) => name.toUpperCase() === codec).map(([pt]) => pt));
        for (const [pt, of] of apt) if (keep.has(of)) keep.add(pt);
        return lines
          .filter((l) => {
            const m = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+) /.exec(l);
            return !m || keep.has(m[1]);
          })
          .map((l) => {
            if (!l.startsWith('m=video')) return l;
            const f = l.split(' ');
            return [...f.slice(0, 3), ...f.slice(3).filter((pt) => keep.has(pt))].join(' ');
          })
          .join('\r\n');
      })
      .join('\r\n');
  }

  async function offer(kinds) {
    const pc = new RTCPeerConnection({});
    for (const k of kinds) pc.addTransceiver(k, { direction: 'recvonly' });
    if (kinds.includes('video')) pc.createDataChannel('edge-agent', { ordered: true });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, GATHER_MS);
    const sdp = pc.localDescription.sdp;
    pc.close();
    return sdp;
  }

  async function bad(p) {
    const full = await offer(['video', 'audio']);
    const audioOnly = await offer(['audio']);
    const cases = [
      { name: 'not-sdp', expected: 400, url: whepUrl(p, p.stream), type: 'application/sdp', body: 'this is not sdp' },
      { name: 'no-video', expected: 400, url: whepUrl(p, p.stream), type: 'application/sdp', body: audioOnly },
      { name: 'unknown-stream', expected: 404, url: whepUrl(p, 'no-such-stream'), type: 'application/sdp', body: full },
      { name: 'wrong-content-type', expected: 415, url: whepUrl(p, p.stream), type: 'text/plain', body: full },
      { name: 'vp8-only', expected: 400, url: whepUrl(p, p.stream), type: 'application/sdp', body: onlyVideoCodec(full, 'VP8') },
    ];
    const out = [];
    for (const c of cases) {
      const r = { name: c.name, expected: c.expected, status: null, content_type: null, body: null };
      try {
        const res = await fetchWithTimeout(c.url, { method: 'POST', headers: { 'Content-Type': c.type }, body: c.body }, BAD_TIMEOUT_MS);
        r.status = res.status;
        r.content_type = res.headers.get('Content-Type');
        r.body = (await res.text()).slice(0, 500);
        // A request that should have failed opened a session: close it
        // rather than leave the agent sending to nobody.
        const loc = res.headers.get('Location');
        if (res.status === 201 && loc) {
          r.location = loc;
          r.delete_status = (await fetchWithTimeout(new URL(loc, p.origin), { method: 'DELETE' }, BAD_TIMEOUT_MS).catch(() => null))?.status ?? null;
        }
      } catch (e) {
        r.error = e.name === 'AbortError' ? `no answer in ${BAD_TIMEOUT_MS} ms` : e.message;
      }
      out.push(r);
    }
    return out;
  }

  window.__whep = { run, bad, snapshot: () => states.map(report) };
}
