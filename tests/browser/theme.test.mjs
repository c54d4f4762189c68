// A bank's theme, in a real browser: [ui] name, colour and logo, and a theme
// directory overriding an asset and a message, without touching the built-in
// templates.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bin, repoRoot, run, startStrongroom } from './lib/strongroom.mjs';
import { launch, newPage, assertClean, checkPage } from './lib/browser.mjs';

const PRIMARY = '#6b1d5c';

describe('a themed Strongroom in a real browser', () => {
  let sr;
  let browser;
  let dir;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strongroom-theme-'));
    const theme = path.join(dir, 'theme');
    mkdirSync(path.join(theme, 'assets'), { recursive: true });
    mkdirSync(path.join(theme, 'messages'), { recursive: true });
    writeFileSync(
      path.join(theme, 'assets', 'example-bank.svg'),
      '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" viewBox="0 0 40 40"><rect width="40" height="40" rx="8" fill="#6b1d5c"/></svg>\n',
    );
    writeFileSync(path.join(theme, 'messages', 'en.toml'), 'login-heading = "Welcome back to {bank}"\n');
    const base = readFileSync(path.join(repoRoot, 'config/strongroom.toml'), 'utf8');
    const themed = base
      .replace(/^bank_name = .*$/m, 'bank_name = "Example Bank"')
      .replace(/^primary_color = .*$/m, `primary_color = "${PRIMARY}"`)
      .replace(/^logo = .*$/m, 'logo = "example-bank.svg"')
      .replace(/^# theme_dir = .*$/m, `theme_dir = ${JSON.stringify(theme)}`);
    assert.notEqual(themed, base);
    assert.match(themed, /^theme_dir = /m, 'config/strongroom.toml still offers theme_dir');
    const cfg = path.join(dir, 'strongroom.toml');
    writeFileSync(cfg, themed);
    browser = await launch();
    sr = await startStrongroom({ config: path.relative(repoRoot, cfg) });
  });
  after(async () => {
    await browser?.close();
    await sr?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("shows the bank's name, colour, logo and words on the login and consent pages", async () => {
    const t = run(bin('strongroom'), ['try', '--no-open', '--timeout', '60', '--port', String(sr.tryPort)], {
      env: sr.env,
    });
    try {
      const [, url] = await t.waitForLine(/^Open this URL in your browser: (\S+)$/m);
      const page = await newPage(browser, { width: 320 });
      await page.goto(url);
      await page.getByLabel('Username').waitFor();
      assert.equal(await page.locator('h1').innerText(), 'Welcome back to Example Bank', "the theme's message");
      assert.match(await page.title(), /Example Bank/);
      const logo = page.locator('header img').first();
      assert.match((await logo.getAttribute('src')) ?? '', /example-bank\.svg/);
      assert.ok(
        await logo.evaluate((img) => img.complete && img.naturalWidth > 0),
        'the logo from the theme directory loads under the CSP',
      );
      const primary = await page
        .getByRole('button', { name: 'Sign in' })
        .evaluate((b) => getComputedStyle(b).backgroundColor);
      assert.equal(primary, 'rgb(107, 29, 92)', 'the primary action in the configured colour');
      await checkPage(page, 'theme-login');

      await page.getByLabel('Username').fill('alice');
      await page.getByLabel('Password').fill('wonderland');
      await page.getByRole('button', { name: 'Sign in' }).click();
      const allow = page.getByRole('button', { name: /allow access/i });
      await allow.waitFor();
      await checkPage(page, 'theme-consent');
      await allow.click();
      await page.waitForURL((u) => u.port === String(sr.tryPort));
      assert.equal((await t.exited).code, 0, t.out.stderr);
      assertClean(page);
    } finally {
      await t.stop();
    }
  });
});
