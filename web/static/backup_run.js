// One backup, verification, drill, off-site copy or restore run: what it did, its progress while it
// runs (polled every second), the restore time against the RTO for a drill,
// and the client's log.
import {
  api, every, el, badge, bytes, duration, when, snapshotId,
} from './app.js';

const $ = (id) => document.getElementById(id);
const id = location.pathname.split('/').pop();
const KINDS = { backup: 'Backup', verify: 'Verification', drill: 'Restore drill', copy: 'Off-site copy', restore: 'Restore' };

function restoreTime(run) {
  if (run.restore_ms == null) return null;
  const took = duration(run.restore_ms / 1000);
  if (run.rto_seconds == null) return took;
  return [took, ' against an RTO of ', duration(run.rto_seconds), ' ', badge(run.within_rto ? 'within the RTO' : 'over the RTO')];
}

function facts(run) {
  // A failed or halted run's size and files say nothing about the data: not shown.
  const ok = run.result === 'ok';
  return [
    ['Job', el('a', { href: '/backups' }, run.job)],
    ['Kind', KINDS[run.kind] ?? run.kind],
    ['Result', badge(run.result)],
    ['Reason', run.reason],
    ['Started', when(run.started_at)],
    ['Ended', when(run.ended_at)],
    ['Took', run.ended_at ? duration((run.ended_at - run.started_at) / 1000) : null],
    ['Snapshot', run.snapshot ? snapshotId(run.snapshot) : null],
    // Restores: who asked, what and where to.
    ['Asked by', run.actor],
    ['Paths', run.paths?.join(', ')],
    ['Restored into', run.target],
    ['Files', ok && run.files != null ? String(run.files) : null],
    ['Size', ok && run.bytes != null ? bytes(run.bytes) : null],
    ['Restore time', restoreTime(run)],
  ].filter(([, value]) => value !== null && value !== undefined && value !== '');
}

function progress(running) {
  $('progress').hidden = !running;
  if (!running) return;
  const t = running.transfer;
  const bar = $('run-progress');
  if (t) bar.value = Math.round(t.fraction_done * 100);
  else bar.removeAttribute('value'); // the client tells no fraction: a busy bar
  $('progress-text').textContent = t
    ? `${Math.round(t.fraction_done * 100)}%: ${bytes(t.bytes_done)} of ${bytes(t.total_bytes)}, ${t.files_done} of ${t.total_files} files`
      + (t.rate ? `, ${bytes(t.rate)}/s` : '') + (t.eta_seconds != null ? `, ${duration(t.eta_seconds)} left` : '')
    : running.progress;
}

let running = true;

function show(run) {
  running = run.result === 'running';
  $('h-run').textContent = `${KINDS[run.kind] ?? run.kind} of ${run.job}, ${when(run.started_at)}`;
  document.title = `Run ${run.id} of ${run.job} - ${document.title.split(' - ').slice(1).join(' - ')}`;
  progress(run.running);
  $('facts').replaceChildren(...facts(run).flatMap(([term, value]) => [el('dt', {}, term), el('dd', {}, value)]));
  const log = $('log');
  // Follow the end of the log while it grows, unless the reader scrolled up.
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = run.log || '(nothing printed)';
  if (running && atEnd) log.scrollTop = log.scrollHeight;
}

// Every second while it runs; then once a minute (a finished run changes no more).
every(() => (running ? 1000 : 60_000), async () => {
  show(await api('GET', `/api/backups/runs/${encodeURIComponent(id)}`));
});
