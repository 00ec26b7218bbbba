// Pages with real data behind them, in headless Chromium: the Power, Disks
// and Backups charts drawn from what the real Prometheus scraped, a restic
// job's off-site copy set up and run from the Backups page, a probe's
// certificate fields, and the on-call pieces of the Alerting page through
// the real Alertmanager (last delivery, acknowledge and mark, a drill).
// tests/browser_views.rs makes the data first (a UPS outage through NUT,
// disks warming up through the smartctl stand-in, two restic backups and a
// drill, an alert posted to Alertmanager) and runs this file with
// OBSBOX_URL, SESSION_COOKIE, SCREENSHOTS, DATA_START (Unix seconds before
// any of it), OFFSITE (a second restic repository), COPY_PASSWORD and
// CA_PEM (a certificate to trust).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MINUTE, signedIn, eventually, shoot, plotted } from './helpers.mjs';

const BASE = process.env.OBSBOX_URL;
const SCREENSHOTS = process.env.SCREENSHOTS;
const { OFFSITE, COPY_PASSWORD, CA_PEM } = process.env;

let session;
let page;

before(async () => {
  assert.ok(BASE && process.env.SESSION_COOKIE && process.env.DATA_START && SCREENSHOTS, 'run through tests/browser_views.rs');
  session = await signedIn(BASE, process.env.SESSION_COOKIE);
  ({ page } = session);
});

after(async () => {
  await session?.close();
});

const status = () => page.locator('#status');
const chart = (title) => page.locator(`figure[data-title="${title}"]`);
const byName = (lines) => Object.fromEntries(lines.map((l) => [l.name, l]));
const near = (a, b) => Math.abs(a - b) < 1e-6;

/**
 * Picks From–to in the page's range picker: from just before the data was
 * made to a minute from now, typed in the box's zone as a user would.
 */
async function showTheDataRange() {
  await page.getByLabel('Charts show').selectOption({ label: 'From–to' });
  const from = page.locator('#chart-from');
  const zone = /\(([^)]+)\)$/.exec(await page.locator('label[for="chart-from"]').textContent())[1];
  const typed = (unix) => new Intl.DateTimeFormat('sv-SE', {
    timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).format(new Date(unix * 1000)).replace(' ', 'T');
  await from.fill(typed(Number(process.env.DATA_START) - 30));
  await page.locator('#chart-to').fill(typed(Date.now() / 1000 + 60));
  await page.getByRole('button', { name: 'Show this range' }).click();
}

/** Each chart of the page's charts section fits its column at `width`, then the section is shot. */
async function shootCharts(name, titles) {
  await shoot(page, SCREENSHOTS, name, {
    target: page.locator('section.charts'),
    ready: (width) => eventually(`the charts fitted to ${width} px`, async () => {
      for (const title of titles) {
        const [canvas, box] = await Promise.all([chart(title).locator('canvas').boundingBox(), chart(title).boundingBox()]);
        if (!(canvas.width <= box.width && canvas.width > box.width / 2)) return false;
      }
      return true;
    }),
  });
}

test('power: charge, load and runtime drawn through the last outage, with points', { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/power`);
  // The charts' range is the outage's, a quarter of an hour either side.
  await eventually('the outage range', async () => /^On battery from .+ to .+\.$/.test(await page.locator('#power-charts-range').textContent()));
  const titles = ['Battery charge', 'Load', 'Runtime left'];
  for (const title of titles) {
    const lines = await plotted(chart(title));
    assert.equal(lines.length, 1, `${title}: ${JSON.stringify(lines)}`);
    assert.ok(lines[0].values.length >= 3, `${title} has ${lines[0].values.length} points`);
    assert.match(await chart(title).locator('figcaption').textContent(), new RegExp(`^${title}, \\d{4}-.+ to \\d{4}-`));
  }
  // Over the data's own range every sample shows: the fall, and mains back.
  await showTheDataRange();
  await eventually('the charts redrawn over the data', async () => /to/.test(await chart('Battery charge').locator('figcaption').textContent())
    && (await plotted(chart('Battery charge')))[0].values.length >= 20);
  const [charge] = await plotted(chart('Battery charge'));
  for (const level of [1, 0.85, 0.6, 0.4, 0.45]) assert.ok(charge.values.some((v) => near(v, level)), `charge ${level} in ${charge.values}`);
  assert.ok(near(charge.values.at(-1), 0.45), `ends at 45 %: ${charge.values.at(-1)}`);
  const [runtime] = await plotted(chart('Runtime left'));
  assert.equal(Math.min(...runtime.values), 800);
  const [load] = await plotted(chart('Load'));
  assert.equal(Math.max(...load.values), 0.31);
  assert.match(await chart('Battery charge').locator('[role=img]').getAttribute('aria-label'), /Latest: .*45 %$/);
  await shootCharts('charts-power', titles);
  await page.getByLabel('Charts show').selectOption({ label: "Each chart's own range" });
});

test('disks: each disk\'s temperature and the SMART attributes that rose, with points', { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/disks`);
  // Their own ranges (24 h, 7 d): drawn, with the disks' latest values.
  let temperature = byName(await plotted(chart('Temperature')));
  assert.deepEqual(Object.keys(temperature).sort(), ['nvme0', 'sda']);
  assert.equal(temperature.sda.values.at(-1), 39);
  let rose = await plotted(chart('SMART attributes that rose'));
  assert.ok(rose.some((l) => l.name === 'sda 197'), JSON.stringify(rose));
  assert.ok(rose.every((l) => l.name.startsWith('sda ')), `only sda's attributes rose: ${rose.map((l) => l.name)}`);

  await showTheDataRange();
  await eventually('the temperature over the data', async () => byName(await plotted(chart('Temperature'))).sda.values.length >= 10);
  temperature = byName(await plotted(chart('Temperature')));
  for (const degrees of [34, 37, 39]) assert.ok(temperature.sda.values.includes(degrees), `${degrees} °C in ${temperature.sda.values}`);
  assert.ok(temperature.nvme0.values.every((v) => v === 41));
  rose = byName(await plotted(chart('SMART attributes that rose')));
  for (const pending of [0, 3, 7]) assert.ok(rose['sda 197'].values.includes(pending), `${pending} pending sectors in ${rose['sda 197'].values}`);
  assert.match(await chart('Temperature').locator('[role=img]').getAttribute('aria-label'), /sda: 39 °C/);
  await shootCharts('charts-disks', ['Temperature', 'SMART attributes that rose']);
  await page.getByLabel('Charts show').selectOption({ label: "Each chart's own range" });
});

test('backups: age against the RPO, backup and restore time against the RTO, size per run, with points', { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/backups`);
  const titles = ['Age of the last good backup', 'Backup and drill restore time', 'Size read by each good backup'];
  let age = byName(await plotted(chart(titles[0])));
  assert.deepEqual(Object.keys(age).sort(), ['RPO docs', 'docs']);
  assert.ok(age['RPO docs'].dashed && !age.docs.dashed);
  assert.equal(age['RPO docs'].values.at(-1), 3600);

  await showTheDataRange();
  await eventually('the age over the data', async () => byName(await plotted(chart(titles[0]))).docs.values.length >= 5);
  age = byName(await plotted(chart(titles[0])));
  // The age grows between backups and drops at each one.
  assert.ok(age.docs.values.some((v, i) => i > 0 && v < age.docs.values[i - 1]), `a drop in ${age.docs.values}`);
  const times = byName(await plotted(chart(titles[1])));
  assert.deepEqual(Object.keys(times).sort(), ['RTO docs', 'docs backup', 'docs restore']);
  assert.ok(times['RTO docs'].dashed);
  assert.ok(times['RTO docs'].values.every((v) => v === 1800));
  assert.ok(times['docs restore'].values.length >= 1);
  const [size] = await plotted(chart(titles[2]));
  // Two backups, the second with one more file: two sizes, growing.
  const sizes = [...new Set(size.values)];
  assert.equal(sizes.length, 2, `sizes ${sizes}`);
  assert.ok(sizes[1] > sizes[0], `sizes ${sizes}`);
  await shootCharts('charts-backups', titles);
  await page.getByLabel('Charts show').selectOption({ label: "Each chart's own range" });
});

test("a restic job's off-site copy: set up in the form, after each backup and on its own schedule, and Copy now", { timeout: 3 * MINUTE }, async () => {
  await page.goto(`${BASE}/backups`);
  const job = page.locator('#jobs tr', { hasText: 'docs' });
  const copyCell = job.locator('td[data-label="Off-site copy"]');
  await eventually('the job listed without a copy', async () => (await copyCell.textContent()) === 'none');
  assert.equal(await page.getByRole('button', { name: 'Copy backup docs to its second repository now' }).count(), 0);

  await page.getByRole('button', { name: 'Edit job docs' }).click();
  assert.ok(await page.getByLabel('Second repository', { exact: true }).isVisible());
  await page.getByLabel('Second repository', { exact: true }).fill(OFFSITE);
  await page.getByLabel("Second repository's password").fill(COPY_PASSWORD);
  await page.getByLabel('Copy RPO').fill('2d');
  // Retention applies off-site too: the newest snapshot only.
  await page.getByLabel('Keep every snapshot (never prune)').uncheck();
  await page.locator('#job-keep_last').fill('1');
  await page.getByRole('button', { name: 'Save job' }).click();
  await eventually('the save', async () => /Saved the job/.test(await status().textContent()));
  const stored = async () => (await (await page.request.get(`${BASE}/api/settings/backups`)).json()).jobs.find((j) => j.name === 'docs');
  assert.deepEqual((await stored()).copy, { repository: OFFSITE, schedule: '', rpo: '2d' });
  assert.equal((await stored()).retention.keep_last, 1);
  assert.doesNotMatch(JSON.stringify(await stored()), new RegExp(COPY_PASSWORD));

  // With no schedule of its own, a copy follows each good backup.
  const runs = page.locator('#runs tbody tr');
  const copies = () => runs.filter({ has: page.locator('td[data-label="Kind"]', { hasText: /^copy$/ }) });
  assert.equal(await copies().count(), 0);
  await page.getByRole('button', { name: 'Run backup docs now' }).click();
  await eventually('a copy after the backup', async () => /\bok\b/.test(await copies().first().locator('td[data-label="Result"]').textContent()), 2 * MINUTE);
  await eventually('the copy in the job row', async () => /^ok \d{4}-/.test(await copyCell.textContent()));

  // Its own schedule: the next copy is shown; Copy now runs one at once.
  await page.getByRole('button', { name: 'Edit job docs' }).click();
  assert.equal(await page.getByLabel('Second repository', { exact: true }).inputValue(), OFFSITE);
  assert.equal(await page.getByLabel("Second repository's password").inputValue(), '', 'never shown back');
  // (A schedule of its own runs for a job run by schedule, as this one is.)
  assert.ok(await page.getByLabel('Run by schedule').isChecked());
  await page.getByLabel('Copy schedule').fill('*-*-* 04:00');
  await page.getByRole('button', { name: 'Save job' }).click();
  await eventually('the save', async () => /Saved the job/.test(await status().textContent()));
  await eventually('the next copy shown', async () => / next \d{4}-\d\d-\d\d 04:00:00/.test(await copyCell.textContent()));
  assert.equal((await stored()).copy.schedule, '*-*-* 04:00');
  await page.getByRole('button', { name: 'Copy backup docs to its second repository now' }).click();
  await eventually('the second copy in the history', async () => (await copies().count()) === 2
    && /\bok\b/.test(await copies().first().locator('td[data-label="Result"]').textContent()), 2 * MINUTE);
  await shoot(page, SCREENSHOTS, 'backups-copy', { at: page.locator('#h-jobs') });
});

test("a probe's certificate check and CA to trust: saved, and a bad PEM refused next to its field", { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/targets`);
  const form = page.locator('#probe-form');
  const ca = page.locator('#probe-tls_ca');
  await page.locator('#probe-name').fill('nas');
  await page.locator('#probe-kind').selectOption('http');
  await page.locator('#probe-target').fill('https://nas.lan/');
  await ca.fill('-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
  await page.getByRole('button', { name: 'Save probe' }).click();
  const problem = page.locator('#probe-tls_ca-problem');
  await eventually('an answer to the save', async () => (await problem.textContent()) || (await status().textContent()));
  assert.match(await problem.textContent(), /^is not one or more PEM certificates$/, await status().textContent());
  assert.equal(await ca.getAttribute('aria-invalid'), 'true');
  await shoot(page, SCREENSHOTS, 'targets-probe-ca', { target: form });

  await ca.fill(CA_PEM);
  await page.getByRole('button', { name: 'Save probe' }).click();
  await eventually('the save', async () => /Saved the probe/.test(await status().textContent()));
  const row = (name) => page.locator('#probes tr', { hasText: name });
  await eventually('the probe listed with its CA', async () => (await row('nas').locator('td[data-label="Certificate"]').textContent()) === 'private CA');

  // Expiry only, without trusting the chain; not both.
  await page.locator('#probe-name').fill('router');
  await page.locator('#probe-target').fill('https://router.lan/');
  await page.locator('#probe-tls').selectOption('expiry_only');
  await ca.fill(CA_PEM);
  await page.getByRole('button', { name: 'Save probe' }).click();
  await eventually('both refused', async () => /not both/.test(await problem.textContent()));
  await ca.fill('');
  await page.getByRole('button', { name: 'Save probe' }).click();
  await eventually('the save', async () => /Saved the probe/.test(await status().textContent()));
  await eventually('the probe listed as expiry only', async () => (await row('router').locator('td[data-label="Certificate"]').textContent()) === 'expiry only');
  const probes = await (await page.request.get(`${BASE}/api/settings/probes`)).json();
  const saved = Object.fromEntries(probes.map((p) => [p.name, p]));
  assert.equal(saved.nas.tls_ca.trim(), CA_PEM.trim());
  assert.equal(saved.router.tls, 'expiry_only');
  assert.equal(saved.router.tls_ca ?? null, null);
  // Editing shows what was saved.
  await page.getByRole('button', { name: 'Edit probe nas' }).click();
  assert.equal((await ca.inputValue()).trim(), CA_PEM.trim());
  await form.getByRole('button', { name: 'Cancel' }).click();
});

test('alerting: an acknowledged alert is marked noise and counts in precision; a receiver shows its last delivery', { timeout: 2 * MINUTE }, async () => {
  await page.goto(`${BASE}/alerting`);
  const alert = page.locator('#history tr', { hasText: 'DiskUsageHigh' });
  await eventually('the alert in the history', () => alert.isVisible());
  // Marks come once it is acknowledged.
  assert.equal(await alert.getByRole('button', { name: /^Mark DiskUsageHigh/ }).count(), 0);
  await alert.getByRole('button', { name: /^Acknowledge DiskUsageHigh \d+$/ }).click();
  await eventually('acknowledged by the admin', async () => /^admin, \d{4}-/.test(await alert.locator('td[data-label="Acknowledged"]').textContent()));
  const noise = alert.getByRole('button', { name: /^Mark DiskUsageHigh \d+ noise$/ });
  assert.ok(await alert.getByRole('button', { name: /^Mark DiskUsageHigh \d+ actionable$/ }).isVisible());
  await noise.click();
  await eventually('the mark shown', async () => (await alert.locator('td[data-label="Worth it"]').textContent()) === 'noise (admin)');
  const rule = page.locator('#precision tr', { hasText: 'DiskUsageHigh' });
  await eventually('the rule in precision', () => rule.isVisible());
  assert.equal(await rule.locator('td[data-label="Precision"]').textContent(), '0%');
  assert.equal(await rule.locator('td[data-label="Noise"]').textContent(), '1');
  assert.match(await rule.locator('td[data-label="Below target"]').textContent(), /below/);
  // It fired with another alert of the same host: inhibit it by that one.
  assert.match(await rule.locator('td[data-label="Tuning hint"]').textContent(), /^add an inhibition: 1 of 1 noisy fires started with BackupRPOExceeded on the same host/);
  await shoot(page, SCREENSHOTS, 'alerting-marks', { at: page.locator('#h-history') });

  // The webhook got the alert through Alertmanager: its own last delivery
  // (from Alertmanager's log line naming the receiver), and no error.
  const hook = page.locator('#receivers tr', { hasText: 'hook' });
  await eventually('the last delivery', async () => {
    await page.reload();
    return /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$/.test(await hook.locator('td[data-label="Last delivered"]').textContent());
  }, MINUTE);
  assert.equal(await hook.locator('td[data-label="Last error"]').textContent(), 'none');
});

test('alerting: a drill started from its button reaches the receiver, is acknowledged, and shows its result', { timeout: 4 * MINUTE }, async () => {
  await page.goto(`${BASE}/alerting`);
  const route = page.locator('#drill-routes tr', { hasText: 'warning:*:hook' });
  await eventually('the route to drill', async () => /never drilled/.test(await route.textContent()));
  assert.equal(await route.locator('td[data-label="Chain"]').textContent(), 'hook');
  await route.getByRole('button', { name: 'Run a drill of route warning:*:hook' }).click();
  await eventually('the drill on its way', async () => /A drill of warning:\*:hook is on its way/.test(await status().textContent()));
  const drill = page.locator('#drills tbody tr').first();
  await eventually('the drill running', async () => /running/.test(await drill.locator('td[data-label="Result"]').textContent()), 30_000);
  // Acknowledged in the alert list, like any alert.
  const alert = page.locator('#history tr', { hasText: 'EscalationDrill' });
  await eventually('the drill alert in the history', () => alert.isVisible(), MINUTE);
  await alert.getByRole('button', { name: /^Acknowledge EscalationDrill \d+$/ }).click();
  // Its delivery is confirmed once Alertmanager had time to fail it (a minute).
  await eventually('the drill succeeded', async () => /success/.test(await drill.locator('td[data-label="Result"]').textContent()), 3 * MINUTE);
  assert.match(await drill.locator('td[data-label="Receivers"]').textContent(), /^hook: delivered \d{4}-/);
  assert.match(await drill.locator('td[data-label="Acknowledged"]').textContent(), /^admin, \d{4}-/);
  await eventually('the route\'s last result', async () => /success/.test(await route.locator('td[data-label="Last result"]').textContent()));
  // A success is good news in its colour.
  assert.equal(await drill.locator('td[data-label="Result"] .badge').getAttribute('class'), 'badge state-ok');
  await shoot(page, SCREENSHOTS, 'alerting-drill', { at: page.locator('#h-drills') });
  assert.deepEqual(session.problems, []);
});
