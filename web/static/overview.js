// Overview: the children, alerts, backups, disks and UPS at a glance, every 5 s.
import './charts.js';
import { api, every, table, badge, bytes, duration, when, el } from './app.js';

const $ = (id) => document.getElementById(id);

function render(o) {
  $('overview-summary').textContent =
    `${o.hostname}, obsbox ${o.version}, up ${duration(o.uptime_seconds)}. Updated ${when(Date.now())}.`;
  table($('children'), {
    rows: o.children,
    columns: [
      { label: 'Service', value: (c) => c.name },
      { label: 'State', value: (c) => badge(c.state) },
      { label: 'Ready', value: (c) => (c.ready ? 'yes' : 'no') },
      { label: 'Up for', value: (c) => duration(c.uptime_seconds) },
      { label: 'Restarts', value: (c) => c.restarts },
      { label: 'Detail', value: (c) => c.detail ?? '' },
    ],
  });
  table($('alerts'), {
    rows: o.alerts,
    empty: 'No alert is firing.',
    columns: [
      { label: 'Alert', value: (a) => el('a', { href: `/runbooks/${encodeURIComponent(a.alertname)}` }, a.alertname) },
      { label: 'Severity', value: (a) => badge(a.severity) },
      { label: 'Since', value: (a) => when(a.starts_at) },
      { label: 'Acknowledged', value: (a) => a.acked_by ?? 'no' },
    ],
  });
  table($('backups'), {
    rows: o.backups,
    empty: 'No backup job yet.',
    columns: [
      { label: 'Job', value: (b) => b.job },
      { label: 'Last', value: (b) => (b.last ? badge(b.last.result) : 'never') },
      { label: 'When', value: (b) => when(b.last?.started_at) },
      { label: 'Next', value: (b) => when(b.next_run) },
    ],
  });
  table($('disks'), {
    rows: o.disks,
    empty: 'No disk reported.',
    columns: [
      { label: 'Mount', value: (d) => d.mount },
      { label: 'Device', value: (d) => d.device },
      { label: 'Used', value: (d) => `${Math.round(d.used_percent)} %` },
      { label: 'Free', value: (d) => `${bytes(d.available_bytes)} of ${bytes(d.total_bytes)}` },
    ],
  });
  table($('disk-health'), {
    rows: o.disk_health,
    empty: 'No disk read yet.',
    columns: [
      { label: 'Disk', value: (d) => el('a', { href: '/disks' }, d.device) },
      { label: 'Health', value: (d) => badge(d.health) },
      { label: 'Temperature', value: (d) => (d.temperature === null ? '' : `${d.temperature} °C`) },
      {
        label: 'Note',
        value: (d) => d.monitoring_error ?? (d.standby ? 'standby' : d.halts.map((h) => `${h.job} halted`).join('; ')),
      },
    ],
  });
  const ups = o.ups || {};
  const s = ups.status || {};
  const facts = [['state', badge(String(ups.state || 'unknown').replaceAll('_', ' '))]];
  if (ups.lost) facts.push(['link', badge('lost')]);
  if (s.charge_percent != null) facts.push(['charge', `${s.charge_percent} %`]);
  if (s.runtime_seconds != null) facts.push(['runtime', duration(s.runtime_seconds)]);
  if (ups.shutdown_reason) facts.push(['shutdown', ups.shutdown_reason]);
  $('ups').replaceChildren(ups.configured
    ? el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]))
    : el('p', { class: 'empty' }, 'No UPS configured.'));
}

every(5000, async () => render(await api('GET', '/api/overview')));
