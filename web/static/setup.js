// First-boot setup: the administrator's password, the host name, the time zone.
import { api, options, onSubmit } from './app.js';

const form = document.getElementById('setup-form');
form.elements.hostname.value = document.querySelector('.hostname')?.textContent.trim() ?? '';

api('GET', '/api/timezones').then((zones) => {
  options(form.elements.timezone, zones);
  const here = Intl.DateTimeFormat().resolvedOptions().timeZone;
  form.elements.timezone.value = zones.includes(here) ? here : (zones.includes('UTC') ? 'UTC' : zones[0]);
}).catch(() => {});

onSubmit(form, async (v, send) => {
  const answer = await send('POST', '/api/setup', v);
  location.assign(answer?.next ?? '/login');
});
