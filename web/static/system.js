// System: reboot, factory reset, diagnostics, the TLS certificate, the audit log.
import { api, table, when, onSubmit, say, el } from './app.js';

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

const auditForm = $('audit-form');
auditForm.elements.limit.value = '100';

async function showAudit() {
  const entries = await api('GET', `/api/audit?limit=${auditForm.elements.limit.value}`);
  table($('audit'), {
    rows: entries,
    empty: 'Nothing recorded yet.',
    columns: [
      { label: 'When', value: (e) => when(e.at) },
      { label: 'Who', value: (e) => e.actor },
      { label: 'What', value: (e) => e.action },
      { label: 'Detail', value: (e) => e.detail },
    ],
  });
}
onSubmit(auditForm, showAudit);

showAudit().catch(() => {});
showTls().catch(() => {});
