// Overview (admin): the fleet's nodes, live totals and a 15-minute chart,
// refreshed every 2 s.

import { api } from './api.js';
import { $, el, fill, cell, bits, ago, status } from './ui.js';

let timer = null;

async function refresh(ctx) {
  try {
    const [nodes, stats] = await Promise.all([
      api('GET', '/api/v1/nodes'),
      api('GET', '/api/v1/stats').catch((e) => {
        if (e.status === 404) return null;
        throw e;
      }),
    ]);
    fill(
      $('#nodes tbody'),
      nodes.nodes.map((n) =>
        el(
          'tr',
          { 'data-node': n.name },
          cell(n.name),
          cell(n.region || ''),
          cell(n.state, { class: `state state-${n.state}`, 'data-field': 'state' }),
          cell(n.allocations, { 'data-field': 'allocations' }),
          cell(bits(n.relayed_bps), { 'data-field': 'bps' }),
          cell(ago(n.last_seen), { 'data-field': 'last-seen' }),
        ),
      ),
    );
    // The fleet's sums, from the nodes' heartbeats; the totals above are
    // this node's own, live (auth failures and refusals are not shared).
    const sum = (f) => nodes.nodes.reduce((a, n) => a + (Number(n[f]) || 0), 0);
    $('#nodes-count').textContent = `All nodes (${nodes.nodes.length})`;
    $('#nodes-allocations').textContent = String(sum('allocations'));
    $('#nodes-bps').textContent = bits(sum('relayed_bps'));
    if (stats) {
      $('#totals-scope').textContent = `Live totals of this node (${stats.node}); the fleet's sums are under Nodes.`;
      const c = stats.current || {};
      $('#total-allocations').textContent = String(c.allocations ?? 0);
      $('#total-to-peer').textContent = bits(c.to_peer_bps);
      $('#total-to-client').textContent = bits(c.to_client_bps);
      $('#total-auth-failures').textContent = String(c.auth_failures ?? 0);
      $('#total-quota-refusals').textContent = String(c.quota_refusals ?? 0);
      draw(stats.history || [], stats.now, stats.interval_s || 2);
    }
    document.body.dataset.overviewLoaded = 'true';
  } catch (err) {
    if (!ctx.failed(err)) status(`Overview: ${err.message}`);
  }
}

const COLORS = { alloc: '#2b6cb0', peer: '#2f855a', client: '#c05621', grid: '#d0d7de', text: '#57606a' };
const WINDOW_S = 15 * 60;

/// Allocations (left scale) and bit rate each way (right scale) over the
/// last 15 minutes, newest at the right.
function draw(history, now, interval) {
  const canvas = $('#chart');
  const g = canvas.getContext('2d');
  const w = canvas.width;
  const h = canvas.height;
  const pad = { l: 48, r: 72, t: 10, b: 22 };
  g.clearRect(0, 0, w, h);
  g.font = '12px system-ui, sans-serif';
  g.strokeStyle = COLORS.grid;
  g.fillStyle = COLORS.text;
  g.lineWidth = 1;
  const end = now || (history.length ? history[history.length - 1].t : 0);
  const x = (t) => pad.l + ((t - (end - WINDOW_S)) / WINDOW_S) * (w - pad.l - pad.r);
  // Whole-number ticks: the scale's top is a multiple of 4.
  const maxA = 4 * Math.ceil(Math.max(1, ...history.map((s) => s.allocations)) / 4);
  const maxB = Math.max(1000, ...history.map((s) => Math.max(s.to_peer_bps, s.to_client_bps)));
  const yA = (v) => h - pad.b - (v / maxA) * (h - pad.t - pad.b);
  const yB = (v) => h - pad.b - (v / maxB) * (h - pad.t - pad.b);
  for (let i = 0; i <= 4; i += 1) {
    const y = pad.t + (i / 4) * (h - pad.t - pad.b);
    g.beginPath();
    g.moveTo(pad.l, y);
    g.lineTo(w - pad.r, y);
    g.stroke();
    g.textAlign = 'right';
    g.fillText(String(Math.round(maxA * (1 - i / 4))), pad.l - 6, y + 4);
    g.textAlign = 'left';
    g.fillText(bits(maxB * (1 - i / 4)), w - pad.r + 6, y + 4);
  }
  g.textAlign = 'center';
  for (let m = 15; m >= 0; m -= 5) {
    g.fillText(m ? `-${m} min` : 'now', x(end - m * 60), h - 6);
  }
  const line = (color, pick, y) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    let last = null;
    for (const s of history) {
      // A gap longer than two intervals (a restart) breaks the line.
      if (last === null || s.t - last > 2 * interval) g.moveTo(x(s.t), y(pick(s)));
      else g.lineTo(x(s.t), y(pick(s)));
      last = s.t;
    }
    g.stroke();
  };
  line(COLORS.alloc, (s) => s.allocations, yA);
  line(COLORS.peer, (s) => s.to_peer_bps, yB);
  line(COLORS.client, (s) => s.to_client_bps, yB);
}

export default {
  show(ctx) {
    refresh(ctx);
    timer = setInterval(() => refresh(ctx), 2000);
  },
  hide() {
    clearInterval(timer);
    timer = null;
  },
};
