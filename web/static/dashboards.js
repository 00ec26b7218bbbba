// Imported dashboards: upload Grafana exports (JSON or zip), see each
// dashboard's report (queries that failed with the data source's message,
// references that could not be mapped), remove one.
import { api, table, badge, when, action, actions, el, say } from './app.js';

const $ = (id) => document.getElementById(id);

const failed = (r) => r.queries.filter((q) => q.outcome.failed !== undefined);
const notChecked = (r) => r.queries.filter((q) => q.outcome.not_checked !== undefined);

function state(r) {
  if (!r.imported) return badge('refused');
  if (failed(r).length || r.unmapped.length) return badge('warning');
  return badge('ok');
}

function details(r) {
  const parts = [el('h3', {}, r.title ?? r.file)];
  if (r.error) parts.push(el('p', {}, `Not imported: ${r.error}`));
  const list = (title, items) => {
    if (items.length) parts.push(el('h4', {}, title), el('ul', {}, items.map((i) => el('li', {}, i))));
  };
  list('Queries that fail', failed(r).map((q) => [`Panel “${q.panel}” query ${q.ref_id} (${q.language}): `, el('code', {}, q.expr), ` — ${q.outcome.failed}`]));
  list('Queries not checked', notChecked(r).map((q) => `Panel “${q.panel}” query ${q.ref_id}: ${q.outcome.not_checked}`));
  list('Not mapped', r.unmapped);
  list('Changed', r.changes);
  return parts;
}

function show(container, reports) {
  container.replaceChildren(...reports.map((r) => el('div', { class: 'report' }, details(r))));
}

async function load() {
  const { dashboards } = await api('GET', '/api/dashboards/imported');
  table($('imported'), {
    rows: dashboards,
    empty: 'No dashboard imported yet.',
    columns: [
      { label: 'Dashboard', value: (r) => el('a', { href: `/grafana/d/${encodeURIComponent(r.uid)}` }, r.title) },
      { label: 'State', value: state },
      { label: 'Panels ok', value: (r) => `${r.panels_ok} of ${r.panels}` },
      { label: 'Queries failing', value: (r) => String(failed(r).length) },
      { label: 'Not mapped', value: (r) => String(r.unmapped.length) },
      { label: 'Imported', value: (r) => when(r.imported_at * 1000) },
      {
        label: 'Actions',
        sort: false,
        value: (r) => actions(
          action('Report', `Report of ${r.title}`, () => show($('report'), [r])),
          action('Remove', `Remove ${r.title}`, async () => {
            if (!window.confirm(`Remove the imported dashboard ${r.title}?`)) return;
            await api('DELETE', `/api/dashboards/imported/${encodeURIComponent(r.uid)}`);
            say(`${r.title} removed; Grafana drops it within a few seconds.`);
            $('report').replaceChildren();
            await load();
          }),
        ),
      },
    ],
  });
}

$('import-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const button = event.submitter;
  const data = new FormData();
  for (const file of form.elements.files.files) data.append('files', file, file.name);
  if (button) button.disabled = true;
  try {
    say('Importing and checking every query…');
    const { reports } = await api('POST', '/api/dashboards/import', data, form.elements._csrf.value);
    show($('import-result'), reports);
    const imported = reports.filter((r) => r.imported).length;
    say(`${imported} of ${reports.length} files imported.`);
    form.reset();
    await load();
  } catch (e) {
    // `api` has said what went wrong.
  } finally {
    if (button) button.disabled = false;
  }
});

load();
