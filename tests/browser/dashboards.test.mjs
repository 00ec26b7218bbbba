// The Dashboards page: uploading Grafana exports, the report of each, and
// removing one, in headless Chromium. tests/dashboard_import.rs starts
// obsbox (signed in) with Prometheus and Grafana, and runs this file with
// OBSBOX_URL, SESSION_COOKIE, FIXTURES and SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MINUTE, shoot, signedIn } from './helpers.mjs';

const BASE = process.env.OBSBOX_URL;

let session;
let page;

before(async () => {
  assert.ok(BASE && process.env.SESSION_COOKIE && process.env.FIXTURES, 'run through tests/dashboard_import.rs');
  session = await signedIn(BASE, process.env.SESSION_COOKIE);
  page = session.page;
  page.on('dialog', (dialog) => dialog.accept());
});

after(async () => {
  await session?.close();
});

test('exports are uploaded, reported on, listed and removed', async () => {
  await page.goto(`${BASE}/system/dashboards`);
  await page.getByText('No dashboard imported yet.').waitFor({ timeout: MINUTE });
  await page.getByLabel('Files').setInputFiles([
    join(process.env.FIXTURES, 'grafana6-inputs.json'),
    join(process.env.FIXTURES, 'grafana10-uids.json'),
  ]);
  await page.getByRole('button', { name: 'Import' }).click();
  const result = page.locator('#import-result');
  await result.getByText('Queries that fail').waitFor({ timeout: MINUTE });
  assert.match(await result.innerText(), /Panel “Broken rate” query A \(prometheus\): rate\(node_network_receive_bytes_total\[5m\] — .*parse error/);
  assert.match(await result.innerText(), /of type influxdb, which this box does not run/);
  assert.match(await result.innerText(), /imported as "obsbox-infrastructure-2"/);
  const imported = page.locator('#imported');
  await imported.getByRole('link', { name: 'Node overview (7.x)' }).waitFor({ timeout: MINUTE });
  assert.match(await imported.innerText(), /1 of 2/);
  await shoot(page, process.env.SCREENSHOTS, 'dashboards-import');

  await page.getByRole('button', { name: 'Remove Node overview (7.x)' }).click();
  await imported.getByRole('link', { name: 'Node overview (7.x)' }).waitFor({ state: 'detached', timeout: MINUTE });
  assert.match(await imported.innerText(), /Infrastructure \(old box\)/);
  assert.deepEqual(session.problems, []);
});
