// Targets: the scrape targets and probes, each kept as a whole settings section.
import { listEditor, settingsList, labelsText, parseLabels } from './app.js';

const $ = (id) => document.getElementById(id);
const byName = (item) => item.name;
const labelsColumn = { label: 'Labels', value: (i) => labelsText(i.labels).replaceAll('\n', ', ') };

const targets = settingsList('targets', byName);
listEditor({
  ...targets,
  form: $('target-form'),
  container: $('targets'),
  noun: 'target',
  key: byName,
  columns: [
    { label: 'Name', value: (t) => t.name },
    { label: 'Address', value: (t) => t.address },
    { label: 'Exporter', value: (t) => t.exporter },
    { label: 'Path', value: (t) => `${t.scheme}://…${t.metrics_path}` },
    labelsColumn,
  ],
  toForm: (t) => ({ ...t, labels: labelsText(t.labels) }),
  fromForm: (v) => ({ ...v, labels: parseLabels(v.labels) }),
}).refresh();

const probes = settingsList('probes', byName);
listEditor({
  ...probes,
  form: $('probe-form'),
  container: $('probes'),
  noun: 'probe',
  key: byName,
  columns: [
    { label: 'Name', value: (p) => p.name },
    { label: 'Kind', value: (p) => p.kind },
    { label: 'Target', value: (p) => p.target },
    labelsColumn,
  ],
  toForm: (p) => ({ ...p, labels: labelsText(p.labels) }),
  fromForm: (v) => ({ ...v, labels: parseLabels(v.labels) }),
}).refresh();
