// First-boot setup: the administrator's password, the host name, the time
// zone; or a restore from a configuration file (and its secrets bundle).
import { api, options, onSubmit } from './app.js';

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
