// The Keys section of the Backups page in headless Chromium: an admin makes
// a PBS job's encryption key, sees its fingerprint, opens its paper key
// (after giving their password again), exports the key file, and chooses
// to put the backup credentials in the own-state backup. tests/backup_keys.rs
// starts obsbox (signed in) with a PBS job on the client stand-in and runs
// this file with OBSBOX_URL, SESSION_COOKIE, PASSWORD and SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MINUTE, shoot, signedIn } from './helpers.mjs';

const BASE = process.env.OBSBOX_URL;

let session;
let page;

before(async () => {
  assert.ok(BASE && process.env.SESSION_COOKIE && process.env.PASSWORD, 'run through tests/backup_keys.rs');
  session = await signedIn(BASE, process.env.SESSION_COOKIE);
  page = session.page;
});

after(async () => {
  await session?.close();
});

test('a key is made, its fingerprint shown, its paper key opened and the file exported', async () => {
  await page.goto(`${BASE}/backups`);
  await page.getByRole('button', { name: 'Keys of photos' }).click();
  const section = page.getByRole('region', { name: 'Keys: photos' });
  await section.getByText('This job has no encryption key').waitFor({ timeout: MINUTE });
  await section.getByRole('button', { name: 'Create key' }).click();

  const facts = section.getByLabel('Encryption key of photos');
  await facts.waitFor({ timeout: MINUTE });
  const stored = await (await page.request.get(`${BASE}/api/backups/keys/photos`)).json();
  assert.match(stored.fingerprint, /^([0-9a-f]{2}:){31}[0-9a-f]{2}$/);
  assert.match(await facts.innerText(), new RegExp(`Fingerprint\\s+${stored.fingerprint}`));
  assert.match(await facts.innerText(), /Protection\s+none: the file is the key/);
  assert.match(await section.innerText(), /lives only on the box/);

  // The paper key: the password again, then a page of its own to print.
  await section.getByRole('button', { name: 'Paper key' }).click();
  await page.getByText('Give your password first.').waitFor({ timeout: MINUTE });
  await section.getByLabel('Your password').fill(process.env.PASSWORD);
  await section.getByRole('button', { name: 'Paper key' }).click();
  const link = section.getByRole('link', { name: 'Open the paper key of photos to print it' });
  await link.waitFor({ timeout: MINUTE });
  const [paper] = await Promise.all([session.browser.waitForEvent('page'), link.click()]);
  session.watch(paper);
  await paper.waitForLoadState();
  const text = await paper.locator('body').innerText();
  assert.match(text, /PBS encryption key/);
  assert.match(text, /-----BEGIN PROXMOX BACKUP KEY-----/);
  assert.ok(text.includes(stored.fingerprint), text);
  assert.match(text, /not in the box's own state backup/);
  const qr = await paper.locator('svg').boundingBox();
  assert.ok(qr && qr.width >= 300 && qr.height >= 300, `the QR code is drawn: ${JSON.stringify(qr)}`);
  // A scanner (zbarimg) reads the QR code as drawn on the page: the key's
  // lines between the markers, as printed above it.
  const drawn = join(mkdtempSync(join(tmpdir(), 'paperkey-')), 'qr.png');
  await paper.locator('svg').screenshot({ path: drawn });
  const scanned = execFileSync('zbarimg', ['--raw', '--quiet', drawn], { encoding: 'utf8' });
  const printed = text.split('-----BEGIN PROXMOX BACKUP KEY-----\n')[1].split('\n-----END PROXMOX BACKUP KEY-----')[0];
  assert.equal(scanned.replace(/\n$/, ''), printed);
  // Read on a phone too: the key's lines wrap, the QR code shrinks.
  await shoot(paper, process.env.SCREENSHOTS, 'backup-paperkey');
  await paper.close();

  // The key file, as a download.
  await section.getByLabel('Your password').fill(process.env.PASSWORD);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    section.getByRole('button', { name: 'Export key file' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'photos-encryption-key.json');
  const key = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(key.fingerprint, stored.fingerprint);
  await shoot(page, process.env.SCREENSHOTS, 'backup-keys', { target: section });
  assert.deepEqual(session.problems, []);
});

test('the backup credentials go into the own-state backup only when chosen', async () => {
  const banner = page.getByText("The own-state backup includes the backup jobs' credentials");
  assert.equal(await banner.isVisible(), false);
  await page.getByLabel("Include the backup jobs' credentials").check();
  await page.locator('#state-form').getByRole('button', { name: 'Save' }).click();
  await banner.waitFor({ timeout: MINUTE });
  const settings = await (await page.request.get(`${BASE}/api/settings/backups`)).json();
  assert.equal(settings.state_includes_credentials, true);
  assert.equal(settings.jobs.length, 1, 'the jobs are left as they were');
  assert.deepEqual(session.problems, []);
});
