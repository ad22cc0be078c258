#!/usr/bin/env node
// Drives the self-test page (issue 20) in Debian's Chromium.
//
// Usage: node selftest_test.mjs PAGE_URL [SCREENSHOT_NAME]
//
// Loads PAGE_URL (http://HOST:PORT/selftest), waits for the run to end
// (body[data-state="done"]), clicks "Copy report", and prints one JSON line:
//   {"ok":bool,"status":..,"verdicts":{"udp":{"verdict":..,"text":..,"rttMs":..},..},
//    "candidates":[{"transport":..,"type":..,"cells":[..]}],"report":{..},
//    "foreign":[urls to other hosts],"requests":[..],"screenshots":[..],"error":null}
// With SCREENSHOT_NAME it saves NAME.png (full page, 1280 wide),
// NAME-1280x800.png (the first screen) and NAME-390.png (390 px wide) under
// target/artifacts/screenshots. Exit code 0 when the page ran
// to the end (whatever its verdicts: the Rust test judges them).
//
// Two ways to spoil the run, as a user's network would:
//   SELFTEST_STRICT_TLS=1        Chromium checks certificates, so the test
//                                certificate is refused as an intercepting
//                                proxy's would be;
//   SELFTEST_WRONG_CREDENTIAL=1  the credentials the page gets are altered
//                                on the way (the server then answers 401).

import { join } from 'node:path';
import { ARTIFACTS, launch, foreignRequests, screenshot } from './chromium.mjs';

const RUN_TIMEOUT_MS = 90_000;
const out = { ok: false, status: null, verdicts: {}, candidates: [], report: null,
  foreign: [], requests: [], screenshots: [], console: [], error: null };

const hardKill = setTimeout(() => {
  out.error = 'hard timeout';
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(1);
}, RUN_TIMEOUT_MS + 30_000);

const [url, shot] = process.argv.slice(2);
let browser = null;
try {
  if (!url) throw new Error('usage: node selftest_test.mjs PAGE_URL [SCREENSHOT_NAME]');
  browser = await launch({ strictTls: process.env.SELFTEST_STRICT_TLS === '1' });
  const page = browser.context.pages()[0] || (await browser.context.newPage());
  if (process.env.SELFTEST_WRONG_CREDENTIAL === '1') {
    await page.route('**/selftest/credentials', async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      if (body.credential) body.credential = `${body.credential}x`;
      await route.fulfill({ response, json: body });
    });
  }
  page.on('console', (m) => { if (out.console.length < 50) out.console.push(m.text()); });
  page.on('pageerror', (e) => { if (out.console.length < 50) out.console.push(`pageerror: ${e.message}`); });
  await page.goto(url);
  await page.waitForSelector('body[data-state="done"]', { timeout: RUN_TIMEOUT_MS });
  out.status = await page.textContent('#status');
  // Keyboard only: Tab reaches "Run" first, then "Copy report", Enter copies.
  await page.keyboard.press('Tab');
  out.firstFocus = await page.evaluate(() => document.activeElement?.textContent ?? null);
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('copied').textContent !== '');
  out.copied = await page.textContent('#copied');
  out.verdicts = await page.$$eval('#verdicts li', (lis) => Object.fromEntries(lis.map((li) => [
    li.dataset.transport,
    { verdict: li.dataset.verdict, text: li.textContent, rttMs: li.dataset.rttMs ?? null, mbps: li.dataset.mbps ?? null },
  ])));
  out.candidates = await page.$$eval('#candidates tbody tr', (rows) => rows.map((r) => ({
    transport: r.dataset.transport, type: r.dataset.type,
    cells: [...r.cells].map((c) => c.textContent),
  })));
  out.report = JSON.parse(await page.inputValue('#report'));
  if (shot) {
    out.screenshots.push(await screenshot(page, shot));
    // The first screen alone, small enough for the README's copy.
    const first = join(ARTIFACTS, 'screenshots', `${shot}-1280x800.png`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: first, fullPage: false });
    out.screenshots.push(first);
    await page.setViewportSize({ width: 390, height: 844 });
    out.screenshots.push(await screenshot(page, `${shot}-390`));
    out.narrowOverflow = await page.evaluate(
      () => document.documentElement.scrollWidth > document.documentElement.clientWidth,
    );
  }
  out.requests = browser.requests;
  out.foreign = foreignRequests(browser.requests, url);
  out.ok = true;
} catch (e) {
  out.error = String((e && e.message) || e).split('\n')[0];
} finally {
  if (browser) await browser.close();
  clearTimeout(hardKill);
}
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(out.ok ? 0 : 1);
