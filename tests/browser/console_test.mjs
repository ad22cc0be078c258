// Drives the web console (/console/) in headless Chromium, one step at a
// time: the Rust test (tests/it/console.rs) writes one JSON command a line
// on stdin, starts and stops TURN clients between steps, and reads one
// JSON answer a line on stdout: {"ok":true,...} or {"ok":false,"error":...}.
//
// Commands: open, signin, tab, overview, session, kill, create_user, users,
// usage, screenshot, viewport, finish (see STEPS). Every page the browser
// loads is logged (foreign requests), and so are CSP violations and console
// errors; `finish` reports them and ends the browser.
//
// Usage: node console_test.mjs '{"width":1280,"height":800}'

import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { launch, foreignRequests, screenshot } from './chromium.mjs';

const opts = JSON.parse(process.argv[2] || '{}');
// Never outlive a stuck test.
setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: 'console_test: 240 s limit' })}\n`);
  process.exit(2);
}, 240_000).unref();

const { context, requests, close } = await launch({
  viewport: { width: opts.width || 1280, height: opts.height || 800 },
});
const page = await context.newPage();
const consoleErrors = [];
const pageErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(m.text());
});
page.on('pageerror', (e) => pageErrors.push(String(e)));
// Injected by the debugger, not by the page: the CSP does not apply to it.
await page.addInitScript(() => {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
  });
});
let cspViolations = [];
let documents = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (sel) => page.locator(sel).first().textContent({ timeout: 5_000 });

/// Polls `f` until it returns a truthy value or `ms` pass; the value.
async function until(ms, what, f) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(100);
  }
}

async function collectCsp() {
  try {
    cspViolations = cspViolations.concat(await page.evaluate(() => window.__csp.splice(0)));
  } catch {
    // A navigation in progress: the next call collects.
  }
}

async function tab(name) {
  await page.click(`#tabs button[data-tab="${name}"]`);
  await page.waitForSelector(`section[data-page="${name}"]:not([hidden])`, { timeout: 5_000 });
}

const STEPS = {
  /// Loads `url`; the answer's security headers, and where the page is
  /// once it has signed in (or shows the sign-in form).
  async open({ url }) {
    const r = await page.goto(url, { waitUntil: 'load' });
    const h = r.headers();
    documents.push(url);
    await page.waitForSelector('#tabs:not([hidden]), #signin:not([hidden])', { timeout: 10_000 });
    return {
      status: r.status(),
      csp: h['content-security-policy'] || null,
      nosniff: h['x-content-type-options'] || null,
      referrer: h['referrer-policy'] || null,
      contentType: h['content-type'] || null,
      location: page.url(),
      signedIn: await page.isVisible('#tabs'),
      stored: await page.evaluate(() => sessionStorage.getItem('turnpike.console.token')),
    };
  },

  /// Pastes `token` into the sign-in form (signing out first if needed).
  async signin({ token }) {
    if (await page.isVisible('#signout')) {
      await page.click('#signout');
    }
    await page.fill('#token-input', token);
    await page.click('#signin-submit');
    await page.waitForSelector('#tabs:not([hidden]), #token-error:not(:empty)', { timeout: 5_000 });
    const tabs = await page.$$eval('#tabs button[data-tab]', (bs) =>
      bs.filter((b) => !b.hidden).map((b) => b.dataset.tab),
    );
    return {
      signedIn: await page.isVisible('#tabs'),
      who: await text('#who'),
      error: await text('#token-error'),
      tabs,
    };
  },

  async tab({ name }) {
    await tab(name);
    return {};
  },

  /// Waits until the node `node` lists a nonzero allocation count and the
  /// live totals do too.
  /// With `busy`, also until both bit rates are at least 1 kbit/s.
  async overview({ node, within_ms: ms = 10_000, busy = false }) {
    await tab('overview');
    const row = `#nodes tr[data-node="${node}"]`;
    const got = await until(ms, `node ${node} with allocations`, async () => {
      const n = await page.$eval(row, (r) => ({
        state: r.querySelector('[data-field=state]').textContent,
        allocations: Number(r.querySelector('[data-field=allocations]').textContent),
        lastSeen: r.querySelector('[data-field=last-seen]').textContent,
      })).catch(() => null);
      const total = Number(await text('#total-allocations'));
      const kbits = (t) => /[kMGT]bit\/s$/.test(t);
      const moving = !busy || (kbits(await text('#total-to-peer')) && kbits(await text('#total-to-client')));
      return n && n.allocations > 0 && total > 0 && moving ? { ...n, total } : null;
    });
    // The chart has drawn something (not a blank canvas).
    const inked = await page.$eval('#chart', (c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i]) n += 1;
      return n;
    });
    return {
      ...got,
      inked,
      scope: await text('#totals-scope'),
      rows: await page.$$eval('#nodes tbody tr', (rs) => rs.map((r) => Number(r.querySelector('[data-field=allocations]').textContent))),
      fleet: { count: await text('#nodes-count'), allocations: Number(await text('#nodes-allocations')) },
      toPeer: await text('#total-to-peer'),
      toClient: await text('#total-to-client'),
      authFailures: await text('#total-auth-failures'),
      quotaRefusals: await text('#total-quota-refusals'),
    };
  },

  /// Opens Sessions and waits for a row of `user`; the milliseconds since
  /// `since` (Unix ms) when it appeared.
  async session({ user, since, within_ms: ms = 3_000, filter }) {
    await tab('sessions');
    if (filter !== undefined) await page.fill('#session-filter', filter);
    const start = since || Date.now();
    const row = `#sessions tbody tr[data-user="${user}"]`;
    await until(ms - (Date.now() - start), `a session of ${user}`, () => page.$(row));
    const appeared = Date.now() - start;
    const users = await page.$$eval('#sessions tbody tr', (rs) => rs.map((r) => r.dataset.user));
    // Sorting by a header (a keyboard-usable button) reorders the rows.
    await page.focus('#sessions th button[data-sort="user"]');
    await page.keyboard.press('Enter');
    const sorted = await page.$eval('#sessions th button[data-sort="user"]', (b) =>
      b.parentElement.getAttribute('aria-sort'),
    );
    return { appeared_ms: appeared, users, sorted };
  },

  /// The users of the Sessions table with `filter` typed in (once some
  /// row matches), then unfiltered, sorted by user up and down.
  async filter_sort({ filter }) {
    await tab('sessions');
    const users = () => page.$$eval('#sessions tbody tr', (rs) => rs.map((r) => r.dataset.user));
    await page.fill('#session-filter', filter);
    const filtered = await until(5_000, `rows matching ${filter}`, async () => {
      const u = await users();
      return u.length ? u : null;
    });
    await page.fill('#session-filter', '');
    await sleep(300);
    const header = '#sessions th button[data-sort="user"]';
    const sortTo = async (want) => {
      for (let i = 0; i < 3; i++) {
        const now = await page.$eval(header, (b) => b.parentElement.getAttribute('aria-sort'));
        if (now === want) return;
        await page.click(header);
        await sleep(100);
      }
    };
    await sortTo('ascending');
    const up = await users();
    await sortTo('descending');
    const down = await users();
    return { filtered, up, down };
  },

  /// Kills the session of `user` through its Kill button and the dialog.
  async kill({ user, id: wanted }) {
    await tab('sessions');
    const row = wanted
      ? `#sessions tbody tr[data-id="${wanted}"]`
      : `#sessions tbody tr[data-user="${user}"]`;
    await page.waitForSelector(row, { timeout: 5_000 });
    const id = await page.$eval(row, (r) => r.dataset.id);
    await page.click(`${row} button.kill`);
    await page.waitForSelector('#confirm[open]', { timeout: 5_000 });
    const question = await text('#confirm-text');
    await page.click('#confirm-ok');
    await until(5_000, `the session of ${user} gone`, async () => !(await page.$(row)));
    return { id, question, status: await text('#status') };
  },

  /// Creates a user through the form; what the page shows after.
  async create_user({ name, password }) {
    await tab('users');
    await page.fill('#user-name', name);
    await page.fill('#user-password', password || '');
    await page.click('#user-create');
    await page.waitForSelector('#user-created:not(:empty), #user-name-error:not(:empty), #user-password-error:not(:empty)', {
      timeout: 5_000,
    });
    await until(5_000, 'the users table', () => page.$('#users[data-loaded]'));
    return {
      created: await text('#user-created'),
      nameError: await text('#user-name-error'),
      describedBy: await page.getAttribute('#user-name', 'aria-describedby'),
      invalid: await page.getAttribute('#user-name', 'aria-invalid'),
      focused: await page.evaluate(() => document.activeElement && document.activeElement.id),
    };
  },

  /// Adds a REST secret with the value left empty: the generated one is
  /// shown once; the rows listed after.
  async secret_create() {
    await tab('secrets');
    await page.fill('#secret-value', '');
    await page.click('#secret-create');
    await page.waitForSelector('#secret-created:not(:empty), #secret-value-error:not(:empty)', { timeout: 5_000 });
    const shown = await text('#secret-created');
    await until(5_000, 'the new secret listed', () => page.$('#secrets tbody tr'));
    const rows = await page.$$eval('#secrets tbody tr', (rs) => rs.map((r) => r.dataset.secret));
    // Shown once: another visit to the page no longer shows it.
    await tab('users');
    await tab('secrets');
    return { shown, rows, after: await text('#secret-created') };
  },

  /// Deletes the secret `id` through its row's button and the dialog;
  /// the ids listed after.
  async secret_delete({ id }) {
    await tab('secrets');
    const row = `#secrets tbody tr[data-secret="${id}"]`;
    await page.waitForSelector(row, { timeout: 5_000 });
    await page.click(`${row} button:has-text("Delete")`);
    await page.waitForSelector('#confirm[open]', { timeout: 5_000 });
    await page.click('#confirm-ok');
    await until(5_000, `secret ${id} gone`, async () => !(await page.$(row)));
    return { rows: await page.$$eval('#secrets tbody tr', (rs) => rs.map((r) => r.dataset.secret)) };
  },

  /// Deletes the user `name` through its row's button and the dialog.
  async user_delete({ name }) {
    await tab('users');
    const row = `#users tbody tr[data-user="${name}"]`;
    await page.waitForSelector(row, { timeout: 5_000 });
    await page.click(`${row} button:has-text("Delete")`);
    await page.waitForSelector('#confirm[open]', { timeout: 5_000 });
    const question = await text('#confirm-text');
    await page.click('#confirm-ok');
    await until(5_000, `user ${name} gone`, async () => !(await page.$(row)));
    return { question, status: await text('#status') };
  },

  /// Sets a user's quota through the form, then loads it back.
  async quota_set({ user, allocations }) {
    await tab('quotas');
    await page.selectOption('#quota-kind', 'user');
    await page.fill('#quota-name', user);
    await page.fill('#quota-allocations', String(allocations));
    await page.fill('#quota-bps', '');
    await page.click('#quota-save');
    await page.waitForSelector(
      '#quota-saved:not(:empty), #quota-name-error:not(:empty), #quota-allocations-error:not(:empty)',
      { timeout: 5_000 },
    );
    const saved = await text('#quota-saved');
    const allocationsError = await text('#quota-allocations-error');
    if (allocationsError) return { saved, allocationsError };
    await page.fill('#quota-allocations', '');
    await page.click('#quota-load');
    await until(5_000, 'the quota loaded', async () => (await page.inputValue('#quota-allocations')) !== '');
    return { saved, loaded: await page.inputValue('#quota-allocations'), error: await text('#quota-name-error') };
  },

  /// Adds an OAuth key (generated), then deletes it through the dialog.
  async oauth_roundtrip({ kid }) {
    await tab('oauth');
    await page.fill('#oauth-kid', kid);
    await page.click('#oauth-create');
    await page.waitForSelector('#oauth-created:not(:empty), #oauth-kid-error:not(:empty)', { timeout: 5_000 });
    const shown = await text('#oauth-created');
    const row = `#oauth-keys tr[data-kid="${kid}"]`;
    await page.waitForSelector(row, { timeout: 5_000 });
    await page.click(`${row} button`);
    await page.click('#confirm-ok');
    await until(5_000, `key ${kid} gone`, async () => !(await page.$(row)));
    return { shown };
  },

  /// Changes `name`'s password through its row's dialog.
  async set_password({ name, password }) {
    await tab('users');
    const row = `#users tbody tr[data-user="${name}"]`;
    await page.waitForSelector(row, { timeout: 5_000 });
    await page.click(`${row} button:has-text("Password")`);
    await page.waitForSelector('#password-dialog[open]', { timeout: 5_000 });
    await page.fill('#password-new', password);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#password-dialog[open]', { state: 'detached', timeout: 5_000 });
    return { status: await text('#status') };
  },

  /// The names the Users page lists (once loaded).
  async users() {
    await tab('users');
    await until(5_000, 'the users table', () => page.$('#users[data-loaded]'));
    await sleep(300);
    return {
      users: await page.$$eval('#users tbody tr', (rs) =>
        rs.map((r) => ({ name: r.dataset.user, realm: r.dataset.realm })),
      ),
      realmReadOnly: await page.$eval('#realm', (i) => i.readOnly),
    };
  },

  /// Usage by `group`; waits until the row `key` shows `to_peer` bytes
  /// (reloading with Show), then downloads the CSV.
  async usage({ group = 'user', key, to_peer: want, within_ms: ms = 10_000 }) {
    await tab('usage');
    await page.selectOption('#usage-group', group);
    const row = `#usage tbody tr[data-key="${key}"]`;
    const got = await until(ms, `usage of ${key}`, async () => {
      await page.click('#usage-show');
      await sleep(300);
      const r = await page.$eval(row, (tr) => ({
        toPeer: Number(tr.querySelector('[data-field=to-peer]').dataset.bytes),
        toClient: Number(tr.querySelector('[data-field=to-client]').dataset.bytes),
        allocations: Number(tr.querySelector('[data-field=allocations]').textContent),
      })).catch(() => null);
      return r && (want === undefined || r.toPeer >= want) ? r : null;
    });
    const bars = await page.$$eval('#usage-bars .bar-row', (rs) => rs.map((r) => r.dataset.key));
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 5_000 }),
      page.click('#usage-csv'),
    ]);
    const csv = readFileSync(await download.path(), 'utf8');
    return { ...got, bars, csv, csvName: download.suggestedFilename() };
  },

  /// Shows usage by `group` from `from` to `to` (inclusive dates); the
  /// row keys and the total allocations the page shows, or the error
  /// beside the end date.
  async usage_range({ group = 'user', from, to }) {
    await tab('usage');
    await page.selectOption('#usage-group', group);
    await page.fill('#usage-from', from);
    await page.fill('#usage-to', to);
    await page.evaluate(() => {
      document.querySelector('#usage-total-allocations').textContent = '';
    });
    await page.click('#usage-show');
    await until(5_000, 'usage shown', async () =>
      (await text('#usage-total-allocations')) !== '' || (await text('#usage-to-error')) !== '');
    const keys = await page.$$eval('#usage tbody tr', (rs) => rs.map((r) => r.dataset.key));
    return { keys, total: await text('#usage-total-allocations'), toError: await text('#usage-to-error') };
  },

  async screenshot({ name }) {
    return { path: await screenshot(page, name) };
  },

  /// Resizes the page; the pages (of the visible tabs) on which anything
  /// but a table's own scroller is wider than the viewport.
  async viewport({ width, height }) {
    await page.setViewportSize({ width, height });
    const wide = [];
    const tabs = await page.$$eval('#tabs button[data-tab]', (bs) =>
      bs.filter((b) => !b.hidden).map((b) => b.dataset.tab),
    );
    for (const name of tabs) {
      await tab(name);
      await sleep(300);
      if (await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth)) {
        wide.push(name);
      }
    }
    return { wide, tabs };
  },

  /// The page's record: requests to other hosts, CSP violations, errors.
  async finish({ origin }) {
    await collectCsp();
    return {
      requests: requests.length,
      foreign: foreignRequests(requests, origin),
      csp: cspViolations,
      consoleErrors,
      pageErrors,
    };
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  let answer;
  try {
    const out = await STEPS[cmd.cmd](cmd);
    await collectCsp();
    answer = { ok: true, ...out };
  } catch (e) {
    answer = { ok: false, error: String(e && e.stack ? e.stack : e) };
    try {
      await screenshot(page, `console-failed-${cmd.cmd}`);
    } catch {
      // The page may be gone.
    }
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
  if (cmd.cmd === 'finish') break;
}
await close();
process.exit(0);
