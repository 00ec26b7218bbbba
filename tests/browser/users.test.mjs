// Users, API tokens and two-step sign-in in headless Chromium, as people
// would use them: the admin adds an operator on the Users page, enrols in
// TOTP with the code an authenticator app would compute, makes an API
// token, then signs in again with a code; the operator sees no Users page.
// tests/browser.rs starts a set-up obsbox and runs this file with
// OBSBOX_URL, PASSWORD (the admin's) and SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.OBSBOX_URL;
const PASSWORD = process.env.PASSWORD;
const SCREENSHOTS = process.env.SCREENSHOTS;
const WIDTHS = { 1280: 900, 390: 844 };
const MINUTE = 60_000;
const OPERATOR_PASSWORD = 'operator password';

let browser;
let profile;
let page;
const problems = [];

before(async () => {
  assert.ok(BASE && PASSWORD && SCREENSHOTS, 'run through tests/browser.rs');
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
  page = browser.pages()[0] ?? await browser.newPage();
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
  page.on('dialog', (dialog) => dialog.accept());
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const path = () => new URL(page.url()).pathname;
const status = () => page.locator('#status');

/** Saves what is in view now at both widths, as `<name>-<width>.png`. */
async function shoot(name) {
  for (const [width, height] of Object.entries(WIDTHS)) {
    await page.setViewportSize({ width: Number(width), height });
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** RFC 4648 base32 to bytes. */
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** The code an authenticator app shows at `unix` seconds (RFC 6238: SHA-1, 6 digits, 30 s). */
function totp(secret, unix) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unix / 30)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

/** Signs in on the login page (opened unless the browser is on it already). */
async function signIn(user, password) {
  if (path() !== '/login') await page.goto(`${BASE}/login`);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function signOut() {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((url) => url.pathname === '/login');
}

test('the admin adds an operator, changes roles and state on the Users page', { timeout: MINUTE }, async () => {
  await signIn('admin', PASSWORD);
  await page.waitForURL((url) => url.pathname === '/');
  await page.goto(`${BASE}/system`);
  await page.getByRole('navigation', { name: 'Section' }).getByRole('link', { name: 'Users' }).click();
  await page.waitForURL((url) => url.pathname === '/system/users');
  await page.getByLabel('User name').fill('olga');
  await page.getByLabel('Role', { exact: true }).selectOption('viewer');
  await page.getByLabel('Initial password', { exact: true }).fill(OPERATOR_PASSWORD);
  await page.getByLabel('Initial password again').fill(OPERATOR_PASSWORD);
  await page.getByRole('button', { name: 'Add user' }).click();
  await page.getByLabel('Role of olga').waitFor();
  await page.getByLabel('Role of olga').selectOption('operator');
  await page.getByText('olga is now operator.').waitFor();
  await page.getByRole('button', { name: 'Disable olga' }).click();
  await page.getByRole('button', { name: 'Enable olga' }).click();
  await page.getByRole('button', { name: 'Disable olga' }).waitFor();
  // The last admin stays: the refusal is shown.
  await page.getByRole('button', { name: 'Delete admin' }).click();
  await page.getByText('is the last admin').waitFor();
  assert.equal(await status().getAttribute('aria-live'), 'assertive');
  await shoot('system-users');
});

test('enrolling in TOTP takes a code from the app; recovery codes and an API token are shown once', { timeout: MINUTE }, async () => {
  await page.goto(`${BASE}/account`);
  await page.getByRole('link', { name: 'Two-step sign-in and API tokens' }).click();
  await page.waitForURL((url) => url.pathname === '/account/security');
  await page.getByRole('button', { name: 'Set up two-step sign-in' }).click();
  // Shown once the key has come.
  await page.locator('#totp-enrol').waitFor();
  const secret = (await page.locator('#totp-secret').textContent()).trim();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  assert.ok(await page.getByAltText('QR code holding the TOTP key').evaluate((img) => img.complete && img.naturalWidth > 0));
  await page.getByLabel('Code from the app').fill('000000');
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByText('is not the code the app shows now').first().waitFor();
  const enrolledAt = Date.now() / 1000;
  await page.getByLabel('Code from the app').fill(totp(secret, enrolledAt));
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByText('Two-step sign-in is on.').waitFor();
  await page.locator('#totp-recovery').waitFor();
  const codes = (await page.locator('#recovery-codes').textContent()).trim().split('\n');
  assert.equal(codes.length, 10);

  await page.getByLabel('Name', { exact: true }).fill('nightly report');
  await page.locator('#api-token-role').selectOption('viewer');
  await page.getByLabel('Expires after (days)').fill('30');
  await page.getByRole('button', { name: 'Make token' }).click();
  await page.locator('#new-api-token').waitFor();
  const token = await page.getByLabel('The new API token').inputValue();
  assert.match(token, /^obx_[0-9a-f]{64}$/);
  await page.getByRole('button', { name: 'Revoke nightly report' }).waitFor();
  // TOTP is on: nothing offers to set it up again.
  assert.equal(await page.getByRole('button', { name: 'Set up two-step sign-in' }).isVisible(), false);
  // The token works on the API, without a cookie.
  const answer = await fetch(`${BASE}/api/overview`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(answer.status, 200);
  await shoot('account-security');

  // Signing in again takes the password, then a fresh code.
  await signOut();
  await signIn('admin', PASSWORD);
  await page.getByLabel('Code from your authenticator app').waitFor();
  assert.equal(path(), '/login');
  await shoot('login-code');
  await page.getByLabel('Code from your authenticator app').fill(totp(secret, enrolledAt + 30));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname === '/');
  await signOut();
});

test('an operator sees no Users page and cannot open it', { timeout: MINUTE }, async () => {
  await page.goto(`${BASE}/system/users`);
  assert.equal(path(), '/login');
  await signIn('olga', OPERATOR_PASSWORD);
  await page.waitForURL((url) => url.pathname === '/system/users');
  // The page is refused for the role; the System section shows no Users.
  assert.match(await page.locator('body').textContent(), /operator may not/);
  await page.goto(`${BASE}/system`);
  const section = page.getByRole('navigation', { name: 'Section' });
  await section.getByRole('link', { name: 'General settings' }).waitFor();
  assert.equal(await section.getByRole('link', { name: 'Users' }).count(), 0);
  await signOut();
  assert.deepEqual(problems, []);
});
