// The console's shell: sign-in, the scope the token has, and the tabs.

import { api, token, ApiError } from './api.js';
import { $, $$, status } from './ui.js';
import overview from './overview.js';
import sessions from './sessions.js';
import { users, secrets, oauth, quotas } from './manage.js';
import usage from './usage.js';

const PAGES = { overview, sessions, users, secrets, oauth, quotas, usage };

const ctx = {
  scope: null,
  /// The token's realm (a realm token), else null.
  realm: null,
  get admin() {
    return this.scope === 'admin';
  },
  /// The realm calls are about: the token's, or the one the admin picked
  /// (undefined: the server's default realm).
  target() {
    return this.realm || $('#realm').value.trim() || undefined;
  },
  /// Signs out when the token stops working (expired or revoked).
  failed(err) {
    if (err instanceof ApiError && err.status === 401) {
      signOut('The token expired or is no longer valid: sign in again.');
      return true;
    }
    return false;
  },
};

let current = null;

function show(name) {
  if (current && PAGES[current].hide) PAGES[current].hide();
  current = name;
  for (const b of $$('#tabs button[data-tab]')) {
    if (b.dataset.tab === name) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  for (const p of $$('section[data-page]')) p.hidden = p.dataset.page !== name;
  status('');
  PAGES[name].show(ctx);
}

/// Forgets everything the last token showed, so that the next one (a
/// realm's, say) never sees it.
function wipe() {
  for (const t of $$('tbody')) t.replaceChildren();
  for (const e of $$('[data-loaded]')) delete e.dataset.loaded;
  for (const e of $$('.once, .error, #usage-bars, #status')) e.replaceChildren();
  for (const e of $$('dl.totals dd, tfoot td')) e.textContent = '';
  for (const f of $$('main form')) f.reset();
  $('#usage-csv').hidden = true;
  const c = $('#chart');
  c.getContext('2d').clearRect(0, 0, c.width, c.height);
}

function signOut(message) {
  if (current && PAGES[current].hide) PAGES[current].hide();
  current = null;
  token.clear();
  wipe();
  ctx.scope = null;
  ctx.realm = null;
  for (const p of $$('section[data-page]')) p.hidden = true;
  $('#tabs').hidden = true;
  $('#signout').hidden = true;
  $('#who').textContent = '';
  $('#signin').hidden = false;
  $('#token-error').textContent = message || '';
  $('#token-input').value = '';
  $('#token-input').focus();
}

async function signIn(t) {
  token.set(t);
  let me;
  try {
    me = await api('GET', '/api/v1/whoami');
  } catch (err) {
    signOut(`Sign-in failed: ${err.message}`);
    return;
  }
  ctx.scope = me.scope;
  ctx.realm = me.realm || null;
  document.body.dataset.scope = me.scope;
  $('#who').textContent = `${me.subject} · ${me.scope}`;
  $('#signin').hidden = true;
  $('#signout').hidden = false;
  $('#tabs').hidden = false;
  // A realm token sees only its realm's pages; the realm is fixed.
  for (const b of $$('#tabs button[data-admin]')) b.hidden = !ctx.admin;
  $('#realm').value = ctx.realm || '';
  $('#realm').placeholder = me.default_realm || '(server default)';
  $('#realm').readOnly = !ctx.admin;
  show(ctx.admin ? 'overview' : 'users');
}

function boot() {
  // A console-link URL carries the token in the fragment (never sent to a
  // server, never logged); take it and clear it from the address bar.
  const frag = new URLSearchParams(location.hash.slice(1));
  const fromLink = frag.get('token');
  if (fromLink) {
    history.replaceState(null, '', location.pathname + location.search);
    token.set(fromLink);
  }
  for (const b of $$('#tabs button[data-tab]')) {
    b.addEventListener('click', () => show(b.dataset.tab));
  }
  $('#realm').addEventListener('change', () => {
    if (current) show(current);
  });
  $('#signout').addEventListener('click', () => signOut(''));
  $('#signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('#token-input').value.trim();
    if (!t) {
      $('#token-error').textContent = 'Paste a token first.';
      return;
    }
    signIn(t);
  });
  const saved = token.get();
  if (saved) signIn(saved);
  else signOut('');
}

boot();
