// Users, API tokens and two-step sign-in in headless Chromium, as people
// would use them: the admin adds an operator on the Users page, enrols in
// TOTP with the code an authenticator app would compute, makes an API
// token and an invite link, then signs in again with a code; the operator
// gets a page saying the Users page is not for their role; the invitee makes
// their own account from the link, which then refuses a second use; tables
// sort at phone width and the charts' range picker keeps its choice.
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
const INVITEE_PASSWORD = 'invitee password';
// The invite link the admin makes, taken by the last tests.
let inviteLink;

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
  await page.locator('#user-role').selectOption('viewer');
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

  // An invite link, shown once, listed as open.
  await page.locator('#invite-role').selectOption('viewer');
  await page.getByLabel('Valid for (hours)').fill('24');
  await page.getByRole('button', { name: 'Make invite link' }).click();
  await page.locator('#new-invite').waitFor();
  inviteLink = await page.getByLabel('The new invite link').inputValue();
  assert.match(inviteLink, new RegExp(`^${BASE}/invite#[0-9a-f]{64}$`));
  const invite = page.locator('#invites tbody tr').first();
  await eventually('the invite listed as open', async () => /open/.test(await invite.textContent()));
  assert.match(await invite.locator('td[data-label="Role"]').textContent(), /viewer/);
  assert.doesNotMatch(await page.locator('#invites').textContent(), /[0-9a-f]{64}/);
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
  const refused = page.waitForResponse((r) => new URL(r.url()).pathname === '/system/users');
  await signIn('olga', OPERATOR_PASSWORD);
  await page.waitForURL((url) => url.pathname === '/system/users');
  // The page is refused for the role, in words and with the navigation;
  // the System section shows no Users.
  assert.equal((await refused).status(), 403);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Not for your role');
  assert.match(await page.locator('main').textContent(), /Your role operator cannot open \/system\/users; ask an admin/);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Overview' }).waitFor();
  await shoot('forbidden');
  await page.goto(`${BASE}/system`);
  const section = page.getByRole('navigation', { name: 'Section' });
  await section.getByRole('link', { name: 'General settings' }).waitFor();
  assert.equal(await section.getByRole('link', { name: 'Users' }).count(), 0);
  await signOut();
  assert.deepEqual(problems, []);
});

test('an invite link makes the invitee an account they name themselves, then refuses a second use', { timeout: MINUTE }, async () => {
  await page.goto(inviteLink);
  assert.equal(path(), '/invite');
  await page.getByText('You are invited as viewer').waitFor();
  await shoot('invite');
  await page.getByLabel('User name').fill('ines');
  await page.getByLabel('Password', { exact: true }).fill(INVITEE_PASSWORD);
  await page.getByLabel('Password again').fill('not the same');
  await page.getByRole('button', { name: 'Make my account' }).click();
  await eventually('the problem next to the field', async () => /does not match the password/.test(await page.locator('#invite-confirm-problem').textContent()));
  await page.getByLabel('Password again').fill(INVITEE_PASSWORD);
  await page.getByRole('button', { name: 'Make my account' }).click();
  await page.getByRole('heading', { name: 'Your account is ready' }).waitFor();
  assert.equal(await page.locator('#invite-user').textContent(), 'ines');
  assert.equal((await status().textContent()).trim(), '', 'the earlier refusal is gone');
  // The used link is gone from the address bar; two-step sign-in is offered.
  assert.equal(new URL(page.url()).hash, '');
  await shoot('invite-done');
  await page.getByRole('link', { name: 'Set up two-step sign-in now' }).click();
  await page.waitForURL((url) => url.pathname === '/account/security');
  assert.match(await page.locator('header .account').textContent(), /ines/);
  await signOut();

  await page.goto(inviteLink);
  await page.getByRole('heading', { name: 'This invite link cannot be used' }).waitFor();
  assert.match(await page.locator('#invite-why').textContent(), /used already/);
  assert.equal(await page.locator('#invite-form').isVisible(), false);
  await shoot('invite-used');
});

test('at phone width a long table sorts through a select above it', { timeout: MINUTE }, async () => {
  await signIn('ines', INVITEE_PASSWORD);
  await page.waitForURL((url) => url.pathname === '/');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${BASE}/system`);
  const audit = page.locator('#audit');
  await eventually('the audit log', async () => (await audit.locator('tbody tr').count()) > 5);
  // The heads are hidden at this width; the select is there instead.
  const clip = await audit.locator('thead tr').evaluate((tr) => getComputedStyle(tr).clip);
  assert.match(clip, /^rect\(0px,? 0px,? 0px,? 0px\)$/, 'the heads are clipped away');
  const sort = page.getByLabel('Sort audit log by', { exact: true });
  assert.ok(await sort.isVisible());
  const who = async () => (await audit.locator('tbody td[data-label="Who"]').allTextContents()).map((t) => t.trim());
  const inOrder = (list) => [...list].sort((a, b) => a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' }));
  await sort.selectOption({ label: 'Who, ascending' });
  await eventually('the log by who, A first', async () => {
    const now = await who();
    return JSON.stringify(now) === JSON.stringify(inOrder(now));
  });
  assert.equal(await audit.locator('th[aria-sort="ascending"]').textContent(), 'Who');
  await sort.selectOption({ label: 'Who, descending' });
  await eventually('the log by who, Z first', async () => {
    const now = await who();
    return JSON.stringify(now) === JSON.stringify(inOrder(now).reverse());
  });
  assert.equal(await audit.locator('th[aria-sort="descending"]').textContent(), 'Who');
  await page.locator('#audit-sort').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(SCREENSHOTS, 'table-sort-390.png') });
  // At desktop width the heads do it and the select is not shown.
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.equal(await sort.isVisible(), false);
});

test("the charts' range picker changes every chart's range and keeps the choice per page", { timeout: MINUTE }, async () => {
  const asked = [];
  const record = (request) => {
    const url = new URL(request.url());
    if (url.pathname === '/api/metrics/query_range') asked.push(Number(url.searchParams.get('end')) - Number(url.searchParams.get('start')));
  };
  page.on('request', record);
  await page.goto(`${BASE}/`);
  const captions = () => page.locator('figure[data-chart] figcaption').allTextContents();
  await eventually('the charts drawn (or saying why not)', async () => (await captions()).length >= 4 && (await captions()).every((c) => /last 3 h$/.test(c)));
  const choice = page.getByLabel('Charts show');
  assert.equal(await choice.inputValue(), '');
  asked.length = 0;
  await choice.selectOption({ label: 'Last 6 h' });
  await eventually('every chart over 6 h', async () => (await captions()).every((c) => /last 6 h$/.test(c)));
  assert.ok(asked.filter((span) => span === 21600).length >= 4, `${asked}`);

  // Kept across a reload, for this page only.
  await page.reload();
  await eventually('6 h again after a reload', async () => (await captions()).length >= 4 && (await captions()).every((c) => /last 6 h$/.test(c)));
  assert.equal(await choice.inputValue(), '21600');
  await page.goto(`${BASE}/services`);
  await eventually('Services keeps its own ranges', async () => (await captions()).length >= 2 && (await captions()).every((c) => /last 3 h$/.test(c)));

  // A range of its own, typed in the box's zone.
  await page.goto(`${BASE}/`);
  await page.getByLabel('Charts show').selectOption({ label: 'From–to' });
  const zone = await page.locator('meta[name="time-zone"]').getAttribute('content');
  await page.getByLabel(`From (${zone})`).fill('2026-12-01T08:00:00');
  await page.getByLabel(`To (${zone})`).fill('2026-12-01T06:00:00');
  await page.getByRole('button', { name: 'Show this range' }).click();
  await page.getByText('The charts need a From before their To.').waitFor();
  await page.getByLabel(`To (${zone})`).fill('2026-12-01T10:30:00');
  asked.length = 0;
  await page.getByRole('button', { name: 'Show this range' }).click();
  const wanted = `2026-12-01 08:00:00 ${zone} to 2026-12-01 10:30:00 ${zone}`;
  await eventually('every chart over the range typed', async () => (await captions()).every((c) => c.endsWith(wanted)));
  assert.ok(asked.filter((span) => span === 9000).length >= 4, `${asked}`);
  await page.reload();
  await eventually('the range kept', async () => (await captions()).length >= 4 && (await captions()).every((c) => c.endsWith(wanted)));
  assert.match(await page.getByLabel(`From (${zone})`).inputValue(), /^2026-12-01T08:00(:00)?$/);
  await shoot('charts-range');
  await page.getByLabel('Charts show').selectOption({ label: "Each chart's own range" });
  await eventually('back to 3 h', async () => (await captions()).every((c) => /last 3 h$/.test(c)));
  page.off('request', record);
  assert.deepEqual(problems, []);
});
