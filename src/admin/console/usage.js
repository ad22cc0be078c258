// Usage: totals by user, realm or day over a date range, from
// /api/v1/usage, as a table, bars and a CSV file made in the page.

import { api, query } from './api.js';
import { $, el, fill, cell, bytes, status } from './ui.js';

let bound = false;
let csvUrl = null;
const MAX_PAGES = 20;

const day = (d) => d.toISOString().slice(0, 10);

function nextDay(s) {
  const d = new Date(`${s}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return day(d);
}

async function load(ctx) {
  const from = $('#usage-from');
  const to = $('#usage-to');
  for (const p of [$('#usage-from-error'), $('#usage-to-error')]) p.textContent = '';
  if (from.value && to.value && from.value > to.value) {
    $('#usage-to-error').textContent = 'The end is before the start.';
    to.focus();
    return;
  }
  const group = $('#usage-group').value;
  const params = {
    group_by: group,
    from: from.value || undefined,
    // The API's `to` is exclusive; the form's last day is included.
    to: to.value ? nextDay(to.value) : undefined,
    realm: ctx.target(),
    limit: 1000,
  };
  const groups = [];
  let totals = null;
  try {
    let cursor;
    for (let i = 0; i < MAX_PAGES; i += 1) {
      const page = await api('GET', `/api/v1/usage${query({ ...params, cursor })}`);
      totals = page.totals;
      groups.push(...(page.groups || []));
      cursor = page.next_cursor;
      if (!cursor) break;
    }
  } catch (err) {
    if (ctx.failed(err)) return;
    const field = /^to /.test(err.message) ? to : from;
    $(`#${field.id}-error`).textContent = err.message;
    status(`Usage: ${err.message}`);
    return;
  }
  show(groups, totals, group);
}

function show(groups, totals, group) {
  fill(
    $('#usage tbody'),
    groups.map((g) =>
      el(
        'tr',
        { 'data-key': g.key },
        cell(g.key),
        cell(g.allocations, { 'data-field': 'allocations' }),
        cell(g.seconds.toFixed(1)),
        cell(bytes(g.bytes_to_peer), { 'data-field': 'to-peer', 'data-bytes': g.bytes_to_peer }),
        cell(bytes(g.bytes_to_client), {
          'data-field': 'to-client',
          'data-bytes': g.bytes_to_client,
        }),
      ),
    ),
  );
  $('#usage-total-allocations').textContent = String(totals.allocations);
  $('#usage-total-seconds').textContent = totals.seconds.toFixed(1);
  $('#usage-total-to-peer').textContent = bytes(totals.bytes_to_peer);
  $('#usage-total-to-client').textContent = bytes(totals.bytes_to_client);

  // Bars: relayed bytes (both ways) per group, widths set through the
  // CSSOM (allowed by the CSP, unlike style attributes).
  const max = Math.max(1, ...groups.map((g) => g.bytes_to_peer + g.bytes_to_client));
  fill(
    $('#usage-bars'),
    groups.map((g) => {
      const total = g.bytes_to_peer + g.bytes_to_client;
      const bar = el('span', { class: 'bar' });
      bar.style.width = `${Math.max(0.5, (100 * total) / max)}%`;
      return el(
        'div',
        { class: 'bar-row', 'data-key': g.key },
        el('span', { class: 'bar-label', text: g.key }),
        el('span', { class: 'bar-track' }, bar),
        el('span', { class: 'bar-value', text: bytes(total) }),
      );
    }),
  );

  // The CSV is made here: no request leaves the page for it.
  const cols = ['allocations', 'seconds', 'bytes_to_peer', 'packets_to_peer', 'bytes_to_client', 'packets_to_client'];
  // A name a spreadsheet would run as a formula (=, +, -, @) gets a
  // leading apostrophe: names come from whoever may create users.
  const quote = (v) => {
    const s = /^[=+\-@\t\r]/.test(String(v)) ? `'${v}` : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [[group, ...cols].join(',')].concat(
    groups.map((g) => [quote(g.key), ...cols.map((c) => g[c])].join(',')),
  );
  if (csvUrl) URL.revokeObjectURL(csvUrl);
  csvUrl = URL.createObjectURL(new Blob([`${lines.join('\r\n')}\r\n`], { type: 'text/csv' }));
  const a = $('#usage-csv');
  a.href = csvUrl;
  a.download = `usage-by-${group}.csv`;
  a.hidden = false;
  $('#usage').dataset.loaded = 'true';
}

export default {
  show(ctx) {
    if (!bound) {
      bound = true;
      const now = new Date();
      $('#usage-to').value = day(now);
      $('#usage-from').value = day(new Date(now.getTime() - 7 * 86400000));
      $('#usage-form').addEventListener('submit', (e) => {
        e.preventDefault();
        load(ctx);
      });
    }
    load(ctx);
  },
};
