// Alerting: alert history with acknowledgements, receivers and test alerts,
// routes, thresholds, silences, escalation drills.
import {
  api, every, table, badge, when, duration, action, actions, options, onSubmit, fill,
  listEditor, settingsList, labelsText, parseLabels, say, el, kindParts, ApiError,
} from './app.js';

const $ = (id) => document.getElementById(id);

// ---- history

const historyForm = $('history-form');

const showHistory = every(15000, async () => {
  const status = historyForm.elements.status.value;
  const query = status === 'all' ? '' : `&status=${status}`;
  const { stats, alerts, precision } = await api('GET', `/api/alerts?limit=100${query}`);
  const firing = Object.entries(stats.firing).map(([s, n]) => `${n} ${s}`).join(', ') || 'none';
  $('alert-stats').textContent = `Firing: ${firing}. Last 30 days: ${stats.acknowledged} acknowledged, `
    + `${stats.resolved} resolved, MTTA ${duration(stats.mtta_seconds) || 'n/a'}, MTTR ${duration(stats.mttr_seconds) || 'n/a'}.`;
  table($('history'), {
    rows: alerts,
    empty: 'No alerts.',
    columns: [
      { label: 'Alert', value: (a) => el('a', { href: `/runbooks/${encodeURIComponent(a.alertname)}` }, a.alertname) },
      { label: 'Severity', value: (a) => badge(a.severity) },
      { label: 'Status', value: (a) => badge(a.status) },
      { label: 'Summary', value: (a) => a.annotations.summary ?? '' },
      { label: 'Started', value: (a) => when(a.starts_at), sort: (a) => Date.parse(a.starts_at) },
      { label: 'Ended', value: (a) => when(a.ends_at) },
      {
        label: 'Acknowledged',
        value: (a) => (a.acked_at
          ? `${a.acked_by}, ${when(a.acked_at)}`
          : action('Acknowledge', `Acknowledge ${a.alertname} ${a.id}`, async () => {
            await api('POST', `/api/alerts/${a.id}/ack`);
            say(`Acknowledged ${a.alertname}.`);
            await showHistory();
          })),
      },
      {
        // Said once acknowledged or resolved: the input of precision.
        label: 'Worth it',
        value: (a) => {
          if (a.mark) return `${a.mark} (${a.marked_by})`;
          if (!a.acked_at && a.status !== 'resolved') return '';
          const mark = (m) => action(m === 'noise' ? 'Noise' : 'Actionable', `Mark ${a.alertname} ${a.id} ${m}`, async () => {
            await api('POST', `/api/alerts/${a.id}/mark`, { mark: m });
            say(`Marked ${a.alertname} ${m}.`);
            await showHistory();
          });
          return actions(mark('actionable'), mark('noise'));
        },
      },
    ],
  });
  const target = Math.round(precision.target * 100);
  $('precision-summary').textContent = `Actionable share of each rule's marked alerts over the last 30 days; target ${target}%. The least precise first.`;
  table($('precision'), {
    rows: precision.rules,
    empty: 'No alert marked yet.',
    columns: [
      { label: 'Rule', value: (r) => r.alertname },
      { label: 'Precision', value: (r) => `${Math.round(r.ratio * 100)}%`, sort: (r) => r.ratio },
      { label: 'Actionable', value: (r) => String(r.actionable) },
      { label: 'Noise', value: (r) => String(r.noise) },
      { label: 'Below target', value: (r) => (r.ratio < precision.target ? badge('below') : '') },
      { label: 'Tuning hint', value: (r) => r.hint ?? '', long: true },
    ],
  });
});
onSubmit(historyForm, () => showHistory());

// ---- receivers

const receiverForm = $('receiver-form');
const receiverSelects = () => [
  [$('test-receiver'), undefined],
  [$('route-receiver'), undefined],
  [$('thresholds-default_receiver'), '(history only)'],
  [$('thresholds-escalation_receiver'), '(no escalation)'],
];

kindParts(receiverForm);

const KINDS = {
  email: (v) => ({ to: v.to, from: v.from, smarthost: v.smarthost, username: v.username || null, require_tls: v.require_tls }),
  slack: (v) => ({ channel: v.channel }),
  webhook: (v) => ({ url: v.url, authorize: v.authorize }),
  pagerduty: (v) => ({ url: v.url || null }),
  ntfy: (v) => ({ topic_url: v.topic_url, authorize: v.authorize }),
  gotify: (v) => ({ url: v.url }),
  pushover: (v) => ({ user_key: v.user_key, url: v.url || null }),
  matrix: (v) => ({ homeserver: v.homeserver, room_id: v.room_id }),
};

const receivers = listEditor({
  form: receiverForm,
  container: $('receivers'),
  noun: 'receiver',
  key: (r) => r.name,
  columns: [
    { label: 'Name', value: (r) => r.name },
    { label: 'Kind', value: (r) => r.kind },
    { label: 'To', value: (r) => r.to ?? r.channel ?? r.url ?? r.room_id ?? r.topic_url ?? r.user_key ?? '' },
    { label: 'Secret', value: (r) => (r.secret_set ? 'set' : r.secret_required ? badge('missing') : 'none') },
    // Per receiver, kept across restarts: Alertmanager's debug log names
    // the receiver of each delivery; obsbox records its own relay posts.
    {
      label: 'Last delivered',
      value: (r) => (r.last_delivered
        ? when(r.last_delivered.at)
        : 'not seen'),
    },
    // Alertmanager's newest failure to deliver to it, as its log says.
    { label: 'Last error', value: (r) => (r.last_error ? `${when(r.last_error.at)}: ${r.last_error.error}` : 'none'), long: true },
  ],
  // Receivers, routes and thresholds share the alerting section and its
  // version (If-Match): reloading the receivers reloads the routes and
  // thresholds with it.
  load: async () => {
    const list = await api('GET', '/api/alerts/receivers');
    for (const [select, blank] of receiverSelects()) options(select, list.map((r) => r.name), blank);
    // The report goes by mail: only email receivers can take it.
    options($('thresholds-report_receiver'), list.filter((r) => r.kind === 'email').map((r) => r.name), '(not mailed)');
    await routes.refresh();
    return list;
  },
  toForm: (r) => ({ ...r, secret: '', remove_secret: false }),
  fromForm: (v) => ({
    receiver: { name: v.name, kind: v.kind, send_resolved: v.send_resolved, ...KINDS[v.kind](v) },
    secret: v.remove_secret ? '' : (v.secret || undefined),
  }),
  save: (item, original, send) => (original === null
    ? send('POST', '/api/alerts/receivers', item, overVersion())
    : send('PUT', `/api/alerts/receivers/${encodeURIComponent(original)}`, item, overVersion())),
  remove: (r) => api('DELETE', `/api/alerts/receivers/${encodeURIComponent(r.name)}`, undefined, undefined, overVersion()),
});

onSubmit($('test-form'), async ({ receiver }, send) => {
  say(`Sending a test alert to ${receiver} and waiting to learn whether it arrives…`);
  const { delivery } = await send('POST', '/api/alerts/test', { receiver });
  if (delivery.state === 'delivered') say(`The test alert was delivered to ${receiver}.`);
  else if (delivery.state === 'failed') say(`The test alert could not be delivered to ${receiver}: ${delivery.error ?? 'see the receiver\'s last error'}.`, { error: true });
  else say(`The test alert to ${receiver} is still on its way: check the receiver's last delivery and error in a minute.`);
  await receivers.refresh();
});

// ---- routes and thresholds: both live in the alerting section

const routeKey = (r, n) => `#${n + 1}`;
const alerting = settingsList('alerting', routeKey, (s) => s.alerting.routes, (routes, s) => ({ ...s.alerting, routes }));
const overVersion = () => ({ 'If-Match': alerting.version() });
const routes = listEditor({
  ...alerting,
  // The thresholds form shows the section as the routes were loaded with it:
  // both are written back with that version.
  load: async () => {
    const list = await alerting.load();
    showThresholds(alerting.settings());
    return list;
  },
  form: $('route-form'),
  container: $('routes'),
  noun: 'route',
  key: routeKey,
  columns: [
    { label: 'Order', value: (r) => routeKey(r, routes.items().indexOf(r)) },
    { label: 'Severity', value: (r) => r.severity ?? 'any' },
    { label: 'Service', value: (r) => r.service ?? 'any' },
    { label: 'Receiver', value: (r) => r.receiver },
    { label: 'Continue', value: (r) => (r.continue ? 'yes' : 'no') },
  ],
  toForm: (r) => ({ ...r, severity: r.severity ?? 'any' }),
  fromForm: (v) => ({
    severity: v.severity === 'any' ? null : v.severity,
    service: v.service || null,
    receiver: v.receiver,
    continue: v.continue,
  }),
});

const thresholdsForm = $('thresholds-form');

function showThresholds(settings) {
  const a = settings.alerting;
  fill(thresholdsForm, {
    ...a.thresholds,
    default_receiver: a.default_receiver ?? '',
    group_by: a.group_by.join(', '),
    escalation_after: a.escalation?.after ?? '',
    escalation_receiver: a.escalation?.receiver ?? '',
    report_receiver: a.report_receiver ?? '',
  });
}

// Written only over the version shown (If-Match): a change made meanwhile in
// another tab or session is shown, not overwritten.
onSubmit(thresholdsForm, async (v, send) => {
  const current = alerting.settings().alerting;
  const thresholds = Object.fromEntries(Object.keys(current.thresholds).map((k) => [k, v[k]]));
  try {
    await send('PUT', '/api/settings/alerting', {
      ...current,
      thresholds,
      default_receiver: v.default_receiver || null,
      group_by: v.group_by.split(',').map((s) => s.trim()).filter(Boolean),
      escalation: v.escalation_after ? { after: v.escalation_after, receiver: v.escalation_receiver } : null,
      report_receiver: v.report_receiver || null,
    }, { 'If-Match': alerting.version() });
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      await routes.refresh();
      say('Not saved: someone changed the alerting settings in another tab or session since this page loaded them. The form now shows their values; make your change again if it still applies.', { error: true });
    }
    throw e;
  }
  await routes.refresh();
  say('Saved the thresholds.');
});

// ---- silences

const showSilences = async () => {
  const silences = (await api('GET', '/api/silences')).filter((s) => s.status?.state !== 'expired');
  table($('silences'), {
    rows: silences,
    empty: 'No silence is active.',
    columns: [
      { label: 'Matchers', value: (s) => labelsText(Object.fromEntries(s.matchers.map((m) => [m.name, m.value]))).replaceAll('\n', ', ') },
      { label: 'State', value: (s) => badge(s.status.state) },
      { label: 'Ends', value: (s) => when(s.endsAt) },
      { label: 'Made by', value: (s) => s.createdBy },
      { label: 'Why', value: (s) => s.comment },
      { label: 'Warnings', value: (s) => (s.warnings ?? []).map((w) => `${w.kind}: ${w.detail}`).join('; ') },
      {
        label: 'Actions',
        value: (s) => actions(action('Expire', `Expire silence ${s.id}`, async () => {
          await api('DELETE', `/api/silences/${encodeURIComponent(s.id)}`);
          say('The silence has expired.');
          await showSilences();
        })),
      },
    ],
  });
};

onSubmit($('silence-form'), async (v, send) => {
  await send('POST', '/api/silences', { matchers: parseLabels(v.matchers), duration: v.duration, comment: v.comment });
  say('Silence added.');
  $('silence-form').reset();
  await showSilences();
});

// ---- drills

const stepText = (s) => {
  const at = s.delivered_at ? ` ${when(s.delivered_at)}` : '';
  return `${s.receiver}${s.escalation ? ' (escalation)' : ''}: ${s.state.replace('_', ' ')}${at}${s.error ? ` (${s.error})` : ''}`;
};

const showDrills = every(10000, async () => {
  const { routes, drills } = await api('GET', '/api/alerting/drills?limit=20');
  table($('drill-routes'), {
    rows: routes,
    empty: 'No routes to drill.',
    columns: [
      { label: 'Route', value: (r) => r.route },
      { label: 'Chain', value: (r) => r.receivers.join(' then ') },
      { label: 'Last result', value: (r) => (r.last_result ? badge(r.last_result) : 'never drilled') },
      { label: 'Last success', value: (r) => when(r.last_success_at) },
      { label: 'Next', value: (r) => when(r.next_due) },
      {
        label: 'Actions',
        value: (r) => actions(action('Run drill', `Run a drill of route ${r.route}`, async () => {
          await api('POST', '/api/alerting/drills', { route: r.route });
          say(`A drill of ${r.route} is on its way: acknowledge it in the alert list.`);
          await showDrills();
        })),
      },
    ],
  });
  table($('drills'), {
    rows: drills,
    empty: 'No drills yet.',
    columns: [
      { label: 'Route', value: (d) => d.route },
      { label: 'Started', value: (d) => when(d.started_at) },
      { label: 'Result', value: (d) => badge(d.result) },
      { label: 'Receivers', value: (d) => d.steps.map(stepText).join('; '), long: true },
      { label: 'Acknowledged', value: (d) => (d.acked_at ? `${d.acked_by}, ${when(d.acked_at)}` : '') },
      { label: 'Why', value: (d) => d.detail, long: true },
    ],
  });
});

// Receivers first: the route and threshold forms choose among them.
receivers.refresh()
  .then(showSilences)
  .then(showDrills)
  .catch(() => {});
