// The `make demo` journey in headless Chromium: the demo TPP (demo-tpp,
// interactive) pushes its request, the customer signs in and approves at the
// demo bank's own pages (through the consent-bridge hooks), the browser ends
// at the TPP's redirect URI, the TPP finishes with the URL it was given, and
// the customer then revokes the access at the bank.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bin, run } from './lib/strongroom.mjs';
import { launch, newPage, assertClean, checkPage, gotoExpecting } from './lib/browser.mjs';
import { TPP_CALLBACK, bankSignIn, startDemo } from './lib/demo.mjs';

describe('the demo bank journey in a real browser', () => {
  let demo;
  let sr;
  let bank;
  let bankUrl;
  let browser;
  let tppEnv;
  const running = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
    await Promise.all(browser.contexts().map((c) => c.close()));
  });

  before(async () => {
    browser = await launch();
    demo = await startDemo({ tppCallback: true });
    ({ sr, bank, bankUrl, tppEnv } = demo);
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  /**
   * demo-tpp pushes its request; the customer signs in (once with a wrong
   * password) and approves at the bank; resolves at the TPP's redirect URI.
   */
  async function journey(width, label) {
    const tpp = run(bin('demo-tpp'), [], { env: tppEnv });
    running.push(tpp);
    const [, url] = await tpp.waitForLine(/^Open this URL in your browser: (\S+)$/m, 60_000);
    const page = await newPage(browser, { width });
    const resp = await page.goto(url);

    // The bank's login page, reached through Strongroom's hand-off. Its
    // forms may lead only back to Strongroom and on to the TPP's redirect
    // URI, which the hand-off names (docs/hooks.md §4): the CSP lists
    // exactly these, and the flow below finishes under it.
    await page.waitForURL((u) => u.origin === bankUrl && u.pathname === '/hooks/login');
    assert.match(
      resp.headers()['content-security-policy'] ?? '',
      new RegExp(`form-action 'self' ${sr.issuer} ${TPP_CALLBACK};`),
    );
    if (label) await checkPage(page, 'demo-bank-login');
    await page.getByLabel('Username').fill('mia');
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    assert.equal(await page.getByLabel('Username').inputValue(), 'mia');
    if (label) await checkPage(page, 'demo-bank-login-wrong-password');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Sign in' }).click();

    // The bank's consent page: who asks, for what, until when.
    await page.waitForURL((u) => u.origin === bankUrl && u.pathname === '/hooks/consent');
    const main = await page.locator('main').innerText();
    assert.match(main, /Demo TPP/);
    assert.match(main, /balances/i, 'permissions in words');
    if (label) await checkPage(page, 'demo-bank-consent');
    await page.getByRole('button', { name: 'Approve' }).click();

    // Back at the TPP with a code, through Strongroom (RFC 9207 iss).
    await page.waitForURL((u) => u.href.startsWith(TPP_CALLBACK));
    const back = new URL(page.url());
    assert.ok(back.searchParams.get('code'), `a code in ${back}`);
    assert.equal(back.searchParams.get('iss'), sr.issuer);
    assertClean(page);
    return { tpp, page };
  }

  /** The customer's /my/consents at the bank, signed in. */
  async function myConsents(page) {
    await page.goto(`${bankUrl}/my/consents`);
    await bankSignIn(page);
  }

  for (const width of [320, 1280]) {
    it(`consent at the bank, the TPP's tokens, then the consent shown revoked (${width}px)`, async () => {
      const { tpp, page } = await journey(width, true);
      // The TPP finishes with the URL the customer ended at: tokens,
      // introspection, and its own revocation at the bank.
      tpp.child.stdin.end(`${page.url()}\n`);
      const { code } = await tpp.exited;
      assert.equal(code, 0, `demo-tpp failed:\n${tpp.out.stdout}\n${tpp.out.stderr}`);
      const consentId = tpp.out.stdout.match(/consent (\S+) authorised/)?.[1];
      assert.ok(consentId, tpp.out.stdout);

      await myConsents(page);
      const card = page.locator('li', { hasText: consentId });
      await card.waitFor();
      assert.match(await card.innerText(), /Revoked/);
      assert.equal(await card.getByRole('button').count(), 0, 'nothing to revoke any more');
      await checkPage(page, 'demo-bank-my-consents');
      assertClean(page);
    });
  }

  it('the customer revokes at /my/consents before the TPP redeems: the TPP gets nothing', async () => {
    const { tpp, page } = await journey(1280, false);
    const callback = page.url();
    await myConsents(page);
    const revoke = page.getByRole('button', { name: /^Revoke access for Demo TPP \(consent .+\)$/ });
    assert.equal(await revoke.count(), 1, 'one consent to revoke, named in context');
    await checkPage(page, 'demo-bank-my-consents-active');
    await revoke.click();
    await page.waitForLoadState();
    assert.equal(await page.getByRole('button', { name: /^Revoke access for/ }).count(), 0);
    assert.match(await page.locator('main').innerText(), /Revoked/);
    assertClean(page);

    tpp.child.stdin.end(`${callback}\n`);
    const { code } = await tpp.exited;
    assert.notEqual(code, 0, `demo-tpp got tokens for a revoked consent:\n${tpp.out.stdout}`);
    assert.match(tpp.out.stderr, /invalid_grant/, 'the code of a revoked consent is refused at the token endpoint');
  });

  it("the bank's pages refuse a forged hand-off with a page, not a crash", async () => {
    const page = await newPage(browser);
    await gotoExpecting(page, `${bankUrl}/hooks/login?handoff=not-a-token`, 400);
    await checkPage(page, 'demo-bank-bad-handoff');
    assertClean(page);
  });

  // Last: it stops the bank.
  it("the bank's consent service down: Strongroom's unavailable page, and a way back to the TPP", async () => {
    const tpp = run(bin('demo-tpp'), [], { env: tppEnv });
    running.push(tpp);
    const [, url] = await tpp.waitForLine(/^Open this URL in your browser: (\S+)$/m, 60_000);
    await bank.stop();
    const page = await newPage(browser, { width: 320 });
    await gotoExpecting(page, url, 503);
    assert.equal(new URL(page.url()).origin, sr.issuer);
    await checkPage(page, 'unavailable');
    assert.equal(await page.locator('h1').innerText(), 'Demo Bank is unavailable', "the bank's name from [ui]");
    const back = page.getByRole('link', { name: /Demo TPP/ });
    const href = new URL(await back.getAttribute('href'));
    assert.ok(href.href.startsWith(TPP_CALLBACK), `${href}`);
    assert.equal(href.searchParams.get('error'), 'temporarily_unavailable');
    await back.click();
    await page.waitForURL((u) => u.href.startsWith(TPP_CALLBACK));
    assertClean(page);
  });
});
