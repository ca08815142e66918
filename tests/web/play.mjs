// Plays a stream in real Chromium (Debian's /usr/bin/chromium, headless)
// with hls.js or dash.js from npm, and prints one JSON line of what happened:
//
//   node play.mjs --player hls|dash --origin http://127.0.0.1:PORT --url /hls/test/live.m3u8
//                 [--seconds 20] [--screenshot FILE.png] [--page /]
//
// The page is opened on the agent's own origin (so the player's requests are
// same-origin, as they are from the web UI); the player script is injected
// from node_modules. With --page, that page of the agent is loaded instead of
// a bare player and only observed (for the web UI screenshot).
//
// Output: {"ok":bool,"player":..,"played":seconds currentTime advanced,
//          "width":..,"height":..,"fatal":[..],"errors":[..],
//          "latency":seconds|null,"samples":[[wall_s,currentTime],..]}
import { launch, parseArgs } from './browser.mjs';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs();
const origin = args.origin;
const seconds = Number(args.seconds ?? 20);
const player = args.player ?? 'hls';
if (!origin || (!args.url && !args.page)) {
  console.error('usage: node play.mjs --player hls|dash --origin URL --url PATH [--seconds N] [--screenshot F]');
  process.exit(2);
}

const scripts = {
  hls: join(here, 'node_modules/hls.js/dist/hls.min.js'),
  dash: join(here, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js'),
};

const browser = await launch();
const result = { ok: false, player, played: 0, width: 0, height: 0, fatal: [], errors: [], latency: null, samples: [] };
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => result.errors.push(`page: ${e.message}`));
  // Failed media requests say most about a stall.
  result.http = [];
  page.on('response', (r) => {
    if (r.status() >= 400) result.http.push(`${r.status()} ${r.url().replace(origin, '')}`);
  });
  // Every media request with its start and end times (seconds since launch)
  // and status, kept in the result: when a watch falls short, the test
  // prints the result, and this is what shows where a stall began.
  const t00 = Date.now();
  const at = () => ((Date.now() - t00) / 1000).toFixed(2);
  result.requests = [];
  page.on('request', (r) => result.requests.push(`${at()} > ${r.url().replace(origin, '')}`));
  page.on('requestfinished', async (r) => {
    const res = await r.response().catch(() => null);
    result.requests.push(`${at()} < ${res ? res.status() : '?'} ${r.url().replace(origin, '')}`);
  });
  // The last live playlists, for the same reason.
  result.playlists = [];
  page.on('response', async (r) => {
    if (!r.url().includes('.m3u8') || r.status() !== 200) return;
    const body = await r.text().catch(() => '');
    result.playlists.push(`${at()} ${r.url().replace(origin, '')}\n${body}`);
    if (result.playlists.length > 3) result.playlists.shift();
  });
  page.on('requestfailed', (r) => result.requests.push(`${at()} ! ${r.failure()?.errorText} ${r.url().replace(origin, '')}`));
  if (args.trace) {
    page.on('request', (r) => result.http.push(`GET ${r.url().replace(origin, '')}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') result.http.push(`console.${m.type()}: ${m.text().slice(0, 300)}`);
    });
  }
  if (args.page) {
    await page.goto(origin + args.page, { waitUntil: 'load' });
  } else {
    // Same origin as the media, and a real http URL for the document (players
    // resolve URLs against it): the bare page is answered by the browser
    // itself, never reaching the agent.
    const pageUrl = `${origin}/__edge_agent_test_player.html`;
    await page.route(pageUrl, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: '<!doctype html><html><body style="margin:0;background:#000"><video id="v" muted playsinline style="width:100%"></video></body></html>',
      }),
    );
    await page.goto(pageUrl);
    await page.addScriptTag({ content: readFileSync(scripts[player], 'utf8') });
    await page.evaluate(({ player, url }) => {
      const video = document.getElementById('v');
      window.__fatal = [];
      window.__errors = [];
      if (player === 'hls') {
        // As the web UI: low-latency mode, catching up after a stall.
        const hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 });
        window.__hls = hls;
        hls.on(Hls.Events.ERROR, (_e, d) => {
          const text = `${d.type}/${d.details}${d.response ? ' ' + d.response.code : ''}`;
          (d.fatal ? window.__fatal : window.__errors).push(text);
        });
        hls.loadSource(url);
        hls.attachMedia(video);
      } else {
        const p = dashjs.MediaPlayer().create();
        window.__dash = p;
        // The MPD's suggestedPresentationDelay decides how far behind live to play.
        p.on(dashjs.MediaPlayer.events.ERROR, (e) => window.__fatal.push(JSON.stringify(e.error ?? e)));
        // dash.js starts playback itself (autoplay = true): a play() of our
        // own would fire the element's "play" before dash.js listens, and it
        // would never start refreshing a live MPD.
        p.initialize(video, url, true);
        return;
      }
      video.play().catch(() => {});
    }, { player, url: args.url });
  }
  // Wait for playback to begin (up to 20 s), then watch for `seconds`.
  const video = page.locator('video').first();
  await video.waitFor({ timeout: 20000 });
  const started = Date.now();
  let first = null;
  while (Date.now() - started < 20000) {
    const t = await video.evaluate((v) => v.currentTime);
    if (t > 0) { first = t; break; }
    await page.waitForTimeout(100);
  }
  if (first === null) throw new Error('playback did not start within 20 s');
  const t0 = Date.now();
  while (Date.now() - t0 < seconds * 1000) {
    await page.waitForTimeout(1000);
    const [t, buffered] = await video.evaluate((v) => {
      const b = [];
      for (let i = 0; i < v.buffered.length; i++) b.push(`${v.buffered.start(i).toFixed(3)}-${v.buffered.end(i).toFixed(3)}`);
      return [v.currentTime, b.join(' ')];
    });
    result.samples.push([(Date.now() - t0) / 1000, t, buffered]);
  }
  const last = result.samples.at(-1)?.[1] ?? first;
  result.played = last - first;
  Object.assign(result, await video.evaluate((v) => ({ width: v.videoWidth, height: v.videoHeight })));
  // Live latency: the wall clock minus the program date time at the playing
  // position (hls.js), or dash.js's own figure.
  result.player_latency = await page.evaluate(() => (window.__hls ? window.__hls.latency : null));
  result.latency = await page.evaluate(() => {
    if (window.__hls && window.__hls.playingDate) return (Date.now() - window.__hls.playingDate.getTime()) / 1000;
    if (window.__dash && window.__dash.isDynamic && window.__dash.isDynamic()) return window.__dash.getCurrentLiveLatency();
    return null;
  });
  const errs = await page.evaluate(() => ({ fatal: window.__fatal ?? [], errors: window.__errors ?? [] }));
  result.fatal.push(...errs.fatal);
  result.errors.push(...errs.errors);
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  result.ok = result.fatal.length === 0;
  // The tail is enough to see a stall, and keeps a printed result readable.
  result.requests = result.requests.slice(-120);
} catch (e) {
  result.fatal.push(String(e && e.message ? e.message : e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
