// What the browser test files share: Debian's Chromium signed in as the
// admin, waiting on a condition, screenshots at both widths, and what a
// chart plotted (uPlot's own data, not its pixels).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const MINUTE = 60_000;
export const WIDTHS = [1280, 390];
export const HEIGHT = { 1280: 900, 390: 844 };

/**
 * Chromium with a fresh profile (downloads accepted); its page collects
 * script errors and CSP refusals in `problems`, and `watch` does the same for
 * a page opened later (a link's new tab).
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'obsbox-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: HEIGHT[1280] },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = browser.pages()[0] ?? await browser.newPage();
  const problems = [];
  const watch = (p) => {
    p.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) problems.push(message.text());
    });
    p.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
  };
  watch(page);
  const close = async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { browser, page, problems, watch, close };
}

/** [`launch`], signed in to `base` with `cookie` (`name=value`). */
export async function signedIn(base, cookie) {
  const launched = await launch();
  const [name, value] = cookie.split('=');
  await launched.browser.addCookies([{ name, value, url: base }]);
  return launched;
}

/** Polls `check` until it returns a truthy value, which it returns. */
export async function eventually(what, check, timeout = MINUTE) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => { setTimeout(resolve, 250); });
  }
}

/**
 * Saves the page's view at both widths as `<name>-<width>.png` in `dir`,
 * after checking the page never scrolls sideways: scrolled to put `at` on
 * top, or only the element `target`; `ready(width)` is awaited at each
 * width first.
 */
export async function shoot(page, dir, name, { at, target, ready } = {}) {
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: HEIGHT[width] });
    if (ready) await ready(width);
    const sideways = await page.evaluate(() => document.scrollingElement.scrollWidth > window.innerWidth + 1);
    assert.equal(sideways, false, `${name} scrolls sideways at ${width} px`);
    const path = join(dir, `${name}-${width}.png`);
    if (target) {
      await target.scrollIntoViewIfNeeded();
      await target.screenshot({ path });
    } else {
      await at?.evaluate((e) => e.scrollIntoView({ block: 'start' }));
      await page.screenshot({ path });
    }
  }
  await page.setViewportSize({ width: 1280, height: HEIGHT[1280] });
}

/**
 * What the chart `figure` plotted, once drawn: per line, its name in the
 * legend, whether it is dashed (a threshold), and its values that are not gaps.
 */
export async function plotted(figure, timeout = MINUTE) {
  await eventually(`${await figure.getAttribute('data-title')} drawn`, async () => (await figure.getAttribute('data-state')) === 'drawn', timeout);
  return figure.evaluate((f) => (f.uplots ?? []).flatMap((u) => u.series.slice(1).map((s, i) => ({
    name: s.label,
    dashed: Boolean(s.dash),
    values: u.data[i + 1].filter((v) => v !== null && v !== undefined),
  }))));
}
