#!/usr/bin/env node
// Headless-Chromium check that two RTCPeerConnections in one page exchange
// data-channel messages over TURN relay candidates only.
//
// Usage: node relay_test.mjs '<JSON array of RTCIceServer>'
//   e.g. node relay_test.mjs '[{"urls":["turn:127.0.0.1:3478?transport=udp"],"username":"u","credential":"p"}]'
//
// Prints exactly one JSON line on stdout:
//   {"ok":bool,"sentA":n,"recvA":n,"sentB":n,"recvB":n,
//    "localType":..,"remoteType":..,"relayProtocol":..,"localAddress":"ip:port",
//    "error":null|string}
// Exit code 0 only when ok. Diagnostics go to stderr when RELAY_TEST_DEBUG=1.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './chromium.mjs';

const MESSAGES = 100;
const PAGE_TIMEOUT_MS = 30_000; // in-page: ICE + 2x100 messages
const LAUNCH_TIMEOUT_MS = 20_000;
const CLOSE_TIMEOUT_MS = 5_000;
const HARD_KILL_MS = 60_000; // whole script, no matter what


const debug = (...a) => {
  if (process.env.RELAY_TEST_DEBUG) console.error('[relay_test]', ...a);
};

const result = {
  ok: false,
  sentA: 0,
  recvA: 0,
  sentB: 0,
  recvB: 0,
  localType: null,
  remoteType: null,
  relayProtocol: null,
  error: null,
};

let printed = false;
function finish(code) {
  if (!printed) {
    printed = true;
    process.stdout.write(JSON.stringify(result) + '\n');
  }
  process.exitCode = code;
  // stdout to a pipe/file is synchronous on Linux; exit right away so no
  // stray handle (browser pipe, timers) can keep us alive.
  process.exit(code);
}

let userDataDir = null;
function removeUserDataDir() {
  if (!userDataDir) return;
  try {
    rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
  } catch (e) {
    debug('could not remove', userDataDir, String(e));
  }
}
// Backstop: runs on every exit path (process.exit, signals via Playwright's
// handlers, normal end). Playwright's own exit hook SIGKILLs the browser.
process.on('exit', removeUserDataDir);

let context = null;
let hardTimedOut = false;
function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

async function closeBrowser() {
  const c = context;
  context = null;
  if (!c) return;
  try {
    await withTimeout(c.close(), CLOSE_TIMEOUT_MS, 'browser close');
  } catch (e) {
    debug('close failed:', String(e));
  }
}

// Hard kill: whatever happens, never run longer than HARD_KILL_MS.
const hardKill = setTimeout(async () => {
  hardTimedOut = true;
  result.ok = false;
  result.error = (result.error ? result.error + '; ' : '') + `hard timeout after ${HARD_KILL_MS} ms`;
  // Last resort if even closing hangs.
  setTimeout(() => finish(1), CLOSE_TIMEOUT_MS + 1000).unref();
  await closeBrowser();
  finish(1);
}, HARD_KILL_MS - CLOSE_TIMEOUT_MS - 2000);

// Runs inside the page. Must be self-contained (serialized by Playwright).
async function pageTest({ iceServers, messages, timeoutMs }) {
  const st = {
    sentA: 0, recvA: 0, sentB: 0, recvB: 0,
    localType: null, remoteType: null, relayProtocol: null,
    bLocalType: null, bRemoteType: null,
    error: null, diag: [],
  };
  const note = (s) => { if (st.diag.length < 50) st.diag.push(s); };
  const fail = (s) => { if (!st.error) st.error = s; };

  const cfg = { iceServers, iceTransportPolicy: 'relay' };
  let a, b;
  try {
    a = new RTCPeerConnection(cfg);
    b = new RTCPeerConnection(cfg);
  } catch (e) {
    st.error = 'RTCPeerConnection: ' + e;
    return st;
  }

  // Trickle candidates across, queueing until the remote description is set.
  // Rejects as soon as one side finishes gathering without any (relay)
  // candidate, so a dead/misconfigured TURN server fails fast.
  let gatherFailed;
  const noCandidates = new Promise((_, rej) => { gatherFailed = rej; });
  noCandidates.catch(() => {});
  function wire(from, to, name) {
    const queue = [];
    let ready = false;
    let count = 0;
    const add = (c) => to.addIceCandidate(c).catch((e) => note(`${name} addIceCandidate: ${e}`));
    from.onicecandidate = (e) => {
      if (!e.candidate) {
        note(`${name} gathering complete (${count} candidates)`);
        if (count === 0) gatherFailed(new Error(`${name} gathered no relay candidate`));
        return;
      }
      count += 1;
      note(`${name} cand ${e.candidate.type} ${e.candidate.protocol} ${e.candidate.address}:${e.candidate.port}`);
      if (ready) add(e.candidate); else queue.push(e.candidate);
    };
    from.onicecandidateerror = (e) =>
      note(`${name} icecandidateerror ${e.errorCode} ${e.errorText} ${e.url}`);
    from.oniceconnectionstatechange = () => note(`${name} ice ${from.iceConnectionState}`);
    return () => { ready = true; queue.splice(0).forEach(add); };
  }
  const flushToB = wire(a, b, 'A');
  const flushToA = wire(b, a, 'B');

  const dcA = a.createDataChannel('relay-test', { negotiated: true, id: 0, ordered: true });
  const dcB = b.createDataChannel('relay-test', { negotiated: true, id: 0, ordered: true });

  const opened = (dc) => new Promise((res, rej) => {
    if (dc.readyState === 'open') return res();
    dc.onopen = () => res();
    dc.onclose = () => rej(new Error('data channel closed before open'));
  });

  // Receivers check strict in-order delivery: message i must be "<tag>:<i>".
  const received = (dc, tag, key) => new Promise((res, rej) => {
    dc.onmessage = (ev) => {
      const want = `${tag}:${st[key]}`;
      if (ev.data !== want) {
        rej(new Error(`${key}: expected ${JSON.stringify(want)}, got ${JSON.stringify(String(ev.data))}`));
        return;
      }
      st[key] += 1;
      if (st[key] === messages) res();
    };
  });
  // Install message handlers before anything can arrive.
  const gotAtB = received(dcB, 'A', 'recvB');
  const gotAtA = received(dcA, 'B', 'recvA');
  gotAtB.catch(() => {}); gotAtA.catch(() => {});

  const run = async () => {
    const offer = await a.createOffer();
    await a.setLocalDescription(offer);
    await b.setRemoteDescription(a.localDescription);
    flushToB();
    const answer = await b.createAnswer();
    await b.setLocalDescription(answer);
    await a.setRemoteDescription(b.localDescription);
    flushToA();

    await Promise.race([Promise.all([opened(dcA), opened(dcB)]), noCandidates]);
    note('data channels open');
    for (let i = 0; i < messages; i++) {
      dcA.send(`A:${i}`); st.sentA += 1;
      dcB.send(`B:${i}`); st.sentB += 1;
    }
    await Promise.all([gotAtA, gotAtB]);
  };

  let timer;
  try {
    await Promise.race([
      run(),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`in-page timeout after ${timeoutMs} ms (ice A=${a.iceConnectionState} B=${b.iceConnectionState})`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    fail(String(e && e.message || e));
  } finally {
    clearTimeout(timer);
  }

  // Selected candidate pair from getStats().
  async function selected(pc) {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId && stats.get(s.selectedCandidatePairId)) {
        pair = stats.get(s.selectedCandidatePairId);
      }
    });
    if (!pair) {
      stats.forEach((s) => {
        if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      });
    }
    if (!pair) return null;
    const l = stats.get(pair.localCandidateId) || {};
    const r = stats.get(pair.remoteCandidateId) || {};
    return {
      localType: l.candidateType || null,
      remoteType: r.candidateType || null,
      relayProtocol: l.relayProtocol || null,
      localAddress: l.address && `${l.address}:${l.port}`,
      desc: `${l.candidateType}/${l.protocol}/${l.relayProtocol} ${l.address}:${l.port} -> ${r.candidateType} ${r.address}:${r.port}`,
    };
  }
  try {
    const sa = await selected(a);
    const sb = await selected(b);
    if (sa) {
      st.localType = sa.localType; st.remoteType = sa.remoteType; st.relayProtocol = sa.relayProtocol;
      st.localAddress = sa.localAddress;
      note('A selected ' + sa.desc);
    } else {
      fail('no selected candidate pair on A');
    }
    if (sb) {
      st.bLocalType = sb.localType; st.bRemoteType = sb.remoteType;
      note('B selected ' + sb.desc);
    }
  } catch (e) {
    fail('getStats: ' + e);
  }

  try { dcA.close(); dcB.close(); a.close(); b.close(); } catch (_) { /* ignore */ }
  return st;
}

async function main() {
  const raw = process.argv[2];
  if (!raw) throw new Error("usage: node relay_test.mjs '<JSON array of RTCIceServer>'");
  let iceServers;
  try {
    iceServers = JSON.parse(raw);
  } catch (e) {
    throw new Error('iceServers argument is not valid JSON: ' + e.message);
  }
  if (!Array.isArray(iceServers) || iceServers.length === 0) {
    throw new Error('iceServers argument must be a non-empty JSON array');
  }

  userDataDir = mkdtempSync(join(tmpdir(), 'relay-test-chromium-'));
  debug('user-data-dir', userDataDir);
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    ignoreHTTPSErrors: true,
    timeout: LAUNCH_TIMEOUT_MS,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(PAGE_TIMEOUT_MS + 10_000);
  if (process.env.RELAY_TEST_DEBUG) page.on('console', (m) => debug('console:', m.text()));
  await page.goto('about:blank');

  const st = await withTimeout(
    page.evaluate(pageTest, { iceServers, messages: MESSAGES, timeoutMs: PAGE_TIMEOUT_MS }),
    PAGE_TIMEOUT_MS + 10_000,
    'page.evaluate',
  );
  for (const d of st.diag) debug(d);

  Object.assign(result, {
    sentA: st.sentA, recvA: st.recvA, sentB: st.sentB, recvB: st.recvB,
    localType: st.localType, remoteType: st.remoteType, relayProtocol: st.relayProtocol,
    localAddress: st.localAddress || null,
  });
  const problems = [];
  if (st.error) problems.push(st.error);
  if (st.recvA !== MESSAGES || st.recvB !== MESSAGES) {
    problems.push(`delivered A->B ${st.recvB}/${MESSAGES}, B->A ${st.recvA}/${MESSAGES}`);
  }
  if (st.localType !== 'relay' || st.remoteType !== 'relay') {
    problems.push(`selected pair on A is ${st.localType}/${st.remoteType}, want relay/relay`);
  }
  if (st.bLocalType !== 'relay' || st.bRemoteType !== 'relay') {
    problems.push(`selected pair on B is ${st.bLocalType}/${st.bRemoteType}, want relay/relay`);
  }
  if (problems.length && st.diag.length) {
    // Tail of the in-page log (candidate errors etc.) to make failures actionable.
    problems.push('log: ' + st.diag.slice(-8).join(' | '));
  }
  result.ok = problems.length === 0;
  result.error = result.ok ? null : [...new Set(problems)].join('; ');
}

let code = 1;
try {
  await main();
  code = result.ok ? 0 : 1;
} catch (e) {
  result.ok = false;
  const msg = String((e && e.message) || e).split('\n')[0];
  result.error = hardTimedOut ? `hard timeout after ${HARD_KILL_MS} ms; ${msg}` : msg;
  code = 1;
} finally {
  await closeBrowser();
  removeUserDataDir();
  clearTimeout(hardKill);
}
finish(code);
