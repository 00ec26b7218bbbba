// Backups: jobs with their schedule, retention and secrets; run, verify or
// drill now with live progress; the history of runs.
import { api, every, table, badge, bytes, duration, when, action, listEditor, lines, say, values, el } from './app.js';

const $ = (id) => document.getElementById(id);
const KEEP = ['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly'];
let status = { halted: [], jobs: [] };
const statusOf = (name) => status.jobs.find((j) => j.name === name) ?? {};

async function start(job, verb) {
  await api('POST', `/api/backups/jobs/${encodeURIComponent(job.name)}/${verb}`);
  say(`${job.name}: ${verb} started.`);
  poll();
}

async function preview(job) {
  const result = await api('GET', `/api/backups/jobs/${encodeURIComponent(job.name)}/retention`);
  $('retention').hidden = false;
  $('h-retention').textContent = `Retention preview: ${job.name}`;
  table($('retention-table'), {
    rows: result.snapshots,
    empty: result.keeps_everything ? 'No keep option is set: pruning removes nothing.' : 'No snapshots yet.',
    columns: [
      { label: 'Snapshot', value: (s) => s.snapshot },
      { label: 'Pruning', value: (s) => badge(s.keep ? 'keep' : 'remove') },
    ],
  });
  $('h-retention').scrollIntoView();
}

function jobFromForm(v) {
  const retention = Object.fromEntries(KEEP.filter((k) => v[k] !== null).map((k) => [k, v[k]]));
  const job = {
    name: v.name,
    backend: v.backend,
    repository: v.repository,
    paths: lines(v.paths),
    appliance_state: v.appliance_state,
    namespace: v.namespace || null,
    fingerprint: v.fingerprint || null,
    backup_id: v.backup_id || null,
    schedule: v.schedule,
    enabled: v.enabled,
  };
  if (Object.keys(retention).length) job.retention = retention;
  const secrets = {};
  for (const name of ['password', 'encryption_key', 'encryption_password']) {
    if (v[name]) secrets[name] = v[name];
  }
  return { job, secrets };
}

const jobs = listEditor({
  form: $('job-form'),
  container: $('jobs'),
  noun: 'job',
  key: (j) => j.name,
  columns: [
    { label: 'Name', value: (j) => j.name },
    { label: 'Backend', value: (j) => j.backend },
    { label: 'Schedule', value: (j) => (j.enabled ? j.schedule : `${j.schedule} (disabled)`) },
    { label: 'Next', value: (j) => when(statusOf(j.name).next_backup) },
    {
      label: 'Last backup',
      value: (j) => {
        const last = statusOf(j.name).last_backup;
        return last ? [badge(last.result), ` ${when(last.started_at)}`] : 'never';
      },
    },
    {
      label: 'Last verify',
      value: (j) => {
        const last = statusOf(j.name).last_verify;
        return last ? [badge(last.result), ` ${when(last.started_at)}`] : 'never';
      },
    },
    {
      label: 'Repository',
      value: (j) => {
        const s = statusOf(j.name).storage;
        if (!s) return '';
        const free = s.size_bytes ? `, ${bytes(s.avail_bytes)} free of ${bytes(s.size_bytes)}` : '';
        const dedup = s.dedup_factor ? `, deduplication ${s.dedup_factor.toFixed(1)}×` : '';
        return `${bytes(s.used_bytes)} used${free}${dedup}`;
      },
    },
    {
      label: 'Now',
      value: (j) => {
        const running = statusOf(j.name).running;
        return running ? [badge(`${running.kind} running`), ` ${running.progress}`] : 'idle';
      },
    },
  ],
  extra: (j) => [
    action('Run now', `Run backup ${j.name} now`, () => start(j, 'run')),
    action('Verify', `Verify backup ${j.name}`, () => start(j, 'verify')),
    action('Drill', `Restore drill of ${j.name}`, () => start(j, 'drill')),
    action('Retention', `Retention preview of ${j.name}`, () => preview(j)),
  ],
  load: async () => {
    const [settings, current] = await Promise.all([api('GET', '/api/settings'), api('GET', '/api/backups')]);
    status = current;
    $('halted').hidden = !status.halted.length;
    $('halted').textContent = `Backups are halted: ${status.halted.join('; ')}.`;
    return settings.backups.jobs;
  },
  toForm: (j) => ({
    ...j,
    ...j.retention,
    paths: j.paths.join('\n'),
    password: '',
    encryption_key: '',
    encryption_password: '',
  }),
  fromForm: (v) => jobFromForm(v),
  save: (item, original, send) => (original === null
    ? send('POST', '/api/backups/jobs', item)
    : send('PUT', `/api/backups/jobs/${encodeURIComponent(original)}`, item)),
  remove: (j) => api('DELETE', `/api/backups/jobs/${encodeURIComponent(j.name)}`),
});

// Tests the repository as the form describes it, before saving.
$('test-repository').addEventListener('click', async () => {
  const form = $('job-form');
  const v = values(form);
  const result = $('test-result');
  result.hidden = false;
  result.textContent = 'Testing…';
  try {
    const report = await api('POST', '/api/backups/repositories/test', {
      ...jobFromForm(v),
      options: { init: v.init, create_namespace: v.create_namespace },
    });
    table(result, {
      rows: report.checks,
      empty: 'Nothing could be checked.',
      columns: [
        { label: 'Check', value: (c) => c.check },
        { label: 'Result', value: (c) => badge(c.ok ? 'ok' : 'failed') },
        { label: 'Detail', value: (c) => c.detail },
      ],
    });
    if (report.server_fingerprint && !v.fingerprint) {
      result.append(el('p', {}, `The server presents ${report.server_fingerprint}. Confirm it is the fingerprint PBS shows (Dashboard, Show Fingerprint) before using it. `,
        action('Use it', 'Use the server fingerprint', () => { form.elements.fingerprint.value = report.server_fingerprint; })));
    }
  } catch (e) {
    result.hidden = true;
    throw e;
  }
});

async function history() {
  const runs = await api('GET', '/api/backups/history?limit=50');
  table($('runs'), {
    rows: runs,
    empty: 'No run yet.',
    columns: [
      { label: 'Job', value: (r) => r.job },
      { label: 'Kind', value: (r) => r.kind },
      { label: 'Started', value: (r) => when(r.started_at) },
      { label: 'Took', value: (r) => (r.ended_at ? duration((r.ended_at - r.started_at) / 1000) : '') },
      { label: 'Result', value: (r) => badge(r.result) },
      { label: 'Reason', value: (r) => r.reason ?? '' },
      { label: 'Snapshot', value: (r) => r.snapshot ?? '' },
      { label: 'Size', value: (r) => bytes(r.bytes) },
    ],
  });
}

// Every second while something runs (live progress), else every 10 s.
const running = () => status.jobs.some((j) => j.running);
const poll = every(() => (running() ? 1000 : 10000), async () => {
  await jobs.refresh();
  await history();
});
$('job-form').elements.enabled.checked = true;
$('job-form').elements.enabled.defaultChecked = true;
