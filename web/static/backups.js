// Backups: jobs with their schedule, retention and secrets; run, verify or
// drill now with live progress; the history of runs.
import { api, every, table, badge, bytes, duration, when, action, listEditor, lines, say } from './app.js';

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
        // Why it failed or halted, or what it warned about.
        return last ? [badge(last.result), ` ${when(last.started_at)}`, last.reason ? ` ${last.reason}` : ''] : 'never';
      },
    },
    {
      label: 'Now',
      value: (j) => {
        const running = statusOf(j.name).running;
        if (!running) return 'idle';
        const t = running.transfer;
        const done = t
          ? ` ${Math.round(t.fraction_done * 100)}%: ${bytes(t.bytes_done)} of ${bytes(t.total_bytes)}, ` +
            `${t.files_done} of ${t.total_files} files` +
            (t.rate ? `, ${bytes(t.rate)}/s` : '') +
            (t.eta_seconds != null ? `, ${duration(t.eta_seconds)} left` : '')
          : ` ${running.progress}`;
        return [badge(`${running.kind} running`), done];
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
  fromForm: (v) => {
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
  },
  save: (item, original, send) => (original === null
    ? send('POST', '/api/backups/jobs', item)
    : send('PUT', `/api/backups/jobs/${encodeURIComponent(original)}`, item)),
  remove: (j) => api('DELETE', `/api/backups/jobs/${encodeURIComponent(j.name)}`),
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
