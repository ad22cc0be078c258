// DOM helpers. Text goes in through textContent only (never innerHTML), so
// names from the API cannot become markup.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/// An element with attributes (`data-*`, `aria-*`, plain) and children.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c);
  }
  return e;
}

/// Replaces a table body's rows.
export function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

export function cell(text, attrs = {}) {
  return el('td', { text: String(text ?? ''), ...attrs });
}

export function bits(bps) {
  const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];
  let v = Number(bps) || 0;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function ago(unixS) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixS));
  return `${s} s ago`;
}

export function age(seconds) {
  const s = Number(seconds) || 0;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function date(unixS) {
  return unixS ? new Date(unixS * 1000).toISOString().replace('T', ' ').slice(0, 19) : '';
}

/// Clears a form's field errors.
export function clearErrors(form) {
  for (const p of $$('.error', form)) p.textContent = '';
  for (const i of $$('[aria-invalid]', form)) i.removeAttribute('aria-invalid');
}

/// Shows `message` beside `input` (its `#ID-error` paragraph, which the
/// input names in aria-describedby) and focuses it.
export function fieldError(input, message) {
  const p = document.getElementById(`${input.id}-error`);
  if (p) p.textContent = message;
  input.setAttribute('aria-invalid', 'true');
  input.focus();
}

/// The field an API error is about: a 409 is the name's; a 400 names its
/// field ("invalid password: ..." from the store, "password: ..."); else
/// the fallback.
export function errorField(err, fields, byName, fallback) {
  if (err.status === 409) return byName;
  for (const [key, input] of Object.entries(fields)) {
    for (const prefix of [`invalid ${key}:`, `${key}:`, `${key} `]) {
      if (err.message.startsWith(prefix)) return input;
    }
  }
  return fallback;
}

/// A yes/no question in the page's <dialog>; resolves true on Confirm.
export function confirmDialog(text) {
  const d = $('#confirm');
  $('#confirm-text').textContent = text;
  return new Promise((resolve) => {
    const done = (yes) => {
      $('#confirm-ok').removeEventListener('click', ok);
      $('#confirm-cancel').removeEventListener('click', no);
      d.removeEventListener('cancel', no);
      d.close();
      resolve(yes);
    };
    const ok = () => done(true);
    const no = (e) => {
      if (e) e.preventDefault();
      done(false);
    };
    $('#confirm-ok').addEventListener('click', ok);
    $('#confirm-cancel').addEventListener('click', no);
    d.addEventListener('cancel', no);
    d.showModal();
    $('#confirm-cancel').focus();
  });
}

/// A random secret: 18 bytes, base64url (24 characters).
export function generate() {
  const b = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_');
}

export function status(text) {
  $('#status').textContent = text || '';
}
