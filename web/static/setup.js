// First-boot setup: the administrator's password, the host name, the time
// zone; or a restore from a configuration file (and its secrets bundle).
import {
  action, api, bytes, clearMessage, kindParts, onSubmit, options, say, snapshotId, table, when,
} from './app.js';

const form = document.getElementById('setup-form');
form.elements.hostname.value = document.querySelector('.hostname')?.textContent.trim() ?? '';

api('GET', '/api/timezones').then((zones) => {
  options(form.elements.timezone, zones);
  const here = Intl.DateTimeFormat().resolvedOptions().timeZone;
  form.elements.timezone.value = zones.includes(here) ? here : (zones.includes('UTC') ? 'UTC' : zones[0]);
}).catch(() => {});

// With a configuration file, the host name, time zone and heartbeat come from it.
form.elements.config.addEventListener('change', () => {
  const restoring = form.elements.config.files.length > 0;
  for (const name of ['hostname', 'timezone', 'heartbeat_url']) form.elements[name].disabled = restoring;
});

/** A file's bytes as base64. */
async function base64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

onSubmit(form, async (v, send) => {
  const { config, secrets, passphrase, ...setup } = v;
  if (config) {
    setup.restore = { config: await config.text() };
    if (secrets) {
      setup.restore.secrets = await base64(secrets);
      setup.restore.passphrase = passphrase;
    }
  }
  const answer = await send('POST', '/api/setup', setup);
  location.assign(answer?.next ?? '/login');
});

// ---- Restore from a backup: list the snapshots holding a box's state, restore one.
const backup = document.getElementById('backup-form');
options(backup.elements.backend, [['restic', 'restic'], ['pbs', 'Proxmox Backup Server']]);
kindParts(backup, 'backend');
const snapshots = document.getElementById('backup-snapshots');
const fingerprint = document.getElementById('backup-fingerprint');

/** The repository and its secrets as the API takes them. */
async function sourceOf(v) {
  const source = { backend: v.backend, repository: v.repository, password: v.password };
  if (v.backend === 'pbs') {
    if (v.namespace) source.namespace = v.namespace;
    if (v.fingerprint) source.fingerprint = v.fingerprint;
    if (v.encryption_key) source.encryption_key = await v.encryption_key.text();
    if (v.encryption_password) source.encryption_password = v.encryption_password;
  }
  return source;
}

/** Waits for obsbox to answer again after its restart, then goes to the login page. */
async function afterRestart() {
  const deadline = Date.now() + 5 * 60 * 1000;
  await new Promise((done) => { setTimeout(done, 1000); });
  while (Date.now() < deadline) {
    try {
      const answer = await fetch('/api/session', { credentials: 'same-origin' });
      // Set up (the restored box): the session check wants a sign-in.
      if (answer.status === 401) break;
    } catch { /* restarting */ }
    await new Promise((done) => { setTimeout(done, 1000); });
  }
  location.assign('/login');
}

onSubmit(backup, async (v, send) => {
  const source = await sourceOf(v);
  const listing = await send('POST', '/api/setup/backup/snapshots', source);
  clearMessage();
  document.getElementById('backup-snapshots-title').hidden = false;
  fingerprint.hidden = !(listing.server_fingerprint || listing.fingerprint_error);
  fingerprint.textContent = listing.server_fingerprint
    ? `The server presents the certificate fingerprint ${listing.server_fingerprint}.`
    : `The server's certificate could not be read: ${listing.fingerprint_error ?? ''}`;
  const restore = (snapshot) => async () => {
    say(`Restoring the snapshot of ${snapshot.host} from ${when(snapshot.time)}…`);
    await send('POST', '/api/setup/backup/restore', { source, snapshot: snapshot.id });
    say('Restored. obsbox restarts into the restored box; then sign in with its password.');
    await afterRestart();
  };
  table(snapshots, {
    columns: [
      { label: 'Time', value: (s) => when(s.time), sort: (s) => s.time },
      { label: 'Box', value: (s) => s.host },
      { label: 'Job', value: (s) => s.job ?? '' },
      { label: 'Snapshot', value: (s) => snapshotId(s.id) },
      { label: 'Size', value: (s) => (s.size == null ? '' : bytes(s.size)), sort: (s) => s.size ?? 0 },
      { label: '', value: (s) => action('Restore', `Restore snapshot ${s.id}`, restore(s)), sort: false },
    ],
    rows: listing.snapshots,
    empty: 'No snapshot in this repository holds obsbox\'s own state.',
  });
});
