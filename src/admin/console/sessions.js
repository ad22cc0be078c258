// Sessions: every live allocation (a realm token: its realm's), refreshed
// every second, with a filter, sortable columns and Kill. Workers report
// their sessions once a second, so a new one is listed within about 2 s
// (a 2 s poll would make that up to 3 s).

import { api, enc } from './api.js';
import { $, $$, el, fill, cell, bytes, age, confirmDialog, status } from './ui.js';

let timer = null;
let rows = [];
let sort = { key: 'age', dir: 1 };
let bound = false;

const KEYS = {
  user: (s) => s.user || '',
  node: (s) => s.node || '',
  transport: (s) => s.transport || '',
  client: (s) => s.client || '',
  relayed: (s) => (s.relayed || []).join(' '),
  age: (s) => s.age_seconds || 0,
  to_peer: (s) => (s.to_peer && s.to_peer.bytes) || 0,
  to_client: (s) => (s.to_client && s.to_client.bytes) || 0,
};

function render(ctx) {
  const f = $('#session-filter').value.trim().toLowerCase();
  const shown = rows
    .filter((s) => !f || Object.values(KEYS).some((k) => String(k(s)).toLowerCase().includes(f)))
    .sort((a, b) => {
      const x = KEYS[sort.key](a);
      const y = KEYS[sort.key](b);
      return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
    });
  fill(
    $('#sessions tbody'),
    shown.map((s) =>
      el(
        'tr',
        { 'data-id': s.id, 'data-user': s.user || '' },
        cell(s.user),
        cell(s.node),
        cell(s.transport),
        cell(s.client),
        cell((s.relayed || []).join(', ')),
        cell(age(s.age_seconds)),
        cell(bytes(KEYS.to_peer(s)), { 'data-field': 'to-peer', 'data-bytes': KEYS.to_peer(s) }),
        cell(bytes(KEYS.to_client(s)), {
          'data-field': 'to-client',
          'data-bytes': KEYS.to_client(s),
        }),
        el(
          'td',
          {},
          el('button', {
            type: 'button',
            class: 'danger kill',
            text: 'Kill',
            'aria-label': `Kill the session of ${s.user} from ${s.client}`,
            onclick: () => kill(ctx, s),
          }),
        ),
      ),
    ),
  );
  $('#session-count').textContent = `${shown.length} of ${rows.length} sessions`;
  for (const b of $$('#sessions th button')) {
    const th = b.parentElement;
    if (b.dataset.sort === sort.key) th.setAttribute('aria-sort', sort.dir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
}

async function refresh(ctx) {
  try {
    rows = (await api('GET', '/api/v1/sessions')).sessions;
    render(ctx);
  } catch (err) {
    if (!ctx.failed(err)) status(`Sessions: ${err.message}`);
  }
}

async function kill(ctx, s) {
  const yes = await confirmDialog(`End the session of ${s.user} from ${s.client} on ${s.node}?`);
  if (!yes) return;
  try {
    await api('DELETE', `/api/v1/sessions/${enc(s.id)}`);
    status(`Ended the session of ${s.user} from ${s.client}.`);
  } catch (err) {
    if (!ctx.failed(err)) status(`Kill: ${err.message}`);
  }
  refresh(ctx);
}

export default {
  show(ctx) {
    if (!bound) {
      bound = true;
      $('#session-filter').addEventListener('input', () => render(ctx));
      for (const b of $$('#sessions th button')) {
        b.addEventListener('click', () => {
          const key = b.dataset.sort;
          sort = { key, dir: sort.key === key ? -sort.dir : 1 };
          render(ctx);
        });
      }
    }
    refresh(ctx);
    timer = setInterval(() => refresh(ctx), 1000);
  },
  hide() {
    clearInterval(timer);
    timer = null;
  },
};
