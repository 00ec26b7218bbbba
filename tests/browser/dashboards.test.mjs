// The Dashboards page: uploading Grafana exports, the report of each, and
// removing one, in headless Chromium. tests/dashboard_import.rs starts
// obsbox (signed in) with Prometheus and Grafana, and runs this file with
// OBSBOX_URL, SESSION_COOKIE, FIXTURES and SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.OBSBOX_URL;
const MINUTE = 60_000;

let browser;
let profile;
let page;
const problems = [];

before(async () => {
  assert.ok(BASE && process.env.SESSION_COOKIE && process.env.FIXTURES, 'run through tests/dashboard_import.rs');
  profile = mkdtempSync(join(tmpdir(), 'obsbox-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const [name, value] = process.env.SESSION_COOKIE.split('=');
  await browser.addCookies([{ name, value, url: BASE }]);
  page = browser.pages()[0] ?? await browser.newPage();
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
  page.on('dialog', (dialog) => dialog.accept());
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
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
  await page.screenshot({ path: join(process.env.SCREENSHOTS, 'dashboards-import.png'), fullPage: true });

  await page.getByRole('button', { name: 'Remove Node overview (7.x)' }).click();
  await imported.getByRole('link', { name: 'Node overview (7.x)' }).waitFor({ state: 'detached', timeout: MINUTE });
  assert.match(await imported.innerText(), /Infrastructure \(old box\)/);
  assert.deepEqual(problems, []);
});
