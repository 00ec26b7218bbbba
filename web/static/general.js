// General settings: every settings section without a page of its own, each
// field with its default, range and a hint. A section is saved only if
// nobody changed it since this page loaded it; if someone did, their values
// are shown with what was typed here, and nothing is lost silently.
import { api, el, say, loadSection, saveSection, onSubmit, options, ApiError } from './app.js';

const DURATION = 'A duration such as 30s, 5m, 1h30m or 7d.';

/** `path` is the field's place in its section (`prometheus.port` in `services`). */
const SECTIONS = [
  { section: 'general', title: 'The box', fields: [
    { path: 'hostname', label: 'Host name', range: 'letters, digits and -, up to 63', hint: 'Shown in the UI and on every alert (the obsbox_host label).' },
    { path: 'timezone', label: 'Time zone', kind: 'zone', range: "an IANA zone; empty is the system's zone", hint: 'Backup schedules, retention periods and every time the UI shows are reckoned in it.' },
    { path: 'child_user', label: "Children's user", range: 'auto, "" (root) or a user in /etc/passwd', hint: 'The Unix user Prometheus, Loki and the others run as. auto: obsbox, else nobody.' },
  ] },
  { section: 'time', title: 'Clock (NTP)', fields: [
    { path: 'enabled', label: 'Keep the clock synchronised (NTP)', kind: 'checkbox' },
    { path: 'servers', label: 'NTP servers', kind: 'list', range: 'host names or IP addresses separated by spaces, at most 8', hint: 'On the appliance the NTP daemon (busybox ntpd or chrony) follows them; the System page shows whether the clock is synchronised.' },
    { path: 'use_dhcp_servers', label: "Also use the servers DHCP offers", kind: 'checkbox' },
  ] },
  { section: 'alerting', title: 'Links', fields: [
    { path: 'external_url', label: 'External URL', kind: 'url', range: 'http(s)://…, no ?, # or ;', hint: 'How people reach this box: the base of runbook links in alerts and of the links to Grafana and Prometheus. Empty: http://<host name>:<web port>.' },
  ] },
  { section: 'prometheus', title: 'Metrics (Prometheus)', fields: [
    { path: 'scrape_interval', label: 'Scrape interval', range: '1s – 1h', hint: `How often every target is read. ${DURATION}` },
    { path: 'evaluation_interval', label: 'Rule evaluation interval', range: '1s – 1h', hint: 'How often alert rules are checked.' },
    { path: 'retention', label: 'Retention', range: '2h – 3650d', hint: 'How long samples are kept; older ones are deleted. Prometheus restarts.' },
  ] },
  { section: 'loki', title: 'Logs (Loki)', fields: [
    { path: 'retention', label: 'Retention', range: '1d – 3650d', hint: 'How long log lines are kept; the compactor deletes older ones.' },
    { path: 'max_line_size_kb', label: 'Longest line (KB)', kind: 'number', min: 1, max: 1024, range: '1 – 1024', hint: 'Longer lines are refused.' },
    { path: 'reject_old_samples_max_age', label: 'Oldest line taken', range: '1h – 30d, at most the retention', hint: 'Lines older than this are refused.' },
    { path: 'grpc_port', label: 'gRPC port', kind: 'number', min: 1, max: 65535, range: '1 – 65535', hint: 'Loopback only; nothing outside talks to it.' },
  ] },
  { section: 'alertmanager', title: 'Notifications (Alertmanager)', fields: [
    { path: 'group_wait', label: 'Group wait', range: '0s – 1h', hint: 'Wait before the first notification of a new group of alerts.' },
    { path: 'group_interval', label: 'Group interval', range: '1s – 1d', hint: 'Wait before telling of new alerts in a group already told of.' },
    { path: 'repeat_interval', label: 'Repeat interval', range: '1m – 30d', hint: 'Wait before repeating a notification.' },
    { path: 'resolve_timeout', label: 'Resolve timeout', range: '10s – 1d', hint: 'How long an alert without updates stays firing.' },
  ] },
  { section: 'services', title: 'Services and ports', fields: ['prometheus', 'alertmanager', 'node_exporter', 'loki', 'grafana', 'blackbox'].flatMap((child) => [
    { path: `${child}.enabled`, label: `Run ${child}`, kind: 'checkbox' },
    { path: `${child}.port`, label: `${child} port`, kind: 'number', min: 1, max: 65535, range: '1 – 65535, each used once', hint: 'On 127.0.0.1; reached from outside through obsbox. The child restarts.' },
  ]) },
  { section: 'logs', title: "Children's output", fields: [
    { path: 'segment_bytes', label: 'Log file size (bytes)', kind: 'number', min: 65536, max: 1073741824, range: '65536 – 1073741824', hint: "A child's log file is compressed and a new one started at this size." },
    { path: 'keep_segments', label: 'Log files kept', kind: 'number', min: 1, max: 1000, range: '1 – 1000', hint: 'Older ones are deleted.' },
    { path: 'ring_bytes', label: 'Live view memory (bytes)', kind: 'number', min: 1024, max: 16777216, range: '1024 – 16777216', hint: 'Recent output kept in memory per child; applied at the next start of obsbox.' },
    { path: 'batch_bytes', label: 'Shipping batch (bytes)', kind: 'number', min: 4096, max: 4194304, range: '4096 – 4194304', hint: 'Lines are sent to Loki once a batch is this big…' },
    { path: 'batch_wait_ms', label: 'Shipping wait (ms)', kind: 'number', min: 100, max: 60000, range: '100 – 60000', hint: '…or once its first line waited this long.' },
  ] },
  { section: 'disks', title: 'Disk health (SMART)', fields: [
    { path: 'enabled', label: 'Read the disks', kind: 'checkbox' },
    { path: 'interval', label: 'Reading interval', range: '10s – 1d', hint: 'How often every disk is read; a sleeping disk is not woken.' },
    { path: 'timeout', label: 'Reading timeout', range: '1s – 1h', hint: 'A smartctl run is stopped and reported after this.' },
    { path: 'temperature_warning', label: 'Too warm (°C)', kind: 'number', min: 20, max: 100, range: '20 – 100, below too hot', hint: 'NVMe disks use their own limit when they report one.' },
    { path: 'temperature_critical', label: 'Too hot (°C)', kind: 'number', min: 20, max: 100, range: '20 – 100', hint: 'Backups that write to the disk halt.' },
    { path: 'short_test', label: 'Short self-test', range: 'a calendar event such as 03:00 or sun 04:00; empty for never', hint: 'When every disk runs a short self-test, in the box\'s zone.' },
    { path: 'long_test', label: 'Long self-test', range: 'a calendar event; empty for never', hint: 'When every disk runs a long self-test.' },
  ] },
  { section: 'grafana', title: 'Dashboards (Grafana)', fields: [
    { path: 'homepath', label: 'Grafana home', range: 'a directory', hint: "Where Grafana's conf/defaults.ini and public/ are." },
  ] },
];

const get = (value, path) => path.split('.').reduce((v, key) => (v == null ? v : v[key]), value);
const set = (value, path, field) => {
  const keys = path.split('.');
  const last = keys.pop();
  keys.reduce((v, key) => v[key], value)[last] = field;
};
const shown = (v) => (v === '' ? '(empty)' : v === null || v === undefined ? '(unset)' : Array.isArray(v) ? v.join(' ') || '(none)' : String(v));
const idOf = (section, path) => `${section}-${path.replace('.', '-')}`;

function fieldOf(section, f, fallback) {
  const id = idOf(section, f.path);
  const about = [f.range ? `Default ${shown(get(fallback, f.path))}; ${f.range}.` : `Default ${get(fallback, f.path) ? 'on' : 'off'}.`, f.hint].filter(Boolean).join(' ');
  const described = `${id}-hint ${id}-problem`;
  const name = f.path.replaceAll('.', '_');
  let control;
  if (f.kind === 'zone') control = el('select', { id, name, 'aria-describedby': described });
  else if (f.kind === 'checkbox') control = el('input', { id, name, type: 'checkbox', 'aria-describedby': described });
  else control = el('input', { id, name, type: f.kind === 'list' ? 'text' : f.kind || 'text', min: f.min, max: f.max, 'aria-describedby': described, autocomplete: 'off' });
  return el('div', { class: f.kind === 'checkbox' ? 'field check' : 'field' },
    f.kind === 'checkbox' ? [control, el('label', { for: id }, f.label)] : [el('label', { for: id }, f.label), control],
    el('p', { class: 'hint', id: `${id}-hint` }, about),
    el('p', { class: 'problem', id: `${id}-problem`, 'data-problem-for': name }));
}

function read(form, f) {
  const field = form.elements[f.path.replaceAll('.', '_')];
  if (f.kind === 'checkbox') return field.checked;
  if (f.kind === 'number') return field.value === '' ? null : Number(field.value);
  if (f.kind === 'list') return field.value.split(/[\s,]+/).filter(Boolean);
  return field.value.trim();
}

function write(form, f, value) {
  const field = form.elements[f.path.replaceAll('.', '_')];
  if (f.kind === 'checkbox') field.checked = Boolean(value);
  else if (f.kind === 'list') field.value = (value || []).join(' ');
  else field.value = value === null || value === undefined ? '' : String(value);
}

async function main() {
  const container = document.getElementById('general-sections');
  const csrf = container.dataset.csrf;
  const [defaults, zones] = await Promise.all([api('GET', '/api/settings-defaults'), api('GET', '/api/timezones')]);
  for (const s of SECTIONS) {
    const heading = `h-${s.section}`;
    const conflict = el('div', { class: 'conflict', role: 'alert', hidden: true });
    const form = el('form', { id: `section-${s.section}`, class: 'card', 'aria-labelledby': heading },
      el('h2', { id: heading }, s.title),
      el('input', { type: 'hidden', name: '_csrf', value: csrf }),
      conflict,
      el('div', { class: 'fields' }, s.fields.map((f) => fieldOf(s.section, f, defaults[s.section]))),
      el('div', { class: 'actions' }, el('button', { type: 'submit' }, `Save ${s.title}`)));
    container.append(form);
    const zone = form.querySelector('select');
    if (zone) options(zone, zones, "The system's zone");
    let loaded = await loadSection(s.section);
    const show = () => { for (const f of s.fields) write(form, f, get(loaded.value, f.path)); };
    show();
    onSubmit(form, async () => {
      conflict.hidden = true;
      const mine = structuredClone(loaded.value);
      for (const f of s.fields) set(mine, f.path, read(form, f));
      try {
        loaded = await saveSection(s.section, mine, loaded.version, csrf);
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 409) throw e;
        // Someone saved this section after it was loaded here: show theirs, and what was typed.
        loaded = { value: e.body.current, version: e.body.version };
        const differ = s.fields.filter((f) => JSON.stringify(get(mine, f.path)) !== JSON.stringify(get(loaded.value, f.path)));
        show();
        conflict.replaceChildren(
          el('p', {}, `Not saved: ${s.title} was changed in another tab or session after this page loaded it. The fields now show what is stored.`),
          differ.length ? el('ul', {}, differ.map((f) => el('li', {}, `${f.label}: now ${shown(get(loaded.value, f.path))}; you typed ${shown(get(mine, f.path))}`))) : null,
          el('p', {}, 'Change what you still want and save again.'));
        conflict.hidden = false;
        say(`Not saved: ${s.title} was changed elsewhere meanwhile.`, { error: true });
        return;
      }
      show();
      say(`Saved ${s.title}.`);
    });
  }
}

main().catch((e) => { if (!(e instanceof ApiError)) say(String(e.message || e), { error: true }); });
