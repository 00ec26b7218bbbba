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

/** One editor for a settings section of named, labelled items. */
const labelledSection = (section, noun, columns, form = { toForm: (i) => i, fromForm: (v) => v }) =>
  listEditor({
    ...settingsList(section, byName),
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

const targets = labelledSection('targets', 'target', [
  { label: 'Address', value: (t) => t.address },
  { label: 'Exporter', value: (t) => t.exporter },
  { label: 'Path', value: (t) => `${t.scheme}://…${t.metrics_path}` },
]);
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
