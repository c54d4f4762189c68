// The built-in login and consent pages, driven in headless Chromium the way
// a customer uses them: `strongroom try` plays the client (PAR, the
// callback, the token exchange), the browser plays the customer.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bin, run, startStrongroom } from './lib/strongroom.mjs';
import { launch, newPage, assertClean, checkPage } from './lib/browser.mjs';

const USER = 'alice';
const PASSWORD = 'wonderland';

describe('the built-in pages in a real browser', () => {
  let sr;
  let browser;
  before(async () => {
    browser = await launch();
    sr = await startStrongroom();
  });
  after(async () => {
    await browser?.close();
    await sr?.stop();
  });
  // A failed test leaves its `try` waiting on the callback port: stop it,
  // and the test's browser context, before the next test.
  const running = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
    await Promise.all(browser.contexts().map((c) => c.close()));
  });

  /** `strongroom try` against this server; resolves once it printed the authorize URL. */
  async function tryFlow(...args) {
    const port = sr.tryPort;
    const proc = run(bin('strongroom'), ['try', '--no-open', '--timeout', '60', '--port', String(port), ...args], {
      env: sr.env,
    });
    running.push(proc);
    const [, url] = await proc.waitForLine(/^Open this URL in your browser: (\S+)$/m);
    assert.equal(new URL(url).origin, sr.issuer, 'the authorize URL is the configured issuer');
    return { proc, url, port };
  }

  /** The browser is at the client's callback, answered by `try`. */
  async function atCallback(page, port) {
    await page.waitForURL((u) => u.port === String(port), { timeout: 15_000 });
    await page.locator('h1').waitFor();
    return page.locator('h1').innerText();
  }

  const username = (page) => page.getByLabel(/username/i);
  const password = (page) => page.getByLabel(/password/i);
  const signIn = (page) => page.getByRole('button', { name: /sign in/i });

  for (const width of [320, 1280]) {
    it(`login with a wrong password, then the right one, consent, and the client's token (${width}px)`, async () => {
      const { proc, url, port } = await tryFlow();
      const page = await newPage(browser, { width });
      await page.goto(url);

      await username(page).waitFor();
      await checkPage(page, 'login');
      await username(page).fill(USER);
      await password(page).fill('not-the-password');
      await signIn(page).click();

      // Still on the login page: the error is announced, the username kept,
      // the password not.
      const alert = page.getByRole('alert');
      await alert.waitFor();
      assert.match(await alert.innerText(), /\S/);
      assert.equal(await username(page).inputValue(), USER, 'the username is kept after a wrong password');
      assert.equal(await password(page).inputValue(), '', 'the password is not sent back');
      await checkPage(page, 'login-wrong-password');

      await password(page).fill(PASSWORD);
      await signIn(page).click();

      const approve = page.getByRole('button', { name: /approve|allow/i });
      await approve.waitFor();
      await checkPage(page, 'consent');
      const deny = page.getByRole('button', { name: /deny|don.t allow|cancel/i });
      assert.ok(await deny.isVisible(), 'a visible way to say no');
      await approve.click();

      assert.match(await atCallback(page, port), /signed in/i);
      assert.doesNotMatch(await page.locator('h1').innerText(), /not signed in/i);
      await checkPage(page, 'callback-success');
      const { code } = await proc.exited;
      assert.equal(code, 0, `strongroom try failed:\n${proc.out.stdout}\n${proc.out.stderr}`);
      assert.match(proc.out.stdout, /token_type/i, 'try printed the token response');
      assertClean(page);
    });
  }

  it('a second authorization reuses the session, prompt=login asks again', async () => {
    const page = await newPage(browser);
    // First: sign in and approve.
    let t = await tryFlow();
    await page.goto(t.url);
    await username(page).fill(USER);
    await password(page).fill(PASSWORD);
    await signIn(page).click();
    await page.getByRole('button', { name: /approve|allow/i }).click();
    await atCallback(page, t.port);
    assert.equal((await t.proc.exited).code, 0);

    // Again, same browser: no login page, straight to consent.
    t = await tryFlow();
    await page.goto(t.url);
    await page.getByRole('button', { name: /approve|allow/i }).waitFor();
    assert.equal(await username(page).count(), 0, 'no login form while the session lives');
    await page.getByRole('button', { name: /approve|allow/i }).click();
    await atCallback(page, t.port);
    assert.equal((await t.proc.exited).code, 0);

    // prompt=login: the login page again although the session lives.
    t = await tryFlow('--prompt', 'login');
    await page.goto(t.url);
    await username(page).waitFor();
    await checkPage(page, 'login-prompt-login');
    await username(page).fill(USER);
    await password(page).fill(PASSWORD);
    await signIn(page).click();
    await page.getByRole('button', { name: /approve|allow/i }).click();
    await atCallback(page, t.port);
    assert.equal((await t.proc.exited).code, 0, t.proc.out.stderr);
    assertClean(page);
  });

  it('Deny on the consent page sends access_denied to the client', async () => {
    const { proc, url, port } = await tryFlow();
    const page = await newPage(browser);
    await page.goto(url);
    await username(page).fill(USER);
    await password(page).fill(PASSWORD);
    await signIn(page).click();
    await page.getByRole('button', { name: /deny|don.t allow/i }).click();
    assert.match(await atCallback(page, port), /not signed in/i);
    assert.match(await page.locator('main').innerText(), /access_denied/);
    await checkPage(page, 'callback-denied');
    const { code } = await proc.exited;
    assert.equal(code, 1, 'try reports the refusal');
    assert.match(proc.out.stdout + proc.out.stderr, /access_denied/);
    assertClean(page);
  });

  it('Cancel on the login page sends access_denied to the client', async () => {
    const { proc, url, port } = await tryFlow();
    const page = await newPage(browser);
    await page.goto(url);
    await page.getByRole('button', { name: /cancel/i }).click();
    assert.match(await atCallback(page, port), /not signed in/i);
    assert.equal((await proc.exited).code, 1);
    assertClean(page);
  });

  it('the pages follow the browser language (Accept-Language)', async () => {
    const { proc, url } = await tryFlow();
    const page = await newPage(browser, { locale: 'fr-FR' });
    await page.goto(url);
    await page.locator('input[type=password]').waitFor();
    assert.equal(await page.getAttribute('html', 'lang'), 'fr');
    assert.equal(await page.getByRole('button', { name: /sign in/i }).count(), 0, 'no English button');
    await checkPage(page, 'login-fr');
    assertClean(page);
    await proc.stop();
  });
});
