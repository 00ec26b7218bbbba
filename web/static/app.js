// Shared by every page: the API client, the message region, forms, tables
// and list editors. Pages import what they need; nothing here knows a page.
import { tableTools } from './tables.js';

const statusBox = document.getElementById('status');

/** The page's CSRF token, for requests that are not a form's. */
const pageToken = () => document.querySelector('meta[name="csrf-token"]')?.content ?? '';

/** Builds an element: `attrs` are attributes, `on*` functions listeners; children are nodes or text, in arrays nested to any depth. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Shows a message in the live region; errors are announced at once. */
export function say(message, { error = false, problems = [] } = {}) {
  statusBox.classList.toggle('error', error);
  statusBox.setAttribute('aria-live', error ? 'assertive' : 'polite');
  const list = problems.length
    ? el('ul', {}, problems.map((p) => el('li', {}, p.field ? `${p.field}: ${p.message}` : p.message)))
    : null;
  statusBox.replaceChildren(...[el('p', {}, message), list].filter(Boolean));
}

export function clearMessage() {
  statusBox.replaceChildren();
}

/** An answer other than 2xx, with the server's message and problems. */
export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const message = body && typeof body === 'object' && body.error
      ? body.error
      : `the request failed (HTTP ${status})`;
    super(retryAfter ? `${message} Try again in ${retryAfter} s.` : message);
    this.status = status;
    this.body = body && typeof body === 'object' ? body : {};
    this.problems = Array.isArray(this.body.problems) ? this.body.problems : [];
  }
}

/**
 * Calls the JSON API and gives `{data, response}`. Changes carry the CSRF
 * token (`csrf`: a form's own field, else the page's); `headers` are added
 * (`If-Match`). A failure is shown in the live region and thrown.
 */
async function call(method, path, body, csrf = pageToken(), extra = {}, { quiet = false } = {}) {
  const headers = { Accept: 'application/json', ...extra };
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const init = { method, headers, credentials: 'same-origin' };
  if (body instanceof FormData) {
    // The browser writes the multipart Content-Type with its boundary.
    init.body = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    const error = new ApiError(0, { error: `obsbox cannot be reached (${e.message}).` });
    if (!quiet) say(error.message, { error: true });
    throw error;
  }
  if (response.status === 401 && !path.startsWith('/api/login')) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data, response.headers.get('Retry-After'));
    if (!quiet) say(error.message, { error: true, problems: error.problems });
    throw error;
  }
  return { data, response };
}

/** Calls the JSON API (see `call`) and gives the answer's body. */
export async function api(method, path, body, csrf = pageToken(), headers = {}) {
  return (await call(method, path, body, csrf, headers)).data;
}

/** GETs `path` like `api`, but a failure is only thrown, not announced: for a part of the page that shows its own error (a chart). */
export async function read(path) {
  return (await call('GET', path, undefined, '', {}, { quiet: true })).data;
}

/**
 * A settings section and its version: `{value, version}`. Writing it back
 * with `saveSection` is refused (409) if anyone changed it meanwhile.
 */
export async function loadSection(section) {
  const { data, response } = await call('GET', `/api/settings/${section}`);
  return { value: data, version: response.headers.get('ETag') };
}

/**
 * Writes a section read with `loadSection` (`If-Match` its version); gives
 * the new `{value, version}`. On a 409 the ApiError's `body.current` and
 * `body.version` hold the section as someone else left it.
 */
export async function saveSection(section, value, version, csrf = pageToken()) {
  const headers = version ? { 'If-Match': version } : {};
  const { data, response } = await call('PUT', `/api/settings/${section}`, value, csrf, headers);
  return { value: data[section], version: response.headers.get('ETag') };
}

/** Runs `load` now and every `ms` while the page is visible; returns a function that runs it at once. */
export function every(ms, load) {
  let timer = null;
  const run = async () => {
    clearTimeout(timer);
    try {
      await load();
    } catch (e) {
      if (!(e instanceof ApiError)) say(String(e), { error: true });
    }
    timer = setTimeout(run, typeof ms === 'function' ? ms() : ms);
  };
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) run();
  });
  run();
  return run;
}

// ---- formatting

export function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** The box's time zone: every time is shown in it, as the box reckons in it. */
export const boxZone = document.querySelector('meta[name="time-zone"]')?.content || 'UTC';

let boxClock;
try {
  // Swedish writes dates the ISO way (2026-12-07 03:04:05), which reads the same everywhere.
  boxClock = new Intl.DateTimeFormat('sv-SE', {
    timeZone: boxZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
} catch {
  boxClock = new Intl.DateTimeFormat('sv-SE', { timeZone: 'UTC', dateStyle: 'short', timeStyle: 'medium' });
}

let boxParts;
try {
  boxParts = new Intl.DateTimeFormat('en-US', {
    timeZone: boxZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
  });
} catch {
  boxParts = new Intl.DateTimeFormat('en-US', {
    timeZone: 'UTC', hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
  });
}

/** How far the box's clock is ahead of UTC at the instant `ms`, in milliseconds. */
function boxOffset(ms) {
  const p = Object.fromEntries(boxParts.formatToParts(new Date(ms)).map((part) => [part.type, Number(part.value)]));
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}

/**
 * The instant (Unix milliseconds) a wall-clock time typed into a
 * `datetime-local` field (`2026-12-07T03:04:05`) names in the box's zone,
 * whatever the browser's zone; NaN for anything else. In the hour a clock
 * goes back the earlier of the two instants is taken.
 */
export function boxInstant(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?/.exec(text || '');
  if (!m) return NaN;
  const wall = Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  // The offset depends on the instant; a second look settles it across a change of offset.
  const guess = wall - boxOffset(wall);
  return wall - boxOffset(guess);
}

/** A time given as Unix milliseconds, RFC 3339 text or nothing, in the box's zone, with the zone named. */
export function when(time) {
  if (time === null || time === undefined || time === '') return '';
  const date = new Date(time);
  if (Number.isNaN(date.getTime())) return String(time);
  return `${boxClock.format(date)} ${boxZone}`;
}

const TONES = {
  ok: ['ready', 'up', 'ok', 'success', 'resolved', 'active', 'keep', 'yes', 'good', 'synchronised', 'within the RTO'],
  bad: ['crash-looping', 'down', 'unavailable', 'failed', 'firing', 'critical', 'not installed', 'remove', 'failing', 'monitoring error', 'bad', 'over the RTO'],
};

/** A word with its colour (and the word itself, so colour is never the only cue); a badge never wraps. */
export function badge(text) {
  const tone = TONES.ok.includes(text) ? 'ok' : TONES.bad.includes(text) ? 'bad' : 'warn';
  return el('span', { class: `badge state-${tone}` }, text);
}

/** Copies `text` to the clipboard; without the Clipboard API (plain HTTP on the LAN) through a selected field. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const field = el('textarea', { readonly: true, class: 'offscreen', 'aria-hidden': 'true' }, text);
  document.body.append(field);
  field.select();
  const copied = document.execCommand('copy');
  field.remove();
  if (!copied) throw new Error('The browser refused to copy; select the text instead.');
}

/**
 * A snapshot id as tables show it: a restic id (64 hex digits) as its first
 * 8, as restic itself shows them, with the whole id as its title and a
 * button that copies it; a PBS snapshot (`host/<id>/<time>`) as it is.
 */
export function snapshotId(id) {
  if (!id) return '';
  const short = /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 8) : id;
  const copy = async () => {
    await copyText(id);
    say(`Copied snapshot ${short}.`);
  };
  return el('span', { class: 'snapshot' }, el('code', { title: id }, short), ' ',
    action('Copy', `Copy snapshot id ${short}`, copy));
}

export function labelsText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join('\n');
}

export function parseLabels(text) {
  const labels = {};
  for (const line of (text || '').split('\n').map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf('=');
    if (at < 0) labels[line] = '';
    else labels[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return labels;
}

export const lines = (text) => (text || '').split('\n').map((l) => l.trim()).filter(Boolean);

// ---- tables

/**
 * Renders rows into `container` as a table. A column is `{label, value,
 * long, sort}`, where `value(row)` gives text or a node, `long` marks free
 * text that may break inside a word (a detail, an error) and `sort(row)` the
 * raw value a column is sorted by where its text would mislead (a time, a
 * size; `false`: a column of buttons, not sorted). A container marked `data-table-tools` gets search and sort (tables.js). Focus inside the table survives a
 * refresh (buttons are found again by their label).
 */
export function table(container, { columns, rows, empty = 'Nothing here yet.' }) {
  const focused = container.contains(document.activeElement)
    ? document.activeElement.getAttribute('aria-label') : null;
  if (!rows.length) {
    container.replaceChildren(el('p', { class: 'empty' }, empty));
    if (container.dataset.tableTools) tableTools(container);
    return;
  }
  const head = el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col', 'data-unsorted': c.sort === false }, c.label))));
  const key = (c, row) => (typeof c.sort === 'function' ? c.sort(row) : null);
  const body = el('tbody', {}, rows.map((row) => el('tr', {},
    columns.map((c) => el('td', { 'data-label': c.label, class: c.long ? 'long' : null, 'data-sort': key(c, row) }, c.value(row) ?? '')))));
  container.replaceChildren(el('table', {}, head, body));
  if (container.dataset.tableTools) tableTools(container);
  if (focused) {
    container.querySelector(`[aria-label="${CSS.escape(focused)}"]`)?.focus();
  }
}

/** A small button whose accessible name says what it acts on ("Restart node_exporter"). */
export function action(text, name, onClick, cls = 'small') {
  const click = async (event) => {
    try {
      await onClick(event);
    } catch (e) {
      if (!(e instanceof ApiError)) say(String(e.message || e), { error: true });
    }
  };
  return el('button', { type: 'button', class: cls, 'aria-label': name, onclick: click }, text);
}

export const actions = (...buttons) => el('div', { class: 'actions' }, buttons);

// ---- forms

/** The form's values by name: checkboxes as booleans, numbers as numbers or null, files as File. Disabled fields are left out. */
export function values(form) {
  const out = {};
  for (const field of form.elements) {
    if (!field.name || field.name === '_csrf' || field.tagName === 'BUTTON' || field.disabled) continue;
    if (field.type === 'checkbox') out[field.name] = field.checked;
    else if (field.type === 'number') out[field.name] = field.value === '' ? null : Number(field.value);
    else if (field.type === 'file') out[field.name] = field.files[0] ?? null;
    else out[field.name] = field.value.trim();
  }
  return out;
}

/** Sets the form's fields from `data` (missing values empty the field). */
export function fill(form, data) {
  for (const field of form.elements) {
    if (!field.name || field.name === '_csrf' || field.tagName === 'BUTTON' || field.type === 'file') continue;
    const value = data[field.name];
    if (field.type === 'checkbox') field.checked = Boolean(value);
    else field.value = value === null || value === undefined ? '' : String(value);
  }
  form.dispatchEvent(new Event('change'));
}

/** Fills `<select>`s: each `[value, text]` or value; keeps the current choice when it is still there. */
export function options(select, items, blank) {
  const current = select.value;
  const choices = items.map((item) => {
    const [value, text] = Array.isArray(item) ? item : [item, item];
    return el('option', { value }, text);
  });
  if (blank !== undefined) choices.unshift(el('option', { value: '' }, blank));
  select.replaceChildren(...choices);
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

function clearProblems(form) {
  for (const slot of form.querySelectorAll('[data-problem-for]')) slot.textContent = '';
  for (const field of form.querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
}

/**
 * Shows only the parts of `form` (`[data-kind]`) for the kind its `select`
 * (`kind`, `backend`) names, and disables the fields of the others, so fields
 * of two kinds may share a name and a hidden field is never sent. Follows the
 * select, `fill` and reset.
 */
export function kindParts(form, select = 'kind') {
  const show = () => {
    const kind = form.elements[select].value;
    for (const part of form.querySelectorAll('[data-kind]')) {
      const off = !part.dataset.kind.split(' ').includes(kind);
      part.hidden = off;
      for (const field of part.querySelectorAll('input, select, textarea')) field.disabled = off;
    }
  };
  form.addEventListener('change', show);
  form.addEventListener('reset', () => setTimeout(show));
  show();
  return show;
}

/**
 * Makes `data` the form's blank state: what it shows at first and after a
 * reset, so a new item starts from the real defaults.
 */
function blankState(form, data) {
  fill(form, data);
  for (const field of form.elements) {
    if (!field.name || field.name === '_csrf' || field.tagName === 'BUTTON' || field.type === 'file') continue;
    if (field.type === 'checkbox') field.defaultChecked = field.checked;
    else if (field.tagName === 'SELECT') for (const option of field.options) option.defaultSelected = option.selected;
    else field.defaultValue = field.value;
  }
}

/**
 * Puts each problem next to its field. A problem's `field` is a settings
 * path (`targets[2].address`, `alerting.escalation.after`); the longest tail
 * that names a field of this form wins (`escalation_after`, then `after`).
 */
function showProblems(form, problems) {
  let first = null;
  for (const problem of problems) {
    const parts = String(problem.field || '').split('.').map((p) => p.replace(/\[\d+\]$/, ''));
    for (let i = 0; i < parts.length; i += 1) {
      const name = parts.slice(i).join('_');
      const slot = [...form.querySelectorAll(`[data-problem-for="${CSS.escape(name)}"]`)]
        .find((s) => !s.closest('[hidden]'));
      if (!slot) continue;
      slot.textContent = problem.message;
      const field = [...form.elements].find((f) => f.name === name && !f.disabled);
      if (field) {
        field.setAttribute('aria-invalid', 'true');
        first = first || field;
      }
      break;
    }
  }
  first?.focus();
}

/**
 * Submits `form` through `handler(values, send)`, where `send(method, path,
 * body)` calls the API with the token of the form's own `_csrf` field: a
 * form without it is sent without a token, and the server refuses it.
 */
export function onSubmit(form, handler) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearProblems(form);
    const button = event.submitter;
    if (button) button.disabled = true;
    const csrf = form.elements._csrf?.value ?? '';
    const send = (method, path, body, headers) => api(method, path, body, csrf, headers);
    try {
      await handler(values(form), send);
    } catch (e) {
      if (e instanceof ApiError) showProblems(form, e.problems);
      else say(String(e.message || e), { error: true });
    } finally {
      if (button) button.disabled = false;
    }
  });
}

/**
 * A list shown as a table with Edit and Remove buttons, and a form that adds
 * an item or edits the chosen one. `load()` gives the items; `save(item,
 * original, send)` stores one (`original` is the key of the item edited, or
 * null); `remove(item)` deletes one; `toForm`/`fromForm` convert between an
 * item and the form's values; `key(item, index)` names it. A new item starts
 * from the form's `data-blank` (JSON: the server's defaults), through `toForm`.
 */
export function listEditor({ form, container, columns, load, save, remove, toForm, fromForm, key, noun, extra }) {
  const legend = form.querySelector('legend');
  let items = [];
  let editing = null;
  const name = (item) => key(item, items.indexOf(item));
  const startAdding = () => {
    editing = null;
    if (legend) legend.textContent = legend.dataset.add;
  };
  const refresh = async () => {
    items = await load();
    table(container, {
      columns: [...columns, {
        label: 'Actions',
        sort: false,
        value: (item) => actions(
          ...(extra ? extra(item) : []),
          action('Edit', `Edit ${noun} ${name(item)}`, () => {
            fill(form, toForm(item));
            editing = name(item);
            if (legend) legend.textContent = `${legend.dataset.edit} ${editing}`;
            form.querySelector('input:not([type=hidden]), select, textarea')?.focus();
          }),
          action('Remove', `Remove ${noun} ${name(item)}`, async () => {
            if (!window.confirm(`Remove ${noun} ${name(item)}?`)) return;
            await lostTo(() => remove(item, items));
            say(`Removed ${noun} ${name(item)}.`);
            await refresh();
          }, 'small secondary'),
        ),
      }],
      rows: items,
      empty: `No ${noun}s yet.`,
    });
    return items;
  };
  /** Runs a write; one that lost to another tab or user (409) shows the list as it is now. */
  const lostTo = async (write) => {
    try {
      await write();
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        await refresh();
        say(`Not saved: someone changed the ${noun}s in another tab or session since this page loaded them. The list now shows their version; make your change again if it still applies.`, { error: true });
      }
      throw e;
    }
  };
  if (form.dataset.blank) blankState(form, toForm(JSON.parse(form.dataset.blank)));
  form.addEventListener('reset', startAdding);
  onSubmit(form, async (formValues, send) => {
    const item = fromForm(formValues);
    await lostTo(() => save(item, editing, send, items));
    say(`Saved the ${noun}.`);
    form.reset();
    await refresh();
  });
  return { refresh, items: () => items };
}

/**
 * Load and save for a list kept in one settings section (`targets`,
 * `probes`, `alerting.routes`): the whole section is written back, only if
 * nobody changed it since it was loaded (`If-Match`; a 409 otherwise).
 */
export function settingsList(section, key, path = (s) => s[section], wrap = (list) => list) {
  let settings = null;
  let version = null;
  const load = async () => {
    const [all, own] = await Promise.all([api('GET', '/api/settings'), loadSection(section)]);
    settings = { ...all, [section]: own.value };
    version = own.version;
    return path(settings) || [];
  };
  const write = (list, send = api) => send('PUT', `/api/settings/${section}`, wrap(list, settings), { 'If-Match': version });
  return {
    load,
    settings: () => settings,
    version: () => version,
    save: (item, original, send, items) => {
      const list = [...items];
      const at = original === null ? -1 : list.findIndex((i, n) => key(i, n) === original);
      if (at < 0) list.push(item); else list[at] = item;
      return write(list, send);
    },
    remove: (item, items) => write(items.filter((i) => i !== item)),
  };
}

// ---- every page

for (const select of document.querySelectorAll('select[data-options]')) {
  options(select, select.dataset.options.split(' '));
}

/** The header's summary: alerts firing by severity, halted backups, an update waiting. */
const SEVERITY_TONE = { critical: 'bad', warning: 'warn' };
const attention = document.getElementById('attention');
if (attention) {
  const show = (a) => {
    const firing = Object.entries(a.alerts_firing || {}).filter(([, n]) => n > 0);
    const items = firing.length
      ? firing.map(([severity, n]) => el('a', { href: '/alerting#h-history', class: `badge state-${SEVERITY_TONE[severity] || 'warn'}`, 'aria-label': `${n} ${severity} alert${n === 1 ? '' : 's'} firing` }, `${n} ${severity}`))
      : [el('span', { class: 'badge state-ok' }, 'no alerts')];
    if (a.backups_halted?.length) {
      items.push(el('a', { href: '/backups', class: 'badge state-warn', title: a.backups_halted.join('; ') }, 'backups halted'));
    }
    if (a.update_waiting) {
      items.push(el('a', { href: '/system', class: 'badge state-warn', title: `version ${a.update_waiting.version} in slot ${a.update_waiting.slot}` }, `update ${a.update_waiting.version} waits for a reboot`));
    }
    attention.replaceChildren(...items);
  };
  // Quietly: a summary that cannot be read must not cover the page's own messages.
  every(15000, async () => {
    const response = await fetch('/api/attention', { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (response.ok) show(await response.json());
  });
}

const logout = document.getElementById('logout-form');
if (logout) {
  onSubmit(logout, async (_, send) => {
    await send('POST', '/api/logout');
    location.assign('/login');
  });
}
