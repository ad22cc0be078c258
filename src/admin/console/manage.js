// Users, REST secrets, OAuth keys and quotas: list, create, edit, delete.
// API errors go beside the field they are about; a generated password,
// secret or key is shown once, at creation.

import { api, query, enc } from './api.js';
import {
  $, el, fill, cell, date, clearErrors, fieldError, errorField, confirmDialog, generate, status,
} from './ui.js';

const bound = new Set();
function once(name, f) {
  if (!bound.has(name)) {
    bound.add(name);
    f();
  }
}

function button(text, label, onclick, cls = '') {
  return el('button', { type: 'button', text, 'aria-label': label, class: cls, onclick });
}

function report(ctx, what, err) {
  if (!ctx.failed(err)) status(`${what}: ${err.message}`);
}

// --- Users -----------------------------------------------------------------

async function listUsers(ctx) {
  try {
    const { users } = await api('GET', `/api/v1/users${query({ realm: ctx.target() })}`);
    fill(
      $('#users tbody'),
      users.map((u) =>
        el(
          'tr',
          { 'data-user': u.name, 'data-realm': u.realm },
          cell(u.name),
          cell(u.realm),
          cell(date(u.created)),
          el(
            'td',
            { class: 'actions' },
            button('Password', `Set the password of ${u.name}`, () => setPassword(ctx, u)),
            button('Delete', `Delete ${u.name}`, () => deleteUser(ctx, u), 'danger'),
          ),
        ),
      ),
    );
    $('#users').dataset.loaded = 'true';
  } catch (err) {
    report(ctx, 'Users', err);
  }
}

async function createUser(ctx) {
  const form = $('#user-form');
  clearErrors(form);
  $('#user-created').textContent = '';
  const name = $('#user-name');
  const pw = $('#user-password');
  if (!name.value.trim()) {
    fieldError(name, 'A name is required.');
    return;
  }
  const generated = !pw.value;
  const password = pw.value || generate();
  try {
    const u = await api('POST', '/api/v1/users', {
      username: name.value.trim(),
      password,
      realm: ctx.target(),
    });
    $('#user-created').textContent = generated
      ? `Created ${u.name} in ${u.realm}. Password (shown once): ${password}`
      : `Created ${u.name} in ${u.realm}.`;
    form.reset();
    listUsers(ctx);
  } catch (err) {
    if (ctx.failed(err)) return;
    fieldError(errorField(err, { username: name, name, password: pw }, name, name), err.message);
  }
}

async function deleteUser(ctx, u) {
  if (!(await confirmDialog(`Delete the user ${u.name} of ${u.realm}?`))) return;
  try {
    await api('DELETE', `/api/v1/users/${enc(u.name)}${query({ realm: u.realm })}`);
    status(`Deleted ${u.name}.`);
  } catch (err) {
    report(ctx, 'Delete', err);
  }
  listUsers(ctx);
}

// The password dialog: one set of listeners, for whichever user it is
// opened for (Escape closes it like Cancel).
let passwordFor = null;

function setPassword(ctx, u) {
  const d = $('#password-dialog');
  const input = $('#password-new');
  once('password', () => {
    $('#password-cancel').addEventListener('click', () => d.close());
    $('#password-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const who = passwordFor;
      if (!who) return;
      if (!input.value) {
        fieldError(input, 'A password is required.');
        return;
      }
      try {
        await api('PATCH', `/api/v1/users/${enc(who.name)}${query({ realm: who.realm })}`, {
          password: input.value,
        });
        d.close();
        status(`Changed the password of ${who.name}.`);
      } catch (err) {
        if (!ctx.failed(err)) fieldError(input, err.message);
      }
    });
    d.addEventListener('close', () => {
      passwordFor = null;
      input.value = '';
    });
  });
  passwordFor = u;
  $('#password-title').textContent = `New password for ${u.name}`;
  clearErrors(d);
  input.value = '';
  d.showModal();
  input.focus();
}

export const users = {
  show(ctx) {
    once('users', () =>
      $('#user-form').addEventListener('submit', (e) => {
        e.preventDefault();
        createUser(ctx);
      }),
    );
    listUsers(ctx);
  },
};

// --- Secrets ---------------------------------------------------------------

async function listSecrets(ctx) {
  try {
    const { secrets: rows } = await api('GET', `/api/v1/secrets${query({ realm: ctx.target() })}`);
    fill(
      $('#secrets tbody'),
      rows.map((s) =>
        el(
          'tr',
          { 'data-secret': s.id },
          cell(s.id),
          cell(s.realm),
          cell(date(s.created)),
          el(
            'td',
            {},
            button('Delete', `Delete secret ${s.id}`, async () => {
              if (!(await confirmDialog(`Delete secret ${s.id} of ${s.realm}?`))) return;
              try {
                await api('DELETE', `/api/v1/secrets/${enc(s.id)}`);
              } catch (err) {
                report(ctx, 'Delete', err);
              }
              listSecrets(ctx);
            }, 'danger'),
          ),
        ),
      ),
    );
  } catch (err) {
    report(ctx, 'Secrets', err);
  }
}

export const secrets = {
  show(ctx) {
    once('secrets', () =>
      $('#secret-form').addEventListener('submit', async (e) => {
        e.preventDefault();
        const form = $('#secret-form');
        const input = $('#secret-value');
        clearErrors(form);
        const value = input.value || generate();
        try {
          const r = await api('POST', '/api/v1/secrets', { secret: value, realm: ctx.target() });
          $('#secret-created').textContent = `Added secret ${r.id} to ${r.realm}. Secret (shown once): ${value}`;
          form.reset();
          listSecrets(ctx);
        } catch (err) {
          if (!ctx.failed(err)) fieldError(input, err.message);
        }
      }),
    );
    $('#secret-created').textContent = '';
    listSecrets(ctx);
  },
};

// --- OAuth keys (admin) ----------------------------------------------------

async function listKeys(ctx) {
  try {
    const { oauth_keys: keys } = await api('GET', '/api/v1/oauth-keys');
    fill(
      $('#oauth-keys tbody'),
      keys.map((k) =>
        el(
          'tr',
          { 'data-kid': k.kid },
          cell(k.kid),
          cell(k.alg),
          cell(k.lifetime),
          cell(date(k.created)),
          el(
            'td',
            {},
            button('Delete', `Delete key ${k.kid}`, async () => {
              if (!(await confirmDialog(`Delete OAuth key ${k.kid}?`))) return;
              try {
                await api('DELETE', `/api/v1/oauth-keys/${enc(k.kid)}`);
              } catch (err) {
                report(ctx, 'Delete', err);
              }
              listKeys(ctx);
            }, 'danger'),
          ),
        ),
      ),
    );
  } catch (err) {
    report(ctx, 'OAuth keys', err);
  }
}

function randomKey(alg) {
  const b = crypto.getRandomValues(new Uint8Array(alg === 'A128GCM' ? 16 : 32));
  return btoa(String.fromCharCode(...b));
}

export const oauth = {
  show(ctx) {
    once('oauth', () =>
      $('#oauth-form').addEventListener('submit', async (e) => {
        e.preventDefault();
        const form = $('#oauth-form');
        clearErrors(form);
        const f = {
          kid: $('#oauth-kid'),
          alg: $('#oauth-alg'),
          key: $('#oauth-key'),
          lifetime: $('#oauth-lifetime'),
        };
        if (!f.kid.value.trim()) {
          fieldError(f.kid, 'A key id is required.');
          return;
        }
        const key = f.key.value || randomKey(f.alg.value);
        try {
          const r = await api('POST', '/api/v1/oauth-keys', {
            kid: f.kid.value.trim(),
            alg: f.alg.value,
            key,
            lifetime: Number(f.lifetime.value || 0),
          });
          $('#oauth-created').textContent = f.key.value
            ? `Added key ${r.kid}.`
            : `Added key ${r.kid}. Key (shown once): ${key}`;
          form.reset();
          listKeys(ctx);
        } catch (err) {
          if (!ctx.failed(err)) fieldError(errorField(err, f, f.kid, f.kid), err.message);
        }
      }),
    );
    $('#oauth-created').textContent = '';
    listKeys(ctx);
  },
};

// --- Quotas ----------------------------------------------------------------

function quotaPath(ctx) {
  const kind = $('#quota-kind').value;
  if (kind === 'realm') {
    const realm = ctx.target();
    return realm ? `/api/v1/quotas/realms/${enc(realm)}` : null;
  }
  const name = $('#quota-name').value.trim();
  return name ? `/api/v1/quotas/users/${enc(name)}${query({ realm: ctx.target() })}` : null;
}

function numberOrNull(input) {
  return input.value === '' ? null : Number(input.value);
}

export const quotas = {
  show(ctx) {
    once('quotas', () => {
      const form = $('#quota-form');
      const kind = $('#quota-kind');
      const name = $('#quota-name');
      kind.addEventListener('change', () => {
        name.disabled = kind.value === 'realm';
      });
      const target = () => {
        const p = quotaPath(ctx);
        if (!p) {
          fieldError(name, kind.value === 'realm' ? 'Pick a realm above.' : 'A user name is required.');
        }
        return p;
      };
      $('#quota-load').addEventListener('click', async () => {
        clearErrors(form);
        $('#quota-saved').textContent = '';
        const p = target();
        if (!p) return;
        try {
          const q = await api('GET', p);
          $('#quota-allocations').value = q.allocations ?? '';
          $('#quota-bps').value = q.bps ?? '';
        } catch (err) {
          if (!ctx.failed(err)) fieldError(name, err.message);
        }
      });
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        clearErrors(form);
        $('#quota-saved').textContent = '';
        const p = target();
        if (!p) return;
        const f = { allocations: $('#quota-allocations'), bps: $('#quota-bps') };
        try {
          await api('PUT', p, { allocations: numberOrNull(f.allocations), bps: numberOrNull(f.bps) });
          $('#quota-saved').textContent = 'Saved.';
        } catch (err) {
          if (!ctx.failed(err)) fieldError(errorField(err, f, name, name), err.message);
        }
      });
    });
  },
};
