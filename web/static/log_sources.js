// Log sources: the syslog receiver and the Loki push endpoint on or off,
// push tokens (shown once, with snippets for common senders filled in),
// and every sender seen; refreshes every 10 s.
import {
  api, every, table, when, action, el, say, loadSection, saveSection, ApiError,
} from './app.js';

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

/** Turns a way in on or off, over the version of its section shown (If-Match): a change made meanwhile elsewhere is shown, not overwritten. */
async function toggle(section, { value, version }) {
  try {
    await saveSection(section, { ...value, enabled: !value.enabled }, version);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 409) throw e;
    await load();
    say(`Not changed: someone changed ${section} in another tab or session since this page loaded it. The list now shows it as it is; try again if it still applies.`, { error: true });
    return;
  }
  say(`${section} ${value.enabled ? 'turned off' : 'turned on'}.`);
  await load();
}

async function load() {
  const [syslog, intake, sources, tokens, senders] = await Promise.all([
    loadSection('syslog'), loadSection('log_intake'),
    api('GET', '/api/logs/sources'), api('GET', '/api/logs/tokens'), api('GET', '/api/logs/senders'),
  ]);
  const listening = sources.syslog.listening;
  const ways = [
    { name: 'syslog', section: syslog,
      where: ['udp', 'tcp', 'tls'].filter((k) => listening[k]).map((k) => `${k} ${listening[k]}`).join(', ') },
    { name: 'log_intake', section: intake, where: sources.log_intake.path },
  ];
  table($('ways'), {
    columns: [
      { label: 'Way in', value: (w) => w.name },
      { label: 'State', value: (w) => (w.section.value.enabled ? 'on' : 'off') },
      { label: 'Where', value: (w) => (w.section.value.enabled ? w.where : '') },
      { label: 'Actions', value: (w) => action(w.section.value.enabled ? 'Turn off' : 'Turn on', `Turn ${w.name} ${w.section.value.enabled ? 'off' : 'on'}`, () => toggle(w.name, w.section)) },
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
