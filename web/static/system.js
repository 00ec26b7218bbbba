// System: firmware updates, reboot, factory reset, diagnostics, the clock, the TLS certificate, the audit log.
import { api, ApiError, badge, bytes, table, when, onSubmit, say, el } from './app.js';

const $ = (id) => document.getElementById(id);

onSubmit($('reboot-form'), async (_, send) => {
  if (!window.confirm('Reboot the appliance now?')) return;
  await send('POST', '/api/system/reboot');
  say('Rebooting. This page works again in about a minute.');
});

onSubmit($('reset-form'), async ({ hostname }, send) => {
  await send('POST', '/api/system/factory-reset', { hostname });
  say('Erasing. The appliance restarts into first-boot setup.');
});

/** The clock: synchronised or not, as the kernel counts it (/api/system/time). */
async function showTime() {
  const t = await api('GET', '/api/system/time');
  $('time-status').replaceChildren(
    el('p', {}, [badge(t.synchronised ? 'synchronised' : 'not synchronised'), ` ${t.now}`]),
    el('dl', { class: 'facts' }, [
      el('dt', {}, 'offset'), el('dd', {}, `${(t.offset_seconds * 1000).toFixed(1)} ms`),
      el('dt', {}, 'last known time on /data'), el('dd', {}, t.last_known ?? 'none yet'),
    ]));
}

async function showTls() {
  const tls = await api('GET', '/api/system/tls');
  const facts = Object.entries(tls || {}).filter(([, v]) => v !== null && typeof v !== 'object');
  $('tls-status').replaceChildren(facts.length
    ? el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', {}, k.replaceAll('_', ' ')), el('dd', {}, String(v))]))
    : el('p', { class: 'empty' }, 'No certificate uploaded.'));
}

onSubmit($('tls-form'), async ({ certificate, key }, send) => {
  await send('PUT', '/api/system/tls', { certificate: await certificate.text(), key: await key.text() });
  say('Certificate installed.');
  $('tls-form').reset();
  await showTls();
});

$('tls-remove').addEventListener('click', async () => {
  if (!window.confirm('Remove the uploaded certificate?')) return;
  await api('DELETE', '/api/system/tls', undefined, $('tls-form').elements._csrf?.value);
  say('Certificate removed.');
  await showTls();
});

const ROLE = (fw, slot) => [
  fw.running.slot === slot ? 'running' : null,
  fw.committed === slot ? 'committed' : null,
  fw.trial?.slot === slot && fw.running.slot !== slot ? 'tried at the next reboot' : null,
].filter(Boolean).join(', ');

async function showFirmware() {
  const fw = await api('GET', '/api/update');
  for (const form of [$('update-form'), $('update-url-form')]) form.hidden = !fw.enabled;
  if (!fw.enabled) {
    $('firmware-status').replaceChildren(el('p', { class: 'empty' }, `Firmware updates are off on this machine: ${fw.reason}`));
    $('firmware-slots').replaceChildren();
    return;
  }
  const facts = [
    ['Board', fw.board],
    ['Running', `slot ${fw.running.slot}, version ${fw.running.version}`],
    ['Committed', fw.committed ? `slot ${fw.committed}` : `unknown: ${fw.boot_loader_error}`],
  ];
  if (fw.on_trial) facts.push(['Trial', `slot ${fw.running.slot} is on trial: it is committed once healthy (within ${fw.health_timeout_seconds} s)`]);
  if (fw.last_rollback) {
    const r = fw.last_rollback;
    facts.push(['Last rollback', `${when(r.at)}: slot ${r.slot} (${r.version}) was not kept: ${r.reason}`]);
  }
  if (fw.install) {
    const i = fw.install;
    const step = i.state === 'running' ? ` (${i.step})` : '';
    facts.push(['Last install', `${i.state}${step}${i.version ? ` (${i.version})` : ''} into slot ${i.slot}, ${when(i.started)}${i.error ? `: ${i.error}` : ''}`]);
  }
  $('firmware-status').replaceChildren(el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
  table($('firmware-slots'), {
    rows: ['a', 'b'].map((slot) => ({ slot, ...fw.slots[slot] })),
    columns: [
      { label: 'Slot', value: (s) => s.slot.toUpperCase() },
      { label: 'Version', value: (s) => s.version ?? 'unknown' },
      { label: 'State', value: (s) => badge(s.condition) },
      { label: 'Role', value: (s) => ROLE(fw, s.slot) },
      { label: 'Note', value: (s) => s.note ?? '' },
      { label: 'Since', value: (s) => when(s.since) },
    ],
  });
}

function showProgress(done, total, text) {
  $('update-progress-field').hidden = false;
  $('update-progress').value = total ? Math.round((100 * done) / total) : 0;
  $('update-progress-text').textContent = text;
}

/** Uploads with XMLHttpRequest: fetch cannot report an upload's progress. */
function upload(file, force, unchecked, csrf) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const query = new URLSearchParams();
    if (force) query.set('force', 'true');
    if (unchecked) query.set('unchecked', 'true');
    xhr.open('POST', `/api/update/install${query.size ? `?${query}` : ''}`);
    xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => showProgress(e.loaded, e.total, `Sent and checked ${bytes(e.loaded)} of ${bytes(e.total)}`);
    xhr.upload.onload = () => showProgress(1, 1, 'Sent; reading the slot back to check it…');
    const fail = (error) => {
      say(error.message, { error: true });
      reject(error);
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else fail(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => fail(new ApiError(0, { error: 'The upload broke off: obsbox cannot be reached.' }));
    xhr.send(file);
  });
}

const installed = async (done) => {
  showProgress(1, 1, `Installed ${done.version} into slot ${done.slot}.`);
  say(`Installed ${done.version} into slot ${done.slot}: ${done.next_boot}. Reboot to try it.`);
  await showFirmware();
};

onSubmit($('update-form'), async ({ bundle, force }) => {
  // A bundle the data partition cannot hold is written as it arrives: say
  // what that risks before anything is sent.
  const fw = await api('GET', '/api/update');
  const unchecked = fw.staging_free_bytes != null && bundle.size > fw.staging_free_bytes;
  if (unchecked && !window.confirm(`This bundle (${bytes(bundle.size)}) does not fit on the data partition (${bytes(fw.staging_free_bytes)} free), so it cannot be checked whole before it is written. It will be written to slot ${fw.running.slot === 'a' ? 'b' : 'a'} as it arrives: if it turns out damaged, that slot's previous firmware is lost (the running slot is never touched). Install anyway?`)) return;
  showProgress(0, bundle.size, 'Starting…');
  await installed(await upload(bundle, force, unchecked, $('update-form').elements._csrf.value));
  $('update-form').reset();
});

onSubmit($('update-url-form'), async ({ url, force }, send) => {
  showProgress(0, 0, 'Downloading and checking…');
  await installed(await send('POST', '/api/update/install-url', { url, force }));
});

const auditForm = $('audit-form');
auditForm.elements.limit.value = '100';

/** Every leaf of a JSON value by its path (`targets[0].address`). */
function leaves(value, path = '', out = new Map()) {
  if (value !== null && typeof value === 'object' && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value)) leaves(v, Array.isArray(value) ? `${path}[${k}]` : path ? `${path}.${k}` : k, out);
  } else {
    out.set(path, JSON.stringify(value));
  }
  return out;
}

/**
 * A settings change (`section: OLD -> NEW`, JSON) as one line per field
 * changed; a first change is measured against the section's `defaults`.
 * Anything else is shown as it is.
 */
export function auditDetail(detail, defaults) {
  const change = /^([a-z_]+): (\(defaults\)|[[{].*) -> ([[{].*)$/s.exec(detail);
  if (!change) return detail;
  let before;
  let after;
  try {
    before = leaves(change[2] === '(defaults)' ? defaults[change[1]] ?? {} : JSON.parse(change[2]));
    after = leaves(JSON.parse(change[3]));
  } catch {
    return detail;
  }
  const section = change[1];
  const paths = [...new Set([...(before?.keys() ?? []), ...after.keys()])];
  // An empty list or map on one side and nothing on the other is no change worth a line.
  const empty = (a, b) => a === undefined && (b === '[]' || b === '{}');
  const changed = paths.filter((p) => before.get(p) !== after.get(p)
    && !empty(before.get(p), after.get(p)) && !empty(after.get(p), before.get(p)));
  if (!changed.length) return `${section}: saved unchanged`;
  const name = (p) => (p ? `${section}.${p}` : section);
  return el('ul', { class: 'diff' }, changed.map((p) => el('li', {}, el('code', {}, name(p)), ': ',
    `${before.get(p) ?? '(none)'} → ${after.get(p) ?? '(removed)'}`)));
}

let defaults = null;

async function showAudit() {
  defaults = defaults ?? await api('GET', '/api/settings-defaults');
  const entries = await api('GET', `/api/audit?limit=${auditForm.elements.limit.value}`);
  table($('audit'), {
    rows: entries,
    empty: 'Nothing recorded yet.',
    columns: [
      { label: 'When', value: (e) => when(e.at) },
      { label: 'Who', value: (e) => e.actor },
      { label: 'What', value: (e) => e.action },
      { label: 'Detail', value: (e) => auditDetail(e.detail, defaults), long: true },
    ],
  });
}
onSubmit(auditForm, showAudit);

showAudit().catch(() => {});
showFirmware().catch(() => {});
showTls().catch(() => {});
showTime().catch(() => {});

// Configuration: the secrets bundle (a download made by a POST), and imports.
onSubmit($('config-secrets-form'), async ({ passphrase }) => {
  const csrf = $('config-secrets-form').elements._csrf.value;
  const response = await fetch('/api/settings/export/secrets', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify({ passphrase }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body);
  }
  const name = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') ?? '')?.[1] ?? 'obsbox.secrets';
  const link = el('a', { href: URL.createObjectURL(await response.blob()), download: name });
  link.click();
  URL.revokeObjectURL(link.href);
  $('config-secrets-form').reset();
});

/** A file's bytes as base64. */
async function base64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

function showPlan(plan, applied) {
  const show = (v) => (v === null || v === undefined ? '(none)' : JSON.stringify(v));
  const changes = el('div', { class: 'table-wrap' });
  table(changes, {
    columns: [
      { label: 'Setting', value: (c) => c.path },
      { label: 'Before', value: (c) => show(c.before), long: true },
      { label: 'After', value: (c) => show(c.after), long: true },
    ],
    rows: plan.changes,
    empty: 'No setting changes.',
  });
  const secrets = [
    ['Secrets written', plan.secrets_written],
    ['Secrets missing (set them on the box)', plan.secrets_missing],
    ['In the bundle, not named by the file (left out)', plan.secrets_ignored],
  ].filter(([, names]) => names.length);
  $('config-plan').replaceChildren(
    el('p', {}, `${applied ? 'Imported' : 'Would change'}: ${plan.changes.length} settings${plan.sections.length ? ` in ${plan.sections.join(', ')}` : ''}.`),
    changes,
    ...secrets.map(([what, names]) => el('p', {}, `${what}: ${names.join(', ')}`)),
  );
}

// Which of the import form's two buttons sent it.
let dryRun = false;
for (const button of $('config-import-form').querySelectorAll('button[type=submit]')) {
  button.addEventListener('click', () => { dryRun = button.name === 'dry_run'; });
}

onSubmit($('config-import-form'), async ({ config, secrets, passphrase }, send) => {
  const request = { config: await config.text(), dry_run: dryRun };
  if (secrets) {
    request.secrets = await base64(secrets);
    request.passphrase = passphrase;
  }
  const answer = await send('POST', '/api/settings/import', request);
  showPlan(answer.plan, answer.applied);
  if (answer.applied) say('Configuration imported.');
});
