// Backups: jobs with their schedule, retention and secrets; run, verify or
// drill or copy off-site now with live progress; the history of runs.
import './charts.js';
import {
  api, read, every, table, badge, bytes, duration, when, action, listEditor, lines, say, values, el, onSubmit, kindParts, snapshotId, loadSection,
  saveSection, ApiError,
} from './app.js';

const $ = (id) => document.getElementById(id);
const KEEP = ['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly'];
let status = { halted: [], jobs: [] };
/** The version of the backups section the jobs were read at: saved over it only (If-Match). */
let version = null;
const overVersion = () => ({ 'If-Match': version });
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

/** A hook from its form fields (one argument per line); none without a command. */
function hookFromForm(command, timeout) {
  const args = lines(command);
  return args.length ? { command: args, timeout: timeout || '5m' } : null;
}

function jobFromForm(v) {
  // No keep option at all keeps everything; none typed means the default policy.
  const retention = v.keep_everything ? {} : Object.fromEntries(KEEP.filter((k) => v[k] != null).map((k) => [k, v[k]]));
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
    options: {
      exclude: lines(v.exclude),
      one_file_system: v.one_file_system,
      limit_kib: v.limit_kib || 0,
      verify_schedule: v.verify_schedule || null,
      drill_schedule: v.drill_schedule || null,
      pre_hook: hookFromForm(v.pre_hook, v.pre_hook_timeout),
      post_hook: hookFromForm(v.post_hook, v.post_hook_timeout),
    },
    rpo: v.rpo || null,
    rto: v.rto || null,
    include_mount_points: lines(v.include_mount_points),
  };
  if (v.keep_everything || Object.keys(retention).length) job.retention = retention;
  if (v.backend === 'restic' && v.copy_repository) {
    job.copy = { repository: v.copy_repository, schedule: v.copy_schedule || '', rpo: v.copy_rpo || null };
  }
  const secrets = {};
  for (const name of ['password', 'encryption_key', 'encryption_password', 'copy_password', 'api_token']) {
    if (v[name]) secrets[name] = v[name];
  }
  return { job, secrets };
}

kindParts($('job-form'), 'backend');

// "Keep every snapshot" and the keep counts exclude each other.
const keepEverything = () => {
  for (const name of KEEP) $(`job-${name}`).disabled = $('job-keep_everything').checked;
};
$('job-form').addEventListener('change', keepEverything);
$('job-form').addEventListener('reset', () => setTimeout(keepEverything));

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
      label: 'Last verify',
      value: (j) => {
        const last = statusOf(j.name).last_verify;
        return last ? [badge(last.result), ` ${when(last.started_at)}`] : 'never';
      },
    },
    {
      label: 'Off-site copy',
      value: (j) => {
        const copy = statusOf(j.name).copy;
        if (!copy) return 'none';
        const last = copy.last_copy;
        const next = copy.next_copy ? ` next ${when(copy.next_copy)}` : '';
        // Why it failed (the client's line), e.g. the second repository is unreachable.
        return last ? [badge(last.result), ` ${when(last.started_at)}`, last.reason ? ` ${last.reason}` : '', next] : `never${next}`;
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
    ...(j.copy ? [action('Copy now', `Copy backup ${j.name} to its second repository now`, () => start(j, 'copy'))] : []),
    statusOf(j.name).api_token_set
      && action('Verify on server', `Verify the snapshots of ${j.name} on its PBS server`, () => start(j, 'verify-on-server')),
    action('Retention', `Retention preview of ${j.name}`, () => preview(j)),
    action('Restore', `Restore from ${j.name}`, () => snapshots(j.name)),
    $('keys') && action('Keys', `Keys of ${j.name}`, () => keys(j)),
  ],
  load: async () => {
    const [section, current] = await Promise.all([loadSection('backups'), api('GET', '/api/backups')]);
    status = current;
    version = section.version;
    servers();
    $('halted').hidden = !status.halted.length;
    $('halted').textContent = `Backups are halted: ${status.halted.join('; ')}.`;
    return section.value.jobs;
  },
  toForm: (j) => ({
    ...j,
    ...j.retention,
    keep_everything: KEEP.every((k) => !j.retention?.[k]),
    ...j.options,
    exclude: (j.options?.exclude ?? []).join('\n'),
    rpo: j.rpo ?? '',
    rto: j.rto ?? '',
    include_mount_points: (j.include_mount_points ?? []).join('\n'),
    pre_hook: (j.options?.pre_hook?.command ?? []).join('\n'),
    pre_hook_timeout: j.options?.pre_hook?.timeout ?? '',
    post_hook: (j.options?.post_hook?.command ?? []).join('\n'),
    post_hook_timeout: j.options?.post_hook?.timeout ?? '',
    paths: j.paths.join('\n'),
    password: '',
    encryption_key: '',
    encryption_password: '',
    copy_repository: j.copy?.repository ?? '',
    copy_schedule: j.copy?.schedule ?? '',
    copy_rpo: j.copy?.rpo ?? '',
    copy_password: '',
    api_token: '',
  }),
  fromForm: (v) => jobFromForm(v),
  save: (item, original, send) => (original === null
    ? send('POST', '/api/backups/jobs', item, overVersion())
    : send('PUT', `/api/backups/jobs/${encodeURIComponent(original)}`, item, overVersion())),
  remove: (j) => api('DELETE', `/api/backups/jobs/${encodeURIComponent(j.name)}`, undefined, undefined, overVersion()),
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

// ---- restore: a job's snapshots, a snapshot's files, ticked files restored or downloaded

const browsing = { job: null, snapshot: null, path: '/', ticked: new Set() };
const jobPath = (job) => `/api/backups/jobs/${encodeURIComponent(job)}`;

async function snapshots(job) {
  browsing.job = job;
  $('restore').hidden = false;
  $('browser').hidden = true;
  $('h-restore').textContent = `Restore: ${job}`;
  table($('snapshots'), { rows: [], empty: 'Asking the repository...', columns: [] });
  $('h-restore').scrollIntoView();
  const list = await api('GET', `${jobPath(job)}/snapshots`);
  table($('snapshots'), {
    rows: list,
    empty: 'No snapshots yet.',
    columns: [
      { label: 'Time', value: (s) => when(s.time) },
      { label: 'Snapshot', value: (s) => snapshotId(s.id) },
      { label: 'Size', value: (s) => (s.size == null ? '' : bytes(s.size)) },
      { label: 'Verified', value: (s) => (s.verification ? badge(s.verification) : '') },
      { label: 'Protected', value: (s) => (s.protected ? 'yes' : '') },
      { label: 'Notes', value: (s) => s.notes ?? '' },
      { label: '', value: (s) => action('Browse', `Browse snapshot ${s.id}`, () => browse(s.id, '/')) },
    ],
  });
}

function downloadLink(path) {
  const q = new URLSearchParams({ snapshot: browsing.snapshot, path });
  return el('a', { href: `${jobPath(browsing.job)}/download?${q}`, download: '' }, 'Download');
}

async function browse(snapshot, path) {
  if (snapshot !== browsing.snapshot) browsing.ticked.clear();
  Object.assign(browsing, { snapshot, path });
  const q = new URLSearchParams({ snapshot, path });
  const entries = await api('GET', `${jobPath(browsing.job)}/files?${q}`);
  $('browser').hidden = false;
  $('h-browser').textContent = `Files of ${snapshot} in ${path}`;
  const up = path === '/' ? [] : [{ name: '..', path: path.replace(/\/[^/]*$/, '') || '/', kind: 'up' }];
  table($('files'), {
    rows: up.concat(entries),
    empty: 'Empty.',
    columns: [
      {
        label: 'Restore',
        value: (e) => (e.kind === 'up' ? '' : el('input', {
          type: 'checkbox',
          'aria-label': `Restore ${e.path}`,
          checked: browsing.ticked.has(e.path) ? '' : null,
          onchange: (ev) => (ev.target.checked ? browsing.ticked.add(e.path) : browsing.ticked.delete(e.path)),
        })),
      },
      {
        label: 'Name',
        value: (e) => (e.kind === 'dir' || e.kind === 'up'
          ? action(e.name, `Open ${e.path}`, () => browse(snapshot, e.path), 'link')
          : e.name),
      },
      { label: 'Kind', value: (e) => (e.kind === 'up' ? '' : e.kind) },
      { label: 'Size', value: (e) => (e.size == null ? '' : bytes(e.size)) },
      { label: 'Modified', value: (e) => e.mtime ?? '' },
      { label: '', value: (e) => (e.kind === 'up' ? '' : downloadLink(e.path)) },
    ],
  });
}

onSubmit($('restore-form'), async (v, send) => {
  const paths = [...browsing.ticked];
  if (!paths.length) throw new Error('Tick the files or directories to restore first.');
  const started = await send('POST', `${jobPath(browsing.job)}/restore`, {
    snapshot: browsing.snapshot, paths, target: v.target,
  });
  say(`Restore ${started.id} started into ${started.target}.`);
  poll();
});

async function restores() {
  const list = await api('GET', '/api/backups/restores');
  if (list.length) $('restore').hidden = false;
  table($('restores'), {
    rows: list,
    empty: 'No restore yet.',
    columns: [
      { label: 'Job', value: (r) => r.job },
      { label: 'Snapshot', value: (r) => snapshotId(r.snapshot) },
      { label: 'Into', value: (r) => r.target },
      { label: 'State', value: (r) => badge(r.state) },
      { label: 'Progress', value: (r) => (r.state === 'running' ? `${r.step}/${r.steps} ${r.progress}` : (r.reason ?? `${r.files ?? 0} files, ${bytes(r.bytes ?? 0)}`)) },
      { label: 'Started', value: (r) => when(r.started) },
    ],
  });
  return list.some((r) => r.state === 'running');
}

let restoring = false;

async function history() {
  const runs = await api('GET', '/api/backups/history?limit=50');
  table($('runs'), {
    rows: runs,
    empty: 'No run yet.',
    columns: [
      { label: 'Job', value: (r) => r.job },
      { label: 'Kind', value: (r) => r.kind },
      { label: 'Started', value: (r) => when(r.started_at), sort: (r) => r.started_at },
      { label: 'Took', value: (r) => (r.ended_at ? duration((r.ended_at - r.started_at) / 1000) : ''), sort: (r) => (r.ended_at ? r.ended_at - r.started_at : null) },
      { label: 'Result', value: (r) => badge(r.result) },
      { label: 'Reason', value: (r) => r.reason ?? '', long: true },
      { label: 'Snapshot', value: (r) => snapshotId(r.snapshot) },
      // Only a good run's size says what was backed up.
      { label: 'Size', value: (r) => (r.result === 'ok' ? bytes(r.bytes) : ''), sort: (r) => (r.result === 'ok' ? r.bytes : null) },
      { label: 'Run', sort: false, value: (r) => el('a', { href: `/backups/runs/${r.id}`, 'aria-label': `Run ${r.id} of ${r.job}: log and details` }, 'Details') },
    ],
  });
}

const TASKS = { gc: 'Garbage collection', prune: 'Prune', verify: 'Verify', sync: 'Sync' };
const epoch = (seconds) => (seconds == null ? null : seconds * 1000);

/** A card per PBS datastore, and the verifications started on the servers. */
function servers() {
  const list = status.servers ?? [];
  $('servers-section').hidden = !list.length;
  $('servers').replaceChildren(...list.map((s) => {
    const facts = [
      ['Usage', s.usage_ratio == null ? 'unknown'
        : `${Math.round(s.usage_ratio * 100)}%: ${bytes(s.used_bytes)} of ${bytes(s.total_bytes)}`],
      ['Full by', s.estimated_full == null ? 'unknown'
        : (s.estimated_full * 1000 < Date.now() ? 'not growing' : when(epoch(s.estimated_full)))],
      ['Deduplication', s.dedup_factor == null ? 'after the first garbage collection' : `${s.dedup_factor.toFixed(1)}×`],
      ...Object.entries(TASKS).map(([kind, label]) => {
        const t = s.tasks?.[kind];
        if (!t || (t.last_success == null && t.last_failure == null)) return [label, 'no task seen'];
        return [label, [badge(t.last_failed ? 'failed' : 'ok'),
          t.last_success != null ? ` last success ${when(epoch(t.last_success))}` : '',
          t.last_failure != null ? `; last failure ${when(epoch(t.last_failure))}: ${t.last_failure_status}` : '']];
      }),
      ['Failed verification', s.failed_verifications.length ? s.failed_verifications.join(', ') : 'none'],
      ...(status.server_verifications ?? []).filter((v) => s.jobs.includes(v.job)).map((v) => [
        `Verify of ${v.job} on the server`, [badge(v.state), ` ${when(v.started_at)}`, v.exitstatus ? ` ${v.exitstatus}` : '']]),
    ];
    return el('section', { class: 'card', 'aria-label': `PBS datastore ${s.repository}` },
      el('h3', {}, s.repository),
      s.error ? el('p', { class: 'banner' }, `Not all could be read: ${s.error}`) : null,
      el('dl', { class: 'facts' }, facts.map(([term, value]) => [el('dt', {}, term), el('dd', {}, value)])),
      el('p', { class: 'hint' }, `Jobs: ${s.jobs.join(', ')}; read ${when(s.checked_at)} with the token of ${s.read_with}.`));
  }));
}

// Every second while something runs (live progress), else every 10 s.
const running = () => restoring || status.jobs.some((j) => j.running);
const poll = every(() => (running() ? 1000 : 10000), async () => {
  await jobs.refresh();
  await history();
  restoring = await restores();
});

// ---- keys (admins only: the section is not on the page for other roles)

const keysSection = $('keys');
const keyed = { job: null };
const keyPath = (job) => `/api/backups/keys/${encodeURIComponent(job)}`;
const resticKeyPath = (job) => `/api/backups/restic-keys/${encodeURIComponent(job)}`;
const seconds = (t) => (t == null ? '' : when(t * 1000));

/** The restic repository's keys, with a Remove button for all but the job's own. */
function resticKeyTable(list) {
  table($('key-facts'), {
    rows: list,
    empty: 'No keys.',
    columns: [
      { label: 'Key', value: (k) => k.id },
      { label: 'Opened by', value: (k) => (k.current ? "the job's password" : 'another password') },
      { label: 'Made by', value: (k) => `${k.user}@${k.host}` },
      { label: 'Created', value: (k) => k.created },
      {
        label: '',
        value: (k) => (k.current ? '' : action('Remove', `Remove restic key ${k.id}`, async () => {
          if (!window.confirm(`Remove key ${k.id}? Its password will no longer open the repository.`)) return;
          resticKeyTable(await api('DELETE', `${resticKeyPath(keyed.job.name)}/${encodeURIComponent(k.id)}`));
          say(`Removed key ${k.id}.`);
        }, 'small secondary')),
      },
    ],
  });
}

/** Shows the keys of `job`: PBS's key (or the form to make one), restic's key list. */
async function keys(job) {
  keyed.job = job;
  keysSection.hidden = false;
  $('h-keys').textContent = `Keys: ${job.name}`;
  $('paper-link').hidden = true;
  for (const part of keysSection.querySelectorAll('[data-backend]')) part.hidden = part.dataset.backend !== job.backend;
  $('key-create-form').hidden = true;
  $('key-facts').replaceChildren();
  $('h-keys').scrollIntoView();
  if (job.backend === 'restic') {
    $('key-paper').hidden = false;
    resticKeyTable(await api('GET', resticKeyPath(job.name)));
    return;
  }
  let info = null;
  try {
    info = await read(keyPath(job.name));
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  $('key-create-form').hidden = info !== null;
  $('key-export').hidden = info === null;
  $('key-paper').hidden = info === null;
  if (info === null) {
    $('key-facts').replaceChildren(el('p', { class: 'empty' }, 'This job has no encryption key: its backups are not encrypted.'));
    return;
  }
  $('key-facts').replaceChildren(el('dl', { class: 'facts', 'aria-label': `Encryption key of ${job.name}` },
    el('dt', {}, 'Fingerprint'), el('dd', {}, info.fingerprint),
    el('dt', {}, 'Protection'), el('dd', {}, info.kdf === 'none' ? 'none: the file is the key' : `passphrase (${info.kdf})`),
    el('dt', {}, 'Created'), el('dd', {}, seconds(info.created)),
    el('dt', {}, 'Modified'), el('dd', {}, seconds(info.modified))));
}

if (keysSection) {
  onSubmit($('key-create-form'), async (v, send) => {
    const made = await send('POST', keyPath(keyed.job.name), v.passphrase ? { passphrase: v.passphrase } : {});
    $('key-create-form').reset();
    say(`Created the encryption key of ${keyed.job.name} (${made.fingerprint}). Export it or print its paper key now.`);
    await keys(keyed.job);
  });
  onSubmit($('restic-add-form'), async (v, send) => {
    resticKeyTable(await send('POST', resticKeyPath(keyed.job.name), { password: v.password }));
    $('restic-add-form').reset();
    say(`Added a recovery password to ${keyed.job.name}.`);
  });
  onSubmit($('restic-passwd-form'), async (v, send) => {
    resticKeyTable(await send('PUT', `${resticKeyPath(keyed.job.name)}/password`, { password: v.password }));
    $('restic-passwd-form').reset();
    say(`Changed the password of ${keyed.job.name}.`);
  });

  /** POSTs the user's password to a hand-out route; gives the answer as a Blob URL. */
  const handOut = async (what, type, edit = (text) => text) => {
    const form = $('key-handout-form');
    const password = form.elements.password.value;
    if (!password) throw new Error('Give your password first.');
    const answer = await api('POST', `${keyPath(keyed.job.name)}/${what}`, { password });
    form.reset();
    const text = typeof answer === 'string' ? answer : JSON.stringify(answer, null, 2);
    return URL.createObjectURL(new Blob([edit(text)], { type }));
  };
  /** A page opened from a blob: URL resolves no relative link, so its stylesheet gets this box's origin. */
  const absoluteLinks = (html) => {
    const page = new DOMParser().parseFromString(html, 'text/html');
    for (const link of page.querySelectorAll('link[href]')) link.href = new URL(link.getAttribute('href'), location.href).href;
    return `<!doctype html>\n${page.documentElement.outerHTML}`;
  };
  /** A click handler whose failure is said in the live region (an API error already is). */
  const guarded = (handler) => async () => {
    try {
      await handler();
    } catch (e) {
      if (!(e instanceof ApiError)) say(String(e.message || e), { error: true });
    }
  };
  $('key-export').addEventListener('click', guarded(async () => {
    const url = await handOut('export', 'application/json');
    el('a', { href: url, download: `${keyed.job.name}-encryption-key.json` }).click();
    say(`Exported the key of ${keyed.job.name}. Keep the file away from the box.`);
  }));
  // A link the user follows (no pop-up to block): the page is only in this tab's memory.
  $('key-paper').addEventListener('click', guarded(async () => {
    const url = await handOut('paperkey', 'text/html', absoluteLinks);
    const link = $('paper-link');
    link.replaceChildren(el('a', { href: url, target: '_blank', rel: 'noopener' }, `Open the paper key of ${keyed.job.name} to print it`));
    link.hidden = false;
  }));

  // The own-state backup's choice about credentials, in the backups section.
  const stateForm = $('state-form');
  const showState = (on) => {
    stateForm.elements.state_includes_credentials.checked = on;
    $('credentials-in-state').hidden = !on;
  };
  loadSection('backups').then((s) => showState(Boolean(s.value.state_includes_credentials)));
  onSubmit(stateForm, async (v) => {
    const section = await loadSection('backups');
    const saved = await saveSection('backups', { ...section.value, state_includes_credentials: v.state_includes_credentials }, section.version);
    version = saved.version;
    showState(Boolean(saved.value.state_includes_credentials));
    say(saved.value.state_includes_credentials
      ? "Saved: the own-state backup now includes the backup jobs' credentials."
      : "Saved: the own-state backup leaves the backup jobs' credentials out.");
  });
}
