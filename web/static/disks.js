// Disks: SMART health of every disk, read now, self-tests, and the backup
// jobs each disk holds; refreshes every 30 s.
import './charts.js';
import { api, ApiError, every, table, badge, duration, when, action, actions, el, say } from './app.js';

const $ = (id) => document.getElementById(id);
let chosen = null;

const temperature = (d) => (d.temperature === null || d.temperature === undefined ? '' : `${d.temperature} °C`);

function state(d) {
  if (d.monitoring_error) return [badge(d.health), ' ', badge('monitoring error')];
  if (d.standby) return [badge(d.health), ' ', badge('standby')];
  return badge(d.health);
}

async function selfTest(d, kind) {
  await api('POST', `/api/disks/${encodeURIComponent(d.id)}/self-test`, { kind });
  say(`${d.device}: ${kind} self-test started. Its result shows in the self-test log once it ends.`);
}

async function refresh() {
  say('Reading every disk…');
  render(await api('POST', '/api/disks/refresh'));
  say('Every disk was read.');
}

function facts(pairs) {
  return el('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => [el('dt', {}, k), el('dd', {}, String(v))]));
}

function detail(d) {
  const limits = d.temperature_limits ? `warning ${d.temperature_limits[0]} °C, critical ${d.temperature_limits[1]} °C` : '';
  const parts = [
    el('h3', {}, `${d.device} ${d.model ?? ''}`),
    facts([
      ['Serial', d.serial], ['Type', d.type], ['Protocol', d.protocol],
      ['Temperature', temperature(d)], ['Limits', limits],
      ['Powered on', d.power_on_hours === null ? '' : `${d.power_on_hours} h`],
      ['Last reading', when(d.last_reading_at)], ['Monitoring error', d.monitoring_error],
      ['Failed reads', d.monitoring_errors_total],
      ['NVMe critical warning', d.nvme ? d.nvme.critical_warning : null],
      ['NVMe media errors', d.nvme ? d.nvme.media_errors : null],
      ['NVMe endurance used', d.nvme && d.nvme.percentage_used !== null ? `${d.nvme.percentage_used} %` : null],
    ]),
  ];
  if (d.reasons.length || d.nvme_warnings.length) {
    parts.push(el('h4', {}, 'Why'), el('ul', {}, [...d.reasons, ...d.nvme_warnings].map((r) => el('li', {}, r))));
  }
  parts.push(el('h4', {}, 'Attributes'));
  const attributes = el('div', { class: 'table-wrap' });
  table(attributes, {
    rows: d.attributes,
    empty: 'No ATA attributes (NVMe disks report the fields above).',
    columns: [
      { label: 'ID', value: (a) => a.id },
      { label: 'Name', value: (a) => a.name },
      { label: 'Value', value: (a) => a.value },
      { label: 'Threshold', value: (a) => a.thresh },
      { label: 'Raw', value: (a) => a.raw },
      { label: 'Rose by', value: (a) => d.rises[a.id] ?? '' },
      { label: 'Failed', value: (a) => a.when_failed || '' },
    ],
  });
  parts.push(attributes, el('h4', {}, 'Self-test log'));
  const tests = el('div', { class: 'table-wrap' });
  table(tests, {
    rows: d.self_tests,
    empty: 'No self-test logged yet.',
    columns: [
      { label: 'Test', value: (t) => t.kind },
      { label: 'Result', value: (t) => badge(t.passed === true ? 'ok' : t.passed === false ? 'failed' : t.result) },
      { label: 'Detail', value: (t) => t.result },
      { label: 'At power-on hour', value: (t) => t.power_on_hours },
    ],
  });
  parts.push(tests);
  if (d.self_test_running) {
    const r = d.self_test_running;
    const left = r.remaining_percent === null ? 'progress not read yet' : `${r.remaining_percent}% left`;
    const what = r.kind ? `A ${r.kind} self-test` : 'A self-test';
    parts.push(el('p', { class: 'hint' }, `${what} is running (${left}); no other starts until it ends.`));
  }
  if (d.self_test_started) {
    const s = d.self_test_started;
    parts.push(el('p', { class: 'hint' }, `Last ${s.kind} test asked for ${when(s.at)}${s.error ? `: not started (${s.error})` : '.'}`));
  }
  parts.push(el('h4', {}, 'Backup jobs'));
  const jobs = el('div', { class: 'table-wrap' });
  table(jobs, {
    rows: d.jobs,
    empty: 'No backup job reads or writes this disk.',
    columns: [
      { label: 'Job', value: (j) => j.job },
      { label: 'Access', value: (j) => j.access },
      { label: 'Halted', value: (j) => d.halts.filter((h) => h.job === j.job).map((h) => h.reason).join('; ') || 'no' },
    ],
  });
  parts.push(jobs);
  $('detail').replaceChildren(...parts);
}

function render(status) {
  $('disks-error').hidden = !status.error;
  $('disks-error').textContent = status.error ?? '';
  $('disks-summary').textContent = status.enabled
    ? `${status.disks.length} disk(s); last scan ${when(status.last_scan_at) || 'not yet'}${status.smartctl ? ` with ${status.smartctl}` : ''}.`
    : 'Disk monitoring is turned off (settings: disks.enabled).';
  table($('disks'), {
    rows: status.disks,
    empty: 'No disk found.',
    columns: [
      { label: 'Disk', value: (d) => d.device },
      { label: 'Model', value: (d) => d.model ?? '' },
      { label: 'Health', value: state },
      { label: 'Temperature', value: temperature },
      { label: 'Powered on', value: (d) => (d.power_on_hours === null ? '' : duration(d.power_on_hours * 3600)) },
      { label: 'Halts', value: (d) => d.halts.map((h) => `${h.job}: ${h.reason}`).join('; ') || 'none' },
      {
        label: 'Actions',
        value: (d) => actions(
          action('Details', `Details of ${d.device}`, () => { chosen = d.id; detail(d); $('h-detail').scrollIntoView(); }),
          action('Short test', `Short self-test of ${d.device}`, () => selfTest(d, 'short')),
          action('Long test', `Long self-test of ${d.device}`, () => selfTest(d, 'long')),
        ),
      },
    ],
  });
  const shown = status.disks.find((d) => d.id === chosen);
  if (shown) detail(shown);
}

$('refresh').addEventListener('click', async () => {
  $('refresh').disabled = true;
  try {
    await refresh();
  } catch (e) {
    if (!(e instanceof ApiError)) say(String(e.message || e), { error: true });
  } finally {
    $('refresh').disabled = false;
  }
});

every(30000, async () => render(await api('GET', '/api/disks')));
