// What every browser test shares: Debian's Chromium launched headless by
// playwright-core in a throwaway profile, a log of every request the pages
// make (so a test can show that nothing left for another host), and
// screenshots saved as test artifacts.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
  '--ignore-certificate-errors',
];

// Where screenshots go: $TURNPIKE_ARTIFACTS, else target/artifacts (CI
// keeps the target directory of a failed run).
export const ARTIFACTS =
  process.env.TURNPIKE_ARTIFACTS || new URL('../../target/artifacts/', import.meta.url).pathname;

/// A browser in a fresh profile. `requests` lists every URL any page of it
/// asked for, in order; `close()` ends the browser and removes the profile.
/// `strictTls` keeps Chromium's certificate checks, as a user's browser
/// has them: the test certificate is then refused, as an intercepting
/// proxy's would be.
export async function launch({ viewport = { width: 1280, height: 800 }, strictTls = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'turnpike-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: strictTls ? CHROMIUM_ARGS.filter((a) => a !== '--ignore-certificate-errors') : CHROMIUM_ARGS,
    ignoreHTTPSErrors: !strictTls,
    viewport,
    timeout: 20_000,
  });
  const requests = [];
  context.on('request', (r) => requests.push(r.url()));
  const close = async () => {
    await Promise.race([context.close(), new Promise((r) => setTimeout(r, 5_000))]);
    rmSync(dir, { recursive: true, force: true });
  };
  return { context, requests, close };
}

/// The requests of `requests` that went anywhere but `origin`'s host
/// (data: and blob: URLs stay in the page and are allowed).
export function foreignRequests(requests, origin) {
  const host = new URL(origin).hostname;
  return requests.filter((u) => {
    const url = new URL(u);
    if (url.protocol === 'data:' || url.protocol === 'blob:') return false;
    return url.hostname !== host;
  });
}

/// Saves a full-page screenshot as ARTIFACTS/screenshots/NAME.png and
/// returns its path.
export async function screenshot(page, name) {
  const dir = join(ARTIFACTS, 'screenshots');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
