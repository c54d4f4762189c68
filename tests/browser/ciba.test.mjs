// A decoupled (CIBA) journey in headless Chromium: the demo TPP starts a
// backchannel request for the demo customer and polls; the customer, signed
// in on the bank's phone page, sees the request arrive without a reload,
// checks the binding message and approves (or denies); the TPP's poll ends
// in tokens (or access_denied).
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bin, run } from './lib/strongroom.mjs';
import { launch, newPage, assertClean, checkPage } from './lib/browser.mjs';
import { bankSignIn, startDemo } from './lib/demo.mjs';

describe('CIBA: approval on the bank phone page in a real browser', () => {
  let demo;
  let browser;
  const running = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
    await Promise.all(browser.contexts().map((c) => c.close()));
  });
  before(async () => {
    browser = await launch();
    demo = await startDemo();
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  /** The phone page open and signed in, then the TPP's request started. */
  async function pending(width, binding) {
    const page = await newPage(browser, { width });
    await page.goto(`${demo.bankUrl}/my/phone`);
    await bankSignIn(page);
    const before = await page.getByRole('button', { name: /^Approve/ }).count();
    const tpp = run(bin('demo-tpp'), ['--ciba', '--binding-message', binding], { env: demo.tppEnv });
    running.push(tpp);
    await tpp.waitForLine(/^Approve on the phone: /m, 60_000);
    // No reload: the page's own script brings the request in.
    const url = page.url();
    const approve = page.getByRole('button', { name: /^Approve/ });
    await page.waitForFunction((n) => document.querySelectorAll('button[value=approve]').length > n, before, {
      timeout: 15_000,
    });
    assert.equal(page.url(), url, 'the list updated in place');
    assert.ok((await approve.count()) > before);
    return { page, tpp };
  }

  for (const width of [320, 1280]) {
    it(`the request appears with its binding message, Approve gives the polling TPP tokens (${width}px)`, async () => {
      const binding = `W${width}-${Math.floor(Math.random() * 1e6)}`;
      const { page, tpp } = await pending(width, binding);
      const card = page.locator('li', { hasText: binding });
      await card.waitFor();
      const text = await card.innerText();
      assert.match(text, /Demo TPP/);
      assert.match(text, /balances/i, 'what is asked, in words');
      await checkPage(page, 'demo-bank-phone');
      await card.getByRole('button', { name: /^Approve/ }).click();
      const { code } = await tpp.exited;
      assert.equal(code, 0, `demo-tpp --ciba:\n${tpp.out.stdout}\n${tpp.out.stderr}`);
      const consent = tpp.out.stdout.match(/ConsentId (\S+)/)?.[1];
      assert.ok(consent, tpp.out.stdout);
      assert.ok(tpp.out.stdout.includes(`openbanking_intent_id "${consent}"`), 'the consent id in the id_token');
      assert.ok(tpp.out.stdout.includes(`"consent_id": "${consent}"`), 'and in the introspection');
      assertClean(page);
    });
  }

  it('Deny on the phone gives the polling TPP access_denied', async () => {
    const binding = `D-${Math.floor(Math.random() * 1e6)}`;
    const { page, tpp } = await pending(1280, binding);
    await page.locator('li', { hasText: binding }).getByRole('button', { name: /^Deny/ }).click();
    const { code } = await tpp.exited;
    assert.equal(code, 1);
    assert.match(tpp.out.stdout + tpp.out.stderr, /access_denied/);
    assertClean(page);
  });
});
