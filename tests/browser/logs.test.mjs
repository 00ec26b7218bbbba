// The Logs page in headless Chromium: search with marked terms, the
// histogram, the label browser and the live tail. tests/logs_query.rs starts
// obsbox with the Loki stand-in, pushes lines and runs this file with
// OBSBOX_URL, SESSION_COOKIE (name=value), LOKI_PORT and ARTIFACTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.OBSBOX_URL;
const LOKI = `http://127.0.0.1:${process.env.LOKI_PORT}`;
const ARTIFACTS = process.env.ARTIFACTS;
const MINUTE = 60_000;

let browser;
let profile;
let page;
const problems = [];

before(async () => {
  assert.ok(BASE && process.env.SESSION_COOKIE && process.env.LOKI_PORT && ARTIFACTS, 'run through tests/logs_query.rs');
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
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function pushLine(labels, line) {
  const ns = `${BigInt(Date.now()) * 1000000n}`;
  const response = await fetch(`${LOKI}/loki/api/v1/push`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ streams: [{ stream: labels, values: [[ns, line]] }] }),
  });
  assert.equal(response.status, 204);
}

test('search, histogram, labels and live tail on the Logs page', { timeout: MINUTE }, async () => {
  await page.goto(`${BASE}/logs`);
  assert.equal(await page.locator('nav a[aria-current="page"]').textContent(), 'Logs');
  // Nothing searched yet: no link to Explore, no count.
  assert.equal(await page.locator('#explore').isVisible(), false);
  assert.equal(await page.locator('#results-count').isVisible(), false);
  // The label browser fills from the streams of the last hour.
  await page.getByRole('button', { name: 'service', exact: true }).click();
  await page.getByRole('button', { name: 'Add service="web" to the query' }).click();
  assert.equal(await page.locator('#query-query').inputValue(), '{service=~".+", service="web"}');

  await page.locator('#query-query').fill('{service="web"} |= "error"');
  await page.getByRole('button', { name: 'Search' }).click();
  const lines = page.locator('#results .log-line');
  await lines.first().waitFor();
  assert.equal(await lines.count(), 2);
  assert.equal(await lines.first().locator('.text').textContent(), 'POST /api 500 error: upstream timeout');
  assert.deepEqual(await page.locator('#results mark').allTextContents(), ['error', 'error']);
  assert.equal(await page.locator('#results-count').textContent(), '2');
  const bars = page.locator('#histogram svg rect');
  assert.ok(await bars.count() >= 50, 'about sixty bars');
  assert.match(await page.locator('#histogram svg').getAttribute('aria-label'), /^2 matching lines/);
  assert.match(await page.locator('#explore').getAttribute('href'), /^\/grafana\/explore\?schemaVersion=1&panes=/);
  await page.screenshot({ path: join(ARTIFACTS, 'logs-search-1280.png'), fullPage: true });

  await page.getByRole('button', { name: 'Follow live' }).click();
  await page.locator('#tail-state', { hasText: 'following' }).waitFor();
  await pushLine({ service: 'web' }, 'live error from the browser test');
  const live = page.locator('#tail .log-line .text');
  await live.first().waitFor();
  assert.equal(await live.first().textContent(), 'live error from the browser test');
  assert.equal(await page.locator('#tail mark').first().textContent(), 'error');
  await page.screenshot({ path: join(ARTIFACTS, 'logs-live-1280.png'), fullPage: true });
  await page.getByRole('button', { name: 'Stop following' }).click();

  await page.locator('#query-query').fill('{service="web"');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('#status', { hasText: 'parse error' }).waitFor();
  // Following a bad query says why instead of trying.
  await page.locator('#status').evaluate((node) => node.replaceChildren());
  await page.getByRole('button', { name: 'Follow live' }).click();
  await page.locator('#status', { hasText: 'parse error' }).waitFor();
  assert.equal(await page.locator('#tail-state').textContent(), 'not following');
  assert.deepEqual(problems, []);
});
