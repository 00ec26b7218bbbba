// The Backups page's card per PBS datastore, and the "Verify on server"
// button, in headless Chromium. tests/pbs_server.rs starts obsbox (signed
// in) with a PBS job whose API token reads the pbs-server stand-in, and runs
// this file with OBSBOX_URL, SESSION_COOKIE, REPOSITORY and SCREENSHOTS.
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
  assert.ok(BASE && process.env.SESSION_COOKIE && process.env.REPOSITORY, 'run through tests/pbs_server.rs');
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
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('a card per PBS datastore, and a verification on the server followed to its end', async () => {
  await page.goto(`${BASE}/backups`);
  const card = page.getByRole('region', { name: `PBS datastore ${process.env.REPOSITORY}` });
  await card.waitFor({ timeout: MINUTE });
  const text = async () => card.innerText();
  assert.match(await text(), /Usage\s+85%/);
  assert.match(await text(), /Deduplication\s+7\.5×/);
  assert.match(await text(), /Garbage collection\s+failed/);
  assert.match(await text(), /unable to read chunk store/);
  assert.match(await text(), /host\/box-photos\/2025-11-24T16:00:00Z/);
  await card.screenshot({ path: join(process.env.SCREENSHOTS, 'backups-pbs-datastore.png') });

  await page.getByRole('button', { name: 'Verify the snapshots of photos on its PBS server' }).click();
  await page.waitForFunction(
    (name) => /Verify of photos on the server\s+failed/.test(
      document.querySelector(`[aria-label="${name}"]`)?.innerText ?? '',
    ),
    `PBS datastore ${process.env.REPOSITORY}`,
    { timeout: MINUTE },
  );
  assert.match(await text(), /verification failed - please check the log for details/);
  assert.deepEqual(problems, []);
});
