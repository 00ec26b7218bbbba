// Issue 20's views in headless Chromium: a backup run's own page, the
// Alerting page's sections, search and sort in long tables, forms that save
// only over the version they showed, and the header at 1280 px.
// tests/browser_views.rs starts obsbox (signed in, zone Europe/Berlin) with
// Alertmanager, restic jobs and finished runs, and runs this file with
// OBSBOX_URL, SESSION_COOKIE, SCREENSHOTS, BACKUP_RUN, DRILL_RUN, FAILED_RUN
// and SNAPSHOT. The browser itself is in another zone (New York).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.OBSBOX_URL;
const SCREENSHOTS = process.env.SCREENSHOTS;
const MINUTE = 60_000;
const HEIGHT = { 1280: 900, 390: 844 };

let browser;
let profile;
let page;
const problems = [];

before(async () => {
  assert.ok(BASE && process.env.SESSION_COOKIE && process.env.BACKUP_RUN && SCREENSHOTS, 'run through tests/browser_views.rs');
  profile = mkdtempSync(join(tmpdir(), 'obsbox-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    timezoneId: 'America/New_York',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const [name, value] = process.env.SESSION_COOKIE.split('=');
  await browser.addCookies([{ name, value, url: BASE }]);
  page = browser.pages()[0] ?? await browser.newPage();
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const status = () => page.locator('#status');

/** Polls `check` until it returns a truthy value. */
async function eventually(what, check, timeout = MINUTE) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => { setTimeout(resolve, 250); });
  }
}

/** Saves what is in view at both widths, and checks the page never scrolls sideways. */
async function shoot(name) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: HEIGHT[width] });
    const sideways = await page.evaluate(() => document.scrollingElement.scrollWidth > window.innerWidth + 1);
    assert.equal(sideways, false, `${name} scrolls sideways at ${width} px`);
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-${width}.png`) });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** The run page's facts as {term: text}. */
const facts = () => page.locator('#facts').evaluate((dl) => {
  const out = {};
  for (const dt of dl.querySelectorAll('dt')) out[dt.textContent] = dt.nextElementSibling.textContent;
  return out;
});

/** A write from "another tab": the API with the page's token. */
async function elsewhere(method, path, body) {
  const token = await page.locator('meta[name="csrf-token"]').getAttribute('content');
  const response = await page.request.fetch(`${BASE}${path}`, {
    method, data: body, headers: { 'X-CSRF-Token': token, 'Content-Type': 'application/json' },
  });
  assert.ok(response.ok(), `${method} ${path}: ${response.status()} ${await response.text()}`);
  return response.json();
}

test('a backup run has its own page: files, size, log, short snapshot id to copy', { timeout: MINUTE }, async () => {
  await page.goto(`${BASE}/backups/runs/${process.env.BACKUP_RUN}`);
  await eventually('the run shown', async () => (await facts()).Result === 'ok');
  const shown = await facts();
  assert.equal(shown.Job, 'docs');
  assert.equal(shown.Kind, 'Backup');
  assert.equal(shown.Files, '5');
  assert.match(shown.Size, /\d+(\.\d)? (B|KiB)/);
  assert.match(shown.Started, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Europe\/Berlin$/);
  const snapshot = process.env.SNAPSHOT;
  const id = page.locator('#facts .snapshot code');
  assert.equal(await id.textContent(), snapshot.slice(0, 8));
  assert.equal(await id.getAttribute('title'), snapshot);
  await page.getByRole('button', { name: `Copy snapshot id ${snapshot.slice(0, 8)}` }).click();
  await eventually('the copy confirmed', async () => /Copied snapshot/.test(await status().textContent()));
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), snapshot);
  // The log as the box kept it (restic says nothing on stderr when all goes well).
  const run = await (await page.request.get(`${BASE}/api/backups/runs/${process.env.BACKUP_RUN}`)).json();
  assert.equal(await page.locator('#log').textContent(), run.log || '(nothing printed)');
  assert.equal(await page.locator('#progress').isVisible(), false);
  // The page is part of Backups in the navigation.
  assert.equal(await page.locator('.site-nav a[href="/backups"]').getAttribute('class'), 'in-section');
  await shoot('backup-run');
});

test("a drill's page shows its restore time against the RTO; a failed run shows no size", { timeout: MINUTE }, async () => {
  await page.goto(`${BASE}/backups/runs/${process.env.DRILL_RUN}`);
  await eventually('the drill shown', async () => (await facts()).Result === 'ok');
  const drill = await facts();
  assert.equal(drill.Kind, 'Restore drill');
  assert.match(drill['Restore time'], /^\d+ s against an RTO of 1 h 0 min within the RTO$/);
  await shoot('backup-drill');

  await page.goto(`${BASE}/backups/runs/${process.env.FAILED_RUN}`);
  await eventually('the failed run shown', async () => (await facts()).Result === 'failed');
  const failed = await facts();
  assert.ok(failed.Reason, JSON.stringify(failed));
  assert.equal(failed.Size, undefined);
  assert.equal(failed.Files, undefined);
  assert.match(await page.locator('#log').textContent(), /Fatal|wrong password/);
});

test('a running backup shows a progress bar that moves, then its result', { timeout: 3 * MINUTE }, async () => {
  await page.goto(`${BASE}/backups`);
  await page.getByRole('button', { name: 'Run backup media now' }).click();
  await eventually('the run in the history', async () => /running/.test(await page.locator('#runs tr', { hasText: 'media' }).first().textContent()), MINUTE);
  await page.locator('#runs tr', { hasText: 'media' }).first().getByRole('link', { name: /Run \d+ of media/ }).click();
  await page.waitForURL((url) => /^\/backups\/runs\/\d+$/.test(url.pathname));
  const bar = page.locator('#run-progress');
  // restic reports its fraction from the files it has read, which can pass
  // through 1-99 % between two of its reports while the throttled upload
  // still runs: the bar is checked to be shown with restic's figures while
  // the run goes on, and to move or end.
  await eventually('the progress bar shown with the figures', async () => (await bar.isVisible())
    && /\d+%: .* of .*, \d+ of \d+ files/.test(await page.locator('#progress-text').textContent()), MINUTE);
  const first = Number(await bar.getAttribute('value'));
  assert.ok(first >= 0 && first <= 100, `${first}`);
  await shoot('backup-run-live');
  await eventually('the bar to move on', async () => Number(await bar.getAttribute('value')) > first
    || (await facts()).Result === 'ok', MINUTE);
  await eventually('the run to end', async () => (await facts()).Result === 'ok', 2 * MINUTE);
  assert.equal(await page.locator('#progress').isVisible(), false);
  assert.equal((await facts()).Files, '4');
});

test('the backup history and the audit log are searched and sorted, and keep it across refreshes', { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/backups`);
  const runs = page.locator('#runs');
  const search = page.getByLabel('Search backup history');
  await eventually('the search field of a long list', () => search.isVisible());
  const rows = () => runs.locator('tbody tr:not([hidden])');
  const total = await runs.locator('tbody tr').count();
  assert.ok(total > 10, `${total} runs`);
  // Failed runs show no size; snapshot ids are short.
  for (const size of await runs.locator('tbody tr', { hasText: 'wrong-key' }).locator('td[data-label="Size"]').allTextContents()) assert.equal(size, '');
  assert.equal((await runs.locator('td[data-label="Snapshot"] code').first().textContent()).length, 8);

  await search.fill('docs');
  await eventually('only the runs of docs', async () => (await rows().count()) === 2);
  assert.match(await page.locator('#runs-search-count').textContent(), new RegExp(`^2 of ${total} shown$`));
  await search.fill('');
  assert.equal(await rows().count(), total);

  const started = page.getByRole('button', { name: 'Sort backup history by Started' });
  await started.click();
  const head = runs.locator('th', { has: started });
  assert.equal(await head.getAttribute('aria-sort'), 'ascending');
  const firstJob = () => rows().first().locator('td[data-label="Job"]').textContent();
  assert.equal(await firstJob(), 'docs', 'the oldest run first');
  await started.click();
  assert.equal(await head.getAttribute('aria-sort'), 'descending');
  assert.equal(await firstJob(), 'media', 'the newest run first');
  await started.click();
  await search.fill('wrong-key');
  // The page re-renders the table every 10 s; the order and the search stay.
  await runs.locator('table').evaluate((t) => { t.dataset.seen = 'yes'; });
  await eventually('a refresh of the table', async () => (await runs.locator('table:not([data-seen])').count()) === 1, 30_000);
  assert.equal(await runs.locator('th[aria-sort="ascending"]').textContent(), 'Started');
  assert.equal(await rows().count(), 10);
  await shoot('backups-history-search');

  await page.goto(`${BASE}/system`);
  const audit = page.getByLabel('Search audit log');
  await eventually('the audit log long enough to search', () => audit.isVisible());
  await audit.fill('backup.drill');
  await eventually('one drill', async () => (await page.locator('#audit tbody tr:not([hidden])').count()) === 1);
  await page.getByRole('button', { name: 'Sort audit log by Who' }).click();
  assert.equal(await page.locator('#audit th[aria-sort="ascending"]').textContent(), 'Who');
});

test("the Alerting page links to its sections, and a receiver shows its last delivery error", { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/alerting`);
  const sections = page.getByRole('navigation', { name: 'Alerting sections' });
  assert.deepEqual(await sections.getByRole('link').allTextContents(), ['Alerts', 'Receivers', 'Routes', 'Thresholds', 'Silences', 'Drills']);
  // No route yet: nothing to drill, and no alert marked.
  await page.locator('#drill-routes', { hasText: 'No routes to drill.' }).waitFor();
  await page.locator('#precision', { hasText: 'No alert marked yet.' }).waitFor();
  await sections.getByRole('link', { name: 'Silences' }).click();
  await page.waitForURL((url) => url.hash === '#h-silences');
  assert.ok(await page.locator('#h-silences').isVisible());
  assert.ok(await page.evaluate(() => {
    const box = document.getElementById('h-silences').getBoundingClientRect();
    return box.top >= 0 && box.top < window.innerHeight / 2;
  }), 'Silences is scrolled into view');
  const dead = page.locator('#receivers tr', { hasText: 'dead' }).locator('td[data-label="Last error"]');
  await eventually("the dead receiver's error", async () => {
    await page.reload();
    return /connection refused/.test(await dead.textContent());
  }, 100_000);
  assert.match(await dead.textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Europe\/Berlin: /);
  assert.doesNotMatch(await dead.textContent(), /\/gone/);
  await sections.getByRole('link', { name: 'Receivers' }).click();
  await shoot('alerting-receivers');
});

test('thresholds, a backup job and the power policy are saved only over the version shown', { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/alerting`);
  const hostDown = page.locator('#thresholds-host_down_for');
  await eventually('the thresholds', async () => (await hostDown.inputValue()) !== '');
  const alerting = await (await page.request.get(`${BASE}/api/settings/alerting`)).json();
  await elsewhere('PUT', '/api/settings/alerting', { ...alerting, thresholds: { ...alerting.thresholds, host_down_for: '7m' } });
  await hostDown.fill('9m');
  await page.getByRole('button', { name: 'Save thresholds' }).click();
  await eventually('the conflict shown', async () => /Not saved: someone changed the alerting settings/.test(await status().textContent()));
  assert.equal(await hostDown.inputValue(), '7m');
  await hostDown.fill('9m');
  await page.getByRole('button', { name: 'Save thresholds' }).click();
  await eventually('the save', async () => /Saved the thresholds/.test(await status().textContent()));
  assert.equal((await (await page.request.get(`${BASE}/api/settings/alerting`)).json()).thresholds.host_down_for, '9m');

  await page.goto(`${BASE}/backups`);
  await page.getByRole('button', { name: 'Edit job docs' }).click();
  const settings = await (await page.request.get(`${BASE}/api/settings/backups`)).json();
  const docs = settings.jobs.find((j) => j.name === 'docs');
  await elsewhere('PUT', '/api/backups/jobs/docs', { job: { ...docs, schedule: 'weekly' } });
  await page.locator('#job-schedule').fill('hourly');
  await page.getByRole('button', { name: 'Save job' }).click();
  await eventually('the conflict shown', async () => /Not saved: someone changed the jobs/.test(await status().textContent()));
  const stored = async () => (await (await page.request.get(`${BASE}/api/settings/backups`)).json()).jobs.find((j) => j.name === 'docs');
  assert.equal((await stored()).schedule, 'weekly');
  // "Keep every snapshot" is a choice of its own, saved as no keep option at all.
  await page.getByRole('button', { name: 'Edit job docs' }).click();
  await page.getByLabel('Keep every snapshot (never prune)').check();
  assert.ok(await page.locator('#job-keep_daily').isDisabled());
  // The job's RTO, set through the API, is in the form and kept; a hook is added.
  assert.equal(await page.locator('#job-rto').inputValue(), '1h');
  await page.locator('#job-pre_hook').fill('/bin/true');
  await page.getByRole('button', { name: 'Save job' }).click();
  await eventually('the save', async () => /Saved the job/.test(await status().textContent()));
  assert.deepEqual((await stored()).retention, {});
  assert.equal((await stored()).rto, '1h');
  assert.deepEqual((await stored()).options.pre_hook, { command: ['/bin/true'], timeout: '5m' });
  await page.getByRole('button', { name: 'Edit job docs' }).click();
  assert.ok(await page.getByLabel('Keep every snapshot (never prune)').isChecked());
  await page.locator('#job-form').getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await page.getByLabel('Keep every snapshot (never prune)').isChecked(), false);
  assert.equal(await page.locator('#job-keep_daily').inputValue(), '7');

  await page.goto(`${BASE}/power`);
  const poll = page.locator('#power-poll');
  await eventually('the power policy', async () => (await poll.inputValue()) !== '');
  const power = await (await page.request.get(`${BASE}/api/settings/power`)).json();
  await elsewhere('PUT', '/api/settings/power', { ...power, poll: '3s' });
  await poll.fill('4s');
  await page.getByRole('button', { name: 'Save power policy' }).click();
  await eventually('the conflict shown', async () => /Not saved: someone changed the power settings/.test(await status().textContent()));
  assert.equal(await poll.inputValue(), '3s');
});

test("the Logs page's range is typed in the box's zone, not the browser's", { timeout: MINUTE }, async () => {
  await page.goto(`${BASE}/logs`);
  await page.getByLabel('Time range').selectOption('custom');
  await page.getByLabel('From (Europe/Berlin)').fill('2026-12-07T10:00:00');
  await page.getByLabel('To (Europe/Berlin)').fill('2026-12-07T11:30:00');
  await page.getByLabel('LogQL query').fill('{service="web"}');
  const asked = page.waitForRequest((r) => r.url().includes('/api/logs/search'));
  await page.locator('#query-form').getByRole('button', { name: 'Search', exact: true }).click();
  const url = new URL((await asked).url());
  // 10:00 in Berlin in December is 09:00 UTC (the browser itself is in New York).
  assert.equal(url.searchParams.get('start'), `${Date.UTC(2026, 11, 7, 9, 0, 0)}000000`);
  assert.equal(url.searchParams.get('end'), `${Date.UTC(2026, 11, 7, 10, 30, 0)}000000`);
});

test('the header navigation stays on one line at 1280 px on every page', { timeout: MINUTE }, async () => {
  for (const p of ['/', '/alerting', '/backups', `/backups/runs/${process.env.BACKUP_RUN}`, '/system', '/system/general']) {
    await page.goto(BASE + p);
    const lines = await page.locator('.site-nav').evaluate((nav) => new Set([...nav.querySelectorAll('li')].map((li) => Math.round(li.getBoundingClientRect().top))).size);
    assert.equal(lines, 1, `${p}: the navigation wraps onto ${lines} lines`);
  }
  assert.deepEqual(problems, []);
});
