// Targets: the scrape targets and probes, each kept as a whole settings
// section, and charts of the node targets' CPU, memory and disk.
import { api, badge, every, listEditor, settingsList, labelsText, parseLabels, when } from './app.js';
import './charts.js';

const byName = (item) => item.name;

const ms = (seconds) => (seconds === null || seconds === undefined ? '' : `${Math.round(seconds * 1000)} ms`);

/** What Prometheus says of each target and probe, by name; refreshed every 15 s. */
let state = { targets: [], probes: [] };
const stateOf = (section, name) => state[section].find((s) => s.name === name);

/** A scrape's health badge, when it was, and why it failed. */
const scrapeColumns = (section) => [
  { label: 'State', value: (i) => { const s = stateOf(section, i.name); return s ? badge(s.health) : ''; } },
  { label: 'Last scrape', value: (i) => { const s = stateOf(section, i.name); return s?.last_scrape ? `${when(s.last_scrape)} (${ms(s.last_scrape_seconds)})` : ''; } },
  { label: 'Error', value: (i) => stateOf(section, i.name)?.error ?? '', long: true },
];

/**
 * One editor for a settings section of named, labelled items; `save`, when
 * given, wraps the section's own save.
 */
const labelledSection = (section, noun, columns, form = { toForm: (i) => i, fromForm: (v) => v }, save = (own) => own) => {
  const list = settingsList(section, byName);
  return listEditor({
    ...list,
    save: save(list.save),
    form: document.getElementById(`${noun}-form`),
    container: document.getElementById(section),
    noun,
    key: byName,
    columns: [
      { label: 'Name', value: byName },
      ...columns,
      { label: 'Labels', value: (i) => labelsText(i.labels).replaceAll('\n', ', '), long: true },
      ...scrapeColumns(section),
    ],
    toForm: (i) => form.toForm({ ...i, labels: labelsText(i.labels) }),
    fromForm: (v) => form.fromForm({ ...v, labels: parseLabels(v.labels) }),
  });
};

/** The kinds whose exporter obsbox can run on this box. */
const RUNNABLE = ['postgres', 'redis', 'snmp', 'pve'];
const targetForm = document.getElementById('target-form');

/** Shows (and sends) only the fields of the chosen kind, and of running the exporter here or not. */
const showKindFields = () => {
  const kind = targetForm.elements.exporter.value;
  const runHere = RUNNABLE.includes(kind) && targetForm.elements.run_here.checked;
  for (const part of targetForm.querySelectorAll('[data-kinds], [data-run]')) {
    const kinds = part.dataset.kinds?.split(' ');
    const shown = (!kinds || kinds.includes(kind)) && (part.dataset.run === undefined || (part.dataset.run === 'on') === runHere);
    part.hidden = !shown;
    for (const field of part.querySelectorAll('input, select, textarea')) field.disabled = !shown;
  }
};
targetForm.addEventListener('change', showKindFields);
targetForm.addEventListener('reset', () => setTimeout(showKindFields));
showKindFields();

const orNull = (v) => (v ? v : null);
const words = (v) => (v ? v.split(/[\s,]+/).filter(Boolean) : []);

/** A target as the settings keep it, from the form: only its kind's fields. */
const targetForm2Target = (v) => ({
  name: v.name,
  exporter: v.exporter,
  address: v.address ?? '',
  pve_hosts: words(v.pve_hosts),
  device: orNull(v.device),
  module: orNull(v.module),
  auth: orNull(v.auth),
  probe: orNull(v.probe),
  metrics_path: orNull(v.metrics_path),
  scheme: v.scheme,
  labels: v.labels,
});

/** A one-click request (`POST /api/targets/exporters`), from the form. */
const oneClick = (v) => {
  const request = { kind: v.exporter, name: v.name, pve_hosts: words(v.pve_hosts) };
  for (const field of ['server', 'database', 'user', 'sslmode', 'password', 'device', 'module', 'auth', 'community', 'token_id', 'program']) {
    if (v[field]) request[field] = v[field];
  }
  return request;
};

const targets = labelledSection('targets', 'target', [
  { label: 'Kind', value: (t) => t.exporter },
  { label: 'Address', value: (t) => [t.address, ...(t.pve_hosts ?? []), t.device ?? ''].filter(Boolean).join(' → ') },
  { label: 'Path', value: (t) => `${t.scheme}://…${t.metrics_path ?? ''}` },
], {
  toForm: (t) => ({ ...t, run_here: false, pve_hosts: (t.pve_hosts ?? []).join(' '), probe: t.probe ?? 'icmp', metrics_path: t.metrics_path ?? '' }),
  fromForm: (v) => ({ target: targetForm2Target(v), runHere: Boolean(v.run_here), request: oneClick(v) }),
}, (own) => async (item, original, send, items) => {
  if (item.runHere && original === null) return send('POST', '/api/targets/exporters', item.request);
  return own(item.target, original, send, items);
});
/** A probe's form: the CA is one PEM text, and none is no CA. */
const probeForm = {
  toForm: (p) => ({ tls: 'verify', ...p, tls_ca: p.tls_ca ?? '' }),
  fromForm: (v) => ({ ...v, tls_ca: v.tls_ca.trim() ? v.tls_ca : null }),
};
const probes = labelledSection('probes', 'probe', [
  { label: 'Kind', value: (p) => p.kind },
  { label: 'Target', value: (p) => p.target },
  { label: 'Certificate', value: (p) => (p.tls_ca ? 'private CA' : p.tls === 'expiry_only' ? 'expiry only' : '') },
  {
    label: 'Last probe',
    value: (p) => {
      const s = stateOf('probes', p.name);
      if (!s || s.success === null) return '';
      return [badge(s.success ? 'ok' : 'failed'), ` in ${ms(s.duration_seconds)}`];
    },
  },
], probeForm);

const notice = document.getElementById('scrape-state');
every(15000, async () => {
  state = await api('GET', '/api/targets/status');
  notice.textContent = state.prometheus_error ? `The state below is unknown: ${state.prometheus_error}.` : '';
  await Promise.all([targets.refresh(), probes.refresh()]);
});
