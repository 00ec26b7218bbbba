// Services: start, stop and restart each child; follow its log live with a
// filter; read the configuration obsbox rendered for it.
import './charts.js';
import { api, every, table, badge, duration, bytes, when, action, actions, options, onSubmit, say, el } from './app.js';

const $ = (id) => document.getElementById(id);
const form = $('inspect-form');
const tail = $('tail');
const tailState = $('tail-state');
const MAX_LINES = 1000;
let stream = null;

/** What a child in `state` can be asked to do: nothing while it cannot run or is stopping. */
export function offered(state) {
  if (state === 'not installed' || state === 'unavailable' || state === 'stopping') return [];
  if (state === 'stopped') return ['start'];
  return ['stop', 'restart'];
}

const WARN = {
  stop: (name) => `Stop ${name}? It stays stopped until started again; what it does (metrics, logs, alerts) stops with it.`,
  restart: (name) => `Restart ${name}? It is briefly unavailable.`,
};

async function control(name, verb) {
  if (WARN[verb] && !window.confirm(WARN[verb](name))) return;
  await api('POST', `/api/services/${encodeURIComponent(name)}/${verb}`);
  say(`${name}: ${verb} done.`);
  refresh();
}

const refresh = every(5000, async () => {
  const services = await api('GET', '/api/services');
  options(form.elements.service, services.map((s) => s.name));
  table($('services'), {
    rows: services,
    columns: [
      { label: 'Service', value: (s) => s.name },
      { label: 'State', value: (s) => badge(s.state) },
      { label: 'PID', value: (s) => s.pid ?? '' },
      { label: 'Up for', value: (s) => duration(s.uptime_seconds) },
      { label: 'Restarts', value: (s) => s.restarts },
      { label: 'Last exit', value: (s) => (s.last_exit ? s.last_exit.how : '') },
      { label: 'Log', value: (s) => `${s.log_lines} lines, ${bytes(s.log_bytes)}` },
      { label: 'Detail', value: (s) => s.detail ?? '', long: true },
      {
        label: 'Actions',
        value: (s) => actions(...offered(s.state).map((verb) => action(
          verb[0].toUpperCase() + verb.slice(1), `${verb[0].toUpperCase() + verb.slice(1)} ${s.name}`,
          () => control(s.name, verb),
        ))),
      },
    ],
  });
});

function follow(name, filter) {
  stream?.close();
  tail.replaceChildren();
  tailState.textContent = 'connecting';
  const query = filter ? `?filter=${encodeURIComponent(filter)}` : '';
  stream = new EventSource(`/api/services/${encodeURIComponent(name)}/logs/stream${query}`);
  stream.onopen = () => { tailState.textContent = `following ${name}`; };
  stream.onerror = () => { tailState.textContent = 'reconnecting'; };
  stream.onmessage = (event) => {
    const atBottom = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;
    tail.append(`${event.data}\n`);
    while (tail.childNodes.length > MAX_LINES) tail.firstChild.remove();
    if (atBottom) tail.scrollTop = tail.scrollHeight;
  };
}

async function showConfig(name) {
  const config = await api('GET', `/api/services/${encodeURIComponent(name)}/config`);
  $('config').replaceChildren(...(config.files.length
    ? config.files.map((f) => el('details', {}, el('summary', {}, f.path), el('pre', { class: 'log', tabindex: 0 }, f.contents)))
    : [el('p', { class: 'empty' }, `obsbox renders no configuration for ${name}.`)]));
}

onSubmit(form, async ({ service, filter }) => {
  if (!service) return;
  follow(service, filter);
  await showConfig(service);
});

/** A figure Prometheus has not reported yet shows as blank, not as zero. */
const figure = (n) => (n === null || n === undefined ? '' : Math.round(n).toLocaleString());
const secretState = (s) => (s === null ? 'none needed' : badge(s ? 'set' : 'missing'));

every(15000, async () => {
  const up = await api('GET', '/api/upstream');
  $('upstream-state').textContent = up.prometheus_error ? `The figures below are unknown: ${up.prometheus_error}.` : '';
  table($('remote-write'), {
    rows: up.remote_write,
    empty: 'No remote write: metrics stay on this box.',
    columns: [
      { label: 'Remote write', value: (q) => q.name },
      { label: 'URL', value: (q) => q.url, long: true },
      { label: 'Secret', value: (q) => secretState(q.secret_set) },
      { label: 'Behind', value: (q) => (q.lag_seconds === null ? '' : duration(q.lag_seconds)) },
      { label: 'Pending samples', value: (q) => figure(q.samples_pending) },
      { label: 'Sent', value: (q) => figure(q.samples_sent_total) },
      { label: 'Retried', value: (q) => figure(q.samples_retried_total) },
      { label: 'Failed', value: (q) => figure(q.samples_failed_total) },
      { label: 'Bytes sent', value: (q) => (q.bytes_sent_total === null ? '' : bytes(q.bytes_sent_total)) },
    ],
  });
  table($('central-alertmanagers'), {
    rows: up.alertmanagers,
    empty: 'No central Alertmanager: alerts go to this box\'s own only.',
    columns: [
      { label: 'Central Alertmanager', value: (a) => a.name },
      { label: 'URL', value: (a) => a.url, long: true },
      { label: 'Secret', value: (a) => secretState(a.secret_set) },
      { label: 'Alerts sent', value: (a) => figure(a.alerts_sent_total) },
      { label: 'Failed sends', value: (a) => figure(a.errors_total) },
    ],
  });
  table($('log-forward'), {
    rows: up.log_forward,
    empty: 'No log forwarding: logs stay on this box.',
    columns: [
      { label: 'Logs forwarded to', value: (f) => f.name },
      { label: 'URL', value: (f) => f.url, long: true },
      { label: 'Secret', value: (f) => secretState(f.secret_set) },
      { label: 'Waiting since', value: (f) => (f.waiting_since === null ? '' : when(f.waiting_since * 1000)) },
      { label: 'Lines forwarded', value: (f) => figure(f.lines_forwarded_total) },
      { label: 'Refused', value: (f) => figure(f.lines_refused_total) },
      { label: 'Lost', value: (f) => figure(f.lines_lost_total) },
      { label: 'Failed pushes', value: (f) => figure(f.failed_pushes_total) },
    ],
  });
});
