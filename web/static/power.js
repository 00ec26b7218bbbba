// Power: the UPS now, the UPS and its NUT password, the power policy, the
// NUT server's users, the shutdown sequence as it would run, and the history
// of power events.
import { showRange } from './charts.js';
import {
  api, el, every, fill, onSubmit, say, table, listEditor, badge, when, lines, kindParts, options, loadSection, ApiError,
} from './app.js';

const $ = (id) => document.getElementById(id);

const FIGURES = [
  ['charge_percent', 'Charge', (v) => `${v} %`],
  ['runtime_seconds', 'Runtime', (v) => `${Math.round(v)} s`],
  ['load_percent', 'Load', (v) => `${v} %`],
  ['input_voltage', 'Input', (v) => `${v} V`],
  ['output_voltage', 'Output', (v) => `${v} V`],
  ['battery_voltage', 'Battery', (v) => `${v} V`],
  ['temperature_celsius', 'Temperature', (v) => `${v} °C`],
];
const FLAGS = ['online', 'on_battery', 'low_battery', 'replace_battery', 'overload', 'testing'];

function renderLive(live) {
  const facts = [['State', badge(live.state.replaceAll('_', ' '))]];
  if (!live.configured) facts.push(['UPS', 'not configured']);
  if (live.lost) facts.push(['Link', badge('lost')]);
  if (live.on_battery_seconds !== null) facts.push(['On battery for', `${Math.round(live.on_battery_seconds)} s`]);
  if (live.shutdown_reason) facts.push(['Shutdown', live.shutdown_reason]);
  const stale = live.stale_shutdown;
  if (stale) {
    const outcome = stale.error ? `not cancelled: ${stale.error}` : 'cancel sent';
    const next = stale.next_attempt_at ? `; next try ${when(stale.next_attempt_at)}` : '; not retried';
    facts.push(['Shutdown left pending', `${outcome} (${stale.attempts} attempt(s))${next}`]);
  }
  const s = live.status;
  if (s) {
    facts.push(['Flags', FLAGS.filter((f) => s[f]).map((f) => f.replaceAll('_', ' ')).join(', ') || 'none']);
    for (const [key, label, show] of FIGURES) {
      if (s[key] !== null && s[key] !== undefined) facts.push([label, show(s[key])]);
    }
    facts.push(['Read at', when(live.status_at)]);
  }
  $('power-state').replaceChildren(el('dl', { class: 'facts' },
    facts.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
}

/**
 * The last outage in the history (newest first): from going on battery to
 * the next state after it, or now while it lasts; `null` if none is recorded.
 */
function lastOutage(history, now) {
  const start = history.findIndex((e) => e.to === 'on_battery');
  if (start < 0) return null;
  const after = history.slice(0, start).reverse().find((e) => e.from === 'on_battery');
  return { start: history[start].at, end: after ? after.at : now, ongoing: !after };
}

let shownOutage = null;

/**
 * Draws the power charts through the last outage, with a quarter of an hour
 * either side; one still going on is redrawn each minute up to now.
 */
function chartOutage(history) {
  const outage = lastOutage(history, Date.now());
  const key = outage && `${outage.start}-${outage.ongoing ? Math.floor(Date.now() / 60_000) : outage.end}`;
  if (!outage || key === shownOutage) return;
  shownOutage = key;
  const margin = 15 * 60;
  const end = Math.min(Date.now() / 1000, outage.end / 1000 + margin);
  const start = Math.max(outage.start / 1000 - margin, end - 30 * 86400);
  $('power-charts-range').textContent = `On battery from ${when(outage.start)} to ${outage.ongoing ? 'now' : when(outage.end)}.`;
  for (const figure of document.querySelectorAll('#h-power-charts ~ .chart-grid [data-chart]')) showRange(figure, start, end);
}

function renderHistory(history) {
  chartOutage(history);
  table($('power-history'), {
    rows: history,
    empty: 'No power events yet.',
    columns: [
      { label: 'When', value: (e) => when(e.at) },
      { label: 'From', value: (e) => e.from.replaceAll('_', ' ') },
      { label: 'To', value: (e) => badge(e.to.replaceAll('_', ' ')) },
      { label: 'What', value: (e) => e.what },
      { label: 'Notified', value: (e) => (e.notified ? 'yes' : 'held back') },
    ],
  });
}

// ---- the UPS: the fields of its kind, and the NUT password (write-only)

const KIND_NAMES = {
  none: 'No UPS',
  q1: 'Megatec Q1 on a serial port',
  apc: 'APC Smart-UPS on a serial port',
  contact: 'Contact closure on a serial cable',
  nut: 'A UPS on a NUT server',
};

const serial = (v) => ({ port: v.port, baud: Number(v.baud) });
const UPS_FIELDS = {
  none: () => ({}),
  q1: serial,
  apc: serial,
  contact: (v) => ({ port: v.port, cable: v.cable }),
  nut: (v) => ({ host: v.host, port: v.port ?? undefined, ups: v.ups, username: v.username }),
};

const upsForm = $('ups-form');
kindParts(upsForm);

/** `power.ups` as stored, without what the API adds. */
function upsSetting(config) {
  const { password_set: _, ...ups } = config.ups;
  return ups;
}

function showUps({ config, choices }) {
  const { elements } = upsForm;
  options(elements.kind, choices.ups_kinds.map((k) => [k, KIND_NAMES[k] ?? k]));
  options(elements.cable, choices.cables);
  options(elements.baud, choices.bauds.map(String));
  fill(upsForm, { baud: 2400, ...upsSetting(config), password: '', remove_password: false });
  $('ups-password-hint').textContent = `${config.ups.password_set ? 'A password is set' : 'No password is set'}`
    + '. It is never shown back; leave empty to keep it.';
}

onSubmit(upsForm, async (v, send) => {
  await send('PUT', '/api/power/ups', {
    ups: { kind: v.kind, ...UPS_FIELDS[v.kind](v) },
    password: v.remove_password ? '' : (v.password || undefined),
  });
  say('Saved the UPS.');
  await refreshAll();
});

// ---- the power policy and the NUT server

const form = $('power-form');
let current = null;
/** The version of the power section shown: the policy and NUT users are saved over it only (If-Match). */
let version = null;
const overVersion = () => ({ 'If-Match': version });

async function loadSettings() {
  // The version first: a change in between makes a save stale, never lost.
  version = (await loadSection('power')).version;
  const power = await api('GET', '/api/power');
  current = power.config;
  showUps(power);
  fill(form, {
    ...current,
    max_on_battery: current.max_on_battery ?? '',
    poweroff_command: current.poweroff_command.join('\n'),
    nut_enabled: current.nut_server.enabled,
    nut_listen: current.nut_server.listen,
  });
  return power;
}

onSubmit(form, async (v, send) => {
  const body = {
    ups: upsSetting(current),
    poll: v.poll,
    lost_after: v.lost_after,
    on_battery_debounce: v.on_battery_debounce,
    low_charge_percent: v.low_charge_percent,
    low_runtime: v.low_runtime,
    max_on_battery: v.max_on_battery || null,
    ups_shutdown_delay: v.ups_shutdown_delay,
    ups_restart_delay: v.ups_restart_delay,
    poweroff_command: lines(v.poweroff_command),
    nut_server: {
      enabled: v.nut_enabled,
      listen: v.nut_listen,
      users: current.nut_server.users.map(({ name, role }) => ({ name, role })),
    },
  };
  try {
    await send('PUT', '/api/settings/power', body, overVersion());
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      await refreshAll();
      say('Not saved: someone changed the power settings in another tab or session since this page loaded them. The form now shows their values; make your change again if it still applies.', { error: true });
    }
    throw e;
  }
  say('Saved the power policy.');
  await refreshAll();
});

const users = listEditor({
  form: $('nut-user-form'),
  container: $('nut-users'),
  noun: 'NUT user',
  key: (u) => u.name,
  columns: [
    { label: 'Name', value: (u) => u.name },
    { label: 'Role', value: (u) => u.role },
    { label: 'Password', value: (u) => (u.password_set ? 'set' : 'not set') },
  ],
  // The users live in the power section: the policy form is shown again with them, at their version.
  load: async () => (await loadSettings()).config.nut_server.users,
  save: (u, original, send) => send('PUT', `/api/power/nut-users/${encodeURIComponent(u.name)}`, {
    user: { name: u.name, role: u.role },
    password: u.password || null,
  }, overVersion()),
  remove: (u) => api('DELETE', `/api/power/nut-users/${encodeURIComponent(u.name)}`, undefined, undefined, overVersion()),
  toForm: (u) => ({ ...u, password: '' }),
  fromForm: (v) => v,
});

async function refreshDryRun() {
  const { steps } = await api('GET', '/api/power/dry-run');
  table($('dry-run'), {
    rows: steps.map((s, i) => ({ ...s, n: i + 1 })),
    columns: [
      { label: 'Step', value: (s) => String(s.n) },
      { label: 'Action', value: (s) => s.action },
    ],
  });
}

async function refreshAll() {
  const power = await api('GET', '/api/power');
  renderLive(power.live);
  renderHistory(power.history);
  await users.refresh();
  await refreshDryRun();
}

refreshAll();
every(2000, async () => {
  const power = await api('GET', '/api/power');
  renderLive(power.live);
  renderHistory(power.history);
});
