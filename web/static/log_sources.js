// Log sources: the syslog receiver and the Loki push endpoint on or off,
// push tokens (shown once, with snippets for common senders filled in),
// and every sender seen; refreshes every 10 s.
import { api, every, table, when, action, el, say } from './app.js';

const $ = (id) => document.getElementById(id);
const box = location.hostname;

function snippets(host, token) {
  const url = `${location.protocol}//${box}${location.port ? `:${location.port}` : ''}/loki/api/v1/push`;
  return [
    `# Promtail\nclients:\n  - url: ${url}\n    basic_auth: {username: ${host}, password: ${token}}`,
    `// Grafana Alloy\nloki.write "obsbox" {\n  endpoint {\n    url = "${url}"\n    basic_auth { username = "${host}" password = "${token}" }\n  }\n}`,
    `# Docker's Loki logging driver\ndocker run --log-driver=loki --log-opt loki-url="${url.replace('//', `//${host}:${token}@`)}" ...`,
    `# rsyslog (syslog, no token)\n*.* action(type="omfwd" target="${box}" port="514" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")`,
    `# syslog-ng (syslog over TLS, no token)\ndestination d_obsbox { syslog("${box}" port(6514) transport("tls") tls(ca-file("/etc/obsbox-ca.pem") peer-verify(required-trusted))); };`,
  ].join('\n\n');
}

async function toggle(section, settings) {
  await api('PUT', `/api/settings/${section}`, { ...settings, enabled: !settings.enabled });
  say(`${section} ${settings.enabled ? 'turned off' : 'turned on'}.`);
  await load();
}

async function load() {
  const [sources, tokens, senders] = await Promise.all([
    api('GET', '/api/logs/sources'), api('GET', '/api/logs/tokens'), api('GET', '/api/logs/senders'),
  ]);
  const listening = sources.syslog.listening;
  const ways = [
    { name: 'syslog', settings: sources.syslog.settings,
      where: ['udp', 'tcp', 'tls'].filter((k) => listening[k]).map((k) => `${k} ${listening[k]}`).join(', ') },
    { name: 'log_intake', settings: sources.log_intake.settings, where: sources.log_intake.path },
  ];
  table($('ways'), {
    columns: [
      { label: 'Way in', value: (w) => w.name },
      { label: 'State', value: (w) => (w.settings.enabled ? 'on' : 'off') },
      { label: 'Where', value: (w) => (w.settings.enabled ? w.where : '') },
      { label: 'Actions', value: (w) => action(w.settings.enabled ? 'Turn off' : 'Turn on', `Turn ${w.name} ${w.settings.enabled ? 'off' : 'on'}`, () => toggle(w.name, w.settings)) },
    ],
    rows: ways,
  });
  table($('tokens'), {
    columns: [
      { label: 'Host', value: (t) => t.host },
      { label: 'Made', value: (t) => when(t.created_at) },
      { label: 'Last used', value: (t) => (t.last_used_at ? when(t.last_used_at) : 'never') },
      { label: 'Actions', value: (t) => action('Revoke', `Revoke ${t.host}`, async () => {
        await api('DELETE', `/api/logs/tokens/${encodeURIComponent(t.host)}`);
        say(`The token of ${t.host} is revoked.`);
        await load();
      }) },
    ],
    rows: tokens,
    empty: 'No push tokens yet.',
  });
  table($('senders'), {
    columns: [
      { label: 'Way in', value: (s) => s.source },
      { label: 'Sender', value: (s) => s.sender },
      { label: 'Host', value: (s) => s.host },
      { label: 'Last seen', value: (s) => (s.last_seen ? when(s.last_seen * 1000) : '') },
      { label: 'Lines/s', value: (s) => String(s.lines_per_second) },
      { label: 'Refused', value: (s) => String(s.refused) },
      { label: 'Truncated', value: (s) => String(s.truncated) },
      { label: 'Malformed', value: (s) => String(s.malformed) },
    ],
    rows: senders,
    empty: 'No sender yet.',
  });
}

$('token-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const host = $('token-host').value.trim();
  const made = await api('POST', '/api/logs/tokens', { host });
  $('snippets').textContent = snippets(made.host, made.token);
  $('new-token').hidden = false;
  await load();
});

every(10000, load);
