// What the browser drivers here (play.mjs, whep.mjs, ui-webrtc.mjs) share:
// their `--name value` arguments, and Debian's Chromium launched headless
// through playwright-core (never a downloaded browser).
import { chromium } from 'playwright-core';

/** `--name value` pairs as an object; a bare `--flag` is 'true'. */
export function parseArgs(argv = process.argv.slice(2)) {
  return Object.fromEntries(
    argv.reduce((acc, a, i, all) => {
      if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
      return acc;
    }, []),
  );
}

/** Chromium's flags for tests, as the project's brief gives them. */
const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // playwright gives every launch a fresh temporary profile itself.
  '--autoplay-policy=no-user-gesture-required',
];

/** Chromium's generated camera and microphone, granted without a prompt. */
export const FAKE_MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/** Launch headless Chromium (`$CHROMIUM` or /usr/bin/chromium) with `extra` flags. */
export function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [...FLAGS, ...extra],
  });
}
