// Targets: the scrape targets and probes, each kept as a whole settings section.
import { listEditor, settingsList, labelsText, parseLabels } from './app.js';

const byName = (item) => item.name;

/** One editor for a settings section of named, labelled items. */
const labelledSection = (section, noun, columns) =>
  listEditor({
    ...settingsList(section, byName),
    form: document.getElementById(`${noun}-form`),
    container: document.getElementById(section),
    noun,
    key: byName,
    columns: [
      { label: 'Name', value: byName },
      ...columns,
      { label: 'Labels', value: (i) => labelsText(i.labels).replaceAll('\n', ', ') },
    ],
    toForm: (i) => ({ ...i, labels: labelsText(i.labels) }),
    fromForm: (v) => ({ ...v, labels: parseLabels(v.labels) }),
  }).refresh();

labelledSection('targets', 'target', [
  { label: 'Address', value: (t) => t.address },
  { label: 'Exporter', value: (t) => t.exporter },
  { label: 'Path', value: (t) => `${t.scheme}://…${t.metrics_path}` },
]);
labelledSection('probes', 'probe', [
  { label: 'Kind', value: (p) => p.kind },
  { label: 'Target', value: (p) => p.target },
]);
