// Fleet: the other boxes this one was told about, as each reports itself.
import { api, every, table, badge, when } from './app.js';

const backups = (p) => p.backups
  .map((b) => `${b.job}: ${b.last_result ?? 'never ran'}${b.last_started_at ? ` (${when(new Date(b.last_started_at).toISOString())})` : ''}`)
  .join(', ');

every(30000, async () => {
  const peers = await api('GET', '/api/fleet');
  table(document.getElementById('peers'), {
    rows: peers,
    empty: 'No other box yet: add one to the peers settings.',
    columns: [
      { label: 'Box', value: (p) => p.name },
      { label: 'State', value: (p) => badge(p.state) },
      { label: 'Why', value: (p) => p.error ?? '', long: true },
      { label: 'Version', value: (p) => p.version ?? '' },
      { label: 'Not ready', value: (p) => p.children_not_ready.join(', ') },
      { label: 'Alerts firing', value: (p) => p.alerts_firing.map((a) => `${a.alertname} (${a.severity})`).join(', '), long: true },
      { label: 'Backups', value: (p) => `${p.backups_halted ? 'halted; ' : ''}${backups(p)}`, long: true },
      { label: 'Update waiting', value: (p) => p.update_waiting?.version ?? '' },
    ],
  });
});
