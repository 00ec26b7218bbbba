// First-boot setup's "Restore from a backup" in headless Chromium, as a
// person would use it: on a fresh box, the repository and its password
// give the snapshots holding the old box's state; a wrong password is said
// at its field; restoring one brings the login page, where the old box's
// admin password works. tests/backup_restore.rs starts the fresh obsbox
// and runs this file with OBSBOX_URL, REPOSITORY, REPOSITORY_PASSWORD,
// PASSWORD (the old box's admin's) and SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, MINUTE, shoot } from './helpers.mjs';

const BASE = process.env.OBSBOX_URL;
const { REPOSITORY, REPOSITORY_PASSWORD, PASSWORD, SCREENSHOTS } = process.env;

let session;
let page;

before(async () => {
  assert.ok(BASE && REPOSITORY && REPOSITORY_PASSWORD && PASSWORD && SCREENSHOTS, 'run through tests/backup_restore.rs');
  session = await launch();
  page = session.page;
});

after(async () => {
  await session?.close();
});

const path = () => new URL(page.url()).pathname;

test('setup restores the old box from its restic backup and leads to its login', { timeout: 3 * MINUTE }, async () => {
  await page.goto(`${BASE}/`);
  assert.equal(path(), '/setup');
  const form = page.locator('#backup-form');
  assert.equal(await form.getByLabel('Namespace').isVisible(), false, 'PBS fields hidden for restic');
  await form.getByLabel('Backup program').selectOption('restic');
  await form.getByLabel('Repository', { exact: true }).fill(REPOSITORY);
  await form.getByLabel('Repository password').fill('not the password');
  await form.getByRole('button', { name: 'List snapshots' }).click();
  const refusal = page.locator('#backup-password-problem');
  await refusal.filter({ hasText: 'password' }).waitFor();
  assert.match(await refusal.textContent(), /refused the password/);

  await form.getByLabel('Repository password').fill(REPOSITORY_PASSWORD);
  await form.getByRole('button', { name: 'List snapshots' }).click();
  const restore = page.getByRole('button', { name: /^Restore snapshot / });
  await restore.first().waitFor();
  assert.equal((await page.locator('#status').textContent()).trim(), '', 'the refusal is gone');
  assert.equal(await restore.count(), 1, 'the one snapshot holding the box');
  assert.match(await page.locator('#backup-snapshots').textContent(), /obsbox-box/);
  await shoot(page, SCREENSHOTS, 'setup-restore');

  await restore.first().click();
  await page.waitForURL((url) => url.pathname === '/login', { timeout: 2 * MINUTE });
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname === '/');
  assert.deepEqual(session.problems, []);
});
