// Drives the agent's own web UI like a user: opens `/`, presses the
// WebRTC "Watch" button, lets it play, presses "Talk" (Chromium's fake
// microphone), and prints one JSON line of what the page showed:
//
//   node ui-webrtc.mjs --origin http://127.0.0.1:PORT [--seconds 5] [--screenshot FILE.png]
//
// Output: {"ok":bool,"watch":{"frames":n,"width":..,"height":..,"state":"connected",
//          "latency":"latency 40 ms · RTT 1 ms"},"talk":{"state":..,"frames":n},"errors":[..]}
import { FAKE_MEDIA, launch, parseArgs } from './browser.mjs';

const args = parseArgs();
if (!args.origin) {
  console.error('usage: node ui-webrtc.mjs --origin URL [--seconds N] [--screenshot F]');
  process.exit(2);
}
const seconds = Number(args.seconds ?? 5);
const result = { ok: false, watch: null, talk: null, errors: [] };
// Never hang: whatever happened is printed.
const deadline = setTimeout(() => {
  result.errors.push(`timed out after ${seconds * 2 + 40} s`);
  console.log(JSON.stringify(result));
  process.exit(0);
}, (seconds * 2 + 40) * 1000);

const browser = await launch(FAKE_MEDIA);
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('pageerror', (e) => result.errors.push(`page: ${e.message}`));
  await page.goto(`${args.origin}/`);
  await page.waitForSelector('#rtc-start:visible', { timeout: 20000 });
  const look = () => page.evaluate(() => {
    const v = document.getElementById('rtc-video');
    return {
      frames: v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
      width: v.videoWidth,
      height: v.videoHeight,
      hidden: v.hidden,
      state: document.getElementById('rtc-state').textContent,
      latency: document.getElementById('rtc-latency').textContent,
    };
  });
  await page.click('#rtc-start');
  await page.waitForTimeout(seconds * 1000);
  result.watch = await look();
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  await page.click('#rtc-talk');
  await page.waitForTimeout(Math.max(3, seconds / 2) * 1000);
  result.talk = { ...(await look()), pressed: await page.getAttribute('#rtc-talk', 'aria-pressed') };
  await page.click('#rtc-start'); // Stop: the page hangs up (DELETE).
  await page.waitForTimeout(500);
  result.ok = result.watch.frames > 0 && result.talk.frames > 0;
} catch (e) {
  result.errors.push(String(e?.message ?? e));
} finally {
  clearTimeout(deadline);
  await browser.close().catch(() => {});
  console.log(JSON.stringify(result));
}
