// Headless Chromium (Debian's package, never a downloaded browser) with every
// console error, page error and failed navigation collected, and axe-core
// run inside the page.
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { repoRoot } from './strongroom.mjs';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const screenshotDir = path.join(repoRoot, 'target', 'browser-screenshots');

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // The dev CA is made afresh by each server; the TLS of the pages is not
      // what these tests are about (the Rust tests check the certificates).
      '--ignore-certificate-errors',
    ],
  });
}

/**
 * A page in its own context (its own cookies) that records what a customer
 * would not see but a developer must: console errors (a CSP violation is
 * one), uncaught page errors and aborted requests.
 */
export async function newPage(browser, { width = 1280, height = 900, locale = 'en-GB' } = {}) {
  const context = await browser.newContext({
    viewport: { width, height },
    locale,
    ignoreHTTPSErrors: true,
  });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const text = `console ${msg.type()}: ${msg.text()}`;
    // Chromium logs a document's own error status as "Failed to load
    // resource"; a test that expects that status says so (expectStatus).
    const url = msg.location()?.url ?? '';
    if (/^Failed to load resource: the server responded with a status of \d+/.test(msg.text()) && page.expectedErrorUrls.has(url)) return;
    problems.push(`${text} (${url})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    problems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
  });
  page.problems = problems;
  page.expectedErrorUrls = new Set();
  return page;
}

/** Goes to `url`, which is expected to answer `status` (an error page). */
export async function gotoExpecting(page, url, status) {
  page.expectedErrorUrls.add(url);
  const resp = await page.goto(url);
  assert.equal(resp.status(), status, `status of ${url}`);
  return resp;
}

/** No console error, CSP violation, page error or failed request so far. */
export function assertClean(page) {
  assert.deepEqual(page.problems, [], `the browser reported:\n${page.problems.join('\n')}`);
}

/**
 * axe-core at WCAG 2.0/2.1 A and AA. The script is evaluated through the
 * DevTools protocol, which the page's CSP does not govern, so the page is
 * checked under its real CSP.
 */
export async function assertAccessible(page, label) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  const violations = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(' ')).join('\n    ')}`,
  );
  assert.deepEqual(violations, [], `axe-core on ${label} (${page.url()}):\n${violations.join('\n')}`);
  assert.ok(result.passes.length > 0, 'axe-core ran no rule');
}

/** The page fits a phone's width: nothing wider than the viewport. */
export async function assertFitsWidth(page, label) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  assert.ok(scroll <= width, `${label}: content is ${scroll}px wide in a ${width}px viewport`);
}

export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  const w = page.viewportSize()?.width ?? 0;
  await page.screenshot({ path: path.join(screenshotDir, `${name}-${w}.png`), fullPage: true });
}

/** Every check a customer-facing page must pass, at the current width. */
export async function checkPage(page, label) {
  await assertAccessible(page, label);
  await assertFitsWidth(page, label);
  await screenshot(page, label);
  const lang = await page.getAttribute('html', 'lang');
  assert.ok(lang && lang.length >= 2, `${label}: <html lang> missing`);
  assert.equal(await page.locator('h1').count(), 1, `${label}: one <h1>`);
}
