// The self-test page (issue 20): gets a 60 s credential from this server,
// gathers candidates against each of its URLs, relays a data channel
// between two peer connections in this page over each TURN transport, and
// prints one verdict per transport. Talks to no host but this server.

const TRANSPORTS = [
  { key: 'stun', label: 'STUN', offered: 'stun', match: (u) => u.startsWith('stun:') },
  { key: 'udp', label: 'TURN over UDP', offered: 'turn_udp', relay: 'udp',
    match: (u) => u.startsWith('turn:') && u.endsWith('?transport=udp') },
  { key: 'tcp', label: 'TURN over TCP', offered: 'turn_tcp', relay: 'tcp',
    match: (u) => u.startsWith('turn:') && u.endsWith('?transport=tcp') },
  { key: 'tls', label: 'TURN over TLS', offered: 'turn_tls', relay: 'tls',
    match: (u) => u.startsWith('turns:') },
];

const GATHER_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 15_000;
const PINGS = 10;
const BURST_BYTES = 256 * 1024;
const CHUNK_BYTES = 16 * 1024;

const $ = (id) => document.getElementById(id);

/** A refusal by the server's rate limit, with its sentence. */
class RateLimited extends Error {}

let report = null;

function status(text, kind = 'info') {
  const s = $('status');
  s.textContent = text;
  s.dataset.kind = kind;
}

function verdictLine(t) {
  let li = document.querySelector(`#verdicts li[data-transport="${t.key}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.transport = t.key;
    $('verdicts').append(li);
  }
  return li;
}

/** Sets a transport's verdict line: "LABEL: TEXT" and why, in plain words. */
function verdict(t, kind, text, why = '') {
  const li = verdictLine(t);
  li.dataset.verdict = kind;
  li.textContent = `${t.label}: ${text}`;
  if (why) {
    const span = document.createElement('span');
    span.className = 'why';
    span.textContent = why;
    li.append(span);
  }
  const entry = report.transports.find((x) => x.transport === t.key);
  Object.assign(entry, { verdict: kind, summary: `${t.label}: ${text}`, why: why || null });
}

function addCandidate(test, c, ms) {
  const row = document.createElement('tr');
  row.dataset.transport = test.key;
  row.dataset.type = c.type || '';
  const cells = [
    test.label,
    c.type || '?',
    c.protocol || '?',
    c.address ? `${c.address}:${c.port}` : '(hidden)',
    c.relayProtocol || '',
    `${Math.round(ms)} ms`,
  ];
  cells.forEach((text, i) => {
    const td = document.createElement('td');
    td.textContent = text;
    if (i === 5) td.className = 'num';
    row.append(td);
  });
  $('candidates').tBodies[0].append(row);
  report.candidates.push({
    test: test.key, type: c.type || null, protocol: c.protocol || null,
    address: c.address || null, port: c.port || null,
    relayProtocol: c.relayProtocol || null, gather_ms: Math.round(ms),
  });
}

/** A fresh credential, or RateLimited with the server's sentence. */
async function credential() {
  let r;
  try {
    r = await fetch('selftest/credentials', { method: 'POST', cache: 'no-store' });
  } catch (e) {
    throw new Error(`could not reach this server for a credential (${e.message})`);
  }
  let body = {};
  try { body = await r.json(); } catch (_) { /* not JSON: said below */ }
  if (r.status === 429) {
    throw new RateLimited(body.error || 'Too many self-tests: try again in a minute.');
  }
  if (!r.ok) {
    throw new Error(body.error || `the server answered ${r.status} for a credential`);
  }
  return body;
}

function iceServer(url, cred) {
  return cred ? { urls: [url], username: cred.username, credential: cred.credential } : { urls: [url] };
}

/** The relay protocol of a relay candidate (from the stats if the
 *  candidate object lacks it). */
async function relayProtocolOf(pc, cand) {
  if (cand.relayProtocol) return cand.relayProtocol;
  try {
    const stats = await pc.getStats();
    for (const s of stats.values()) {
      if (s.type === 'local-candidate' && s.address === cand.address && s.port === cand.port) {
        return s.relayProtocol || null;
      }
    }
  } catch (_) { /* no stats: unknown */ }
  return null;
}

/** Watches a peer connection's gathering: its candidates with the time
 *  each took, and its candidate errors (401, 486, 701 ...). */
function watch(pc) {
  const started = performance.now();
  const w = { candidates: [], errors: [], done: null, firstRelayMs: null };
  w.done = new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener('icecandidate', (e) => {
      if (!e.candidate) { clearTimeout(timer); resolve(); return; }
      const ms = performance.now() - started;
      w.candidates.push({ c: e.candidate, ms });
      if (e.candidate.type === 'relay' && w.firstRelayMs === null) w.firstRelayMs = ms;
    });
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
  pc.addEventListener('icecandidateerror', (e) => {
    w.errors.push({ code: e.errorCode, text: e.errorText || '', url: e.url || '' });
  });
  return w;
}

/** Why a TURN transport gave no relay candidate, in plain words. */
function explain(t, errors, where) {
  const codes = new Set(errors.map((e) => e.code));
  if (codes.has(401)) {
    return ['refused', 'credential refused (401)',
      'The server did not accept the self-test credential. Its clock may be off, or the credential expired before it was used.'];
  }
  if (codes.has(486)) {
    return ['refused', 'quota reached (486)',
      'The server refused a relay because a quota is full: too many relays for this credential, your address or the server.'];
  }
  const other = errors.find((e) => e.code >= 300 && e.code < 700);
  if (other) {
    return ['refused', `refused by the server (${other.code} ${other.text})`.trim(),
      'The server answered, but would not give a relay.'];
  }
  if (t.key === 'udp') {
    return ['blocked', 'blocked',
      `No answer over UDP from ${where}: a firewall on your network probably blocks UDP to this port.`];
  }
  if (t.key === 'tcp') {
    return ['blocked', 'blocked',
      `No TCP connection to ${where}: a firewall or a proxy is in the way.`];
  }
  return ['blocked', 'blocked',
    `The TLS connection to ${where} failed: a firewall blocks it, or a proxy intercepts TLS (then the certificate is not the server's).`];
}

function hostOf(url) {
  return url.replace(/^[a-z]+:/, '').replace(/\?.*$/, '');
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(what)), ms); }),
  ]).finally(() => clearTimeout(t));
}

/** STUN: does the server answer, and what address does it see? */
async function stunTest(t, url) {
  const pc = new RTCPeerConnection({ iceServers: [iceServer(url)] });
  const w = watch(pc);
  pc.createDataChannel('stun-test');
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await w.done;
  } finally {
    pc.close();
  }
  for (const { c, ms } of w.candidates) addCandidate(t, c, ms);
  const srflx = w.candidates.find(({ c }) => c.type === 'srflx');
  if (srflx) {
    verdict(t, 'works', `works, your address as the server sees it: ${srflx.c.address}:${srflx.c.port}`);
  } else if (w.errors.some((e) => e.code === 701)) {
    verdict(t, 'blocked', 'blocked', `No answer over UDP from ${hostOf(url)}: a firewall on your network probably blocks UDP to this port.`);
  } else {
    // A mapped address equal to a host one is dropped by the browser.
    verdict(t, 'works', 'works, no address translation between you and the server');
  }
}

/** Two relay-only peer connections through `url`, each with its own
 *  credential (one allocation each); `first` is one already fetched. */
async function turnTest(t, url, first) {
  const creds = [first || (await credential()), await credential()];
  const [a, b] = creds.map((c) => new RTCPeerConnection({
    iceServers: [iceServer(url, c)], iceTransportPolicy: 'relay',
  }));
  const wa = watch(a);
  const wb = watch(b);
  const result = { rtt_ms: null, mbps: null, gather_ms: null };
  try {
    // Trickle each side's candidates to the other once it has an offer/answer.
    const pending = new Map([[a, []], [b, []]]);
    const ready = new Set();
    const forward = (from, to) => from.addEventListener('icecandidate', (e) => {
      if (!e.candidate) return;
      if (ready.has(to)) to.addIceCandidate(e.candidate).catch(() => {});
      else pending.get(to).push(e.candidate);
    });
    forward(a, b);
    forward(b, a);
    const flush = (pc) => {
      ready.add(pc);
      for (const c of pending.get(pc).splice(0)) pc.addIceCandidate(c).catch(() => {});
    };
    const dcA = a.createDataChannel('selftest', { negotiated: true, id: 0 });
    const dcB = b.createDataChannel('selftest', { negotiated: true, id: 0 });
    dcA.binaryType = 'arraybuffer';
    dcB.binaryType = 'arraybuffer';
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    flush(b);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    flush(a);

    // No relay candidate on either side: say why.
    const noRelay = Promise.all([wa.done, wb.done]).then(() => {
      const relays = [...wa.candidates, ...wb.candidates].filter(({ c }) => c.type === 'relay');
      if (relays.length === 0) throw Object.assign(new Error('no relay'), { noRelay: true });
      return new Promise(() => {}); // relays gathered: wait for the channel
    });
    const open = (dc) => new Promise((resolve) => {
      if (dc.readyState === 'open') resolve(); else dc.addEventListener('open', resolve, { once: true });
    });
    try {
      await withTimeout(Promise.race([Promise.all([open(dcA), open(dcB)]), noRelay]),
        CONNECT_TIMEOUT_MS, 'timeout');
    } catch (e) {
      await Promise.race([Promise.all([wa.done, wb.done]), new Promise((r) => setTimeout(r, 1000))]);
      await listCandidates(t, a, wa);
      const relays = wa.candidates.some(({ c }) => c.type === 'relay')
        && wb.candidates.some(({ c }) => c.type === 'relay');
      if (!relays) {
        const [kind, text, why] = explain(t, [...wa.errors, ...wb.errors], hostOf(url));
        verdict(t, kind, text, why);
      } else {
        verdict(t, 'failed', 'relay given, but no data went through',
          'Both connections got a relay address, but they could not reach each other through the server within 15 s.');
      }
      return;
    }
    result.gather_ms = wa.firstRelayMs;
    await listCandidates(t, a, wa);

    // Round trip: A sends, B echoes; the median of PINGS.
    dcB.onmessage = (e) => {
      if (typeof e.data === 'string' && e.data.startsWith('ping:')) dcB.send(`pong:${e.data.slice(5)}`);
    };
    const rtts = [];
    for (let i = 0; i < PINGS; i++) {
      const sent = performance.now();
      await withTimeout(new Promise((resolve) => {
        dcA.onmessage = (e) => { if (e.data === `pong:${i}`) resolve(); };
        dcA.send(`ping:${i}`);
      }), 5000, 'ping timeout');
      rtts.push(performance.now() - sent);
    }
    result.rtt_ms = median(rtts);

    // Throughput: BURST_BYTES from A to B; B says when all arrived.
    let got = 0;
    dcB.onmessage = (e) => {
      got += e.data.byteLength || e.data.length || 0;
      if (got >= BURST_BYTES) dcB.send('done');
    };
    const chunk = new Uint8Array(CHUNK_BYTES);
    const started = performance.now();
    const finished = new Promise((resolve) => { dcA.onmessage = (e) => { if (e.data === 'done') resolve(); }; });
    dcA.bufferedAmountLowThreshold = 4 * CHUNK_BYTES;
    for (let sent = 0; sent < BURST_BYTES; sent += CHUNK_BYTES) {
      if (dcA.bufferedAmount > 8 * CHUNK_BYTES) {
        await new Promise((r) => dcA.addEventListener('bufferedamountlow', r, { once: true }));
      }
      dcA.send(chunk);
    }
    await withTimeout(finished, 15_000, 'burst timeout');
    const seconds = Math.max((performance.now() - started) / 1000, 0.001);
    result.mbps = (BURST_BYTES * 8) / seconds / 1e6;

    const rtt = result.rtt_ms < 1 ? '<1' : Math.round(result.rtt_ms);
    const mbps = result.mbps >= 10 ? Math.round(result.mbps) : result.mbps.toFixed(1);
    verdict(t, 'works', `works, RTT ${rtt} ms, ${mbps} Mbit/s`);
    const li = verdictLine(t);
    li.dataset.rttMs = String(result.rtt_ms.toFixed(2));
    li.dataset.mbps = String(result.mbps.toFixed(2));
  } catch (e) {
    verdict(t, 'failed', 'failed', `The test stopped: ${e.message}`);
  } finally {
    a.close();
    b.close();
    Object.assign(report.transports.find((x) => x.transport === t.key), result);
  }
}

async function listCandidates(t, pc, w) {
  for (const { c, ms } of w.candidates) {
    const relayProtocol = c.type === 'relay' ? await relayProtocolOf(pc, c) : null;
    addCandidate(t, {
      type: c.type, protocol: c.protocol, address: c.address, port: c.port, relayProtocol,
    }, ms);
  }
}

async function run() {
  $('run').disabled = true;
  $('copy').disabled = true;
  $('copied').textContent = '';
  document.body.dataset.state = 'running';
  $('verdicts').replaceChildren();
  $('candidates').tBodies[0].replaceChildren();
  report = {
    time: new Date().toISOString(),
    page: location.origin + location.pathname,
    userAgent: navigator.userAgent,
    urls: [],
    offered: null,
    transports: TRANSPORTS.map((t) => ({ transport: t.key, label: t.label, url: null })),
    candidates: [],
    error: null,
  };
  for (const t of TRANSPORTS) verdict(t, 'pending', 'waiting');
  status('Asking the server for a credential\u2026');
  let first = null;
  try {
    first = await credential();
  } catch (e) {
    const kind = e instanceof RateLimited ? 'rate-limited' : 'failed';
    report.error = e.message;
    status(e.message, 'error');
    for (const t of TRANSPORTS) verdict(t, kind, kind === 'rate-limited' ? 'not run, rate limit' : 'not run', e.message);
    finish();
    return;
  }
  const { urls, offered } = first;
  report.urls = urls;
  report.offered = offered;
  for (const t of TRANSPORTS) {
    const url = urls.find(t.match);
    report.transports.find((x) => x.transport === t.key).url = url || null;
    if (!offered[t.offered] || !url) {
      verdict(t, 'not-offered', 'not offered', 'This server does not serve this transport.');
      continue;
    }
    verdict(t, 'running', 'testing\u2026');
    status(`Testing ${t.label}\u2026`);
    try {
      if (t.key === 'stun') await stunTest(t, url);
      else {
        await turnTest(t, url, first);
        first = null; // used: the next test fetches its own
      }
    } catch (e) {
      if (e instanceof RateLimited) verdict(t, 'rate-limited', 'not run, rate limit', e.message);
      else verdict(t, 'failed', 'failed', `The test stopped: ${e.message}`);
    }
  }
  const limited = report.transports.find((x) => x.verdict === 'rate-limited');
  if (limited) status(limited.why, 'error');
  else status('Done.');
  finish();
}

function finish() {
  $('report').value = JSON.stringify(report, null, 2);
  $('run').disabled = false;
  $('copy').disabled = false;
  document.body.dataset.state = 'done';
}

async function copyReport() {
  const text = $('report').value;
  try {
    await navigator.clipboard.writeText(text);
    $('copied').textContent = 'Report copied to the clipboard.';
  } catch (_) {
    // No clipboard access (plain HTTP): select it for the user.
    $('report').focus();
    $('report').select();
    $('copied').textContent = 'Select all the text of the report below and copy it.';
  }
}

/** A run always ends with its report, whatever went wrong. */
async function runSafely() {
  try {
    await run();
  } catch (e) {
    status(`The self-test stopped: ${e.message}`, 'error');
    if (report) report.error = e.message;
    finish();
  }
}

$('run').addEventListener('click', runSafely);
$('copy').addEventListener('click', copyReport);
if (typeof RTCPeerConnection === 'undefined') {
  status('This browser has no WebRTC (RTCPeerConnection): the self-test cannot run.', 'error');
  document.body.dataset.state = 'done';
} else {
  runSafely();
}
